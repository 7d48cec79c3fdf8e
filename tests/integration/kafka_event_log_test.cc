// The Kafka backend against a real broker (STIP_TEST_KAFKA), for what is Kafka-specific:
// murmur2 placement, transactions with read_committed readers, group rebalances, fencing,
// an unreachable broker, statistics. The backend-agnostic contract is tests/contract/.
// librdkafka's mock cluster is used only to inject client-side faults.
#include "services/common/kafka_event_log.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/metric_family.h"
#include "services/common/event_log.h"
#include "services/common/metrics.h"
#include "tests/support/test_environment.h"
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

namespace stip {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr absl::Duration kWait = absl::Seconds(60);

std::string Str(absl::string_view view) { return std::string(view); }

OutgoingEvent Event(const std::string& topic, const std::string& key, const std::string& value) {
  return OutgoingEvent{topic, key, value, {{"ce_id", value}, {"content-type", "text/plain"}}};
}

// An 18-character USCC-like key, distinct per i.
std::string KeyFor(int i) { return absl::StrCat("91650100MA", 10000000 + i); }

// Copies every input to `output`; can be told to fail its next calls.
class CopyHandler final : public BatchHandler {
 public:
  explicit CopyHandler(std::string output) : output_(std::move(output)) {}

  absl::Status HandleBatch(absl::Span<const ConsumedEvent> batch, BatchOutput& out) override {
    ++calls_;
    if (fail_next_ > 0) {
      --fail_next_;
      return absl::InternalError("injected handler failure");
    }
    std::lock_guard<std::mutex> lock(mutex_);
    for (const ConsumedEvent& event : batch) {
      out.Emit({output_, event.key, event.value, event.headers});
      partitions_.insert(event.partition);
    }
    if (delay_ > absl::ZeroDuration()) absl::SleepFor(delay_);
    return absl::OkStatus();
  }

  std::set<int32_t> partitions() {
    std::lock_guard<std::mutex> lock(mutex_);
    return partitions_;
  }
  void ForgetPartitions() {
    std::lock_guard<std::mutex> lock(mutex_);
    partitions_.clear();
  }

  std::atomic<int> fail_next_{0};
  std::atomic<int> calls_{0};
  absl::Duration delay_ = absl::ZeroDuration();

 private:
  const std::string output_;
  std::mutex mutex_;
  std::set<int32_t> partitions_;
};

// A processor running on its own thread.
class RunningProcessor {
 public:
  RunningProcessor(EventLog& log, const ProcessorOptions& options, BatchHandler* handler) {
    auto processor = log.NewProcessor(options, handler);
    EXPECT_TRUE(processor.ok()) << processor.status();
    if (!processor.ok()) return;
    processor_ = *std::move(processor);
    thread_ = std::thread([this] { result_ = processor_->Run(); });
  }
  ~RunningProcessor() { Stop().IgnoreError(); }

  absl::Status Stop() {
    if (thread_.joinable()) {
      processor_->Stop();
      thread_.join();
    }
    return result_;
  }
  // Waits for Run to return by itself.
  absl::Status Join() {
    if (thread_.joinable()) thread_.join();
    return result_;
  }
  ProcessorCounters Counters() const { return processor_->Counters(); }

 private:
  std::unique_ptr<ExactlyOnceProcessor> processor_;
  std::thread thread_;
  absl::Status result_;
};

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout = kWait) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return true;
}

class KafkaEventLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bootstrap_ = testing::KafkaBootstrap();
    ASSERT_FALSE(bootstrap_.empty());
    options_.kafka_properties["statistics.interval.ms"] = "1000";
    options_.transaction_timeout = absl::Seconds(10);
    Open();
  }

  void Open() {
    auto log = OpenKafkaEventLog(bootstrap_, options_);
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = *std::move(log);
  }

  std::string NewTopic(int32_t partitions) {
    std::string name = testing::UniqueName("kafka-it");
    const TopicSpec spec{name, partitions};
    EXPECT_TRUE(log_->EnsureTopics({&spec, 1}).ok());
    return name;
  }

  void PublishAll(const std::vector<OutgoingEvent>& events) {
    auto publisher = log_->NewPublisher();
    ASSERT_TRUE(publisher.ok()) << publisher.status();
    for (size_t at = 0; at < events.size(); at += 100) {
      const size_t n = std::min<size_t>(100, events.size() - at);
      ASSERT_TRUE((*publisher)->Publish({events.data() + at, n}, absl::Seconds(30)).ok());
    }
  }

  // Reads `topic` from the start as a fresh group (read_committed) until `expected` events
  // have come, then a little longer, so that duplicates would show.
  std::vector<ConsumedEvent> ReadAll(const std::string& topic, size_t expected) {
    auto consumer = log_->NewConsumer({testing::UniqueName("reader"), {topic}, true, {}});
    EXPECT_TRUE(consumer.ok()) << consumer.status();
    if (!consumer.ok()) return {};
    std::vector<ConsumedEvent> events;
    const absl::Time deadline = absl::Now() + kWait;
    absl::Time settle = absl::InfiniteFuture();
    while (absl::Now() < std::min(deadline, settle)) {
      auto polled = (*consumer)->Poll(1000, absl::Milliseconds(200));
      EXPECT_TRUE(polled.ok()) << polled.status();
      if (!polled.ok()) break;
      events.insert(events.end(), polled->begin(), polled->end());
      if (events.size() >= expected && settle == absl::InfiniteFuture()) {
        settle = absl::Now() + absl::Seconds(2);
      }
    }
    EXPECT_TRUE((*consumer)->Close(absl::Seconds(10)).ok());
    return events;
  }

  ProcessorOptions ProcessorFor(const std::string& input, const std::string& group,
                                const std::string& instance) {
    ProcessorOptions options;
    options.group = group;
    options.input_topics = {input};
    options.instance_id = instance;
    options.commit_interval = absl::Milliseconds(50);
    options.max_batch_events = 100;
    options.retry_backoff = absl::Milliseconds(100);
    return options;
  }

  std::string bootstrap_;
  EventLogOptions options_;
  std::unique_ptr<EventLog> log_;
};

// Values as a multiset, to compare outputs with inputs including duplicates.
std::multiset<std::string> Values(const std::vector<ConsumedEvent>& events) {
  std::multiset<std::string> values;
  for (const ConsumedEvent& event : events) values.insert(event.value);
  return values;
}

std::multiset<std::string> Values(const std::vector<OutgoingEvent>& events) {
  std::multiset<std::string> values;
  for (const OutgoingEvent& event : events) values.insert(event.value);
  return values;
}

// A gauge of stip_consumer_lag for the labels, or -1.
double ConsumerLag(const std::string& group, const std::string& topic, int32_t partition) {
  for (const prometheus::MetricFamily& family : MetricsRegistry().Collect()) {
    if (family.name != "stip_consumer_lag") continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      std::map<std::string, std::string> labels;
      for (const auto& label : metric.label) labels[label.name] = label.value;
      if (labels["group"] == group && labels["topic"] == topic &&
          labels["partition"] == std::to_string(partition)) {
        return metric.gauge.value;
      }
    }
  }
  return -1;
}

TEST_F(KafkaEventLogTest, KeysLandWhereMurmur2PartitionForKeyPutsThem) {
  constexpr int32_t kPartitions = 6;
  const std::string topic = NewTopic(kPartitions);
  std::vector<OutgoingEvent> events;
  for (int i = 0; i < 300; ++i) events.push_back(Event(topic, KeyFor(i), absl::StrCat("v", i)));
  PublishAll(events);

  const std::vector<ConsumedEvent> read = ReadAll(topic, events.size());
  ASSERT_THAT(read, SizeIs(events.size()));
  std::set<int32_t> used;
  std::map<int32_t, int64_t> last_offset;
  for (const ConsumedEvent& event : read) {
    EXPECT_EQ(event.partition, PartitionForKey(event.key, kPartitions)) << event.key;
    EXPECT_EQ(event.Header("ce_id").value_or(""), event.value);
    EXPECT_EQ(event.Header("content-type").value_or(""), "text/plain");
    EXPECT_GT(event.timestamp, absl::Now() - absl::Minutes(5));
    if (last_offset.contains(event.partition)) {
      EXPECT_GT(event.offset, last_offset[event.partition]);
    }
    last_offset[event.partition] = event.offset;
    used.insert(event.partition);
  }
  EXPECT_THAT(used, SizeIs(kPartitions));
}

