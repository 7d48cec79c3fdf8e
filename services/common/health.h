// Readiness: whether this process should receive traffic now. The gRPC server publishes it
// through the standard grpc.health.v1.Health service (what Kubernetes' gRPC readiness probes
// and grpc_health_probe query) and as the stip_health_serving gauge.
//
// A process is SERVING when nothing holds it back. Each component names its own condition:
//
//   health.SetServing(false, "kafka");     // the broker cannot be reached
//   health.SetServing(true, "kafka");      // it can again
//   health.SetServing(false, "draining");  // shutdown began; nobody clears this one
//
// so that one dependency recovering does not mark the process SERVING while another is still
// down, or while it drains.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace stip {

// Thread-safe. Outlives every Subscription it hands out.
class HealthReporter {
 public:
  // Called with the new state on every change (and once on Subscribe with the current one).
  using Listener = std::function<void(bool serving)>;

  // Unsubscribes when destroyed. Movable; keep it as the last member of the class that holds
  // it, so that it is destroyed first, before what the listener uses.
  class Subscription {
   public:
    Subscription() = default;
    Subscription(Subscription&& other) noexcept;
    Subscription& operator=(Subscription&& other) noexcept;
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;
    ~Subscription();

   private:
    friend class HealthReporter;
    Subscription(HealthReporter* reporter, int64_t id) : reporter_(reporter), id_(id) {}
    HealthReporter* reporter_ = nullptr;
    int64_t id_ = 0;
  };

  HealthReporter();
  HealthReporter(const HealthReporter&) = delete;
  HealthReporter& operator=(const HealthReporter&) = delete;

  // serving=false: the condition `reason` (a short stable name: "draining", "kafka",
  // "database") holds the process NOT_SERVING until the same reason is cleared with
  // serving=true. Clearing a reason that is not set does nothing. Transitions of the overall
  // state are logged. Never blocks for long: listeners run on the calling thread, in order.
  void SetServing(bool serving, std::string_view reason);

  bool serving() const;
  // The reasons holding the process NOT_SERVING, sorted; empty when SERVING.
  std::vector<std::string> NotServingReasons() const;

  // Calls `listener` with the current state before returning, then on every change until
  // the Subscription is destroyed. Listeners are called with an internal lock held, so that
  // they see changes in order: they must be quick and must not call into this reporter.
  [[nodiscard]] Subscription Subscribe(Listener listener);

 private:
  void Unsubscribe(int64_t id);

  mutable absl::Mutex mu_;
  std::set<std::string, std::less<>> reasons_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, Listener> listeners_ ABSL_GUARDED_BY(mu_);
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace stip
