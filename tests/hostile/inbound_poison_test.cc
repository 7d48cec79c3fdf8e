// Hostile input on intake's Kafka entry (issue 13, finding 2: no event can stop a
// partition). Upstream publishes, onto the inbound topic of a running inbound entry
// (InboundFilingHandler on an ExactlyOnceProcessor, as stip-intake runs it), a JSON filing
// of about 600 KB (its rejection used to carry it twice, about 1.2 MB, over the topics'
// 1 MiB limit) and a 1,040,000-byte garbage message (its dead letter used to be over the
// producer's limit), then valid filings on every partition. Before the fix, each made the
// produce fail with "Message size too large" and the whole batch (every partition of the
// instance) was retried forever. Now: the filing gets a RejectedFiling with its violation,
// its size, its SHA-256 and the first 4 KiB; the garbage a dead letter cut to the limit and
// marked; the entry keeps running and every valid filing, on every partition and after the
// bad ones on theirs, is accepted. On the real broker (STIP_TEST_KAFKA) and on SQLite.
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "services/common/event_log.h"
#include "services/common/grpc_server.h"
#include "services/common/rejected_filing.h"
#include "services/common/shutdown.h"
#include "services/intake/filing_intake.h"
#include "services/intake/inbound_handler.h"
#include "services/intake/registry_client.h"
#include "services/intake/uscc.h"
#include "stip/v1/registry_service.grpc.pb.h"
#include "tests/support/enroll_everyone_registry.h"
#include "tests/support/test_environment.h"

namespace stip::intake {
namespace {

using ::testing::IsEmpty;

constexpr const char* kPark = testing::EnrollEveryoneRegistry::kParkId;
constexpr int32_t kPartitions = 3;

std::string UsccFor(int index) {
  const std::string first17 = absl::StrFormat("91650100MC%07d", index);
  return first17 + *UsccCheckCharacter(first17);
}

v1::AnnualFiling ValidFiling(const std::string& uscc) {
  v1::AnnualFiling filing;
  filing.set_uscc(uscc);
  filing.set_park_id(kPark);
  filing.set_fiscal_year(2024);
  filing.set_revision(1);
  filing.set_gross_revenue_fen(100'000'000);
  filing.set_rd_expenditure_fen(5'000'000);
  filing.set_total_employees(100);
  filing.set_tertiary_educated_employees(40);
  filing.set_rd_employees(15);
  return filing;
}

OutgoingEvent Inbound(const std::string& topic, const std::string& key, std::string value,
                      std::string_view content_type, const std::string& id) {
  return {
      topic, key, std::move(value), {{"ce_id", id}, {"content-type", std::string(content_type)}}};
}

class InboundPoisonTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const bool kafka = GetParam() == "kafka";
    const std::string url = kafka ? absl::StrCat("kafka://", testing::KafkaBootstrap())
                                  : absl::StrCat("sqlite://", (dir_.path() / "ev.db").string());
    // Intake's log, with the defaults stip-intake runs with.
    auto log = OpenEventLog(url);
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = std::move(*log);
    // Upstream's: a producer that sends what the topic takes (1 MiB), beyond our own limit.
    EventLogOptions upstream_options;
    upstream_options.kafka_properties["message.max.bytes"] = "2000000";
    upstream_options.max_event_bytes = 2'000'000;
    auto upstream = OpenEventLog(url, upstream_options);
    ASSERT_TRUE(upstream.ok()) << upstream.status();
    upstream_ = std::move(*upstream);

    topics_.inbound = testing::UniqueName("poison-inbound");
    topics_.accepted = testing::UniqueName("poison-accepted");
    topics_.rejected = testing::UniqueName("poison-rejected");
    const std::vector<TopicSpec> specs = {{topics_.inbound, kPartitions},
                                          {topics_.accepted, kPartitions},
                                          {topics_.rejected, kPartitions},
                                          {std::string(kDeadLetterTopic), 3}};
    ASSERT_TRUE(log_->EnsureTopics(specs).ok());
    auto publisher = upstream_->NewPublisher();
    ASSERT_TRUE(publisher.ok()) << publisher.status();
    upstream_publisher_ = std::move(*publisher);

    GrpcServerOptions options;
    options.listen_address = "127.0.0.1:0";
    auto server = StartGrpcServer(options, {&fake_registry_});
    ASSERT_TRUE(server.ok()) << server.status();
    registry_server_ = std::move(*server);
  }

  // Events of `topic` until `count` are read or 120 s have passed; for the shared
  // dead-letter topic only those from `dead_letter_source`.
  std::vector<ConsumedEvent> Read(const std::string& topic, size_t count,
                                  const std::string& dead_letter_source = "") {
    std::vector<ConsumedEvent> events;
    auto consumer = log_->NewConsumer({testing::UniqueName("reader"), {topic}});
    EXPECT_TRUE(consumer.ok()) << consumer.status();
    if (!consumer.ok()) return events;
    const absl::Time deadline = absl::Now() + absl::Seconds(120);
    while (events.size() < count && absl::Now() < deadline) {
      auto polled = (*consumer)->Poll(1000, absl::Milliseconds(200));
      EXPECT_TRUE(polled.ok()) << polled.status();
      if (!polled.ok()) break;
      for (ConsumedEvent& event : *polled) {
        if (!dead_letter_source.empty() &&
            !std::string(event.Header(kDeadLetterSourceHeader).value_or(""))
                 .starts_with(dead_letter_source)) {
          continue;
        }
        events.push_back(std::move(event));
      }
    }
    (*consumer)->Close(absl::Seconds(5)).IgnoreError();
    return events;
  }

