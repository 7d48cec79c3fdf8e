#include "services/assessment/assessment_service.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/timestamp.pb.h"
#include "services/assessment/evaluator.h"
#include "services/common/grpc_server.h"
#include "services/intake/filing_intake.h"
#include "services/intake/filing_validator.h"
#include "services/intake/violation_codes.h"

namespace stip::assessment {
namespace {

constexpr absl::string_view kTokenPrefix = "after-year:";

std::string PageToken(int32_t last_first_fiscal_year) {
  return absl::WebSafeBase64Escape(absl::StrCat(kTokenPrefix, last_first_fiscal_year));
}

// The first fiscal year of the last policy served; nullopt for a token we did not give.
std::optional<int32_t> ParsePageToken(const std::string& token) {
  std::string text;
  int32_t year = 0;
  if (!absl::WebSafeBase64Unescape(token, &text) || !absl::StartsWith(text, kTokenPrefix) ||
      !absl::SimpleAtoi(absl::string_view(text).substr(kTokenPrefix.size()), &year)) {
    return std::nullopt;
  }
  return year;
}

// The parks of the dry run: the assessment asks no other service, so a well-formed park id
// (the validator checks its format) is taken for a park of unknown founding year, and only
// intake, which asks the registry, refuses a park that does not exist.
class AnyWellFormedPark final : public intake::ParkDirectory {
 public:
  std::optional<intake::ParkFacts> Find(std::string_view /*park_id*/) const override {
    return intake::ParkFacts{};
  }
};

google::protobuf::Timestamp ToTimestamp(absl::Time time) {
  google::protobuf::Timestamp timestamp;
  const absl::Time seconds = absl::FromUnixSeconds(absl::ToUnixSeconds(time));
  // ToUnixSeconds rounds toward negative infinity, so the nanos are in [0, 1e9).
  timestamp.set_seconds(absl::ToUnixSeconds(time));
  timestamp.set_nanos(static_cast<int32_t>((time - seconds) / absl::Nanoseconds(1)));
  return timestamp;
}

}  // namespace

absl::StatusOr<v1::EvaluateFilingResponse> EvaluateDraft(const v1::EvaluateFilingRequest& request,
                                                         const PolicySet& policies,
                                                         absl::Time now) {
  const bool region_known = v1::EconomicRegion_IsValid(request.region());
  const std::string region_message =
      absl::StrCat("is not a known economic region (", static_cast<int>(request.region()), ")");
  if (!request.has_filing()) {
    std::vector<FieldViolation> violations = {
        {"filing", "is required: the draft annual filing to evaluate"}};
    if (!region_known) violations.push_back({"region", region_message});
    return InvalidArgumentWithViolations("the draft filing cannot be evaluated", violations);
  }
  // Intake's own validator, so a draft is judged by the rules its filing will be.
  v1::AnnualFiling draft = request.filing();
  if (draft.revision() == 0) draft.set_revision(1);
  static const AnyWellFormedPark kParks;
  intake::ValidationResult validation =
      intake::ValidateFiling(draft, kParks, intake::ValidationOptions::ForTime(now));
  if (!region_known) {
    v1::FilingViolation violation;
    violation.set_reason(std::string(intake::reason::kEnumUnknown));
    violation.set_field("region");
    violation.set_message(region_message);
    violation.set_message_zh(
        absl::StrCat("不是已知的经济区域（", static_cast<int>(request.region()), "）"));
    validation.violations.push_back(std::move(violation));
  }
  if (!validation.ok()) return intake::InvalidFiling(std::move(validation.violations)).ToStatus();

  const v1::AnnualFiling& filing = draft;
  v1::AcceptedFiling accepted;
  *accepted.mutable_filing() = draft;
  accepted.set_filing_id(
      FilingIdFor(filing.uscc(), filing.fiscal_year(), accepted.filing().revision()));
  accepted.set_region(request.region());
  absl::StatusOr<v1::QualificationDecision> decision = Evaluate(accepted, policies);
  if (absl::IsNotFound(decision.status())) {
    // Unlike the stream, a caller can act on this: the year is the field to look at.
    return InvalidArgumentWithViolations(
        absl::StrCat("no qualification policy covers fiscal year ", filing.fiscal_year()),
        {{"filing.fiscal_year", "no qualification policy covers this fiscal year"}});
  }
  if (!decision.ok()) return decision.status();
  *decision->mutable_decide_time() = ToTimestamp(now);
  v1::EvaluateFilingResponse response;
  *response.mutable_decision() = *std::move(decision);
  return response;
}

absl::StatusOr<v1::ListPoliciesResponse> ListPolicies(const v1::ListPoliciesRequest& request,
                                                      const PolicySet& policies) {
  if (request.page_size() < 0) {
    return InvalidArgumentWithViolations("page_size must not be negative",
                                         {{"page_size", "must be 0 (the default, 50) or more"}});
  }
  const int32_t page_size =
      request.page_size() == 0 ? kDefaultPageSize : std::min(request.page_size(), kMaxPageSize);
  std::optional<int32_t> after;
  if (!request.page_token().empty()) {
    after = ParsePageToken(request.page_token());
    if (!after.has_value()) {
      return InvalidArgumentWithViolations(
          "page_token is not one this service gave",
          {{"page_token", "must be empty or a next_page_token of an earlier response"}});
    }
  }
  v1::ListPoliciesResponse response;
  const absl::Span<const v1::Policy> all = policies.List();  // in fiscal-year order
  for (size_t i = 0; i < all.size(); ++i) {
    if (after.has_value() && all[i].first_fiscal_year() <= *after) continue;
    if (response.policies_size() == page_size) {
      response.set_next_page_token(
          PageToken(response.policies(response.policies_size() - 1).first_fiscal_year()));
      break;
    }
    *response.add_policies() = all[i];
  }
  return response;
}

absl::StatusOr<v1::GetPolicyResponse> GetPolicy(const v1::GetPolicyRequest& request,
                                                const PolicySet& policies) {
  std::vector<FieldViolation> violations;
  if (request.policy_id().empty()) {
    violations.push_back({"policy_id", "is required, e.g. stip-default"});
  }
  if (request.version() < 0) {
    violations.push_back({"version", "must be 1 or more, or 0 for the newest version"});
  }
  if (!violations.empty()) {
    return InvalidArgumentWithViolations("the policy cannot be looked up", violations);
  }
  absl::StatusOr<const v1::Policy*> policy = policies.Get(request.policy_id(), request.version());
  if (!policy.ok()) return policy.status();
  v1::GetPolicyResponse response;
  *response.mutable_policy() = **policy;
  return response;
}

grpc::Status AssessmentServiceImpl::EvaluateFiling(grpc::ServerContext* /*context*/,
                                                   const v1::EvaluateFilingRequest* request,
                                                   v1::EvaluateFilingResponse* response) {
  absl::StatusOr<v1::EvaluateFilingResponse> result =
      EvaluateDraft(*request, *policies_->Current(), absl::Now());
  if (!result.ok()) return StatusToGrpc(result.status());
  *response = *std::move(result);
  return StatusToGrpc(absl::OkStatus());
}

grpc::Status AssessmentServiceImpl::ListPolicies(grpc::ServerContext* /*context*/,
                                                 const v1::ListPoliciesRequest* request,
                                                 v1::ListPoliciesResponse* response) {
  absl::StatusOr<v1::ListPoliciesResponse> result =
      assessment::ListPolicies(*request, *policies_->Current());
  if (!result.ok()) return StatusToGrpc(result.status());
  *response = *std::move(result);
  return StatusToGrpc(absl::OkStatus());
}

grpc::Status AssessmentServiceImpl::GetPolicy(grpc::ServerContext* /*context*/,
                                              const v1::GetPolicyRequest* request,
                                              v1::GetPolicyResponse* response) {
  absl::StatusOr<v1::GetPolicyResponse> result =
      assessment::GetPolicy(*request, *policies_->Current());
  if (!result.ok()) return StatusToGrpc(result.status());
  *response = *std::move(result);
  return StatusToGrpc(absl::OkStatus());
}

}  // namespace stip::assessment
