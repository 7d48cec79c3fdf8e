// The stip-registry binary, killed with SIGKILL at random moments while it applies 100,000
// filings and their 100,000 decisions, on the real Kafka broker (STIP_TEST_KAFKA) and a fresh
// PostgreSQL database (STIP_TEST_POSTGRES): afterwards every count in the database equals a
// recount from the input topics, the positions it stored are the topics' end offsets, and
// stip.listings.v1 holds each roster change of this run once by event id (CloudEvents ce_id;
// the relay is at least once, so repeats of an id are allowed and reported).
//
// 30,000 enterprises of 20 parks of the embedded catalogue, random valid USCCs (new ones every
// run: stip.listings.v1 is shared, and this run's events are told apart by their keys), two
// fiscal years, revision 1 of every year and a corrected revision 2 of two thirds of them;
// one decision per filing revision, about 60% QUALIFIED; about 1% of the events published
// twice. Nobody is enrolled.
//
// The filings are published before the first instance starts, and the decisions only once
// every filing is in the database (instances are killed in both phases): a decision for
// revision 1 then always finds its year's revision 2 recorded and is stale, so the roster the
// registry must reach is a function of the topics alone, which the test recomputes with
// UpdateRoster's rules (store_apply.cc) in each enterprise's order on the decisions topic.
//
// The binary is found beside the test's build folder (build/services/registry/), or where
// STIP_TEST_REGISTRY_BINARY says.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <iterator>
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

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "services/common/event.h"
#include "services/common/event_log.h"
#include "services/common/filing_id.h"
#include "services/intake/uscc.h"
#include "services/registry/park_catalogue.h"
#include "stip/v1/decision.pb.h"
#include "stip/v1/enterprise.pb.h"
#include "stip/v1/filing.pb.h"
#include "stip/v1/listing.pb.h"
#include "stip/v1/park.pb.h"
#include "tests/support/test_environment.h"
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <sys/wait.h>

namespace stip::registry {
namespace {

constexpr int kEnterprises = 30'000;
constexpr int kFilings = 100'000;  // 60,000 revisions 1 and 40,000 revisions 2
constexpr int kParks = 20;
constexpr int32_t kFirstYear = 2023;
constexpr int32_t kPartitions = 3;
constexpr double kRepeatShare = 0.01;
// At least kKills kills in all: kFilingPhaseKills while the filings are applied, then at
// least kDecisionPhaseKills while the decisions are; each while work remains.
constexpr int kKills = 6;
constexpr int kFilingPhaseKills = 2;
constexpr int kDecisionPhaseKills = 4;
// The waits for the registry to catch up give up only after no progress for this long.
constexpr absl::Duration kStalledFor = absl::Seconds(120);

std::filesystem::path RegistryBinary() {
  if (const char* path = std::getenv("STIP_TEST_REGISTRY_BINARY"); path != nullptr && *path) {
    return path;
  }
  return testing::TestProgramPath("stip-registry").parent_path().parent_path() / "services" /
         "registry" / "stip-registry";
}

std::string Elapsed(absl::Time since) {
  return absl::FormatDuration(absl::Trunc(absl::Now() - since, absl::Milliseconds(100)));
}

// A random code of GB 32100-2015 with its check character right.
std::string RandomUscc(std::mt19937_64& random) {
  std::uniform_int_distribution<size_t> symbol(0, intake::kUsccAlphabet.size() - 1);
  std::string first17 = "91";
  while (first17.size() < 17) first17.push_back(intake::kUsccAlphabet[symbol(random)]);
  auto check = intake::UsccCheckCharacter(first17);
  EXPECT_TRUE(check.ok()) << check.status();
  return first17 + (check.ok() ? *check : '0');
}

// The register's database, read with libpq.
class Database {
 public:
  explicit Database(const std::string& url) : connection_(PQconnectdb(url.c_str())) {
    EXPECT_EQ(PQstatus(connection_), CONNECTION_OK) << PQerrorMessage(connection_);
  }
  ~Database() { PQfinish(connection_); }
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // The rows of `sql`, every value as text; nullopt (and a failure) when it fails.
  std::optional<std::vector<std::vector<std::string>>> Rows(const std::string& sql) {
    if (PQstatus(connection_) != CONNECTION_OK) PQreset(connection_);
    PGresult* result = PQexec(connection_, sql.c_str());
    if (PQresultStatus(result) != PGRES_TUPLES_OK) {
      ADD_FAILURE() << sql << ": " << PQerrorMessage(connection_);
      PQclear(result);
      return std::nullopt;
    }
    std::vector<std::vector<std::string>> rows(PQntuples(result));
    for (int row = 0; row < PQntuples(result); ++row) {
      for (int column = 0; column < PQnfields(result); ++column) {
        rows[row].emplace_back(PQgetvalue(result, row, column));
      }
    }
    PQclear(result);
    return rows;
  }
  // The single number `sql` returns; -1 when it fails.
  int64_t Number(const std::string& sql) {
    auto rows = Rows(sql);
    if (!rows || rows->size() != 1 || rows->front().size() != 1) return -1;
    return std::stoll(rows->front().front());
  }

