// The stip-assessment binary, killed with SIGKILL at random moments while filings stream in,
// decides every filing revision exactly once: on the real Kafka broker (STIP_TEST_KAFKA),
// 100,000 filings through one instance, and 30,000 through two instances of one group
// killed in turns (each start and kill moves partitions between them); on the embedded
// SQLite event log, 20,000. Revisions are mixed in
// (10% of enterprises file a revision 2, some a revision 3, some skip from 1 to 3), with
// filings for a year no policy covers and undecodable events among them. Read back with
// read_committed: one decision per decided filing revision, no event twice, each revision's
// decision naming the decision of the previous revision filed, decisions in filing order
// per enterprise; one rejection per uncovered filing and one dead letter per undecodable
// event.
//
// The binary is found beside the test's build folder (build/services/assessment/), or where
// STIP_TEST_ASSESSMENT_BINARY says.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/assessment/decision_handler.h"
#include "services/assessment/evaluator.h"
#include "services/common/event.h"
#include "services/common/event_log.h"
#include "stip/v1/decision.pb.h"
#include "stip/v1/filing.pb.h"
#include "tests/support/test_environment.h"
#include <sys/wait.h>

namespace stip::assessment {
namespace {

constexpr char kDefaultPolicy[] = R"(id: stip-default
version: 1
fiscal_years:
  from: 1991
  to: open
criteria:
  - metric: RD_INTENSITY
    comparison: ">="
    threshold_basis_points: 300
  - metric: TERTIARY_SHARE
    comparison: ">="
    threshold_basis_points: 3000
  - metric: RD_STAFF_SHARE
    comparison: ">="
    threshold_basis_points: 1000
)";

constexpr int32_t kPartitions = 6;
constexpr int kKills = 6;

std::filesystem::path AssessmentBinary() {
  if (const char* path = std::getenv("STIP_TEST_ASSESSMENT_BINARY"); path != nullptr && *path) {
    return path;
  }
  return testing::TestProgramPath("stip-assessment").parent_path().parent_path() / "services" /
         "assessment" / "stip-assessment";
}

// One event of the input stream, in the order published.
struct Planned {
  std::string uscc;
  int32_t year = 0;
  int32_t revision = 0;
  bool qualifies = true;
  enum Kind { kDecided, kNoPolicy, kGarbage } kind = kDecided;
  double time = 0;  // orders the stream

