#include "services/intake/registry_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "services/common/grpc_server.h"
#include "spdlog/spdlog.h"

namespace stip::intake {
namespace {

constexpr int kParksPageSize = 1000;

void SetDeadline(grpc::ClientContext& context, absl::Time deadline, absl::Duration call_timeout) {
  context.set_deadline(absl::ToChronoTime(std::min(deadline, absl::Now() + call_timeout)));
}

// Everything but NOT_FOUND means "cannot tell": the caller must not decide on it.
absl::Status RegistryError(std::string_view what, const grpc::Status& status) {
  const absl::StatusCode code = status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                                    ? absl::StatusCode::kDeadlineExceeded
                                    : absl::StatusCode::kUnavailable;
  return absl::Status(code, absl::StrCat("the registry could not be asked for ", std::string(what),
                                         ": ", status.error_message()));
}

}  // namespace

RegistryClient::RegistryClient(std::shared_ptr<grpc::Channel> channel,
                               RegistryClientOptions options)
    : RegistryClient(v1::RegistryService::NewStub(std::move(channel)), options) {}

RegistryClient::RegistryClient(std::unique_ptr<v1::RegistryService::StubInterface> stub,
                               RegistryClientOptions options)
    : stub_(std::move(stub)), options_(options) {}

RegistryClient::RegistryClient(std::function<std::shared_ptr<grpc::Channel>()> connect,
                               RegistryClientOptions options)
    : connect_(std::move(connect)), options_(options) {}

v1::RegistryService::StubInterface* RegistryClient::Stub() {
  absl::call_once(connected_, [this] {
    if (stub_ == nullptr) stub_ = v1::RegistryService::NewStub(connect_());
  });
  return stub_.get();
}

absl::StatusOr<std::shared_ptr<const InMemoryParkDirectory>> RegistryClient::FetchParks(
    absl::Time deadline) {
  absl::flat_hash_map<std::string, ParkFacts> parks;
  v1::ListParksRequest request;
  request.set_page_size(kParksPageSize);
  do {
    grpc::ClientContext context;
    SetDeadline(context, deadline, options_.call_timeout);
    v1::ListParksResponse response;
    const grpc::Status status = Stub()->ListParks(&context, request, &response);
    if (!status.ok()) return RegistryError("the parks", status);
    for (const v1::Park& park : response.parks()) {
      parks[park.park_id()] = ParkFacts{park.year_founded(), park.region()};
    }
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return std::make_shared<const InMemoryParkDirectory>(std::move(parks));
}

absl::StatusOr<std::shared_ptr<const InMemoryParkDirectory>> RegistryClient::Parks(
    absl::Time deadline, std::optional<absl::Duration> max_age) {
  const absl::Duration age_limit = max_age.value_or(options_.parks_refresh);
  {
    absl::MutexLock lock(&mu_);
    if (parks_ != nullptr && absl::Now() - parks_fetched_ <= age_limit) return parks_;
  }
  absl::MutexLock refresh(&refresh_mu_);
  const absl::Time started = absl::Now();
  {
    // Another caller may have refreshed while this one waited for refresh_mu_.
    absl::MutexLock lock(&mu_);
    if (parks_ != nullptr && started - parks_fetched_ <= age_limit) return parks_;
  }
  absl::StatusOr<std::shared_ptr<const InMemoryParkDirectory>> fetched = FetchParks(deadline);
  absl::MutexLock lock(&mu_);
  if (fetched.ok()) {
    parks_ = *fetched;
    parks_fetched_ = started;
    return parks_;
  }
  if (parks_ != nullptr && started - parks_fetched_ <= options_.parks_max_staleness) {
    spdlog::warn("using the park list of {} ago: {}",
                 absl::FormatDuration(started - parks_fetched_), fetched.status().ToString());
    return parks_;
  }
  return fetched.status();
}

absl::Status RegistryClient::CheckReachable(absl::Time deadline) {
  const absl::Time started = absl::Now();
  absl::StatusOr<std::shared_ptr<const InMemoryParkDirectory>> fetched = FetchParks(deadline);
  if (!fetched.ok()) return fetched.status();
  absl::MutexLock lock(&mu_);
  if (started > parks_fetched_) {
    parks_ = *std::move(fetched);
    parks_fetched_ = started;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<v1::Enterprise>> RegistryClient::GetEnterprise(std::string_view uscc,
                                                                            absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    auto it = enterprises_.find(absl::string_view(uscc.data(), uscc.size()));
    if (it != enterprises_.end() && absl::Now() - it->second.fetched <= options_.enterprise_ttl) {
      return it->second.enterprise;
    }
  }
  const absl::Time started = absl::Now();
  grpc::ClientContext context;
  SetDeadline(context, deadline, options_.call_timeout);
  v1::GetEnterpriseRequest request;
  request.set_uscc(std::string(uscc));
  v1::GetEnterpriseResponse response;
  const grpc::Status status = Stub()->GetEnterprise(&context, request, &response);
  std::optional<v1::Enterprise> enterprise;
  if (status.ok()) {
    enterprise = std::move(*response.mutable_enterprise());
  } else if (status.error_code() != grpc::StatusCode::NOT_FOUND) {
    return RegistryError(absl::StrCat("enterprise ", std::string(uscc)), status);
  }
  absl::MutexLock lock(&mu_);
  // Expired entries go once per TTL, so that a bulk upload over many enterprises keeps
  // only the last TTL's worth; the size limit holds against a burst within one TTL.
  if (started - enterprises_swept_ > options_.enterprise_ttl) {
    for (auto it = enterprises_.begin(); it != enterprises_.end();) {
      if (started - it->second.fetched > options_.enterprise_ttl) {
        enterprises_.erase(it++);
      } else {
        ++it;
      }
    }
    enterprises_swept_ = started;
  }
  if (enterprises_.size() >= options_.max_cached_enterprises) enterprises_.clear();
  enterprises_[std::string(uscc)] = CachedEnterprise{enterprise, started};
  return enterprise;
}

absl::StatusOr<std::optional<v1::AcceptedFiling>> RegistryClient::GetFiling(
    std::string_view filing_id, absl::Time deadline) {
  grpc::ClientContext context;
  SetDeadline(context, deadline, options_.call_timeout);
  v1::GetFilingRequest request;
  request.set_filing_id(std::string(filing_id));
  v1::GetFilingResponse response;
  const grpc::Status status = Stub()->GetFiling(&context, request, &response);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) return std::nullopt;
  if (!status.ok()) return RegistryError(absl::StrCat("filing ", std::string(filing_id)), status);
  return std::move(*response.mutable_filing());
}

}  // namespace stip::intake
