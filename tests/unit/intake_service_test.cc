// IntakeService over a real in-process gRPC server, with a RegistryService fake of our own
// (also a real gRPC server, on port 0) and the SQLite event log: field violations of an
// invalid filing, idempotent retries (one event, the original receipt; concurrent retries;
// after a restart, answered from the registry's record), request_id reuse, stale revisions,
// enrollment, the registry or the event log unreachable, ValidateFiling, and a bulk
// SubmitFilings stream answered one response per request, in order.
#include "services/intake/intake_service.h"

#include <atomic>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/error_details.h"
#include "gtest/gtest.h"
#include "prometheus/metric_family.h"
#include "services/common/event_log.h"
#include "services/common/grpc_server.h"
#include "services/common/metrics.h"
#include "services/intake/filing_intake.h"
#include "services/intake/inbound_handler.h"
#include "services/intake/registry_client.h"
#include "services/intake/uscc.h"
#include "stip/v1/intake_service.grpc.pb.h"
#include "stip/v1/registry_service.grpc.pb.h"
#include "tests/support/test_environment.h"

namespace stip::intake {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr char kPark[] = "urumqi-hnz";
constexpr char kOtherPark[] = "kunming-hnz";

// A valid USCC per index: "91650100MA" + 7 digits + the check character.
std::string UsccFor(int index) {
  const std::string first17 = absl::StrFormat("91650100MA%07d", index);
  return first17 + *UsccCheckCharacter(first17);
}

v1::AnnualFiling ValidFiling(const std::string& uscc, int revision = 1) {
  v1::AnnualFiling filing;
  filing.set_uscc(uscc);
  filing.set_park_id(kPark);
  filing.set_fiscal_year(2024);
  filing.set_revision(revision);
  filing.set_gross_revenue_fen(100'000'000);
  filing.set_rd_expenditure_fen(5'000'000);
  filing.set_total_employees(100);
  filing.set_tertiary_educated_employees(40);
  filing.set_rd_employees(15);
  v1::HiTechProject* project = filing.add_projects();
  project->set_project_id("p-1");
  project->set_title("Solar inverter");
  project->set_field(v1::TECHNOLOGY_FIELD_NEW_ENERGY);
  project->set_stage(v1::PROJECT_STAGE_DEVELOPMENT);
  return filing;
}

// The registry as intake sees it: parks, enterprises with their latest revisions, and
// recorded filings, from fixtures.
class FakeRegistry final : public v1::RegistryService::Service {
 public:
  FakeRegistry() {
    AddPark(kPark, v1::ECONOMIC_REGION_WESTERN, 1992);
    AddPark(kOtherPark, v1::ECONOMIC_REGION_WESTERN, 1992);
  }

  void AddPark(const std::string& id, v1::EconomicRegion region, int year_founded) {
    absl::MutexLock lock(&mu_);
    v1::Park park;
    park.set_park_id(id);
    park.set_region(region);
    park.set_year_founded(year_founded);
    parks_.push_back(park);
  }
  void Enroll(const std::string& uscc, const std::string& park_id = kPark) {
    absl::MutexLock lock(&mu_);
    v1::Enterprise& enterprise = enterprises_[uscc];
    enterprise.set_uscc(uscc);
    enterprise.set_park_id(park_id);
    enterprise.set_region(v1::ECONOMIC_REGION_WESTERN);
  }
  // As the registry applies an AcceptedFiling from stip.filings.v1.
  void Record(const v1::AcceptedFiling& filing) {
    absl::MutexLock lock(&mu_);
    filings_[filing.filing_id()] = filing;
    v1::Enterprise& enterprise = enterprises_[filing.filing().uscc()];
    v1::FiledRevision* filed = nullptr;
    for (v1::FiledRevision& revision : *enterprise.mutable_latest_revisions()) {
      if (revision.fiscal_year() == filing.filing().fiscal_year()) filed = &revision;
    }
    if (filed == nullptr) filed = enterprise.add_latest_revisions();
    filed->set_fiscal_year(filing.filing().fiscal_year());
    filed->set_revision(filing.filing().revision());
    filed->set_filing_id(filing.filing_id());
  }

