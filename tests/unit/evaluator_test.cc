// The evaluator: a boundary table (exact thresholds, band edges, extremes, shortfalls), the
// decision it builds, and a property test against an independent oracle on a million
// random filings. The oracle is GMP's exact rationals: it compares the fraction itself
// with t/10000 instead of cross-multiplying, and checks a shortfall by its definition
// (adding it passes, one less does not) instead of by a formula.
#include "services/assessment/evaluator.h"

#include <gmpxx.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/assessment/policy.h"
#include "tests/support/test_environment.h"

namespace stip::assessment {
namespace {

using ::testing::HasSubstr;

// For the generator only (the oracle is GMP); __extension__ keeps -Wpedantic quiet.
__extension__ typedef __int128 Int128;

constexpr int64_t kMax64 = std::numeric_limits<int64_t>::max();
constexpr int32_t kMax32 = std::numeric_limits<int32_t>::max();
constexpr auto kGe = v1::COMPARISON_GREATER_OR_EQUAL;
constexpr auto kGt = v1::COMPARISON_GREATER;
constexpr auto kRd = v1::METRIC_RD_INTENSITY;
constexpr auto kTertiary = v1::METRIC_TERTIARY_SHARE;
constexpr auto kStaff = v1::METRIC_RD_STAFF_SHARE;
constexpr auto kPass = v1::CRITERION_OUTCOME_PASS;
constexpr auto kFail = v1::CRITERION_OUTCOME_FAIL;
constexpr auto kNoData = v1::CRITERION_OUTCOME_INSUFFICIENT_DATA;

std::filesystem::path RepoPolicies() { return testing::SourcePath("policies"); }

v1::AnnualFiling Filing(int64_t revenue, int64_t rd, int32_t total, int32_t tertiary,
                        int32_t rd_staff) {
  v1::AnnualFiling filing;
  filing.set_uscc("91650100MA77ABCD1X");
  filing.set_park_id("urumqi-hnz");
  filing.set_fiscal_year(2024);
  filing.set_revision(1);
  filing.set_gross_revenue_fen(revenue);
  filing.set_rd_expenditure_fen(rd);
  filing.set_total_employees(total);
  filing.set_tertiary_educated_employees(tertiary);
  filing.set_rd_employees(rd_staff);
  return filing;
}

v1::AnnualFiling RdFiling(int64_t revenue, int64_t rd) { return Filing(revenue, rd, 10, 3, 1); }

v1::AnnualFiling ShareFiling(int32_t total, int32_t count) {
  return Filing(10000, 300, total, count, count);
}

v1::Criterion MakeCriterion(v1::Metric metric, v1::Comparison comparison, int32_t threshold) {
  v1::Criterion criterion;
  criterion.set_metric(metric);
  criterion.set_comparison(comparison);
  criterion.set_threshold_basis_points(threshold);
  return criterion;
}

v1::CriterionResult Judge(const v1::Criterion& criterion, const v1::AnnualFiling& filing) {
  absl::StatusOr<v1::CriterionResult> result = EvaluateCriterion(criterion, filing);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : v1::CriterionResult();
}

// `filing` with `amount` more of what `criterion` measures: R&D fen, or employees of that
// kind who also count in the total; nullopt when the filing's fields cannot hold it.
std::optional<v1::AnnualFiling> Add(const v1::Criterion& criterion, v1::AnnualFiling filing,
                                    int64_t amount) {
  if (criterion.metric() == kRd) {
    if (filing.rd_expenditure_fen() > kMax64 - amount) return std::nullopt;
    filing.set_rd_expenditure_fen(filing.rd_expenditure_fen() + amount);
    return filing;
  }
  if (filing.total_employees() > kMax32 - amount) return std::nullopt;
  const auto k = static_cast<int32_t>(amount);
  filing.set_total_employees(filing.total_employees() + k);
  if (criterion.metric() == kTertiary) {
    filing.set_tertiary_educated_employees(filing.tertiary_educated_employees() + k);
  } else {
    filing.set_rd_employees(filing.rd_employees() + k);
  }
  return filing;
}

int64_t Amount(const v1::Shortfall& shortfall) {
  return shortfall.has_rd_expenditure_fen() ? shortfall.rd_expenditure_fen()
                                            : shortfall.employees();
}

// One row of the boundary table. shortfall: -1 for none.
struct Row {
  const char* name;
  v1::Criterion criterion;
  v1::AnnualFiling filing;
  v1::CriterionOutcome outcome;
  int64_t basis_points;
  int64_t shortfall;
};

void CheckRow(const Row& row) {
  SCOPED_TRACE(row.name);
  const v1::CriterionResult result = Judge(row.criterion, row.filing);
  EXPECT_EQ(result.outcome(), row.outcome);
  EXPECT_EQ(result.measured_basis_points(), row.basis_points);
  EXPECT_EQ(result.comparison(), row.criterion.comparison());
  if (row.shortfall < 0) {
    EXPECT_EQ(result.shortfall().amount_case(), v1::Shortfall::AMOUNT_NOT_SET);
    return;
  }
  ASSERT_EQ(result.shortfall().amount_case(), row.criterion.metric() == kRd
                                                  ? v1::Shortfall::kRdExpenditureFen
                                                  : v1::Shortfall::kEmployees);
  EXPECT_EQ(Amount(result.shortfall()), row.shortfall);
  // Exact: with the shortfall added the criterion passes, with one less it still fails.
  if (std::optional<v1::AnnualFiling> enough = Add(row.criterion, row.filing, row.shortfall)) {
    EXPECT_EQ(Judge(row.criterion, *enough).outcome(), kPass);
    EXPECT_EQ(Judge(row.criterion, *Add(row.criterion, row.filing, row.shortfall - 1)).outcome(),
              kFail);
  }
}

TEST(EvaluatorTest, BoundaryTable) {
  const v1::Criterion rd = MakeCriterion(kRd, kGe, 300);
  const v1::Criterion tertiary = MakeCriterion(kTertiary, kGe, 3000);
  const v1::Criterion staff = MakeCriterion(kStaff, kGe, 1000);
  const Row rows[] = {
      {"R&D exactly 3.00%", rd, RdFiling(10000, 300), kPass, 300, -1},
      {"R&D one fen below 3.00%", rd, RdFiling(10000, 299), kFail, 299, 1},
      {"R&D exactly 3.00% of CNY 10 million", rd, RdFiling(1'000'000'000, 30'000'000), kPass, 300,
       -1},
      {"R&D one fen below 3.00% of CNY 10 million", rd, RdFiling(1'000'000'000, 29'999'999), kFail,
       299, 1},
      {"revenue not a multiple of 100, just enough", rd, RdFiling(10001, 301), kPass, 300, -1},
      {"revenue not a multiple of 100, one fen short", rd, RdFiling(10001, 300), kFail, 299, 1},
      {"revenue INT64_MAX, just enough", rd, RdFiling(kMax64, 276701161105643275), kPass, 300, -1},
      {"revenue INT64_MAX, one fen short", rd, RdFiling(kMax64, 276701161105643274), kFail, 299, 1},
      {"revenue INT64_MAX, no R&D", rd, RdFiling(kMax64, 0), kFail, 0, 276701161105643275},
      {"revenue INT64_MAX, 1 fen of R&D", rd, RdFiling(kMax64, 1), kFail, 0, 276701161105643274},
      {"R&D INT64_MAX of revenue INT64_MAX", rd, RdFiling(kMax64, kMax64), kPass, 10000, -1},
      {"R&D INT64_MAX of 1 fen: basis points saturate", rd, RdFiling(1, kMax64), kPass, kMax64, -1},
      {"zero revenue", rd, RdFiling(0, 5), kNoData, 0, -1},
      {"zero revenue, zero R&D", rd, RdFiling(0, 0), kNoData, 0, -1},
      {"3 of 10 with degrees", tertiary, ShareFiling(10, 3), kPass, 3000, -1},
      {"2 of 10 with degrees: 4 of 12 passes", tertiary, ShareFiling(10, 2), kFail, 2000, 2},
      {"1 of 10 in R&D", staff, ShareFiling(10, 1), kPass, 1000, -1},
      {"0 of 10 in R&D: 2 of 12 passes", staff, ShareFiling(10, 0), kFail, 0, 2},
      {"no employees, degrees", tertiary, ShareFiling(0, 0), kNoData, 0, -1},
      {"no employees, R&D staff", staff, ShareFiling(0, 0), kNoData, 0, -1},
      {"INT32_MAX employees, none with a degree", tertiary, ShareFiling(kMax32, 0), kFail, 0,
       920350135},
      {"INT32_MAX of INT32_MAX with degrees", tertiary, ShareFiling(kMax32, kMax32), kPass, 10000,
       -1},
      {"'>' at exactly 3.00%", MakeCriterion(kRd, kGt, 300), RdFiling(10000, 300), kFail, 300, 1},
      {"'>' just above 3.00%", MakeCriterion(kRd, kGt, 300), RdFiling(10000, 301), kPass, 301, -1},
      {"'>' at exactly 30%", MakeCriterion(kTertiary, kGt, 3000), ShareFiling(10, 3), kFail, 3000,
       1},
      {"'>' at exactly 10%", MakeCriterion(kStaff, kGt, 1000), ShareFiling(10, 1), kFail, 1000, 1},
      {"'>=' 0 with no R&D", MakeCriterion(kRd, kGe, 0), RdFiling(100, 0), kPass, 0, -1},
      {"'>' 0 with no R&D", MakeCriterion(kRd, kGt, 0), RdFiling(100, 0), kFail, 0, 1},
      {"'>=' 100% share, 9 of 10: adding never reaches it", MakeCriterion(kTertiary, kGe, 10000),
       ShareFiling(10, 9), kFail, 9000, -1},
      {"'>=' 100% share, 10 of 10", MakeCriterion(kTertiary, kGe, 10000), ShareFiling(10, 10),
       kPass, 10000, -1},
      {"'>' 100% share, 10 of 10", MakeCriterion(kStaff, kGt, 10000), ShareFiling(10, 10), kFail,
       10000, -1},
      {"'>=' 100% R&D, revenue INT64_MAX, none spent", MakeCriterion(kRd, kGe, 10000),
       RdFiling(kMax64, 0), kFail, 0, kMax64},
      {"'>' 100% R&D, revenue INT64_MAX, 1 fen spent: shortfall INT64_MAX",
       MakeCriterion(kRd, kGt, 10000), RdFiling(kMax64, 1), kFail, 0, kMax64},
      {"'>' 100% R&D, revenue INT64_MAX, none spent: 2^63 fen does not fit",
       MakeCriterion(kRd, kGt, 10000), RdFiling(kMax64, 0), kFail, 0, -1},
  };
  for (const Row& row : rows) CheckRow(row);
}

TEST(EvaluatorTest, HnteBandEdges) {
  absl::StatusOr<PolicySet> set = PolicySet::Load(RepoPolicies() / "packs" / "hnte-2016");
  ASSERT_TRUE(set.ok()) << set.status();
  absl::StatusOr<PolicyInForce> in_force = set->Select(2024, v1::ECONOMIC_REGION_WESTERN);
  ASSERT_TRUE(in_force.ok()) << in_force.status();
  const v1::Criterion& rd = in_force->criteria[0];
  ASSERT_EQ(rd.metric(), kRd);

  struct Edge {
    int64_t revenue;
    int32_t threshold;
    int64_t least_passing;  // the least R&D spending that passes
  };
  const Edge edges[] = {
      {1, 500, 1},
      {5'000'000'000, 500, 250'000'000},   // CNY 50 million: still the 5% band
      {5'000'000'001, 400, 200'000'001},   // one fen above: 4%, ceil(200,000,000.04)
      {20'000'000'000, 400, 800'000'000},  // CNY 200 million: still 4%
      {20'000'000'001, 300, 600'000'001},  // one fen above: 3%
      {kMax64, 300, 276701161105643275},
  };
  for (const Edge& edge : edges) {
    SCOPED_TRACE(absl::StrCat("revenue ", edge.revenue));
    absl::StatusOr<int32_t> threshold = ThresholdFor(rd, edge.revenue);
    ASSERT_TRUE(threshold.ok()) << threshold.status();
    EXPECT_EQ(*threshold, edge.threshold);
    const v1::CriterionResult enough = Judge(rd, RdFiling(edge.revenue, edge.least_passing));
    EXPECT_EQ(enough.outcome(), kPass);
    EXPECT_EQ(enough.threshold_basis_points(), edge.threshold);
    const v1::CriterionResult short_by_one =
        Judge(rd, RdFiling(edge.revenue, edge.least_passing - 1));
    EXPECT_EQ(short_by_one.outcome(), kFail);
    EXPECT_EQ(short_by_one.shortfall().rd_expenditure_fen(), 1);
    EXPECT_EQ(Judge(rd, RdFiling(edge.revenue, 0)).shortfall().rd_expenditure_fen(),
              edge.least_passing);
  }
  const v1::CriterionResult no_revenue = Judge(rd, RdFiling(0, 10));
  EXPECT_EQ(no_revenue.outcome(), kNoData);
  EXPECT_EQ(no_revenue.threshold_basis_points(), 500);
}

v1::AcceptedFiling Accepted(const v1::AnnualFiling& filing) {
  v1::AcceptedFiling accepted;
  accepted.set_filing_id("f-123");
  *accepted.mutable_filing() = filing;
  accepted.set_region(v1::ECONOMIC_REGION_WESTERN);
  return accepted;
}

class DecisionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<PolicySet> set = PolicySet::Load(RepoPolicies());
    ASSERT_TRUE(set.ok()) << set.status();
    set_.emplace(*std::move(set));
  }

  v1::QualificationDecision Decide(const v1::AnnualFiling& filing) {
    absl::StatusOr<v1::QualificationDecision> decision = Evaluate(Accepted(filing), *set_);
    EXPECT_TRUE(decision.ok()) << decision.status();
    return decision.ok() ? *decision : v1::QualificationDecision();
  }

  std::optional<PolicySet> set_;
};

TEST_F(DecisionTest, QualifiedWhenEveryCriterionPasses) {
  const v1::QualificationDecision decision = Decide(Filing(10000, 300, 10, 3, 1));
  EXPECT_EQ(decision.outcome(), v1::DECISION_OUTCOME_QUALIFIED);
  EXPECT_EQ(decision.decision_id(), "482b56152fc3979c04c4e0866c121d49");
  EXPECT_EQ(decision.filing_id(), "f-123");
  EXPECT_EQ(decision.uscc(), "91650100MA77ABCD1X");
  EXPECT_EQ(decision.park_id(), "urumqi-hnz");
  EXPECT_EQ(decision.region(), v1::ECONOMIC_REGION_WESTERN);
  EXPECT_EQ(decision.fiscal_year(), 2024);
  EXPECT_EQ(decision.filing_revision(), 1);
  EXPECT_EQ(decision.policy_id(), "stip-default");
  EXPECT_EQ(decision.policy_version(), 1);
  EXPECT_FALSE(decision.has_decide_time());
  ASSERT_EQ(decision.criteria_size(), 3);
  EXPECT_EQ(decision.criteria(0).measured().numerator(), 300);  // as filed, not reduced
  EXPECT_EQ(decision.criteria(0).measured().denominator(), 10000);
  EXPECT_EQ(decision.explanation(),
            "QUALIFIED: R&D intensity 3.00% >= 3.00%; tertiary-degree share 30.00% >= 30.00%; "
            "R&D staff share 10.00% >= 10.00%");
}

TEST_F(DecisionTest, ExplanationNamesEachFailedCriterionWithItsShortfall) {
  EXPECT_EQ(Decide(Filing(10000, 299, 10, 3, 1)).explanation(),
            "NOT_QUALIFIED: R&D intensity 2.99% < 3.00% (short by 1 fen)");
  const v1::QualificationDecision decision = Decide(Filing(1'000'000'000, 0, 10, 2, 0));
  EXPECT_EQ(decision.outcome(), v1::DECISION_OUTCOME_NOT_QUALIFIED);
  EXPECT_EQ(decision.explanation(),
            "NOT_QUALIFIED: R&D intensity 0.00% < 3.00% (short by 30000000 fen, CNY 300,000.00); "
            "tertiary-degree share 20.00% < 30.00% (short by 2 employees with a tertiary "
            "degree); R&D staff share 0.00% < 10.00% (short by 2 R&D employees)");
  EXPECT_EQ(Decide(Filing(0, 0, 10, 3, 1)).explanation(),
            "NOT_QUALIFIED: R&D intensity cannot be measured: gross revenue is 0 fen");
  const v1::QualificationDecision nobody = Decide(Filing(10000, 300, 0, 0, 0));
  EXPECT_EQ(nobody.outcome(), v1::DECISION_OUTCOME_NOT_QUALIFIED);
  EXPECT_EQ(nobody.explanation(),
            "NOT_QUALIFIED: tertiary-degree share cannot be measured: no employees; R&D staff "
            "share cannot be measured: no employees");
}

TEST_F(DecisionTest, SameInputsSameDecision) {
  const v1::AnnualFiling filing = Filing(123456789, 3703704, 77, 23, 8);
  EXPECT_EQ(Decide(filing).SerializeAsString(), Decide(filing).SerializeAsString());
}

TEST(DecisionIdTest, DependsOnFilingPolicyAndVersionOnly) {
  EXPECT_EQ(DecisionId("f-123", "stip-default", 1), "482b56152fc3979c04c4e0866c121d49");
  EXPECT_NE(DecisionId("f-123", "stip-default", 2), DecisionId("f-123", "stip-default", 1));
  EXPECT_NE(DecisionId("f-124", "stip-default", 1), DecisionId("f-123", "stip-default", 1));
  EXPECT_NE(DecisionId("f-123", "stip-other", 1), DecisionId("f-123", "stip-default", 1));
  EXPECT_NE(DecisionId("ab", "c", 1), DecisionId("a", "bc", 1));
}

TEST(EvaluatorTest, SelectsThePolicyByYearAndRegion) {
  absl::StatusOr<PolicySet> set = PolicySet::Parse({{"regional.yaml", R"(id: regional
version: 3
fiscal_years: {from: 2020, to: 2030}
criteria:
  - {metric: RD_INTENSITY, comparison: ">=", threshold_basis_points: 300}
region_overrides:
  - region: WESTERN
    criteria:
      - {metric: RD_INTENSITY, comparison: ">=", threshold_basis_points: 250}
)"}});
  ASSERT_TRUE(set.ok()) << set.status();
  v1::AcceptedFiling accepted = Accepted(RdFiling(10000, 250));
  accepted.mutable_filing()->set_fiscal_year(2025);
  absl::StatusOr<v1::QualificationDecision> western = Evaluate(accepted, *set);
  ASSERT_TRUE(western.ok()) << western.status();
  EXPECT_EQ(western->outcome(), v1::DECISION_OUTCOME_QUALIFIED);
  EXPECT_EQ(western->policy_version(), 3);
  EXPECT_EQ(western->criteria(0).threshold_basis_points(), 250);

  accepted.set_region(v1::ECONOMIC_REGION_EASTERN);
  absl::StatusOr<v1::QualificationDecision> eastern = Evaluate(accepted, *set);
  ASSERT_TRUE(eastern.ok()) << eastern.status();
  EXPECT_EQ(eastern->outcome(), v1::DECISION_OUTCOME_NOT_QUALIFIED);
  EXPECT_EQ(eastern->explanation(), "NOT_QUALIFIED: R&D intensity 2.50% < 3.00% (short by 50 fen)");

  accepted.mutable_filing()->set_fiscal_year(2031);
  EXPECT_EQ(Evaluate(accepted, *set).status().code(), absl::StatusCode::kNotFound);
}

TEST(EvaluatorTest, RefusesWhatIntakeWouldHaveRefused) {
  absl::StatusOr<PolicySet> set = PolicySet::Load(RepoPolicies());
  ASSERT_TRUE(set.ok()) << set.status();
  absl::StatusOr<v1::QualificationDecision> negative =
      Evaluate(Accepted(Filing(-1, 0, 10, 3, 1)), *set);
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(negative.status().message()), HasSubstr("gross_revenue_fen"));
  v1::AcceptedFiling no_id = Accepted(Filing(10000, 300, 10, 3, 1));
  no_id.clear_filing_id();
  EXPECT_EQ(Evaluate(no_id, *set).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EvaluateCriterion(MakeCriterion(kRd, v1::COMPARISON_UNSPECIFIED, 300), RdFiling(1, 1))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// --- The property test ---------------------------------------------------------------------

// GMP's verdicts, by definition rather than by the evaluator's formulas.
bool OraclePasses(const mpz_class& num, const mpz_class& den, int32_t t,
                  v1::Comparison comparison) {
  mpq_class measured(num, den);
  measured.canonicalize();
  mpq_class threshold(t, 10000);
  threshold.canonicalize();
  return comparison == kGt ? measured > threshold : measured >= threshold;
}

int32_t OracleThreshold(const v1::Criterion& criterion, int64_t revenue) {
  if (criterion.revenue_bands().empty()) return criterion.threshold_basis_points();
  for (const v1::RevenueBand& band : criterion.revenue_bands()) {
    if (band.revenue_up_to_fen() == 0 || revenue <= band.revenue_up_to_fen()) {
      return band.threshold_basis_points();
    }
  }
  return -1;
}

// What is wrong with `result` for `criterion` on `filing`; empty when the oracle agrees.
std::string Disagreement(const v1::Criterion& criterion, const v1::AnnualFiling& filing,
                         const v1::CriterionResult& result) {
  int64_t num = filing.rd_expenditure_fen();
  int64_t den = filing.gross_revenue_fen();
  if (criterion.metric() != kRd) {
    den = filing.total_employees();
    num = criterion.metric() == kTertiary ? filing.tertiary_educated_employees()
                                          : filing.rd_employees();
  }
  const int32_t t = OracleThreshold(criterion, filing.gross_revenue_fen());
  const v1::Comparison comparison = criterion.comparison();
  if (result.metric() != criterion.metric()) return "metric";
  if (result.measured().numerator() != num || result.measured().denominator() != den) {
    return "measured fraction";
  }
  if (result.threshold_basis_points() != t) return "threshold";
  if (den == 0) {
    if (result.outcome() != kNoData) return "outcome with a zero denominator";
    if (result.measured_basis_points() != 0) return "basis points with a zero denominator";
    if (result.has_shortfall()) return "shortfall with a zero denominator";
    return "";
  }
  const mpz_class n(num);
  const mpz_class d(den);
  mpz_class bp = n * 10000 / d;  // both non-negative: truncation is the floor
  if (bp > mpz_class(kMax64)) bp = kMax64;
  if (mpz_class(result.measured_basis_points()) != bp) return "basis points";
  const bool passes = OraclePasses(n, d, t, comparison);
  if (result.outcome() != (passes ? kPass : kFail)) return "outcome";
  if (passes) return result.has_shortfall() ? "shortfall on a pass" : "";

  const bool rd = criterion.metric() == kRd;
  if (result.shortfall().amount_case() == v1::Shortfall::AMOUNT_NOT_SET) {
    // None is right only when no addition that fits an int64 passes: for spending, not
    // even INT64_MAX more; for a share, (a + k) / (n + k) rises towards 1 but never
    // reaches it, so only a 100% threshold is out of reach.
    if (rd) return OraclePasses(n + kMax64, d, t, comparison) ? "missing shortfall" : "";
    return t == 10000 ? "" : "missing shortfall";
  }
  if (result.shortfall().has_rd_expenditure_fen() != rd) return "shortfall kind";
  const mpz_class k(Amount(result.shortfall()));
  if (k < 1) return "shortfall below 1";
  const mpz_class k_less = k - 1;
  const bool enough =
      rd ? OraclePasses(n + k, d, t, comparison) : OraclePasses(n + k, d + k, t, comparison);
  const bool one_less_enough = rd ? OraclePasses(n + k_less, d, t, comparison)
                                  : OraclePasses(n + k_less, d + k_less, t, comparison);
  if (!enough) return "shortfall too small";
  if (one_less_enough) return "shortfall not the least";
  return "";
}

// Random filings and criteria, with the extremes and the amounts next to each threshold
// far more often than uniform sampling would give them.
class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {}

  int64_t Money() {
    static constexpr int64_t kExtremes[] = {0, 1, 2, kMax64 - 1, kMax64};
    switch (rng_() % 8) {
      case 0:
        return kExtremes[rng_() % 5];
      case 1:
        return static_cast<int64_t>(rng_() % 1001);
      case 2:
      case 3:
        return LogUniform(63);
      default:
        return static_cast<int64_t>(rng_() >> 1);
    }
  }

  int32_t Headcount() {
    static constexpr int32_t kExtremes[] = {0, 1, 2, kMax32 - 1, kMax32};
    switch (rng_() % 8) {
      case 0:
        return kExtremes[rng_() % 5];
      case 1:
        return static_cast<int32_t>(rng_() % 101);
      case 2:
      case 3:
        return static_cast<int32_t>(LogUniform(31));
      default:
        return static_cast<int32_t>(rng_() >> 33);
    }
  }

  int32_t Threshold() {
    static constexpr int32_t kExtremes[] = {0, 1, 9999, 10000};
    static constexpr int32_t kUsual[] = {300, 400, 500, 1000, 3000};
    switch (rng_() % 4) {
      case 0:
        return kExtremes[rng_() % 4];
      case 1:
        return kUsual[rng_() % 5];
      default:
        return static_cast<int32_t>(rng_() % 10001);
    }
  }

  v1::Comparison Comparison() { return rng_() % 2 == 0 ? kGe : kGt; }

  // A criterion for `metric`; RD_INTENSITY gets revenue bands a quarter of the time, with
  // bounds that often sit right at `revenue` or one fen either side of it.
  v1::Criterion Criterion(v1::Metric metric, int64_t revenue) {
    v1::Criterion criterion = MakeCriterion(metric, Comparison(), Threshold());
    if (metric != kRd || rng_() % 4 != 0) return criterion;
    criterion.set_threshold_basis_points(0);
    std::vector<int64_t> bounds;
    const int count = static_cast<int>(rng_() % 4);
    for (int i = 0; i < count; ++i) {
      const int64_t delta = static_cast<int64_t>(rng_() % 3) - 1;
      int64_t bound = Money();
      if (rng_() % 2 == 0) bound = delta > 0 && revenue == kMax64 ? revenue : revenue + delta;
      bounds.push_back(std::max<int64_t>(bound, 1));
    }
    std::sort(bounds.begin(), bounds.end());
    bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
    for (int64_t bound : bounds) {
      v1::RevenueBand* band = criterion.add_revenue_bands();
      band->set_revenue_up_to_fen(bound);
      band->set_threshold_basis_points(Threshold());
    }
    criterion.add_revenue_bands()->set_threshold_basis_points(Threshold());  // open
    return criterion;
  }

  // A numerator for `den` under threshold `t`: half the time within 2 of t * den / 10000.
  int64_t Near(int64_t den, int32_t t, int64_t max, bool at_most_den) {
    if (rng_() % 2 == 0) {
      const Int128 at = Int128{t} * den / 10000 + static_cast<int>(rng_() % 5) - 2;
      return static_cast<int64_t>(std::clamp<Int128>(at, 0, at_most_den ? den : max));
    }
    if (at_most_den && den > 0 && rng_() % 50 != 0) {
      return static_cast<int64_t>(rng_() % (static_cast<uint64_t>(den) + 1));
    }
    return max == kMax64 ? Money() : Headcount();
  }

 private:
  int64_t LogUniform(int max_bits) {
    const int bits = static_cast<int>(rng_() % (max_bits + 1));
    return bits == 0 ? 0 : static_cast<int64_t>(rng_() >> (64 - bits));
  }

  std::mt19937_64 rng_;
};

TEST(EvaluatorPropertyTest, AgreesWithExactRationalsOnAMillionFilings) {
  constexpr int kFilings = 1'000'000;
  constexpr uint64_t kSeed = 20240401;
  Generator generate(kSeed);
  v1::Policy policy;
  policy.set_policy_id("random");
  policy.set_version(1);
  v1::AcceptedFiling accepted;
  accepted.set_filing_id("property");
  std::vector<v1::Criterion> criteria(3);

  int disagreements = 0;
  int64_t outcomes[4] = {};
  int64_t banded = 0;
  int64_t saturated = 0;
  int64_t unreachable = 0;
  int64_t qualified = 0;
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < kFilings && disagreements < 20; ++i) {
    v1::AnnualFiling& filing = *accepted.mutable_filing();
    const int64_t revenue = generate.Money();
    filing.set_gross_revenue_fen(revenue);
    criteria[0] = generate.Criterion(kRd, revenue);
    filing.set_rd_expenditure_fen(
        generate.Near(revenue, OracleThreshold(criteria[0], revenue), kMax64, false));
    const int32_t total = generate.Headcount();
    filing.set_total_employees(total);
    criteria[1] = generate.Criterion(kTertiary, revenue);
    filing.set_tertiary_educated_employees(static_cast<int32_t>(
        generate.Near(total, criteria[1].threshold_basis_points(), kMax32, true)));
    criteria[2] = generate.Criterion(kStaff, revenue);
    filing.set_rd_employees(static_cast<int32_t>(
        generate.Near(total, criteria[2].threshold_basis_points(), kMax32, true)));

    absl::StatusOr<v1::QualificationDecision> decision =
        Evaluate(accepted, PolicyInForce{&policy, criteria});
    if (!decision.ok() || decision->criteria_size() != 3) {
      ADD_FAILURE() << "filing " << i << ": " << decision.status() << "\n"
                    << filing.ShortDebugString();
      ++disagreements;
      continue;
    }
    bool all_pass = true;
    for (int c = 0; c < 3; ++c) {
      const v1::CriterionResult& result = decision->criteria(c);
      const std::string wrong = Disagreement(criteria[c], filing, result);
      if (!wrong.empty()) {
        ADD_FAILURE() << "filing " << i << " (seed " << kSeed << "): " << wrong << "\nfiling "
                      << filing.ShortDebugString() << "\ncriterion "
                      << criteria[c].ShortDebugString() << "\nresult " << result.ShortDebugString();
        ++disagreements;
      }
      all_pass = all_pass && result.outcome() == kPass;
      ++outcomes[result.outcome()];
      banded += criteria[c].revenue_bands_size() > 0 ? 1 : 0;
      saturated += result.measured_basis_points() == kMax64 ? 1 : 0;
      unreachable += result.outcome() == kFail && !result.has_shortfall() ? 1 : 0;
    }
    if (decision->outcome() !=
        (all_pass ? v1::DECISION_OUTCOME_QUALIFIED : v1::DECISION_OUTCOME_NOT_QUALIFIED)) {
      ADD_FAILURE() << "filing " << i << ": decision outcome " << decision->ShortDebugString();
      ++disagreements;
    }
    qualified += all_pass ? 1 : 0;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(disagreements, 0);
  // The generator must have reached every corner the oracle is meant to check.
  EXPECT_GT(outcomes[kPass], 100'000);
  EXPECT_GT(outcomes[kFail], 100'000);
  EXPECT_GT(outcomes[kNoData], 10'000);
  EXPECT_GT(banded, 100'000);
  EXPECT_GT(saturated, 100);
  EXPECT_GT(unreachable, 100);
  EXPECT_GT(qualified, 10'000);
  std::printf(
      "%d filings in %.1f s: %lld pass, %lld fail, %lld insufficient data, %lld banded, "
      "%lld saturated, %lld unreachable, %lld qualified\n",
      kFilings, seconds, static_cast<long long>(outcomes[kPass]),
      static_cast<long long>(outcomes[kFail]), static_cast<long long>(outcomes[kNoData]),
      static_cast<long long>(banded), static_cast<long long>(saturated),
      static_cast<long long>(unreachable), static_cast<long long>(qualified));
}

}  // namespace
}  // namespace stip::assessment
