// Tells waiters that the register changed. The applier calls Notify() after every committed
// Apply (and anything else that writes to the feeds, such as CloseFilingWindow); Watch
// streams and WaitForDecision wait on it instead of polling the database.
//
// The version is a counter, not a database position: a waiter reads Version() *before* it
// reads the store, and then Wait(that version, ...) returns at once if a commit was
// notified in between, so no change is missed between the read and the wait. A notifier
// knows nothing of what changed; waiters read the store again to find out.
//
// Threading: thread-safe; any number of threads may wait while others notify. Notify and
// WakeAll never block on waiters (they take a mutex held only briefly). Wait blocks.
#pragma once

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace stip::registry {

class ChangeNotifier {
 public:
  ChangeNotifier() = default;
  ChangeNotifier(const ChangeNotifier&) = delete;
  ChangeNotifier& operator=(const ChangeNotifier&) = delete;

  // A commit happened: moves the version on and wakes every waiter.
  void Notify();

  // The current version (0 before the first Notify).
  uint64_t Version() const;

  // Blocks until the version moves past `seen_version`, `deadline` passes, WakeAll is
  // called, or the notifier is shut down; returns the version then. Returns at once when
  // the version is already past `seen_version` or after Shutdown. A return with the version
  // still equal to `seen_version` means "look at your own reasons" (deadline, a
  // cancellation that called WakeAll, shutdown).
  uint64_t Wait(uint64_t seen_version, absl::Time deadline) const;

  // Wakes every waiter without a change, so that each re-checks its own cancellation.
  void WakeAll();

  // From now on every Wait returns at once; wakes every waiter. For the shutdown sequence.
  // Idempotent.
  void Shutdown();
  bool IsShutDown() const;

 private:
  mutable absl::Mutex mu_;
  mutable absl::CondVar changed_;
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  // Moves on with every WakeAll, so that a woken waiter can tell it was woken.
  uint64_t wakeups_ ABSL_GUARDED_BY(mu_) = 0;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace stip::registry