  grpc::Status ListParks(grpc::ServerContext*, const v1::ListParksRequest*,
                         v1::ListParksResponse* response) override {
    absl::MutexLock lock(&mu_);
    for (const v1::Park& park : parks_) *response->add_parks() = park;
    return grpc::Status::OK;
  }
  grpc::Status GetEnterprise(grpc::ServerContext*, const v1::GetEnterpriseRequest* request,
                             v1::GetEnterpriseResponse* response) override {
    absl::MutexLock lock(&mu_);
    auto it = enterprises_.find(request->uscc());
    if (it == enterprises_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such");
    *response->mutable_enterprise() = it->second;
    return grpc::Status::OK;
  }
  grpc::Status GetFiling(grpc::ServerContext*, const v1::GetFilingRequest* request,
                         v1::GetFilingResponse* response) override {
    absl::MutexLock lock(&mu_);
    auto it = filings_.find(request->filing_id());
    if (it == filings_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such");
    *response->mutable_filing() = it->second;
    return grpc::Status::OK;
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::Park> parks_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::Enterprise> enterprises_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::AcceptedFiling> filings_ ABSL_GUARDED_BY(mu_);
};

GrpcServerOptions LocalServer() {
  GrpcServerOptions options;
  options.listen_address = "127.0.0.1:0";
  return options;
}

// The google.rpc.Status details of a failed call.
google::rpc::Status Details(const grpc::Status& status) {
  google::rpc::Status details;
  EXPECT_TRUE(grpc::ExtractErrorDetails(status, &details).ok());
  return details;
}

google::rpc::BadRequest BadRequestOf(const grpc::Status& status) {
  google::rpc::BadRequest bad_request;
  const google::rpc::Status details = Details(status);
  for (const auto& any : details.details()) {
    if (any.UnpackTo(&bad_request)) return bad_request;
  }
  ADD_FAILURE() << "no BadRequest in the details of " << status.error_message();
  return bad_request;
}

google::rpc::PreconditionFailure PreconditionFailureOf(const grpc::Status& status) {
  google::rpc::PreconditionFailure failure;
  const google::rpc::Status details = Details(status);
  for (const auto& any : details.details()) {
    if (any.UnpackTo(&failure)) return failure;
  }
  ADD_FAILURE() << "no PreconditionFailure in the details of " << status.error_message();
  return failure;
}

// The value of a counter of MetricsRegistry() with one label, or -1 when there is none.
double CounterValue(const std::string& name, const std::string& label, const std::string& value) {
  for (const prometheus::MetricFamily& family : MetricsRegistry().Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      for (const prometheus::ClientMetric::Label& pair : metric.label) {
        if (pair.name == label && pair.value == value) return metric.counter.value;
      }
    }
  }
  return -1;
}

// Calls of `method` ("/stip.v1.IntakeService/SubmitFilings") the server finished with `code`
// ("CANCELLED"), from stip_grpc_server_handled_total; 0 when there is none.
double HandledCalls(const std::string& method, const std::string& code) {
  for (const prometheus::MetricFamily& family : MetricsRegistry().Collect()) {
    if (family.name != "stip_grpc_server_handled_total") continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      int matched = 0;
      for (const prometheus::ClientMetric::Label& pair : metric.label) {
        if ((pair.name == "method" && pair.value == method) ||
            (pair.name == "code" && pair.value == code)) {
          ++matched;
        }
      }
      if (matched == 2) return metric.counter.value;
    }
  }
  return 0;
}

class IntakeServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto log = OpenEventLog(absl::StrCat("sqlite://", (dir_.path() / "events.db").string()));
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = std::move(*log);
    ASSERT_TRUE(log_->EnsureTopics(StandardTopics(3)).ok());
    auto publisher = log_->NewPublisher();
    ASSERT_TRUE(publisher.ok()) << publisher.status();
    publisher_ = std::move(*publisher);

    auto registry_server = StartGrpcServer(LocalServer(), {&fake_registry_});
    ASSERT_TRUE(registry_server.ok()) << registry_server.status();
    registry_server_ = std::move(*registry_server);
    registry_ = std::make_unique<RegistryClient>(
        MakeChannel(absl::StrCat("127.0.0.1:", registry_server_->port()), GrpcLimits{}));
    StartIntake();
  }

