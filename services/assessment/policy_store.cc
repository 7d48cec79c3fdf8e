#include "services/assessment/policy_store.h"

#include <utility>

#include "services/common/metrics.h"
#include "spdlog/spdlog.h"

namespace stip::assessment {
namespace {

prometheus::Family<prometheus::Counter>& Reloads() {
  static auto& family = prometheus::BuildCounter()
                            .Name("stip_policy_reloads_total")
                            .Help("Policy reloads (SIGHUP), by result: ok or refused")
                            .Register(MetricsRegistry());
  return family;
}

prometheus::Gauge& PoliciesLoaded() {
  static auto& gauge = prometheus::BuildGauge()
                           .Name("stip_policies_loaded")
                           .Help("Qualification policies in force")
                           .Register(MetricsRegistry())
                           .Add({});
  return gauge;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PolicyStore>> PolicyStore::Open(std::filesystem::path directory) {
  absl::StatusOr<PolicySet> policies = PolicySet::Load(directory);
  if (!policies.ok()) return policies.status();
  return std::make_unique<PolicyStore>(*std::move(policies), std::move(directory));
}

PolicyStore::PolicyStore(PolicySet policies, std::filesystem::path directory)
    : directory_(std::move(directory)) {
  Install(std::make_shared<const PolicySet>(std::move(policies)));
}

std::shared_ptr<const PolicySet> PolicyStore::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

absl::Status PolicyStore::Reload() {
  absl::MutexLock reload(&reload_mu_);
  if (directory_.empty()) {
    Reloads().Add({{"result", "refused"}}).Increment();
    return absl::FailedPreconditionError("these policies were not loaded from a directory");
  }
  // Read and checked before the swap, outside mu_: readers never wait for the disk.
  absl::StatusOr<PolicySet> policies = PolicySet::Load(directory_);
  if (!policies.ok()) {
    Reloads().Add({{"result", "refused"}}).Increment();
    return policies.status();
  }
  Install(std::make_shared<const PolicySet>(*std::move(policies)));
  Reloads().Add({{"result", "ok"}}).Increment();
  return absl::OkStatus();
}

void PolicyStore::Install(std::shared_ptr<const PolicySet> policies) {
  PoliciesLoaded().Set(static_cast<double>(policies->List().size()));
  {
    absl::MutexLock lock(&mu_);
    current_.swap(policies);
  }
  // The old set is freed here, outside the lock, or later by the last reader holding it.
  policies.reset();
}

std::function<void()> PolicyReloader(PolicyStore* store) {
  return [store] {
    const std::string directory = store->directory().string();
    if (absl::Status reloaded = store->Reload(); reloaded.ok()) {
      spdlog::info("policies reloaded: {} in force from {}", store->Current()->List().size(),
                   directory);
    } else {
      spdlog::error("policies in {} refused, the ones in force are kept: {}", directory,
                    reloaded.ToString());
    }
  };
}

}  // namespace stip::assessment
