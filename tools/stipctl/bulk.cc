#include "tools/stipctl/bulk.h"

#include <unistd.h>

#include <atomic>
#include <iostream>
#include <mutex>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "tools/stipctl/output.h"
#include "tools/stipctl/progress.h"

namespace stip::ctl {

void ParallelFor(size_t count, int threads, const std::function<void(size_t)>& work,
                 const std::function<void(int64_t)>& done) {
  std::atomic<size_t> next{0};
  std::atomic<int64_t> finished{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (size_t i = next++; i < count; i = next++) {
        work(i);
        ++finished;
      }
    });
  }
  while (finished.load() < static_cast<int64_t>(count)) {
    done(finished.load());
    absl::SleepFor(absl::Milliseconds(100));
  }
  for (std::thread& worker : workers) worker.join();
  done(finished.load());
}

DecisionTally WaitForDecisions(Clients& clients, const std::vector<std::string>& filing_ids,
                               absl::Duration timeout) {
  DecisionTally tally;
  absl::Mutex mu;
  ProgressBar progress(static_cast<int64_t>(filing_ids.size()), isatty(STDERR_FILENO) == 1,
                       std::cerr);
  auto& registry = clients.Registry();  // made once, before the threads share it
  ParallelFor(
      filing_ids.size(), 16,
      [&](size_t i) {
        v1::WaitForDecisionResponse response;
        const grpc::Status status = WaitForDecision(registry, filing_ids[i], timeout, &response);
        absl::MutexLock lock(&mu);
        if (status.ok()) {
          ++tally.by_outcome[EnumName(v1::DecisionOutcome_descriptor(),
                                      response.decision().outcome())];
        } else {
          ++tally.undecided;
          if (status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED &&
              tally.first_error.empty()) {
            tally.first_error = status.error_message();
          }
        }
      },
      [&](int64_t finished) { progress.Update(finished); });
  progress.Finish(static_cast<int64_t>(filing_ids.size()));
  return tally;
}

}  // namespace stip::ctl
