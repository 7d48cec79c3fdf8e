// The filing validator: every rule at and around its boundary, and every violation at once.
// The USCC rules are in uscc_test.cc.
#include "services/intake/filing_validator.h"

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/intake/violation_codes.h"
#include "stip/v1/filing.pb.h"
#include "stip/v1/park.pb.h"

namespace stip::intake {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

constexpr int kCurrentYear = 2024;

// A strict UTF-8 check written apart from the validator's (the well-formed byte sequences
// of the Unicode Standard, table 3-7), used to check the validator's own messages.
bool IsStrictUtf8(std::string_view s) {
  std::size_t i = 0;
  const auto byte = [&](std::size_t at) { return static_cast<unsigned char>(s[at]); };
  while (i < s.size()) {
    const unsigned char b = byte(i);
    std::size_t length = 0;
    unsigned char low = 0x80;
    unsigned char high = 0xBF;
    if (b <= 0x7F) {
      length = 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
      length = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      length = 3;
      if (b == 0xE0) low = 0xA0;
      if (b == 0xED) high = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      length = 4;
      if (b == 0xF0) low = 0x90;
      if (b == 0xF4) high = 0x8F;
    } else {
      return false;
    }
    if (i + length > s.size()) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const unsigned char c = byte(i + k);
      if (k == 1 ? (c < low || c > high) : (c < 0x80 || c > 0xBF)) return false;
    }
    i += length;
  }
  return true;
}

// True when `s` holds a CJK unified ideograph (U+4E00-U+9FFF: E4 B8 80 to E9 BF BF).
bool HasChinese(std::string_view s) {
  for (std::size_t i = 0; i + 2 < s.size(); ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b >= 0xE4 && b <= 0xE9) return true;
  }
  return false;
}

std::string Repeat(std::string_view piece, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out.append(piece);
  return out;
}

InMemoryParkDirectory Parks() {
  return InMemoryParkDirectory({
      {"zhongguancun", ParkFacts{1988, v1::ECONOMIC_REGION_EASTERN}},
      {"urumqi-hnz", ParkFacts{1992, v1::ECONOMIC_REGION_WESTERN}},
      {"kunming", ParkFacts{1992, v1::ECONOMIC_REGION_WESTERN}},
      {"founding-year-unknown", ParkFacts{0, v1::ECONOMIC_REGION_CENTRAL}},
  });
}

v1::HiTechProject Project(std::string id, std::string title) {
  v1::HiTechProject project;
  project.set_project_id(std::move(id));
  project.set_title(std::move(title));
  project.set_field(v1::TECHNOLOGY_FIELD_NEW_MATERIALS);
  project.set_stage(v1::PROJECT_STAGE_COMMERCIALIZED);
  return project;
}

