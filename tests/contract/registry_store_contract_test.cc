// The registry store's contract (services/registry/registry_store.h), checked the same way
// on both backends: SQLite on a temporary file, and PostgreSQL on a fresh database of the
// server the test command started. The assertions are what a park office or a regulator
// would check: the register, the Torch program roster, the feeds, the outbox and the
// statistics, the last recounted independently from the events the test generated.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/event.h"
#include "services/registry/park_catalogue.h"
#include "services/registry/registry_schema.h"
#include "services/registry/registry_store.h"
#include "tests/support/test_environment.h"

namespace stip::registry {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

enum class Backend { kSqlite, kPostgres };

std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "Sqlite" : "Postgres";
}

constexpr int kFilingPartitions = 4;
constexpr int kDecisionPartitions = 4;
constexpr char kGroup[] = "registry";

// A valid USCC (GB 32100-2015) for `n`: "91" (enterprise), a region code, a 9-character
// organization code made of digits, and the check character.
std::string Uscc(int64_t n) {
  static constexpr char kAlphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
  static constexpr int kWeights[17] = {1,  3,  9,  27, 19, 26, 16, 17, 20,
                                       29, 25, 13, 8,  24, 10, 30, 28};
  std::string digits = std::to_string(n);
  std::string code = "91650100" + std::string(9 - std::min<size_t>(9, digits.size()), '0') + digits;
  code.resize(17);
  int sum = 0;
  for (int i = 0; i < 17; ++i) {
    const int value = static_cast<int>(std::string_view(kAlphabet).find(code[i]));
    sum += value * kWeights[i];
  }
  const int check = (31 - sum % 31) % 31;
  return code + kAlphabet[check];
}

const v1::Park& CataloguePark(const std::string& park_id) {
  for (const v1::Park& park : EmbeddedParkCatalogue()) {
    if (park.park_id() == park_id) return park;
  }
  ADD_FAILURE() << "no park " << park_id << " in the catalogue";
  static const v1::Park kNone;
  return kNone;
}

v1::HiTechProject Project(const std::string& id, v1::ProjectStage stage, bool nominated) {
  v1::HiTechProject project;
  project.set_project_id(id);
  project.set_title(absl::StrCat("project ", id));
  project.set_field(v1::TECHNOLOGY_FIELD_NEW_MATERIALS);
  project.set_stage(stage);
  project.set_torch_nominated(nominated);
  return project;
}

// An accepted filing as intake publishes it; its id names the enterprise, year and revision.
v1::AcceptedFiling Filing(const std::string& uscc, const std::string& park_id, int32_t year,
                          int32_t revision, int64_t revenue_fen = 100'000'000,
                          int64_t rd_fen = 5'000'000,
                          std::vector<v1::HiTechProject> projects = {}) {
  v1::AcceptedFiling accepted;
  accepted.set_filing_id(absl::StrCat("f-", uscc, "-", year, "-r", revision));
  accepted.set_region(CataloguePark(park_id).region());
  v1::AnnualFiling* filing = accepted.mutable_filing();
  filing->set_uscc(uscc);
  filing->set_park_id(park_id);
  filing->set_fiscal_year(year);
  filing->set_revision(revision);
  filing->set_gross_revenue_fen(revenue_fen);
  filing->set_rd_expenditure_fen(rd_fen);
  filing->set_total_employees(100);
  filing->set_tertiary_educated_employees(40);
  filing->set_rd_employees(12);
  filing->set_enterprise_name(absl::StrCat("Enterprise ", uscc));
  for (auto& project : projects) *filing->add_projects() = std::move(project);
  return accepted;
}

v1::QualificationDecision Decision(const v1::AcceptedFiling& accepted, v1::DecisionOutcome outcome,
                                   int32_t policy_version = 1) {
  v1::QualificationDecision decision;
  decision.set_decision_id(absl::StrCat("d-", accepted.filing_id(), "-v", policy_version));
  decision.set_filing_id(accepted.filing_id());
  decision.set_uscc(accepted.filing().uscc());
  decision.set_park_id(accepted.filing().park_id());
  decision.set_region(accepted.region());
  decision.set_fiscal_year(accepted.filing().fiscal_year());
  decision.set_filing_revision(accepted.filing().revision());
  decision.set_policy_id("default");
  decision.set_policy_version(policy_version);
  decision.set_outcome(outcome);
  return decision;
}

std::string KeyOf(const PositionedEvent& event) {
  if (const auto* filing = std::get_if<v1::AcceptedFiling>(&event.event)) {
    return filing->filing().uscc();
  }
  if (const auto* decision = std::get_if<v1::QualificationDecision>(&event.event)) {
    return decision->uscc();
  }
  return std::get<DeadLetter>(event.event).event.key;
}

// Gives events the positions the consumer would see them at: the topic of their kind, the
// partition of their key, the next offset of that partition.
class Positions {
 public:
  PositionedEvent Next(
      std::variant<v1::AcceptedFiling, v1::QualificationDecision, DeadLetter> event) {
    PositionedEvent positioned;
    positioned.event = std::move(event);
    const std::string key = KeyOf(positioned);
    if (std::holds_alternative<v1::QualificationDecision>(positioned.event)) {
      positioned.position = {std::string(kDecisionsTopic),
                             PartitionForKey(key, kDecisionPartitions)};
    } else {
      positioned.position = {std::string(kFilingsTopic), PartitionForKey(key, kFilingPartitions)};
    }
    positioned.offset = next_[positioned.position]++;
    return positioned;
  }
  const std::map<TopicPartition, int64_t>& next() const { return next_; }

 private:
  std::map<TopicPartition, int64_t> next_;
};

std::optional<std::string> HeaderOf(const OutgoingEvent& event, std::string_view name) {
  for (const auto& [header, value] : event.headers) {
    if (header == name) return value;
  }
  return std::nullopt;
}

class RegistryStoreContractTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    url_ = NewUrl();
    ASSERT_FALSE(url_.empty());
    store_ = OpenStore(url_);
    ASSERT_NE(store_, nullptr);
  }

  std::string NewUrl() {
    if (GetParam() == Backend::kSqlite) {
      return absl::StrCat("sqlite://", dir_.path().string(), "/", testing::UniqueName("registry"),
                          ".db");
    }
    return testing::FreshPostgresDatabase("registry");
  }

  StoreOptions Options() {
    StoreOptions options;
    options.now = [clock = clock_] { return absl::FromUnixMicros(clock->load()); };
    return options;
  }

  std::unique_ptr<RegistryStore> OpenStore(const std::string& url) {
    auto store = RegistryStore::Open(url, Options());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  void AdvanceClock(absl::Duration by) { *clock_ += absl::ToInt64Microseconds(by); }
  absl::Time Now() const { return absl::FromUnixMicros(clock_->load()); }

  void LoadCatalogue() {
    auto loaded = store_->LoadCatalogueIfEmpty(EmbeddedParkCatalogue());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
  }

  void Enroll(const std::string& uscc, const std::string& park_id, bool foreign = false) {
    auto enrolled =
        store_->EnrollEnterprise(uscc, absl::StrCat("Enterprise ", uscc), park_id, foreign);
    ASSERT_TRUE(enrolled.ok()) << enrolled.status();
  }

  // Applies `events` as one batch; a failure fails the test and counts nothing.
  ApplyCounts Apply(const std::vector<PositionedEvent>& events, RegistryStore* store = nullptr) {
    auto counts = (store != nullptr ? store : store_.get())->Apply(kGroup, events);
    EXPECT_TRUE(counts.ok()) << counts.status();
    return counts.ok() ? *counts : ApplyCounts{};
  }
  ApplyCounts ApplyOne(
      std::variant<v1::AcceptedFiling, v1::QualificationDecision, DeadLetter> event) {
    return Apply({positions_.Next(std::move(event))});
  }

  v1::Enterprise MustGetEnterprise(const std::string& uscc) {
    auto enterprise = store_->GetEnterprise(uscc);
    EXPECT_TRUE(enterprise.ok()) << enterprise.status();
    if (!enterprise.ok() || !enterprise->has_value()) {
      ADD_FAILURE() << "enterprise " << uscc << " is unknown";
      return {};
    }
    return **enterprise;
  }

  std::vector<OutboxEvent> Outbox(std::string_view topic = "") {
    auto pending = store_->PendingOutbox(100000);
    EXPECT_TRUE(pending.ok()) << pending.status();
    std::vector<OutboxEvent> events;
    if (!pending.ok()) return events;
    for (auto& event : *pending) {
      if (topic.empty() || event.event.topic == topic) events.push_back(std::move(event));
    }
    return events;
  }

  // Every listing of the feed, from the start.
  std::vector<v1::TorchListing> AllListings() {
    std::vector<v1::TorchListing> listings;
    int64_t after = 0;
    while (true) {
      auto read = store_->ReadListings(after, {}, 500, 5000);
      EXPECT_TRUE(read.ok()) << read.status();
      if (!read.ok() || read->entries.empty()) break;
      for (auto& entry : read->entries) listings.push_back(std::move(entry.item));
      after = read->scanned_to;
    }
    return listings;
  }

  testing::TempDir dir_;
  std::shared_ptr<std::atomic<int64_t>> clock_ =
      std::make_shared<std::atomic<int64_t>>(absl::ToUnixMicros(
          absl::FromCivil(absl::CivilSecond(2022, 3, 1, 9, 0, 0), absl::UTCTimeZone())));
  std::string url_;
  std::unique_ptr<RegistryStore> store_;
  Positions positions_;
};

// --- 1. Migrations and the catalogue --------------------------------------------------

