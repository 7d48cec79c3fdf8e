// The consumer of RegistryService.WatchDecisions latency and scale match decisions with:
// DecisionWatch. Threads: one of its own reads the stream; Start blocks until the stream is
// open (at most 30 s, else Die) and Stop cancels it and joins the thread; the readers never
// block.
#ifndef STIP_BENCH_PIPELINE_LOAD_DECISION_WATCH_H_
#define STIP_BENCH_PIPELINE_LOAD_DECISION_WATCH_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/pipeline_load/population.h"
#include "grpcpp/client_context.h"
#include "stip/v1/registry_service.grpc.pb.h"

namespace stip::bench::load {

// Follows RegistryService.WatchDecisions from "now" (an empty cursor) on its own thread and
// records, per filing of `population`, when its decision arrived; decisions of filings that
// are not this run's (other runs, other revisions) are counted and ignored. Reconnects from
// the last cursor when the stream ends early. Arrival times and counters may be read from
// any thread while it runs.
class DecisionWatch {
 public:
  DecisionWatch(const std::string& target, const Population* population);
  ~DecisionWatch() { Stop(); }

  // Opens the stream and returns once the server sent its first message (the heartbeat that
  // says where "now" is): from then on every decision applied is seen.
  void Start();
  void Stop();

  // 0 when the decision has not arrived.
  int64_t ArrivalNs(int64_t k) const {
    return arrival_ns_[static_cast<size_t>(k)].load(std::memory_order_acquire);
  }
  int64_t decided() const { return decided_.load(); }
  int64_t duplicates() const { return duplicates_.load(); }
  int64_t foreign() const { return foreign_.load(); }
  int64_t qualified() const { return qualified_.load(); }
  int64_t outcome_mismatches() const { return mismatches_.load(); }
  int64_t reconnects() const { return reconnects_.load(); }

 private:
  void Run();
  void Record(const stip::v1::QualificationDecision& decision);

  std::unique_ptr<stip::v1::RegistryService::Stub> stub_;
  const Population* const population_;
  std::vector<std::atomic<int64_t>> arrival_ns_;
  std::atomic<int64_t> decided_{0}, duplicates_{0}, foreign_{0}, qualified_{0}, mismatches_{0},
      reconnects_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;
  bool stopping_ = false;
  grpc::ClientContext* context_ = nullptr;
  std::thread thread_;
};

// The watch's counters as a JSON object.
std::string Json(const DecisionWatch& watch);

}  // namespace stip::bench::load

#endif  // STIP_BENCH_PIPELINE_LOAD_DECISION_WATCH_H_
