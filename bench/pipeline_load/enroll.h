// Enrolling a run's enterprises before it sends filings: the options latency and scale share
// (registry, run id, fiscal years), the registry's parks eligible for them, and
// EnrollEnterprise for every enterprise of the Population with a limit on calls in flight.
// Everything here blocks the calling thread until done (the calls' callbacks run on gRPC's
// threads), prints progress on stderr, and ends the process (Die) on a lasting failure.
#ifndef STIP_BENCH_PIPELINE_LOAD_ENROLL_H_
#define STIP_BENCH_PIPELINE_LOAD_ENROLL_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bench/pipeline_load/population.h"
#include "stip/v1/registry_service.grpc.pb.h"

namespace stip::bench::load {

// The options of latency and scale that make their Population.
struct CommonOptions {
  std::string registry;
  std::string run_id;
  int64_t enterprises = 0;  // 0: computed
  int first_year = 2015;
  int years = 10;
  int enroll_concurrency = 64;
  std::string json;
};

struct EnrollResult {
  int64_t enterprises = 0;
  int64_t parks = 0;
  double seconds = 0;
  double per_s = 0;
  int64_t retries = 0;
};

// `r` as a JSON object.
std::string Json(const EnrollResult& r);

// Every park founded in or before `first_year` (so that every fiscal year of the run is
// after the park's founding, which intake checks), ordered by id.
std::vector<std::string> EligibleParks(stip::v1::RegistryService::Stub& registry, int first_year);

// EnrollEnterprise for every enterprise of `population`, `concurrency` calls in flight over a
// few connections; retries transient failures, dies on any other. Progress every 2 s.
EnrollResult Enroll(const std::string& target, const Population& population, int concurrency,
                    int64_t parks);

// Checks the options, lists the parks and enrolls: the population filings are made from.
std::pair<Population, EnrollResult> Prepare(const CommonOptions& o, int64_t filings);

}  // namespace stip::bench::load

#endif  // STIP_BENCH_PIPELINE_LOAD_ENROLL_H_