TEST_P(RegistryStoreContractTest, FreshDatabaseReachesTheLatestSchemaAndReopensHarmlessly) {
  auto version = store_->SchemaVersion();
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, LatestSchemaVersion());
  EXPECT_GE(*version, 1);

  // A second store on the same database, while the first is open, and a re-open.
  auto second = OpenStore(url_);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(*second->SchemaVersion(), LatestSchemaVersion());
  second.reset();
  store_.reset();
  store_ = OpenStore(url_);
  ASSERT_NE(store_, nullptr);
  EXPECT_EQ(*store_->SchemaVersion(), LatestSchemaVersion());

  // Two instances starting together on a fresh database apply the migrations once.
  const std::string fresh = NewUrl();
  std::vector<absl::Status> opened(2);
  std::vector<std::unique_ptr<RegistryStore>> stores(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      auto store = RegistryStore::Open(fresh, Options());
      opened[i] = store.status();
      if (store.ok()) stores[i] = std::move(*store);
    });
  }
  for (auto& thread : threads) thread.join();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(opened[i].ok()) << opened[i];
    EXPECT_EQ(*stores[i]->SchemaVersion(), LatestSchemaVersion());
  }
}

TEST_P(RegistryStoreContractTest, LoadsTheEmbeddedCatalogueOnce) {
  const auto& catalogue = EmbeddedParkCatalogue();
  auto loaded = store_->LoadCatalogueIfEmpty(catalogue);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, static_cast<int>(catalogue.size()));
  EXPECT_EQ(*store_->LoadCatalogueIfEmpty(catalogue), 0);
  auto reopened = OpenStore(url_);
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(*reopened->LoadCatalogueIfEmpty(catalogue), 0);

  auto zhongguancun = store_->GetPark("zhongguancun");
  ASSERT_TRUE(zhongguancun.ok() && zhongguancun->has_value());
  EXPECT_EQ((*zhongguancun)->year_founded(), 1988);
  EXPECT_EQ((*zhongguancun)->region(), v1::ECONOMIC_REGION_EASTERN);
  for (const char* western : {"urumqi-hnz", "kunming-hnz"}) {
    auto park = store_->GetPark(western);
    ASSERT_TRUE(park.ok() && park->has_value()) << western;
    EXPECT_EQ((*park)->year_founded(), 1992) << western;
    EXPECT_EQ((*park)->region(), v1::ECONOMIC_REGION_WESTERN) << western;
  }
  auto all = store_->ListParks(v1::ECONOMIC_REGION_UNSPECIFIED, 1000, "");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_THAT(all->items, SizeIs(catalogue.size()));
  auto unknown = store_->GetPark("atlantis-hnz");
  ASSERT_TRUE(unknown.ok());
  EXPECT_FALSE(unknown->has_value());
}

// --- 2. Parks ---------------------------------------------------------------------------

TEST_P(RegistryStoreContractTest, RegisterParkIsIdempotentAndRefusesOtherData) {
  v1::Park park;
  park.set_park_id("test-hnz");
  park.set_name("Test High-tech Zone");
  park.set_city("Lanzhou");
  park.set_province("Gansu");
  park.set_region(v1::ECONOMIC_REGION_WESTERN);
  park.set_year_founded(1991);
  auto registered = store_->RegisterPark(park);
  ASSERT_TRUE(registered.ok()) << registered.status();
  EXPECT_EQ(registered->SerializeAsString(), park.SerializeAsString());
  EXPECT_TRUE(store_->RegisterPark(park).ok());

  v1::Park other = park;
  other.set_year_founded(1992);
  EXPECT_EQ(store_->RegisterPark(other).status().code(), absl::StatusCode::kAlreadyExists);
  auto stored = store_->GetPark("test-hnz");
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->year_founded(), 1991);
  // Registering a park first means the catalogue is not loaded over it.
  EXPECT_EQ(*store_->LoadCatalogueIfEmpty(EmbeddedParkCatalogue()), 0);
}