 private:
  PGconn* connection_;
};

// What the registry has applied, read between and after its lives.
struct Progress {
  int64_t filings = 0;
  int64_t decisions = 0;
  int64_t listings = 0;
  int64_t outbox = 0;
  int64_t positions = 0;  // the sum of consumed_offsets: events consumed, repeats included
};

Progress ReadProgress(Database& db) {
  return {.filings = db.Number("SELECT COUNT(*) FROM filings"),
          .decisions = db.Number("SELECT COUNT(*) FROM decisions"),
          .listings = db.Number("SELECT COUNT(*) FROM listings"),
          .outbox = db.Number("SELECT COUNT(*) FROM outbox"),
          .positions = db.Number("SELECT COALESCE(SUM(next_offset), 0) FROM consumed_offsets")};
}

std::string Describe(const Progress& progress) {
  return absl::StrCat(progress.filings, " filings, ", progress.decisions, " decisions, ",
                      progress.listings, " listings, outbox ", progress.outbox, ", ",
                      progress.positions, " events consumed");
}

// Partition counts and end offsets, asked of the broker with librdkafka itself.
class Broker {
 public:
  explicit Broker(const std::string& bootstrap) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char error[512];
    EXPECT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), error, sizeof(error)),
              RD_KAFKA_CONF_OK)
        << error;
    client_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof(error));
    EXPECT_NE(client_, nullptr) << error;
  }
  ~Broker() {
    if (client_ != nullptr) rd_kafka_destroy(client_);
  }
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  int32_t Partitions(const std::string& topic) {
    rd_kafka_topic_t* handle = rd_kafka_topic_new(client_, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* metadata = nullptr;
    const rd_kafka_resp_err_t err = rd_kafka_metadata(client_, 0, handle, &metadata, 10'000);
    int32_t partitions = 0;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && metadata->topic_cnt == 1) {
      partitions = metadata->topics[0].partition_cnt;
    } else {
      ADD_FAILURE() << "metadata of " << topic << ": " << rd_kafka_err2str(err);
    }
    if (metadata != nullptr) rd_kafka_metadata_destroy(metadata);
    rd_kafka_topic_destroy(handle);
    return partitions;
  }

  // Per partition: [low, high) watermarks.
  std::map<int32_t, std::pair<int64_t, int64_t>> Watermarks(const std::string& topic) {
    std::map<int32_t, std::pair<int64_t, int64_t>> result;
    const int32_t partitions = Partitions(topic);
    for (int32_t partition = 0; partition < partitions; ++partition) {
      int64_t low = 0, high = 0;
      const rd_kafka_resp_err_t err =
          rd_kafka_query_watermark_offsets(client_, topic.c_str(), partition, &low, &high, 10'000);
      EXPECT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR)
          << topic << "/" << partition << ": " << rd_kafka_err2str(err);
      result[partition] = {low, high};
    }
    return result;
  }

 private:
  rd_kafka_t* client_ = nullptr;
};

