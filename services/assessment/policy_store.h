// The policy set in force, and its reload on SIGHUP.
//
// Readers (the decision stream's handler, the gRPC handlers) take a snapshot with Current()
// and use it for the whole of one batch or one call: a reload never changes the policies
// under a batch half-way, and the old set lives on until the last snapshot of it is dropped.
// Reload reads the directory again and swaps the new set in only when every file is
// accepted; a refused directory leaves the set in force untouched, and the error names the
// file and line to fix (PolicySet::Load).
//
// Threads: every method is thread-safe. Current() holds a mutex only to copy a shared_ptr;
// Reload() reads files (blocking I/O) without it, and reloads are serialized among
// themselves.
//
// Metrics: stip_policy_reloads_total{result="ok"|"refused"}, stip_policies_loaded (the
// number of policies in force).
#pragma once

#include <filesystem>
#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "services/assessment/policy.h"

namespace stip::assessment {

class PolicyStore {
 public:
  // Loads `directory` (PolicySet::Load, whose errors are returned as they are: kNotFound
  // for a missing directory, kInvalidArgument naming file, line and column).
  static absl::StatusOr<std::unique_ptr<PolicyStore>> Open(std::filesystem::path directory);

  // A store over a set already loaded (tests, benchmarks). With an empty `directory`,
  // Reload fails with kFailedPrecondition and keeps `policies`.
  explicit PolicyStore(PolicySet policies, std::filesystem::path directory = {});

  PolicyStore(const PolicyStore&) = delete;
  PolicyStore& operator=(const PolicyStore&) = delete;

  // The set in force now. Never null.
  std::shared_ptr<const PolicySet> Current() const;

  // Reads the directory again. OK: Current() returns the new set from now on. Any error:
  // the set in force is kept, and the error says why (and is counted, not logged: the
  // caller logs it).
  absl::Status Reload();

  const std::filesystem::path& directory() const { return directory_; }

 private:
  void Install(std::shared_ptr<const PolicySet> policies);

  const std::filesystem::path directory_;
  absl::Mutex reload_mu_;  // one Reload at a time, so the last one read wins
  mutable absl::Mutex mu_;
  std::shared_ptr<const PolicySet> current_ ABSL_GUARDED_BY(mu_);
};

// What stip-assessment runs on SIGHUP (ShutdownCoordinator::OnReload): reloads `store` and
// logs the outcome, naming the file and line when the new policies are refused and the old
// ones kept. `store` outlives the callback.
std::function<void()> PolicyReloader(PolicyStore* store);

}  // namespace stip::assessment
