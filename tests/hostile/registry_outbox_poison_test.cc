// Hostile input on the registry's conflict path and its outbox relay (issue 13, finding 2):
// a second, different filing with a known id, of about 900 KB, is reported on
// stip.filings.rejected.v1; its rejection used to carry it twice (the filing and the
// AcceptedFiling bytes, about 1.8 MB), and an undecodable 1,040,000-byte event's dead letter
// was larger than the producer's limit. Either wedged the relay on the real broker: the
// publish failed with "Message size too large" and was retried forever, holding back every
// event behind it. Now both are relayed, bounded, and the roster event behind them too.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/event_log.h"
#include "services/common/rejected_filing.h"
#include "services/common/shutdown.h"
#include "services/registry/change_notifier.h"
#include "services/registry/outbox_relay.h"
#include "services/registry/registry_store.h"
#include "tests/support/filings.h"
#include "tests/support/test_environment.h"

namespace stip::registry {
namespace {

using ::testing::HasSubstr;

template <typename Predicate>
bool Eventually(Predicate predicate, absl::Duration timeout = absl::Seconds(120)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!predicate()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

v1::AcceptedFiling Accepted(const std::string& uscc, const std::string& name) {
  v1::AcceptedFiling accepted;
  accepted.set_filing_id(absl::StrCat(uscc, "/2024/1"));
  accepted.set_region(v1::ECONOMIC_REGION_WESTERN);
  v1::AnnualFiling* filing = accepted.mutable_filing();
  *filing = testing::QualifyingFiling(uscc);
  filing->set_enterprise_name(name);
  accepted.set_content_sha256(Sha256Hex(filing->SerializeAsString()));
  return accepted;
}

TEST(RegistryOutboxPoisonTest, OversizedConflictAndDeadLetterAreRelayedBoundedOnKafka) {
  testing::TempDir dir;
  auto store = RegistryStore::Open(absl::StrCat("sqlite://", dir.path().string(), "/reg.db"));
  ASSERT_TRUE(store.ok()) << store.status();
  auto log = OpenEventLog(absl::StrCat("kafka://", testing::KafkaBootstrap()));
  ASSERT_TRUE(log.ok()) << log.status();
  const std::vector<TopicSpec> topics = {{std::string(kFilingsRejectedTopic), 3},
                                         {std::string(kDeadLetterTopic), 3}};
  ASSERT_TRUE((*log)->EnsureTopics(topics).ok());
  auto publisher = (*log)->NewPublisher();
  ASSERT_TRUE(publisher.ok()) << publisher.status();

  // A filing, then another with the same id and a 900,000-character name: a conflict.
  const std::string uscc = "91650100MD0000001X";
  const std::string source_topic = testing::UniqueName("poison-filings");
  const TopicPartition position{source_topic, 0};
  const v1::AcceptedFiling conflicting = Accepted(uscc, std::string(900'000, 'N'));
  ConsumedEvent garbage;
  garbage.topic = source_topic;
  garbage.partition = 0;
  garbage.offset = 2;
  garbage.key = uscc;
  garbage.value = std::string(1'040'000, '\xff');
  std::vector<PositionedEvent> batch = {
      {position, 0, Accepted(uscc, "Xinjiang Solar Co.")},
      {position, 1, conflicting},
      {position, 2, DeadLetter{garbage, "not a stip.v1.AcceptedFiling in protobuf encoding"}}};
  auto counts = (*store)->Apply("poison", batch);
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->filing_conflicts, 1);
  auto backlog = (*store)->OutboxBacklog();
  ASSERT_TRUE(backlog.ok());
  ASSERT_GE(*backlog, 2);

  ChangeNotifier notifier;
  OutboxRelay relay(store->get(), publisher->get(), &notifier,
                    {.retry_backoff = absl::Milliseconds(50)});
  {
    ProcessorThread thread("outbox", &relay);
    ASSERT_TRUE(Eventually([&] {
      auto left = (*store)->OutboxBacklog();
      return left.ok() && *left == 0;
    })) << "the relay is stuck: "
        << relay.FailuresInARow() << " failures in a row";
    EXPECT_TRUE(thread.running());
    EXPECT_EQ(relay.FailuresInARow(), 0);
  }

  // The conflict's rejection: the filing once, the payload as a digest and a prefix.
  auto reader = (*log)->NewConsumer(
      {testing::UniqueName("reader"), {std::string(kFilingsRejectedTopic)}, true});
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<ConsumedEvent> rejected;
  ASSERT_TRUE(Eventually([&] {
    auto polled = (*reader)->Poll(1000, absl::Milliseconds(200));
    if (polled.ok()) {
      for (ConsumedEvent& event : *polled) {
        if (event.key == uscc) rejected.push_back(std::move(event));
      }
    }
    return !rejected.empty();
  }));
  (*reader)->Close(absl::Seconds(5)).IgnoreError();
  v1::RejectedFiling refusal;
  ASSERT_TRUE(refusal.ParseFromString(rejected.front().value));
  EXPECT_EQ(refusal.violations(0).reason(), "FILING_CONFLICT");
  EXPECT_EQ(refusal.original_size(), static_cast<int64_t>(conflicting.ByteSizeLong()));
  EXPECT_EQ(refusal.original_sha256(), Sha256Hex(conflicting.SerializeAsString()));
  EXPECT_EQ(refusal.original_payload().size(), kRejectedPayloadPrefixBytes);
  EXPECT_LE(rejected.front().value.size(), kDefaultMaxEventBytes);

  // The undecodable event's dead letter: cut to the limit, marked, with its reason.
  auto dead_reader =
      (*log)->NewConsumer({testing::UniqueName("reader"), {std::string(kDeadLetterTopic)}, true});
  ASSERT_TRUE(dead_reader.ok()) << dead_reader.status();
  std::vector<ConsumedEvent> dead;
  ASSERT_TRUE(Eventually([&] {
    auto polled = (*dead_reader)->Poll(1000, absl::Milliseconds(200));
    if (polled.ok()) {
      for (ConsumedEvent& event : *polled) {
        if (std::string(event.Header(kDeadLetterSourceHeader).value_or(""))
                .starts_with(source_topic)) {
          dead.push_back(std::move(event));
        }
      }
    }
    return !dead.empty();
  }));
  (*dead_reader)->Close(absl::Seconds(5)).IgnoreError();
  EXPECT_EQ(dead.front().Header(kDeadLetterTruncatedHeader).value_or(""), "true");
  EXPECT_THAT(std::string(dead.front().Header(kDeadLetterReasonHeader).value_or("")),
              HasSubstr("not a stip.v1.AcceptedFiling"));
  EXPECT_EQ(dead.front().Header(kDeadLetterOriginalSizeHeader).value_or(""),
            std::to_string(uscc.size() + garbage.value.size()));
}

}  // namespace
}  // namespace stip::registry
