// The stip-registry binary's WatchDecisions, followed by a subscriber whose stream is cut
// (TryCancel) at random moments 20 times while decisions are applied, each time resuming
// from the cursor of the last message it received (decision or heartbeat): it ends with
// every decision exactly once, in publish order per enterprise, and nothing more. A second
// subscriber filtered on outcome = NOT_QUALIFIED, cut at random moments too, receives
// exactly the matching subset. Run on the real Kafka broker and PostgreSQL
// (STIP_TEST_KAFKA, STIP_TEST_POSTGRES) and on the embedded backends (SQLite event log and
// SQLite database).
//
// 20,000 decisions (5,000 enterprises, revisions 1 to 4 each, so that order matters) are
// published in 40 chunks keyed by USCC. The publisher keeps pace with the disconnects (a
// chunk waits until about chunk * 20 / 38 disconnects happened, the last two chunks until
// all 20 did), so that every disconnect lands while decisions are still flowing.
//
// The binary is found beside the test's build folder (build/services/registry/).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "services/common/event.h"
#include "services/common/event_log.h"
#include "services/common/grpc_server.h"
#include "services/intake/uscc.h"
#include "stip/v1/decision.pb.h"
#include "stip/v1/registry_service.grpc.pb.h"
#include "tests/support/test_environment.h"
#include <sys/wait.h>

namespace stip::registry {
namespace {

constexpr int32_t kPartitions = 3;
constexpr int kEnterprises = 5000;
constexpr int kRevisions = 4;
constexpr int kDecisions = kEnterprises * kRevisions;
constexpr int kChunks = 40;
constexpr int kDisconnects = 20;
constexpr int kFilteredDisconnects = 10;
constexpr char kPark[] = "urumqi-hnz";

std::filesystem::path RegistryBinary() {
  return testing::TestProgramPath("stip-registry").parent_path().parent_path() / "services" /
         "registry" / "stip-registry";
}

// The seq of a cursor "d.<seq>"; -1 when it is not one.
int64_t CursorSeq(const std::string& cursor) {
  int64_t seq = -1;
  if (cursor.size() < 3 || cursor.substr(0, 2) != "d." ||
      !absl::SimpleAtoi(cursor.substr(2), &seq)) {
    return -1;
  }
  return seq;
}

struct Planned {
  std::string uscc;
  int32_t revision = 0;
  bool qualified = false;
  std::string decision_id;
};

// Every enterprise's revisions 1..kRevisions, at increasing random times, interleaved with
// the others'.
std::vector<Planned> Plan(uint32_t seed) {
  std::mt19937 random(seed);
  std::uniform_real_distribution<double> uniform(0, 1);
  std::vector<std::pair<double, Planned>> timed;
  for (int i = 0; i < kEnterprises; ++i) {
    const std::string first17 = absl::StrCat("91650100MD", 1000000 + i);
    const std::string uscc = first17 + *intake::UsccCheckCharacter(first17);
    double time = uniform(random);
    for (int32_t revision = 1; revision <= kRevisions; ++revision) {
      const std::string filing_id = absl::StrCat(uscc, "/2024/", revision);
      timed.push_back(
          {time, {uscc, revision, uniform(random) < 0.6, absl::StrCat(filing_id, "@watch-it/1")}});
      time += uniform(random) * 0.3;
    }
  }
  std::stable_sort(timed.begin(), timed.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<Planned> plan;
  plan.reserve(timed.size());
  for (auto& [time, planned] : timed) plan.push_back(std::move(planned));
  return plan;
}

OutgoingEvent ToEvent(const Planned& planned, const std::string& topic) {
  v1::QualificationDecision decision;
  decision.set_decision_id(planned.decision_id);
  decision.set_filing_id(absl::StrCat(planned.uscc, "/2024/", planned.revision));
  decision.set_uscc(planned.uscc);
  decision.set_park_id(kPark);
  decision.set_region(v1::ECONOMIC_REGION_WESTERN);
  decision.set_fiscal_year(2024);
  decision.set_filing_revision(planned.revision);
  decision.set_policy_id("watch-it");
  decision.set_policy_version(1);
  decision.set_outcome(planned.qualified ? v1::DECISION_OUTCOME_QUALIFIED
                                         : v1::DECISION_OUTCOME_NOT_QUALIFIED);
  CloudEventAttributes attributes;
  attributes.id = planned.decision_id;
  attributes.type = "stip.v1.QualificationDecision";
  attributes.source = "/stip/assessment";
  attributes.time = absl::Now();
  return MakeCloudEvent(topic, planned.uscc, decision.SerializeAsString(), attributes);
}

struct ReceivedDecision {
  std::string decision_id;
  std::string uscc;
  int64_t seq = 0;
};

// One disconnect: what the stream it cut had delivered, and the total so far.
struct Disconnect {
  int64_t stream_decisions = 0;
  int64_t total_decisions = 0;
  grpc::StatusCode code = grpc::StatusCode::OK;
};

// A WatchDecisions subscriber: a reader thread that follows the stream and reconnects from
// the last cursor it received, and a cutter thread that cancels the stream at a random
// moment after it delivered its first decision, `disconnects` times.
class Subscriber {
 public:
  Subscriber(std::shared_ptr<grpc::Channel> channel, v1::DecisionOutcome outcome, int disconnects,
             uint32_t seed)
      : stub_(v1::RegistryService::NewStub(std::move(channel))),
        outcome_(outcome),
        target_disconnects_(disconnects),
        random_(seed) {
    reader_ = std::thread([this] { ReadLoop(); });
    cutter_ = std::thread([this] { CutLoop(); });
  }
  ~Subscriber() { Stop(); }

  void Stop() {
    stop_ = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (context_ != nullptr) context_->TryCancel();
    }
    if (cutter_.joinable()) cutter_.join();
    if (reader_.joinable()) reader_.join();
  }

  size_t decision_count() {
    std::lock_guard<std::mutex> lock(mu_);
    return decisions_.size();
  }
  int disconnect_count() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(disconnects_.size());
  }
  // The seq of the last heartbeat received after the last decision; -1 when none.
  int64_t HeartbeatAfterLastDecision() {
    std::lock_guard<std::mutex> lock(mu_);
    return heartbeat_after_decision_;
  }
  int64_t last_seq() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_seq_;
  }