TEST_F(KafkaEventLogTest, ConsumerHonoursStartOffsetsAndCommits) {
  const std::string topic = NewTopic(1);
  std::vector<OutgoingEvent> events;
  for (int i = 0; i < 10; ++i) events.push_back(Event(topic, KeyFor(i), absl::StrCat("v", i)));
  PublishAll(events);
  const std::string group = testing::UniqueName("start-offsets");

  ConsumerOptions options{group, {topic}, true, {}};
  options.start_offsets = [&](const std::vector<TopicPartition>& partitions) {
    std::map<TopicPartition, int64_t> starts;
    for (const TopicPartition& partition : partitions) starts[partition] = 7;
    return starts;
  };
  {
    auto consumer = log_->NewConsumer(options);
    ASSERT_TRUE(consumer.ok()) << consumer.status();
    std::vector<ConsumedEvent> read;
    ASSERT_TRUE(WaitFor([&] {
      auto polled = (*consumer)->Poll(2, absl::Milliseconds(200));
      if (polled.ok()) read.insert(read.end(), polled->begin(), polled->end());
      return !read.empty();
    }));
    EXPECT_EQ(read.front().offset, 7);
    EXPECT_THAT((*consumer)->Assignment(), SizeIs(1));
    ASSERT_TRUE((*consumer)->Commit().ok());
    ASSERT_TRUE((*consumer)->Close(absl::Seconds(10)).ok());
  }
  // Without start_offsets, the group resumes after what it committed.
  auto consumer = log_->NewConsumer({group, {topic}, true, {}});
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  std::vector<ConsumedEvent> read;
  ASSERT_TRUE(WaitFor([&] {
    auto polled = (*consumer)->Poll(10, absl::Milliseconds(200));
    if (polled.ok()) read.insert(read.end(), polled->begin(), polled->end());
    return !read.empty();
  }));
  EXPECT_GE(read.front().offset, 8);
  EXPECT_TRUE((*consumer)->Close(absl::Seconds(10)).ok());
}

TEST_F(KafkaEventLogTest, ConsumerLagMetricFollowsCommittedOffsets) {
  const std::string topic = NewTopic(1);
  std::vector<OutgoingEvent> events;
  for (int i = 0; i < 20; ++i) events.push_back(Event(topic, KeyFor(i), absl::StrCat("v", i)));
  PublishAll(events);
  const std::string group = testing::UniqueName("lag");
  auto consumer = log_->NewConsumer({group, {topic}, true, {}});
  ASSERT_TRUE(consumer.ok()) << consumer.status();

  size_t read = 0;
  ASSERT_TRUE(WaitFor([&] {
    auto polled = (*consumer)->Poll(5 - read, absl::Milliseconds(200));
    if (polled.ok()) read += polled->size();
    return read == 5;
  }));
  ASSERT_TRUE((*consumer)->Commit().ok());
  // Statistics come every second (statistics.interval.ms) and are served by Poll.
  EXPECT_TRUE(WaitFor(
      [&] {
        (*consumer)->Poll(100, absl::Milliseconds(200)).IgnoreError();
        return ConsumerLag(group, topic, 0) == 15;
      },
      absl::Seconds(20)))
      << ConsumerLag(group, topic, 0);
  EXPECT_TRUE((*consumer)->Close(absl::Seconds(10)).ok());
}

