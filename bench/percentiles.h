// Latency percentiles for the benchmarks' reports (intake-latency, pipeline-load): nearest
// rank over every sample, no histogram, since a run keeps at most a few million samples.
// Header-only; pure functions, thread-safe.
#ifndef STIP_BENCH_PERCENTILES_H_
#define STIP_BENCH_PERCENTILES_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace stip::bench {

struct Percentiles {
  double p50_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;
  int64_t count = 0;
};

// Over `ms`, which it sorts; zeros when empty.
inline Percentiles PercentilesOf(std::vector<double>& ms) {
  Percentiles p;
  p.count = static_cast<int64_t>(ms.size());
  if (ms.empty()) return p;
  std::sort(ms.begin(), ms.end());
  const auto at = [&](double q) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(q * static_cast<double>(ms.size())))];
  };
  p.p50_ms = at(0.50);
  p.p99_ms = at(0.99);
  p.p999_ms = at(0.999);
  p.max_ms = ms.back();
  return p;
}

}  // namespace stip::bench

#endif  // STIP_BENCH_PERCENTILES_H_
