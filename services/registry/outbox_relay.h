// Publishes the store's outbox (roster changes to stip.listings.v1, filing conflicts to
// stip.filings.rejected.v1, dead letters to stip.deadletter.v1) in the order it was
// written, and removes what the event log acknowledged.
//
// Delivery: at least once, in order. An event is removed only after Publish returned OK
// for it, so a crash between the two publishes it again, with the same CloudEvents id
// (ce_id: the listing's event_id): consumers drop repeats by id. Several registry
// instances may relay at once; they may then publish the same event twice, never lose one.
// An event over the publisher's MaxEventBytes() (which the log would refuse on every try,
// holding back everything behind it) is relayed to stip.deadletter.v1 instead, cut to fit
// and marked (DeadLetterForOutput); a log that cannot be reached is retried.
//
// Threading: Run() on one thread; Stop() from any.
#pragma once

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "services/common/event_log.h"
#include "services/common/runnable.h"
#include "services/registry/change_notifier.h"
#include "services/registry/registry_store.h"

namespace stip::registry {

struct OutboxRelayOptions {
  int32_t max_batch = 500;
  // How long Publish may wait for the log before the batch is retried.
  absl::Duration publish_timeout = absl::Seconds(10);
  // With nothing to relay, look again after this long even without a notification (an
  // event written by another instance notifies nobody here).
  absl::Duration idle_poll = absl::Seconds(1);
  absl::Duration retry_backoff = absl::Milliseconds(200);
};

class OutboxRelay : public Runnable {
 public:
  // Every pointer must outlive the relay.
  OutboxRelay(RegistryStore* store, EventPublisher* publisher, ChangeNotifier* notifier,
              OutboxRelayOptions options = {});

  // Relays until Stop(), then returns OK. A stop waits for the batch being published.
  absl::Status Run() override;
  void Stop() override;

  int64_t EventsRelayed() const { return relayed_.load(); }
  // Rounds (read, publish, mark) failed since the last one that succeeded; for readiness
  // (ProgressCheck) and the gauge stip_registry_outbox_failures_in_a_row. Any thread.
  int64_t FailuresInARow() const { return failures_in_a_row_.load(); }

 private:
  void Failed();

  RegistryStore* const store_;
  EventPublisher* const publisher_;
  ChangeNotifier* const notifier_;
  const OutboxRelayOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> relayed_{0};
  std::atomic<int64_t> failures_in_a_row_{0};
};

}  // namespace stip::registry
