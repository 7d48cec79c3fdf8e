// The `scale` subcommand: enrolls ceil(N / years) enterprises, produces N AnnualFilings to
// intake's inbound topic (at --rate, or as fast as the producer goes) and counts the
// decisions on WatchDecisions until all N arrived or --timeout-s passed, sampling the rate
// every interval. Blocks the calling thread for the whole run (a producing thread, the
// producer's delivery thread and DecisionWatch's beside it); writes the JSON report, the
// summary on stdout and progress on stderr.
#ifndef STIP_BENCH_PIPELINE_LOAD_SCALE_H_
#define STIP_BENCH_PIPELINE_LOAD_SCALE_H_

#include <cstdint>
#include <string>

#include "bench/pipeline_load/enroll.h"

namespace stip::bench::load {

struct ScaleOptions {
  std::string kafka;
  std::string inbound_topic;
  int64_t filings = 0;
  double rate = 0;
  double interval_s = 5;
  double timeout_s = 900;
  int linger_ms = 5;
};

// Runs the subcommand; returns the exit status: 0 when all N decisions arrived, 2 when the
// run timed out. Dies (exit 1) on an error.
int Scale(const CommonOptions& common, const ScaleOptions& o);

}  // namespace stip::bench::load

#endif  // STIP_BENCH_PIPELINE_LOAD_SCALE_H_
