// AssessmentService (proto/stip/v1/assessment_service.proto): the dry run of a draft filing
// and the policies in force. The logic is in plain functions over a PolicySet; the service
// class takes a snapshot of the policies per call and translates statuses with
// StatusToGrpc (field violations as google.rpc.BadRequest).
//
// Threads: the service is called on gRPC's threads, any number at once; it shares the
// PolicyStore (thread-safe) with the decision stream. Nothing blocks on I/O and nothing is
// published: EvaluateFiling decides what a filing would get, it files nothing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"
#include "services/assessment/policy.h"
#include "services/assessment/policy_store.h"
#include "services/common/filing_id.h"
#include "stip/v1/assessment_service.grpc.pb.h"

namespace stip::assessment {

// ListPolicies: the page size when the request gives none, and the most one page holds
// (a larger page_size is served as this, per AIP-158).
inline constexpr int32_t kDefaultPageSize = 50;
inline constexpr int32_t kMaxPageSize = 100;

// The decision `request.filing` would get under `policies` at `now`, as the stream would
// make it, with the filing id of FilingIdFor (a draft's revision 0 is taken as 1), no
// supersedes link (a draft has no history) and the region overrides of `request.region`
// (unset: the policy's own criteria; this service does not ask the registry). The draft is
// checked by intake's validator (intake::ValidateFiling, the one IntakeService applies), so
// it gets the same field violations a submission would: kInvalidArgument with
// google.rpc.BadRequest (description "REASON: message"), plus one on `region` for an unknown
// region. Only what needs the registry is not checked here: that the park exists (a
// well-formed park id is taken for a park of unknown founding year, so fiscal years from
// 1988 on pass) and the enterprise's enrollment and revisions. kInvalidArgument also for a fiscal
// year no policy covers.
absl::StatusOr<v1::EvaluateFilingResponse> EvaluateDraft(const v1::EvaluateFilingRequest& request,
                                                         const PolicySet& policies, absl::Time now);

// The policies in the order of their fiscal years, a page at a time. The page token names
// the last fiscal-year range served, so paging stays consistent across a reload (a policy
// added before the cursor is not served, none is served twice). kInvalidArgument for a
// negative page_size or a token this service did not give.
absl::StatusOr<v1::ListPoliciesResponse> ListPolicies(const v1::ListPoliciesRequest& request,
                                                      const PolicySet& policies);

// One policy by id and version (0: the newest). kInvalidArgument for an empty id or a
// negative version, kNotFound when there is no such policy.
absl::StatusOr<v1::GetPolicyResponse> GetPolicy(const v1::GetPolicyRequest& request,
                                                const PolicySet& policies);

class AssessmentServiceImpl final : public v1::AssessmentService::Service {
 public:
  // `policies` outlives the service.
  explicit AssessmentServiceImpl(const PolicyStore* policies) : policies_(policies) {}

  grpc::Status EvaluateFiling(grpc::ServerContext* context,
                              const v1::EvaluateFilingRequest* request,
                              v1::EvaluateFilingResponse* response) override;
  grpc::Status ListPolicies(grpc::ServerContext* context, const v1::ListPoliciesRequest* request,
                            v1::ListPoliciesResponse* response) override;
  grpc::Status GetPolicy(grpc::ServerContext* context, const v1::GetPolicyRequest* request,
                         v1::GetPolicyResponse* response) override;

 private:
  const PolicyStore* const policies_;
};

}  // namespace stip::assessment
