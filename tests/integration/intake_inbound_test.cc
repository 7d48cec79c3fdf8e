// The Kafka entry of intake (InboundFilingHandler on an ExactlyOnceProcessor), on the real
// broker and on SQLite: a mix of valid protobuf, valid JSON, invalid and undecodable inbound
// events on a topic of the test's own ends with each event in exactly one of accepted
// (AcceptedFiling), rejected (RejectedFiling with its violations, original payload and
// position) and dead letters. Then the registry goes away: a batch fails and is retried,
// never rejected, and goes through once the registry is back.
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "services/common/event_log.h"
#include "services/common/grpc_server.h"
#include "services/common/shutdown.h"
#include "services/intake/filing_intake.h"
#include "services/intake/inbound_handler.h"
#include "services/intake/registry_client.h"
#include "services/intake/uscc.h"
#include "stip/v1/registry_service.grpc.pb.h"
#include "tests/support/test_environment.h"

namespace stip::intake {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

constexpr char kPark[] = "urumqi-hnz";

std::string UsccFor(int index) {
  const std::string first17 = absl::StrFormat("91650100MB%07d", index);
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

// Parks and enrolled enterprises; nothing recorded.
class FakeRegistry final : public v1::RegistryService::Service {
 public:
  void Enroll(const std::string& uscc) {
    absl::MutexLock lock(&mu_);
    enrolled_.insert(uscc);
  }
  grpc::Status ListParks(grpc::ServerContext*, const v1::ListParksRequest*,
                         v1::ListParksResponse* response) override {
    v1::Park* park = response->add_parks();
    park->set_park_id(kPark);
    park->set_region(v1::ECONOMIC_REGION_WESTERN);
    park->set_year_founded(1992);
    return grpc::Status::OK;
  }
  grpc::Status GetEnterprise(grpc::ServerContext*, const v1::GetEnterpriseRequest* request,
                             v1::GetEnterpriseResponse* response) override {
    absl::MutexLock lock(&mu_);
    if (!enrolled_.contains(request->uscc())) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such enterprise");
    }
    response->mutable_enterprise()->set_uscc(request->uscc());
    response->mutable_enterprise()->set_park_id(kPark);
    response->mutable_enterprise()->set_region(v1::ECONOMIC_REGION_WESTERN);
    return grpc::Status::OK;
  }
  grpc::Status GetFiling(grpc::ServerContext*, const v1::GetFilingRequest*,
                         v1::GetFilingResponse*) override {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "nothing recorded");
  }

 private:
  absl::Mutex mu_;
  std::set<std::string> enrolled_ ABSL_GUARDED_BY(mu_);
};

// Whether a dead letter came from `source` (a topic): its stip_dlq_source header.
bool FromSource(const ConsumedEvent& event, const std::string& source) {
  return std::string(event.Header(kDeadLetterSourceHeader).value_or("")).starts_with(source);
}

OutgoingEvent Inbound(const std::string& topic, const std::string& key, std::string value,
                      std::string_view content_type, const std::string& id) {
  OutgoingEvent event;
  event.topic = topic;
  event.key = key;
  event.value = std::move(value);
  event.headers = {{"ce_id", id}, {"content-type", std::string(content_type)}};
  return event;
}

class IntakeInboundTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const bool kafka = GetParam() == "kafka";
    EventLogOptions options;
    options.publish_timeout = absl::Seconds(10);
    auto log = OpenEventLog(kafka ? absl::StrCat("kafka://", testing::KafkaBootstrap())
                                  : absl::StrCat("sqlite://", (dir_.path() / "ev.db").string()),
                            options);
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = std::move(*log);
    topics_.inbound = testing::UniqueName("intake-inbound");
    topics_.accepted = testing::UniqueName("intake-accepted");
    topics_.rejected = testing::UniqueName("intake-rejected");
    const std::vector<TopicSpec> specs = {{topics_.inbound, 3},
                                          {topics_.accepted, 3},
                                          {topics_.rejected, 3},
                                          {std::string(kDeadLetterTopic), 3}};
    ASSERT_TRUE(log_->EnsureTopics(specs).ok());
    auto publisher = log_->NewPublisher();
    ASSERT_TRUE(publisher.ok()) << publisher.status();
    publisher_ = std::move(*publisher);
    StartRegistry(0);
  }

  void StartRegistry(int port) {
    GrpcServerOptions options;
    options.listen_address = absl::StrCat("127.0.0.1:", port);
    auto server = StartGrpcServer(options, {&fake_registry_});
    ASSERT_TRUE(server.ok()) << server.status();
    registry_server_ = std::move(*server);
  }

  // Events of `topic` until `count` are read or 60 s have passed.
  std::vector<ConsumedEvent> Read(const std::string& topic, size_t count,
                                  const std::string& dead_letter_source = "") {
    std::vector<ConsumedEvent> events;
    auto consumer = log_->NewConsumer({testing::UniqueName("reader"), {topic}});
    EXPECT_TRUE(consumer.ok()) << consumer.status();
    if (!consumer.ok()) return events;
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (events.size() < count && absl::Now() < deadline) {
      auto polled = (*consumer)->Poll(1000, absl::Milliseconds(200));
      EXPECT_TRUE(polled.ok()) << polled.status();
      if (!polled.ok()) break;
      for (ConsumedEvent& event : *polled) {
        // The dead-letter topic is shared: only this test's.
        if (!dead_letter_source.empty() && !FromSource(event, dead_letter_source)) {
          continue;
        }
        events.push_back(std::move(event));
      }
    }
    // Nothing more than expected (and, for an expected 0, time for the consumer to join).
    const absl::Time quiet_until = absl::Now() + absl::Milliseconds(1500);
    while (absl::Now() < quiet_until) {
      auto more = (*consumer)->Poll(1000, absl::Milliseconds(200));
      if (!more.ok()) break;
      for (ConsumedEvent& event : *more) {
        if (dead_letter_source.empty() || FromSource(event, dead_letter_source)) {
          events.push_back(std::move(event));
        }
      }
    }
    (*consumer)->Close(absl::Seconds(5)).IgnoreError();
    return events;
  }

  testing::TempDir dir_;
  std::unique_ptr<EventLog> log_;
  std::unique_ptr<EventPublisher> publisher_;
  InboundTopics topics_;
  FakeRegistry fake_registry_;
  std::unique_ptr<GrpcServer> registry_server_;
};

