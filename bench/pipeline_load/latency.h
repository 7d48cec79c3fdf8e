// The `latency` subcommand: enrolls the run's enterprises, opens WatchDecisions from "now",
// then for each rate in turn sends SubmitFiling on a fixed schedule (open loop, async) and
// matches every decision on the stream to its filing; latencies count from each filing's
// scheduled send time. Blocks the calling thread for the whole run (gRPC's threads answer
// the calls, DecisionWatch's follows the stream); writes the JSON report, the summary on
// stdout and progress on stderr.
#ifndef STIP_BENCH_PIPELINE_LOAD_LATENCY_H_
#define STIP_BENCH_PIPELINE_LOAD_LATENCY_H_

#include <string>

#include "bench/pipeline_load/enroll.h"

namespace stip::bench::load {

struct LatencyOptions {
  std::string intake;
  std::string rates = "100,500,1000";
  double seconds = 10;
  double drain_timeout_s = 30;
  int warmup = 50;
  int channels = 8;
};

// Runs the subcommand; returns the exit status: 0 when every filing was accepted and decided,
// 2 when some were not. Dies (exit 1) on an error.
int Latency(const CommonOptions& common, const LatencyOptions& o);

}  // namespace stip::bench::load

#endif  // STIP_BENCH_PIPELINE_LOAD_LATENCY_H_
