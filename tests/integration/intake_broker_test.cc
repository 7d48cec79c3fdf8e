// SubmitFiling against a real Kafka broker that cannot be reached: intake answers
// UNAVAILABLE within the event log's publish_timeout and files nothing; the same request
// then succeeds once (its retry gets the same receipt, and one event is on the topic).
//   - BrokerDown...: an address nothing listens on (kafka://127.0.0.1:1), then the shared
//     test broker (STIP_TEST_KAFKA).
//   - SameIntake...: a broker of the test's own (deploy/local/kafka.sh on free loopback ports
//     with its own state folder), stopped and started again under one running intake. The
//     shared broker is never stopped: that would disturb other tests running at the time.
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "services/common/event_log.h"
#include "services/common/grpc_server.h"
#include "services/intake/filing_intake.h"
#include "services/intake/intake_service.h"
#include "services/intake/registry_client.h"
#include "services/intake/uscc.h"
#include "stip/v1/intake_service.grpc.pb.h"
#include "stip/v1/registry_service.grpc.pb.h"
#include "tests/support/enroll_everyone_registry.h"
#include "tests/support/test_environment.h"
#include <sys/wait.h>

namespace stip::intake {
namespace {

constexpr const char* kPark = testing::EnrollEveryoneRegistry::kParkId;
using FakeRegistry = testing::EnrollEveryoneRegistry;

v1::SubmitFilingRequest Request() {
  const std::string first17 = "91650100MC0000001";
  v1::SubmitFilingRequest request;
  request.set_request_id(testing::UniqueName("req"));
  v1::AnnualFiling* filing = request.mutable_filing();
  filing->set_uscc(first17 + *UsccCheckCharacter(first17));
  filing->set_park_id(kPark);
  filing->set_fiscal_year(2024);
  filing->set_revision(1);
  filing->set_gross_revenue_fen(100'000'000);
  filing->set_rd_expenditure_fen(5'000'000);
  filing->set_total_employees(100);
  filing->set_tertiary_educated_employees(40);
  filing->set_rd_employees(15);
  return request;
}

// An IntakeService over `log`, publishing to `topic`.
struct Intake {
  Intake(EventLog& log, RegistryClient* registry, const std::string& topic) {
    auto made = log.NewPublisher();
    EXPECT_TRUE(made.ok()) << made.status();
    publisher = std::move(*made);
    intake = std::make_unique<FilingIntake>(registry, publisher.get(),
                                            FilingIntakeOptions{.filings_topic = topic});
    service = std::make_unique<IntakeServiceImpl>(intake.get(), IntakeServiceOptions{});
    GrpcServerOptions options;
    options.listen_address = "127.0.0.1:0";
    auto started = StartGrpcServer(options, {service.get()});
    EXPECT_TRUE(started.ok()) << started.status();
    server = std::move(*started);
    stub = v1::IntakeService::NewStub(
        MakeChannel(absl::StrCat("127.0.0.1:", server->port()), GrpcLimits{}));
  }
  grpc::Status Submit(const v1::SubmitFilingRequest& request, v1::SubmitFilingResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return stub->SubmitFiling(&context, request, response);
  }