TEST_P(RegistryStoreContractTest, ListParksPagesThroughEachRegionOnceInOrder) {
  LoadCatalogue();
  for (int region = v1::ECONOMIC_REGION_UNSPECIFIED; region <= v1::ECONOMIC_REGION_NORTHEASTERN;
       ++region) {
    std::vector<std::string> expected;
    for (const v1::Park& park : EmbeddedParkCatalogue()) {
      if (region == 0 || park.region() == region) expected.push_back(park.park_id());
    }
    std::sort(expected.begin(), expected.end());
    std::vector<std::string> seen;
    std::string token;
    int pages = 0;
    do {
      auto page = store_->ListParks(static_cast<v1::EconomicRegion>(region), 7, token);
      ASSERT_TRUE(page.ok()) << page.status();
      EXPECT_LE(page->items.size(), 7u);
      for (const v1::Park& park : page->items) {
        EXPECT_TRUE(region == 0 || park.region() == region) << park.park_id();
        seen.push_back(park.park_id());
      }
      token = page->next_page_token;
      ASSERT_LT(++pages, 100);
    } while (!token.empty());
    EXPECT_EQ(seen, expected) << "region " << region;
    EXPECT_EQ(pages, static_cast<int>((expected.size() + 6) / 7)) << "region " << region;
  }

  auto first = store_->ListParks(v1::ECONOMIC_REGION_WESTERN, 7, "");
  ASSERT_TRUE(first.ok());
  ASSERT_FALSE(first->next_page_token.empty());
  EXPECT_EQ(
      store_->ListParks(v1::ECONOMIC_REGION_EASTERN, 7, first->next_page_token).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      store_->ListParks(v1::ECONOMIC_REGION_UNSPECIFIED, 7, first->next_page_token).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ListParks(v1::ECONOMIC_REGION_WESTERN, 7, "not-a-token").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// --- 3. Enterprises ---------------------------------------------------------------------

TEST_P(RegistryStoreContractTest, EnrollsEnterprisesInKnownParksOnly) {
  LoadCatalogue();
  EXPECT_EQ(store_->EnrollEnterprise(Uscc(1), "Nowhere Ltd", "atlantis-hnz", false).status().code(),
            absl::StatusCode::kNotFound);
  auto unknown = store_->GetEnterprise(Uscc(1));
  ASSERT_TRUE(unknown.ok());
  EXPECT_FALSE(unknown->has_value());

  auto enrolled = store_->EnrollEnterprise(Uscc(2), "Tianshan Materials", "urumqi-hnz", true);
  ASSERT_TRUE(enrolled.ok()) << enrolled.status();
  EXPECT_EQ(enrolled->uscc(), Uscc(2));
  EXPECT_EQ(enrolled->park_id(), "urumqi-hnz");
  EXPECT_EQ(enrolled->region(), v1::ECONOMIC_REGION_WESTERN);
  EXPECT_TRUE(enrolled->foreign_invested());
  EXPECT_EQ(enrolled->status(), v1::ENTERPRISE_STATUS_ENROLLED);
  EXPECT_EQ(enrolled->roster_status(), v1::ROSTER_STATUS_NOT_LISTED);
  EXPECT_EQ(absl::FromUnixMicros(enrolled->enroll_time().seconds() * 1'000'000 +
                                 enrolled->enroll_time().nanos() / 1000),
            Now());
  v1::Enterprise got = MustGetEnterprise(Uscc(2));
  EXPECT_EQ(got.SerializeAsString(), enrolled->SerializeAsString());

  // Moving to another park and renaming keeps the enrollment time.
  AdvanceClock(absl::Hours(1));
  auto moved = store_->EnrollEnterprise(Uscc(2), "Tianshan New Materials", "kunming-hnz", true);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->park_id(), "kunming-hnz");
  EXPECT_EQ(moved->name(), "Tianshan New Materials");
  EXPECT_EQ(moved->enroll_time().seconds(), enrolled->enroll_time().seconds());
}

TEST_P(RegistryStoreContractTest, ListEnterprisesFiltersByParkRegionStatusAndYear) {
  LoadCatalogue();
  // 1..4 in urumqi (western), 5..7 in kunming (western), 8..10 in zhongguancun (eastern).
  for (int i = 1; i <= 10; ++i) {
    Enroll(Uscc(i), i <= 4 ? "urumqi-hnz" : i <= 7 ? "kunming-hnz" : "zhongguancun", i % 3 == 0);
  }
  // 1 and 8 filed for 2021 and qualified; 2 filed for 2021 and did not; 5 filed for 2020.
  for (int i : {1, 2, 8}) {
    const auto filing = Filing(Uscc(i), i == 8 ? "zhongguancun" : "urumqi-hnz", 2021, 1);
    ApplyOne(filing);
    ApplyOne(Decision(
        filing, i == 2 ? v1::DECISION_OUTCOME_NOT_QUALIFIED : v1::DECISION_OUTCOME_QUALIFIED));
  }
  ApplyOne(Filing(Uscc(5), "kunming-hnz", 2020, 1));

  auto usccs = [&](const EnterpriseFilter& filter) {
    std::vector<std::string> found;
    std::string token;
    do {
      auto page = store_->ListEnterprises(filter, 3, token);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      for (const auto& enterprise : page->items) found.push_back(enterprise.uscc());
      token = page->next_page_token;
    } while (!token.empty());
    return found;
  };
  auto expected = [](std::vector<int> numbers) {
    std::vector<std::string> list;
    for (int n : numbers) list.push_back(Uscc(n));
    std::sort(list.begin(), list.end());
    return list;
  };
  EXPECT_EQ(usccs({}), expected({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(usccs({.park_id = "urumqi-hnz"}), expected({1, 2, 3, 4}));
  EXPECT_EQ(usccs({.region = v1::ECONOMIC_REGION_WESTERN}), expected({1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(usccs({.region = v1::ECONOMIC_REGION_CENTRAL}), expected({}));
  EXPECT_EQ(usccs({.status = v1::ENTERPRISE_STATUS_QUALIFIED}), expected({1, 8}));
  EXPECT_EQ(usccs({.status = v1::ENTERPRISE_STATUS_NOT_QUALIFIED}), expected({2}));
  EXPECT_EQ(usccs({.status = v1::ENTERPRISE_STATUS_ENROLLED}), expected({3, 4, 5, 6, 7, 9, 10}));
  EXPECT_EQ(usccs({.fiscal_year = 2021}), expected({1, 2, 8}));
  EXPECT_EQ(usccs({.fiscal_year = 2020}), expected({5}));
  EXPECT_EQ(usccs({.region = v1::ECONOMIC_REGION_WESTERN, .fiscal_year = 2021}), expected({1, 2}));
  EXPECT_EQ(usccs({.park_id = "kunming-hnz", .status = v1::ENTERPRISE_STATUS_QUALIFIED}),
            expected({}));

  auto one = MustGetEnterprise(Uscc(1));
  ASSERT_THAT(one.latest_revisions(), SizeIs(1));
  EXPECT_EQ(one.latest_revisions(0).fiscal_year(), 2021);
  EXPECT_EQ(one.latest_revisions(0).revision(), 1);

  // A token is bound to its filters.
  auto page = store_->ListEnterprises({.park_id = "urumqi-hnz"}, 2, "");
  ASSERT_TRUE(page.ok());
  ASSERT_FALSE(page->next_page_token.empty());
  EXPECT_EQ(
      store_->ListEnterprises({.park_id = "kunming-hnz"}, 2, page->next_page_token).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_P(RegistryStoreContractTest, EnterprisePagesStayStableWhileEnterprisesAreEnrolled) {
  LoadCatalogue();
  std::set<std::string> initial;
  for (int i = 0; i < 60; ++i) {
    const std::string uscc = Uscc(1000 + 2 * i);
    Enroll(uscc, "urumqi-hnz");
    initial.insert(uscc);
  }
  std::map<std::string, int> seen;
  std::string token;
  int next_new = 0;
  int pages = 0;
  do {
    auto page = store_->ListEnterprises({.park_id = "urumqi-hnz"}, 7, token);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const auto& enterprise : page->items) ++seen[enterprise.uscc()];
    token = page->next_page_token;
    // Between pages, others enroll: before and after the cursor.
    for (int k = 0; k < 3; ++k) Enroll(Uscc(1000 + 2 * (next_new++ * 7 % 60) + 1), "urumqi-hnz");
    Enroll(Uscc(500 + next_new), "urumqi-hnz");
    Enroll(Uscc(5000 + next_new), "urumqi-hnz");
    ASSERT_LT(++pages, 200);
  } while (!token.empty());
  for (const std::string& uscc : initial) EXPECT_EQ(seen[uscc], 1) << uscc;
  for (const auto& [uscc, times] : seen) EXPECT_EQ(times, 1) << uscc;
}

// --- 4. Applying the event streams ------------------------------------------------------

TEST_P(RegistryStoreContractTest, RecordsFilingsAndDecisionsOnceAndSkipsAppliedPositions) {
  LoadCatalogue();
  Enroll(Uscc(1), "urumqi-hnz");
  Enroll(Uscc(2), "kunming-hnz");
  const auto filing1 = Filing(Uscc(1), "urumqi-hnz", 2021, 1);
  const auto filing2 = Filing(Uscc(2), "kunming-hnz", 2021, 1);
  const auto decision1 = Decision(filing1, v1::DECISION_OUTCOME_QUALIFIED);
  const auto decision2 = Decision(filing2, v1::DECISION_OUTCOME_NOT_QUALIFIED);
  const std::vector<PositionedEvent> batch = {positions_.Next(filing1), positions_.Next(filing2),
                                              positions_.Next(decision1),
                                              positions_.Next(decision2)};
  ApplyCounts counts = Apply(batch);
  EXPECT_EQ(counts.filings_recorded, 2);
  EXPECT_EQ(counts.decisions_recorded, 2);
  EXPECT_EQ(counts.roster_changes, 1);  // 1 listed; 2 was never listed
  EXPECT_EQ(counts.events_already_applied, 0);

  auto got = store_->GetFiling(filing1.filing_id());
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->SerializeAsString(), filing1.SerializeAsString());
  auto decided = store_->GetDecision(decision2.decision_id());
  ASSERT_TRUE(decided.ok() && decided->has_value());
  EXPECT_EQ((*decided)->SerializeAsString(), decision2.SerializeAsString());
  auto found = store_->FindDecisionForFiling(filing1.filing_id());
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->decision_id(), decision1.decision_id());
  EXPECT_FALSE(store_->GetFiling("f-unknown")->has_value());
  EXPECT_FALSE(store_->GetDecision("d-unknown")->has_value());
  EXPECT_FALSE(store_->FindDecisionForFiling("f-unknown")->has_value());

  // The same batch again (a replay after a crash): nothing is done.
  counts = Apply(batch);
  EXPECT_EQ(counts.events_already_applied, 4);
  EXPECT_EQ(counts.filings_recorded + counts.filings_repeated + counts.decisions_recorded +
                counts.decisions_repeated + counts.roster_changes,
            0);

  // The same events at new positions (a producer retry): repeats, nothing doubled.
  counts =
      Apply({positions_.Next(filing1), positions_.Next(decision1), positions_.Next(decision2)});
  EXPECT_EQ(counts.filings_repeated, 1);
  EXPECT_EQ(counts.decisions_repeated, 2);
  EXPECT_EQ(counts.filings_recorded + counts.decisions_recorded + counts.roster_changes +
                counts.filing_conflicts + counts.events_already_applied,
            0);
  auto history = store_->GetEnterpriseHistory(Uscc(1), 100, "");
  ASSERT_TRUE(history.ok()) << history.status();
  EXPECT_THAT(history->items, SizeIs(3));  // filing, decision, listing
  EXPECT_THAT(Outbox(kListingsTopic), SizeIs(1));
  EXPECT_EQ(*store_->DecisionFeedHead(), 2);

  // A batch mixing applied and new positions applies only the new ones.
  const auto filing3 = Filing(Uscc(1), "urumqi-hnz", 2022, 1);
  std::vector<PositionedEvent> mixed = {batch[0], positions_.Next(filing3)};
  counts = Apply(mixed);
  EXPECT_EQ(counts.events_already_applied, 1);
  EXPECT_EQ(counts.filings_recorded, 1);

  std::vector<TopicPartition> partitions;
  for (const auto& [partition, next] : positions_.next()) partitions.push_back(partition);
  partitions.push_back({std::string(kFilingsTopic), 99});
  auto offsets = store_->StoredOffsets(kGroup, partitions);
  ASSERT_TRUE(offsets.ok()) << offsets.status();
  EXPECT_EQ(*offsets, positions_.next());
  auto other_group = store_->StoredOffsets("another-group", partitions);
  ASSERT_TRUE(other_group.ok());
  EXPECT_THAT(*other_group, IsEmpty());
}

TEST_P(RegistryStoreContractTest, ConflictingFilingKeepsTheFirstAndIsRejectedOnce) {
  LoadCatalogue();
  Enroll(Uscc(1), "urumqi-hnz");
  const auto first = Filing(Uscc(1), "urumqi-hnz", 2021, 1, 100'000'000);
  auto second = first;
  second.mutable_filing()->set_gross_revenue_fen(200'000'000);
  EXPECT_EQ(ApplyOne(first).filings_recorded, 1);
  ApplyCounts counts = ApplyOne(second);
  EXPECT_EQ(counts.filing_conflicts, 1);
  EXPECT_EQ(counts.filings_recorded, 0);
  auto got = store_->GetFiling(first.filing_id());
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->filing().gross_revenue_fen(), 100'000'000);
  auto stats = store_->GetParkStatistics("urumqi-hnz", 2021);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->total_revenue_fen(), 100'000'000);
  EXPECT_EQ(stats->filed_enterprises(), 1);

  // The conflicting filing again: no second rejection.
  counts = ApplyOne(second);
  EXPECT_EQ(counts.filing_conflicts, 0);
  EXPECT_EQ(counts.filings_repeated, 1);
  const auto rejected = Outbox(kFilingsRejectedTopic);
  ASSERT_THAT(rejected, SizeIs(1));
  EXPECT_EQ(rejected[0].event.key, Uscc(1));
  EXPECT_TRUE(HeaderOf(rejected[0].event, "ce_id").has_value());
  v1::RejectedFiling rejection;
  ASSERT_TRUE(rejection.ParseFromString(rejected[0].event.value));
  EXPECT_EQ(rejection.filing().gross_revenue_fen(), 200'000'000);
  ASSERT_THAT(rejection.violations(), SizeIs(1));
  EXPECT_EQ(rejection.violations(0).reason(), "FILING_CONFLICT");
}

TEST_P(RegistryStoreContractTest, StaleDecisionChangesNeitherStatusNorRoster) {
  LoadCatalogue();
  Enroll(Uscc(1), "urumqi-hnz");
  Enroll(Uscc(2), "urumqi-hnz");
  // 1: revision 2 filed and decided QUALIFIED, then revision 1's NOT_QUALIFIED arrives.
  const auto r1 = Filing(Uscc(1), "urumqi-hnz", 2021, 1);
  const auto r2 = Filing(Uscc(1), "urumqi-hnz", 2021, 2, 200'000'000, 9'000'000);
  ApplyOne(r1);
  ApplyOne(r2);
  EXPECT_EQ(ApplyOne(Decision(r2, v1::DECISION_OUTCOME_QUALIFIED)).roster_changes, 1);
  ApplyCounts counts = ApplyOne(Decision(r1, v1::DECISION_OUTCOME_NOT_QUALIFIED));
  EXPECT_EQ(counts.decisions_recorded, 1);
  EXPECT_EQ(counts.decisions_stale, 1);
  EXPECT_EQ(counts.roster_changes, 0);
  v1::Enterprise one = MustGetEnterprise(Uscc(1));
  EXPECT_EQ(one.status(), v1::ENTERPRISE_STATUS_QUALIFIED);
  EXPECT_EQ(one.roster_status(), v1::ROSTER_STATUS_LISTED);
  ASSERT_THAT(one.latest_revisions(), SizeIs(1));
  EXPECT_EQ(one.latest_revisions(0).revision(), 2);
  // The stale decision is kept in the history and the feed.
  EXPECT_TRUE(store_->GetDecision(Decision(r1, v1::DECISION_OUTCOME_NOT_QUALIFIED).decision_id())
                  ->has_value());
  EXPECT_EQ(*store_->DecisionFeedHead(), 2);

  // 2: revision 2 filed but not yet decided; revision 1's decision arrives late.
  const auto s1 = Filing(Uscc(2), "urumqi-hnz", 2021, 1);
  const auto s2 = Filing(Uscc(2), "urumqi-hnz", 2021, 2);
  ApplyOne(s1);
  ApplyOne(s2);
  counts = ApplyOne(Decision(s1, v1::DECISION_OUTCOME_QUALIFIED));
  EXPECT_EQ(counts.decisions_stale, 1);
  EXPECT_EQ(counts.roster_changes, 0);
  v1::Enterprise two = MustGetEnterprise(Uscc(2));
  EXPECT_EQ(two.status(), v1::ENTERPRISE_STATUS_ENROLLED);
  EXPECT_EQ(two.roster_status(), v1::ROSTER_STATUS_NOT_LISTED);

  auto stats = store_->GetParkStatistics("urumqi-hnz", 2021);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->hi_tech_enterprises(), 1);
  EXPECT_EQ(stats->listed_enterprises(), 1);
  EXPECT_EQ(stats->total_revenue_fen(), 200'000'000 + 100'000'000);
}

TEST_P(RegistryStoreContractTest, UndecodableEventsGoToTheDeadLetterOutbox) {
  LoadCatalogue();
  DeadLetter dead;
  dead.event.topic = std::string(kFilingsTopic);
  dead.event.partition = PartitionForKey(Uscc(9), kFilingPartitions);
  dead.event.offset = 0;
  dead.event.key = Uscc(9);
  dead.event.value = "\xff\xfe not a protobuf";
  dead.event.headers = {{"ce_id", "broken-1"}, {"content-type", "application/protobuf"}};
  dead.reason = "value does not parse as stip.v1.AcceptedFiling";
  ApplyCounts counts = ApplyOne(dead);
  EXPECT_EQ(counts.dead_letters, 1);
  const auto letters = Outbox(kDeadLetterTopic);
  ASSERT_THAT(letters, SizeIs(1));
  EXPECT_EQ(letters[0].event.key, Uscc(9));
  EXPECT_EQ(letters[0].event.value, dead.event.value);
  EXPECT_EQ(HeaderOf(letters[0].event, kDeadLetterReasonHeader), dead.reason);
  EXPECT_EQ(HeaderOf(letters[0].event, kDeadLetterSourceHeader), dead.event.Position());
  auto offsets =
      store_->StoredOffsets(kGroup, {{std::string(kFilingsTopic), dead.event.partition}});
  ASSERT_TRUE(offsets.ok());
  EXPECT_EQ(offsets->begin()->second, 1);
}

// --- 5. The roster ----------------------------------------------------------------------

TEST_P(RegistryStoreContractTest, RosterListsRenewsAndDelists) {
  LoadCatalogue();
  const std::string uscc = Uscc(7);
  Enroll(uscc, "urumqi-hnz");
  std::vector<std::tuple<int, v1::DecisionOutcome, v1::ListingChange, v1::RosterStatus,
                         v1::EnterpriseStatus>>
      years = {
          {2019, v1::DECISION_OUTCOME_QUALIFIED, v1::LISTING_CHANGE_LISTED,
           v1::ROSTER_STATUS_LISTED, v1::ENTERPRISE_STATUS_QUALIFIED},
          {2020, v1::DECISION_OUTCOME_QUALIFIED, v1::LISTING_CHANGE_RENEWED,
           v1::ROSTER_STATUS_LISTED, v1::ENTERPRISE_STATUS_QUALIFIED},
          {2021, v1::DECISION_OUTCOME_NOT_QUALIFIED, v1::LISTING_CHANGE_DELISTED,
           v1::ROSTER_STATUS_DELISTED, v1::ENTERPRISE_STATUS_NOT_QUALIFIED},
          {2022, v1::DECISION_OUTCOME_NOT_QUALIFIED, v1::LISTING_CHANGE_UNSPECIFIED,
           v1::ROSTER_STATUS_DELISTED, v1::ENTERPRISE_STATUS_NOT_QUALIFIED},
          {2023, v1::DECISION_OUTCOME_QUALIFIED, v1::LISTING_CHANGE_LISTED,
           v1::ROSTER_STATUS_LISTED, v1::ENTERPRISE_STATUS_QUALIFIED},
      };
  std::vector<v1::TorchListing> expected_feed;
  for (const auto& [year, outcome, change, roster, status] : years) {
    const auto filing =
        Filing(uscc, "urumqi-hnz", year, 1, 100'000'000, 5'000'000,
               {Project(absl::StrCat("p", year, "a"), v1::PROJECT_STAGE_COMMERCIALIZED, true),
                Project(absl::StrCat("p", year, "b"), v1::PROJECT_STAGE_DEVELOPMENT, false)});
    ApplyOne(filing);
    const auto decision = Decision(filing, outcome);
    AdvanceClock(absl::Minutes(1));
    ApplyCounts counts = ApplyOne(decision);
    EXPECT_EQ(counts.roster_changes, change == v1::LISTING_CHANGE_UNSPECIFIED ? 0 : 1) << year;
    v1::Enterprise enterprise = MustGetEnterprise(uscc);
    EXPECT_EQ(enterprise.roster_status(), roster) << year;
    EXPECT_EQ(enterprise.status(), status) << year;
    if (change == v1::LISTING_CHANGE_UNSPECIFIED) continue;
    const auto listings = AllListings();
    ASSERT_FALSE(listings.empty());
    const v1::TorchListing& last = listings.back();
    EXPECT_EQ(last.uscc(), uscc);
    EXPECT_EQ(last.fiscal_year(), year);
    EXPECT_EQ(last.change(), change) << year;
    EXPECT_EQ(last.park_id(), "urumqi-hnz");
    EXPECT_EQ(last.region(), v1::ECONOMIC_REGION_WESTERN);
    EXPECT_EQ(last.decision_id(), decision.decision_id());
    EXPECT_EQ(last.change_time().seconds(), absl::ToUnixSeconds(Now()));
    if (change == v1::LISTING_CHANGE_DELISTED) {
      EXPECT_EQ(last.delist_reason(), v1::DELIST_REASON_NOT_QUALIFIED);
      EXPECT_THAT(last.nominated_projects(), IsEmpty());
    } else {
      ASSERT_THAT(last.nominated_projects(), SizeIs(1));
      EXPECT_EQ(last.nominated_projects(0).project_id(), absl::StrCat("p", year, "a"));
    }
    expected_feed.push_back(last);
  }
  const auto listings = AllListings();
  ASSERT_EQ(listings.size(), expected_feed.size());

  // Every change is in the outbox on stip.listings.v1, with ce_id the listing's event id.
  const auto outbox = Outbox(kListingsTopic);
  ASSERT_EQ(outbox.size(), listings.size());
  std::set<std::string> ids;
  for (size_t i = 0; i < outbox.size(); ++i) {
    v1::TorchListing published;
    ASSERT_TRUE(published.ParseFromString(outbox[i].event.value));
    EXPECT_EQ(published.SerializeAsString(), listings[i].SerializeAsString());
    EXPECT_EQ(outbox[i].event.key, uscc);
    EXPECT_EQ(HeaderOf(outbox[i].event, "ce_id"), listings[i].event_id());
    ids.insert(listings[i].event_id());
    if (i > 0) {
      EXPECT_GT(outbox[i].seq, outbox[i - 1].seq);
    }
  }
  EXPECT_EQ(ids.size(), listings.size());
  EXPECT_EQ(*store_->OutboxBacklog(), static_cast<int64_t>(outbox.size()));
  ASSERT_TRUE(store_->MarkRelayed(outbox[1].seq).ok());
  EXPECT_THAT(Outbox(kListingsTopic), SizeIs(outbox.size() - 2));
  ASSERT_TRUE(store_->MarkRelayed(outbox.back().seq).ok());
  EXPECT_THAT(Outbox(), IsEmpty());
  EXPECT_EQ(*store_->OutboxBacklog(), 0);
  EXPECT_EQ(*store_->ListingFeedHead(), static_cast<int64_t>(listings.size()));
}

TEST_P(RegistryStoreContractTest, AmendedFilingWhoseDecisionFlipsTheOutcomeFlipsTheRoster) {
  LoadCatalogue();
  const std::string uscc = Uscc(8);
  Enroll(uscc, "kunming-hnz");
  const auto r1 = Filing(uscc, "kunming-hnz", 2021, 1);
  ApplyOne(r1);
  ApplyOne(Decision(r1, v1::DECISION_OUTCOME_QUALIFIED));
  EXPECT_EQ(MustGetEnterprise(uscc).roster_status(), v1::ROSTER_STATUS_LISTED);

  const auto r2 = Filing(uscc, "kunming-hnz", 2021, 2, 100'000'000, 1'000'000);
  ApplyOne(r2);
  ApplyCounts counts = ApplyOne(Decision(r2, v1::DECISION_OUTCOME_NOT_QUALIFIED));
  EXPECT_EQ(counts.roster_changes, 1);
  v1::Enterprise enterprise = MustGetEnterprise(uscc);
  EXPECT_EQ(enterprise.roster_status(), v1::ROSTER_STATUS_DELISTED);
  EXPECT_EQ(enterprise.status(), v1::ENTERPRISE_STATUS_NOT_QUALIFIED);
  auto stats = store_->GetParkStatistics("kunming-hnz", 2021);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->listed_enterprises(), 0);
  EXPECT_EQ(stats->hi_tech_enterprises(), 0);
  EXPECT_EQ(stats->total_rd_expenditure_fen(), 1'000'000);

  const auto r3 = Filing(uscc, "kunming-hnz", 2021, 3, 100'000'000, 4'000'000);
  ApplyOne(r3);
  counts = ApplyOne(Decision(r3, v1::DECISION_OUTCOME_QUALIFIED));
  EXPECT_EQ(counts.roster_changes, 1);
  EXPECT_EQ(MustGetEnterprise(uscc).roster_status(), v1::ROSTER_STATUS_LISTED);
  const auto listings = AllListings();
  ASSERT_THAT(listings, SizeIs(3));
  EXPECT_EQ(listings[0].change(), v1::LISTING_CHANGE_LISTED);
  EXPECT_EQ(listings[1].change(), v1::LISTING_CHANGE_DELISTED);
  EXPECT_EQ(listings[1].delist_reason(), v1::DELIST_REASON_NOT_QUALIFIED);
  EXPECT_EQ(listings[2].change(), v1::LISTING_CHANGE_LISTED);
  for (const auto& listing : listings) EXPECT_EQ(listing.fiscal_year(), 2021);
  stats = store_->GetParkStatistics("kunming-hnz", 2021);
  EXPECT_EQ(stats->listed_enterprises(), 1);
  EXPECT_EQ(stats->hi_tech_enterprises(), 1);
}

TEST_P(RegistryStoreContractTest, DecisionForAnEarlierYearChangesNothing) {
  LoadCatalogue();
  const std::string uscc = Uscc(9);
  Enroll(uscc, "zhongguancun");
  const auto y2021 = Filing(uscc, "zhongguancun", 2021, 1);
  ApplyOne(y2021);
  ApplyOne(Decision(y2021, v1::DECISION_OUTCOME_QUALIFIED));
  const auto y2020 = Filing(uscc, "zhongguancun", 2020, 1);
  ApplyOne(y2020);
  ApplyCounts counts = ApplyOne(Decision(y2020, v1::DECISION_OUTCOME_NOT_QUALIFIED));
  EXPECT_EQ(counts.decisions_recorded, 1);
  EXPECT_EQ(counts.roster_changes, 0);
  v1::Enterprise enterprise = MustGetEnterprise(uscc);
  EXPECT_EQ(enterprise.roster_status(), v1::ROSTER_STATUS_LISTED);
  EXPECT_EQ(enterprise.status(), v1::ENTERPRISE_STATUS_QUALIFIED);
  EXPECT_THAT(AllListings(), SizeIs(1));
  EXPECT_THAT(Outbox(kListingsTopic), SizeIs(1));
}

TEST_P(RegistryStoreContractTest, ClosingTheFilingWindowDelistsThoseWhoDidNotFile) {
  LoadCatalogue();
  const std::string filed = Uscc(11), silent = Uscc(12), never_listed = Uscc(13),
                    delisted = Uscc(14);
  for (const auto& uscc : {filed, silent, never_listed, delisted}) Enroll(uscc, "urumqi-hnz");
  for (const auto& uscc : {filed, silent, delisted}) {
    const auto filing = Filing(uscc, "urumqi-hnz", 2020, 1);
    ApplyOne(filing);
    ApplyOne(Decision(filing, v1::DECISION_OUTCOME_QUALIFIED));
  }
  const auto not_qualified = Filing(never_listed, "urumqi-hnz", 2020, 1);
  ApplyOne(not_qualified);
  ApplyOne(Decision(not_qualified, v1::DECISION_OUTCOME_NOT_QUALIFIED));
  // `delisted` is delisted by an amended 2020 filing before the window closes.
  const auto amended = Filing(delisted, "urumqi-hnz", 2020, 2);
  ApplyOne(amended);
  ApplyOne(Decision(amended, v1::DECISION_OUTCOME_NOT_QUALIFIED));
  // `filed` files for 2021; no decision yet.
  ApplyOne(Filing(filed, "urumqi-hnz", 2021, 1));
  ASSERT_TRUE(store_->MarkRelayed(1'000'000).ok());

  AdvanceClock(absl::Hours(24));
  auto closed = store_->CloseFilingWindow(2021);
  ASSERT_TRUE(closed.ok()) << closed.status();
  ASSERT_THAT(*closed, SizeIs(1));
  const v1::TorchListing& change = (*closed)[0];
  EXPECT_EQ(change.uscc(), silent);
  EXPECT_EQ(change.change(), v1::LISTING_CHANGE_DELISTED);
  EXPECT_EQ(change.delist_reason(), v1::DELIST_REASON_NO_FILING);
  EXPECT_EQ(change.fiscal_year(), 2021);
  EXPECT_EQ(change.park_id(), "urumqi-hnz");
  EXPECT_EQ(MustGetEnterprise(silent).roster_status(), v1::ROSTER_STATUS_DELISTED);
  EXPECT_EQ(MustGetEnterprise(filed).roster_status(), v1::ROSTER_STATUS_LISTED);
  EXPECT_EQ(MustGetEnterprise(never_listed).roster_status(), v1::ROSTER_STATUS_NOT_LISTED);
  EXPECT_EQ(MustGetEnterprise(delisted).roster_status(), v1::ROSTER_STATUS_DELISTED);

  const auto outbox = Outbox(kListingsTopic);
  ASSERT_THAT(outbox, SizeIs(1));
  EXPECT_EQ(HeaderOf(outbox[0].event, "ce_id"), change.event_id());
  EXPECT_EQ(AllListings().back().SerializeAsString(), change.SerializeAsString());

  auto again = store_->CloseFilingWindow(2021);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_THAT(*again, IsEmpty());
  EXPECT_THAT(Outbox(kListingsTopic), SizeIs(1));
}

TEST_P(RegistryStoreContractTest, HistoryListsFilingsDecisionsAndListingsInOrderByPage) {
  LoadCatalogue();
  const std::string uscc = Uscc(21);
  Enroll(uscc, "urumqi-hnz");
  Enroll(Uscc(22), "urumqi-hnz");
  const auto r1 = Filing(uscc, "urumqi-hnz", 2021, 1);
  const auto r2 = Filing(uscc, "urumqi-hnz", 2021, 2);
  const auto other = Filing(Uscc(22), "urumqi-hnz", 2021, 1);
  ApplyOne(r1);
  ApplyOne(other);
  AdvanceClock(absl::Seconds(1));
  ApplyOne(Decision(r1, v1::DECISION_OUTCOME_QUALIFIED));  // + LISTED
  ApplyOne(Decision(other, v1::DECISION_OUTCOME_QUALIFIED));
  AdvanceClock(absl::Seconds(1));
  ApplyOne(r2);
  ApplyOne(Decision(r2, v1::DECISION_OUTCOME_NOT_QUALIFIED));  // + DELISTED
  // expected: filing r1, decision r1, listing, filing r2, decision r2, delisting
  std::vector<std::string> kinds;
  std::vector<int64_t> times;
  std::string token;
  int pages = 0;
  do {
    auto page = store_->GetEnterpriseHistory(uscc, 2, token);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_LE(page->items.size(), 2u);
    for (const auto& entry : page->items) {
      times.push_back(entry.record_time().seconds());
      if (entry.has_filing()) {
        kinds.push_back(absl::StrCat("filing r", entry.filing().filing().revision()));
      } else if (entry.has_decision()) {
        kinds.push_back(absl::StrCat("decision r", entry.decision().filing_revision()));
      } else {
        kinds.push_back(absl::StrCat("listing ", entry.listing().change()));
      }
    }
    token = page->next_page_token;
    ASSERT_LT(++pages, 10);
  } while (!token.empty());
  EXPECT_THAT(kinds,
              ElementsAre("filing r1", "decision r1",
                          absl::StrCat("listing ", v1::LISTING_CHANGE_LISTED), "filing r2",
                          "decision r2", absl::StrCat("listing ", v1::LISTING_CHANGE_DELISTED)));
  EXPECT_TRUE(std::is_sorted(times.begin(), times.end()));
  EXPECT_EQ(pages, 3);
  auto page = store_->GetEnterpriseHistory(uscc, 2, "");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(store_->GetEnterpriseHistory(Uscc(22), 2, page->next_page_token).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto unknown = store_->GetEnterpriseHistory(Uscc(23), 10, "");
  ASSERT_TRUE(unknown.ok());
  EXPECT_THAT(unknown->items, IsEmpty());
}

// --- 6. Statistics against an independent recount --------------------------------------

// The recount of one enterprise and fiscal year, from the events the test generated.
struct YearRecount {
  int32_t max_filed_revision = 0;
  std::map<int32_t, v1::AnnualFiling> filings;  // recorded, by revision (first content wins)
  // The decision in force under the contract's rules, as applied in order.
  int32_t in_force_revision = 0;
  v1::DecisionOutcome in_force_outcome = v1::DECISION_OUTCOME_UNSPECIFIED;
  std::map<int32_t, v1::DecisionOutcome> decided;  // every decision recorded, by revision
  bool listed = false;
};
struct RosterRecount {
  v1::RosterStatus status = v1::ROSTER_STATUS_NOT_LISTED;
  int32_t roster_year = 0;
};

TEST_P(RegistryStoreContractTest, StatisticsOfAHundredThousandEventsEqualAnIndependentRecount) {
  LoadCatalogue();
  std::mt19937_64 random(20240611);
  auto uniform = [&](int64_t low, int64_t high) {
    return std::uniform_int_distribution<int64_t>(low, high)(random);
  };
  // ~20 parks of every region, among them the two western ones of DESIGN.md.
  std::vector<std::string> parks = {"urumqi-hnz", "kunming-hnz", "zhongguancun"};
  for (size_t i = 0; parks.size() < 20; i += 7) {
    const auto& id = EmbeddedParkCatalogue()[i % EmbeddedParkCatalogue().size()].park_id();
    if (std::find(parks.begin(), parks.end(), id) == parks.end()) parks.push_back(id);
  }
  constexpr int kEnterprises = 12000;
  constexpr int64_t kEvents = 100000;
  constexpr int32_t kYears[] = {2021, 2022};
  std::vector<std::string> usccs;
  std::map<std::string, std::string> park_of;
  std::map<std::string, bool> foreign_of;
  const auto enroll_start = std::chrono::steady_clock::now();
  for (int i = 0; i < kEnterprises; ++i) {
    usccs.push_back(Uscc(100000 + i));
    park_of[usccs.back()] = parks[uniform(0, static_cast<int64_t>(parks.size()) - 1)];
    foreign_of[usccs.back()] = uniform(0, 9) == 0;
    Enroll(usccs.back(), park_of[usccs.back()], foreign_of[usccs.back()]);
    if (HasFatalFailure()) return;
  }
  const double enroll_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - enroll_start).count();

  // The timeline: filings with random revisions 1-3 (any order), decisions with random
  // outcomes for random filed revisions (so late decisions for older revisions happen),
  // producer-retry repeats of earlier events, and a few conflicting filings.
  std::vector<PositionedEvent> timeline;
  std::map<std::pair<std::string, int32_t>, std::set<int32_t>> generated_filings, decided;
  std::vector<size_t> filing_indexes;
  int project_counter = 0;
  while (static_cast<int64_t>(timeline.size()) < kEvents) {
    const int64_t dice = uniform(0, 999);
    if (dice < 30 && !timeline.empty()) {  // a repeat, at a new position
      const PositionedEvent& earlier = timeline[uniform(0, timeline.size() - 1)];
      auto event = earlier.event;
      timeline.push_back(positions_.Next(std::move(event)));
      continue;
    }
    if (dice < 35 && !filing_indexes.empty()) {  // the same filing id with other content
      auto filing = std::get<v1::AcceptedFiling>(
          timeline[filing_indexes[uniform(0, filing_indexes.size() - 1)]].event);
      filing.mutable_filing()->set_gross_revenue_fen(filing.filing().gross_revenue_fen() + 1 +
                                                     uniform(0, 1000));
      filing.clear_content_sha256();
      timeline.push_back(positions_.Next(std::move(filing)));
      continue;
    }
    const std::string& uscc = usccs[uniform(0, kEnterprises - 1)];
    const int32_t year = kYears[uniform(0, 1)];
    auto& filed = generated_filings[{uscc, year}];
    auto& decided_revisions = decided[{uscc, year}];
    std::vector<int32_t> undecided;
    for (int32_t revision : filed) {
      if (!decided_revisions.count(revision)) undecided.push_back(revision);
    }
    if (!undecided.empty() && (filed.size() == 3 || uniform(0, 1) == 0)) {
      const int32_t revision = undecided[uniform(0, undecided.size() - 1)];
      decided_revisions.insert(revision);
      v1::AcceptedFiling stub = Filing(uscc, park_of[uscc], year, revision);
      timeline.push_back(
          positions_.Next(Decision(stub, uniform(0, 9) < 6 ? v1::DECISION_OUTCOME_QUALIFIED
                                                           : v1::DECISION_OUTCOME_NOT_QUALIFIED)));
      continue;
    }
    if (filed.size() == 3) continue;
    int32_t revision;
    do {
      revision = static_cast<int32_t>(uniform(1, 3));
    } while (filed.count(revision));
    filed.insert(revision);
    std::vector<v1::HiTechProject> projects;
    for (int64_t p = uniform(0, 4); p > 0; --p) {
      projects.push_back(Project(
          absl::StrCat("p", ++project_counter),
          uniform(0, 2) == 0 ? v1::PROJECT_STAGE_COMMERCIALIZED : v1::PROJECT_STAGE_DEVELOPMENT,
          uniform(0, 3) == 0));
    }
    const int64_t revenue = uniform(1'000'000, 1'000'000'000'000);
    filing_indexes.push_back(timeline.size());
    timeline.push_back(positions_.Next(Filing(uscc, park_of[uscc], year, revision, revenue,
                                              uniform(0, revenue / 10), std::move(projects))));
  }

  // The recount, in the order the events are applied (replayed positions change nothing).
  std::map<std::string, v1::AcceptedFiling> recorded_filings;  // by id
  std::set<std::string> recorded_decisions;
  std::set<std::pair<std::string, std::string>> conflicts;  // (id, content)
  std::map<std::pair<std::string, int32_t>, YearRecount> years;
  std::map<std::string, RosterRecount> roster;
  ApplyCounts expected;
  for (const PositionedEvent& event : timeline) {
    if (const auto* accepted = std::get_if<v1::AcceptedFiling>(&event.event)) {
      const std::string content = accepted->filing().SerializeAsString();
      auto found = recorded_filings.find(accepted->filing_id());
      if (found != recorded_filings.end()) {
        if (found->second.filing().SerializeAsString() == content ||
            !conflicts.insert({accepted->filing_id(), content}).second) {
          ++expected.filings_repeated;
        } else {
          ++expected.filing_conflicts;
        }
        continue;
      }
      ++expected.filings_recorded;
      recorded_filings[accepted->filing_id()] = *accepted;
      const v1::AnnualFiling& filing = accepted->filing();
      YearRecount& year = years[{filing.uscc(), filing.fiscal_year()}];
      year.filings[filing.revision()] = filing;
      year.max_filed_revision = std::max(year.max_filed_revision, filing.revision());
      continue;
    }
    const auto& decision = std::get<v1::QualificationDecision>(event.event);
    if (!recorded_decisions.insert(decision.decision_id()).second) {
      ++expected.decisions_repeated;
      continue;
    }
    ++expected.decisions_recorded;
    YearRecount& year = years[{decision.uscc(), decision.fiscal_year()}];
    year.decided[decision.filing_revision()] = decision.outcome();
    // Stale: a newer revision is filed, or one at least as new is decided.
    if (year.max_filed_revision > decision.filing_revision() ||
        year.in_force_revision >= decision.filing_revision()) {
      ++expected.decisions_stale;
      continue;
    }
    year.in_force_revision = decision.filing_revision();
    year.in_force_outcome = decision.outcome();
    // The roster, simulated from the rules (the choice the brief offers: simulate rather
    // than replay the listings feed).
    RosterRecount& on_roster = roster[decision.uscc()];
    const int32_t fiscal_year = decision.fiscal_year();
    if (fiscal_year < on_roster.roster_year) continue;
    std::optional<bool> listed;
    if (decision.outcome() == v1::DECISION_OUTCOME_QUALIFIED) {
      if (on_roster.status != v1::ROSTER_STATUS_LISTED || on_roster.roster_year < fiscal_year) {
        listed = true;
      }
    } else if (on_roster.status == v1::ROSTER_STATUS_LISTED) {
      listed = false;
    }
    if (!listed.has_value()) continue;
    ++expected.roster_changes;
    on_roster.status = *listed ? v1::ROSTER_STATUS_LISTED : v1::ROSTER_STATUS_DELISTED;
    on_roster.roster_year = fiscal_year;
    year.listed = *listed;
  }

  // Apply in batches of 800-1500 events; now and then a batch starts back in the one
  // before (a replay after a rebalance), whose positions are skipped.
  ApplyCounts total;
  int64_t replayed = 0;
  const auto apply_start = std::chrono::steady_clock::now();
  for (size_t begin = 0, previous = 0; begin < timeline.size();) {
    const size_t end = std::min(timeline.size(), begin + uniform(800, 1500));
    size_t from = begin;
    if (begin > 0 && uniform(0, 9) == 0) {
      from = previous + (begin - previous) / 2;
      replayed += static_cast<int64_t>(begin - from);
    }
    const std::vector<PositionedEvent> batch(timeline.begin() + from, timeline.begin() + end);
    const ApplyCounts counts = Apply(batch);
    if (HasFailure()) return;
    total.filings_recorded += counts.filings_recorded;
    total.filings_repeated += counts.filings_repeated;
    total.filing_conflicts += counts.filing_conflicts;
    total.decisions_recorded += counts.decisions_recorded;
    total.decisions_repeated += counts.decisions_repeated;
    total.decisions_stale += counts.decisions_stale;
    total.roster_changes += counts.roster_changes;
    total.events_already_applied += counts.events_already_applied;
    previous = begin;
    begin = end;
  }
  const double apply_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - apply_start).count();
  std::printf(
      "[ stats    ] %s: enrolled %d in %.1f s; applied %zu events (+%lld replayed) in "
      "%.1f s\n",
      BackendName({GetParam(), 0}).c_str(), kEnterprises, enroll_seconds, timeline.size(),
      static_cast<long long>(replayed), apply_seconds);
  EXPECT_EQ(total.filings_recorded, expected.filings_recorded);
  EXPECT_EQ(total.filings_repeated, expected.filings_repeated);
  EXPECT_EQ(total.filing_conflicts, expected.filing_conflicts);
  EXPECT_EQ(total.decisions_recorded, expected.decisions_recorded);
  EXPECT_EQ(total.decisions_repeated, expected.decisions_repeated);
  EXPECT_EQ(total.decisions_stale, expected.decisions_stale);
  EXPECT_EQ(total.roster_changes, expected.roster_changes);
  EXPECT_EQ(total.events_already_applied, replayed);
  EXPECT_GT(expected.decisions_stale, 100);
  EXPECT_GT(expected.filing_conflicts, 100);
  auto offsets = store_->StoredOffsets(kGroup, [&] {
    std::vector<TopicPartition> partitions;
    for (const auto& [partition, next] : positions_.next()) partitions.push_back(partition);
    return partitions;
  }());
  ASSERT_TRUE(offsets.ok());
  EXPECT_EQ(*offsets, positions_.next());

  // Per park and year.
  std::map<std::pair<std::string, int32_t>, v1::ParkStatistics> want;
  std::map<int32_t, std::map<v1::EconomicRegion, int64_t>> output;
  for (const std::string& park : parks) {
    for (int32_t year : kYears) {
      v1::ParkStatistics& stats = want[{park, year}];
      stats.set_park_id(park);
      stats.set_fiscal_year(year);
    }
  }
  for (const std::string& uscc : usccs) {
    for (int32_t year : kYears) {
      v1::ParkStatistics& stats = want[{park_of[uscc], year}];
      stats.set_enterprises(stats.enterprises() + 1);
      stats.set_foreign_invested_enterprises(stats.foreign_invested_enterprises() +
                                             (foreign_of[uscc] ? 1 : 0));
    }
  }
  for (const auto& [key, year] : years) {
    if (year.filings.empty()) continue;
    const v1::AnnualFiling& latest = year.filings.rbegin()->second;
    v1::ParkStatistics& stats = want[{latest.park_id(), key.second}];
    stats.set_filed_enterprises(stats.filed_enterprises() + 1);
    // Hi-tech: the decision for the highest revision decided is QUALIFIED, and no higher
    // revision is filed.
    if (!year.decided.empty() && year.decided.rbegin()->first >= year.max_filed_revision &&
        year.decided.rbegin()->second == v1::DECISION_OUTCOME_QUALIFIED) {
      stats.set_hi_tech_enterprises(stats.hi_tech_enterprises() + 1);
    }
    int64_t commercialized = 0, nominated = 0;
    for (const auto& project : latest.projects()) {
      commercialized += project.stage() == v1::PROJECT_STAGE_COMMERCIALIZED ? 1 : 0;
      nominated += project.torch_nominated() ? 1 : 0;
    }
    stats.set_hi_tech_projects(stats.hi_tech_projects() + latest.projects_size());
    stats.set_commercialized_projects(stats.commercialized_projects() + commercialized);
    if (year.listed) {
      stats.set_listed_enterprises(stats.listed_enterprises() + 1);
      stats.set_listed_projects(stats.listed_projects() + nominated);
    }
    stats.set_total_revenue_fen(stats.total_revenue_fen() + latest.gross_revenue_fen());
    stats.set_total_rd_expenditure_fen(stats.total_rd_expenditure_fen() +
                                       latest.rd_expenditure_fen());
    output[key.second][CataloguePark(latest.park_id()).region()] += latest.gross_revenue_fen();
  }
  for (const auto& [key, stats] : want) {
    auto got = store_->GetParkStatistics(key.first, key.second);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->DebugString(), stats.DebugString()) << key.first << " " << key.second;
  }
  EXPECT_EQ(store_->GetParkStatistics("atlantis-hnz", 2021).status().code(),
            absl::StatusCode::kNotFound);

  // Per region: parks of the whole register, and the output by the park's region.
  std::map<v1::EconomicRegion, int64_t> parks_per_region;
  for (const v1::Park& park : EmbeddedParkCatalogue()) ++parks_per_region[park.region()];
  const int64_t all_parks = static_cast<int64_t>(EmbeddedParkCatalogue().size());
  for (int32_t year : kYears) {
    int64_t all_output = 0;
    for (const auto& [region, fen] : output[year]) all_output += fen;
    auto got = store_->GetRegionalStatistics(year);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_THAT(*got, SizeIs(4));
    for (int i = 0; i < 4; ++i) {
      const auto region = static_cast<v1::EconomicRegion>(i + 1);
      v1::RegionStatistics stats;
      stats.set_region(region);
      stats.set_parks(parks_per_region[region]);
      stats.set_park_share_basis_points(parks_per_region[region] * 10000 / all_parks);
      stats.set_output_fen(output[year][region]);
      // 128-bit: the sums reach 10^15 fen.
      stats.set_output_share_basis_points(
          static_cast<int64_t>(absl::int128(output[year][region]) * 10000 / all_output));
      EXPECT_EQ((*got)[i].DebugString(), stats.DebugString()) << year << " region " << i + 1;
    }
  }
}

