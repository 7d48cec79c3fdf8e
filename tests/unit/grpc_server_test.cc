#include "services/common/grpc_server.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "google/protobuf/unknown_field_set.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/error_details.h"
#include "gtest/gtest.h"
#include "prometheus/metric_family.h"
#include "services/common/health.h"
#include "services/common/logging.h"
#include "services/common/metrics.h"
#include "services/common/sqlite_db.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"
#include "stip/v1/assessment_service.grpc.pb.h"
#include "tests/support/test_environment.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>

namespace stip {
namespace {

using ::stip::testing::TempDir;
using ::testing::HasSubstr;

constexpr char kEvaluateFiling[] = "/stip.v1.AssessmentService/EvaluateFiling";
constexpr char kGetPolicy[] = "/stip.v1.AssessmentService/GetPolicy";

// EvaluateFiling answers OK; GetPolicy refuses with field violations; ListPolicies reports
// the effective deadline it saw, in milliseconds, as its next_page_token.
class TestAssessmentService final : public v1::AssessmentService::Service {
 public:
  explicit TestAssessmentService(absl::Duration default_deadline)
      : default_deadline_(default_deadline) {}

  grpc::Status EvaluateFiling(grpc::ServerContext*, const v1::EvaluateFilingRequest*,
                              v1::EvaluateFilingResponse*) override {
    return StatusToGrpc(absl::OkStatus());
  }

  grpc::Status GetPolicy(grpc::ServerContext*, const v1::GetPolicyRequest* request,
                         v1::GetPolicyResponse*) override {
    if (request->policy_id() == "missing") {
      return StatusToGrpc(absl::NotFoundError("no policy \"missing\""));
    }
    if (request->policy_id() == "many") return ValidateFilingLike(request->version());
    return StatusToGrpc(InvalidArgumentWithViolations(
        "the request is not valid",
        {{"policy_id", "must be a slug"}, {"version", "must not be negative"}}));
  }

  grpc::Status ValidateFilingLike(int violations) {
    std::vector<FieldViolation> list;
    for (int i = 0; i < violations; ++i) {
      list.push_back({absl::StrCat("filing.projects[", i, "].title"),
                      "must hold 1 to 200 characters without control characters"});
    }
    return StatusToGrpc(InvalidArgumentWithViolations(std::string(3000, 'm'), list));
  }

  grpc::Status ListPolicies(grpc::ServerContext* context, const v1::ListPoliciesRequest*,
                            v1::ListPoliciesResponse* response) override {
    const absl::Duration left = EffectiveDeadline(*context, default_deadline_) - absl::Now();
    response->set_next_page_token(absl::StrCat(absl::ToInt64Milliseconds(left)));
    // What a call to another service made from here would get.
    const std::unique_ptr<grpc::ClientContext> downstream =
        DownstreamContext(*context, default_deadline_);
    const absl::Duration downstream_left = absl::FromChrono(downstream->deadline()) - absl::Now();
    response->add_policies()->set_description(
        absl::StrCat(absl::ToInt64Milliseconds(downstream_left)));
    return grpc::Status::OK;
  }

 private:
  absl::Duration default_deadline_;
};

GrpcServerOptions TestOptions() {
  GrpcServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.limits.max_message_bytes = 64 * 1024;
  options.limits.default_rpc_deadline = absl::Seconds(7);
  return options;
}

std::string Target(const GrpcServer& server) { return absl::StrCat("127.0.0.1:", server.port()); }

// A unary call through the generic stub, for services we have no generated code for.
grpc::Status GenericUnaryCall(const std::shared_ptr<grpc::Channel>& channel,
                              const std::string& method, const std::string& request,
                              std::string* response) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request_buffer, &response_buffer,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  grpc::Status status = done.get_future().get();
  if (status.ok() && response != nullptr) {
    std::vector<grpc::Slice> slices;
    (void)response_buffer.Dump(&slices);
    response->clear();
    for (const grpc::Slice& piece : slices) {
      response->append(reinterpret_cast<const char*>(piece.begin()), piece.size());
    }
  }
  return status;
}

// grpc.health.v1.Health/Check for `service`: 1 SERVING, 2 NOT_SERVING, -1 on error.
int HealthStatus(const std::shared_ptr<grpc::Channel>& channel, const std::string& service = "") {
  // HealthCheckRequest { string service = 1; }
  std::string request;
  if (!service.empty()) {
    request.push_back(0x0a);
    request.push_back(static_cast<char>(service.size()));
    request += service;
  }
  std::string response;
  const grpc::Status status =
      GenericUnaryCall(channel, "/grpc.health.v1.Health/Check", request, &response);
  if (!status.ok()) return -1;
  // HealthCheckResponse { ServingStatus status = 1; }
  google::protobuf::UnknownFieldSet fields;
  if (!fields.ParseFromString(response)) return -1;
  for (int i = 0; i < fields.field_count(); ++i) {
    if (fields.field(i).number() == 1) return static_cast<int>(fields.field(i).varint());
  }
  return 0;  // UNKNOWN, the default, is not on the wire
}

double CounterValue(const std::string& family, const std::map<std::string, std::string>& labels) {
  for (const prometheus::MetricFamily& metrics : MetricsRegistry().Collect()) {
    if (metrics.name != family) continue;
    for (const prometheus::ClientMetric& metric : metrics.metric) {
      std::map<std::string, std::string> have;
      for (const auto& label : metric.label) have[label.name] = label.value;
      bool match = true;
      for (const auto& [name, value] : labels) match = match && have[name] == value;
      if (!match) continue;
      if (metrics.type == prometheus::MetricType::Counter) return metric.counter.value;
      if (metrics.type == prometheus::MetricType::Histogram) {
        return static_cast<double>(metric.histogram.sample_count);
      }
    }
  }
  return 0;
}

// GET http://127.0.0.1:port/path with a plain socket; the whole response.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return "";
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  (void)write(fd, request.data(), request.size());
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  close(fd);
  return response;
}

class GrpcServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = StartGrpcServer(TestOptions(), {&service_}, &health_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ = MakeChannel(Target(*server_), TestOptions().limits);
    stub_ = v1::AssessmentService::NewStub(channel_);
  }

  TestAssessmentService service_{absl::Seconds(7)};
  HealthReporter health_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AssessmentService::Stub> stub_;
};

TEST_F(GrpcServerTest, ListensOnThePortItReports) {
  EXPECT_GT(server_->port(), 0);
  grpc::ClientContext context;
  v1::EvaluateFilingRequest request;
  v1::EvaluateFilingResponse response;
  EXPECT_TRUE(stub_->EvaluateFiling(&context, request, &response).ok());
}

TEST_F(GrpcServerTest, HealthFollowsTheReporter) {
  EXPECT_EQ(HealthStatus(channel_), 1);
  health_.SetServing(false, "kafka");
  EXPECT_EQ(HealthStatus(channel_), 2);
  health_.SetServing(false, "database");
  health_.SetServing(true, "kafka");
  EXPECT_EQ(HealthStatus(channel_), 2);  // the database still holds it
  health_.SetServing(true, "database");
  EXPECT_EQ(HealthStatus(channel_), 1);
}

TEST_F(GrpcServerTest, ShutdownReportsNotServingAndStopsAcceptingCalls) {
  server_->Shutdown(absl::Now() + absl::Seconds(1));
  server_->Shutdown(absl::Now());  // idempotent
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::EvaluateFilingResponse response;
  EXPECT_FALSE(stub_->EvaluateFiling(&context, {}, &response).ok());
}

