// The event log's contract (services/common/event_log.h), checked the same way on every
// backend: SQLite on a temporary file, and Kafka on the real broker the test command starts.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/event_log.h"
#include "stip/v1/filing.pb.h"
#include "tests/support/test_environment.h"
#include <sys/wait.h>

namespace stip {
namespace {

using ::testing::Each;
using ::testing::Eq;
using ::testing::SizeIs;

enum class Backend { kSqlite, kKafka };

std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "Sqlite" : "Kafka";
}

class EventLogContractTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    url_ = GetParam() == Backend::kSqlite
               ? absl::StrCat("sqlite://", dir_.path().string(), "/log.db")
               : absl::StrCat("kafka://", testing::KafkaBootstrap());
    EventLogOptions options;
    options.publish_timeout = absl::Seconds(30);
    auto log = OpenEventLog(url_, options);
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = std::move(*log);
    auto publisher = log_->NewPublisher();
    ASSERT_TRUE(publisher.ok()) << publisher.status();
    publisher_ = std::move(*publisher);
  }

  // A new topic with `partitions` partitions, unique to this test run.
  std::string NewTopic(const std::string& prefix, int32_t partitions = 3) {
    std::string name = testing::UniqueName(prefix);
    const TopicSpec spec{name, partitions};
    EXPECT_TRUE(log_->EnsureTopics({&spec, 1}).ok());
    return name;
  }

  // Publishes `count` events over `keys` keys; the value is "key#sequence", sequence counting
  // per key from 0. Returns the values published. `first_index` continues an earlier call
  // with the same `keys`: event i is the (i / keys)-th of key i % keys.
  std::vector<std::string> PublishNumbered(const std::string& topic, int count, int keys,
                                           int batch_size = 500, int first_index = 0) {
    std::vector<std::string> values;
    std::vector<OutgoingEvent> batch;
    for (int i = first_index; i < first_index + count; ++i) {
      std::string key = absl::StrCat("key-", i % keys);
      std::string value = absl::StrCat(key, "#", i / keys);
      values.push_back(value);
      batch.push_back({topic, key, value, {{"content-type", "text/plain"}}});
      if (static_cast<int>(batch.size()) == batch_size || i + 1 == first_index + count) {
        const absl::Status status = publisher_->Publish(batch, absl::Seconds(30));
        EXPECT_TRUE(status.ok()) << status;
        batch.clear();
      }
    }
    return values;
  }

  // Reads `topic` from the start, as a new group, until `expected` events have arrived and
  // then `quiet` more time has passed with nothing new (so that duplicates would show).
  std::vector<ConsumedEvent> ReadAll(const std::string& topic, size_t expected,
                                     absl::Duration quiet = absl::Seconds(2),
                                     absl::Duration limit = absl::Seconds(120)) {
    ConsumerOptions options;
    options.group = testing::UniqueName("reader");
    options.topics = {topic};
    auto consumer = log_->NewConsumer(options);
    EXPECT_TRUE(consumer.ok()) << consumer.status();
    if (!consumer.ok()) return {};
    std::vector<ConsumedEvent> events;
    const absl::Time give_up = absl::Now() + limit;
    absl::Time last_new = absl::Now();
    while (absl::Now() < give_up) {
      auto polled = (*consumer)->Poll(1000, absl::Milliseconds(200));
      EXPECT_TRUE(polled.ok()) << polled.status();
      if (!polled.ok()) break;
      if (!polled->empty()) last_new = absl::Now();
      for (auto& event : *polled) events.push_back(std::move(event));
      if (events.size() >= expected && absl::Now() - last_new > quiet) break;
    }
    EXPECT_TRUE((*consumer)->Close(absl::Seconds(10)).ok());
    return events;
  }

  static std::map<std::string, int> CountValues(const std::vector<ConsumedEvent>& events) {
    std::map<std::string, int> counts;
    for (const auto& event : events) ++counts[event.value];
    return counts;
  }

  // Every published value appears exactly once among `events`, and nothing else does.
  static void ExpectExactlyOnce(const std::vector<std::string>& published,
                                const std::vector<ConsumedEvent>& events) {
    const auto counts = CountValues(events);
    int missing = 0, doubled = 0;
    for (const auto& value : published) {
      auto found = counts.find(value);
      if (found == counts.end()) {
        ++missing;
      } else if (found->second > 1) {
        ++doubled;
      }
    }
    EXPECT_EQ(missing, 0) << "inputs missing from the output";
    EXPECT_EQ(doubled, 0) << "inputs present more than once in the output";
    EXPECT_EQ(counts.size(), published.size()) << "output holds values that were never input";
  }

  // Per key, the sequence numbers arrive in increasing order.
  static void ExpectOrderPerKey(const std::vector<ConsumedEvent>& events) {
    std::map<std::string, int> last_sequence;
    int out_of_order = 0;
    for (const auto& event : events) {
      const auto hash = event.value.find('#');
      const int sequence = std::stoi(event.value.substr(hash + 1));
      auto [it, first] = last_sequence.try_emplace(event.key, sequence);
      if (!first) {
        if (sequence <= it->second) ++out_of_order;
        it->second = sequence;
      }
    }
    EXPECT_EQ(out_of_order, 0) << "events of one key arrived out of order";
  }

  std::vector<std::string> CopierArgs(const std::string& input, const std::string& output,
                                      const std::string& group, int batch_delay_ms,
                                      int until_idle_ms, int max_batch = 200) {
    return {testing::TestProgramPath("event-copier").string(),
            url_,
            input,
            output,
            group,
            std::to_string(batch_delay_ms),
            std::to_string(until_idle_ms),
            std::to_string(max_batch)};
  }

  testing::TempDir dir_;
  std::string url_;
  std::unique_ptr<EventLog> log_;
  std::unique_ptr<EventPublisher> publisher_;
};

