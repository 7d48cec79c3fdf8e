#include "services/registry/change_notifier.h"

namespace stip::registry {

void ChangeNotifier::Notify() {
  absl::MutexLock lock(&mu_);
  ++version_;
  changed_.SignalAll();
}

uint64_t ChangeNotifier::Version() const {
  absl::MutexLock lock(&mu_);
  return version_;
}

uint64_t ChangeNotifier::Wait(uint64_t seen_version, absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  const uint64_t wakeups = wakeups_;
  // WaitWithDeadline may return spuriously: loop until one of the reasons holds.
  while (version_ <= seen_version && wakeups_ == wakeups && !shut_down_) {
    if (changed_.WaitWithDeadline(&mu_, deadline)) break;  // deadline passed
  }
  return version_;
}

void ChangeNotifier::WakeAll() {
  absl::MutexLock lock(&mu_);
  ++wakeups_;
  changed_.SignalAll();
}

void ChangeNotifier::Shutdown() {
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
  changed_.SignalAll();
}

bool ChangeNotifier::IsShutDown() const {
  absl::MutexLock lock(&mu_);
  return shut_down_;
}

}  // namespace stip::registry