TEST_F(GrpcServerTest, MessageOverTheLimitIsRefused) {
  v1::EvaluateFilingRequest request;
  request.mutable_filing()->set_enterprise_name(std::string(100 * 1024, 'x'));
  // A plain channel, which would send it: the server refuses it.
  auto stub = v1::AssessmentService::NewStub(
      grpc::CreateChannel(Target(*server_), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::EvaluateFilingResponse response;
  const grpc::Status status = stub->EvaluateFiling(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();

  // MakeChannel's channel refuses to send it in the first place.
  grpc::ClientContext context2;
  EXPECT_EQ(stub_->EvaluateFiling(&context2, request, &response).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);

  // Under the limit passes.
  request.mutable_filing()->set_enterprise_name(std::string(32 * 1024, 'x'));
  grpc::ClientContext context3;
  EXPECT_TRUE(stub_->EvaluateFiling(&context3, request, &response).ok());
}

TEST_F(GrpcServerTest, CallsAreCountedByMethodAndCode) {
  const double ok_before =
      CounterValue("stip_grpc_server_handled_total", {{"method", kEvaluateFiling}, {"code", "OK"}});
  const double invalid_before = CounterValue(
      "stip_grpc_server_handled_total", {{"method", kGetPolicy}, {"code", "INVALID_ARGUMENT"}});
  const double not_found_before = CounterValue("stip_grpc_server_handled_total",
                                               {{"method", kGetPolicy}, {"code", "NOT_FOUND"}});
  const double timed_before =
      CounterValue("stip_grpc_server_handling_seconds", {{"method", kEvaluateFiling}});
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext context;
    v1::EvaluateFilingResponse response;
    ASSERT_TRUE(stub_->EvaluateFiling(&context, {}, &response).ok());
  }
  {
    grpc::ClientContext context;
    v1::GetPolicyResponse response;
    EXPECT_FALSE(stub_->GetPolicy(&context, {}, &response).ok());
  }
  {
    grpc::ClientContext context;
    v1::GetPolicyRequest request;
    request.set_policy_id("missing");
    v1::GetPolicyResponse response;
    EXPECT_EQ(stub_->GetPolicy(&context, request, &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  EXPECT_EQ(
      CounterValue("stip_grpc_server_handled_total", {{"method", kEvaluateFiling}, {"code", "OK"}}),
      ok_before + 3);
  EXPECT_EQ(CounterValue("stip_grpc_server_handled_total",
                         {{"method", kGetPolicy}, {"code", "INVALID_ARGUMENT"}}),
            invalid_before + 1);
  EXPECT_EQ(CounterValue("stip_grpc_server_handled_total",
                         {{"method", kGetPolicy}, {"code", "NOT_FOUND"}}),
            not_found_before + 1);
  EXPECT_EQ(CounterValue("stip_grpc_server_handling_seconds", {{"method", kEvaluateFiling}}),
            timed_before + 3);
}

TEST_F(GrpcServerTest, MetricsAreServedOnTheAdminPort) {
  {
    grpc::ClientContext context;
    v1::GetPolicyResponse response;
    EXPECT_FALSE(stub_->GetPolicy(&context, {}, &response).ok());
  }
  auto metrics = MetricsServer::Start("127.0.0.1:0");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const std::string page = HttpGet((*metrics)->port(), "/metrics");
  EXPECT_THAT(page, HasSubstr("200 OK"));
  EXPECT_THAT(page,
              HasSubstr(absl::StrCat("stip_grpc_server_handled_total{code=\"INVALID_ARGUMENT\","
                                     "method=\"",
                                     kGetPolicy, "\"}")));
  EXPECT_THAT(page, HasSubstr(absl::StrCat("stip_grpc_server_handling_seconds_bucket{method=\"",
                                           kGetPolicy, "\",le=\"0.005\"}")));
  EXPECT_THAT(page, HasSubstr("stip_health_serving"));
}

TEST_F(GrpcServerTest, BadRequestDetailsRoundTrip) {
  grpc::ClientContext context;
  v1::GetPolicyResponse response;
  const grpc::Status status = stub_->GetPolicy(&context, {}, &response);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "the request is not valid");

  google::rpc::Status details;
  ASSERT_TRUE(grpc::ExtractErrorDetails(status, &details).ok());
  EXPECT_EQ(details.code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  ASSERT_EQ(details.details_size(), 1);
  google::rpc::BadRequest bad_request;
  ASSERT_TRUE(details.details(0).UnpackTo(&bad_request));
  ASSERT_EQ(bad_request.field_violations_size(), 2);
  EXPECT_EQ(bad_request.field_violations(0).field(), "policy_id");
  EXPECT_EQ(bad_request.field_violations(0).description(), "must be a slug");
  EXPECT_EQ(bad_request.field_violations(1).field(), "version");

  // And back into an absl::Status, as a service calling another one sees it.
  const absl::Status back = GrpcToStatus(status);
  EXPECT_EQ(back.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FieldViolations(back),
            (std::vector<FieldViolation>{{"policy_id", "must be a slug"},
                                         {"version", "must not be negative"}}));
}

TEST_F(GrpcServerTest, ManyViolationsStayWithinWhatClientsAccept) {
  // A plain channel, with gRPC's default 8 KiB limit on the trailers it receives.
  auto stub = v1::AssessmentService::NewStub(
      grpc::CreateChannel(Target(*server_), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::GetPolicyRequest request;
  request.set_policy_id("many");
  request.set_version(500);
  v1::GetPolicyResponse response;
  const grpc::Status status = stub->GetPolicy(&context, request, &response);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_LE(status.error_message().size(), 1024u);
  EXPECT_LE(status.error_details().size(), 4096u);
  google::rpc::Status details;
  ASSERT_TRUE(grpc::ExtractErrorDetails(status, &details).ok());
  google::rpc::BadRequest bad_request;
  ASSERT_TRUE(details.details(0).UnpackTo(&bad_request));
  ASSERT_GT(bad_request.field_violations_size(), 10);
  EXPECT_EQ(bad_request.field_violations(0).field(), "filing.projects[0].title");
  const auto& last = bad_request.field_violations(bad_request.field_violations_size() - 1);
  EXPECT_THAT(last.description(),
              HasSubstr(absl::StrCat(500 - (bad_request.field_violations_size() - 1),
                                     " more violations not shown")));
}

TEST(StatusToGrpcTest, LongMessageIsCutOnACharacterBoundary) {
  std::string message;
  for (int i = 0; i < 600; ++i) message += "园";  // 3 bytes each
  const grpc::Status status = StatusToGrpc(absl::InvalidArgumentError(message));
  EXPECT_LE(status.error_message().size(), 1024u);
  EXPECT_TRUE(absl::EndsWith(status.error_message(), "园..."));
}

TEST_F(GrpcServerTest, DefaultDeadlineAppliesWhenTheCallerSetNone) {
  {
    grpc::ClientContext context;
    v1::ListPoliciesResponse response;
    ASSERT_TRUE(stub_->ListPolicies(&context, {}, &response).ok());
    const int64_t left_ms = std::stoll(response.next_page_token());
    EXPECT_GT(left_ms, 6000);
    EXPECT_LE(left_ms, 7000);
    const int64_t downstream_ms = std::stoll(response.policies(0).description());
    EXPECT_GT(downstream_ms, 6000);
    EXPECT_LE(downstream_ms, 7000);
  }
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::ListPoliciesResponse response;
    ASSERT_TRUE(stub_->ListPolicies(&context, {}, &response).ok());
    const int64_t left_ms = std::stoll(response.next_page_token());
    EXPECT_GT(left_ms, 1000);
    EXPECT_LE(left_ms, 2100);  // the wire carries a timeout, rounded up
    const int64_t downstream_ms = std::stoll(response.policies(0).description());
    EXPECT_GT(downstream_ms, 1000);
    EXPECT_LE(downstream_ms, 2100);
  }
}

TEST_F(GrpcServerTest, ReflectionIsOffByDefault) {
  std::string response;
  // ServerReflectionRequest { list_services = 7: "" }
  const grpc::Status status =
      GenericUnaryCall(channel_, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                       std::string("\x3a\x00", 2), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

TEST(GrpcServerReflectionTest, ReflectionListsTheServicesWhenEnabled) {
  TestAssessmentService service(absl::Seconds(1));
  GrpcServerOptions options = TestOptions();
  options.enable_reflection = true;
  auto server = StartGrpcServer(options, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = MakeChannel(Target(**server), options.limits);
  std::string response;
  const grpc::Status status =
      GenericUnaryCall(channel, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                       std::string("\x3a\x00", 2), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(response, HasSubstr("stip.v1.AssessmentService"));
  EXPECT_THAT(response, HasSubstr("grpc.health.v1.Health"));

  // Another server of the same process, without reflection, has none.
  auto plain = StartGrpcServer(TestOptions(), {&service});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(GenericUnaryCall(MakeChannel(Target(**plain), options.limits),
                             "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                             std::string("\x3a\x00", 2), &response)
                .error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

TEST(GrpcServerStartTest, WithoutReporterServesUntilShutdownAndNamesServices) {
  TestAssessmentService service(absl::Seconds(1));
  GrpcServerOptions options = TestOptions();
  options.health_service_names = {"stip.v1.AssessmentService"};
  auto server = StartGrpcServer(options, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = MakeChannel(Target(**server), options.limits);
  EXPECT_EQ(HealthStatus(channel), 1);
  EXPECT_EQ(HealthStatus(channel, "stip.v1.AssessmentService"), 1);
  EXPECT_EQ(HealthStatus(channel, "stip.v1.NoSuchService"), -1);  // NOT_FOUND
}

TEST(GrpcServerStartTest, BusyPortIsReportedWithTheAddress) {
  TestAssessmentService service(absl::Seconds(1));
  auto first = StartGrpcServer(TestOptions(), {&service});
  ASSERT_TRUE(first.ok()) << first.status();
  GrpcServerOptions options = TestOptions();
  options.listen_address = Target(**first);
  TestAssessmentService other(absl::Seconds(1));
  auto second = StartGrpcServer(options, {&other});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr(options.listen_address));
}

TEST(GrpcServerStartTest, NoServicesIsRefused) {
  EXPECT_EQ(StartGrpcServer(TestOptions(), {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StatusToGrpcTest, MapsCodesAndMessages) {
  EXPECT_TRUE(StatusToGrpc(absl::OkStatus()).ok());
  const grpc::Status not_found = StatusToGrpc(absl::NotFoundError("no such park"));
  EXPECT_EQ(not_found.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(not_found.error_message(), "no such park");
  EXPECT_TRUE(not_found.error_details().empty());
  EXPECT_EQ(StatusToGrpc(absl::UnavailableError("x")).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(StatusToGrpc(absl::FailedPreconditionError("x")).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(StatusToGrpc(absl::DeadlineExceededError("x")).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(StatusToGrpc(absl::UnauthenticatedError("x")).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GrpcToStatus(grpc::Status(grpc::StatusCode::ABORTED, "y")), absl::AbortedError("y"));
}

// The default logger replaced by one writing JSON lines to memory, for the test's lifetime.
class CapturedDefaultLog {
 public:
  CapturedDefaultLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    sink->set_formatter(MakeLogFormatter(LogFormat::kJson));
    auto logger = std::make_shared<spdlog::logger>("stip-test", sink);
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  ~CapturedDefaultLog() { spdlog::set_default_logger(previous_); }
  std::string Text() const { return out_.str(); }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream out_;
};

// The error id of a hidden message ("...; error id 7f3a09c2d4e1b658"), or "".
std::string ErrorId(const std::string& message) {
  std::smatch match;
  if (!std::regex_search(message, match, std::regex("error id ([0-9a-f]{16})$"))) return "";
  return match[1];
}

TEST(StatusToGrpcTest, StoreErrorReachesTheCallerAsAGenericMessageWithAnIdThatIsLogged) {
  CapturedDefaultLog log;
  const absl::Status store_error = absl::InternalError(
      "SQLite file /var/lib/stip/registry.db: statement 'SELECT SUM(gross_revenue_fen) FROM "
      "filings WHERE park_id = $1' failed: integer overflow");
  const grpc::Status status = StatusToGrpc(store_error);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_THAT(status.error_message(), ::testing::StartsWith("internal error; error id "));
  EXPECT_THAT(status.error_message(), ::testing::Not(HasSubstr("/var/lib")));
  EXPECT_THAT(status.error_message(), ::testing::Not(HasSubstr("SELECT")));
  EXPECT_TRUE(status.error_details().empty());
  const std::string id = ErrorId(status.error_message());
  ASSERT_FALSE(id.empty()) << status.error_message();
  // One line, at level error, with the id and the whole detail.
  const std::string text = log.Text();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  EXPECT_THAT(text, HasSubstr(absl::StrCat("\"error_id\":\"", id, "\"")));
  EXPECT_THAT(text, HasSubstr("\"level\":\"error\""));
  EXPECT_THAT(text, HasSubstr("/var/lib/stip/registry.db"));
  EXPECT_THAT(text, HasSubstr("SELECT SUM(gross_revenue_fen)"));
  // Each failure gets an id of its own.
  EXPECT_NE(ErrorId(StatusToGrpc(store_error).error_message()), id);
}

TEST(StatusToGrpcTest, BrokerAndDatabaseAddressesAreNotShownToCallers) {
  CapturedDefaultLog log;
  const grpc::Status unavailable = StatusToGrpc(absl::UnavailableError(
      "PostgreSQL stip@db.internal:5432/stip: cannot connect: connection refused"));
  EXPECT_EQ(unavailable.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(unavailable.error_message(), ::testing::StartsWith("the service cannot complete"));
  EXPECT_THAT(unavailable.error_message(), ::testing::Not(HasSubstr("db.internal")));
  EXPECT_THAT(log.Text(), HasSubstr(ErrorId(unavailable.error_message())));
  EXPECT_THAT(log.Text(), HasSubstr("stip@db.internal:5432/stip"));
}

TEST(StatusToGrpcTest, StoreErrorsKeepTheirCodeButNotTheirMessageWhateverTheCode) {
  CapturedDefaultLog log;
  // A read-only database file is FAILED_PRECONDITION, a unique violation ALREADY_EXISTS:
  // codes our validation uses too, but these messages name the file and the statement.
  const grpc::Status read_only = StatusToGrpc(SqliteStatus(SQLITE_READONLY, "/var/lib/stip/stip.db",
                                                           "statement 'INSERT INTO filings'",
                                                           "attempt to write a readonly database"));
  EXPECT_EQ(read_only.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(read_only.error_message(), ::testing::Not(HasSubstr("/var/lib")));
  EXPECT_FALSE(ErrorId(read_only.error_message()).empty()) << read_only.error_message();
  EXPECT_THAT(log.Text(), HasSubstr(ErrorId(read_only.error_message())));

  const grpc::Status marked = StatusToGrpc(WithInternalDetail(
      absl::AlreadyExistsError("duplicate key value violates unique constraint \"parks_pkey\"")));
  EXPECT_EQ(marked.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(marked.error_message(), ::testing::Not(HasSubstr("parks_pkey")));
}

TEST(StatusToGrpcTest, ValidationMessagesAndDetailsReachTheCallerUnchanged) {
  CapturedDefaultLog log;
  const absl::Status invalid =
      InvalidArgumentWithViolations("the filing is not valid", {{"filing.uscc", "18 characters"}});
  EXPECT_EQ(ForCaller(invalid), invalid);
  const grpc::Status status = StatusToGrpc(invalid);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "the filing is not valid");
  EXPECT_FALSE(status.error_details().empty());
  EXPECT_EQ(
      StatusToGrpc(absl::FailedPreconditionError("revision 1 is not newer than 2")).error_message(),
      "revision 1 is not newer than 2");
  EXPECT_EQ(log.Text(), "");
}

TEST_F(GrpcServerTest, AnUndecodableRequestIsInvalidArgumentNotInternal) {
  // EvaluateFilingRequest { AnnualFiling filing = 1 { string uscc = 1 } } with uscc holding
  // bytes that are not UTF-8, which protobuf refuses to parse in a proto3 string.
  v1::EvaluateFilingRequest request;
  request.mutable_filing()->set_uscc("AAAA");
  std::string bytes = request.SerializeAsString();
  bytes.replace(bytes.find("AAAA"), 4, "\xff\xfe\xc3\x28");
  const double undecodable_before =
      CounterValue("stip_grpc_server_undecodable_requests_total", {{"method", kEvaluateFiling}});
  const double invalid_before =
      CounterValue("stip_grpc_server_handled_total",
                   {{"method", kEvaluateFiling}, {"code", "INVALID_ARGUMENT"}});
  std::string response;
  const grpc::Status status = GenericUnaryCall(channel_, kEvaluateFiling, bytes, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("cannot be decoded"));
  // Counted, under the code the caller got.
  EXPECT_EQ(
      CounterValue("stip_grpc_server_undecodable_requests_total", {{"method", kEvaluateFiling}}),
      undecodable_before + 1);
  EXPECT_EQ(CounterValue("stip_grpc_server_handled_total",
                         {{"method", kEvaluateFiling}, {"code", "INVALID_ARGUMENT"}}),
            invalid_before + 1);
}

TEST(StatusToGrpcTest, FieldViolationsOfOtherStatusesAreEmpty) {
  EXPECT_TRUE(FieldViolations(absl::InvalidArgumentError("plain")).empty());
  EXPECT_TRUE(FieldViolations(absl::OkStatus()).empty());
}

// The health port: readiness, liveness and nothing else, plaintext, for Kubernetes' probes.

constexpr char kServiceName[] = "stip.v1.AssessmentService";
constexpr char kServerReflection[] =
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

// EvaluateFiling waits until the test releases it (or the call is cancelled), so that a test
// can hold Shutdown in its drain. One call per service.
class BlockingAssessmentService final : public v1::AssessmentService::Service {
 public:
  grpc::Status EvaluateFiling(grpc::ServerContext* context, const v1::EvaluateFilingRequest*,
                              v1::EvaluateFilingResponse*) override {
    entered.Notify();
    while (!release.WaitForNotificationWithTimeout(absl::Milliseconds(10))) {
      if (context->IsCancelled()) return grpc::Status::CANCELLED;
    }
    return grpc::Status::OK;
  }

  absl::Notification entered;
  absl::Notification release;
};

// Polls HealthStatus(channel, service) until it is `want` (-1: anything but SERVING); the last
// status seen.
int HealthStatusBecomes(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                        int want, absl::Duration timeout = absl::Seconds(60)) {
  const absl::Time deadline = absl::Now() + timeout;
  int status = HealthStatus(channel, service);
  while (status != want && (want != -1 || status == 1) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
    status = HealthStatus(channel, service);
  }
  return status;
}

class GrpcServerHealthPortTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GrpcServerOptions options = TestOptions();
    options.health_listen_address = "127.0.0.1:0";
    options.health_service_names = {kServiceName};
    auto server = StartGrpcServer(options, {&service_}, &health_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->health_port(), 0);
    ASSERT_NE(server_->health_port(), server_->port());
    channel_ = MakeChannel(Target(*server_), options.limits);
    probes_ = MakeChannel(absl::StrCat("127.0.0.1:", server_->health_port()), options.limits);
  }

  BlockingAssessmentService service_;
  HealthReporter health_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::shared_ptr<grpc::Channel> probes_;
};

TEST_F(GrpcServerHealthPortTest, AnswersReadinessLivenessAndTheServiceNames) {
  EXPECT_EQ(HealthStatus(probes_, ""), 1);
  EXPECT_EQ(HealthStatus(probes_, kLivenessHealthService), 1);
  EXPECT_EQ(HealthStatus(probes_, kServiceName), 1);
  EXPECT_EQ(HealthStatus(probes_, "stip.v1.NoSuchService"), -1);  // NOT_FOUND
}

TEST_F(GrpcServerHealthPortTest, ReadinessFollowsTheReporterAndLivenessDoesNot) {
  health_.SetServing(false, "kafka");
  EXPECT_EQ(HealthStatus(probes_, ""), 2);
  EXPECT_EQ(HealthStatus(probes_, kServiceName), 2);
  EXPECT_EQ(HealthStatus(probes_, kLivenessHealthService), 1);  // waiting for Kafka is alive
  // The main port's names follow readiness too.
  EXPECT_EQ(HealthStatus(channel_, ""), 2);
  EXPECT_EQ(HealthStatus(channel_, kServiceName), 2);

  health_.SetServing(true, "kafka");
  EXPECT_EQ(HealthStatus(probes_, ""), 1);
  EXPECT_EQ(HealthStatus(probes_, kServiceName), 1);
  EXPECT_EQ(HealthStatus(probes_, kLivenessHealthService), 1);
  EXPECT_EQ(HealthStatus(channel_, ""), 1);
  EXPECT_EQ(HealthStatus(channel_, kServiceName), 1);
}

TEST_F(GrpcServerHealthPortTest, ServesNothingButHealth) {
  std::string response;
  EXPECT_EQ(GenericUnaryCall(probes_, kEvaluateFiling, "", &response).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(GenericUnaryCall(probes_, kGetPolicy, "", &response).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(GenericUnaryCall(probes_, kServerReflection, std::string("\x3a\x00", 2), &response)
                .error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(GrpcServerHealthPortTest, ShutdownIsNotReadyWhileDrainingButAliveUntilItEnds) {
  auto stub = v1::AssessmentService::NewStub(channel_);
  std::future<grpc::Status> call = std::async(std::launch::async, [&stub] {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::EvaluateFilingResponse response;
    return stub->EvaluateFiling(&context, {}, &response);
  });
  ASSERT_TRUE(service_.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));

  std::future<void> shutdown = std::async(
      std::launch::async, [this] { server_->Shutdown(absl::Now() + absl::Seconds(15)); });
  // Draining: the call in hand holds Shutdown; probes see not ready, but alive.
  EXPECT_EQ(HealthStatusBecomes(probes_, "", 2), 2);
  EXPECT_EQ(HealthStatus(probes_, kServiceName), 2);
  EXPECT_EQ(HealthStatus(probes_, kLivenessHealthService), 1);
  EXPECT_NE(HealthStatusBecomes(channel_, "", -1), 1);  // refused, or NOT_SERVING
  // The reporter recovering does not make a draining server ready again.
  health_.SetServing(false, "kafka");
  health_.SetServing(true, "kafka");
  EXPECT_EQ(HealthStatus(probes_, ""), 2);
  EXPECT_EQ(shutdown.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);

  service_.release.Notify();
  ASSERT_EQ(shutdown.wait_for(std::chrono::seconds(15)), std::future_status::ready);
  const grpc::Status drained = call.get();
  EXPECT_TRUE(drained.ok()) << drained.error_message();
  // Shut down: nothing on either port says SERVING any more.
  EXPECT_NE(HealthStatus(probes_, ""), 1);
  EXPECT_NE(HealthStatus(probes_, kLivenessHealthService), 1);
  EXPECT_NE(HealthStatus(channel_, ""), 1);
}

TEST(GrpcServerStartTest, AProcessNotReadyFromTheStartIsAlive) {
  HealthReporter health;
  health.SetServing(false, "kafka");  // waiting for the broker before the server starts
  TestAssessmentService service(absl::Seconds(1));
  GrpcServerOptions options = TestOptions();
  options.health_listen_address = "127.0.0.1:0";
  options.health_service_names = {kServiceName};
  auto server = StartGrpcServer(options, {&service}, &health);
  ASSERT_TRUE(server.ok()) << server.status();
  auto probes = MakeChannel(absl::StrCat("127.0.0.1:", (*server)->health_port()), options.limits);
  EXPECT_EQ(HealthStatus(probes, ""), 2);
  EXPECT_EQ(HealthStatus(probes, kServiceName), 2);
  EXPECT_EQ(HealthStatus(probes, kLivenessHealthService), 1);
  EXPECT_EQ(HealthStatus(MakeChannel(Target(**server), options.limits), kServiceName), 2);
  health.SetServing(true, "kafka");
  EXPECT_EQ(HealthStatus(probes, ""), 1);
}

TEST(GrpcServerStartTest, BusyHealthPortIsReportedWithTheAddress) {
  TestAssessmentService service(absl::Seconds(1));
  auto first = StartGrpcServer(TestOptions(), {&service});
  ASSERT_TRUE(first.ok()) << first.status();
  GrpcServerOptions options = TestOptions();
  options.health_listen_address = Target(**first);
  TestAssessmentService other(absl::Seconds(1));
  auto second = StartGrpcServer(options, {&other});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr(options.health_listen_address));
}

// TLS on the gRPC port. The certificates are made at test time with the openssl CLI (the
// openssl Debian package, which scripts/install-deps.sh installs).

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

// Runs `command` with the shell, appending its output to `log`; an error quoting both when
// it fails.
absl::Status RunCommand(const std::string& command, const std::filesystem::path& log) {
  const int status = std::system(absl::StrCat(command, " >>'", log.string(), "' 2>&1").c_str());
  if (status == 0) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("`", command, "` failed (status ", status, "):\n", ReadFile(log)));
}

// In `dir`: two CAs (ca, other-ca), a server certificate for localhost and 127.0.0.1 signed
// by ca (server), and client certificates signed by ca (client) and by other-ca
// (other-client); each as <name>.pem and <name>.key.
absl::Status MakeCertificates(const std::filesystem::path& dir) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0) {
    return absl::FailedPreconditionError(
        "openssl is not installed: the TLS tests make their certificates with it (install the "
        "openssl package, as scripts/install-deps.sh does)");
  }
  const std::filesystem::path log = dir / "openssl.log";
  const auto path = [&dir](const std::string& name) {
    return absl::StrCat("'", (dir / name).string(), "'");
  };
  constexpr char kNewKey[] = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  for (const std::string& ca : std::vector<std::string>{"ca", "other-ca"}) {
    absl::Status status =
        RunCommand(absl::StrCat("openssl req -x509 ", kNewKey, " -days 2 -subj /CN=stip-test-", ca,
                                " -keyout ", path(ca + ".key"), " -out ", path(ca + ".pem")),
                   log);
    if (!status.ok()) return status;
  }
  std::ofstream(dir / "server.ext") << "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                       "extendedKeyUsage=serverAuth\n";
  std::ofstream(dir / "client.ext") << "extendedKeyUsage=clientAuth\n";
  struct Leaf {
    std::string name, ca, subject, extensions;
  };
  for (const Leaf& leaf :
       {Leaf{"server", "ca", "/CN=localhost", "server.ext"},
        Leaf{"client", "ca", "/CN=stip-test-client", "client.ext"},
        Leaf{"other-client", "other-ca", "/CN=stip-test-client", "client.ext"}}) {
    absl::Status status =
        RunCommand(absl::StrCat("openssl req -new ", kNewKey, " -subj ", leaf.subject, " -keyout ",
                                path(leaf.name + ".key"), " -out ", path(leaf.name + ".csr")),
                   log);
    if (!status.ok()) return status;
    status = RunCommand(absl::StrCat("openssl x509 -req -days 2 -in ", path(leaf.name + ".csr"),
                                     " -CA ", path(leaf.ca + ".pem"), " -CAkey ",
                                     path(leaf.ca + ".key"), " -CAcreateserial -extfile ",
                                     path(leaf.extensions), " -out ", path(leaf.name + ".pem")),
                        log);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

class GrpcServerTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    *certificates_ = MakeCertificates(dir_->path());
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override { ASSERT_TRUE(certificates_->ok()) << *certificates_; }

  static std::string File(const std::string& name) { return (dir_->path() / name).string(); }

  // A TLS server on 127.0.0.1 with the server certificate, and a plaintext health port.
  GrpcServerOptions TlsOptions() const {
    GrpcServerOptions options = TestOptions();
    options.tls_cert_file = File("server.pem");
    options.tls_key_file = File("server.key");
    options.health_listen_address = "127.0.0.1:0";
    return options;
  }

  std::unique_ptr<GrpcServer> Start(const GrpcServerOptions& options) {
    auto server = StartGrpcServer(options, {&service_}, &health_);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? std::move(*server) : nullptr;
  }

  // A channel that trusts `ca` and presents the certificate `client` (<client>.pem/.key).
  static std::shared_ptr<grpc::Channel> ClientCertificateChannel(const std::string& target,
                                                                 const std::string& ca,
                                                                 const std::string& client) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadFile(File(ca + ".pem"));
    ssl.pem_cert_chain = ReadFile(File(client + ".pem"));
    ssl.pem_private_key = ReadFile(File(client + ".key"));
    return grpc::CreateChannel(target, grpc::SslCredentials(ssl));
  }

  static TempDir* dir_;
  static absl::Status* const certificates_;

  TestAssessmentService service_{absl::Seconds(1)};
  HealthReporter health_;
};

TempDir* GrpcServerTlsTest::dir_ = nullptr;
absl::Status* const GrpcServerTlsTest::certificates_ = new absl::Status();

TEST_F(GrpcServerTlsTest, AcceptsAClientThatTrustsTheCa) {
  const std::unique_ptr<GrpcServer> server = Start(TlsOptions());
  ASSERT_NE(server, nullptr);
  auto channel = MakeTlsChannel(Target(*server), TestOptions().limits, File("ca.pem"));
  ASSERT_TRUE(channel.ok()) << channel.status();
  EXPECT_EQ(HealthStatus(*channel), 1);
  auto stub = v1::AssessmentService::NewStub(*channel);
  grpc::ClientContext context;
  v1::EvaluateFilingResponse response;
  const grpc::Status status = stub->EvaluateFiling(&context, {}, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  // By name too, as the certificate says.
  auto by_name = MakeTlsChannel(absl::StrCat("localhost:", server->port()), TestOptions().limits,
                                File("ca.pem"));
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_EQ(HealthStatus(*by_name), 1);
}

TEST_F(GrpcServerTlsTest, RefusesAPlaintextClient) {
  const std::unique_ptr<GrpcServer> server = Start(TlsOptions());
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(HealthStatus(MakeChannel(Target(*server), TestOptions().limits)), -1);
}

TEST_F(GrpcServerTlsTest, AClientTrustingAnotherCaRefusesTheServer) {
  const std::unique_ptr<GrpcServer> server = Start(TlsOptions());
  ASSERT_NE(server, nullptr);
  auto channel = MakeTlsChannel(Target(*server), TestOptions().limits, File("other-ca.pem"));
  ASSERT_TRUE(channel.ok()) << channel.status();
  EXPECT_EQ(HealthStatus(*channel), -1);
}

TEST_F(GrpcServerTlsTest, HealthPortStaysPlaintext) {
  const std::unique_ptr<GrpcServer> server = Start(TlsOptions());
  ASSERT_NE(server, nullptr);
  auto probes = MakeChannel(absl::StrCat("127.0.0.1:", server->health_port()), {});
  EXPECT_EQ(HealthStatus(probes, ""), 1);
  EXPECT_EQ(HealthStatus(probes, kLivenessHealthService), 1);
}

TEST_F(GrpcServerTlsTest, MutualTlsRequiresAClientCertificateFromTheClientCa) {
  GrpcServerOptions options = TlsOptions();
  options.tls_client_ca_file = File("ca.pem");
  const std::unique_ptr<GrpcServer> server = Start(options);
  ASSERT_NE(server, nullptr);
  // With a certificate the client CA signed: accepted.
  EXPECT_EQ(HealthStatus(ClientCertificateChannel(Target(*server), "ca", "client")), 1);
  // Without one: refused.
  auto anonymous = MakeTlsChannel(Target(*server), TestOptions().limits, File("ca.pem"));
  ASSERT_TRUE(anonymous.ok()) << anonymous.status();
  EXPECT_EQ(HealthStatus(*anonymous), -1);
  // With one another CA signed: refused.
  EXPECT_EQ(HealthStatus(ClientCertificateChannel(Target(*server), "ca", "other-client")), -1);
}

TEST_F(GrpcServerTlsTest, HalfAConfigurationIsRefusedNamingTheFlags) {
  GrpcServerOptions cert_only = TestOptions();
  cert_only.tls_cert_file = File("server.pem");
  absl::Status status = StartGrpcServer(cert_only, {&service_}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("--tls-cert-file"));
  EXPECT_THAT(status.message(), HasSubstr("--tls-key-file"));

  GrpcServerOptions key_only = TestOptions();
  key_only.tls_key_file = File("server.key");
  status = StartGrpcServer(key_only, {&service_}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("--tls-cert-file"));

  GrpcServerOptions client_ca_only = TestOptions();
  client_ca_only.tls_client_ca_file = File("ca.pem");
  status = StartGrpcServer(client_ca_only, {&service_}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("--tls-client-ca-file"));
}

TEST_F(GrpcServerTlsTest, AnUnreadableFileIsRefusedNamingIt) {
  const std::string missing = File("no-such.pem");
  for (const auto& set : std::vector<std::function<void(GrpcServerOptions&)>>{
           [&](GrpcServerOptions& o) { o.tls_cert_file = missing; },
           [&](GrpcServerOptions& o) { o.tls_key_file = missing; },
           [&](GrpcServerOptions& o) { o.tls_client_ca_file = missing; }}) {
    GrpcServerOptions options = TlsOptions();
    set(options);
    const absl::Status status = StartGrpcServer(options, {&service_}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    EXPECT_THAT(status.message(), HasSubstr(missing));
  }
  const absl::Status channel = MakeTlsChannel("127.0.0.1:1", {}, missing).status();
  EXPECT_EQ(channel.code(), absl::StatusCode::kFailedPrecondition) << channel;
  EXPECT_THAT(channel.message(), HasSubstr(missing));
}

}  // namespace
}  // namespace stip