// A handler that copies each input to `output_topic`, optionally failing chosen batches.
class CopyHandler : public BatchHandler {
 public:
  explicit CopyHandler(std::string output_topic) : output_topic_(std::move(output_topic)) {}

  absl::Status HandleBatch(absl::Span<const ConsumedEvent> batch, BatchOutput& output) override {
    for (const auto& event : batch) {
      if (fail_once_on_ == event.value) {
        fail_once_on_.clear();
        ++failures_;
        return absl::UnavailableError("injected failure");
      }
    }
    for (const auto& event : batch) output.Emit({output_topic_, event.key, event.value, {}});
    consumed_ += static_cast<int64_t>(batch.size());
    return absl::OkStatus();
  }

  std::string fail_once_on_;
  std::atomic<int> failures_{0};
  std::atomic<int64_t> consumed_{0};

 private:
  std::string output_topic_;
};

// Runs `processor` on a thread until `done` holds or `limit` passes, then stops it.
void RunUntil(ExactlyOnceProcessor& processor, const std::function<bool()>& done,
              absl::Duration limit = absl::Seconds(120)) {
  absl::Status result;
  std::thread runner([&] { result = processor.Run(); });
  const absl::Time give_up = absl::Now() + limit;
  while (!done() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(20));
  processor.Stop();
  runner.join();
  EXPECT_TRUE(result.ok()) << result;
}

TEST_P(EventLogContractTest, KeepsOrderPerKey) {
  const std::string topic = NewTopic("order");
  const auto published = PublishNumbered(topic, 5000, 37, /*batch_size=*/97);
  const auto events = ReadAll(topic, published.size());
  ExpectExactlyOnce(published, events);
  ExpectOrderPerKey(events);
  // One key, one partition: the placement is the murmur2 partitioner's, on every backend.
  for (const auto& event : events) {
    ASSERT_EQ(event.partition, PartitionForKey(event.key, 3)) << event.key;
  }
}

TEST_P(EventLogContractTest, LosesNothingAcrossConsumerRestart) {
  const std::string topic = NewTopic("restart");
  const auto published = PublishNumbered(topic, 2000, 11);
  const std::string group = testing::UniqueName("restart-group");

  std::vector<ConsumedEvent> first_run;
  {
    auto consumer = log_->NewConsumer({group, {topic}});
    ASSERT_TRUE(consumer.ok()) << consumer.status();
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while (first_run.size() < 700 && absl::Now() < give_up) {
      auto polled = (*consumer)->Poll(100, absl::Milliseconds(200));
      ASSERT_TRUE(polled.ok()) << polled.status();
      first_run.insert(first_run.end(), polled->begin(), polled->end());
    }
    ASSERT_TRUE((*consumer)->Commit().ok());
    ASSERT_TRUE((*consumer)->Close(absl::Seconds(10)).ok());
  }
  ASSERT_GE(first_run.size(), 700u);

  std::vector<ConsumedEvent> second_run;
  {
    auto consumer = log_->NewConsumer({group, {topic}});
    ASSERT_TRUE(consumer.ok()) << consumer.status();
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while (first_run.size() + second_run.size() < published.size() && absl::Now() < give_up) {
      auto polled = (*consumer)->Poll(500, absl::Milliseconds(200));
      ASSERT_TRUE(polled.ok()) << polled.status();
      second_run.insert(second_run.end(), polled->begin(), polled->end());
    }
    ASSERT_TRUE((*consumer)->Close(absl::Seconds(10)).ok());
  }
  // The second member starts exactly where the first committed: together, each event once.
  std::vector<ConsumedEvent> both = first_run;
  both.insert(both.end(), second_run.begin(), second_run.end());
  ExpectExactlyOnce(published, both);
}

