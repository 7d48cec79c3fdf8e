// Issue 13, finding 2 (no event can stop a partition), without a broker: dead letters cut
// to the event limit and marked, rejections that carry a digest and a bounded prefix rather
// than the payload twice, publishers that refuse an oversized event before writing
// anything, a processor that dead-letters an oversized output instead of failing its batch,
// and readiness that turns NOT_SERVING while a processor's batches keep aborting (and
// SERVING again once they commit). The same on the real Kafka broker through intake's
// inbound entry: tests/hostile/inbound_poison_test.cc.
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/dependency_watch.h"
#include "services/common/event.h"
#include "services/common/event_log.h"
#include "services/common/health.h"
#include "services/common/metrics.h"
#include "services/common/rejected_filing.h"
#include "services/common/shutdown.h"
#include "tests/support/test_environment.h"

namespace stip {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

template <typename Predicate>
bool Eventually(Predicate predicate, absl::Duration timeout = absl::Seconds(60)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!predicate()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

std::string HeaderOf(const OutgoingEvent& event, std::string_view name) {
  for (const auto& [key, value] : event.headers) {
    if (key == name) return value;
  }
  return "";
}

ConsumedEvent Consumed(std::string value, std::string key = "k") {
  ConsumedEvent event;
  event.topic = "stip.filings.inbound.v1";
  event.partition = 2;
  event.offset = 1044;
  event.key = std::move(key);
  event.value = std::move(value);
  event.headers = {{"ce_id", "in-1"}, {"content-type", "application/octet-stream"}};
  return event;
}

TEST(DeadLetterForTest, CutsAnOversizedEventToTheLimitAndSaysSo) {
  const ConsumedEvent garbage = Consumed(std::string(1'040'000, '\x7f'));
  const OutgoingEvent dead = DeadLetterFor(garbage, "not a protobuf stip.v1.AnnualFiling");
  EXPECT_EQ(dead.topic, kDeadLetterTopic);
  EXPECT_LE(EventBytes(dead), kDefaultMaxEventBytes);
  EXPECT_EQ(HeaderOf(dead, kDeadLetterTruncatedHeader), "true");
  const size_t original = 1 + 1'040'000 + std::string("ce_idin-1content-type").size() +
                          std::string("application/octet-stream").size();
  EXPECT_EQ(HeaderOf(dead, kDeadLetterOriginalSizeHeader), std::to_string(original));
  EXPECT_EQ(HeaderOf(dead, kDeadLetterReasonHeader), "not a protobuf stip.v1.AnnualFiling");
  EXPECT_EQ(HeaderOf(dead, kDeadLetterSourceHeader), "stip.filings.inbound.v1/2@1044");
  EXPECT_EQ(HeaderOf(dead, "ce_id"), "in-1");  // the original headers that fit stay
  EXPECT_EQ(dead.key, "k");
  EXPECT_GT(dead.value.size(), 900'000u);  // as much of the value as fits
  EXPECT_EQ(dead.value, garbage.value.substr(0, dead.value.size()));

  // A smaller limit (an operator's) is kept too, and an oversized key is cut as well.
  const OutgoingEvent small = DeadLetterFor(Consumed("v", std::string(10'000, 'k')), "why", 4096);
  EXPECT_LE(EventBytes(small), 4096u);
  EXPECT_EQ(HeaderOf(small, kDeadLetterTruncatedHeader), "true");
}

TEST(DeadLetterForTest, LeavesAnEventWithinTheLimitWhole) {
  const ConsumedEvent event = Consumed("\xff\xff not a filing");
  const OutgoingEvent dead = DeadLetterFor(event, "not a protobuf stip.v1.AnnualFiling");
  EXPECT_EQ(dead.value, event.value);
  EXPECT_EQ(dead.key, event.key);
  EXPECT_EQ(HeaderOf(dead, kDeadLetterTruncatedHeader), "");
  EXPECT_EQ(HeaderOf(dead, "content-type"), "application/octet-stream");
}

TEST(RejectedFilingTest, CarriesADigestTheSizeAndABoundedPrefixNotThePayloadTwice) {
  const std::string payload(600'000, '{');
  v1::RejectedFiling rejected;
  SetOriginalPayload(rejected, payload, "application/json");
  EXPECT_EQ(rejected.original_payload(), payload.substr(0, kRejectedPayloadPrefixBytes));
  EXPECT_EQ(rejected.original_size(), 600'000);
  EXPECT_EQ(rejected.original_sha256(), Sha256Hex(payload));
  EXPECT_EQ(rejected.original_content_type(), "application/json");
  // SHA-256 of "abc" (FIPS 180-2, appendix B.1).
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

  v1::RejectedFiling small;
  SetOriginalPayload(small, "{}", "application/json");
  EXPECT_EQ(small.original_payload(), "{}");  // whole when it is small
  EXPECT_EQ(small.original_size(), 2);
}

TEST(RejectedFilingTest, LeavesOutAFilingTooLargeToCarry) {
  v1::RejectedFiling rejected;
  rejected.mutable_filing()->set_enterprise_name(std::string(2'000'000, 'x'));
  rejected.add_violations()->set_reason("FIELD_TOO_LONG");
  BoundRejectedFiling(rejected, kDefaultMaxEventBytes);
  EXPECT_FALSE(rejected.has_filing());
  EXPECT_TRUE(rejected.filing_omitted());
  EXPECT_EQ(rejected.violations_size(), 1);

  v1::RejectedFiling fits;
  fits.mutable_filing()->set_uscc("91650100MA0000001X");
  BoundRejectedFiling(fits, kDefaultMaxEventBytes);
  EXPECT_TRUE(fits.has_filing());
  EXPECT_FALSE(fits.filing_omitted());
}

class SqliteLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto log = OpenEventLog(absl::StrCat("sqlite://", (dir_.path() / "ev.db").string()));
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = std::move(*log);
    const std::vector<TopicSpec> topics = {
        {input_, 2}, {output_, 2}, {std::string(kDeadLetterTopic), 1}};
    ASSERT_TRUE(log_->EnsureTopics(topics).ok());
    auto publisher = log_->NewPublisher();
    ASSERT_TRUE(publisher.ok()) << publisher.status();
    publisher_ = std::move(*publisher);
  }

  std::vector<ConsumedEvent> Read(const std::string& topic, size_t count) {
    auto consumer = log_->NewConsumer({testing::UniqueName("reader"), {topic}});
    EXPECT_TRUE(consumer.ok()) << consumer.status();
    if (!consumer.ok()) return {};
    std::vector<ConsumedEvent> events;
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (events.size() < count && absl::Now() < deadline) {
      auto polled = (*consumer)->Poll(100, absl::Milliseconds(100));
      EXPECT_TRUE(polled.ok()) << polled.status();
      if (!polled.ok()) break;
      for (ConsumedEvent& event : *polled) events.push_back(std::move(event));
    }
    (*consumer)->Close(absl::Seconds(5)).IgnoreError();
    return events;
  }

  testing::TempDir dir_;
  const std::string input_ = "limits-in";
  const std::string output_ = "limits-out";
  std::unique_ptr<EventLog> log_;
  std::unique_ptr<EventPublisher> publisher_;
};

TEST_F(SqliteLimitsTest, PublishRefusesAnOversizedEventBeforeWritingAnyOfTheCall) {
  EXPECT_EQ(publisher_->MaxEventBytes(), kDefaultMaxEventBytes);
  const std::vector<OutgoingEvent> events = {{input_, "a", "small", {}},
                                             {input_, "b", std::string(1'040'000, 'x'), {}}};
  const absl::Status status = publisher_->Publish(events, absl::Seconds(10));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("1040001 bytes"));
  EXPECT_THAT(status.message(), HasSubstr("limit of 1000000 bytes"));
  ASSERT_TRUE(publisher_->Publish({{input_, "c", "after", {}}}, absl::Seconds(10)).ok());
  const std::vector<ConsumedEvent> read = Read(input_, 1);
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(read[0].value, "after");  // nothing of the refused call
}

// Copies each input to the output; the one whose value is "big" becomes an output over the
// event limit.
class OversizedOutputHandler final : public BatchHandler {
 public:
  explicit OversizedOutputHandler(std::string output) : output_(std::move(output)) {}
  absl::Status HandleBatch(absl::Span<const ConsumedEvent> batch, BatchOutput& out) override {
    for (const ConsumedEvent& event : batch) {
      out.Emit({output_,
                event.key,
                event.value == "big" ? std::string(1'200'000, 'b') : event.value,
                {{"ce_id", event.value}}});
    }
    return absl::OkStatus();
  }

 private:
  const std::string output_;
};

TEST_F(SqliteLimitsTest, AnOversizedOutputIsDeadLetteredAndTheBatchCommits) {
  ASSERT_TRUE(
      publisher_
          ->Publish(
              {{input_, "k1", "one", {}}, {input_, "k2", "big", {}}, {input_, "k3", "three", {}}},
              absl::Seconds(10))
          .ok());
  OversizedOutputHandler handler(output_);
  ProcessorOptions options;
  options.group = testing::UniqueName("limits");
  options.input_topics = {input_};
  auto processor = log_->NewProcessor(options, &handler);
  ASSERT_TRUE(processor.ok()) << processor.status();
  ProcessorThread thread("limits", processor->get());
  ASSERT_TRUE(Eventually([&] { return (*processor)->Counters().events_consumed == 3; }));
  thread.Stop();
  ASSERT_TRUE(thread.Wait(absl::Now() + absl::Seconds(30)).ok());
  EXPECT_EQ((*processor)->Counters().batches_aborted, 0);
  EXPECT_EQ((*processor)->Counters().events_dead_lettered, 1);

  std::vector<std::string> values;
  for (const ConsumedEvent& event : Read(output_, 2)) values.push_back(event.value);
  EXPECT_THAT(values, ::testing::UnorderedElementsAre("one", "three"));
  const std::vector<ConsumedEvent> dead = Read(std::string(kDeadLetterTopic), 1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].key, "k2");
  EXPECT_LE(dead[0].value.size() + dead[0].key.size(), kDefaultMaxEventBytes);
  EXPECT_EQ(dead[0].Header(kDeadLetterTruncatedHeader).value_or(""), "true");
  EXPECT_EQ(dead[0].Header(kDeadLetterOriginalSizeHeader).value_or(""),
            std::to_string(2 + 1'200'000 + 5 + 3));
  EXPECT_THAT(std::string(dead[0].Header(kDeadLetterReasonHeader).value_or("")),
              HasSubstr(absl::StrCat("for topic ", output_, " is over the event log's limit")));
}

// Fails every batch until told otherwise.
class FailingHandler final : public BatchHandler {
 public:
  absl::Status HandleBatch(absl::Span<const ConsumedEvent>, BatchOutput&) override {
    if (failing) return absl::UnavailableError("the registry does not answer");
    return absl::OkStatus();
  }
  std::atomic<bool> failing{true};
};

TEST_F(SqliteLimitsTest, AbortedBatchesInARowTurnReadinessNotServingUntilOneCommits) {
  ASSERT_TRUE(publisher_->Publish({{input_, "k1", "one", {}}}, absl::Seconds(10)).ok());
  FailingHandler handler;
  ProcessorOptions options;
  options.group = testing::UniqueName("stuck");
  options.input_topics = {input_};
  options.retry_backoff = absl::Milliseconds(10);
  auto processor = log_->NewProcessor(options, &handler);
  ASSERT_TRUE(processor.ok()) << processor.status();
  HealthReporter health;
  DependencyWatch watch(
      &health,
      {ProgressCheck("inbound", "the inbound entry's batch",
                     [&] { return (*processor)->Counters().batches_aborted_in_a_row; })},
      absl::Milliseconds(50));
  ProcessorThread watch_thread("dependencies", &watch);
  ProcessorThread thread("stuck", processor->get());

  ASSERT_TRUE(Eventually([&] { return !health.serving(); }));
  EXPECT_THAT(health.NotServingReasons(), ::testing::ElementsAre("inbound"));
  EXPECT_GE(GetEventLogMetrics().batches_aborted_in_a_row.Add({{"group", options.group}}).Value(),
            5);

  handler.failing = false;
  ASSERT_TRUE(Eventually([&] { return health.serving(); }));
  EXPECT_THAT(health.NotServingReasons(), IsEmpty());
  EXPECT_EQ((*processor)->Counters().batches_aborted_in_a_row, 0);
  EXPECT_EQ(GetEventLogMetrics().batches_aborted_in_a_row.Add({{"group", options.group}}).Value(),
            0);
  thread.Stop();
  EXPECT_TRUE(thread.Wait(absl::Now() + absl::Seconds(30)).ok());
}

}  // namespace
}  // namespace stip