// Amounts no valid filing has (intake bounds them at 10^17 fen) can still be in a store,
// written before that bound or by another writer: statistics over them come out exact, or
// fail with a clear error naming what overflowed, and never take the process down (on
// PostgreSQL a SUM beyond int64 is a numeric the old row accessor aborted on; on SQLite it
// was an INTERNAL error quoting the SQL, and four regional outputs wrapped to shares of 0).
TEST_P(RegistryStoreContractTest, StatisticsOfHugeAmountsAreExactOrAClearErrorNeverAnAbort) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  LoadCatalogue();
  Enroll(Uscc(1), "urumqi-hnz");
  Enroll(Uscc(2), "urumqi-hnz");
  Enroll(Uscc(3), "zhongguancun");
  EXPECT_EQ(Apply({positions_.Next(Filing(Uscc(1), "urumqi-hnz", 2021, 1, kMax, kMax)),
                   positions_.Next(Filing(Uscc(3), "zhongguancun", 2021, 1, kMax, 0))})
                .filings_recorded,
            2);

  // One INT64_MAX per park and region: everything fits, and the shares are exact.
  for (const char* park : {"urumqi-hnz", "zhongguancun"}) {
    auto stats = store_->GetParkStatistics(park, 2021);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->total_revenue_fen(), kMax) << park;
    EXPECT_EQ(stats->filed_enterprises(), 1) << park;
  }
  auto regions = store_->GetRegionalStatistics(2021);
  ASSERT_TRUE(regions.ok()) << regions.status();
  ASSERT_THAT(*regions, SizeIs(4));
  for (const v1::RegionStatistics& region : *regions) {
    const bool filed = region.region() == v1::ECONOMIC_REGION_EASTERN ||
                       region.region() == v1::ECONOMIC_REGION_WESTERN;
    EXPECT_EQ(region.output_fen(), filed ? kMax : 0) << region.DebugString();
    EXPECT_EQ(region.output_share_basis_points(), filed ? 5000 : 0) << region.DebugString();
  }

  // Two in one park: its totals and its region's output no longer fit int64.
  EXPECT_EQ(ApplyOne(Filing(Uscc(2), "urumqi-hnz", 2021, 1, kMax, 1)).filings_recorded, 1);
  auto park = store_->GetParkStatistics("urumqi-hnz", 2021);
  EXPECT_EQ(park.status().code(), absl::StatusCode::kOutOfRange) << park.status();
  EXPECT_THAT(std::string(park.status().message()), ::testing::HasSubstr("total_revenue_fen"));
  EXPECT_THAT(std::string(park.status().message()), ::testing::HasSubstr("urumqi-hnz"));
  EXPECT_THAT(std::string(park.status().message()), ::testing::HasSubstr("18446744073709551614"));
  EXPECT_THAT(std::string(park.status().message()), ::testing::Not(::testing::HasSubstr("SELECT")));
  auto overflowed = store_->GetRegionalStatistics(2021);
  EXPECT_EQ(overflowed.status().code(), absl::StatusCode::kOutOfRange) << overflowed.status();
  EXPECT_THAT(std::string(overflowed.status().message()), ::testing::HasSubstr("output_fen"));
  EXPECT_THAT(std::string(overflowed.status().message()), ::testing::HasSubstr("WESTERN"));
  EXPECT_THAT(std::string(overflowed.status().message()),
              ::testing::Not(::testing::HasSubstr("SELECT")));

  // The store goes on serving: other parks, other years.
  auto other = store_->GetParkStatistics("zhongguancun", 2021);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->total_revenue_fen(), kMax);
  auto other_year = store_->GetRegionalStatistics(2022);
  ASSERT_TRUE(other_year.ok()) << other_year.status();
}