TEST_P(EventLogContractTest, ExactlyOnceAcrossSigkillBetweenProduceAndCommit) {
  const std::string input = NewTopic("crash-in");
  const std::string output = NewTopic("crash-out");
  const std::string group = testing::UniqueName("crash-group");
  const auto published = PublishNumbered(input, 20000, 101);

  // Kafka needs a few seconds per start to join the group and fence the previous instance;
  // each round must get far enough to have produced, and maybe committed, something.
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> run_for_ms(GetParam() == Backend::kKafka ? 3000 : 300,
                                                GetParam() == Backend::kKafka ? 7000 : 2500);
  int kills = 0;
  for (int round = 0; round < 6; ++round) {
    testing::ChildProcess copier(CopierArgs(input, output, group, /*batch_delay_ms=*/15,
                                            /*until_idle_ms=*/0));
    std::this_thread::sleep_for(std::chrono::milliseconds(run_for_ms(random)));
    ASSERT_TRUE(copier.running()) << "the copier exited before it was killed";
    copier.Signal(SIGKILL);
    const int status = copier.Wait();
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ++kills;
  }
  EXPECT_GE(kills, 5);

  testing::ChildProcess finisher(CopierArgs(input, output, group, 0, /*until_idle_ms=*/10000));
  const int status = finisher.Wait();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;

  const auto events = ReadAll(output, published.size(), absl::Seconds(3));
  ExpectExactlyOnce(published, events);
  ExpectOrderPerKey(events);
}

TEST_P(EventLogContractTest, SigtermMidBatchFinishesTheBatchAndLosesNothing) {
  const std::string input = NewTopic("term-in");
  const std::string output = NewTopic("term-out");
  const std::string group = testing::UniqueName("term-group");
  const auto published = PublishNumbered(input, 3000, 17);

  {
    // Slow batches (300 ms each), so that SIGTERM lands inside one.
    testing::ChildProcess copier(CopierArgs(input, output, group, /*batch_delay_ms=*/300, 0, 50));
    std::this_thread::sleep_for(
        std::chrono::milliseconds(GetParam() == Backend::kKafka ? 6000 : 1500));
    ASSERT_TRUE(copier.running());
    copier.Signal(SIGTERM);
    const int status = copier.Wait();
    ASSERT_TRUE(WIFEXITED(status)) << "the copier did not exit on SIGTERM: status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0) << "a clean stop exits 0";
  }
  // What the stopped copier committed is in the output, once; a restart copies the rest.
  testing::ChildProcess finisher(CopierArgs(input, output, group, 0, /*until_idle_ms=*/10000));
  const int status = finisher.Wait();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  ExpectExactlyOnce(published, ReadAll(output, published.size()));
}

TEST_P(EventLogContractTest, AbortedBatchIsProcessedAgainNotSkipped) {
  const std::string input = NewTopic("abort-in");
  const std::string output = NewTopic("abort-out");
  const auto published = PublishNumbered(input, 1000, 7);

  CopyHandler handler(output);
  handler.fail_once_on_ = published[500];
  ProcessorOptions options;
  options.group = testing::UniqueName("abort-group");
  options.input_topics = {input};
  options.max_batch_events = 100;
  options.retry_backoff = absl::Milliseconds(50);
  auto processor = log_->NewProcessor(options, &handler);
  ASSERT_TRUE(processor.ok()) << processor.status();
  RunUntil(**processor, [&] { return handler.consumed_ >= 1000; });

  EXPECT_EQ(handler.failures_, 1);
  EXPECT_GE((*processor)->Counters().batches_aborted, 1);
  ExpectExactlyOnce(published, ReadAll(output, published.size()));
}