// The committed offset of `group` on partition 0 of `topic`, and that partition's end.
std::pair<int64_t, int64_t> CommittedAndEnd(const std::string& bootstrap, const std::string& group,
                                            const std::string& topic) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), errstr, sizeof(errstr));
  rd_kafka_conf_set(conf, "group.id", group.c_str(), errstr, sizeof(errstr));  // not joined
  rd_kafka_t* raw = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  EXPECT_NE(raw, nullptr) << errstr;
  if (raw == nullptr) return {-1, -1};
  rd_kafka_topic_partition_list_t* partitions = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(partitions, topic.c_str(), 0);
  EXPECT_EQ(rd_kafka_committed(raw, partitions, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  const int64_t committed = partitions->elems[0].offset;
  rd_kafka_topic_partition_list_destroy(partitions);
  int64_t low = -1, high = -1;
  EXPECT_EQ(rd_kafka_query_watermark_offsets(raw, topic.c_str(), 0, &low, &high, 10000),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(raw);
  return {committed, high};
}

// A topic written in transactions holds a commit marker after each transaction's records:
// an offset that is no record. Groups that read it all must commit past the last marker,
// or kafka-consumer-groups and stip_consumer_lag show them one offset behind for good.
TEST_F(KafkaEventLogTest, GroupsThatReadATransactionalTopicToItsEndHaveNoLag) {
  const std::string input = NewTopic(1);
  const std::string middle = NewTopic(1);
  const std::string output = NewTopic(1);
  std::vector<OutgoingEvent> events;
  for (int i = 0; i < 50; ++i) events.push_back(Event(input, KeyFor(i), absl::StrCat("v", i)));
  PublishAll(events);
  CopyHandler to_middle(middle);
  CopyHandler to_output(output);
  RunningProcessor writer(*log_, ProcessorFor(input, testing::UniqueName("writer"), "0"),
                          &to_middle);
  const std::string processor_group = testing::UniqueName("reader-processor");
  RunningProcessor reader(*log_, ProcessorFor(middle, processor_group, "0"), &to_output);
  ASSERT_TRUE(WaitFor([&] { return reader.Counters().events_consumed == 50; }));
  EXPECT_TRUE(writer.Stop().ok());
  EXPECT_TRUE(reader.Stop().ok());

  const std::string consumer_group = testing::UniqueName("reader-consumer");
  auto consumer = log_->NewConsumer({consumer_group, {middle}, true, {}});
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  size_t read = 0;
  ASSERT_TRUE(WaitFor([&] {
    auto polled = (*consumer)->Poll(100, absl::Milliseconds(200));
    if (polled.ok()) read += polled->size();
    return read == 50;
  }));
  ASSERT_TRUE((*consumer)->Commit().ok());
  EXPECT_TRUE((*consumer)->Close(absl::Seconds(10)).ok());

  const auto [processor_committed, end] = CommittedAndEnd(bootstrap_, processor_group, middle);
  EXPECT_GT(end, 50) << "the middle topic holds no commit markers: not written in transactions";
  EXPECT_EQ(processor_committed, end) << "the processor's group is behind on " << middle;
  const auto [consumer_committed, end_again] = CommittedAndEnd(bootstrap_, consumer_group, middle);
  EXPECT_EQ(consumer_committed, end_again) << "the consumer's group is behind on " << middle;
}

TEST_F(KafkaEventLogTest, PublishToUnreachableBrokerFailsPromptlyWithUnavailable) {
  EventLogOptions options;
  options.publish_timeout = absl::Seconds(2);
  auto log = OpenKafkaEventLog("127.0.0.1:1", options);
  ASSERT_TRUE(log.ok()) << log.status();
  auto publisher = (*log)->NewPublisher();
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  for (int attempt = 0; attempt < 2; ++attempt) {  // the second on a replaced producer
    const std::vector<OutgoingEvent> events = {Event("stip.filings.v1", KeyFor(1), "a"),
                                               Event("stip.filings.v1", KeyFor(2), "b")};
    const absl::Time start = absl::Now();
    const absl::Status status = (*publisher)->Publish(events, absl::Seconds(30));
    const absl::Duration took = absl::Now() - start;
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
    EXPECT_THAT(Str(status.message()), HasSubstr("timed out"));
    // Bounded by the log's publish timeout (2 s), not the call's 30 s. Half of that is the
    // bound: far from both, whatever the machine's load.
    EXPECT_GE(took, absl::Milliseconds(1500));
    EXPECT_LT(took, absl::Seconds(15));
  }
}

TEST_F(KafkaEventLogTest, PublishToUnknownTopicIsInvalidArgument) {
  auto publisher = log_->NewPublisher();
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  const std::string topic = testing::UniqueName("never-created");
  const absl::Status status =
      (*publisher)->Publish({Event(topic, KeyFor(1), "a")}, absl::Seconds(30));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(Str(status.message()), HasSubstr(topic));
}

TEST_F(KafkaEventLogTest, BadPropertyIsRejectedAtOpen) {
  EventLogOptions options;
  options.kafka_properties["no.such.property"] = "1";
  auto log = OpenKafkaEventLog(bootstrap_, options);
  EXPECT_EQ(log.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Str(log.status().message()), HasSubstr("no.such.property"));
}

TEST_F(KafkaEventLogTest, ProcessorRetriesAFailedBatchAndSkipsNothing) {
  const std::string input = NewTopic(3);
  const std::string output = NewTopic(3);
  std::vector<OutgoingEvent> events;
  for (int i = 0; i < 200; ++i) events.push_back(Event(input, KeyFor(i), absl::StrCat("v", i)));
  PublishAll(events);

  CopyHandler handler(output);
  handler.fail_next_ = 2;
  const std::string group = testing::UniqueName("retry");
  RunningProcessor processor(*log_, ProcessorFor(input, group, "0"), &handler);
  ASSERT_TRUE(WaitFor([&] { return processor.Counters().events_consumed == 200; }));
  const ProcessorCounters counters = processor.Counters();
  EXPECT_EQ(counters.batches_aborted, 2);
  EXPECT_EQ(counters.events_produced, 200);
  EXPECT_EQ(Values(ReadAll(output, events.size())), Values(events));
  // The lag the processor's statistics report is against what its transactions committed.
  EXPECT_TRUE(WaitFor(
      [&] {
        for (int32_t partition = 0; partition < 3; ++partition) {
          if (ConsumerLag(group, input, partition) != 0) return false;
        }
        return true;
      },
      absl::Seconds(20)));
  EXPECT_TRUE(processor.Stop().ok());
}

// A transaction whose outputs reached the broker and was then aborted (the broker refused
// one output as too large): read_committed readers never see its outputs, and the batch is
// processed again rather than skipped.
TEST_F(KafkaEventLogTest, AbortedTransactionOutputsStayInvisible) {
  // Lets the client send what the broker (message.max.bytes about 1 MiB) will refuse: the
  // processor's own limit would otherwise dead-letter the output before producing it.
  options_.kafka_properties["message.max.bytes"] = "4000000";
  options_.max_event_bytes = 4'000'000;
  Open();
  const std::string input = NewTopic(1);
  const std::string output = NewTopic(3);
  std::vector<OutgoingEvent> events;
  for (int i = 0; i < 50; ++i) events.push_back(Event(input, KeyFor(i), absl::StrCat("v", i)));
  PublishAll(events);

  class OversizedOnce final : public BatchHandler {
   public:
    explicit OversizedOnce(std::string output) : output_(std::move(output)) {}
    absl::Status HandleBatch(absl::Span<const ConsumedEvent> batch, BatchOutput& out) override {
      for (const ConsumedEvent& event : batch) out.Emit({output_, event.key, event.value, {}});
      if (first_) out.Emit({output_, "oversized", std::string(2'000'000, 'x'), {}});
      first_ = false;
      return absl::OkStatus();
    }

   private:
    const std::string output_;
    bool first_ = true;
  } handler(output);

  ProcessorOptions options = ProcessorFor(input, testing::UniqueName("abort"), "0");
  options.commit_interval = absl::Milliseconds(500);  // the whole input in one batch
  RunningProcessor processor(*log_, options, &handler);
  ASSERT_TRUE(WaitFor([&] { return processor.Counters().events_consumed == 50; }));
  EXPECT_GE(processor.Counters().batches_aborted, 1);
  EXPECT_EQ(Values(ReadAll(output, events.size())), Values(events));
  EXPECT_TRUE(processor.Stop().ok());

  // The aborted outputs are in the log all the same: a read_uncommitted reader sees them.
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap_.c_str(), errstr, sizeof(errstr));
  rd_kafka_conf_set(conf, "group.id", testing::UniqueName("uncommitted").c_str(), errstr,
                    sizeof(errstr));
  rd_kafka_conf_set(conf, "isolation.level", "read_uncommitted", errstr, sizeof(errstr));
  rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof(errstr));
  rd_kafka_t* raw = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  ASSERT_NE(raw, nullptr) << errstr;
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, output.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(raw, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  int uncommitted = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  while (absl::Now() < deadline && uncommitted <= 50) {
    rd_kafka_message_t* message = rd_kafka_consumer_poll(raw, 200);
    if (message != nullptr) {
      if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) ++uncommitted;
      rd_kafka_message_destroy(message);
    }
  }
  rd_kafka_consumer_close(raw);
  rd_kafka_destroy(raw);
  EXPECT_GT(uncommitted, 50) << "the aborted outputs never reached the broker";
}

