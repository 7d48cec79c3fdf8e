// The qualification evaluator: whether an accepted filing qualifies under the policy in
// force for its fiscal year and region. Plain functions over protobuf messages: no I/O, no
// clock, no shared state; safe to call from any number of threads at once.
//
// Arithmetic is exact and integer only. A ratio a/b is held to a threshold of t basis
// points by comparing the 128-bit products a * 10000 and t * b, so a filing exactly at
// 3.00% qualifies under ">= 300" and one fen less does not, for every int64 amount.
//
// What each CriterionResult holds:
//   measured               the ratio as filed, not reduced: numerator and denominator are
//                          the filing's own amounts (R&D fen / revenue fen, degree holders or
//                          R&D staff / all employees), so a reader can check them against
//                          the filing and see the scale (3/100 would hide whether that was
//                          3 fen of 100 or 3 billion of 100 billion).
//   measured_basis_points  floor(numerator * 10000 / denominator); 0 when the denominator is
//                          0; saturates at INT64_MAX (possible only for R&D spending above
//                          about 922 trillion times the revenue); `measured` stays exact.
//   threshold_basis_points the criterion's, or for revenue bands the band the filing's
//                          gross revenue falls in (bounds are inclusive).
//   outcome                INSUFFICIENT_DATA when the denominator is 0 (no revenue for
//                          RD_INTENSITY, no employees for the shares); else PASS or FAIL.
//   shortfall              on FAIL, the least addition that would pass, exactly:
//                          RD_INTENSITY: extra R&D fen, revenue unchanged;
//                          shares: extra employees of that kind, each also counted in the
//                          total, i.e. the least k >= 0 with (a + k) / (n + k) passing.
//                          Unset when no addition passes (a share held to ">= 10000" with
//                          fewer such employees than employees, or to "> 10000": the share
//                          nears 100% as k grows but never reaches it) or when the amount
//                          exceeds INT64_MAX (only R&D held to "> 10000" of a revenue near
//                          INT64_MAX).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "services/assessment/policy.h"
#include "stip/v1/decision.pb.h"
#include "stip/v1/filing.pb.h"
#include "stip/v1/policy.pb.h"

namespace stip::assessment {

// The decision on `filing` under the policy `policies` has in force for its fiscal year
// and region. Errors: those of PolicySet::Select (kNotFound when no policy covers the
// year) and those of the overload below.
absl::StatusOr<v1::QualificationDecision> Evaluate(const v1::AcceptedFiling& filing,
                                                   const PolicySet& policies);

// The decision on `filing` under `policy`. QUALIFIED only when every criterion passes.
// Sets decision_id, the filing's identity fields, the policy's id and version, outcome,
// one CriterionResult per criterion (in the policy's order) and the explanation; leaves
// decide_time and supersedes_decision_id to the caller, who has a clock and the history.
// kInvalidArgument for an empty filing_id (the decision id is derived from it), negative
// amounts or headcounts (intake refuses them; the arithmetic assumes they are not), or a
// criterion no checked policy could hold (see EvaluateCriterion).
absl::StatusOr<v1::QualificationDecision> Evaluate(const v1::AcceptedFiling& filing,
                                                   const PolicyInForce& policy);

// One criterion held to one filing (see the top of this file). kInvalidArgument for an
// unspecified metric or comparison, a threshold outside 0..10000, or revenue bands that
// leave the filing's revenue without a band; negative amounts as Evaluate.
absl::StatusOr<v1::CriterionResult> EvaluateCriterion(const v1::Criterion& criterion,
                                                      const v1::AnnualFiling& filing);

// The threshold `criterion` sets for a filing with `gross_revenue_fen`: its own, or that of
// the first revenue band whose inclusive upper bound is at least the revenue (0: no bound).
// kInvalidArgument when no band covers the revenue.
absl::StatusOr<int32_t> ThresholdFor(const v1::Criterion& criterion, int64_t gross_revenue_fen);

// The decision id for a filing under a policy version: the first 128 bits of
// SHA-256("stip.v1.QualificationDecision" + netstring(filing_id) + netstring(policy_id) +
// decimal version), as 32 lowercase hex digits. Netstrings ("<length>:<bytes>,") keep
// ("ab", "c") apart from ("a", "bc"). The same filing revision under the same policy
// version always gets the same id, so a re-delivered filing decides to the same id.
std::string DecisionId(std::string_view filing_id, std::string_view policy_id,
                       int32_t policy_version);

}  // namespace stip::assessment