// Decodes each input as an AnnualFiling; what does not decode is dead-lettered.
class DecodingHandler : public BatchHandler {
 public:
  explicit DecodingHandler(std::string output_topic) : output_topic_(std::move(output_topic)) {}
  absl::Status HandleBatch(absl::Span<const ConsumedEvent> batch, BatchOutput& output) override {
    for (const auto& event : batch) {
      v1::AnnualFiling filing;
      if (!filing.ParseFromString(event.value)) {
        output.DeadLetter(event, "not a stip.v1.AnnualFiling protobuf");
      } else {
        output.Emit({output_topic_, event.key, filing.uscc(), {}});
      }
      ++seen_;
    }
    return absl::OkStatus();
  }
  std::atomic<int> seen_{0};

 private:
  std::string output_topic_;
};

TEST_P(EventLogContractTest, UndecodableEventsReachTheDeadLetterTopicAndNeverStopTheConsumer) {
  const std::string input = NewTopic("dlq-in");
  const std::string output = NewTopic("dlq-out");
  const TopicSpec dead_letter{std::string(kDeadLetterTopic), 3};
  ASSERT_TRUE(log_->EnsureTopics({&dead_letter, 1}).ok());

  std::vector<OutgoingEvent> events;
  std::set<std::string> good, bad;
  for (int i = 0; i < 300; ++i) {
    const std::string key = absl::StrCat("enterprise-", i);
    if (i % 10 == 3) {
      // A truncated varint: never a valid protobuf message.
      std::string garbage = absl::StrCat("\xff\xff\xff", input, "-", i);
      bad.insert(garbage);
      events.push_back({input, key, garbage, {}});
    } else {
      v1::AnnualFiling filing;
      filing.set_uscc(absl::StrCat(input, "-", i));
      good.insert(filing.uscc());
      events.push_back({input, key, filing.SerializeAsString(), {}});
    }
  }
  ASSERT_TRUE(publisher_->Publish(events, absl::Seconds(30)).ok());

  DecodingHandler handler(output);
  ProcessorOptions options;
  options.group = testing::UniqueName("dlq-group");
  options.input_topics = {input};
  auto processor = log_->NewProcessor(options, &handler);
  ASSERT_TRUE(processor.ok()) << processor.status();
  RunUntil(**processor, [&] { return handler.seen_ >= 300; });
  EXPECT_EQ((*processor)->Counters().events_dead_lettered, static_cast<int64_t>(bad.size()));

  std::set<std::string> decoded;
  for (const auto& event : ReadAll(output, good.size())) decoded.insert(event.value);
  EXPECT_EQ(decoded, good);

  // The dead-letter topic is shared by every test run: pick out this run's events.
  std::set<std::string> dead;
  for (const auto& event : ReadAll(std::string(kDeadLetterTopic), 0, absl::Seconds(3))) {
    if (!bad.contains(event.value)) continue;
    dead.insert(event.value);
    EXPECT_EQ(event.Header(kDeadLetterReasonHeader).value_or(""),
              "not a stip.v1.AnnualFiling protobuf");
    EXPECT_THAT(std::string(event.Header(kDeadLetterSourceHeader).value_or("")),
                ::testing::StartsWith(input + "/"));
  }
  EXPECT_EQ(dead, bad);
}