  // (Re)starts intake with a fresh idempotency cache, as after a restart.
  void StartIntake(FilingIntakeOptions options = {}, IntakeServiceOptions service_options = {}) {
    if (server_ != nullptr) server_->Shutdown(absl::Now());
    server_.reset();
    service_.reset();
    intake_ = std::make_unique<FilingIntake>(registry_.get(), publisher_.get(), options);
    service_ = std::make_unique<IntakeServiceImpl>(intake_.get(), service_options);
    auto server = StartGrpcServer(LocalServer(), {service_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    stub_ = v1::IntakeService::NewStub(
        MakeChannel(absl::StrCat("127.0.0.1:", server_->port()), GrpcLimits{}));
  }

  grpc::Status Submit(const std::string& request_id, const v1::AnnualFiling& filing,
                      v1::SubmitFilingResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::SubmitFilingRequest request;
    request.set_request_id(request_id);
    *request.mutable_filing() = filing;
    return stub_->SubmitFiling(&context, request, response);
  }

  // Every AcceptedFiling on stip.filings.v1 so far.
  std::vector<v1::AcceptedFiling> Published() {
    std::vector<v1::AcceptedFiling> filings;
    auto consumer =
        log_->NewConsumer({testing::UniqueName("reader"), {std::string(kFilingsTopic)}});
    EXPECT_TRUE(consumer.ok()) << consumer.status();
    if (!consumer.ok()) return filings;
    while (true) {
      auto events = (*consumer)->Poll(10000, absl::Milliseconds(200));
      EXPECT_TRUE(events.ok()) << events.status();
      if (!events.ok() || events->empty()) break;
      for (const ConsumedEvent& event : *events) {
        v1::AcceptedFiling filing;
        EXPECT_TRUE(filing.ParseFromString(event.value));
        EXPECT_EQ(event.key, filing.filing().uscc());
        auto attributes = ReadCloudEventAttributes(event);
        EXPECT_TRUE(attributes.has_value());
        if (attributes.has_value()) {
          EXPECT_EQ(attributes->id, filing.filing_id());
          EXPECT_EQ(attributes->type, "stip.v1.AcceptedFiling");
          EXPECT_EQ(attributes->source, "/stip/intake");
        }
        filings.push_back(filing);
      }
    }
    (*consumer)->Close(absl::Seconds(1)).IgnoreError();
    return filings;
  }

  testing::TempDir dir_;
  std::unique_ptr<EventLog> log_;
  std::unique_ptr<EventPublisher> publisher_;
  FakeRegistry fake_registry_;
  std::unique_ptr<GrpcServer> registry_server_;
  std::unique_ptr<RegistryClient> registry_;
  std::unique_ptr<FilingIntake> intake_;
  std::unique_ptr<IntakeServiceImpl> service_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<v1::IntakeService::Stub> stub_;
};

TEST_F(IntakeServiceTest, AcceptsAndPublishesOnce) {
  const std::string uscc = UsccFor(1);
  fake_registry_.Enroll(uscc);
  v1::SubmitFilingResponse response;
  const grpc::Status status = Submit("req-1", ValidFiling(uscc), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const v1::FilingReceipt& receipt = response.receipt();
  EXPECT_EQ(receipt.filing_id(), absl::StrCat(uscc, "/2024/1"));
  EXPECT_EQ(receipt.uscc(), uscc);
  EXPECT_EQ(receipt.fiscal_year(), 2024);
  EXPECT_EQ(receipt.revision(), 1);
  EXPECT_EQ(receipt.request_id(), "req-1");
  EXPECT_GT(receipt.receive_time().seconds(), 0);

  const std::vector<v1::AcceptedFiling> published = Published();
  ASSERT_THAT(published, SizeIs(1));
  EXPECT_EQ(published[0].filing_id(), receipt.filing_id());
  EXPECT_EQ(published[0].region(), v1::ECONOMIC_REGION_WESTERN);
  EXPECT_EQ(published[0].request_id(), "req-1");
  EXPECT_EQ(published[0].content_sha256(), ContentSha256(ValidFiling(uscc)));
  EXPECT_THAT(published[0].content_sha256(), SizeIs(64));
  EXPECT_TRUE(MessageDifferencer::Equals(published[0].filing(), ValidFiling(uscc)));
  EXPECT_TRUE(MessageDifferencer::Equals(published[0].receive_time(), receipt.receive_time()));
  EXPECT_GE(CounterValue("stip_intake_filings_total", "result", "accepted"), 1);
}

TEST_F(IntakeServiceTest, InvalidFilingAnswersEveryFieldViolation) {
  v1::AnnualFiling filing = ValidFiling(UsccFor(2));
  filing.set_uscc("91650100MA0000002Z");  // wrong check character and a Z
  filing.set_park_id("no-such-park");
  filing.set_fiscal_year(1980);
  filing.set_revision(0);
  filing.set_gross_revenue_fen(-1);
  filing.set_rd_expenditure_fen(-1);
  filing.set_total_employees(10);
  filing.set_tertiary_educated_employees(11);
  filing.set_rd_employees(-1);
  filing.mutable_projects(0)->set_title("");
  filing.mutable_projects(0)->set_stage(v1::PROJECT_STAGE_UNSPECIFIED);
  v1::HiTechProject* duplicate = filing.add_projects();
  *duplicate = filing.projects(0);
  duplicate->set_project_id("P-1");
  filing.set_enterprise_name("line\nbreak");

  v1::SubmitFilingResponse response;
  const grpc::Status status = Submit("req-invalid", filing, &response);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("not valid"));
  const google::rpc::BadRequest bad_request = BadRequestOf(status);

  // Exactly the validator's violations, in its order, with the reason code first.
  InMemoryParkDirectory parks({{kPark, ParkFacts{1992, v1::ECONOMIC_REGION_WESTERN}}});
  const ValidationResult expected =
      ValidateFiling(filing, parks, ValidationOptions::ForTime(absl::Now()));
  ASSERT_EQ(bad_request.field_violations_size(), static_cast<int>(expected.violations.size()));
  std::vector<std::string> fields;
  for (int i = 0; i < bad_request.field_violations_size(); ++i) {
    const auto& violation = bad_request.field_violations(i);
    EXPECT_EQ(violation.field(), expected.violations[i].field());
    EXPECT_EQ(violation.description(), absl::StrCat(expected.violations[i].reason(), ": ",
                                                    expected.violations[i].message()));
    fields.push_back(violation.field());
  }
  EXPECT_GE(CounterValue("stip_intake_filings_total", "result", "refused"), 1);
  EXPECT_GE(CounterValue("stip_intake_violations_total", "reason", expected.violations[0].reason()),
            1);
  for (const char* field :
       {"filing.uscc", "filing.park_id", "filing.fiscal_year", "filing.revision",
        "filing.gross_revenue_fen", "filing.rd_expenditure_fen",
        "filing.tertiary_educated_employees", "filing.rd_employees", "filing.projects[0].title",
        "filing.projects[0].stage", "filing.projects[1].project_id", "filing.enterprise_name"}) {
    EXPECT_THAT(fields, ::testing::Contains(field));
  }
  EXPECT_THAT(Published(), SizeIs(0));
}

TEST_F(IntakeServiceTest, RequestIdIsRequired) {
  fake_registry_.Enroll(UsccFor(3));
  v1::SubmitFilingResponse response;
  const grpc::Status status = Submit("", ValidFiling(UsccFor(3)), &response);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  const google::rpc::BadRequest bad_request = BadRequestOf(status);
  ASSERT_EQ(bad_request.field_violations_size(), 1);
  EXPECT_EQ(bad_request.field_violations(0).field(), "request_id");
  EXPECT_THAT(bad_request.field_violations(0).description(), HasSubstr("REQUEST_ID_REQUIRED"));
}

TEST_F(IntakeServiceTest, RetryGetsTheOriginalReceiptAndOneEvent) {
  const std::string uscc = UsccFor(4);
  fake_registry_.Enroll(uscc);
  v1::SubmitFilingResponse first;
  ASSERT_TRUE(Submit("req-4", ValidFiling(uscc), &first).ok());
  absl::SleepFor(absl::Milliseconds(20));
  v1::SubmitFilingResponse second;
  ASSERT_TRUE(Submit("req-4", ValidFiling(uscc), &second).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(first, second))
      << first.DebugString() << " vs " << second.DebugString();
  EXPECT_THAT(Published(), SizeIs(1));
}

TEST_F(IntakeServiceTest, ConcurrentRetriesPublishOnce) {
  const std::string uscc = UsccFor(5);
  fake_registry_.Enroll(uscc);
  constexpr int kAttempts = 8;
  std::vector<v1::SubmitFilingResponse> responses(kAttempts);
  std::vector<grpc::Status> statuses(kAttempts);
  std::vector<std::thread> threads;
  for (int i = 0; i < kAttempts; ++i) {
    threads.emplace_back(
        [&, i] { statuses[i] = Submit("req-5", ValidFiling(uscc), &responses[i]); });
  }
  for (std::thread& thread : threads) thread.join();
  for (int i = 0; i < kAttempts; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << statuses[i].error_message();
    EXPECT_TRUE(MessageDifferencer::Equals(responses[0], responses[i]));
  }
  EXPECT_THAT(Published(), SizeIs(1));
}

TEST_F(IntakeServiceTest, RetryAfterRestartIsAnsweredFromTheRegistry) {
  const std::string uscc = UsccFor(6);
  fake_registry_.Enroll(uscc);
  v1::SubmitFilingResponse first;
  ASSERT_TRUE(Submit("req-6", ValidFiling(uscc), &first).ok());
  std::vector<v1::AcceptedFiling> published = Published();
  ASSERT_THAT(published, SizeIs(1));
  fake_registry_.Record(published[0]);

  StartIntake();                             // the idempotency cache is gone
  absl::SleepFor(absl::Milliseconds(2100));  // and the enterprise cache is stale
  v1::SubmitFilingResponse retry;
  ASSERT_TRUE(Submit("req-6", ValidFiling(uscc), &retry).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(first, retry))
      << first.DebugString() << " vs " << retry.DebugString();
  EXPECT_THAT(Published(), SizeIs(1));

  // Another request for the same revision is not a retry.
  v1::SubmitFilingResponse other;
  const grpc::Status status = Submit("req-6b", ValidFiling(uscc), &other);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("revision 1"));
}

TEST_F(IntakeServiceTest, SameRequestIdWithAnotherFilingIsRefused) {
  const std::string uscc = UsccFor(7);
  fake_registry_.Enroll(uscc);
  v1::SubmitFilingResponse response;
  ASSERT_TRUE(Submit("req-7", ValidFiling(uscc), &response).ok());
  v1::AnnualFiling changed = ValidFiling(uscc);
  changed.set_rd_employees(20);
  const grpc::Status status = Submit("req-7", changed, &response);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("already used for a different filing"));
  const google::rpc::BadRequest bad_request = BadRequestOf(status);
  ASSERT_EQ(bad_request.field_violations_size(), 1);
  EXPECT_EQ(bad_request.field_violations(0).field(), "request_id");
  EXPECT_THAT(bad_request.field_violations(0).description(), HasSubstr("REQUEST_ID_REUSED"));
  EXPECT_THAT(Published(), SizeIs(1));
}

