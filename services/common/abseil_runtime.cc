#include "services/common/abseil_runtime.h"

#include "absl/synchronization/mutex.h"

namespace stip {

void ConfigureAbseilForServing() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace stip