  testing::TempDir dir_;
  std::unique_ptr<EventLog> log_;
  std::unique_ptr<EventLog> upstream_;
  std::unique_ptr<EventPublisher> upstream_publisher_;
  InboundTopics topics_;
  testing::EnrollEveryoneRegistry fake_registry_;
  std::unique_ptr<GrpcServer> registry_server_;
};

TEST_P(InboundPoisonTest, OversizedFilingAndGarbageAreRefusedAndEveryPartitionKeepsFlowing) {
  RegistryClient registry(
      MakeChannel(absl::StrCat("127.0.0.1:", registry_server_->port()), GrpcLimits{}),
      {.call_timeout = absl::Seconds(5)});
  InboundFilingHandler handler(&registry, topics_);
  ProcessorOptions options;
  options.group = testing::UniqueName("poison");
  options.input_topics = {topics_.inbound};
  options.instance_id = testing::UniqueName("i");
  auto processor = log_->NewProcessor(options, &handler);
  ASSERT_TRUE(processor.ok()) << processor.status();

  // The poison: a filing whose enterprise name alone is 600,000 characters, as JSON...
  const std::string big_uscc = UsccFor(1);
  v1::AnnualFiling big = ValidFiling(big_uscc);
  big.set_enterprise_name(std::string(600'000, 'N'));
  std::string big_json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(big, &big_json).ok());
  ASSERT_GT(big_json.size(), 600'000u);
  // ...and 1,040,000 bytes that are no protobuf at all.
  const std::string garbage_key = UsccFor(2);
  const std::string garbage(1'040'000, '\xff');
  ASSERT_TRUE(
      upstream_publisher_
          ->Publish({Inbound(topics_.inbound, big_uscc, big_json, kContentTypeJson, "poison-json"),
                     Inbound(topics_.inbound, garbage_key, garbage, kContentTypeProtobuf,
                             "poison-garbage")},
                    absl::Seconds(30))
          .ok());

  // Then valid filings, at least two on every partition: after the poison on its own.
  std::vector<OutgoingEvent> valid;
  std::set<std::string> expected;
  std::map<int32_t, int> per_partition;
  for (int i = 10; valid.size() < 12 || per_partition.size() < static_cast<size_t>(kPartitions);
       ++i) {
    const std::string uscc = UsccFor(i);
    const int32_t partition = PartitionForKey(uscc, kPartitions);
    if (per_partition[partition] >= 4) continue;
    ++per_partition[partition];
    valid.push_back(Inbound(topics_.inbound, uscc, ValidFiling(uscc).SerializeAsString(),
                            kContentTypeProtobuf, absl::StrCat("valid-", i)));
    expected.insert(absl::StrCat(uscc, "/2024/1"));
  }
  ASSERT_TRUE(upstream_publisher_->Publish(valid, absl::Seconds(30)).ok());

  ProcessorThread thread("inbound", processor->get());
  const std::vector<ConsumedEvent> accepted = Read(topics_.accepted, expected.size());
  const std::vector<ConsumedEvent> rejected = Read(topics_.rejected, 1);
  const std::vector<ConsumedEvent> dead = Read(std::string(kDeadLetterTopic), 1, topics_.inbound);
  EXPECT_TRUE(thread.running()) << "the inbound entry stopped";
  EXPECT_EQ((*processor)->Counters().batches_aborted_in_a_row, 0);
  thread.Stop();
  EXPECT_TRUE(thread.Wait(absl::Now() + absl::Seconds(30)).ok());

  // Every valid filing went through, on every partition.
  std::set<std::string> accepted_ids;
  for (const ConsumedEvent& event : accepted) {
    v1::AcceptedFiling filing;
    ASSERT_TRUE(filing.ParseFromString(event.value));
    accepted_ids.insert(filing.filing_id());
  }
  EXPECT_EQ(accepted_ids, expected);

  // The oversized filing: refused with its reason, carried once, bounded.
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_LE(rejected[0].value.size(), kDefaultMaxEventBytes);
  v1::RejectedFiling refusal;
  ASSERT_TRUE(refusal.ParseFromString(rejected[0].value));
  ASSERT_GE(refusal.violations_size(), 1);
  EXPECT_EQ(refusal.violations(0).field(), "filing.enterprise_name");
  EXPECT_EQ(refusal.violations(0).reason(), "TEXT_TOO_LONG");
  EXPECT_EQ(refusal.filing().uscc(), big_uscc);
  EXPECT_EQ(refusal.original_size(), static_cast<int64_t>(big_json.size()));
  EXPECT_EQ(refusal.original_sha256(), Sha256Hex(big_json));
  EXPECT_EQ(refusal.original_payload(), big_json.substr(0, kRejectedPayloadPrefixBytes));
  EXPECT_EQ(refusal.original_content_type(), "application/json");

  // The garbage: a dead letter with its reason, cut to the limit and marked so.
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].key, garbage_key);
  EXPECT_EQ(dead[0].Header(kDeadLetterReasonHeader).value_or(""),
            "not a protobuf stip.v1.AnnualFiling");
  EXPECT_EQ(dead[0].Header(kDeadLetterTruncatedHeader).value_or(""), "true");
  const size_t garbage_bytes = garbage_key.size() + garbage.size() +
                               std::string("ce_idpoison-garbagecontent-type").size() +
                               kContentTypeProtobuf.size();
  EXPECT_EQ(dead[0].Header(kDeadLetterOriginalSizeHeader).value_or(""),
            std::to_string(garbage_bytes));
  EXPECT_LE(dead[0].value.size(), kDefaultMaxEventBytes);
  EXPECT_EQ(dead[0].value, garbage.substr(0, dead[0].value.size()));
}

INSTANTIATE_TEST_SUITE_P(Backends, InboundPoisonTest, ::testing::Values("sqlite", "kafka"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace stip::intake
