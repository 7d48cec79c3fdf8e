// pipeline-load's clock and figures: nanoseconds since the process started, the few JSON
// writing helpers its reports are made with (percentiles from bench/percentiles.h among
// them), and --rates parsing.
// Stateless (the clock's origin is fixed before main): every function is thread-safe and
// none blocks, except WriteJson, which writes a file. Errors end the process (Die).
#ifndef STIP_BENCH_PIPELINE_LOAD_REPORT_H_
#define STIP_BENCH_PIPELINE_LOAD_REPORT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bench/percentiles.h"
#include "bench/raw_copy.h"

namespace stip::bench::load {

// Nanoseconds since this process started (steady clock); never 0 after the start, so that 0
// can mean "not yet".
int64_t NowNs();
// The steady-clock time of a NowNs value.
Clock::time_point FromNs(int64_t ns);

// JSON by hand, not protobuf's JSON mapping (the project's JSON library): the reports are
// flat objects of numbers and ASCII names, read by bench/run with jq; a .proto per report
// would be more code than the few lines below, for a benchmark tool.
// A JSON number with 3 decimals.
std::string Num(double v);
// The members "<prefix>p50_ms", ... "<prefix>max_ms" of `p`, without braces.
std::string PercentilesJson(const Percentiles& p, std::string_view prefix);
// A JSON string.
std::string Quote(std::string_view s);
// Writes `json` and a newline to `path`; nothing when `path` is empty. Dies when it cannot.
void WriteJson(const std::string& path, const std::string& json);

// The positive rates of a comma-separated --rates list; dies on anything else.
std::vector<double> ParseRates(const std::string& text);

}  // namespace stip::bench::load

#endif  // STIP_BENCH_PIPELINE_LOAD_REPORT_H_
