#include "services/assessment/evaluator.h"

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include <openssl/evp.h>

namespace stip::assessment {
namespace {

// GCC's and Clang's 128-bit integer; __extension__ keeps -Wpedantic quiet about it. Every
// product below is of an int64 (< 2^63) and a factor <= 10000 (< 2^14), so < 2^77.
__extension__ typedef __int128 Int128;

constexpr int64_t kOne = 10000;  // basis points in 100%
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

// num / den against t / kOne, for den > 0: num * kOne against t * den, both exact.
bool Passes(Int128 num, Int128 den, int32_t t, v1::Comparison comparison) {
  const Int128 measured = num * kOne;
  const Int128 required = Int128{t} * den;
  return comparison == v1::COMPARISON_GREATER ? measured > required : measured >= required;
}

// ceil(a / b) for a >= 0, b > 0.
Int128 CeilDiv(Int128 a, Int128 b) { return (a + b - 1) / b; }

// The least extra R&D spending x with (spending + x) / revenue passing, revenue > 0.
// The least passing spending is ceil(t * revenue / kOne) for ">=" and one more than
// floor(t * revenue / kOne) for ">".
Int128 RdShortfall(int64_t spending, int64_t revenue, int32_t t, v1::Comparison comparison) {
  const Int128 product = Int128{t} * revenue;
  const Int128 least =
      comparison == v1::COMPARISON_GREATER ? product / kOne + 1 : CeilDiv(product, kOne);
  return least - spending;
}

// The least k >= 0 with (count + k) / (total + k) passing, or -1 when there is none.
// (count + k) * kOne >= t * (total + k)  <=>  k * (kOne - t) >= t * total - kOne * count,
// strictly for ">". With t == kOne the left side is 0 whatever k is: adding such employees
// never closes the gap.
Int128 ShareShortfall(int64_t count, int64_t total, int32_t t, v1::Comparison comparison) {
  const Int128 gap = Int128{t} * total - Int128{kOne} * count;
  const bool strict = comparison == v1::COMPARISON_GREATER;
  if (strict ? gap < 0 : gap <= 0) return 0;
  if (t == kOne) return -1;
  const Int128 room = kOne - t;
  return strict ? gap / room + 1 : CeilDiv(gap, room);
}

absl::Status CheckNotNegative(const v1::AnnualFiling& filing) {
  std::vector<std::string> negative;
  if (filing.gross_revenue_fen() < 0) negative.push_back("gross_revenue_fen");
  if (filing.rd_expenditure_fen() < 0) negative.push_back("rd_expenditure_fen");
  if (filing.total_employees() < 0) negative.push_back("total_employees");
  if (filing.tertiary_educated_employees() < 0) negative.push_back("tertiary_educated_employees");
  if (filing.rd_employees() < 0) negative.push_back("rd_employees");
  if (negative.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("filing has negative ", absl::StrJoin(negative, ", ")));
}

absl::string_view Label(v1::Metric metric) {
  switch (metric) {
    case v1::METRIC_RD_INTENSITY:
      return "R&D intensity";
    case v1::METRIC_TERTIARY_SHARE:
      return "tertiary-degree share";
    case v1::METRIC_RD_STAFF_SHARE:
      return "R&D staff share";
    default:
      return "unknown metric";
  }
}

std::string Percent(int64_t basis_points) {
  const int64_t hundredths = basis_points % 100;
  return absl::StrCat(basis_points / 100, hundredths < 10 ? ".0" : ".", hundredths, "%");
}

// 1234567 -> "1,234,567".
std::string Grouped(int64_t value) {
  const std::string digits = absl::StrCat(value);
  std::string grouped;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) grouped.push_back(',');
    grouped.push_back(digits[i]);
  }
  return grouped;
}

// "(short by 150 fen, CNY 1.50)": the fen are what the shortfall field holds; from one yuan
// up the amount in CNY is added because that is how a reader thinks of it.
std::string ShortfallText(const v1::CriterionResult& result) {
  const v1::Shortfall& shortfall = result.shortfall();
  switch (shortfall.amount_case()) {
    case v1::Shortfall::kRdExpenditureFen: {
      const int64_t fen = shortfall.rd_expenditure_fen();
      std::string text = absl::StrCat("short by ", fen, " fen");
      if (fen >= 100) {
        absl::StrAppend(&text, ", CNY ", Grouped(fen / 100), fen % 100 < 10 ? ".0" : ".",
                        fen % 100);
      }
      return text;
    }
    case v1::Shortfall::kEmployees: {
      const int64_t k = shortfall.employees();
      const bool one = k == 1;
      return result.metric() == v1::METRIC_TERTIARY_SHARE
                 ? absl::StrCat("short by ", k, one ? " employee" : " employees",
                                " with a tertiary degree")
                 : absl::StrCat("short by ", k, one ? " R&D employee" : " R&D employees");
    }
    case v1::Shortfall::AMOUNT_NOT_SET:
      break;
  }
  return result.metric() == v1::METRIC_RD_INTENSITY
             ? "no R&D expenditure up to 9223372036854775807 fen would pass"
             : "no number of added employees would pass";
}