// Every event of `topic` up to the end offsets in `ends` (read with a new consumer group from
// the beginning), in offset order per partition, keeping those `keep` accepts.
std::vector<ConsumedEvent> ReadTopic(EventLog& log, const std::string& topic,
                                     const std::map<int32_t, std::pair<int64_t, int64_t>>& ends,
                                     const std::function<bool(const ConsumedEvent&)>& keep) {
  std::vector<ConsumedEvent> kept;
  auto consumer = log.NewConsumer({.group = testing::UniqueName("registry-crash-reader"),
                                   .topics = {topic},
                                   .start_from_earliest = true});
  EXPECT_TRUE(consumer.ok()) << consumer.status();
  if (!consumer.ok()) return kept;
  std::map<int32_t, int64_t> next;
  auto caught_up = [&] {
    for (const auto& [partition, watermarks] : ends) {
      const auto [low, high] = watermarks;
      if (high > low && (!next.contains(partition) || next[partition] < high)) return false;
    }
    return true;
  };
  const absl::Time give_up = absl::Now() + absl::Seconds(300);
  while (!caught_up() && absl::Now() < give_up) {
    auto events = (*consumer)->Poll(20'000, absl::Milliseconds(200));
    if (!events.ok()) {
      ADD_FAILURE() << events.status();
      break;
    }
    for (ConsumedEvent& event : *events) {
      next[event.partition] = std::max(next[event.partition], event.offset + 1);
      if (keep(event)) kept.push_back(std::move(event));
    }
  }
  EXPECT_TRUE(caught_up()) << topic << " was not read to its end within 300 s";
  EXPECT_TRUE((*consumer)->Close(absl::Seconds(10)).ok());
  // Offset order per partition (Poll gives it; the sort makes it independent of batching).
  std::stable_sort(kept.begin(), kept.end(), [](const ConsumedEvent& a, const ConsumedEvent& b) {
    return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
  });
  return kept;
}

struct Plan {
  std::set<std::string> usccs;
  std::vector<OutgoingEvent> filings;    // in publishing order, repeats included
  std::vector<OutgoingEvent> decisions;  // likewise
  size_t distinct_filings = 0;
  size_t distinct_decisions = 0;
};

Plan MakePlan(uint64_t seed, const std::string& filings_topic, const std::string& decisions_topic) {
  std::mt19937_64 random(seed);
  std::uniform_real_distribution<double> uniform(0, 1);
  const std::vector<v1::Park>& catalogue = EmbeddedParkCatalogue();
  std::vector<const v1::Park*> parks;
  for (size_t i = 0; i < catalogue.size() && parks.size() < kParks;
       i += catalogue.size() / kParks) {
    parks.push_back(&catalogue[i]);
  }
  EXPECT_EQ(parks.size(), static_cast<size_t>(kParks));

  Plan plan;
  std::vector<std::string> usccs;
  while (plan.usccs.size() < kEnterprises) {
    std::string uscc = RandomUscc(random);
    if (plan.usccs.insert(uscc).second) usccs.push_back(std::move(uscc));
  }
  // Revision 1 of every (enterprise, year); revision 2 of a random 40,000 of the 60,000.
  std::vector<int> corrected(2 * kEnterprises);
  for (int i = 0; i < 2 * kEnterprises; ++i) corrected[i] = i;
  std::shuffle(corrected.begin(), corrected.end(), random);
  corrected.resize(kFilings - 2 * kEnterprises);
  std::set<int> has_revision_2(corrected.begin(), corrected.end());

  // Each event gets a random time: sorted by it, each year's revisions stay in order, and a
  // repeat comes after its original (the same key: one partition, the order published).
  std::vector<std::pair<double, OutgoingEvent>> filings, decisions;
  const absl::Time now = absl::Now();
  auto add = [&](std::vector<std::pair<double, OutgoingEvent>>& events, double time,
                 OutgoingEvent event) {
    if (uniform(random) < kRepeatShare) events.emplace_back(time + uniform(random), event);
    events.emplace_back(time, std::move(event));
  };
  for (int e = 0; e < kEnterprises; ++e) {
    const std::string& uscc = usccs[e];
    const v1::Park& park = *parks[e % kParks];
    for (int32_t y = 0; y < 2; ++y) {
      const int32_t year = kFirstYear + y;
      double filed = uniform(random), decided = uniform(random);
      for (int32_t revision = 1; revision <= (has_revision_2.contains(2 * e + y) ? 2 : 1);
           ++revision) {
        const std::string filing_id = FilingIdFor(uscc, year, revision);
        v1::AcceptedFiling accepted;
        accepted.set_filing_id(filing_id);
        accepted.set_region(park.region());
        v1::AnnualFiling* filing = accepted.mutable_filing();
        filing->set_uscc(uscc);
        filing->set_park_id(park.park_id());
        filing->set_fiscal_year(year);
        filing->set_revision(revision);
        filing->set_gross_revenue_fen(10'000'000 + static_cast<int64_t>(random() % 1'000'000'000));
        filing->set_rd_expenditure_fen(filing->gross_revenue_fen() / 25);
        filing->set_total_employees(100);
        filing->set_tertiary_educated_employees(40);
        filing->set_rd_employees(15);
        for (int p = 0; p < static_cast<int>(random() % 3); ++p) {
          v1::HiTechProject* project = filing->add_projects();
          project->set_project_id(absl::StrCat("p", p));
          project->set_title(absl::StrCat("Project ", p));
          project->set_field(v1::TECHNOLOGY_FIELD_NEW_MATERIALS);
          project->set_stage(p == 0 ? v1::PROJECT_STAGE_COMMERCIALIZED
                                    : v1::PROJECT_STAGE_DEVELOPMENT);
          project->set_torch_nominated(uniform(random) < 0.5);
        }
        accepted.set_content_sha256(absl::StrCat("sha256-of-", filing_id, "-", seed));
        add(filings, filed,
            MakeCloudEvent(filings_topic, uscc, accepted.SerializeAsString(),
                           {.id = filing_id,
                            .type = "stip.v1.AcceptedFiling",
                            .source = "/stip/intake",
                            .time = now}));
        ++plan.distinct_filings;

        v1::QualificationDecision decision;
        decision.set_decision_id(absl::StrCat("decision/", filing_id, "/stip-default/1"));
        decision.set_filing_id(filing_id);
        decision.set_uscc(uscc);
        decision.set_park_id(park.park_id());
        decision.set_region(park.region());
        decision.set_fiscal_year(year);
        decision.set_filing_revision(revision);
        decision.set_policy_id("stip-default");
        decision.set_policy_version(1);
        decision.set_outcome(uniform(random) < 0.6 ? v1::DECISION_OUTCOME_QUALIFIED
                                                   : v1::DECISION_OUTCOME_NOT_QUALIFIED);
        add(decisions, decided,
            MakeCloudEvent(decisions_topic, uscc, decision.SerializeAsString(),
                           {.id = decision.decision_id(),
                            .type = "stip.v1.QualificationDecision",
                            .source = "/stip/assessment",
                            .time = now}));
        ++plan.distinct_decisions;
        filed += uniform(random) * 0.1;
        decided += uniform(random) * 0.1;
      }
    }
  }
  for (auto* events : {&filings, &decisions}) {
    std::stable_sort(events->begin(), events->end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  for (auto& [time, event] : filings) plan.filings.push_back(std::move(event));
  for (auto& [time, event] : decisions) plan.decisions.push_back(std::move(event));
  return plan;
}

// Publishes `events` in batches, in order; false (and a failure) when the broker refuses.
bool PublishAll(EventPublisher& publisher, const std::vector<OutgoingEvent>& events) {
  constexpr size_t kBatch = 5'000;
  for (size_t from = 0; from < events.size(); from += kBatch) {
    const size_t to = std::min(events.size(), from + kBatch);
    const absl::Status status =
        publisher.Publish(absl::MakeConstSpan(events.data() + from, to - from), absl::Seconds(60));
    if (!status.ok()) {
      ADD_FAILURE() << "publishing: " << status;
      return false;
    }
  }
  return true;
}

// What the database must hold, recounted from the input topics.
struct Recount {
  int64_t filings = 0;
  int64_t decisions = 0;
  int64_t enterprise_years = 0;
  int64_t qualified_years = 0;  // enterprise_years whose decision in force is QUALIFIED
  int64_t listed_years = 0;     // enterprise_years on the roster (listed = 1)
  std::map<v1::ListingChange, int64_t> changes;
  std::map<v1::RosterStatus, int64_t> roster;
  std::set<std::string> listing_ids;

  int64_t Changes(v1::ListingChange change) const {
    auto found = changes.find(change);
    return found == changes.end() ? 0 : found->second;
  }
  int64_t Roster(v1::RosterStatus status) const {
    auto found = roster.find(status);
    return found == roster.end() ? 0 : found->second;
  }
};

std::string ChangeWord(v1::ListingChange change) {
  switch (change) {
    case v1::LISTING_CHANGE_LISTED:
      return "listed";
    case v1::LISTING_CHANGE_RENEWED:
      return "renewed";
    default:
      return "delisted";
  }
}

// Replays store_apply.cc in plain code: filings dropped by id, the highest revision of each
// year, then the decisions in each enterprise's order (offset order per partition) through
// ApplyDecision's staleness test and UpdateRoster's rules. Every filing is applied before
// any decision (the test's phases), so a decision is stale when a higher revision was filed.
Recount RecountFromTopics(const std::vector<ConsumedEvent>& filing_events,
                          const std::vector<ConsumedEvent>& decision_events) {
  Recount recount;
  std::set<std::string> filing_ids;
  std::map<std::pair<std::string, int32_t>, int32_t> highest_filed;  // (uscc, year)
  for (const ConsumedEvent& event : filing_events) {
    v1::AcceptedFiling accepted;
    EXPECT_TRUE(accepted.ParseFromString(event.value)) << event.Position();
    if (!filing_ids.insert(accepted.filing_id()).second) continue;
    int32_t& highest = highest_filed[{accepted.filing().uscc(), accepted.filing().fiscal_year()}];
    highest = std::max(highest, accepted.filing().revision());
  }
  recount.filings = static_cast<int64_t>(filing_ids.size());
  recount.enterprise_years = static_cast<int64_t>(highest_filed.size());

  struct Standing {
    v1::RosterStatus status = v1::ROSTER_STATUS_NOT_LISTED;
    int32_t year = 0;
    int64_t changes = 0;
  };
  struct Year {
    int32_t decided_revision = 0;
    v1::DecisionOutcome outcome = v1::DECISION_OUTCOME_UNSPECIFIED;
    bool listed = false;
  };
  std::map<std::string, Standing> roster;
  std::map<std::pair<std::string, int32_t>, Year> years;
  std::set<std::string> decision_ids;
  for (const ConsumedEvent& event : decision_events) {
    v1::QualificationDecision decision;
    EXPECT_TRUE(decision.ParseFromString(event.value)) << event.Position();
    if (!decision_ids.insert(decision.decision_id()).second) continue;
    const std::pair<std::string, int32_t> key{decision.uscc(), decision.fiscal_year()};
    const int32_t revision = decision.filing_revision();
    Year& year = years[key];
    // Every decision here has policy version 1: a repeat of a revision is a repeat of its id.
    if (highest_filed[key] > revision || year.decided_revision >= revision) continue;
    year.decided_revision = revision;
    year.outcome = decision.outcome();

    Standing& standing = roster[decision.uscc()];
    if (decision.fiscal_year() < standing.year) continue;
    v1::ListingChange change = v1::LISTING_CHANGE_UNSPECIFIED;
    if (decision.outcome() == v1::DECISION_OUTCOME_QUALIFIED) {
      if (standing.status != v1::ROSTER_STATUS_LISTED) {
        change = v1::LISTING_CHANGE_LISTED;
      } else if (standing.year < decision.fiscal_year()) {
        change = v1::LISTING_CHANGE_RENEWED;
      }
    } else if (standing.status == v1::ROSTER_STATUS_LISTED) {
      change = v1::LISTING_CHANGE_DELISTED;
    }
    if (change == v1::LISTING_CHANGE_UNSPECIFIED) continue;
    ++standing.changes;
    standing.status = change == v1::LISTING_CHANGE_DELISTED ? v1::ROSTER_STATUS_DELISTED
                                                            : v1::ROSTER_STATUS_LISTED;
    standing.year = decision.fiscal_year();
    year.listed = change != v1::LISTING_CHANGE_DELISTED;
    ++recount.changes[change];
    recount.listing_ids.insert(absl::StrCat(decision.uscc(), "/", decision.fiscal_year(), "/",
                                            ChangeWord(change), "/", standing.changes));
  }
  recount.decisions = static_cast<int64_t>(decision_ids.size());
  for (const auto& [key, year] : years) {
    recount.qualified_years += year.outcome == v1::DECISION_OUTCOME_QUALIFIED;
    recount.listed_years += year.listed;
  }
  for (const auto& [uscc, standing] : roster) {
    if (standing.changes > 0) ++recount.roster[standing.status];
  }
  return recount;
}

// The elements of `a` missing from `b`: how many, and the first few.
std::string Missing(const std::set<std::string>& a, const std::set<std::string>& b) {
  std::vector<std::string> missing;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(missing));
  std::string text = absl::StrCat(missing.size());
  for (size_t i = 0; i < std::min<size_t>(missing.size(), 5); ++i) {
    absl::StrAppend(&text, i == 0 ? ": " : ", ", missing[i]);
  }
  return text;
}

TEST(RegistryCrashTest, KafkaPostgresHundredThousandFilingsThroughKills) {
  const absl::Time began = absl::Now();
  const std::string bootstrap = testing::KafkaBootstrap();
  ASSERT_FALSE(bootstrap.empty());
  const std::string db_url = testing::FreshPostgresDatabase("registry-crash");
  ASSERT_FALSE(db_url.empty());
  ASSERT_TRUE(std::filesystem::exists(RegistryBinary())) << RegistryBinary() << " is not built";

  const std::string events_url = "kafka://" + bootstrap;
  auto log = OpenEventLog(events_url);
  ASSERT_TRUE(log.ok()) << log.status();
  const std::string filings_topic = testing::UniqueName("registry-crash-filings");
  const std::string decisions_topic = testing::UniqueName("registry-crash-decisions");
  const std::string group = testing::UniqueName("registry-crash");
  ASSERT_TRUE(
      (*log)->EnsureTopics({{filings_topic, kPartitions}, {decisions_topic, kPartitions}}).ok());

  const uint64_t seed = std::random_device{}();
  const Plan plan = MakePlan(seed, filings_topic, decisions_topic);
  ASSERT_EQ(plan.distinct_filings, static_cast<size_t>(kFilings));
  std::cout << "plan (seed " << seed << "): " << plan.filings.size() << " filing events ("
            << plan.distinct_filings << " distinct), " << plan.decisions.size()
            << " decision events (" << plan.distinct_decisions << " distinct), "
            << plan.usccs.size() << " enterprises" << std::endl;

  auto publisher = (*log)->NewPublisher();
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  ASSERT_TRUE(PublishAll(**publisher, plan.filings));
  std::cout << "filings published, " << Elapsed(began) << std::endl;

  // Static membership: a restarted instance takes its predecessor's place in the group at
  // once, instead of waiting for the killed member's session to expire.
  const std::vector<std::string> args = {RegistryBinary().string(),
                                         "--events=" + events_url,
                                         "--db=" + db_url,
                                         "--group=" + group,
                                         "--filings-topic=" + filings_topic,
                                         "--decisions-topic=" + decisions_topic,
                                         "--grpc-listen=127.0.0.1:0",
                                         "--admin-listen=127.0.0.1:0",
                                         "--log-format=text",
                                         "--log-level=warn",
                                         "--kafka-property",
                                         "group.instance.id=" + group};
  Database db(db_url);
  auto instance = std::make_unique<testing::ChildProcess>(args);

  std::mt19937 random(static_cast<uint32_t>(seed));
  std::uniform_int_distribution<int> pause_ms(1500, 4000);
  int kills = 0, decision_phase_kills = 0;
  std::thread decision_publisher;
  std::atomic<bool> decisions_published{false};
  struct Joiner {
    std::thread& thread;
    ~Joiner() {
      if (thread.joinable()) thread.join();
    }
  } joiner{decision_publisher};

  // Kills the instance after a random pause; true when it was killed while work remained.
  auto kill_at_random = [&](const char* phase) {
    absl::SleepFor(absl::Milliseconds(pause_ms(random)));
    EXPECT_TRUE(instance->running()) << "stip-registry exited by itself: " << instance->Wait();
    instance->Signal(SIGKILL);
    const int status = instance->Wait();
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    ++kills;
    const Progress progress = ReadProgress(db);
    std::cout << "kill " << kills << " (" << phase << ") at " << Elapsed(began) << ": "
              << Describe(progress) << std::endl;
    instance = std::make_unique<testing::ChildProcess>(args);
    return progress;
  };

  for (int i = 0; i < kFilingPhaseKills; ++i) {
    const Progress progress = kill_at_random("filings");
    ASSERT_LT(progress.filings, kFilings) << "killed after every filing was applied";
  }
  // Decisions are published once every filing is recorded (see the top of this file).
  {
    // Waits while the count grows: how fast depends on the machine's load, not on the code.
    int64_t recorded = db.Number("SELECT COUNT(*) FROM filings");
    absl::Time changed = absl::Now();
    while (recorded < kFilings && absl::Now() - changed < kStalledFor) {
      ASSERT_TRUE(instance->running()) << "stip-registry exited by itself: " << instance->Wait();
      absl::SleepFor(absl::Milliseconds(200));
      const int64_t now = db.Number("SELECT COUNT(*) FROM filings");
      if (now != recorded) changed = absl::Now();
      recorded = now;
    }
    ASSERT_EQ(db.Number("SELECT COUNT(*) FROM filings"), kFilings);
    std::cout << "every filing recorded at " << Elapsed(began) << std::endl;
  }
  decision_publisher =
      std::thread([&] { decisions_published = PublishAll(**publisher, plan.decisions); });
  while (kills < kKills || decision_phase_kills < kDecisionPhaseKills) {
    const Progress progress = kill_at_random("decisions");
    ++decision_phase_kills;
    ASSERT_LT(progress.decisions, static_cast<int64_t>(plan.distinct_decisions))
        << "killed after every decision was applied: no work remained";
  }
  decision_publisher.join();
  ASSERT_TRUE(decisions_published);
  EXPECT_GE(kills, 5);

  // The last instance finishes: every event consumed, nothing changing any more, the outbox
  // relayed.
  const int64_t events_published =
      static_cast<int64_t>(plan.filings.size() + plan.decisions.size());
  Progress last;
  {
    // Given up only when nothing has changed for kStalledFor: a loaded machine applies
    // slowly (a fixed 180 s was passed with 153,016 of 201,947 events applied, at load 12).
    absl::Time changed = absl::Now();
    while (absl::Now() - changed < kStalledFor) {
      ASSERT_TRUE(instance->running()) << "stip-registry exited by itself: " << instance->Wait();
      const Progress now = ReadProgress(db);
      if (std::tie(now.filings, now.decisions, now.listings, now.outbox, now.positions) !=
          std::tie(last.filings, last.decisions, last.listings, last.outbox, last.positions)) {
        changed = absl::Now();
      }
      last = now;
      if (now.positions == events_published && now.outbox == 0 &&
          absl::Now() - changed > absl::Seconds(1)) {
        break;
      }
      absl::SleepFor(absl::Milliseconds(250));
    }
  }
  std::cout << "applied and relayed after " << kills << " kills at " << Elapsed(began) << ": "
            << Describe(last) << std::endl;
  EXPECT_EQ(last.positions, events_published) << "events consumed";
  EXPECT_EQ(last.outbox, 0) << "outbox not drained";
  instance->Signal(SIGTERM);
  const int status = instance->Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;

  // The recount from the topics.
  Broker broker(bootstrap);
  const auto filing_ends = broker.Watermarks(filings_topic);
  const auto decision_ends = broker.Watermarks(decisions_topic);
  auto everything = [](const ConsumedEvent&) { return true; };
  const std::vector<ConsumedEvent> filing_events =
      ReadTopic(**log, filings_topic, filing_ends, everything);
  const std::vector<ConsumedEvent> decision_events =
      ReadTopic(**log, decisions_topic, decision_ends, everything);
  EXPECT_EQ(filing_events.size(), plan.filings.size());
  EXPECT_EQ(decision_events.size(), plan.decisions.size());
  const Recount expected = RecountFromTopics(filing_events, decision_events);
  EXPECT_EQ(expected.filings, kFilings);
  EXPECT_EQ(expected.decisions, static_cast<int64_t>(plan.distinct_decisions));
  std::cout << "recount: " << expected.filings << " filings, " << expected.decisions
            << " decisions, " << expected.enterprise_years << " enterprise years, "
            << expected.Changes(v1::LISTING_CHANGE_LISTED) << " listed, "
            << expected.Changes(v1::LISTING_CHANGE_RENEWED) << " renewed, "
            << expected.Changes(v1::LISTING_CHANGE_DELISTED) << " delisted" << std::endl;

  EXPECT_EQ(db.Number("SELECT COUNT(*) FROM filings"), expected.filings);
  EXPECT_EQ(db.Number("SELECT COUNT(*) FROM decisions"), expected.decisions);
  EXPECT_EQ(db.Number("SELECT COUNT(*) FROM filing_conflicts"), 0);
  EXPECT_EQ(db.Number("SELECT COUNT(*) FROM enterprise_years"), expected.enterprise_years);
  EXPECT_EQ(db.Number(absl::StrCat("SELECT COUNT(*) FROM enterprise_years WHERE outcome = ",
                                   v1::DECISION_OUTCOME_QUALIFIED)),
            expected.qualified_years);
  EXPECT_EQ(db.Number("SELECT COUNT(*) FROM enterprise_years WHERE listed = 1"),
            expected.listed_years);
  for (const v1::ListingChange change :
       {v1::LISTING_CHANGE_LISTED, v1::LISTING_CHANGE_RENEWED, v1::LISTING_CHANGE_DELISTED}) {
    EXPECT_EQ(db.Number(absl::StrCat("SELECT COUNT(*) FROM listings WHERE change = ", change)),
              expected.Changes(change))
        << v1::ListingChange_Name(change);
  }
  for (const v1::RosterStatus roster_status :
       {v1::ROSTER_STATUS_LISTED, v1::ROSTER_STATUS_DELISTED}) {
    EXPECT_EQ(db.Number(absl::StrCat("SELECT COUNT(*) FROM roster WHERE status = ", roster_status)),
              expected.Roster(roster_status))
        << v1::RosterStatus_Name(roster_status);
  }
  // The positions stored are the topics' end offsets.
  std::map<std::pair<std::string, int32_t>, int64_t> stored, ends;
  if (auto rows = db.Rows(absl::StrCat(
          "SELECT topic, partition_id, next_offset FROM consumed_offsets WHERE consumer_group = '",
          group, "'"))) {
    for (const auto& row : *rows) stored[{row[0], std::stoi(row[1])}] = std::stoll(row[2]);
  }
  for (const auto& [topic, watermarks] :
       {std::pair{filings_topic, filing_ends}, std::pair{decisions_topic, decision_ends}}) {
    for (const auto& [partition, range] : watermarks) ends[{topic, partition}] = range.second;
  }
  EXPECT_EQ(stored, ends) << "consumed_offsets against the topics' end offsets";
  EXPECT_EQ(db.Number("SELECT COUNT(*) FROM consumed_offsets"), static_cast<int64_t>(ends.size()));

  // The listings: the database's are the recount's, and stip.listings.v1 holds each of them,
  // and nothing else of this run, by ce_id.
  std::set<std::string> db_ids;
  if (auto rows = db.Rows("SELECT event_id FROM listings")) {
    for (const auto& row : *rows) db_ids.insert(row[0]);
  }
  EXPECT_EQ(db_ids.size(), expected.listing_ids.size());
  EXPECT_EQ(db_ids, expected.listing_ids)
      << "recounted but not in the database: " << Missing(expected.listing_ids, db_ids)
      << "; in the database but not recounted: " << Missing(db_ids, expected.listing_ids);

  const std::string listings_topic(kListingsTopic);
  const std::vector<ConsumedEvent> listing_events =
      ReadTopic(**log, listings_topic, broker.Watermarks(listings_topic),
                [&](const ConsumedEvent& event) { return plan.usccs.contains(event.key); });
  std::map<std::string, int> per_id;
  int mismatched = 0;
  for (const ConsumedEvent& event : listing_events) {
    const std::string id(event.Header("ce_id").value_or(""));
    ++per_id[id];
    v1::TorchListing listing;
    if (!listing.ParseFromString(event.value) || listing.event_id() != id ||
        listing.uscc() != event.key || event.Header("ce_type") != "stip.v1.TorchListing") {
      ++mismatched;
    }
  }
  std::set<std::string> topic_ids;
  int duplicates = 0;
  for (const auto& [id, count] : per_id) {
    topic_ids.insert(id);
    duplicates += count - 1;
  }
  EXPECT_EQ(mismatched, 0) << "listing events whose envelope disagrees with their payload";
  EXPECT_EQ(topic_ids, db_ids) << "in the database but not on " << listings_topic << ": "
                               << Missing(db_ids, topic_ids) << "; on " << listings_topic
                               << " but not in the database: " << Missing(topic_ids, db_ids);

  ::testing::Test::RecordProperty("kills", kills);
  ::testing::Test::RecordProperty("listing_events", static_cast<int>(listing_events.size()));
  ::testing::Test::RecordProperty("listing_duplicates_by_id", duplicates);
  std::cout << "stip.listings.v1: " << listing_events.size() << " events of this run, "
            << topic_ids.size() << " distinct ids, " << duplicates
            << " duplicates by id (at least once); " << kills << " kills; " << Elapsed(began)
            << " in all" << std::endl;
}

}  // namespace
}  // namespace stip::registry