TEST_P(IntakeInboundTest, EveryEventEndsInExactlyOnePlace) {
  RegistryClient registry(
      MakeChannel(absl::StrCat("127.0.0.1:", registry_server_->port()), GrpcLimits{}),
      {.call_timeout = absl::Seconds(2)});
  InboundFilingHandler handler(&registry, topics_);
  ProcessorOptions options;
  options.group = testing::UniqueName("intake-inbound");
  options.input_topics = {topics_.inbound};
  options.instance_id = testing::UniqueName("i");
  auto processor = log_->NewProcessor(options, &handler);
  ASSERT_TRUE(processor.ok()) << processor.status();

  for (int i = 1; i <= 4; ++i) fake_registry_.Enroll(UsccFor(i));
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(ValidFiling(UsccFor(2)), &json).ok());
  v1::AnnualFiling invalid = ValidFiling(UsccFor(3));
  invalid.set_revision(0);
  std::string not_enrolled_json;
  ASSERT_TRUE(
      google::protobuf::util::MessageToJsonString(ValidFiling(UsccFor(99)), &not_enrolled_json)
          .ok());
  const std::vector<OutgoingEvent> inbound = {
      Inbound(topics_.inbound, UsccFor(1), ValidFiling(UsccFor(1)).SerializeAsString(),
              kContentTypeProtobuf, "in-1"),
      Inbound(topics_.inbound, UsccFor(2), json, "application/json; charset=utf-8", "in-2"),
      Inbound(topics_.inbound, UsccFor(3), invalid.SerializeAsString(), kContentTypeProtobuf,
              "in-3"),
      Inbound(topics_.inbound, UsccFor(99), not_enrolled_json, kContentTypeJson, "in-4"),
      Inbound(topics_.inbound, "k5", "\xff\xff not a filing", kContentTypeProtobuf, "in-5"),
      Inbound(topics_.inbound, "k6", "{\"uscc\": ", kContentTypeJson, "in-6"),
  };
  ASSERT_TRUE(publisher_->Publish(inbound, absl::Seconds(10)).ok());

  {
    ProcessorThread thread("inbound", processor->get());
    const std::vector<ConsumedEvent> accepted = Read(topics_.accepted, 2);
    const std::vector<ConsumedEvent> rejected = Read(topics_.rejected, 2);
    const std::vector<ConsumedEvent> dead = Read(std::string(kDeadLetterTopic), 2, topics_.inbound);
    thread.Stop();
    EXPECT_TRUE(thread.Wait(absl::Now() + absl::Seconds(30)).ok());

    std::set<std::string> accepted_ids;
    for (const ConsumedEvent& event : accepted) {
      v1::AcceptedFiling filing;
      ASSERT_TRUE(filing.ParseFromString(event.value));
      EXPECT_EQ(event.Header("ce_id").value_or(""), filing.filing_id());
      EXPECT_EQ(event.Header("ce_type").value_or(""), "stip.v1.AcceptedFiling");
      EXPECT_EQ(filing.region(), v1::ECONOMIC_REGION_WESTERN);
      EXPECT_EQ(filing.content_sha256(), ContentSha256(filing.filing()));
      accepted_ids.insert(absl::StrCat(filing.request_id(), " ", filing.filing_id()));
    }
    EXPECT_THAT(accepted_ids, UnorderedElementsAre(absl::StrCat("in-1 ", UsccFor(1), "/2024/1"),
                                                   absl::StrCat("in-2 ", UsccFor(2), "/2024/1")));

    std::map<std::string, std::string> rejected_reasons;  // uscc -> reason
    for (const ConsumedEvent& event : rejected) {
      v1::RejectedFiling filing;
      ASSERT_TRUE(filing.ParseFromString(event.value));
      ASSERT_EQ(filing.violations_size(), 1);
      EXPECT_TRUE(absl::StartsWith(filing.source(), topics_.inbound)) << filing.source();
      EXPECT_FALSE(filing.original_payload().empty());
      rejected_reasons[filing.filing().uscc()] = filing.violations(0).reason();
      if (filing.filing().uscc() == UsccFor(99)) {
        EXPECT_EQ(filing.original_content_type(), "application/json");
        EXPECT_EQ(filing.original_payload(), not_enrolled_json);
      }
    }
    EXPECT_THAT(rejected_reasons,
                UnorderedElementsAre(::testing::Pair(UsccFor(3), "FIELD_REQUIRED"),
                                     ::testing::Pair(UsccFor(99), "ENTERPRISE_NOT_ENROLLED")));

    std::set<std::string> dead_keys;
    for (const ConsumedEvent& event : dead) dead_keys.insert(event.key);
    EXPECT_THAT(dead_keys, ElementsAre("k5", "k6"));
  }
}

TEST_P(IntakeInboundTest, RegistryDownRetriesTheBatchInsteadOfRejecting) {
  const int port = registry_server_->port();
  RegistryClient registry(MakeChannel(absl::StrCat("127.0.0.1:", port), GrpcLimits{}),
                          {.call_timeout = absl::Seconds(1)});
  InboundFilingHandler handler(&registry, topics_);
  ProcessorOptions options;
  options.group = testing::UniqueName("intake-inbound");
  options.input_topics = {topics_.inbound};
  options.instance_id = testing::UniqueName("i");
  auto processor = log_->NewProcessor(options, &handler);
  ASSERT_TRUE(processor.ok()) << processor.status();
  fake_registry_.Enroll(UsccFor(7));

  registry_server_->Shutdown(absl::Now());
  registry_server_.reset();
  ASSERT_TRUE(publisher_
                  ->Publish({Inbound(topics_.inbound, UsccFor(7),
                                     ValidFiling(UsccFor(7)).SerializeAsString(),
                                     kContentTypeProtobuf, "in-7")},
                            absl::Seconds(10))
                  .ok());
  ProcessorThread thread("inbound", processor->get());
  // Batches fail while the registry is away (on Kafka, once the group is joined).
  const absl::Time give_up = absl::Now() + absl::Seconds(120);
  while ((*processor)->Counters().batches_aborted < 1 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_GE((*processor)->Counters().batches_aborted, 1);
  StartRegistry(port);
  const std::vector<ConsumedEvent> accepted = Read(topics_.accepted, 1);
  thread.Stop();
  EXPECT_TRUE(thread.Wait(absl::Now() + absl::Seconds(30)).ok());
  EXPECT_EQ(accepted.size(), 1u);
  EXPECT_TRUE(Read(topics_.rejected, 0).empty());
}

INSTANTIATE_TEST_SUITE_P(Backends, IntakeInboundTest, ::testing::Values("sqlite", "kafka"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace stip::intake
