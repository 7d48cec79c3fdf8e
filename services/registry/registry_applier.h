// The registry's consumer: reads stip.filings.v1 and stip.decisions.v1 as a member of a
// consumer group and applies them to the store in batches. The positions consumed are kept
// in the store's database, in the transaction that applies the batch (RegistryStore::Apply),
// and the consumer starts every partition it is assigned at the position stored there —
// so a crash, a restart or a rebalance neither loses an event nor applies one twice,
// whatever the broker's committed offsets say (they are committed too, only so that
// consumer-lag tools see progress).
//
// Events that cannot be decoded are not retried: they go to stip.deadletter.v1 through the
// store's outbox, with the reason. A batch the database refuses is retried, with back-off,
// until it is applied or the applier is stopped; nothing after it is read meanwhile.
//
// Threading: Run() on one thread; Stop() from any.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "services/common/event_log.h"
#include "services/common/runnable.h"
#include "services/registry/change_notifier.h"
#include "services/registry/registry_store.h"

namespace stip::registry {

inline constexpr char kRegistryGroup[] = "stip-registry";

struct ApplierOptions {
  std::string group = kRegistryGroup;
  std::string filings_topic = "stip.filings.v1";
  std::string decisions_topic = "stip.decisions.v1";
  // A batch holds at most this many events, and closes this long after its first event:
  // one database transaction per batch.
  size_t max_batch_events = 2000;
  absl::Duration max_batch_delay = absl::Milliseconds(50);
  // The first wait after a failed batch, doubling up to 30 s.
  absl::Duration retry_backoff = absl::Milliseconds(200);
};

class RegistryApplier : public Runnable {
 public:
  // Every pointer must outlive the applier. `notifier` is told after every commit.
  RegistryApplier(EventLog* log, RegistryStore* store, ChangeNotifier* notifier,
                  ApplierOptions options = {});

  // Consumes and applies until Stop(). A clean stop applies the batch in hand first (if the
  // database accepts it), then leaves the group. Returns an error only when the consumer
  // cannot be created or fails for good.
  absl::Status Run() override;
  void Stop() override { stop_ = true; }

  // Events applied so far by this instance (repeats and replays included).
  int64_t EventsApplied() const { return events_applied_.load(); }

 private:
  absl::Status ApplyWithRetry(const std::vector<PositionedEvent>& batch);

  EventLog* const log_;
  RegistryStore* const store_;
  ChangeNotifier* const notifier_;
  const ApplierOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> events_applied_{0};
};

// Decodes a consumed event of `filings_topic` or `decisions_topic`; anything that does not
// parse, or lacks its id, becomes a DeadLetter with the reason.
PositionedEvent DecodeRegistryEvent(const ConsumedEvent& event, const ApplierOptions& options);

}  // namespace stip::registry