// "R&D intensity 2.99% < 3.00% (short by 1 fen)"; comparisons are shown as they came out.
std::string Explain(const v1::CriterionResult& result) {
  const absl::string_view label = Label(result.metric());
  const bool strict = result.comparison() == v1::COMPARISON_GREATER;
  const std::string threshold = Percent(result.threshold_basis_points());
  switch (result.outcome()) {
    case v1::CRITERION_OUTCOME_PASS:
      return absl::StrCat(label, " ", Percent(result.measured_basis_points()),
                          strict ? " > " : " >= ", threshold);
    case v1::CRITERION_OUTCOME_FAIL:
      return absl::StrCat(label, " ", Percent(result.measured_basis_points()),
                          strict ? " <= " : " < ", threshold, " (", ShortfallText(result), ")");
    default:
      return absl::StrCat(
          label, " cannot be measured: ",
          result.metric() == v1::METRIC_RD_INTENSITY ? "gross revenue is 0 fen" : "no employees");
  }
}

}  // namespace

absl::StatusOr<int32_t> ThresholdFor(const v1::Criterion& criterion, int64_t gross_revenue_fen) {
  if (criterion.revenue_bands().empty()) return criterion.threshold_basis_points();
  for (const v1::RevenueBand& band : criterion.revenue_bands()) {
    if (band.revenue_up_to_fen() == 0 || gross_revenue_fen <= band.revenue_up_to_fen()) {
      return band.threshold_basis_points();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("no revenue band covers gross revenue ",
                                                 gross_revenue_fen,
                                                 " fen (the last band is not open)"));
}

absl::StatusOr<v1::CriterionResult> EvaluateCriterion(const v1::Criterion& criterion,
                                                      const v1::AnnualFiling& filing) {
  if (absl::Status status = CheckNotNegative(filing); !status.ok()) return status;
  if (criterion.comparison() != v1::COMPARISON_GREATER_OR_EQUAL &&
      criterion.comparison() != v1::COMPARISON_GREATER) {
    return absl::InvalidArgumentError(
        absl::StrCat("criterion ", v1::Metric_Name(criterion.metric()), " has no comparison"));
  }
  absl::StatusOr<int32_t> threshold = ThresholdFor(criterion, filing.gross_revenue_fen());
  if (!threshold.ok()) return threshold.status();
  const int32_t t = *threshold;
  if (t < 0 || t > kOne) {
    return absl::InvalidArgumentError(
        absl::StrCat("criterion ", v1::Metric_Name(criterion.metric()), " has threshold ", t,
                     " basis points, outside 0..10000"));
  }
  int64_t num = 0;
  int64_t den = 0;
  switch (criterion.metric()) {
    case v1::METRIC_RD_INTENSITY:
      num = filing.rd_expenditure_fen();
      den = filing.gross_revenue_fen();
      break;
    case v1::METRIC_TERTIARY_SHARE:
      num = filing.tertiary_educated_employees();
      den = filing.total_employees();
      break;
    case v1::METRIC_RD_STAFF_SHARE:
      num = filing.rd_employees();
      den = filing.total_employees();
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("criterion has unknown metric ", criterion.metric()));
  }

  v1::CriterionResult result;
  result.set_metric(criterion.metric());
  result.mutable_measured()->set_numerator(num);
  result.mutable_measured()->set_denominator(den);
  result.set_comparison(criterion.comparison());
  result.set_threshold_basis_points(t);
  if (den == 0) {
    result.set_measured_basis_points(0);
    result.set_outcome(v1::CRITERION_OUTCOME_INSUFFICIENT_DATA);
    return result;
  }
  const Int128 basis_points = Int128{num} * kOne / den;
  result.set_measured_basis_points(basis_points > kInt64Max ? kInt64Max
                                                            : static_cast<int64_t>(basis_points));
  if (Passes(num, den, t, criterion.comparison())) {
    result.set_outcome(v1::CRITERION_OUTCOME_PASS);
    return result;
  }
  result.set_outcome(v1::CRITERION_OUTCOME_FAIL);
  const Int128 shortfall = criterion.metric() == v1::METRIC_RD_INTENSITY
                               ? RdShortfall(num, den, t, criterion.comparison())
                               : ShareShortfall(num, den, t, criterion.comparison());
  if (shortfall >= 0 && shortfall <= kInt64Max) {
    const auto amount = static_cast<int64_t>(shortfall);
    if (criterion.metric() == v1::METRIC_RD_INTENSITY) {
      result.mutable_shortfall()->set_rd_expenditure_fen(amount);
    } else {
      result.mutable_shortfall()->set_employees(amount);
    }
  }
  return result;
}