  std::string FilingId() const { return absl::StrCat(uscc, "/", year, "/", revision); }
};

// About `decided` filing revisions that get a decision, plus filings for 1985 (no policy)
// and undecodable events, in a random order that keeps each enterprise's revisions in order.
std::vector<Planned> Plan(int decided, int no_policy, int garbage, uint32_t seed) {
  std::mt19937 random(seed);
  std::uniform_real_distribution<double> uniform(0, 1);
  std::vector<Planned> plan;
  int count = 0;
  for (int i = 0; count < decided; ++i) {
    const std::string uscc = absl::StrCat("91650100MA", 10000000 + i);
    const int32_t year = i % 20 == 0 ? 2023 : 2024;
    double time = uniform(random);
    auto add = [&](int32_t revision) {
      plan.push_back({uscc, year, revision, uniform(random) < 0.6, Planned::kDecided, time});
      ++count;
      time += uniform(random) * 0.2;
    };
    add(1);
    const double draw = uniform(random);
    if (draw < 0.10) {
      add(2);
      if (draw < 0.02) add(3);
    } else if (draw < 0.11) {
      add(3);  // revision 2 never filed: 3 supersedes 1
    }
  }
  for (int i = 0; i < no_policy; ++i) {
    plan.push_back({absl::StrCat("91650100MB", 10000000 + i), 1985, 1, true, Planned::kNoPolicy,
                    uniform(random)});
  }
  for (int i = 0; i < garbage; ++i) {
    plan.push_back({absl::StrCat("91650100MC", 10000000 + i), 2024, 1, true, Planned::kGarbage,
                    uniform(random)});
  }
  std::stable_sort(plan.begin(), plan.end(),
                   [](const Planned& a, const Planned& b) { return a.time < b.time; });
  return plan;
}

OutgoingEvent ToEvent(const Planned& planned, const std::string& topic) {
  CloudEventAttributes attributes;
  attributes.id = planned.FilingId();
  attributes.type = std::string(kAcceptedFilingType);
  attributes.source = "/stip/intake";
  attributes.time = absl::Now();
  if (planned.kind == Planned::kGarbage) {
    return MakeCloudEvent(topic, planned.uscc, "\x0a\xff garbage", attributes);
  }
  v1::AcceptedFiling accepted;
  accepted.set_filing_id(planned.FilingId());
  accepted.set_region(v1::ECONOMIC_REGION_WESTERN);
  v1::AnnualFiling* filing = accepted.mutable_filing();
  filing->set_uscc(planned.uscc);
  filing->set_park_id("urumqi-hnz");
  filing->set_fiscal_year(planned.year);
  filing->set_revision(planned.revision);
  filing->set_gross_revenue_fen(123'456'789);
  filing->set_rd_expenditure_fen(planned.qualifies ? 3'703'704 : 3'703'703);  // 3.00% or not
  filing->set_total_employees(250);
  filing->set_tertiary_educated_employees(80);
  filing->set_rd_employees(30);
  accepted.set_content_sha256(absl::StrCat("content-", planned.FilingId()));
  return MakeCloudEvent(topic, planned.uscc, accepted.SerializeAsString(), attributes);
}

std::string Header(const ConsumedEvent& event, std::string_view name) {
  return std::string(event.Header(name).value_or(""));
}

// Reads a topic in the background from its start (read_committed), keeping the events
// `match` accepts (all by default).
class TopicReader {
 public:
  TopicReader(EventLog& log, const std::string& topic,
              std::function<bool(const ConsumedEvent&)> match = {})
      : match_(std::move(match)) {
    auto consumer = log.NewConsumer({.group = testing::UniqueName("assess-it-reader"),
                                     .topics = {topic},
                                     .start_from_earliest = true});
    EXPECT_TRUE(consumer.ok()) << consumer.status();
    if (!consumer.ok()) return;
    consumer_ = *std::move(consumer);
    thread_ = std::thread([this] {
      while (!stop_) {
        auto events = consumer_->Poll(5000, absl::Milliseconds(100));
        if (!events.ok()) {
          ADD_FAILURE() << events.status();
          return;
        }
        if (events->empty()) continue;
        std::lock_guard<std::mutex> lock(mutex_);
        for (ConsumedEvent& event : *events) {
          if (match_ && !match_(event)) continue;
          events_.push_back(std::move(event));
          last_new_ = absl::Now();
        }
        count_ = events_.size();
      }
    });
  }
  ~TopicReader() { Stop(); }

  size_t count() const { return count_; }
  // Waits until `expected` events were read and nothing more came for `quiet`, or `limit`.
  bool WaitFor(size_t expected, absl::Duration quiet, absl::Duration limit) {
    const absl::Time give_up = absl::Now() + limit;
    while (absl::Now() < give_up) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (events_.size() >= expected && absl::Now() - last_new_ > quiet) return true;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }
  std::vector<ConsumedEvent> Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (consumer_ != nullptr) {
      EXPECT_TRUE(consumer_->Close(absl::Seconds(10)).ok());
      consumer_.reset();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    return events_;
  }