TEST_F(KafkaEventLogTest, TwoProcessorsSplitPartitionsAndARebalanceLosesAndDuplicatesNothing) {
  constexpr int kEvents = 4000;
  const std::string input = NewTopic(6);
  const std::string output = NewTopic(6);
  const std::string group = testing::UniqueName("split");
  CopyHandler handler_a(output);
  CopyHandler handler_b(output);
  // Slow enough that both are mid-stream when one leaves.
  handler_a.delay_ = absl::Milliseconds(20);
  handler_b.delay_ = absl::Milliseconds(20);

  std::vector<OutgoingEvent> events;
  for (int i = 0; i < kEvents; ++i) events.push_back(Event(input, KeyFor(i), absl::StrCat("v", i)));
  auto a = std::make_unique<RunningProcessor>(*log_, ProcessorFor(input, group, "a"), &handler_a);
  RunningProcessor b(*log_, ProcessorFor(input, group, "b"), &handler_b);

  // Joined when the test ends, however it ends.
  std::jthread publisher([&] {
    auto publisher = log_->NewPublisher();
    ASSERT_TRUE(publisher.ok());
    for (size_t at = 0; at < events.size(); at += 100) {
      ASSERT_TRUE((*publisher)->Publish({events.data() + at, 100}, absl::Seconds(30)).ok());
      absl::SleepFor(absl::Milliseconds(100));
    }
  });

  // Whoever joins first holds every partition for a moment; once both have some, the group
  // is settled and what each handles from then on is its share.
  ASSERT_TRUE(
      WaitFor([&] { return !handler_a.partitions().empty() && !handler_b.partitions().empty(); }));
  handler_a.ForgetPartitions();
  handler_b.ForgetPartitions();
  ASSERT_TRUE(WaitFor([&] {
    return handler_a.partitions().size() + handler_b.partitions().size() == 6 &&
           !handler_a.partitions().empty() && !handler_b.partitions().empty();
  })) << handler_a.partitions().size()
      << " " << handler_b.partitions().size();
  for (int32_t partition : handler_a.partitions()) {
    EXPECT_FALSE(handler_b.partitions().contains(partition)) << partition;
  }
  // One leaves mid-stream; the other takes its partitions over.
  ASSERT_TRUE(WaitFor([&] { return a->Counters().events_consumed > 200; }));
  handler_b.ForgetPartitions();
  EXPECT_TRUE(a->Stop().ok());
  const ProcessorCounters a_counters = a->Counters();
  a.reset();
  publisher.join();
  ASSERT_TRUE(WaitFor([&] {
    return a_counters.events_consumed + b.Counters().events_consumed >= kEvents;
  })) << a_counters.events_consumed
      << " + " << b.Counters().events_consumed;
  EXPECT_THAT(handler_b.partitions(), SizeIs(6));
  EXPECT_LT(a_counters.events_consumed, kEvents);
  EXPECT_EQ(a_counters.events_consumed + b.Counters().events_consumed, kEvents);
  const std::vector<ConsumedEvent> copied = ReadAll(output, kEvents);
  EXPECT_EQ(copied.size(), static_cast<size_t>(kEvents));
  EXPECT_EQ(Values(copied), Values(events));
  EXPECT_TRUE(b.Stop().ok());
}