  // After Stop().
  const std::vector<ReceivedDecision>& decisions() const { return decisions_; }
  const std::vector<Disconnect>& disconnects() const { return disconnects_; }
  const std::string& first_message_cursor() const { return first_cursor_; }
  bool first_message_was_heartbeat() const { return first_heartbeat_; }
  int64_t decisions_on_last_stream() const { return stream_decisions_; }
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  void ReadLoop() {
    std::string cursor;
    bool first = true;
    while (!stop_) {
      grpc::ClientContext context;
      v1::WatchDecisionsRequest request;
      request.set_cursor(cursor);
      request.set_outcome(outcome_);
      {
        std::lock_guard<std::mutex> lock(mu_);
        context_ = &context;
        stream_decisions_ = 0;
        cut_requested_ = false;
        ++generation_;
      }
      if (stop_) context.TryCancel();
      std::unique_ptr<grpc::ClientReader<v1::WatchDecisionsResponse>> reader =
          stub_->WatchDecisions(&context, request);
      v1::WatchDecisionsResponse response;
      while (reader->Read(&response)) {
        std::lock_guard<std::mutex> lock(mu_);
        const int64_t seq = CursorSeq(response.cursor());
        if (first) {
          first = false;
          first_cursor_ = response.cursor();
          first_heartbeat_ = response.heartbeat();
        }
        if (seq < 0) {
          problems_.push_back(absl::StrCat("malformed cursor \"", response.cursor(), "\""));
        }
        if (response.heartbeat()) {
          if (response.has_decision()) problems_.push_back("a heartbeat carries a decision");
          if (seq < last_seq_) {
            problems_.push_back(absl::StrCat("heartbeat cursor ", response.cursor(),
                                             " behind the last cursor d.", last_seq_));
          }
          heartbeat_after_decision_ = seq;
        } else {
          if (!response.has_decision()) problems_.push_back("a message that is neither");
          if (seq <= last_seq_) {
            problems_.push_back(absl::StrCat("decision cursor ", response.cursor(),
                                             " not after the last cursor d.", last_seq_));
          }
          decisions_.push_back(
              {response.decision().decision_id(), response.decision().uscc(), seq});
          ++stream_decisions_;
          heartbeat_after_decision_ = -1;
        }
        last_seq_ = std::max(last_seq_, seq);
        cursor = response.cursor();
      }
      const grpc::Status status = reader->Finish();
      std::lock_guard<std::mutex> lock(mu_);
      context_ = nullptr;
      if (cut_requested_) {
        disconnects_.push_back(
            {stream_decisions_, static_cast<int64_t>(decisions_.size()), status.error_code()});
        if (status.error_code() != grpc::StatusCode::CANCELLED) {
          problems_.push_back(absl::StrCat("a cut stream ended with ", status.error_code(), ": ",
                                           status.error_message()));
        }
      } else if (!stop_) {
        // The server ended the stream by itself: that is a finding, but keep following.
        problems_.push_back(absl::StrCat("the stream ended by itself with ", status.error_code(),
                                         ": ", status.error_message()));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }

  void CutLoop() {
    std::uniform_int_distribution<int> delay_ms(0, 80);
    int cuts = 0;
    while (!stop_ && cuts < target_disconnects_) {
      // Wait until the current stream delivered a decision.
      uint64_t generation = 0;
      while (!stop_) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (context_ != nullptr && stream_decisions_ > 0) {
            generation = generation_;
            break;
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (stop_) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(random_)));
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (context_ == nullptr || generation_ != generation) continue;  // ended meanwhile
        cut_requested_ = true;
        context_->TryCancel();
      }
      ++cuts;
      // Wait for the reader to reconnect.
      while (!stop_) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (generation_ != generation) break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  }

  std::unique_ptr<v1::RegistryService::Stub> stub_;
  const v1::DecisionOutcome outcome_;
  const int target_disconnects_;
  std::mt19937 random_;
  std::atomic<bool> stop_{false};

  std::mutex mu_;
  grpc::ClientContext* context_ = nullptr;
  uint64_t generation_ = 0;
  bool cut_requested_ = false;
  int64_t stream_decisions_ = 0;
  int64_t last_seq_ = -1;
  int64_t heartbeat_after_decision_ = -1;
  std::string first_cursor_;
  bool first_heartbeat_ = false;
  std::vector<ReceivedDecision> decisions_;
  std::vector<Disconnect> disconnects_;
  std::vector<std::string> problems_;

  std::thread reader_;
  std::thread cutter_;
};

struct Backend {
  std::string name;
  bool kafka = false;
};

class RegistryWatchReconnectTest : public ::testing::TestWithParam<Backend> {};

TEST_P(RegistryWatchReconnectTest, EveryDecisionOnceInOrderAcrossTwentyDisconnects) {
  const absl::Time began = absl::Now();
  testing::TempDir dir;
  std::string events_url;
  std::string db_url;
  if (GetParam().kafka) {
    events_url = absl::StrCat("kafka://", testing::KafkaBootstrap());
    db_url = testing::FreshPostgresDatabase("watch_it");
    ASSERT_FALSE(db_url.empty());
  } else {
    events_url = absl::StrCat("sqlite://", (dir.path() / "events.db").string());
    db_url = absl::StrCat("sqlite://", (dir.path() / "registry.db").string());
  }
  auto log = OpenEventLog(events_url);
  ASSERT_TRUE(log.ok()) << log.status();
  const std::string filings = testing::UniqueName("watch-it-filings");
  const std::string decisions = testing::UniqueName("watch-it-decisions");
  const std::vector<TopicSpec> topics = {{filings, kPartitions}, {decisions, kPartitions}};
  ASSERT_TRUE((*log)->EnsureTopics(topics).ok());

  ASSERT_TRUE(std::filesystem::exists(RegistryBinary())) << RegistryBinary() << " is not built";
  const int port = testing::FreeLoopbackPort();
  ASSERT_GT(port, 0);
  testing::ChildProcess registry(
      {RegistryBinary().string(), "--events=" + events_url, "--db=" + db_url,
       absl::StrCat("--grpc-listen=127.0.0.1:", port), "--admin-listen=127.0.0.1:0",
       "--filings-topic=" + filings, "--decisions-topic=" + decisions,
       "--group=" + testing::UniqueName("watch-it"), absl::StrCat("--partitions=", kPartitions),
       "--heartbeat-interval=200ms", "--log-format=text", "--log-level=warn"});
  auto channel = MakeChannel(absl::StrCat("127.0.0.1:", port), GrpcLimits{});
  ASSERT_TRUE(
      channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30)))
      << "stip-registry did not start listening";

  const uint32_t plan_seed = 20240601;
  const std::vector<Planned> plan = Plan(plan_seed);
  ASSERT_EQ(plan.size(), static_cast<size_t>(kDecisions));
  const uint32_t cut_seed = std::random_device{}();
  std::cout << "plan seed " << plan_seed << ", cut seed " << cut_seed << std::endl;

  // Per enterprise, the decision ids in publish order; and the NOT_QUALIFIED ones.
  std::map<std::string, std::vector<std::string>> expected_order;
  std::map<std::string, std::vector<std::string>> expected_filtered_order;
  size_t expected_filtered = 0;
  for (const Planned& planned : plan) {
    expected_order[planned.uscc].push_back(planned.decision_id);
    if (!planned.qualified) {
      expected_filtered_order[planned.uscc].push_back(planned.decision_id);
      ++expected_filtered;
    }
  }

  Subscriber all(channel, v1::DECISION_OUTCOME_UNSPECIFIED, kDisconnects, cut_seed);
  Subscriber not_qualified(channel, v1::DECISION_OUTCOME_NOT_QUALIFIED, kFilteredDisconnects,
                           cut_seed + 1);
  // Both streams are open (from now) before anything is published.
  const absl::Time open_by = absl::Now() + absl::Seconds(10);
  while ((all.HeartbeatAfterLastDecision() < 0 || not_qualified.HeartbeatAfterLastDecision() < 0) &&
         absl::Now() < open_by) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(all.HeartbeatAfterLastDecision(), 0) << "no first heartbeat at d.0";
  ASSERT_EQ(not_qualified.HeartbeatAfterLastDecision(), 0) << "no first heartbeat at d.0";

  std::atomic<bool> abandon{false};
  std::thread publisher([&] {
    auto made = (*log)->NewPublisher();
    ASSERT_TRUE(made.ok()) << made.status();
    const size_t per_chunk = (plan.size() + kChunks - 1) / kChunks;
    for (int chunk = 0; chunk < kChunks; ++chunk) {
      const int needed = std::min(kDisconnects, chunk * kDisconnects / (kChunks - 2));
      while (all.disconnect_count() < needed && !abandon) {
        absl::SleepFor(absl::Milliseconds(2));
      }
      if (abandon) return;
      std::vector<OutgoingEvent> events;
      for (size_t i = chunk * per_chunk; i < std::min(plan.size(), (chunk + 1) * per_chunk); ++i) {
        events.push_back(ToEvent(plan[i], decisions));
      }
      const absl::Status published = (*made)->Publish(events, absl::Seconds(30));
      ASSERT_TRUE(published.ok()) << published;
      absl::SleepFor(absl::Milliseconds(50));
    }
  });
  struct Joiner {
    std::thread& thread;
    std::atomic<bool>& abandon;
    ~Joiner() {
      abandon = true;
      if (thread.joinable()) thread.join();
    }
  } joiner{publisher, abandon};

  // Until both received everything and then a heartbeat at the last decision's cursor: the
  // feed has nothing more for them.
  const absl::Time give_up = absl::Now() + absl::Seconds(90);
  auto settled = [&](Subscriber& subscriber, size_t expected) {
    return subscriber.decision_count() >= expected && subscriber.HeartbeatAfterLastDecision() >= 0;
  };
  while (!(settled(all, kDecisions) && settled(not_qualified, expected_filtered)) &&
         absl::Now() < give_up && registry.running()) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(registry.running()) << "stip-registry exited by itself: " << registry.Wait();
  EXPECT_EQ(all.decision_count(), static_cast<size_t>(kDecisions))
      << "within " << absl::FormatDuration(absl::Now() - began);
  EXPECT_EQ(not_qualified.decision_count(), expected_filtered);
  // A little longer, for anything that must not come.
  absl::SleepFor(absl::Milliseconds(600));
  const int64_t head = all.HeartbeatAfterLastDecision();
  abandon = true;
  publisher.join();
  all.Stop();
  not_qualified.Stop();
  std::cout << "done in " << absl::FormatDuration(absl::Now() - began) << ", feed head d." << head
            << std::endl;

  // The registry shuts down cleanly on SIGTERM.
  registry.Signal(SIGTERM);
  const absl::Time exit_by = absl::Now() + absl::Seconds(20);
  while (registry.running() && absl::Now() < exit_by) absl::SleepFor(absl::Milliseconds(20));
  ASSERT_FALSE(registry.running()) << "stip-registry did not exit within 20 s of SIGTERM";
  const int exit_status = registry.Wait();
  EXPECT_TRUE(WIFEXITED(exit_status) && WEXITSTATUS(exit_status) == 0) << exit_status;

  for (Subscriber* subscriber : {&all, &not_qualified}) {
    EXPECT_THAT(subscriber->problems(), ::testing::IsEmpty());
    // The first stream (empty cursor) began with a heartbeat at the head: d.0, a fresh feed.
    EXPECT_TRUE(subscriber->first_message_was_heartbeat());
    EXPECT_EQ(subscriber->first_message_cursor(), "d.0");
  }

  // Exactly once, in order per enterprise, and the total published.
  auto check = [](const Subscriber& subscriber,
                  const std::map<std::string, std::vector<std::string>>& expected,
                  size_t expected_total, const char* what) {
    std::set<std::string> seen;
    int duplicates = 0;
    std::map<std::string, std::vector<std::string>> order;
    for (const ReceivedDecision& received : subscriber.decisions()) {
      if (!seen.insert(received.decision_id).second) ++duplicates;
      order[received.uscc].push_back(received.decision_id);
    }
    EXPECT_EQ(duplicates, 0) << what;
    EXPECT_EQ(subscriber.decisions().size(), expected_total) << what;
    int out_of_order = 0;
    for (const auto& [uscc, ids] : expected) {
      auto it = order.find(uscc);
      if (it == order.end() || it->second != ids) ++out_of_order;
    }
    EXPECT_EQ(out_of_order, 0) << what << ": enterprises whose decisions differ or are reordered";
    EXPECT_EQ(order.size(), expected.size()) << what << ": enterprises";
  };
  check(all, expected_order, kDecisions, "all");
  check(not_qualified, expected_filtered_order, expected_filtered, "NOT_QUALIFIED");

  // The unfiltered stream saw every seq of the feed up to the head at the end.
  ASSERT_FALSE(all.decisions().empty());
  EXPECT_EQ(all.decisions().back().seq, head);
  EXPECT_GE(head, kDecisions);

  // Every disconnect cut a stream that had delivered decisions, before the end, and the
  // stream after the last one delivered decisions too.
  ASSERT_EQ(all.disconnects().size(), static_cast<size_t>(kDisconnects));
  for (size_t i = 0; i < all.disconnects().size(); ++i) {
    const Disconnect& cut = all.disconnects()[i];
    EXPECT_GT(cut.stream_decisions, 0) << "disconnect " << i + 1;
    EXPECT_LT(cut.total_decisions, kDecisions) << "disconnect " << i + 1;
    EXPECT_EQ(cut.code, grpc::StatusCode::CANCELLED) << "disconnect " << i + 1;
  }
  EXPECT_GT(all.decisions_on_last_stream(), 0);
  std::cout << "disconnects at";
  for (const Disconnect& cut : all.disconnects()) std::cout << " " << cut.total_decisions;
  std::cout << std::endl;
  EXPECT_GE(not_qualified.disconnects().size(), 5u);
  for (const Disconnect& cut : not_qualified.disconnects()) EXPECT_GT(cut.stream_decisions, 0);
  std::cout << "filtered: " << not_qualified.decisions().size() << " decisions, "
            << not_qualified.disconnects().size() << " disconnects" << std::endl;
}

INSTANTIATE_TEST_SUITE_P(Backends, RegistryWatchReconnectTest,
                         ::testing::Values(Backend{"KafkaPostgres", true},
                                           Backend{"Sqlite", false}),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace stip::registry
