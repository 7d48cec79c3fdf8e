// What intake asks the registry (RegistryService over gRPC): the parks, an enterprise's
// enrollment and latest revisions, and a recorded filing. Answers are cached briefly so
// that a bulk upload does not ask the registry once per filing for the same facts.
//
// Threads: every method may be called from any number of threads at once. Methods block on
// the registry for at most until their `deadline` (and RegistryClientOptions::call_timeout).
//
// Failures: the registry unreachable (or answering with anything but NOT_FOUND) is
// kUnavailable, or kDeadlineExceeded when the deadline passed; callers then refuse to
// decide (they never accept a filing unchecked).
//
// What the cached park list is still good for while the registry is down: checking a
// filing's fields (ValidateFiling, a draft's park_id), for at most parks_max_staleness. It
// is never enough to accept a filing: that needs the enterprise's enrollment and revisions,
// which are asked of the registry (cached for enterprise_ttl, seconds), so every submission
// fails with kUnavailable while the registry does not answer. Readiness therefore follows
// CheckReachable, which asks the registry itself and never answers from the cache.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/base/call_once.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/intake/filing_validator.h"
#include "stip/v1/enterprise.pb.h"
#include "stip/v1/filing.pb.h"
#include "stip/v1/registry_service.grpc.pb.h"

namespace grpc {
class Channel;
}

namespace stip::intake {

struct RegistryClientOptions {
  // The park list is fetched again when it is older than this.
  absl::Duration parks_refresh = absl::Seconds(30);
  // A park list older than parks_refresh is still used, with a warning, while the registry
  // cannot be reached, up to this age; beyond it validation answers kUnavailable.
  absl::Duration parks_max_staleness = absl::Minutes(10);
  // How long an enterprise's enrollment and revisions are reused. Short: a filing recorded
  // meanwhile shows after at most this long (intake's own idempotency cache covers what it
  // accepted itself in the meantime).
  absl::Duration enterprise_ttl = absl::Seconds(2);
  // At most this many enterprises are cached; expired ones are dropped once per
  // enterprise_ttl, and the cache is emptied when it is full.
  size_t max_cached_enterprises = 100000;
  // The longest a single call to the registry may take, whatever the caller's deadline.
  absl::Duration call_timeout = absl::Seconds(5);
};

class RegistryClient {
 public:
  // `channel` is the registry's (MakeChannel).
  RegistryClient(std::shared_ptr<grpc::Channel> channel, RegistryClientOptions options = {});
  // The channel made by `connect` on first use: for a registry served by the same process
  // (stip-local), whose in-process channel exists only once its server has started.
  explicit RegistryClient(std::function<std::shared_ptr<grpc::Channel>()> connect,
                          RegistryClientOptions options = {});
  // For tests: the same over a stub of one's own.
  RegistryClient(std::unique_ptr<v1::RegistryService::StubInterface> stub,
                 RegistryClientOptions options);

  // The parks as a snapshot for the validator. `max_age` (default: parks_refresh) is how old
  // the snapshot may be; pass a short one to see a park registered just now. One caller
  // refreshes at a time; the others wait for it.
  absl::StatusOr<std::shared_ptr<const InMemoryParkDirectory>> Parks(
      absl::Time deadline, std::optional<absl::Duration> max_age = std::nullopt);

  // OK when the registry answers now (a fresh park list, which then refreshes the cache);
  // the registry's error otherwise, even while a cached park list is still usable. For
  // readiness: stip-intake is NOT_SERVING while this fails. Blocks until `deadline` at most.
  absl::Status CheckReachable(absl::Time deadline);

  // The enterprise, or nullopt when the registry does not know it (NOT_FOUND). Cached for
  // enterprise_ttl.
  absl::StatusOr<std::optional<v1::Enterprise>> GetEnterprise(std::string_view uscc,
                                                              absl::Time deadline);

  // The recorded filing with this id, or nullopt when none is recorded. Never cached.
  absl::StatusOr<std::optional<v1::AcceptedFiling>> GetFiling(std::string_view filing_id,
                                                              absl::Time deadline);

 private:
  struct CachedEnterprise {
    std::optional<v1::Enterprise> enterprise;
    absl::Time fetched;
  };
  absl::StatusOr<std::shared_ptr<const InMemoryParkDirectory>> FetchParks(absl::Time deadline);

  // The stub, made on first use when the client was given `connect`.
  v1::RegistryService::StubInterface* Stub();

  std::function<std::shared_ptr<grpc::Channel>()> connect_;
  absl::once_flag connected_;
  std::unique_ptr<v1::RegistryService::StubInterface> stub_;
  const RegistryClientOptions options_;

  absl::Mutex refresh_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // one park refresh at a time
  mutable absl::Mutex mu_;
  std::shared_ptr<const InMemoryParkDirectory> parks_ ABSL_GUARDED_BY(mu_);
  absl::Time parks_fetched_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::flat_hash_map<std::string, CachedEnterprise> enterprises_ ABSL_GUARDED_BY(mu_);
  absl::Time enterprises_swept_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace stip::intake