TEST_F(KafkaEventLogTest, ProcessorFencedByANewerInstanceFailsNamingItsId) {
  const std::string input = NewTopic(4);
  const std::string output = NewTopic(4);
  const std::string group = testing::UniqueName("fence");
  CopyHandler old_handler(output);
  CopyHandler new_handler(output);
  RunningProcessor old_instance(*log_, ProcessorFor(input, group, "same"), &old_handler);
  auto publisher = log_->NewPublisher();
  ASSERT_TRUE(publisher.ok());
  int next = 0;
  auto publish_some = [&] {
    std::vector<OutgoingEvent> batch;
    for (int i = 0; i < 40; ++i, ++next) batch.push_back(Event(input, KeyFor(next), "x"));
    return (*publisher)->Publish(batch, absl::Seconds(30));
  };
  ASSERT_TRUE(publish_some().ok());
  ASSERT_TRUE(WaitFor([&] { return old_instance.Counters().batches_committed > 0; }));

  RunningProcessor new_instance(*log_, ProcessorFor(input, group, "same"), &new_handler);
  ASSERT_TRUE(WaitFor([&] {
    publish_some().IgnoreError();
    return new_instance.Counters().batches_committed > 0 &&
           old_instance.Counters().batches_aborted > 0;
  }));
  const absl::Status status = old_instance.Join();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(Str(status.message()), HasSubstr(group + "-same"));
  EXPECT_TRUE(new_instance.Stop().ok());
}