  std::unique_ptr<EventPublisher> publisher;
  std::unique_ptr<FilingIntake> intake;
  std::unique_ptr<IntakeServiceImpl> service;
  std::unique_ptr<GrpcServer> server;
  std::unique_ptr<v1::IntakeService::Stub> stub;
};

TEST(IntakeBrokerTest, BrokerDownIsUnavailableThenTheSameRequestSucceedsOnce) {
  FakeRegistry fake_registry;
  GrpcServerOptions registry_options;
  registry_options.listen_address = "127.0.0.1:0";
  auto registry_server = StartGrpcServer(registry_options, {&fake_registry});
  ASSERT_TRUE(registry_server.ok()) << registry_server.status();
  RegistryClient registry(
      MakeChannel(absl::StrCat("127.0.0.1:", (*registry_server)->port()), GrpcLimits{}));

  const std::string topic = testing::UniqueName("intake-filings");
  const v1::SubmitFilingRequest request = Request();
  EventLogOptions options;
  options.publish_timeout = absl::Seconds(2);

  auto down_log = OpenEventLog("kafka://127.0.0.1:1", options);
  ASSERT_TRUE(down_log.ok()) << down_log.status();
  {
    Intake down(**down_log, &registry, topic);
    v1::SubmitFilingResponse response;
    const absl::Time start = absl::Now();
    const grpc::Status status = down.Submit(request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    EXPECT_LT(absl::Now() - start, absl::Seconds(15));
  }

  auto log = OpenEventLog(absl::StrCat("kafka://", testing::KafkaBootstrap()), options);
  ASSERT_TRUE(log.ok()) << log.status();
  const std::vector<TopicSpec> specs = {{topic, 3}};
  ASSERT_TRUE((*log)->EnsureTopics(specs).ok());
  Intake up(**log, &registry, topic);
  v1::SubmitFilingResponse first;
  const grpc::Status status = up.Submit(request, &first);
  ASSERT_TRUE(status.ok()) << status.error_message();
  v1::SubmitFilingResponse retry;
  ASSERT_TRUE(up.Submit(request, &retry).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(first, retry));

  auto consumer = (*log)->NewConsumer({testing::UniqueName("reader"), {topic}});
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  std::vector<ConsumedEvent> events;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  // Until the event is read, then a little longer for a second one that must not come.
  absl::Time quiet_until = absl::InfiniteFuture();
  while (absl::Now() < std::min(deadline, quiet_until)) {
    auto polled = (*consumer)->Poll(100, absl::Milliseconds(200));
    ASSERT_TRUE(polled.ok()) << polled.status();
    for (ConsumedEvent& event : *polled) events.push_back(std::move(event));
    if (!events.empty() && quiet_until == absl::InfiniteFuture()) {
      quiet_until = absl::Now() + absl::Seconds(2);
    }
  }
  (*consumer)->Close(absl::Seconds(5)).IgnoreError();
  ASSERT_EQ(events.size(), 1u);
  v1::AcceptedFiling accepted;
  ASSERT_TRUE(accepted.ParseFromString(events[0].value));
  EXPECT_EQ(accepted.filing_id(), first.receipt().filing_id());
  EXPECT_EQ(accepted.request_id(), request.request_id());
}

// Every event of `topic`: until `count` are read (or 30 s passed), then 2 s more for any
// that must not come.
std::vector<ConsumedEvent> ReadAll(EventLog& log, const std::string& topic, size_t count) {
  std::vector<ConsumedEvent> events;
  auto consumer = log.NewConsumer({testing::UniqueName("reader"), {topic}});
  EXPECT_TRUE(consumer.ok()) << consumer.status();
  if (!consumer.ok()) return events;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  absl::Time quiet_until = absl::InfiniteFuture();
  while (absl::Now() < std::min(deadline, quiet_until)) {
    auto polled = (*consumer)->Poll(100, absl::Milliseconds(200));
    EXPECT_TRUE(polled.ok()) << polled.status();
    if (!polled.ok()) break;
    for (ConsumedEvent& event : *polled) events.push_back(std::move(event));
    if (events.size() >= count && quiet_until == absl::InfiniteFuture()) {
      quiet_until = absl::Now() + absl::Seconds(2);
    }
  }
  (*consumer)->Close(absl::Seconds(5)).IgnoreError();
  return events;
}

// A broker of the test's own, through deploy/local/kafka.sh; stopped when destroyed.
class OwnBroker {
 public:
  // Ports free when asked, not fixed ones: a fixed port may be taken by another broker on
  // the machine (a developer's own, as happened with 39092).
  explicit OwnBroker(const std::filesystem::path& state) : port_(testing::FreeLoopbackPort()) {
    setenv("STIP_KAFKA_PORT", std::to_string(port_).c_str(), 1);
    setenv("STIP_KAFKA_CONTROLLER_PORT", std::to_string(testing::FreeLoopbackPort()).c_str(), 1);
    setenv("STIP_STATE_DIR", state.c_str(), 1);
  }
  ~OwnBroker() { Run("stop"); }
  int port() const { return port_; }
  // 0 when the script succeeded.
  int Run(const std::string& command) {
    const std::filesystem::path script = testing::SourcePath("deploy/local/kafka.sh");
    testing::ChildProcess child({"/bin/bash", script.string(), command});
    const int status = child.Wait();
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  }

 private:
  int port_;
};

TEST(IntakeBrokerTest, SameIntakeOutlivesItsBrokerStoppedAndStartedAgain) {
  testing::KafkaBootstrap();  // the suite's broker is there, so kafka.sh has its jars
  FakeRegistry fake_registry;
  GrpcServerOptions registry_options;
  registry_options.listen_address = "127.0.0.1:0";
  auto registry_server = StartGrpcServer(registry_options, {&fake_registry});
  ASSERT_TRUE(registry_server.ok()) << registry_server.status();
  RegistryClient registry(
      MakeChannel(absl::StrCat("127.0.0.1:", (*registry_server)->port()), GrpcLimits{}));

  testing::TempDir state;
  OwnBroker broker(state.path());
  ASSERT_EQ(broker.Run("start"), 0);
  EventLogOptions options;
  options.publish_timeout = absl::Seconds(3);
  auto log = OpenEventLog(absl::StrCat("kafka://127.0.0.1:", broker.port()), options);
  ASSERT_TRUE(log.ok()) << log.status();
  const std::string topic = testing::UniqueName("intake-filings");
  const std::vector<TopicSpec> specs = {{topic, 3}};
  ASSERT_TRUE((*log)->EnsureTopics(specs).ok());
  Intake intake(**log, &registry, topic);

  v1::SubmitFilingRequest before = Request();
  before.mutable_filing()->set_revision(1);
  v1::SubmitFilingResponse response;
  ASSERT_TRUE(intake.Submit(before, &response).ok());

  ASSERT_EQ(broker.Run("stop"), 0);
  v1::SubmitFilingRequest during = Request();
  during.mutable_filing()->set_revision(2);
  const absl::Time start = absl::Now();
  const grpc::Status down = intake.Submit(during, &response);
  EXPECT_EQ(down.error_code(), grpc::StatusCode::UNAVAILABLE) << down.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));

  ASSERT_EQ(broker.Run("start"), 0);
  v1::SubmitFilingResponse first;
  grpc::Status up = intake.Submit(during, &first);
  ASSERT_TRUE(up.ok()) << up.error_message();
  v1::SubmitFilingResponse retry;
  ASSERT_TRUE(intake.Submit(during, &retry).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(first, retry));

  const std::vector<ConsumedEvent> events = ReadAll(**log, topic, 2);
  std::vector<std::string> ids;
  for (const ConsumedEvent& event : events) {
    ids.push_back(std::string(event.Header("ce_id").value_or("")));
  }
  EXPECT_THAT(ids,
              ::testing::UnorderedElementsAre(absl::StrCat(before.filing().uscc(), "/2024/1"),
                                              absl::StrCat(during.filing().uscc(), "/2024/2")));
}

}  // namespace
}  // namespace stip::intake