TEST_P(EventLogContractTest, TwoMembersSplitTheWorkAndARebalanceLosesAndDuplicatesNothing) {
  const std::string input = NewTopic("group-in", 6);
  const std::string output = NewTopic("group-out", 6);
  constexpr int kKeys = 257;
  std::vector<std::string> published = PublishNumbered(input, 2000, kKeys);

  ProcessorOptions options;
  options.group = testing::UniqueName("pair");
  options.input_topics = {input};
  options.max_batch_events = 200;
  CopyHandler first_handler(output), second_handler(output);
  options.instance_id = "first";
  auto first = log_->NewProcessor(options, &first_handler);
  options.instance_id = "second";
  auto second = log_->NewProcessor(options, &second_handler);
  ASSERT_TRUE(first.ok() && second.ok());

  // Both run. Events keep arriving until each member has had a share of them: when the
  // second member's join completes depends on the machine's load, and a member that joins
  // after the input is drained has nothing to consume (a fixed event count made this test
  // fail on a loaded 2-core machine). Then the second leaves halfway, which moves its
  // partitions to the first.
  absl::Status first_result, second_result;
  std::thread first_runner([&] { first_result = (*first)->Run(); });
  std::thread second_runner([&] { second_result = (*second)->Run(); });
  const absl::Time give_up = absl::Now() + absl::Seconds(240);
  const bool shares_expected = GetParam() == Backend::kKafka;
  while ((published.size() < 10000 ||
          (shares_expected && (first_handler.consumed_ == 0 || second_handler.consumed_ == 0))) &&
         absl::Now() < give_up) {
    auto more = PublishNumbered(input, 500, kKeys, 500, static_cast<int>(published.size()));
    published.insert(published.end(), more.begin(), more.end());
    absl::SleepFor(absl::Milliseconds(50));
  }
  const auto published_count = [&] { return static_cast<int64_t>(published.size()); };
  while (first_handler.consumed_ + second_handler.consumed_ < published_count() / 2 &&
         absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  (*second)->Stop();
  second_runner.join();
  auto rest = PublishNumbered(input, 10000, kKeys, 500, static_cast<int>(published.size()));
  published.insert(published.end(), rest.begin(), rest.end());
  while (first_handler.consumed_ + second_handler.consumed_ < published_count() &&
         absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  (*first)->Stop();
  first_runner.join();
  EXPECT_TRUE(first_result.ok()) << first_result;
  EXPECT_TRUE(second_result.ok()) << second_result;

  if (shares_expected) {
    // Six partitions over two members: each had a share while both were in the group.
    EXPECT_GT(second_handler.consumed_, 0);
    EXPECT_GT(first_handler.consumed_, 0);
  }
  const auto events = ReadAll(output, published.size());
  ExpectExactlyOnce(published, events);
  ExpectOrderPerKey(events);
}

TEST_P(EventLogContractTest, MemoryStaysBoundedWhileAMillionEventsPass) {
  constexpr int kEvents = 1'000'000;
  const std::string input = NewTopic("million");
  const std::string output = NewTopic("million-counts");

  // Published from a thread while the processor consumes, as a live pipeline does.
  std::atomic<bool> publish_ok{true};
  std::thread producer([&] {
    std::vector<OutgoingEvent> batch;
    const std::string payload(120, 'x');
    for (int i = 0; i < kEvents; ++i) {
      batch.push_back({input, absl::StrCat("key-", i % 997), payload, {}});
      if (batch.size() == 2000) {
        if (!publisher_->Publish(batch, absl::Seconds(60)).ok()) publish_ok = false;
        batch.clear();
      }
    }
  });

  // Emits one count per batch, so the measurement is of consuming, not of a growing output.
  class CountingHandler : public BatchHandler {
   public:
    explicit CountingHandler(std::string topic) : topic_(std::move(topic)) {}
    absl::Status HandleBatch(absl::Span<const ConsumedEvent> batch, BatchOutput& out) override {
      consumed += static_cast<int64_t>(batch.size());
      out.Emit({topic_, "count", std::to_string(batch.size()), {}});
      return absl::OkStatus();
    }
    std::atomic<int64_t> consumed{0};

   private:
    std::string topic_;
  } handler(output);

  ProcessorOptions options;
  options.group = testing::UniqueName("million-group");
  options.input_topics = {input};
  auto processor = log_->NewProcessor(options, &handler);
  ASSERT_TRUE(processor.ok()) << processor.status();

  int64_t rss_at_fifth = 0, rss_max_after_fifth = 0;
  absl::Status result;
  std::thread runner([&] { result = (*processor)->Run(); });
  const absl::Time give_up = absl::Now() + absl::Seconds(600);
  while (handler.consumed < kEvents && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(100));
    const int64_t rss = testing::CurrentRssKib();
    if (rss_at_fifth == 0 && handler.consumed >= kEvents / 5) rss_at_fifth = rss;
    if (rss_at_fifth != 0) rss_max_after_fifth = std::max(rss_max_after_fifth, rss);
  }
  (*processor)->Stop();
  runner.join();
  producer.join();
  ASSERT_TRUE(result.ok()) << result;
  ASSERT_TRUE(publish_ok);
  ASSERT_EQ(handler.consumed, kEvents);
  // Warmed up at a fifth of the way; from there to the end the resident set may not grow
  // by more than 64 MiB (it would grow by hundreds if events were retained).
  RecordProperty("rss_kib_at_fifth", static_cast<int>(rss_at_fifth));
  RecordProperty("rss_kib_max_after", static_cast<int>(rss_max_after_fifth));
  EXPECT_LT(rss_max_after_fifth - rss_at_fifth, 64 * 1024)
      << "RSS grew from " << rss_at_fifth << " KiB to " << rss_max_after_fifth << " KiB";
}

INSTANTIATE_TEST_SUITE_P(Backends, EventLogContractTest,
                         ::testing::Values(Backend::kSqlite, Backend::kKafka), BackendName);

}  // namespace
}  // namespace stip
