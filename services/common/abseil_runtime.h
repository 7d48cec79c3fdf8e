// Abseil settings for a serving process, applied once at start-up.
//
// Debian builds Abseil without NDEBUG, so absl::Mutex runs its deadlock detector in every
// Lock: a lookup in a process-wide graph under a global lock. In stip-intake it took 9.5% of
// the CPU samples of bench/run's stage 6 (absl::synchronization_internal::GraphCycles::GetId),
// more than the intake's own work. Services switch it off; tests, which never call this,
// keep it.
//
// Threads: call from main before any other thread starts.
#pragma once

namespace stip {

void ConfigureAbseilForServing();

}  // namespace stip