TEST_F(KafkaEventLogTest, DeadLettersKeepTheEventAndSayWhyAndWhence) {
  const std::string input = NewTopic(1);
  const std::string output = NewTopic(1);
  std::vector<OutgoingEvent> events;
  for (int i = 0; i < 10; ++i) events.push_back(Event(input, KeyFor(i), absl::StrCat("v", i)));
  PublishAll(events);

  class Rejecting final : public BatchHandler {
   public:
    absl::Status HandleBatch(absl::Span<const ConsumedEvent> batch, BatchOutput& out) override {
      for (const ConsumedEvent& event : batch) out.DeadLetter(event, "cannot decode");
      return absl::OkStatus();
    }
  } handler;
  RunningProcessor processor(*log_, ProcessorFor(input, testing::UniqueName("dlq"), "0"), &handler);
  ASSERT_TRUE(WaitFor([&] { return processor.Counters().events_consumed == 10; }));
  EXPECT_EQ(processor.Counters().events_dead_lettered, 10);
  EXPECT_EQ(processor.Counters().events_produced, 0);
  EXPECT_TRUE(processor.Stop().ok());

  // stip.deadletter.v1 is shared by every run: pick ours out by their source.
  auto reader =
      log_->NewConsumer({testing::UniqueName("dlq-reader"), {std::string(kDeadLetterTopic)}});
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<ConsumedEvent> ours;
  EXPECT_TRUE(WaitFor([&] {
    auto polled = (*reader)->Poll(1000, absl::Milliseconds(200));
    if (!polled.ok()) return false;
    for (ConsumedEvent& event : *polled) {
      if (event.Header(kDeadLetterSourceHeader).value_or("").starts_with(input + "/")) {
        ours.push_back(std::move(event));
      }
    }
    return ours.size() >= 10;
  }));
  EXPECT_TRUE((*reader)->Close(absl::Seconds(10)).ok());
  ASSERT_THAT(ours, SizeIs(10));
  for (const ConsumedEvent& event : ours) {
    EXPECT_EQ(event.Header(kDeadLetterReasonHeader).value_or(""), "cannot decode");
    EXPECT_EQ(event.Header("ce_id").value_or(""), event.value);  // its own headers kept
  }
  EXPECT_EQ(Values(ours), Values(events));
}

