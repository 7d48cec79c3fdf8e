// Readiness that follows what a service depends on: every few seconds each named check runs
// (the event log answers, the database answers, the registry answers), and the process's
// HealthReporter is told, by name, whether it passed. So the health service says
// NOT_SERVING while any dependency is down, and SERVING again once all are back; the
// change is logged once per transition, not on every check.
//
// Threading: Run() on one thread (a ProcessorThread); Stop() from any. The checks run on
// that thread, one after the other, and must bound their own time.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "services/common/health.h"
#include "services/common/runnable.h"

namespace stip {

struct DependencyCheck {
  std::string name;  // the HealthReporter reason, e.g. "kafka"
  std::function<absl::Status()> check;
};

// A check that fails while a loop makes no progress: `failures_in_a_row()` (e.g. a
// processor's ProcessorCounters::batches_aborted_in_a_row) is at least `limit`. It passes
// again once the loop succeeds (the count drops back to 0). `what` names the loop in the
// failure. `failures_in_a_row` must be thread-safe and quick.
DependencyCheck ProgressCheck(std::string name, std::string what,
                              std::function<int64_t()> failures_in_a_row, int64_t limit = 5);

class DependencyWatch : public Runnable {
 public:
  // `health` outlives this object.
  DependencyWatch(HealthReporter* health, std::vector<DependencyCheck> checks,
                  absl::Duration interval = absl::Seconds(5));

  // Runs every check at once, then every `interval`, until Stop().
  absl::Status Run() override;
  // Idempotent.
  void Stop() override {
    if (!stopping_.exchange(true)) stop_.Notify();
  }

  // Runs every check once and reports them (also what Run does each round).
  void CheckAll();

 private:
  HealthReporter* const health_;
  const std::vector<DependencyCheck> checks_;
  const absl::Duration interval_;
  std::vector<bool> last_ok_;
  std::atomic<bool> stopping_{false};
  absl::Notification stop_;
};

}  // namespace stip