 private:
  const std::function<bool(const ConsumedEvent&)> match_;
  std::unique_ptr<EventConsumer> consumer_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> count_{0};
  std::mutex mutex_;
  std::vector<ConsumedEvent> events_;
  absl::Time last_new_ = absl::InfinitePast();
  std::thread thread_;
};

struct Scenario {
  std::string url;
  int decided = 0;
  int no_policy = 0;
  int garbage = 0;
  // The input is published in `chunks` chunks: the first `burst_chunks` at once (a backlog,
  // so that kills land mid-batch), the others `chunk_pause` apart, so that filings keep
  // arriving while the instances are killed.
  int chunks = 0;
  int burst_chunks = 0;
  absl::Duration chunk_pause;
  std::vector<std::string> extra_args;
  // Instances running at once, in one group (1 or 2).
  int instances = 1;
  // How long a killed instance stays down: long enough (beyond the session timeout) for the
  // others to take over its partitions, which then move back when it restarts.
  absl::Duration down_for = absl::ZeroDuration();
};

void RunScenario(const Scenario& scenario) {
  const absl::Time began = absl::Now();
  testing::TempDir dir;
  const std::filesystem::path policies = dir.path() / "policies";
  std::filesystem::create_directories(policies);
  std::ofstream(policies / "stip-default.yaml") << kDefaultPolicy;

  auto log = OpenEventLog(scenario.url);
  ASSERT_TRUE(log.ok()) << log.status();
  const std::string filings = testing::UniqueName("assess-it-filings");
  const std::string decisions = testing::UniqueName("assess-it-decisions");
  const std::string rejected = testing::UniqueName("assess-it-rejected");
  const std::string group = testing::UniqueName("assess-it");
  std::vector<TopicSpec> topics = StandardTopics(kPartitions);
  for (const std::string& name : {filings, decisions, rejected}) {
    topics.push_back({name, kPartitions});
  }
  ASSERT_TRUE((*log)->EnsureTopics(topics).ok());

  const uint32_t plan_seed = 20240501;
  const std::vector<Planned> plan =
      Plan(scenario.decided, scenario.no_policy, scenario.garbage, plan_seed);
  const uint32_t kill_seed = std::random_device{}();
  std::cout << "plan: " << plan.size() << " events (seed " << plan_seed << "), kill seed "
            << kill_seed << std::endl;

  // Everything a decision should be, by decision id.
  std::map<std::string, const Planned*> expected;
  std::map<std::string, std::string> expected_supersedes;
  std::map<std::string, int32_t> last_revision;  // "uscc/year" -> greatest revision so far
  int expected_rejections = 0, expected_garbage = 0;
  for (const Planned& planned : plan) {
    if (planned.kind == Planned::kNoPolicy) ++expected_rejections;
    if (planned.kind == Planned::kGarbage) ++expected_garbage;
    if (planned.kind != Planned::kDecided) continue;
    const std::string id = DecisionId(planned.FilingId(), "stip-default", 1);
    expected[id] = &planned;
    const std::string key = absl::StrCat(planned.uscc, "/", planned.year);
    auto previous = last_revision.find(key);
    expected_supersedes[id] =
        previous == last_revision.end()
            ? ""
            : DecisionId(absl::StrCat(key, "/", previous->second), "stip-default", 1);
    last_revision[key] = planned.revision;  // revisions are planned in increasing order
  }
  ASSERT_EQ(expected.size(), static_cast<size_t>(scenario.decided));

  TopicReader decision_reader(**log, decisions);
  // The last kKills chunks are held back, one released per round once its instances are
  // started, so that every round has filings left to decide when its victim is killed.
  std::atomic<int> kills{0};
  std::atomic<int> rounds_started{0};
  std::atomic<bool> abandon{false};
  std::thread publisher([&] {
    auto publisher = (*log)->NewPublisher();
    ASSERT_TRUE(publisher.ok()) << publisher.status();
    const size_t per_chunk = (plan.size() + scenario.chunks - 1) / scenario.chunks;
    int chunk_index = 0;
    for (size_t from = 0; from < plan.size(); from += per_chunk, ++chunk_index) {
      const int held_until_round = chunk_index - (scenario.chunks - kKills) + 1;
      while (rounds_started < held_until_round && !abandon) {
        absl::SleepFor(absl::Milliseconds(10));
      }
      std::vector<OutgoingEvent> chunk;
      for (size_t i = from; i < std::min(plan.size(), from + per_chunk); ++i) {
        chunk.push_back(ToEvent(plan[i], filings));
      }
      const absl::Status status = (*publisher)->Publish(chunk, absl::Seconds(30));
      ASSERT_TRUE(status.ok()) << status;
      if (chunk_index >= scenario.burst_chunks && held_until_round <= 0) {
        absl::SleepFor(scenario.chunk_pause);
      }
    }
  });
  // Joins the publisher however this test ends.
  struct Joiner {
    std::thread& thread;
    std::atomic<bool>& abandon;
    ~Joiner() {
      abandon = true;
      if (thread.joinable()) thread.join();
    }
  } joiner{publisher, abandon};

  auto args_for = [&](int slot) {
    std::vector<std::string> args = {AssessmentBinary().string(),
                                     "--events=" + scenario.url,
                                     "--policies=" + policies.string(),
                                     "--group=" + group,
                                     absl::StrCat("--instance-id=it-", slot),
                                     "--filings-topic=" + filings,
                                     "--decisions-topic=" + decisions,
                                     "--rejected-topic=" + rejected,
                                     absl::StrCat("--partitions=", kPartitions),
                                     "--grpc-listen=127.0.0.1:0",
                                     "--admin-listen=127.0.0.1:0",
                                     "--log-format=text",
                                     "--log-level=warn"};
    args.insert(args.end(), scenario.extra_args.begin(), scenario.extra_args.end());
    return args;
  };
  ASSERT_TRUE(std::filesystem::exists(AssessmentBinary())) << AssessmentBinary() << " is not built";

  // Round after round, every instance that is not running is started, and one is killed at
  // a random moment after decisions were seen to progress. With two instances, each start
  // and each kill moves partitions between them (their histories must catch up).
  std::mt19937 random(kill_seed);
  std::uniform_int_distribution<int> delay_ms(0, 400);
  std::vector<std::unique_ptr<testing::ChildProcess>> instances(scenario.instances);
  auto start_stopped = [&] {
    for (int slot = 0; slot < scenario.instances; ++slot) {
      if (instances[slot] == nullptr) {
        instances[slot] = std::make_unique<testing::ChildProcess>(args_for(slot));
      }
    }
  };
  while (kills < kKills) {
    start_stopped();
    ++rounds_started;
    testing::ChildProcess& victim = *instances[kills % scenario.instances];
    const size_t before = decision_reader.count();
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while (decision_reader.count() == before && victim.running() && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    ASSERT_TRUE(victim.running()) << "stip-assessment exited by itself: " << victim.Wait();
    ASSERT_GT(decision_reader.count(), before) << "no progress within 60 s";
    absl::SleepFor(absl::Milliseconds(delay_ms(random)));
    ASSERT_TRUE(victim.running());
    victim.Signal(SIGKILL);
    const int status = victim.Wait();
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    instances[kills % scenario.instances].reset();
    ++kills;
    // What the killed instance committed is read before the next one starts, so that the
    // progress awaited above is the next instance's own (alone, it is quiet then).
    const absl::Time quiet_by = absl::Now() + absl::Seconds(2);
    for (size_t seen = decision_reader.count(); absl::Now() < quiet_by;) {
      absl::SleepFor(absl::Milliseconds(300));
      if (decision_reader.count() == seen) break;
      seen = decision_reader.count();
    }
    std::cout << "kill " << kills << " at " << decision_reader.count() << " decisions read, "
              << absl::FormatDuration(absl::Trunc(absl::Now() - began, absl::Milliseconds(1)))
              << std::endl;
    absl::SleepFor(scenario.down_for);
  }
  EXPECT_GE(kills, 5);

  // The instances finish the stream and stop cleanly on SIGTERM. A signal sent before an
  // instance's main has blocked it would kill it outright: give them time to start.
  start_stopped();
  absl::SleepFor(absl::Seconds(2));
  EXPECT_TRUE(decision_reader.WaitFor(expected.size(), absl::Seconds(3), absl::Seconds(120)))
      << decision_reader.count() << " of " << expected.size() << " decisions read";
  for (auto& instance : instances) {
    ASSERT_TRUE(instance->running());
    instance->Signal(SIGTERM);
  }
  for (auto& instance : instances) {
    const int status = instance->Wait();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
  const std::vector<ConsumedEvent> events = decision_reader.Stop();
  std::cout << "all decided after " << kills << " kills in "
            << absl::FormatDuration(absl::Trunc(absl::Now() - began, absl::Milliseconds(1)))
            << std::endl;

  // Exactly once: one event per decided filing revision, none twice, nothing else.
  std::map<std::string, int> per_id;
  int mismatched = 0, wrong_link = 0, unexpected = 0, out_of_order = 0;
  std::map<std::string, int32_t> last_seen_revision;  // "uscc/year", in consumed order
  for (const ConsumedEvent& event : events) {
    v1::QualificationDecision decision;
    ASSERT_TRUE(decision.ParseFromString(event.value)) << event.Position();
    const std::string id = Header(event, "ce_id");
    ++per_id[id];
    if (id != decision.decision_id() || Header(event, "ce_type") != kDecisionType ||
        Header(event, "ce_source") != kAssessmentSource || event.key != decision.uscc() ||
        !decision.has_decide_time()) {
      ++mismatched;
    }
    auto planned = expected.find(id);
    if (planned == expected.end()) {
      ++unexpected;
      continue;
    }
    if (decision.outcome() != (planned->second->qualifies ? v1::DECISION_OUTCOME_QUALIFIED
                                                          : v1::DECISION_OUTCOME_NOT_QUALIFIED)) {
      ++mismatched;
    }
    if (decision.supersedes_decision_id() != expected_supersedes[id]) ++wrong_link;
    const std::string key = absl::StrCat(decision.uscc(), "/", decision.fiscal_year());
    auto [seen, first] = last_seen_revision.try_emplace(key, decision.filing_revision());
    if (!first) {
      if (decision.filing_revision() <= seen->second) ++out_of_order;
      seen->second = decision.filing_revision();
    }
  }
  int doubled = 0;
  for (const auto& [id, count] : per_id) doubled += count > 1;
  EXPECT_EQ(events.size(), expected.size()) << "decision events read";
  EXPECT_EQ(per_id.size(), expected.size()) << "distinct decision ids";
  EXPECT_EQ(doubled, 0) << "decisions published more than once";
  EXPECT_EQ(unexpected, 0) << "decisions nobody filed for";
  EXPECT_EQ(mismatched, 0) << "decisions whose envelope or outcome is wrong";
  EXPECT_EQ(wrong_link, 0) << "decisions naming the wrong superseded decision";
  EXPECT_EQ(out_of_order, 0) << "decisions of one enterprise out of filing order";
  size_t links = 0;
  for (const auto& [id, supersedes] : expected_supersedes) links += !supersedes.empty();
  std::cout << per_id.size() << " decisions, " << links << " of them superseding another"
            << std::endl;

  // One rejection per filing no policy covers, once.
  TopicReader rejection_reader(**log, rejected);
  EXPECT_TRUE(rejection_reader.WaitFor(expected_rejections, absl::Seconds(2), absl::Seconds(60)));
  std::set<std::string> rejection_ids;
  const std::vector<ConsumedEvent> rejections = rejection_reader.Stop();
  for (const ConsumedEvent& event : rejections) rejection_ids.insert(Header(event, "ce_id"));
  EXPECT_EQ(rejections.size(), static_cast<size_t>(expected_rejections));
  EXPECT_EQ(rejection_ids.size(), static_cast<size_t>(expected_rejections));

  // One dead letter per undecodable event, once (on Kafka the topic is shared: ours are the
  // ones whose source is our input topic).
  TopicReader dead_letter_reader(**log, std::string(kDeadLetterTopic), [&](const ConsumedEvent& e) {
    return Header(e, kDeadLetterSourceHeader).starts_with(filings + "/");
  });
  EXPECT_TRUE(dead_letter_reader.WaitFor(expected_garbage, absl::Seconds(2), absl::Seconds(60)));
  std::set<std::string> sources;
  const std::vector<ConsumedEvent> dead_letters = dead_letter_reader.Stop();
  for (const ConsumedEvent& event : dead_letters) {
    sources.insert(Header(event, kDeadLetterSourceHeader));
    EXPECT_THAT(Header(event, kDeadLetterReasonHeader), ::testing::HasSubstr("AcceptedFiling"));
  }
  EXPECT_EQ(dead_letters.size(), static_cast<size_t>(expected_garbage));
  EXPECT_EQ(sources.size(), static_cast<size_t>(expected_garbage));
}

TEST(AssessmentExactlyOnceTest, KafkaHundredThousandFilingsThroughSixKills) {
  const std::string bootstrap = testing::KafkaBootstrap();
  ASSERT_FALSE(bootstrap.empty());
  RunScenario({.url = "kafka://" + bootstrap,
               .decided = 100'000,
               .no_policy = 60,
               .garbage = 25,
               .chunks = 50,
               .burst_chunks = 15,
               .chunk_pause = absl::Milliseconds(700),
               // A killed member holds its partitions until the session times out: the
               // broker's least (group.min.session.timeout.ms), so restarts are not slowed
               // by librdkafka's default 45 s.
               .extra_args = {"--kafka-property=session.timeout.ms=6000"}});
}

TEST(AssessmentExactlyOnceTest, KafkaTwoInstancesKilledInTurnsKeepTheLinksAcrossRebalances) {
  const std::string bootstrap = testing::KafkaBootstrap();
  ASSERT_FALSE(bootstrap.empty());
  RunScenario({.url = "kafka://" + bootstrap,
               .decided = 30'000,
               .no_policy = 20,
               .garbage = 10,
               .chunks = 30,
               .burst_chunks = 5,
               .chunk_pause = absl::Milliseconds(900),
               .extra_args = {"--kafka-property=session.timeout.ms=6000"},
               .instances = 2,
               .down_for = absl::Seconds(8)});
}

TEST(AssessmentExactlyOnceTest, SqliteTwentyThousandFilingsThroughSixKills) {
  testing::TempDir dir;
  RunScenario({.url = absl::StrCat("sqlite://", (dir.path() / "events.db").string()),
               .decided = 20'000,
               .no_policy = 30,
               .garbage = 15,
               .chunks = 20,
               .burst_chunks = 6,
               .chunk_pause = absl::Milliseconds(400)});
}

}  // namespace
}  // namespace stip::assessment