TEST_F(KafkaEventLogTest, StopFinishesTheBatchInHand) {
  const std::string input = NewTopic(1);
  const std::string output = NewTopic(1);
  std::vector<OutgoingEvent> events;
  for (int i = 0; i < 30; ++i) events.push_back(Event(input, KeyFor(i), absl::StrCat("v", i)));
  PublishAll(events);
  CopyHandler handler(output);
  ProcessorOptions options = ProcessorFor(input, testing::UniqueName("stop"), "0");
  options.commit_interval = absl::Seconds(30);  // the batch closes only because of Stop
  RunningProcessor processor(*log_, options, &handler);
  // Joined the group and gathering, however long joining takes on a loaded machine.
  const absl::Time give_up = absl::Now() + absl::Seconds(120);
  while (processor.Counters().events_in_hand < 30 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(processor.Counters().events_in_hand, 30);
  EXPECT_EQ(handler.calls_, 0);
  const absl::Time start = absl::Now();
  EXPECT_TRUE(processor.Stop().ok());
  // Well before the 30 s commit interval would have closed the batch.
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  EXPECT_EQ(processor.Counters().events_consumed, 30);
  EXPECT_EQ(Values(ReadAll(output, events.size())), Values(events));
}

// Client-side faults on librdkafka's mock cluster: a broker that goes down and comes back.
TEST(KafkaMockClusterTest, PublisherRecoversWhenTheBrokerComesBack) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // Only hosts the mock cluster: quiet about having no bootstrap servers.
  rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr));
  rd_kafka_t* owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  ASSERT_NE(owner, nullptr) << errstr;
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(owner, 1);
  ASSERT_NE(cluster, nullptr);
  ASSERT_EQ(rd_kafka_mock_topic_create(cluster, "mock-topic", 3, 1), RD_KAFKA_RESP_ERR_NO_ERROR);

  EventLogOptions options;
  options.publish_timeout = absl::Seconds(2);
  auto log = OpenKafkaEventLog(rd_kafka_mock_cluster_bootstraps(cluster), options);
  ASSERT_TRUE(log.ok()) << log.status();
  auto publisher = (*log)->NewPublisher();
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  const std::vector<OutgoingEvent> events = {Event("mock-topic", KeyFor(1), "a")};
  EXPECT_TRUE((*publisher)->Publish(events, absl::Seconds(10)).ok());

  rd_kafka_mock_broker_set_down(cluster, 1);
  EXPECT_EQ((*publisher)->Publish(events, absl::Seconds(10)).code(),
            absl::StatusCode::kUnavailable);
  rd_kafka_mock_broker_set_up(cluster, 1);
  EXPECT_TRUE(WaitFor([&] { return (*publisher)->Publish(events, absl::Seconds(10)).ok(); },
                      absl::Seconds(30)));
  publisher->reset();
  log->reset();
  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(owner);
}

// A fatal transactional error that is not fencing: the processor replaces its producer,
// rewinds and carries on. (The 2.0.x mock keeps no transaction markers and drops offsets
// committed in transactions, so only the recovery is checked here, not exactly-once.)
TEST(KafkaMockClusterTest, ProcessorReplacesItsProducerAfterAFatalError) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr));
  rd_kafka_t* owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  ASSERT_NE(owner, nullptr) << errstr;
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(owner, 1);
  ASSERT_NE(cluster, nullptr);
  for (const char* topic : {"in", "out", "stip.deadletter.v1"}) {
    ASSERT_EQ(rd_kafka_mock_topic_create(cluster, topic, 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  auto log = OpenKafkaEventLog(rd_kafka_mock_cluster_bootstraps(cluster), {});
  ASSERT_TRUE(log.ok()) << log.status();
  {
    auto publisher = (*log)->NewPublisher();
    ASSERT_TRUE(publisher.ok());
    std::vector<OutgoingEvent> events;
    for (int i = 0; i < 20; ++i) events.push_back(Event("in", KeyFor(i), absl::StrCat("v", i)));
    ASSERT_TRUE((*publisher)->Publish(events, absl::Seconds(10)).ok());
  }
  constexpr int16_t kEndTxn = 26;  // Kafka's ApiKey
  rd_kafka_mock_push_request_errors(cluster, kEndTxn, 1, RD_KAFKA_RESP_ERR_INVALID_TXN_STATE);

  CopyHandler handler("out");
  ProcessorOptions options;
  options.group = "mock-group";
  options.input_topics = {"in"};
  options.retry_backoff = absl::Milliseconds(100);
  {
    RunningProcessor processor(**log, options, &handler);
    EXPECT_TRUE(WaitFor([&] {
      const ProcessorCounters counters = processor.Counters();
      return counters.batches_aborted >= 1 && counters.events_consumed >= 20;
    })) << processor.Counters().batches_aborted;
    EXPECT_TRUE(processor.Stop().ok());
  }
  log->reset();
  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(owner);
}

}  // namespace
}  // namespace stip