TEST_F(IntakeServiceTest, StaleRevisionNamesTheCurrentOne) {
  const std::string uscc = UsccFor(8);
  fake_registry_.Enroll(uscc);
  v1::AcceptedFiling recorded;
  recorded.set_filing_id(FilingIdFor(uscc, 2024, 3));
  *recorded.mutable_filing() = ValidFiling(uscc, 3);
  recorded.set_request_id("someone-else");
  fake_registry_.Record(recorded);

  v1::SubmitFilingResponse response;
  const grpc::Status status = Submit("req-8", ValidFiling(uscc, 2), &response);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("current revision"));
  EXPECT_THAT(status.error_message(), HasSubstr("revision 3"));
  const google::rpc::PreconditionFailure failure = PreconditionFailureOf(status);
  ASSERT_EQ(failure.violations_size(), 1);
  EXPECT_EQ(failure.violations(0).type(), "REVISION_NOT_NEWER");
  EXPECT_EQ(failure.violations(0).subject(), "filing.revision");
  EXPECT_THAT(failure.violations(0).description(), HasSubstr("revision 4"));

  // Revision 4 goes through; a second request for it, before the registry has recorded
  // it, is refused by intake itself.
  ASSERT_TRUE(Submit("req-8b", ValidFiling(uscc, 4), &response).ok());
  const grpc::Status again = Submit("req-8c", ValidFiling(uscc, 4), &response);
  ASSERT_EQ(again.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(again.error_message(), HasSubstr("revision 4"));
  EXPECT_THAT(Published(), SizeIs(1));
}

