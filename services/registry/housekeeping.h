// The registry's periodic chores: the Watch subscriber gauges and the feeds' retention
// (PruneFeeds). Whether the database answers is a DependencyWatch check of the main.
//
// Threading: Run() on one thread (a ProcessorThread); Stop() from any.
#pragma once

#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "services/common/runnable.h"
#include "services/registry/registry_service.h"
#include "services/registry/registry_store.h"

namespace stip::registry {

class Housekeeping : public Runnable {
 public:
  // Every pointer outlives this object. Watch cursors older than `feed_retention` get
  // OUT_OF_RANGE.
  Housekeeping(RegistryStore* store, RegistryServiceImpl* service, absl::Duration feed_retention);

  absl::Status Run() override;
  // Idempotent (ProcessorThread stops it again when destroyed).
  void Stop() override {
    if (!stopping_.exchange(true)) stop_.Notify();
  }

 private:
  RegistryStore* const store_;
  RegistryServiceImpl* const service_;
  const absl::Duration feed_retention_;
  std::atomic<bool> stopping_{false};
  absl::Notification stop_;
};

}  // namespace stip::registry
