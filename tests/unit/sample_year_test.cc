// stip-sample-year: the generator in-process (its library) and the binary as a child. The
// qualified shares are judged here with this file's own exact integer reading of the three
// default rules, the filings with intake's own validator against the park catalogue.
#include "tools/sample_year/sample_year.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/numeric/int128.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "services/intake/filing_validator.h"
#include "services/intake/uscc.h"
#include "services/registry/park_catalogue.h"
#include "tests/support/test_environment.h"
#include <sys/wait.h>

namespace stip {
namespace {

using sample_year::Generate;
using sample_year::Options;
using sample_year::SampleYear;

constexpr const char* kFiles[] = {"enterprises.ndjson", "filings.ndjson", "amendments.ndjson",
                                  "summary.json"};

// The figures: enterprises, foreign-invested (where it gives them), qualified share.
struct Expected {
  int enterprises;
  int foreign_invested;  // -1: not given by the issue
  int target_bp;
};
const std::map<std::string, Expected>& ExpectedParks() {
  static const auto* parks = new std::map<std::string, Expected>{
      {"urumqi-hnz", {679, 51, 147 * 10000 / 679}},   // 147 hi-tech of 679
      {"kunming-hnz", {878, -1, 121 * 10000 / 878}},  // 121 approved hi-tech of 878
      {"zhongguancun", {4000, -1, 4500}},
      {"wuhan-east-lake", {600, -1, 3000}},
      {"changchun-hnz", {450, -1, 2400}},
  };
  return *parks;
}

std::filesystem::path GeneratorBinary() {
  return testing::TestProgramPath("stip-sample-year").parent_path().parent_path() / "tools" /
         "sample_year" / "stip-sample-year";
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

template <typename Message>
std::vector<Message> ReadNdjson(const std::filesystem::path& path) {
  std::vector<Message> messages;
  std::istringstream lines(ReadFile(path));
  std::string line;
  while (std::getline(lines, line)) {
    Message message;
    const auto status = google::protobuf::util::JsonStringToMessage(line, &message);
    EXPECT_TRUE(status.ok()) << path << ": " << status.ToString() << "\n" << line;
    messages.push_back(std::move(message));
  }
  return messages;
}

int RunGenerator(const std::vector<std::string>& args) {
  std::vector<std::string> argv{GeneratorBinary().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  testing::ChildProcess child(argv);
  const int status = child.Wait();
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The three default rules, read independently of the generator: R&D >= 3% of revenue,
// tertiary >= 30% and R&D staff >= 10% of employees; cross-multiplied in 128 bits.
bool Qualifies(const v1::AnnualFiling& f) {
  const auto at_least = [](int64_t part, int64_t whole, int64_t percent) {
    return absl::int128(part) * 100 >= absl::int128(whole) * percent;
  };
  return at_least(f.rd_expenditure_fen(), f.gross_revenue_fen(), 3) &&
         at_least(f.tertiary_educated_employees(), f.total_employees(), 30) &&
         at_least(f.rd_employees(), f.total_employees(), 10);
}

intake::InMemoryParkDirectory CatalogueDirectory() {
  absl::flat_hash_map<std::string, intake::ParkFacts> parks;
  for (const v1::Park& park : registry::EmbeddedParkCatalogue()) {
    parks[park.park_id()] = intake::ParkFacts{park.year_founded(), park.region()};
  }
  return intake::InMemoryParkDirectory(std::move(parks));
}

// One full-size sample, written once for all the tests that read it.
class SampleYearTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    const absl::StatusOr<SampleYear> sample = Generate(Options{});
    ASSERT_TRUE(sample.ok()) << sample.status();
    sample_ = new SampleYear(*sample);
    ASSERT_TRUE(sample_year::WriteSampleYear(Options{}, *sample_, dir_->path()).ok());
    enterprises_ = new std::vector<v1::EnrollEnterpriseRequest>(
        ReadNdjson<v1::EnrollEnterpriseRequest>(dir_->path() / "enterprises.ndjson"));
    filings_ = new std::vector<v1::AnnualFiling>(
        ReadNdjson<v1::AnnualFiling>(dir_->path() / "filings.ndjson"));
    amendments_ = new std::vector<v1::AnnualFiling>(
        ReadNdjson<v1::AnnualFiling>(dir_->path() / "amendments.ndjson"));
  }
  static void TearDownTestSuite() {
    delete amendments_;
    delete filings_;
    delete enterprises_;
    delete sample_;
    delete dir_;
  }

  static bool Accepted(const v1::AnnualFiling& filing) {
    static const intake::InMemoryParkDirectory* parks =
        new intake::InMemoryParkDirectory(CatalogueDirectory());
    intake::ValidationOptions options;
    options.current_year = 2025;  // fiscal 2024 is filed in 2025
    return intake::ValidateFiling(filing, *parks, options).ok();
  }

  static testing::TempDir* dir_;
  static SampleYear* sample_;
  static std::vector<v1::EnrollEnterpriseRequest>* enterprises_;
  static std::vector<v1::AnnualFiling>* filings_;
  static std::vector<v1::AnnualFiling>* amendments_;
};
testing::TempDir* SampleYearTest::dir_ = nullptr;
SampleYear* SampleYearTest::sample_ = nullptr;
std::vector<v1::EnrollEnterpriseRequest>* SampleYearTest::enterprises_ = nullptr;
std::vector<v1::AnnualFiling>* SampleYearTest::filings_ = nullptr;
std::vector<v1::AnnualFiling>* SampleYearTest::amendments_ = nullptr;

TEST_F(SampleYearTest, SameOptionsGiveTheSameBytes) {
  testing::TempDir again;
  const absl::StatusOr<SampleYear> sample = Generate(Options{});
  ASSERT_TRUE(sample.ok());
  ASSERT_TRUE(sample_year::WriteSampleYear(Options{}, *sample, again.path()).ok());
  for (const char* name : kFiles) {
    const std::string first = ReadFile(dir_->path() / name);
    EXPECT_FALSE(first.empty()) << name;
    EXPECT_TRUE(first == ReadFile(again.path() / name)) << name << " differs between two runs";
  }
}

TEST_F(SampleYearTest, AnotherSeedGivesOtherData) {
  Options options;
  options.seed = 2;
  const absl::StatusOr<SampleYear> other = Generate(options);
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(other->enterprises.size(), sample_->enterprises.size());
  EXPECT_NE(other->enterprises[0].uscc(), sample_->enterprises[0].uscc());
}

TEST_F(SampleYearTest, ParksHaveTheReportedSizes) {
  std::map<std::string, int> enterprises, foreign;
  for (const auto& e : *enterprises_) {
    enterprises[e.park_id()]++;
    if (e.foreign_invested()) foreign[e.park_id()]++;
  }
  ASSERT_EQ(enterprises.size(), ExpectedParks().size());
  for (const auto& [park_id, expected] : ExpectedParks()) {
    EXPECT_EQ(enterprises[park_id], expected.enterprises) << park_id;
    if (expected.foreign_invested >= 0) {
      EXPECT_EQ(foreign[park_id], expected.foreign_invested);
    }
    EXPECT_GT(foreign[park_id], 0) << park_id;
    EXPECT_LT(foreign[park_id], enterprises[park_id] / 5) << park_id;
  }
}

TEST_F(SampleYearTest, EveryUsccIsValidAndUnique) {
  std::set<std::string> usccs, names;
  for (const auto& e : *enterprises_) {
    EXPECT_TRUE(intake::IsValidUscc(e.uscc())) << e.uscc();
    EXPECT_TRUE(usccs.insert(e.uscc()).second) << "USCC twice: " << e.uscc();
    EXPECT_TRUE(names.insert(e.name()).second) << "name twice: " << e.name();
    EXPECT_TRUE(e.name().ends_with("Co., Ltd.")) << e.name();
  }
  // Every filing is from an enrolled enterprise, for its own park.
  std::map<std::string, std::string> park_of;
  for (const auto& e : *enterprises_) park_of[e.uscc()] = e.park_id();
  for (const auto* file : {filings_, amendments_}) {
    for (const auto& f : *file) EXPECT_EQ(park_of[f.uscc()], f.park_id()) << f.uscc();
  }
}

TEST_F(SampleYearTest, FilersInvalidAndValidAsIntakeJudgesThem) {
  std::map<std::string, int> enterprises, filings, refused;
  for (const auto& e : *enterprises_) enterprises[e.park_id()]++;
  std::set<std::string> filed;
  for (const auto& f : *filings_) {
    EXPECT_EQ(f.revision(), 1);
    EXPECT_EQ(f.fiscal_year(), 2024);
    EXPECT_TRUE(filed.insert(f.uscc()).second) << "two revision-1 filings: " << f.uscc();
    filings[f.park_id()]++;
    if (!Accepted(f)) refused[f.park_id()]++;
  }
  for (const auto& [park_id, count] : enterprises) {
    // About 97% file, about 1% of them invalid.
    EXPECT_GE(filings[park_id] * 100, count * 95) << park_id;
    EXPECT_LE(filings[park_id] * 100, count * 99) << park_id;
    EXPECT_GE(refused[park_id], 1) << park_id;
    EXPECT_LE(refused[park_id] * 100, filings[park_id] * 2) << park_id;
  }
  for (const auto& park : sample_->parks) {
    EXPECT_EQ(park.filings, filings[park.park_id]) << park.park_id;
    EXPECT_EQ(park.invalid_filings, refused[park.park_id]) << park.park_id;
  }
}

TEST_F(SampleYearTest, QualifiedSharesAreNearTheTargets) {
  // The latest valid filing of each enterprise decides.
  std::map<std::string, v1::AnnualFiling> latest;
  for (const auto* file : {filings_, amendments_}) {
    for (const auto& f : *file) {
      if (Accepted(f)) latest[f.uscc()] = f;
    }
  }
  std::map<std::string, int> enterprises, qualified;
  for (const auto& e : *enterprises_) enterprises[e.park_id()]++;
  for (const auto& [uscc, f] : latest) {
    if (Qualifies(f)) qualified[f.park_id()]++;
  }
  for (const auto& [park_id, expected] : ExpectedParks()) {
    const int share_bp = qualified[park_id] * 10000 / enterprises[park_id];
    EXPECT_NEAR(share_bp, expected.target_bp, 300)
        << park_id << ": " << qualified[park_id] << " qualified of " << enterprises[park_id];
  }
  EXPECT_NEAR(qualified["urumqi-hnz"], 147, 20);
  EXPECT_NEAR(qualified["kunming-hnz"], 121, 26);
  for (const auto& park : sample_->parks) {
    EXPECT_EQ(park.qualified_final, qualified[park.park_id]) << "summary of " << park.park_id;
  }
}

TEST_F(SampleYearTest, AmendmentsAreValidRevisionTwoAndSomeFlip) {
  std::map<std::string, const v1::AnnualFiling*> first;
  for (const auto& f : *filings_) first[f.uscc()] = &f;
  std::map<std::string, int> enterprises, amendments;
  for (const auto& e : *enterprises_) enterprises[e.park_id()]++;
  int to_qualified = 0, to_not_qualified = 0;
  std::set<std::string> amended;
  for (const auto& a : *amendments_) {
    EXPECT_EQ(a.revision(), 2);
    EXPECT_TRUE(Accepted(a)) << a.uscc();
    EXPECT_TRUE(amended.insert(a.uscc()).second) << a.uscc();
    ASSERT_TRUE(first.contains(a.uscc())) << "an amendment without a first filing: " << a.uscc();
    const v1::AnnualFiling& before = *first[a.uscc()];
    EXPECT_EQ(before.fiscal_year(), a.fiscal_year());
    amendments[a.park_id()]++;
    if (!Accepted(before)) continue;
    if (Qualifies(a) && !Qualifies(before)) ++to_qualified;
    if (!Qualifies(a) && Qualifies(before)) ++to_not_qualified;
  }
  for (const auto& [park_id, count] : enterprises) {
    EXPECT_GE(amendments[park_id] * 1000, count * 25) << park_id;  // about 3%
    EXPECT_LE(amendments[park_id] * 1000, count * 35) << park_id;
  }
  EXPECT_GT(to_qualified, 10);
  EXPECT_GT(to_not_qualified, 10);
  EXPECT_LT(to_qualified + to_not_qualified, static_cast<int>(amendments_->size()));
}

TEST_F(SampleYearTest, UrumqiProjectsLookLikeTheReportedOnes) {
  // Reported: 300 projects, 134 commercialized, 53 listed for 679 enterprises.
  for (const auto& park : sample_->parks) {
    if (park.park_id != "urumqi-hnz") continue;
    EXPECT_NEAR(park.projects, 300, 60);
    EXPECT_NEAR(park.commercialized_projects, 134, 35);
    EXPECT_NEAR(park.listed_projects, 53, 20);
  }
}

TEST(SampleYearBinaryTest, WritesTheSameBytesAsTheLibrary) {
  testing::TempDir first, second, in_process;
  ASSERT_EQ(RunGenerator({"--out", first.path().string(), "--scale", "0.05", "--seed", "7"}), 0);
  ASSERT_EQ(RunGenerator({"--out", second.path().string(), "--seed", "7", "--scale", "0.05",
                          "--year", "2024"}),
            0);
  Options options;
  options.scale = 0.05;
  options.seed = 7;
  const absl::StatusOr<SampleYear> sample = Generate(options);
  ASSERT_TRUE(sample.ok());
  ASSERT_TRUE(sample_year::WriteSampleYear(options, *sample, in_process.path()).ok());
  for (const char* name : kFiles) {
    const std::string bytes = ReadFile(first.path() / name);
    EXPECT_FALSE(bytes.empty()) << name;
    EXPECT_TRUE(bytes == ReadFile(second.path() / name)) << name;
    EXPECT_TRUE(bytes == ReadFile(in_process.path() / name)) << name;
  }
  // Scaled: about 5% of each park.
  int enterprises = 0;
  for (const auto& park : sample->parks) enterprises += park.enterprises;
  EXPECT_EQ(enterprises, 34 + 44 + 200 + 30 + 23);
}

TEST(SampleYearBinaryTest, UsageErrorsExitTwo) {
  testing::TempDir dir;
  const std::string out = (dir.path() / "out").string();
  EXPECT_EQ(RunGenerator({}), 2);  // --out is required
  EXPECT_EQ(RunGenerator({"--out", out, "--scale", "0"}), 2);
  EXPECT_EQ(RunGenerator({"--out", out, "--scale", "lots"}), 2);
  EXPECT_EQ(RunGenerator({"--out", out, "--year", "1980"}), 2);
  EXPECT_EQ(RunGenerator({"--out", out, "--colour"}), 2);
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_EQ(RunGenerator({"--help"}), 0);
}

}  // namespace
}  // namespace stip