TEST_F(IntakeServiceTest, EnrollmentIsChecked) {
  v1::SubmitFilingResponse response;
  const grpc::Status missing = Submit("req-9", ValidFiling(UsccFor(9)), &response);
  ASSERT_EQ(missing.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(missing.error_message(), HasSubstr("not enrolled"));
  EXPECT_EQ(PreconditionFailureOf(missing).violations(0).type(), "ENTERPRISE_NOT_ENROLLED");
  EXPECT_EQ(PreconditionFailureOf(missing).violations(0).subject(), "filing.uscc");

  fake_registry_.Enroll(UsccFor(10), kOtherPark);
  const grpc::Status elsewhere = Submit("req-10", ValidFiling(UsccFor(10)), &response);
  ASSERT_EQ(elsewhere.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(elsewhere.error_message(), HasSubstr(kOtherPark));
  EXPECT_EQ(PreconditionFailureOf(elsewhere).violations(0).type(), "ENTERPRISE_IN_OTHER_PARK");
  EXPECT_THAT(Published(), SizeIs(0));
}

TEST_F(IntakeServiceTest, RegistryDownIsUnavailable) {
  // Nothing listens on port 1.
  RegistryClient unreachable(MakeChannel("127.0.0.1:1", GrpcLimits{}),
                             {.call_timeout = absl::Seconds(2)});
  FilingIntake intake(&unreachable, publisher_.get(), {});
  fake_registry_.Enroll(UsccFor(11));
  const std::vector<SubmissionOutcome> outcomes = intake.Submit(
      {Submission{"req-11", ValidFiling(UsccFor(11))}}, absl::Now() + absl::Seconds(5));
  ASSERT_THAT(outcomes, SizeIs(1));
  EXPECT_EQ(outcomes[0].status.code(), absl::StatusCode::kUnavailable) << outcomes[0].status;
  EXPECT_THAT(Published(), SizeIs(0));
  // Over gRPC too.
  IntakeServiceImpl service(&intake, {});
  auto server = StartGrpcServer(LocalServer(), {&service});
  ASSERT_TRUE(server.ok());
  auto stub = v1::IntakeService::NewStub(
      MakeChannel(absl::StrCat("127.0.0.1:", (*server)->port()), GrpcLimits{}));
  grpc::ClientContext context;
  v1::SubmitFilingRequest request;
  request.set_request_id("req-11");
  *request.mutable_filing() = ValidFiling(UsccFor(11));
  v1::SubmitFilingResponse response;
  EXPECT_EQ(stub->SubmitFiling(&context, request, &response).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(IntakeServiceTest, PublishFailureIsUnavailableAndForgotten) {
  StartIntake({.filings_topic = "no.such.topic"});
  fake_registry_.Enroll(UsccFor(12));
  v1::SubmitFilingResponse response;
  for (int attempt = 0; attempt < 2; ++attempt) {
    const grpc::Status status = Submit("req-12", ValidFiling(UsccFor(12)), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  }
  EXPECT_THAT(Published(), SizeIs(0));
}

TEST_F(IntakeServiceTest, ValidateFilingPublishesNothing) {
  grpc::ClientContext context;
  v1::ValidateFilingRequest request;
  *request.mutable_filing() = ValidFiling(UsccFor(13));
  request.mutable_filing()->set_rd_expenditure_fen(200'000'000);  // above revenue: a warning
  v1::ValidateFilingResponse response;
  ASSERT_TRUE(stub_->ValidateFiling(&context, request, &response).ok());
  EXPECT_TRUE(response.valid());
  EXPECT_THAT(response.violations(), SizeIs(0));
  ASSERT_THAT(response.warnings(), SizeIs(1));
  EXPECT_EQ(response.warnings(0).code(), "RD_EXCEEDS_REVENUE");

  grpc::ClientContext invalid_context;
  request.mutable_filing()->set_revision(0);
  ASSERT_TRUE(stub_->ValidateFiling(&invalid_context, request, &response).ok());
  EXPECT_FALSE(response.valid());
  ASSERT_THAT(response.violations(), SizeIs(1));
  EXPECT_EQ(response.violations(0).field(), "filing.revision");
  EXPECT_THAT(Published(), SizeIs(0));
}

TEST_F(IntakeServiceTest, BulkStreamAnswersEveryRequestInOrder) {
  constexpr int kFilings = 2000;
  // Every third filing is invalid, every fifth of the rest names an enterprise not enrolled.
  enum Kind { kValid, kInvalid, kNotEnrolled };
  std::vector<Kind> kinds(kFilings);
  int valid = 0;
  for (int i = 0; i < kFilings; ++i) {
    kinds[i] = i % 3 == 2 ? kInvalid : (i % 5 == 4 ? kNotEnrolled : kValid);
    if (kinds[i] != kNotEnrolled) fake_registry_.Enroll(UsccFor(1000 + i));
    if (kinds[i] == kValid) ++valid;
  }
  grpc::ClientContext context;
  auto stream = stub_->SubmitFilings(&context);
  std::thread writer([&] {
    for (int i = 0; i < kFilings; ++i) {
      v1::SubmitFilingsRequest request;
      request.set_request_id(absl::StrCat("bulk-", i));
      *request.mutable_filing() = ValidFiling(UsccFor(1000 + i));
      if (kinds[i] == kInvalid) request.mutable_filing()->set_revision(0);
      if (!stream->Write(request)) break;
    }
    stream->WritesDone();
  });
  int index = 0;
  v1::SubmitFilingsResponse response;
  // Non-fatal expectations only while the writer thread runs.
  while (index < kFilings && stream->Read(&response)) {
    EXPECT_EQ(response.request_id(), absl::StrCat("bulk-", index));
    switch (kinds[index]) {
      case kValid:
        EXPECT_EQ(response.error_code(), 0) << response.error_message();
        EXPECT_EQ(response.receipt().filing_id(), FilingIdFor(UsccFor(1000 + index), 2024, 1));
        break;
      case kInvalid:
        EXPECT_EQ(response.error_code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
        EXPECT_THAT(response.violations(), SizeIs(1));
        EXPECT_EQ(response.violations(0).field(), "filing.revision");
        break;
      case kNotEnrolled:
        EXPECT_EQ(response.error_code(), static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
        EXPECT_THAT(response.violations(), SizeIs(1));
        EXPECT_EQ(response.violations(0).reason(), "ENTERPRISE_NOT_ENROLLED");
        break;
    }
    ++index;
  }
  writer.join();
  const grpc::Status status = stream->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(index, kFilings);
  EXPECT_THAT(Published(), SizeIs(valid));
}

// request_id is 1-128 printable ASCII characters, on SubmitFiling and SubmitFilings alike.
// It had no limit: a 3 MiB id was accepted and kept in the idempotency cache and the event.
TEST_F(IntakeServiceTest, RequestIdIsOneTo128PrintableAsciiCharacters) {
  const std::string uscc = UsccFor(20);
  fake_registry_.Enroll(uscc);
  const std::pair<std::string, std::string> bad[] = {
      {std::string(129, 'r'), "129 bytes"},
      // Within the 1 MiB message limit, which gRPC itself enforces (RESOURCE_EXHAUSTED).
      {std::string(1 << 19, 'r'), "524288 bytes"},
      {"req 1", "byte 3 is 0x20"},
      {"req-\xC3\xA9", "byte 4 is 0xc3"},
      {std::string("req\0", 4), "byte 3 is 0x00"},
  };
  for (const auto& [request_id, detail] : bad) {
    v1::SubmitFilingResponse response;
    const grpc::Status status = Submit(request_id, ValidFiling(uscc), &response);
    ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << detail;
    EXPECT_LT(status.error_message().size(), 300u);  // the id is never quoted
    const google::rpc::BadRequest bad_request = BadRequestOf(status);
    ASSERT_EQ(bad_request.field_violations_size(), 1) << detail;
    EXPECT_EQ(bad_request.field_violations(0).field(), "request_id");
    EXPECT_THAT(bad_request.field_violations(0).description(), HasSubstr("REQUEST_ID_FORMAT"));
    EXPECT_THAT(bad_request.field_violations(0).description(), HasSubstr("1 to 128 printable"));
    EXPECT_THAT(bad_request.field_violations(0).description(), HasSubstr(detail));
  }
  EXPECT_THAT(Published(), SizeIs(0));

  // The bulk stream answers the same refusal for that request and goes on with the next.
  {
    grpc::ClientContext context;
    auto stream = stub_->SubmitFilings(&context);
    v1::SubmitFilingsRequest request;
    request.set_request_id(std::string(129, 'b'));
    *request.mutable_filing() = ValidFiling(uscc);
    ASSERT_TRUE(stream->Write(request));
    request.set_request_id(std::string(128, 'b'));
    ASSERT_TRUE(stream->Write(request));
    ASSERT_TRUE(stream->WritesDone());
    v1::SubmitFilingsResponse response;
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_EQ(response.error_code(), static_cast<int32_t>(absl::StatusCode::kInvalidArgument));
    ASSERT_EQ(response.violations_size(), 1);
    EXPECT_EQ(response.violations(0).reason(), "REQUEST_ID_FORMAT");
    EXPECT_EQ(response.violations(0).field(), "request_id");
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_EQ(response.error_code(), 0) << response.error_message();
    EXPECT_EQ(response.receipt().request_id(), std::string(128, 'b'));
    EXPECT_FALSE(stream->Read(&response));
    EXPECT_TRUE(stream->Finish().ok());
  }
  EXPECT_THAT(Published(), SizeIs(1));
}

// A revision is at most the latest recorded + 1: revision 2147483647 was accepted and the
// next submission was told to use -2147483648, locking the enterprise out of the year.
TEST_F(IntakeServiceTest, RevisionIsAtMostTheNextOneAndNeverOverflows) {
  const std::string uscc = UsccFor(21);
  fake_registry_.Enroll(uscc);
  v1::SubmitFilingResponse response;
  grpc::Status status =
      Submit("req-21a", ValidFiling(uscc, std::numeric_limits<int32_t>::max()), &response);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("revision must be at most 1"));
  google::rpc::BadRequest bad_request = BadRequestOf(status);
  ASSERT_EQ(bad_request.field_violations_size(), 1);
  EXPECT_EQ(bad_request.field_violations(0).field(), "filing.revision");
  EXPECT_THAT(bad_request.field_violations(0).description(),
              HasSubstr("REVISION_BEYOND_NEXT: must be at most 1"));

  // 1, then 2 before the registry has recorded 1 (this intake accepted it), go through.
  ASSERT_TRUE(Submit("req-21b", ValidFiling(uscc, 1), &response).ok());
  ASSERT_TRUE(Submit("req-21c", ValidFiling(uscc, 2), &response).ok());
  EXPECT_THAT(Published(), SizeIs(2));

  // Against what the registry recorded: 5 recorded, so 7 is refused and 6 accepted.
  const std::string recorded_uscc = UsccFor(22);
  fake_registry_.Enroll(recorded_uscc);
  v1::AcceptedFiling recorded;
  recorded.set_filing_id(FilingIdFor(recorded_uscc, 2024, 5));
  *recorded.mutable_filing() = ValidFiling(recorded_uscc, 5);
  recorded.set_request_id("earlier");
  fake_registry_.Record(recorded);
  status = Submit("req-22a", ValidFiling(recorded_uscc, 7), &response);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("revision must be at most 6"));
  EXPECT_TRUE(Submit("req-22b", ValidFiling(recorded_uscc, 6), &response).ok());
}

// Collects what a batch hands over, as the processor would publish it.
class RecordingOutput final : public BatchOutput {
 public:
  void Emit(OutgoingEvent event) override { emitted.push_back(std::move(event)); }
  void DeadLetter(const ConsumedEvent& event, std::string_view reason) override {
    dead_letters.emplace_back(event.Position(), std::string(reason));
  }
  std::vector<OutgoingEvent> emitted;
  std::vector<std::pair<std::string, std::string>> dead_letters;
};

// On the inbound topic the request_id is the event's ce_id. An oversized one made the
// AcceptedFiling too large to produce, so the batch failed and was retried forever: it is
// now a rejected filing, once, and the rest of the batch goes through.
TEST_F(IntakeServiceTest, InboundEventWithABadCeIdIsRejectedOnceNotRetried) {
  const std::string uscc = UsccFor(23);
  const std::string other = UsccFor(24);
  fake_registry_.Enroll(uscc);
  fake_registry_.Enroll(other);
  InboundFilingHandler handler(registry_.get(), InboundTopics{});
  std::vector<ConsumedEvent> batch(2);
  batch[0].topic = std::string(kFilingsInboundTopic);
  batch[0].offset = 7;
  batch[0].key = uscc;
  batch[0].value = ValidFiling(uscc).SerializeAsString();
  batch[0].headers = {{"ce_id", std::string(3 << 20, 'r')}};
  batch[1] = batch[0];
  batch[1].offset = 8;
  batch[1].key = other;
  batch[1].value = ValidFiling(other).SerializeAsString();
  batch[1].headers = {{"ce_id", "upstream-24"}};

  RecordingOutput output;
  ASSERT_TRUE(handler.HandleBatch(batch, output).ok());
  EXPECT_THAT(output.dead_letters, SizeIs(0));
  ASSERT_THAT(output.emitted, SizeIs(2));
  const OutgoingEvent& rejected = output.emitted[0];
  EXPECT_EQ(rejected.topic, kFilingsRejectedTopic);
  EXPECT_EQ(rejected.key, uscc);
  EXPECT_LT(rejected.value.size(), 4096u);  // the 3 MiB id is not carried along
  v1::RejectedFiling rejection;
  ASSERT_TRUE(rejection.ParseFromString(rejected.value));
  ASSERT_EQ(rejection.violations_size(), 1);
  EXPECT_EQ(rejection.violations(0).reason(), "REQUEST_ID_FORMAT");
  EXPECT_EQ(rejection.violations(0).field(), "request_id");
  EXPECT_THAT(rejection.violations(0).message(), HasSubstr("ce_id"));
  EXPECT_THAT(rejection.violations(0).message(), HasSubstr("3145728 bytes"));

  EXPECT_EQ(output.emitted[1].topic, kFilingsTopic);
  v1::AcceptedFiling accepted;
  ASSERT_TRUE(accepted.ParseFromString(output.emitted[1].value));
  EXPECT_EQ(accepted.request_id(), "upstream-24");
}

TEST_F(IntakeServiceTest, BulkStreamWhoseClientStopsReadingIsCutOff) {
  StartIntake({}, {.write_timeout = absl::Seconds(1)});
  const std::string method = "/stip.v1.IntakeService/SubmitFilings";
  const double cancelled_before = HandledCalls(method, "CANCELLED");
  // A connection whose flow-control window stays at its initial 64 KiB (no BDP probing).
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto stub = v1::IntakeService::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));
  auto stream = stub->SubmitFilings(&context);
  // Small requests, each refused with a response of several violations: 400 of them are far
  // more than the window holds.
  constexpr int kRequests = 400;
  for (int i = 0; i < kRequests; ++i) {
    v1::SubmitFilingsRequest request;
    request.set_request_id(absl::StrCat("unread-", i));
    request.mutable_filing()->set_revision(1);
    ASSERT_TRUE(stream->Write(request));
  }
  stream->WritesDone();
  // The client reads nothing until the server has given up on it (or a generous bound).
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (HandledCalls(method, "CANCELLED") <= cancelled_before && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_GT(HandledCalls(method, "CANCELLED"), cancelled_before)
      << "the handler still waits for a client that does not read";
  int read = 0;
  v1::SubmitFilingsResponse response;
  while (stream->Read(&response)) ++read;
  EXPECT_LT(read, kRequests);
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// A request within the gRPC message limit can still make an event over the event log's
// (1,000,000 bytes), with fields this server does not know. It was told UNAVAILABLE, "retry
// with the same request_id", forever, and in a bulk stream every filing of its batch was too.
TEST_F(IntakeServiceTest, FilingTooLargeToPublishIsRefusedAloneAndNamed) {
  const std::string uscc = UsccFor(30);
  fake_registry_.Enroll(uscc);
  fake_registry_.Enroll(UsccFor(31));
  fake_registry_.Enroll(UsccFor(32));
  v1::AnnualFiling oversized = ValidFiling(uscc);
  oversized.GetReflection()
      ->MutableUnknownFields(&oversized)
      ->AddLengthDelimited(999, std::string(1'010'000, 'x'));

  v1::SubmitFilingResponse response;
  const grpc::Status status = Submit("too-large", oversized, &response);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("over the limit of 1000000 bytes"));
  const google::rpc::BadRequest bad_request = BadRequestOf(status);
  ASSERT_THAT(bad_request.field_violations(), SizeIs(1));
  EXPECT_EQ(bad_request.field_violations(0).field(), "filing");
  EXPECT_THAT(bad_request.field_violations(0).description(), HasSubstr("FILING_TOO_LARGE"));

  // In a bulk stream, the filings beside it are filed.
  grpc::ClientContext context;
  auto stream = stub_->SubmitFilings(&context);
  const std::vector<std::pair<std::string, v1::AnnualFiling>> requests = {
      {"beside-1", ValidFiling(UsccFor(31))},
      {"too-large-2", oversized},
      {"beside-2", ValidFiling(UsccFor(32))}};
  for (const auto& [request_id, filing] : requests) {
    v1::SubmitFilingsRequest request;
    request.set_request_id(request_id);
    *request.mutable_filing() = filing;
    ASSERT_TRUE(stream->Write(request));
  }
  stream->WritesDone();
  std::map<std::string, v1::SubmitFilingsResponse> answers;
  v1::SubmitFilingsResponse answer;
  while (stream->Read(&answer)) answers[answer.request_id()] = answer;
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_THAT(answers, SizeIs(3));
  EXPECT_EQ(answers["beside-1"].error_code(), 0) << answers["beside-1"].error_message();
  EXPECT_EQ(answers["beside-2"].error_code(), 0) << answers["beside-2"].error_message();
  EXPECT_EQ(answers["too-large-2"].error_code(),
            static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  ASSERT_THAT(answers["too-large-2"].violations(), SizeIs(1));
  EXPECT_EQ(answers["too-large-2"].violations(0).reason(), "FILING_TOO_LARGE");
  EXPECT_THAT(Published(), SizeIs(2));
}

// The idempotency cache holds at most --idempotency-max-bytes, whatever the number of
// requests: with room for fewer than 100 entries of long request_ids, the oldest are
// forgotten (their retry is filed again, as after a restart) and the newest remembered.
TEST_F(IntakeServiceTest, IdempotencyCacheIsBoundedInBytes) {
  StartIntake({.max_requests = 100000, .max_bytes = 64 * 1024});
  constexpr int kFilings = 100;  // each entry takes over 1 KiB with a 128-character id
  auto request_id = [](int i) { return absl::StrFormat("%0128d", i); };
  for (int i = 0; i < kFilings; ++i) {
    fake_registry_.Enroll(UsccFor(100 + i));
    v1::SubmitFilingResponse response;
    ASSERT_TRUE(Submit(request_id(i), ValidFiling(UsccFor(100 + i)), &response).ok());
  }
  ASSERT_THAT(Published(), SizeIs(kFilings));

  v1::SubmitFilingResponse response;
  ASSERT_TRUE(
      Submit(request_id(kFilings - 1), ValidFiling(UsccFor(100 + kFilings - 1)), &response).ok());
  EXPECT_THAT(Published(), SizeIs(kFilings)) << "the newest request was forgotten";
  ASSERT_TRUE(Submit(request_id(0), ValidFiling(UsccFor(100)), &response).ok());
  EXPECT_THAT(Published(), SizeIs(kFilings + 1)) << "the oldest request is still remembered";
}

}  // namespace
}  // namespace stip::intake