absl::StatusOr<v1::QualificationDecision> Evaluate(const v1::AcceptedFiling& accepted,
                                                   const PolicyInForce& policy) {
  if (policy.policy == nullptr) {
    return absl::InvalidArgumentError("no policy to evaluate the filing against");
  }
  if (accepted.filing_id().empty()) {
    return absl::InvalidArgumentError("filing_id is empty; the decision id is derived from it");
  }
  const v1::AnnualFiling& filing = accepted.filing();
  v1::QualificationDecision decision;
  decision.set_decision_id(
      DecisionId(accepted.filing_id(), policy.policy->policy_id(), policy.policy->version()));
  decision.set_filing_id(accepted.filing_id());
  decision.set_uscc(filing.uscc());
  decision.set_park_id(filing.park_id());
  decision.set_region(accepted.region());
  decision.set_fiscal_year(filing.fiscal_year());
  decision.set_filing_revision(filing.revision());
  decision.set_policy_id(policy.policy->policy_id());
  decision.set_policy_version(policy.policy->version());

  bool qualified = true;
  std::vector<std::string> explained;
  for (const v1::Criterion& criterion : policy.criteria) {
    absl::StatusOr<v1::CriterionResult> result = EvaluateCriterion(criterion, filing);
    if (!result.ok()) {
      return absl::Status(result.status().code(),
                          absl::StrCat("policy ", policy.policy->policy_id(), " version ",
                                       policy.policy->version(), ": ", result.status().message()));
    }
    const bool passed = result->outcome() == v1::CRITERION_OUTCOME_PASS;
    // A qualified decision shows every criterion; a refusal names only what failed.
    if (!passed && qualified) explained.clear();
    if (!passed || qualified) explained.push_back(Explain(*result));
    qualified = qualified && passed;
    *decision.add_criteria() = *std::move(result);
  }
  // A policy without criteria cannot be loaded; refusing beats qualifying on no evidence.
  if (policy.criteria.empty()) qualified = false;
  decision.set_outcome(qualified ? v1::DECISION_OUTCOME_QUALIFIED
                                 : v1::DECISION_OUTCOME_NOT_QUALIFIED);
  decision.set_explanation(absl::StrCat(
      qualified ? "QUALIFIED: " : "NOT_QUALIFIED: ",
      explained.empty() ? "the policy has no criteria" : absl::StrJoin(explained, "; ")));
  return decision;
}

absl::StatusOr<v1::QualificationDecision> Evaluate(const v1::AcceptedFiling& filing,
                                                   const PolicySet& policies) {
  absl::StatusOr<PolicyInForce> policy =
      policies.Select(filing.filing().fiscal_year(), filing.region());
  if (!policy.ok()) return policy.status();
  return Evaluate(filing, *policy);
}

std::string DecisionId(std::string_view filing, std::string_view policy, int32_t policy_version) {
  // Debian's Abseil has its own string_view type, which StrCat needs.
  const absl::string_view filing_id(filing.data(), filing.size());
  const absl::string_view policy_id(policy.data(), policy.size());
  const std::string input =
      absl::StrCat("stip.v1.QualificationDecision", filing_id.size(), ":", filing_id, ",",
                   policy_id.size(), ":", policy_id, ",", policy_version);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &size, EVP_sha256(), nullptr) != 1 ||
      size < 16) {
    // Only a broken OpenSSL installation fails SHA-256; no decision can be made without ids.
    std::fputs("stip: OpenSSL cannot compute SHA-256; the installation is broken\n", stderr);
    std::abort();
  }
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), 16));
}

}  // namespace stip::assessment