// --- 7. Feeds ---------------------------------------------------------------------------

TEST_P(RegistryStoreContractTest, FeedsReturnEveryEntryOnceInOrderAndHonourTheFloor) {
  LoadCatalogue();
  const std::vector<std::string> parks = {"urumqi-hnz", "kunming-hnz", "zhongguancun"};
  std::vector<v1::QualificationDecision> decisions;
  for (int i = 0; i < 30; ++i) {
    const std::string uscc = Uscc(300 + i);
    const std::string& park = parks[i % 3];
    Enroll(uscc, park);
    const auto filing = Filing(uscc, park, 2021, 1);
    decisions.push_back(Decision(
        filing, i % 4 == 0 ? v1::DECISION_OUTCOME_NOT_QUALIFIED : v1::DECISION_OUTCOME_QUALIFIED));
    ApplyOne(filing);
    if (i == 15) AdvanceClock(absl::Hours(48));
    ApplyOne(decisions.back());
  }
  EXPECT_EQ(*store_->DecisionFeedHead(), 30);
  EXPECT_EQ(*store_->ListingFeedHead(), 22);  // every qualified one listed once

  // Small pages after a cursor: every decision once, in the order recorded.
  std::vector<std::string> seen;
  int64_t after = 0;
  int64_t last_seq = 0;
  for (int reads = 0; reads < 100; ++reads) {
    auto read = store_->ReadDecisions(after, {}, 4, 100);
    ASSERT_TRUE(read.ok()) << read.status();
    if (read->entries.empty()) break;
    for (const auto& entry : read->entries) {
      EXPECT_GT(entry.seq, last_seq);
      last_seq = entry.seq;
      seen.push_back(entry.item.decision_id());
    }
    EXPECT_GE(read->scanned_to, read->entries.back().seq);
    after = read->scanned_to;
  }
  std::vector<std::string> expected;
  for (const auto& decision : decisions) expected.push_back(decision.decision_id());
  EXPECT_EQ(seen, expected);

  // Filters.
  auto western = store_->ReadDecisions(0, {.region = v1::ECONOMIC_REGION_WESTERN}, 100, 1000);
  ASSERT_TRUE(western.ok());
  EXPECT_THAT(western->entries, SizeIs(20));
  for (const auto& entry : western->entries) {
    EXPECT_EQ(entry.item.region(), v1::ECONOMIC_REGION_WESTERN);
  }
  auto kunming_refused = store_->ReadDecisions(
      0, {.park_id = "kunming-hnz", .outcome = v1::DECISION_OUTCOME_NOT_QUALIFIED}, 100, 1000);
  ASSERT_TRUE(kunming_refused.ok());
  std::vector<std::string> kunming_expected;
  for (int i = 0; i < 30; ++i) {
    if (i % 3 == 1 && i % 4 == 0) kunming_expected.push_back(decisions[i].decision_id());
  }
  std::vector<std::string> kunming_seen;
  for (const auto& entry : kunming_refused->entries) {
    kunming_seen.push_back(entry.item.decision_id());
  }
  EXPECT_EQ(kunming_seen, kunming_expected);
  auto delisted = store_->ReadListings(0, {.change = v1::LISTING_CHANGE_DELISTED}, 100, 1000);
  ASSERT_TRUE(delisted.ok());
  EXPECT_THAT(delisted->entries, IsEmpty());
  EXPECT_EQ(delisted->scanned_to, 22);
  auto eastern_listings = store_->ReadListings(
      0, {.park_id = "zhongguancun", .change = v1::LISTING_CHANGE_LISTED}, 100, 1000);
  ASSERT_TRUE(eastern_listings.ok());
  for (const auto& entry : eastern_listings->entries) {
    EXPECT_EQ(entry.item.park_id(), "zhongguancun");
  }
  EXPECT_EQ(eastern_listings->entries.size(), 8u);  // i%3==2 and i%4!=0: 10 minus 2

  // A filter matching nothing still moves the cursor, one scan window at a time.
  auto nothing = store_->ReadDecisions(0, {.park_id = "atlantis-hnz"}, 10, 8);
  ASSERT_TRUE(nothing.ok());
  EXPECT_THAT(nothing->entries, IsEmpty());
  EXPECT_EQ(nothing->scanned_to, 8);
  nothing = store_->ReadDecisions(24, {.park_id = "atlantis-hnz"}, 10, 8);
  ASSERT_TRUE(nothing.ok());
  EXPECT_EQ(nothing->scanned_to, 30);
  nothing = store_->ReadDecisions(30, {}, 10, 8);
  ASSERT_TRUE(nothing.ok());
  EXPECT_THAT(nothing->entries, IsEmpty());
  EXPECT_EQ(nothing->scanned_to, 30);

  // Pruning what was recorded before the clock jumped: the first 15 decisions.
  ASSERT_TRUE(store_->PruneFeeds(Now() - absl::Hours(24)).ok());
  EXPECT_EQ(store_->ReadDecisions(0, {}, 10, 100).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store_->ReadDecisions(14, {}, 10, 100).status().code(), absl::StatusCode::kOutOfRange);
  auto kept = store_->ReadDecisions(15, {}, 100, 100);
  ASSERT_TRUE(kept.ok()) << kept.status();
  ASSERT_THAT(kept->entries, SizeIs(15));
  EXPECT_EQ(kept->entries.front().item.decision_id(), decisions[15].decision_id());
  EXPECT_EQ(store_->ReadListings(0, {}, 10, 100).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(*store_->DecisionFeedHead(), 30);
  // The register keeps the decisions themselves.
  EXPECT_TRUE(store_->GetDecision(decisions[0].decision_id())->has_value());
  // Pruning to an earlier time never lowers the floor.
  ASSERT_TRUE(store_->PruneFeeds(Now() - absl::Hours(1000)).ok());
  EXPECT_EQ(store_->ReadDecisions(0, {}, 10, 100).status().code(), absl::StatusCode::kOutOfRange);
}

// --- 8. Concurrency ---------------------------------------------------------------------

TEST_P(RegistryStoreContractTest, ConcurrentBatchesOfDifferentPartitionsLoseNothing) {
  LoadCatalogue();
  auto second = OpenStore(url_);
  ASSERT_NE(second, nullptr);
  // Enterprises of filings partitions 0 and 1, each partition applied by its own thread:
  // two threads on the same store, then two more on the other store object.
  std::map<int32_t, std::vector<std::string>> by_partition;
  for (int i = 0; by_partition[0].size() < 400 || by_partition[1].size() < 400; ++i) {
    const std::string uscc = Uscc(70000 + i);
    const int32_t partition = PartitionForKey(uscc, kFilingPartitions);
    if (partition > 1 || by_partition[partition].size() >= 400) continue;
    by_partition[partition].push_back(uscc);
    Enroll(uscc, partition == 0 ? "urumqi-hnz" : "kunming-hnz");
  }
  std::map<int32_t, std::vector<PositionedEvent>> streams;
  for (const auto& [partition, usccs] : by_partition) {
    for (const std::string& uscc : usccs) {
      const std::string park = partition == 0 ? "urumqi-hnz" : "kunming-hnz";
      for (int32_t year : {2021, 2022}) {
        streams[partition].push_back(positions_.Next(Filing(uscc, park, year, 1)));
      }
    }
  }
  std::atomic<int64_t> recorded{0};
  auto run = [&](RegistryStore* store, int32_t partition, size_t begin, size_t end) {
    const auto& stream = streams[partition];
    for (size_t at = begin; at < end; at += 50) {
      std::vector<PositionedEvent> batch(stream.begin() + at,
                                         stream.begin() + std::min(end, at + 50));
      auto counts = store->Apply(kGroup, batch);
      ASSERT_TRUE(counts.ok()) << counts.status();
      recorded += counts->filings_recorded;
    }
  };
  const size_t half = 400;  // each stream has 800 filings
  {
    std::thread a(run, store_.get(), 0, 0, half);
    std::thread b(run, store_.get(), 1, 0, half);
    a.join();
    b.join();
  }
  {
    std::thread a(run, store_.get(), 0, half, 800);
    std::thread b(run, second.get(), 1, half, 800);
    a.join();
    b.join();
  }
  EXPECT_EQ(recorded.load(), 1600);
  auto offsets = second->StoredOffsets(
      kGroup, {{std::string(kFilingsTopic), 0}, {std::string(kFilingsTopic), 1}});
  ASSERT_TRUE(offsets.ok());
  EXPECT_EQ(*offsets, positions_.next());
  for (const char* park : {"urumqi-hnz", "kunming-hnz"}) {
    for (int32_t year : {2021, 2022}) {
      auto stats = store_->GetParkStatistics(park, year);
      ASSERT_TRUE(stats.ok());
      EXPECT_EQ(stats->filed_enterprises(), 400) << park << " " << year;
      EXPECT_EQ(stats->enterprises(), 400);
    }
  }

  // Decisions from both store objects at once: every one in the feed, once, numbered
  // without gaps.
  std::vector<std::vector<PositionedEvent>> decisions(2);
  for (int32_t partition : {0, 1}) {
    for (const std::string& uscc : by_partition[partition]) {
      const auto filing = Filing(uscc, partition == 0 ? "urumqi-hnz" : "kunming-hnz", 2021, 1);
      decisions[partition].push_back(
          positions_.Next(Decision(filing, v1::DECISION_OUTCOME_QUALIFIED)));
    }
  }
  std::atomic<int64_t> listed{0};
  auto decide = [&](RegistryStore* store, const std::vector<PositionedEvent>& stream) {
    for (size_t at = 0; at < stream.size(); at += 40) {
      std::vector<PositionedEvent> batch(stream.begin() + at,
                                         stream.begin() + std::min(stream.size(), at + 40));
      auto counts = store->Apply(kGroup, batch);
      ASSERT_TRUE(counts.ok()) << counts.status();
      listed += counts->roster_changes;
    }
  };
  {
    std::thread a(decide, store_.get(), std::cref(decisions[0]));
    std::thread b(decide, second.get(), std::cref(decisions[1]));
    a.join();
    b.join();
  }
  EXPECT_EQ(listed.load(), 800);
  std::set<std::string> ids;
  int64_t previous = 0;
  int64_t after = 0;
  while (true) {
    auto read = store_->ReadDecisions(after, {}, 300, 300);
    ASSERT_TRUE(read.ok());
    if (read->entries.empty()) break;
    for (const auto& entry : read->entries) {
      EXPECT_EQ(entry.seq, previous + 1);
      previous = entry.seq;
      EXPECT_TRUE(ids.insert(entry.item.decision_id()).second);
    }
    after = read->scanned_to;
  }
  EXPECT_EQ(ids.size(), 800u);
  EXPECT_THAT(Outbox(kListingsTopic), SizeIs(800));
}

INSTANTIATE_TEST_SUITE_P(Backends, RegistryStoreContractTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendName);

}  // namespace
}  // namespace stip::registry