// A filing that breaks no rule; each test breaks one or more.
v1::AnnualFiling ValidFiling() {
  v1::AnnualFiling filing;
  filing.set_uscc("91650100228600125Q");
  filing.set_park_id("urumqi-hnz");
  filing.set_fiscal_year(2023);
  filing.set_revision(1);
  filing.set_gross_revenue_fen(12'345'678'900);
  filing.set_rd_expenditure_fen(456'789'000);
  filing.set_total_employees(120);
  filing.set_tertiary_educated_employees(60);
  filing.set_rd_employees(20);
  *filing.add_projects() = Project("HT-2023-01", "高纯硅基负极材料中试线");
  *filing.add_projects() = Project("HT-2023-02", "Wind turbine blade recycling");
  filing.set_enterprise_name("新疆天山新材料科技有限公司");
  return filing;
}

// Validates, and checks what every violation and warning must be whatever the rule: a
// known-looking code, a field path under "filing.", and non-empty, valid UTF-8 messages
// in English and in Chinese.
ValidationResult Validate(const v1::AnnualFiling& filing,
                          ValidationOptions options = {.current_year = kCurrentYear}) {
  ValidationResult result = ValidateFiling(filing, Parks(), options);
  const auto check = [](std::string_view code, std::string_view field, std::string_view en,
                        std::string_view zh) {
    EXPECT_FALSE(code.empty());
    EXPECT_TRUE(field.starts_with("filing.")) << field;
    EXPECT_FALSE(en.empty()) << code;
    EXPECT_FALSE(zh.empty()) << code;
    EXPECT_TRUE(IsStrictUtf8(en)) << code;
    EXPECT_TRUE(IsStrictUtf8(zh)) << code;
    EXPECT_TRUE(HasChinese(zh)) << code << ": " << zh;
  };
  for (const v1::FilingViolation& v : result.violations) {
    check(v.reason(), v.field(), v.message(), v.message_zh());
  }
  for (const v1::FilingWarning& w : result.warnings) {
    check(w.code(), w.field(), w.message(), w.message_zh());
  }
  return result;
}

// {field, reason} of every violation, in order.
std::vector<std::pair<std::string, std::string>> Found(const ValidationResult& result) {
  std::vector<std::pair<std::string, std::string>> found;
  for (const v1::FilingViolation& v : result.violations) found.emplace_back(v.field(), v.reason());
  return found;
}

std::string Str(std::string_view s) { return std::string(s); }

TEST(FilingValidatorTest, ValidFilingPasses) {
  const ValidationResult result = Validate(ValidFiling());
  EXPECT_TRUE(result.ok());
  EXPECT_THAT(result.violations, IsEmpty());
  EXPECT_THAT(result.warnings, IsEmpty());
}

TEST(FilingValidatorTest, EveryViolationIsReturnedAtOnceInFieldOrder) {
  v1::AnnualFiling filing = ValidFiling();
  filing.set_uscc("91650100228600125P");                     // wrong check character
  filing.set_fiscal_year(kCurrentYear + 1);                  // in the future
  filing.set_tertiary_educated_employees(121);               // above the total of 120
  *filing.add_projects() = Project("ht-2023-01", "x");       // same id as projects[0], by case
  filing.mutable_projects(2)->set_title(Repeat("材", 201));  // too long
  const ValidationResult result = Validate(filing);
  EXPECT_FALSE(result.ok());
  EXPECT_THAT(
      Found(result),
      ElementsAre(Pair("filing.uscc", Str(reason::kUsccCheckCharacter)),
                  Pair("filing.fiscal_year", Str(reason::kFiscalYearInFuture)),
                  Pair("filing.tertiary_educated_employees", Str(reason::kEmployeesExceedTotal)),
                  Pair("filing.projects[2].project_id", Str(reason::kProjectIdDuplicate)),
                  Pair("filing.projects[2].title", Str(reason::kTextTooLong))));
}

TEST(FilingValidatorTest, EmptyFilingReportsEveryRequiredField) {
  const ValidationResult result = Validate(v1::AnnualFiling());
  EXPECT_THAT(Found(result),
              ElementsAre(Pair("filing.uscc", Str(reason::kFieldRequired)),
                          Pair("filing.park_id", Str(reason::kFieldRequired)),
                          Pair("filing.fiscal_year", Str(reason::kFieldRequired)),
                          Pair("filing.revision", Str(reason::kFieldRequired)),
                          Pair("filing.total_employees", Str(reason::kEmployeesZero))));
}

TEST(FilingValidatorTest, IsDeterministic) {
  v1::AnnualFiling filing = ValidFiling();
  filing.set_uscc("bad");
  filing.set_total_employees(-1);
  filing.mutable_projects(1)->set_project_id("HT-2023-01");
  const ValidationResult first = Validate(filing);
  const ValidationResult second = Validate(filing);
  ASSERT_EQ(first.violations.size(), second.violations.size());
  for (std::size_t i = 0; i < first.violations.size(); ++i) {
    EXPECT_EQ(first.violations[i].SerializeAsString(), second.violations[i].SerializeAsString());
  }
}

// --- Headcounts -------------------------------------------------------------------------

struct Headcounts {
  int total;
  int tertiary;
  int rd;
  std::vector<std::pair<std::string, std::string>> expected;
};

TEST(FilingValidatorTest, Headcounts) {
  const std::string total = "filing.total_employees";
  const std::string tertiary = "filing.tertiary_educated_employees";
  const std::string rd = "filing.rd_employees";
  const int kMax = std::numeric_limits<int32_t>::max();
  const int kMin = std::numeric_limits<int32_t>::min();
  const Headcounts cases[] = {
      {0, 0, 0, {{total, Str(reason::kEmployeesZero)}}},
      {1, 0, 0, {}},
      {1, 1, 1, {}},
      {1, 2, 1, {{tertiary, Str(reason::kEmployeesExceedTotal)}}},
      {1, 1, 2, {{rd, Str(reason::kEmployeesExceedTotal)}}},
      {30, 30, 30, {}},
      {30,
       31,
       31,
       {{tertiary, Str(reason::kEmployeesExceedTotal)}, {rd, Str(reason::kEmployeesExceedTotal)}}},
      {0,
       1,
       0,
       {{total, Str(reason::kEmployeesZero)}, {tertiary, Str(reason::kEmployeesExceedTotal)}}},
      {-1, 0, 0, {{total, Str(reason::kEmployeesNegative)}}},
      // A negative total is reported once; the parts are not measured against it.
      {-1, 5, 5, {{total, Str(reason::kEmployeesNegative)}}},
      {10, -1, 0, {{tertiary, Str(reason::kEmployeesNegative)}}},
      {10, 0, -1, {{rd, Str(reason::kEmployeesNegative)}}},
      {kMin,
       kMin,
       kMin,
       {{total, Str(reason::kEmployeesNegative)},
        {tertiary, Str(reason::kEmployeesNegative)},
        {rd, Str(reason::kEmployeesNegative)}}},
      {kMax, kMax, kMax, {}},
  };
  for (const Headcounts& c : cases) {
    SCOPED_TRACE(testing::Message() << c.total << "/" << c.tertiary << "/" << c.rd);
    v1::AnnualFiling filing = ValidFiling();
    filing.set_total_employees(c.total);
    filing.set_tertiary_educated_employees(c.tertiary);
    filing.set_rd_employees(c.rd);
    EXPECT_EQ(Found(Validate(filing)), c.expected);
  }
}

TEST(FilingValidatorTest, HeadcountMessagesNameTheNumbers) {
  v1::AnnualFiling filing = ValidFiling();
  filing.set_total_employees(30);
  filing.set_tertiary_educated_employees(31);
  const ValidationResult result = Validate(filing);
  ASSERT_EQ(result.violations.size(), 1u);
  EXPECT_THAT(result.violations[0].message(), HasSubstr("(31) exceed total employees (30)"));
  EXPECT_THAT(result.violations[0].message_zh(), HasSubstr("（31）超过职工总数（30）"));
}

// --- Money ------------------------------------------------------------------------------

TEST(FilingValidatorTest, MoneyMustNotBeNegative) {
  const int64_t kMin = std::numeric_limits<int64_t>::min();
  for (const int64_t fen : {int64_t{-1}, kMin}) {
    v1::AnnualFiling filing = ValidFiling();
    filing.set_gross_revenue_fen(fen);
    filing.set_rd_expenditure_fen(fen);
    const ValidationResult result = Validate(filing);
    EXPECT_THAT(Found(result),
                ElementsAre(Pair("filing.gross_revenue_fen", Str(reason::kMoneyNegative)),
                            Pair("filing.rd_expenditure_fen", Str(reason::kMoneyNegative))));
    EXPECT_THAT(result.violations[0].message(), HasSubstr(std::to_string(fen) + " fen"));
    EXPECT_THAT(result.warnings, IsEmpty());
  }
}

TEST(FilingValidatorTest, MoneyAtZeroAndAtTheCeiling) {
  const int64_t kMax = kMaxMoneyFen;
  for (const auto& [revenue, rd] : {std::pair<int64_t, int64_t>{0, 0}, {kMax, kMax}, {kMax, 0}}) {
    v1::AnnualFiling filing = ValidFiling();
    filing.set_gross_revenue_fen(revenue);
    filing.set_rd_expenditure_fen(rd);
    const ValidationResult result = Validate(filing);
    EXPECT_TRUE(result.ok()) << revenue << " " << rd;
    EXPECT_THAT(result.warnings, IsEmpty());
  }
}

// Above 10^17 fen every money field is refused, naming the field and the ceiling: amounts
// near INT64_MAX once entered and made the registry's sums overflow.
TEST(FilingValidatorTest, MoneyAboveTheCeilingIsRefused) {
  EXPECT_EQ(kMaxMoneyFen, 100'000'000'000'000'000);
  for (const int64_t fen : {kMaxMoneyFen + 1, std::numeric_limits<int64_t>::max()}) {
    v1::AnnualFiling filing = ValidFiling();
    filing.set_gross_revenue_fen(fen);
    filing.set_rd_expenditure_fen(fen);
    const ValidationResult result = Validate(filing);
    EXPECT_THAT(Found(result),
                ElementsAre(Pair("filing.gross_revenue_fen", Str(reason::kMoneyTooLarge)),
                            Pair("filing.rd_expenditure_fen", Str(reason::kMoneyTooLarge))))
        << fen;
    for (const v1::FilingViolation& violation : result.violations) {
      EXPECT_THAT(violation.message(), HasSubstr("at most 100000000000000000 fen"));
      EXPECT_THAT(violation.message(), HasSubstr(std::to_string(fen) + " fen"));
      EXPECT_THAT(violation.message_zh(), HasSubstr("100000000000000000"));
    }
  }
  v1::AnnualFiling rd_only = ValidFiling();
  rd_only.set_rd_expenditure_fen(kMaxMoneyFen + 1);
  EXPECT_THAT(Found(Validate(rd_only)),
              ElementsAre(Pair("filing.rd_expenditure_fen", Str(reason::kMoneyTooLarge))));
}

TEST(FilingValidatorTest, RdAboveRevenueIsAWarningNotAViolation) {
  const int64_t kMax = kMaxMoneyFen;
  for (const auto& [revenue, rd] :
       {std::pair<int64_t, int64_t>{100, 101}, {0, 1}, {0, kMax}, {kMax - 1, kMax}}) {
    v1::AnnualFiling filing = ValidFiling();
    filing.set_gross_revenue_fen(revenue);
    filing.set_rd_expenditure_fen(rd);
    const ValidationResult result = Validate(filing);
    EXPECT_TRUE(result.ok());
    ASSERT_EQ(result.warnings.size(), 1u);
    EXPECT_EQ(result.warnings[0].code(), warning::kRdExceedsRevenue);
    EXPECT_EQ(result.warnings[0].field(), "filing.rd_expenditure_fen");
    EXPECT_THAT(result.warnings[0].message(), HasSubstr(std::to_string(rd) + " fen"));
  }
  v1::AnnualFiling equal = ValidFiling();
  equal.set_gross_revenue_fen(100);
  equal.set_rd_expenditure_fen(100);
  EXPECT_THAT(Validate(equal).warnings, IsEmpty());
}

TEST(FilingValidatorTest, WarningComesWithViolations) {
  v1::AnnualFiling filing = ValidFiling();
  filing.set_gross_revenue_fen(1);
  filing.set_rd_expenditure_fen(2);
  filing.set_revision(0);
  const ValidationResult result = Validate(filing);
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.warnings.size(), 1u);
}

// --- Park and fiscal year ---------------------------------------------------------------

TEST(FilingValidatorTest, FiscalYearBoundaries) {
  struct Case {
    std::string park;
    int year;
    std::vector<std::pair<std::string, std::string>> expected;
  };
  const std::string fy = "filing.fiscal_year";
  const Case cases[] = {
      {"urumqi-hnz", 1991, {{fy, Str(reason::kFiscalYearBeforeParkFounded)}}},
      {"urumqi-hnz", 1992, {}},
      {"urumqi-hnz", kCurrentYear, {}},
      {"urumqi-hnz", kCurrentYear + 1, {{fy, Str(reason::kFiscalYearInFuture)}}},
      {"urumqi-hnz", std::numeric_limits<int32_t>::max(), {{fy, Str(reason::kFiscalYearInFuture)}}},
      {"urumqi-hnz", -2023, {{fy, Str(reason::kFiscalYearBeforeParkFounded)}}},
      {"urumqi-hnz", 0, {{fy, Str(reason::kFieldRequired)}}},
      {"zhongguancun", 1987, {{fy, Str(reason::kFiscalYearBeforeParkFounded)}}},
      {"zhongguancun", 1988, {}},
      // A park whose founding year is not known: only the program's start bounds the year.
      {"founding-year-unknown", 1988, {}},
      {"founding-year-unknown", 1987, {{fy, Str(reason::kFiscalYearBeforeProgram)}}},
      // An unknown park: the year is still checked against what is known.
      {"atlantis", 1988, {{"filing.park_id", Str(reason::kParkUnknown)}}},
      {"atlantis",
       1987,
       {{"filing.park_id", Str(reason::kParkUnknown)},
        {fy, Str(reason::kFiscalYearBeforeProgram)}}},
      {"atlantis",
       kCurrentYear + 1,
       {{"filing.park_id", Str(reason::kParkUnknown)}, {fy, Str(reason::kFiscalYearInFuture)}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << c.park << " " << c.year);
    v1::AnnualFiling filing = ValidFiling();
    filing.set_park_id(c.park);
    filing.set_fiscal_year(c.year);
    EXPECT_EQ(Found(Validate(filing)), c.expected);
  }
}

TEST(FilingValidatorTest, FiscalYearMessagesNameTheYears) {
  v1::AnnualFiling filing = ValidFiling();
  filing.set_fiscal_year(1991);
  ValidationResult result = Validate(filing);
  ASSERT_EQ(result.violations.size(), 1u);
  EXPECT_THAT(result.violations[0].message(),
              HasSubstr("1991 is before the park was founded (1992)"));
  EXPECT_THAT(result.violations[0].message_zh(), HasSubstr("1992 年"));

  filing.set_fiscal_year(2025);
  result = Validate(filing);
  ASSERT_EQ(result.violations.size(), 1u);
  EXPECT_THAT(result.violations[0].message(), HasSubstr("2025 is after the current year (2024)"));
}

TEST(FilingValidatorTest, CurrentYearComesFromTheOptions) {
  v1::AnnualFiling filing = ValidFiling();
  filing.set_fiscal_year(2030);
  EXPECT_FALSE(Validate(filing, {.current_year = 2029}).ok());
  EXPECT_TRUE(Validate(filing, {.current_year = 2030}).ok());
}

TEST(ValidationOptionsTest, ForTimeUsesChinaStandardTime) {
  const absl::TimeZone utc = absl::UTCTimeZone();
  const absl::Time before = absl::FromCivil(absl::CivilSecond(2025, 12, 31, 15, 59, 59), utc);
  const absl::Time midnight_in_beijing =
      absl::FromCivil(absl::CivilSecond(2025, 12, 31, 16, 0, 0), utc);
  EXPECT_EQ(ValidationOptions::ForTime(before).current_year, 2025);
  EXPECT_EQ(ValidationOptions::ForTime(midnight_in_beijing).current_year, 2026);
  EXPECT_EQ(ValidationOptions::ForTime(before).max_projects, 500);
}

TEST(FilingValidatorTest, ParkIdFormat) {
  const std::string park = "filing.park_id";
  const std::pair<std::string, std::vector<std::pair<std::string, std::string>>> cases[] = {
      {"", {{park, Str(reason::kFieldRequired)}}},
      {"kunming", {}},
      {"Urumqi-HNZ", {{park, Str(reason::kParkIdFormat)}}},
      {"urumqi--hnz", {{park, Str(reason::kParkIdFormat)}}},
      {"-urumqi", {{park, Str(reason::kParkIdFormat)}}},
      {"urumqi-", {{park, Str(reason::kParkIdFormat)}}},
      {"urumqi_hnz", {{park, Str(reason::kParkIdFormat)}}},
      {"urumqi hnz", {{park, Str(reason::kParkIdFormat)}}},
      {"乌鲁木齐", {{park, Str(reason::kParkIdFormat)}}},
      {std::string("urumqi\0hnz", 10), {{park, Str(reason::kParkIdFormat)}}},
      {"urumqi\xC0\xAF", {{park, Str(reason::kParkIdFormat)}}},
      // 64 characters is well-formed (and unknown); 65 is not.
      {Repeat("a", 64), {{park, Str(reason::kParkUnknown)}}},
      {Repeat("a", 65), {{park, Str(reason::kParkIdFormat)}}},
  };
  for (const auto& [park_id, expected] : cases) {
    SCOPED_TRACE(park_id);
    v1::AnnualFiling filing = ValidFiling();
    filing.set_park_id(park_id);
    filing.set_fiscal_year(2000);  // After every test park's founding.
    EXPECT_EQ(Found(Validate(filing)), expected);
  }
}

TEST(FilingValidatorTest, UnknownParkIsNamed) {
  v1::AnnualFiling filing = ValidFiling();
  filing.set_park_id("atlantis");
  const ValidationResult result = Validate(filing);
  ASSERT_EQ(result.violations.size(), 1u);
  EXPECT_THAT(result.violations[0].message(), HasSubstr("\"atlantis\""));
  EXPECT_THAT(result.violations[0].message_zh(), HasSubstr("“atlantis”"));
}

TEST(FilingValidatorTest, ParkDirectoryIsAsked) {
  // Any ParkDirectory will do, e.g. the registry's snapshot.
  class OneYearOld final : public ParkDirectory {
   public:
    std::optional<ParkFacts> Find(std::string_view park_id) const override {
      ++calls_;
      if (park_id != "brand-new") return std::nullopt;
      return ParkFacts{kCurrentYear, v1::ECONOMIC_REGION_WESTERN};
    }
    mutable int calls_ = 0;
  };
  const OneYearOld parks;
  v1::AnnualFiling filing = ValidFiling();
  filing.set_park_id("brand-new");
  const ValidationOptions options{.current_year = kCurrentYear};
  EXPECT_THAT(Found(ValidateFiling(filing, parks, options)),
              ElementsAre(Pair("filing.fiscal_year", Str(reason::kFiscalYearBeforeParkFounded))));
  EXPECT_EQ(parks.calls_, 1);
  filing.set_fiscal_year(kCurrentYear);
  EXPECT_TRUE(ValidateFiling(filing, parks, options).ok());
}

// --- Revision ---------------------------------------------------------------------------

TEST(FilingValidatorTest, Revision) {
  const std::string field = "filing.revision";
  const std::pair<int, std::vector<std::pair<std::string, std::string>>> cases[] = {
      {std::numeric_limits<int32_t>::min(), {{field, Str(reason::kRevisionOutOfRange)}}},
      {-1, {{field, Str(reason::kRevisionOutOfRange)}}},
      {0, {{field, Str(reason::kFieldRequired)}}},
      {1, {}},
      {2, {}},
      {std::numeric_limits<int32_t>::max(), {}},
  };
  for (const auto& [revision, expected] : cases) {
    v1::AnnualFiling filing = ValidFiling();
    filing.set_revision(revision);
    EXPECT_EQ(Found(Validate(filing)), expected) << revision;
  }
}

// --- Projects ---------------------------------------------------------------------------

v1::AnnualFiling WithProjects(int count) {
  v1::AnnualFiling filing = ValidFiling();
  filing.clear_projects();
  for (int i = 0; i < count; ++i) {
    *filing.add_projects() = Project("P" + std::to_string(i), "项目 " + std::to_string(i));
  }
  return filing;
}

TEST(FilingValidatorTest, NoProjectsIsFine) { EXPECT_TRUE(Validate(WithProjects(0)).ok()); }

TEST(FilingValidatorTest, DefaultMaxProjects) {
  EXPECT_TRUE(Validate(WithProjects(500)).ok());
  EXPECT_THAT(Found(Validate(WithProjects(501))),
              ElementsAre(Pair("filing.projects", Str(reason::kProjectsTooMany))));
}

TEST(FilingValidatorTest, ConfiguredMaxProjects) {
  const ValidationOptions options{.current_year = kCurrentYear, .max_projects = 3};
  EXPECT_TRUE(Validate(WithProjects(3), options).ok());
  v1::AnnualFiling filing = WithProjects(4);
  filing.mutable_projects(3)->set_title("");  // Past the limit: not examined.
  const ValidationResult result = Validate(filing, options);
  EXPECT_THAT(Found(result), ElementsAre(Pair("filing.projects", Str(reason::kProjectsTooMany))));
  EXPECT_THAT(result.violations[0].message(), HasSubstr("at most 3 projects; this one lists 4"));

  filing.mutable_projects(2)->set_title("");  // Within the limit: examined.
  EXPECT_THAT(Found(Validate(filing, options)),
              ElementsAre(Pair("filing.projects", Str(reason::kProjectsTooMany)),
                          Pair("filing.projects[2].title", Str(reason::kFieldRequired))));

  EXPECT_TRUE(Validate(WithProjects(0), {.current_year = kCurrentYear, .max_projects = 0}).ok());
  EXPECT_FALSE(Validate(WithProjects(1), {.current_year = kCurrentYear, .max_projects = 0}).ok());
}

TEST(FilingValidatorTest, ProjectIdFormat) {
  const std::string field = "filing.projects[1].project_id";
  const std::pair<std::string, std::vector<std::pair<std::string, std::string>>> cases[] = {
      {"", {{field, Str(reason::kFieldRequired)}}},
      {"P", {}},
      {"7", {}},
      {"A.b_c-1", {}},
      {Repeat("x", 64), {}},
      {Repeat("x", 65), {{field, Str(reason::kProjectIdFormat)}}},
      {"-p1", {{field, Str(reason::kProjectIdFormat)}}},
      {".", {{field, Str(reason::kProjectIdFormat)}}},
      {"..", {{field, Str(reason::kProjectIdFormat)}}},
      {"_p", {{field, Str(reason::kProjectIdFormat)}}},
      {"p 1", {{field, Str(reason::kProjectIdFormat)}}},
      {"p/1", {{field, Str(reason::kProjectIdFormat)}}},
      {"p\"1", {{field, Str(reason::kProjectIdFormat)}}},
      {"项目1", {{field, Str(reason::kProjectIdFormat)}}},
      {std::string("p\0", 2), {{field, Str(reason::kProjectIdFormat)}}},
      {"p\xFF", {{field, Str(reason::kProjectIdFormat)}}},
  };
  for (const auto& [id, expected] : cases) {
    SCOPED_TRACE(id);
    v1::AnnualFiling filing = ValidFiling();
    filing.mutable_projects(1)->set_project_id(id);
    EXPECT_EQ(Found(Validate(filing)), expected);
  }
}

TEST(FilingValidatorTest, DuplicateProjectIds) {
  v1::AnnualFiling filing = WithProjects(4);
  filing.mutable_projects(1)->set_project_id("P0");  // Same as projects[0].
  filing.mutable_projects(3)->set_project_id("p0");  // Same again, differing in case.
  const ValidationResult result = Validate(filing);
  EXPECT_THAT(Found(result),
              ElementsAre(Pair("filing.projects[1].project_id", Str(reason::kProjectIdDuplicate)),
                          Pair("filing.projects[3].project_id", Str(reason::kProjectIdDuplicate))));
  EXPECT_THAT(result.violations[0].message(),
              HasSubstr("\"P0\" is already used by filing.projects[0]"));
  EXPECT_THAT(result.violations[1].message(),
              HasSubstr("\"p0\" is already used by filing.projects[0]"));
  EXPECT_THAT(result.violations[1].message_zh(), HasSubstr("与 filing.projects[0] 重复"));
}

TEST(FilingValidatorTest, EmptyAndMalformedIdsAreNotDuplicates) {
  v1::AnnualFiling filing = WithProjects(2);
  filing.mutable_projects(0)->set_project_id("");
  filing.mutable_projects(1)->set_project_id("");
  EXPECT_THAT(Found(Validate(filing)),
              ElementsAre(Pair("filing.projects[0].project_id", Str(reason::kFieldRequired)),
                          Pair("filing.projects[1].project_id", Str(reason::kFieldRequired))));
}

TEST(FilingValidatorTest, TitleLengthCountsCodePoints) {
  const std::string field = "filing.projects[0].title";
  // One-, two-, three- and four-byte characters: the limit is 200 of any of them.
  for (const std::string_view character : {"a", "é", "材", "😀"}) {
    SCOPED_TRACE(character);
    v1::AnnualFiling filing = ValidFiling();
    filing.mutable_projects(0)->set_title(Repeat(character, 200));
    EXPECT_TRUE(Validate(filing).ok());
    filing.mutable_projects(0)->set_title(Repeat(character, 201));
    const ValidationResult result = Validate(filing);
    EXPECT_THAT(Found(result), ElementsAre(Pair(field, Str(reason::kTextTooLong))));
    EXPECT_THAT(result.violations[0].message(), HasSubstr("has 201 characters; at most 200"));
  }
  v1::AnnualFiling mixed = ValidFiling();
  mixed.mutable_projects(0)->set_title(Repeat("a材😀é", 50));  // 200 characters, 500 bytes.
  EXPECT_TRUE(Validate(mixed).ok());
  mixed.mutable_projects(0)->set_title(Repeat("a材😀é", 50) + "!");
  EXPECT_FALSE(Validate(mixed).ok());
}

TEST(FilingValidatorTest, TitleRequired) {
  const std::string field = "filing.projects[0].title";
  for (const std::string_view title : {"", " ", "   ", "\u3000", "\u00A0 \u2003"}) {
    v1::AnnualFiling filing = ValidFiling();
    filing.mutable_projects(0)->set_title(std::string(title));
    EXPECT_THAT(Found(Validate(filing)), ElementsAre(Pair(field, Str(reason::kFieldRequired))))
        << title;
  }
  v1::AnnualFiling filing = ValidFiling();
  filing.mutable_projects(0)->set_title("1");
  EXPECT_TRUE(Validate(filing).ok());
}

TEST(FilingValidatorTest, TitleControlCharacters) {
  const std::string field = "filing.projects[0].title";
  for (const std::string_view title :
       {std::string_view("a\0b", 3), std::string_view("a\nb"), std::string_view("\tab"),
        std::string_view("ab\x7F"), std::string_view("a\u0085b"), std::string_view("a\u2028b"),
        std::string_view("abc\u202Egpj.exe"), std::string_view("a\u2066b")}) {
    v1::AnnualFiling filing = ValidFiling();
    filing.mutable_projects(0)->set_title(std::string(title));
    const ValidationResult result = Validate(filing);
    EXPECT_THAT(Found(result), ElementsAre(Pair(field, Str(reason::kTextControlCharacter))))
        << title;
  }
  v1::AnnualFiling filing = ValidFiling();
  filing.mutable_projects(0)->set_title("材料\u202Eabc");
  EXPECT_THAT(Validate(filing).violations[0].message(),
              HasSubstr("control character U+202E at character 3"));
}

TEST(FilingValidatorTest, TitleMustBeValidUtf8) {
  const std::string field = "filing.projects[0].title";
  const std::pair<std::string_view, int> invalid[] = {
      {"\xC0\xAF", 0},                  // overlong '/', two bytes
      {"\xC1\xBF", 0},                  // overlong, two bytes
      {"ab\xE0\x80\xAF", 2},            // overlong '/', three bytes
      {"\xE0\x9F\xBF", 0},              // overlong U+07FF
      {"\xF0\x80\x80\xAF", 0},          // overlong '/', four bytes
      {"\xF0\x8F\xBF\xBF", 0},          // overlong U+FFFF
      {"\xED\xA0\x80", 0},              // U+D800, a high surrogate
      {"x\xED\xBF\xBF", 1},             // U+DFFF, a low surrogate
      {"\xED\xA0\xBD\xED\xB8\x80", 0},  // a surrogate pair encoded as CESU-8
      {"材\xE6\x96", 3},                // truncated three-byte sequence at the end
      {"\xE6", 0},                      // lead byte alone
      {"\xF0\x9F\x98", 0},              // truncated four-byte sequence
      {"\xE6\x96x", 0},                 // truncated, followed by ASCII
      {"\x80", 0},                      // stray continuation byte
      {"a\xBF", 1},                     // stray continuation byte
      {"\xF4\x90\x80\x80", 0},          // U+110000, above the last code point
      {"\xF5\x80\x80\x80", 0},          // invalid lead byte
      {"\xFE", 0},
      {"\xFF", 0},
  };
  for (const auto& [title, offset] : invalid) {
    SCOPED_TRACE(testing::PrintToString(std::string(title)));
    ASSERT_FALSE(IsStrictUtf8(title));
    v1::AnnualFiling filing = ValidFiling();
    filing.mutable_projects(0)->set_title(std::string(title));
    const ValidationResult result = Validate(filing);
    EXPECT_THAT(Found(result), ElementsAre(Pair(field, Str(reason::kTextInvalidUtf8))));
    if (!result.violations.empty()) {
      EXPECT_THAT(result.violations[0].message(),
                  HasSubstr("offset " + std::to_string(offset) + ")"));
    }
  }
  // The edges of the valid ranges.
  for (const std::string_view title : {"\xED\x9F\xBF",      // U+D7FF
                                       "\xEE\x80\x80",      // U+E000
                                       "\xF4\x8F\xBF\xBF",  // U+10FFFF
                                       "\xF0\x90\x80\x80",  // U+10000
                                       "\xE0\xA0\x80",      // U+0800
                                       "\xC2\xA9"}) {       // U+00A9
    ASSERT_TRUE(IsStrictUtf8(title));
    v1::AnnualFiling filing = ValidFiling();
    filing.mutable_projects(0)->set_title(std::string(title));
    EXPECT_TRUE(Validate(filing).ok()) << testing::PrintToString(std::string(title));
  }
}

TEST(FilingValidatorTest, ProjectEnums) {
  const auto check = [](int field, int stage,
                        const std::vector<std::pair<std::string, std::string>>& expected) {
    v1::AnnualFiling filing = ValidFiling();
    filing.mutable_projects(1)->set_field(static_cast<v1::TechnologyField>(field));
    filing.mutable_projects(1)->set_stage(static_cast<v1::ProjectStage>(stage));
    EXPECT_EQ(Found(Validate(filing)), expected) << field << " " << stage;
  };
  const std::string field = "filing.projects[1].field";
  const std::string stage = "filing.projects[1].stage";
  check(0, 1, {{field, Str(reason::kFieldRequired)}});
  check(1, 0, {{stage, Str(reason::kFieldRequired)}});
  check(0, 0, {{field, Str(reason::kFieldRequired)}, {stage, Str(reason::kFieldRequired)}});
  check(9, 3, {{field, Str(reason::kEnumUnknown)}, {stage, Str(reason::kEnumUnknown)}});
  check(-1, 1, {{field, Str(reason::kEnumUnknown)}});
  check(1, std::numeric_limits<int32_t>::max(), {{stage, Str(reason::kEnumUnknown)}});
  // Every defined value passes.
  for (int f = 1; f <= 8; ++f) {
    for (int s = 1; s <= 2; ++s) check(f, s, {});
  }
  ASSERT_FALSE(v1::TechnologyField_IsValid(9));  // The proto still has 8 fields.
}

TEST(FilingValidatorTest, UnknownEnumMessageNamesTheNumber) {
  v1::AnnualFiling filing = ValidFiling();
  filing.mutable_projects(0)->set_field(static_cast<v1::TechnologyField>(42));
  const ValidationResult result = Validate(filing);
  ASSERT_EQ(result.violations.size(), 1u);
  EXPECT_THAT(result.violations[0].message(), HasSubstr("unknown value 42"));
  EXPECT_THAT(result.violations[0].message_zh(), HasSubstr("42"));
}

// --- Enterprise name --------------------------------------------------------------------

TEST(FilingValidatorTest, EnterpriseName) {
  const std::string field = "filing.enterprise_name";
  const std::pair<std::string, std::vector<std::pair<std::string, std::string>>> cases[] = {
      {"", {}},  // Optional: the registry's name stands.
      {Repeat("企", 200), {}},
      {Repeat("企", 201), {{field, Str(reason::kTextTooLong)}}},
      {"Acme\xED\xA0\x80", {{field, Str(reason::kTextInvalidUtf8)}}},
      {"Acme\r\nLtd", {{field, Str(reason::kTextControlCharacter)}}},
  };
  for (const auto& [name, expected] : cases) {
    v1::AnnualFiling filing = ValidFiling();
    filing.set_enterprise_name(name);
    EXPECT_EQ(Found(Validate(filing)), expected) << testing::PrintToString(name);
  }
}

// --- Everything wrong at once ----------------------------------------------------------

TEST(FilingValidatorTest, OneViolationPerBrokenRule) {
  v1::AnnualFiling filing;
  filing.set_uscc("91350100M000100Y4O");
  filing.set_park_id("Urumqi");
  filing.set_fiscal_year(1900);
  filing.set_revision(-3);
  filing.set_gross_revenue_fen(-5);
  filing.set_rd_expenditure_fen(-6);
  filing.set_total_employees(10);
  filing.set_tertiary_educated_employees(11);
  filing.set_rd_employees(-1);
  *filing.add_projects() = Project("", "\xC0\xAF");
  *filing.add_projects() = Project("p 1", Repeat("题", 201));
  filing.mutable_projects(1)->set_field(static_cast<v1::TechnologyField>(99));
  filing.mutable_projects(1)->set_stage(v1::PROJECT_STAGE_UNSPECIFIED);
  filing.set_enterprise_name("\x01");
  const ValidationResult result =
      Validate(filing, {.current_year = kCurrentYear, .max_projects = 1});
  EXPECT_THAT(
      Found(result),
      ElementsAre(Pair("filing.uscc", Str(reason::kUsccCharacter)),
                  Pair("filing.park_id", Str(reason::kParkIdFormat)),
                  Pair("filing.fiscal_year", Str(reason::kFiscalYearBeforeProgram)),
                  Pair("filing.revision", Str(reason::kRevisionOutOfRange)),
                  Pair("filing.gross_revenue_fen", Str(reason::kMoneyNegative)),
                  Pair("filing.rd_expenditure_fen", Str(reason::kMoneyNegative)),
                  Pair("filing.tertiary_educated_employees", Str(reason::kEmployeesExceedTotal)),
                  Pair("filing.rd_employees", Str(reason::kEmployeesNegative)),
                  Pair("filing.projects", Str(reason::kProjectsTooMany)),
                  Pair("filing.projects[0].project_id", Str(reason::kFieldRequired)),
                  Pair("filing.projects[0].title", Str(reason::kTextInvalidUtf8)),
                  Pair("filing.enterprise_name", Str(reason::kTextControlCharacter))));
}

}  // namespace
}  // namespace stip::intake
