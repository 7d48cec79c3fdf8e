// Policies as data: the shipped sets load, Select finds the policy in force by fiscal year
// and region, and every refusal that stops start-up names the file and line to fix.
#include "services/assessment/policy.h"

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_environment.h"

namespace stip::assessment {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// The repository's policies/ folder, found from this file's path so the test runs from any
// build directory.
std::filesystem::path RepoPolicies() { return testing::SourcePath("policies"); }

void WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

// The 1-based number of the line of `text` that contains `marker`.
int LineOf(const std::string& text, const std::string& marker) {
  const size_t at = text.find(marker);
  EXPECT_NE(at, std::string::npos) << marker;
  int line = 1;
  for (size_t i = 0; i < at && i < text.size(); ++i) line += text[i] == '\n' ? 1 : 0;
  return line;
}

int LineOfFile(const std::filesystem::path& path, const std::string& marker) {
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return LineOf(text, marker);
}

std::string Message(const absl::Status& status) { return std::string{status.message()}; }

constexpr char kMinimal[] = R"(id: minimal
version: 1
fiscal_years:
  from: 2000
  to: open
criteria:
  - metric: RD_INTENSITY
    comparison: ">="
    threshold_basis_points: 300
)";

TEST(PolicySetTest, ShippedDefaultSetIsTheParkRules) {
  absl::StatusOr<PolicySet> set = PolicySet::Load(RepoPolicies());
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_THAT(set->List(), SizeIs(1));
  const v1::Policy& policy = set->List()[0];
  EXPECT_EQ(policy.policy_id(), "stip-default");
  EXPECT_EQ(policy.version(), 1);
  EXPECT_EQ(policy.first_fiscal_year(), 1991);
  EXPECT_FALSE(policy.has_last_fiscal_year());
  EXPECT_EQ(policy.source_file(), (RepoPolicies() / "stip-default.yaml").string());

  absl::StatusOr<PolicyInForce> in_force = set->Select(2024, v1::ECONOMIC_REGION_WESTERN);
  ASSERT_TRUE(in_force.ok()) << in_force.status();
  EXPECT_EQ(in_force->policy, &policy);
  ASSERT_THAT(in_force->criteria, SizeIs(3));
  const std::pair<v1::Metric, int32_t> expected[] = {{v1::METRIC_RD_INTENSITY, 300},
                                                     {v1::METRIC_TERTIARY_SHARE, 3000},
                                                     {v1::METRIC_RD_STAFF_SHARE, 1000}};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(in_force->criteria[i].metric(), expected[i].first);
    EXPECT_EQ(in_force->criteria[i].comparison(), v1::COMPARISON_GREATER_OR_EQUAL);
    EXPECT_EQ(in_force->criteria[i].threshold_basis_points(), expected[i].second);
    EXPECT_TRUE(in_force->criteria[i].revenue_bands().empty());
  }
  EXPECT_EQ(set->Select(1990, v1::ECONOMIC_REGION_EASTERN).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(PolicySetTest, ShippedHntePackHasTheRevenueBands) {
  absl::StatusOr<PolicySet> set = PolicySet::Load(RepoPolicies() / "packs" / "hnte-2016");
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_THAT(set->List(), SizeIs(1));
  EXPECT_EQ(set->List()[0].policy_id(), "hnte-2016-banded");
  EXPECT_EQ(set->Select(2015, v1::ECONOMIC_REGION_UNSPECIFIED).status().code(),
            absl::StatusCode::kNotFound);
  absl::StatusOr<PolicyInForce> in_force = set->Select(2016, v1::ECONOMIC_REGION_UNSPECIFIED);
  ASSERT_TRUE(in_force.ok()) << in_force.status();
  ASSERT_THAT(in_force->criteria, SizeIs(3));
  const v1::Criterion& rd = in_force->criteria[0];
  EXPECT_EQ(rd.metric(), v1::METRIC_RD_INTENSITY);
  ASSERT_EQ(rd.revenue_bands_size(), 3);
  EXPECT_EQ(rd.revenue_bands(0).revenue_up_to_fen(), 5'000'000'000);
  EXPECT_EQ(rd.revenue_bands(0).threshold_basis_points(), 500);
  EXPECT_EQ(rd.revenue_bands(1).revenue_up_to_fen(), 20'000'000'000);
  EXPECT_EQ(rd.revenue_bands(1).threshold_basis_points(), 400);
  EXPECT_EQ(rd.revenue_bands(2).revenue_up_to_fen(), 0);  // open
  EXPECT_EQ(rd.revenue_bands(2).threshold_basis_points(), 300);
}

TEST(PolicySetTest, ShippedSetsOverlapWhenLoadedTogether) {
  testing::TempDir dir;
  const std::filesystem::path a = dir.path() / "stip-default.yaml";
  const std::filesystem::path b = dir.path() / "hnte-2016-banded.yaml";
  std::filesystem::copy_file(RepoPolicies() / "stip-default.yaml", a);
  std::filesystem::copy_file(RepoPolicies() / "packs/hnte-2016/hnte-2016-banded.yaml", b);
  absl::StatusOr<PolicySet> set = PolicySet::Load(dir.path());
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(set.status()),
              AllOf(HasSubstr(absl::StrCat(b.string(), ":", LineOfFile(b, "fiscal_years:"), ":")),
                    HasSubstr(absl::StrCat(a.string(), ":", LineOfFile(a, "fiscal_years:"), ":")),
                    HasSubstr("overlap")));
}

TEST(PolicySetTest, SelectsByFiscalYearAndGetsByIdAndVersion) {
  testing::TempDir dir;
  const std::string criteria = R"(criteria:
  - metric: RD_INTENSITY
    comparison: ">="
    threshold_basis_points: 300
)";
  WriteFile(dir.path() / "park-v1.yaml", absl::StrCat("id: park\nversion: 1\nfiscal_years:\n"
                                                      "  from: 2000\n  to: 2009\n",
                                                      criteria));
  WriteFile(dir.path() / "park-v2.yml", absl::StrCat("id: park\nversion: 2\nfiscal_years:\n"
                                                     "  from: 2010\n  to: 2019\n",
                                                     criteria));
  WriteFile(dir.path() / "later.yaml", absl::StrCat("id: later\nversion: 7\nfiscal_years:\n"
                                                    "  from: 2_020\n  to: open\n",
                                                    criteria));
  // Not part of the set: another set's folder, notes, an editor's hidden copy.
  WriteFile(dir.path() / "packs/other/park.yaml", absl::StrCat("id: park\nversion: 1\n"));
  WriteFile(dir.path() / "README.md", "notes");
  WriteFile(dir.path() / ".park-v1.yaml", "id: [unfinished");

  absl::StatusOr<PolicySet> set = PolicySet::Load(dir.path());
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_THAT(set->List(), SizeIs(3));
  EXPECT_EQ(set->List()[0].version(), 1);
  EXPECT_EQ(set->List()[1].version(), 2);
  EXPECT_EQ(set->List()[2].policy_id(), "later");

  const std::pair<int32_t, std::string> cases[] = {{2000, "park 1"},  {2009, "park 1"},
                                                   {2010, "park 2"},  {2019, "park 2"},
                                                   {2020, "later 7"}, {9999, "later 7"}};
  for (const auto& [year, expected] : cases) {
    absl::StatusOr<PolicyInForce> in_force = set->Select(year, v1::ECONOMIC_REGION_CENTRAL);
    ASSERT_TRUE(in_force.ok()) << year << ": " << in_force.status();
    EXPECT_EQ(absl::StrCat(in_force->policy->policy_id(), " ", in_force->policy->version()),
              expected)
        << year;
  }
  EXPECT_EQ(set->Select(1999, v1::ECONOMIC_REGION_CENTRAL).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(set->Select(2005, static_cast<v1::EconomicRegion>(99)).status().code(),
            absl::StatusCode::kInvalidArgument);

  absl::StatusOr<const v1::Policy*> newest = set->Get("park", 0);
  ASSERT_TRUE(newest.ok()) << newest.status();
  EXPECT_EQ((*newest)->version(), 2);
  absl::StatusOr<const v1::Policy*> first = set->Get("park", 1);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->last_fiscal_year(), 2009);
  EXPECT_EQ(set->Get("park", 3).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(set->Get("nothing", 0).status().code(), absl::StatusCode::kNotFound);
}

TEST(PolicySetTest, RegionOverrideReplacesCriteriaOfTheSameMetric) {
  absl::StatusOr<PolicySet> set = PolicySet::Parse({{"regional.yaml", R"(id: regional
version: 1
fiscal_years: {from: 2000, to: open}
criteria:
  - {metric: RD_INTENSITY, comparison: ">=", threshold_basis_points: 300}
  - {metric: TERTIARY_SHARE, comparison: ">=", threshold_basis_points: 3000}
region_overrides:
  - region: WESTERN
    criteria:
      - {metric: RD_INTENSITY, comparison: ">", threshold_basis_points: 250}
  - region: NORTHEASTERN
    criteria:
      - {metric: RD_STAFF_SHARE, comparison: ">=", threshold_basis_points: 800}
      - {metric: TERTIARY_SHARE, comparison: ">=", threshold_basis_points: 2500}
)"}});
  ASSERT_TRUE(set.ok()) << set.status();

  auto summary = [&](v1::EconomicRegion region) {
    absl::StatusOr<PolicyInForce> in_force = set->Select(2024, region);
    EXPECT_TRUE(in_force.ok()) << in_force.status();
    std::string text;
    for (const v1::Criterion& c : in_force->criteria) {
      absl::StrAppend(
          &text, v1::Metric_Name(c.metric()),
          c.comparison() == v1::COMPARISON_GREATER ? ">" : ">=", c.threshold_basis_points(), " ");
    }
    return text;
  };
  const std::string base = "METRIC_RD_INTENSITY>=300 METRIC_TERTIARY_SHARE>=3000 ";
  EXPECT_EQ(summary(v1::ECONOMIC_REGION_UNSPECIFIED), base);
  EXPECT_EQ(summary(v1::ECONOMIC_REGION_EASTERN), base);
  EXPECT_EQ(summary(v1::ECONOMIC_REGION_CENTRAL), base);
  EXPECT_EQ(summary(v1::ECONOMIC_REGION_WESTERN),
            "METRIC_RD_INTENSITY>250 METRIC_TERTIARY_SHARE>=3000 ");
  // Replaced in place; a metric the policy lacks is added after the policy's own.
  EXPECT_EQ(summary(v1::ECONOMIC_REGION_NORTHEASTERN),
            "METRIC_RD_INTENSITY>=300 METRIC_TERTIARY_SHARE>=2500 METRIC_RD_STAFF_SHARE>=800 ");
}

TEST(PolicySetTest, MissingOrEmptyDirectoryIsRefused) {
  testing::TempDir dir;
  EXPECT_EQ(PolicySet::Load(dir.path() / "absent").status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<PolicySet> empty = PolicySet::Load(dir.path());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(empty.status()), HasSubstr("no policy files"));
}

// One refusal: the file's text, where the problem is (the line holding `marker`) and what
// the message must say.
struct Refusal {
  std::string name;
  std::string yaml;
  std::string marker;
  std::string says;

  friend void PrintTo(const Refusal& refusal, std::ostream* out) { *out << refusal.name; }
};

class RefusalTest : public ::testing::TestWithParam<Refusal> {};

TEST_P(RefusalTest, NamesFileAndLine) {
  const Refusal& refusal = GetParam();
  testing::TempDir dir;
  const std::filesystem::path file = dir.path() / "policy.yaml";
  WriteFile(file, refusal.yaml);
  absl::StatusOr<PolicySet> set = PolicySet::Load(dir.path());
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument) << set.status();
  EXPECT_THAT(
      Message(set.status()),
      AllOf(HasSubstr(absl::StrCat(file.string(), ":", LineOf(refusal.yaml, refusal.marker), ":")),
            HasSubstr(refusal.says)));
}

// The minimal policy with `from` replaced by `to` (once).
std::string Edit(const std::string& from, const std::string& to) {
  std::string text = kMinimal;
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

INSTANTIATE_TEST_SUITE_P(
    PolicySetTest, RefusalTest,
    ::testing::Values(
        Refusal{"UnknownMetric", Edit("metric: RD_INTENSITY", "metric: RD_INTENSTY"), "RD_INTENSTY",
                "unknown metric \"RD_INTENSTY\" (did you mean \"RD_INTENSITY\"?)"},
        Refusal{"MissingComparison", Edit("    comparison: \">=\"\n", ""), "- metric",
                "a criterion has no comparison"},
        Refusal{"UnquotedComparison", Edit("\">=\"", ">="), "comparison",
                "put comparisons in quotes"},
        Refusal{"BareGreaterThan", Edit("\">=\"", ">"), "comparison",
                "comparison must be \">=\" or \">\""},
        Refusal{"UnknownComparison", Edit("\">=\"", "\"=>\""), "comparison",
                "comparison must be \">=\" or \">\", in quotes, not \"=>\""},
        Refusal{"ThresholdAboveRange", Edit("300", "10001"), "10001",
                "threshold_basis_points must be a whole number of basis points from 0 to 10000"},
        Refusal{"ThresholdNegative", Edit("300", "-1"), "-1", "not \"-1\""},
        Refusal{"ThresholdAsPercent", Edit("300", "3%"), "3%", "not \"3%\""},
        Refusal{"ThresholdLeadingZero", Edit("300", "0300"), "0300", "not \"0300\""},
        Refusal{"NoThreshold", Edit("    threshold_basis_points: 300\n", ""), "- metric",
                "no threshold_basis_points"},
        Refusal{"BandsNotAscending",
                Edit("    threshold_basis_points: 300\n",
                     "    revenue_bands:\n"
                     "      - {revenue_up_to_fen: 20_000_000_000, threshold_basis_points: 400}\n"
                     "      - {revenue_up_to_fen: 5_000_000_000, threshold_basis_points: 500} #x\n"
                     "      - {revenue_up_to_fen: open, threshold_basis_points: 300}\n"),
                "#x", "ascending order"},
        Refusal{"BandsEqualBounds",
                Edit("    threshold_basis_points: 300\n",
                     "    revenue_bands:\n"
                     "      - {revenue_up_to_fen: 100, threshold_basis_points: 400}\n"
                     "      - {revenue_up_to_fen: 100, threshold_basis_points: 500} #x\n"
                     "      - {revenue_up_to_fen: open, threshold_basis_points: 300}\n"),
                "#x", "100 fen is not above 100 fen"},
        Refusal{"LastBandNotOpen",
                Edit("    threshold_basis_points: 300\n",
                     "    revenue_bands:\n"
                     "      - {revenue_up_to_fen: 100, threshold_basis_points: 400}\n"
                     "      - {revenue_up_to_fen: 200, threshold_basis_points: 300} #x\n"),
                "#x", "the last revenue band must be open"},
        Refusal{"OpenBandNotLast",
                Edit("    threshold_basis_points: 300\n",
                     "    revenue_bands:\n"
                     "      - {revenue_up_to_fen: open, threshold_basis_points: 400} #x\n"
                     "      - {revenue_up_to_fen: 200, threshold_basis_points: 300}\n"),
                "#x", "only the last revenue band may be open"},
        Refusal{"BandsOnAShare",
                Edit("metric: RD_INTENSITY\n    comparison: \">=\"\n    threshold_basis_points: "
                     "300\n",
                     "metric: TERTIARY_SHARE\n    comparison: \">=\"\n    revenue_bands:\n"
                     "      - {revenue_up_to_fen: open, threshold_basis_points: 300}\n"),
                "revenue_bands", "revenue_bands apply to metric RD_INTENSITY only"},
        Refusal{"ThresholdAndBands",
                Edit("    threshold_basis_points: 300\n",
                     "    threshold_basis_points: 300\n    revenue_bands:\n"
                     "      - {revenue_up_to_fen: open, threshold_basis_points: 300}\n"),
                "revenue_bands", "not both"},
        Refusal{"TypoInCriterionKey", Edit("threshold_basis_points", "threshhold_basis_points"),
                "threshhold",
                "unknown key \"threshhold_basis_points\" in a criterion (did you mean "
                "\"threshold_basis_points\"?)"},
        Refusal{"TypoInTopLevelKey", Edit("criteria:", "critera:"), "critera",
                "unknown key \"critera\" in the policy (did you mean \"criteria\"?)"},
        Refusal{"TypoInYears", Edit("to: open", "until: open"), "until", "unknown key \"until\""},
        Refusal{"KeyTwice", Edit("version: 1\n", "version: 1\nversion: 2 #x\n"), "#x",
                "\"version\" appears twice in the policy (first at line 2)"},
        Refusal{"BadRegion",
                absl::StrCat(kMinimal,
                             "region_overrides:\n"
                             "  - region: WEST #x\n"
                             "    criteria:\n"
                             "      - metric: RD_INTENSITY\n"
                             "        comparison: \">=\"\n"
                             "        threshold_basis_points: 250\n"),
                "#x", "unknown region \"WEST\"; known: EASTERN, CENTRAL, WESTERN, NORTHEASTERN"},
        Refusal{"RegionTwice",
                absl::StrCat(kMinimal, "region_overrides:\n",
                             "  - {region: WESTERN, criteria: [{metric: RD_INTENSITY, "
                             "comparison: \">=\", threshold_basis_points: 1}]}\n",
                             "  - {region: WESTERN, criteria: [{metric: RD_INTENSITY, "
                             "comparison: \">=\", threshold_basis_points: 2}]} #x\n"),
                "#x", "region ECONOMIC_REGION_WESTERN is overridden twice"},
        Refusal{"MetricTwice",
                absl::StrCat(kMinimal,
                             "  - metric: RD_INTENSITY #x\n"
                             "    comparison: \">\"\n"
                             "    threshold_basis_points: 400\n"),
                "#x",
                "metric METRIC_RD_INTENSITY appears twice in one criteria list (first at line 7)"},
        Refusal{"MissingVersion", Edit("version: 1\n", ""), "id:", "the policy has no version"},
        Refusal{"MissingYearsEnd", Edit("  to: open\n", ""),
                "from:", "fiscal_years has no to: the last fiscal year it applies to, or open"},
        Refusal{"YearsBackwards", Edit("to: open", "to: 1999"), "1999",
                "fiscal_years to 1999 is before from 2000"},
        Refusal{"YearNotAYear", Edit("from: 2000", "from: 20000"), "20000",
                "from must be a four-digit year"},
        Refusal{"BadId", Edit("id: minimal", "id: Minimal_Policy"), "Minimal",
                "id must be lowercase letters"},
        Refusal{"EmptyCriteria",
                std::string(kMinimal).substr(0, std::string(kMinimal).find("criteria:")) +
                    "criteria: [] #x\n",
                "#x", "criteria must be a list of one or more criteria"},
        Refusal{"SyntaxError", Edit("to: open", "to: [open"), "criteria", "YAML syntax"},
        Refusal{"TwoDocuments", absl::StrCat(kMinimal, "---\nid: second #x\n"), "#x",
                "one policy (one YAML document)"},
        Refusal{"NotAMapping", "- id: minimal\n", "- id", "a policy file must be a mapping"}),
    [](const ::testing::TestParamInfo<Refusal>& info) { return info.param.name; });

TEST(PolicySetTest, EmptyFileIsRefusedNamingIt) {
  testing::TempDir dir;
  WriteFile(dir.path() / "empty.yaml", "# nothing yet\n");
  absl::StatusOr<PolicySet> set = PolicySet::Load(dir.path());
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(set.status()),
              HasSubstr(absl::StrCat((dir.path() / "empty.yaml").string(), ": the file is empty")));
}

// Found by tests/fuzz/policy_fuzz.cc: yaml-cpp 0.7 (Debian 12) reads a malformed stream such
// as a lone "," as endless empty documents, and YAML::LoadAll looped forever, allocating
// (jbeder/yaml-cpp#1319). The loader must refuse such a file, and return.
TEST(PolicySetTest, MalformedStreamIsRefusedRatherThanReadForever) {
  for (const char* yaml : {"\n,\n    ", ",", "id: stip-default\n---\n,\n"}) {
    absl::StatusOr<PolicySet> set = PolicySet::Parse({{"malformed.yaml", yaml}});
    EXPECT_FALSE(set.ok()) << yaml;
    EXPECT_THAT(set.status().message(), HasSubstr("malformed.yaml")) << yaml;
  }
}

TEST(PolicySetTest, OverlappingYearsNameBothFilesAndLines) {
  testing::TempDir dir;
  std::string late = Edit("from: 2000", "from: 2015");
  late.replace(late.find("version: 1"), 10, "version: 2");
  WriteFile(dir.path() / "a.yaml", Edit("to: open", "to: 2015"));
  WriteFile(dir.path() / "b.yaml", "# version 2 starts in the year version 1 ends\n" + late);
  absl::StatusOr<PolicySet> set = PolicySet::Load(dir.path());
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string a = (dir.path() / "a.yaml").string();
  const std::string b = (dir.path() / "b.yaml").string();
  EXPECT_THAT(Message(set.status()),
              HasSubstr(absl::StrCat(b,
                                     ":4:1: fiscal years 2015 to open of policy minimal version "
                                     "2 overlap fiscal years 2000 to 2015 of policy minimal "
                                     "version 1 in ",
                                     a, ":3:1")));
}

TEST(PolicySetTest, SameIdAndVersionTwiceNamesBothFiles) {
  testing::TempDir dir;
  WriteFile(dir.path() / "a.yaml", Edit("to: open", "to: 2009"));
  WriteFile(dir.path() / "b.yaml", Edit("from: 2000", "from: 2010"));
  absl::StatusOr<PolicySet> set = PolicySet::Load(dir.path());
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(set.status()),
              HasSubstr(absl::StrCat((dir.path() / "b.yaml").string(),
                                     ":1:1: policy minimal version 1 is also defined in ",
                                     (dir.path() / "a.yaml").string(), ":1:1")));
}

TEST(PolicySetTest, EveryProblemInEveryFileIsReportedAtOnce) {
  testing::TempDir dir;
  WriteFile(dir.path() / "a.yaml", Edit("RD_INTENSITY", "RD").replace(0, 0, "colour: red\n"));
  WriteFile(dir.path() / "b.yaml", Edit("300", "99999"));
  absl::StatusOr<PolicySet> set = PolicySet::Load(dir.path());
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string a = (dir.path() / "a.yaml").string();
  const std::string b = (dir.path() / "b.yaml").string();
  EXPECT_THAT(Message(set.status()),
              AllOf(HasSubstr("(3 problems)"), HasSubstr(a + ":1:1: unknown key \"colour\""),
                    HasSubstr(a + ":8:13: unknown metric \"RD\""),
                    HasSubstr(b + ":9:29: threshold_basis_points must be")));
}

}  // namespace
}  // namespace stip::assessment
