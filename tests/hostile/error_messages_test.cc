// Hostile input through the real gRPC entry: the stip-intake binary, as an operator runs it
// (SQLite event log in a temporary folder, JSON logs to a file), asked what a careless or
// hostile client sends.
//   - a filing whose enterprise_name holds GBK bytes (not UTF-8), and bytes that are not
//     protobuf at all: INVALID_ARGUMENT saying the request cannot be decoded (the first
//     naming the field), not INTERNAL with an empty message; the process stays up; and 50
//     of them make at most one log line about it, not one each;
//   - a valid filing while the registry is down: UNAVAILABLE with a generic message and an
//     error id, never the registry's address; the log line with that id has the detail.
//
// The binary is found beside the test's build folder (build/services/intake/).
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/error_details.h"
#include "gtest/gtest.h"
#include "services/common/grpc_server.h"
#include "stip/v1/intake_service.grpc.pb.h"
#include "tests/support/filings.h"
#include "tests/support/test_environment.h"

namespace stip {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSubmitFiling[] = "/stip.v1.IntakeService/SubmitFiling";

std::filesystem::path IntakeBinary() {
  return testing::TestProgramPath("stip-intake").parent_path().parent_path() / "services" /
         "intake" / "stip-intake";
}

v1::SubmitFilingRequest ValidRequest(const std::string& request_id) {
  v1::SubmitFilingRequest request;
  request.set_request_id(request_id);
  *request.mutable_filing() = testing::QualifyingFiling("91650100MA77QGJA0T");
  request.mutable_filing()->set_enterprise_name("NAME");
  return request;
}

// stip-intake on a fresh SQLite event log, pointed at a registry port nothing listens on,
// with its JSON log lines in a file.
class HostileIntake : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(IntakeBinary())) << IntakeBinary() << " is not built";
    registry_port_ = testing::FreeLoopbackPort();
    const int port = testing::FreeLoopbackPort();
    ASSERT_GT(port, 0);
    log_path_ = dir_.path() / "intake.log";
    const std::string command =
        absl::StrCat("exec '", IntakeBinary().string(), "' --events=sqlite://",
                     (dir_.path() / "events.db").string(), " --grpc-listen=127.0.0.1:", port,
                     " --admin-listen=127.0.0.1:0 --registry=127.0.0.1:", registry_port_,
                     " --inbound=false --instance-id=hostile --partitions=1 --log-format=json > '",
                     log_path_.string(), "' 2>&1");
    process_ =
        std::make_unique<testing::ChildProcess>(std::vector<std::string>{"/bin/sh", "-c", command});
    channel_ = MakeChannel(absl::StrCat("127.0.0.1:", port), GrpcLimits{});
    ASSERT_TRUE(
        channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(60)))
        << "stip-intake did not start listening:\n"
        << Log();
  }

  // SubmitFiling with `bytes` as the serialized request.
  grpc::Status SubmitRaw(const std::string& bytes) {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&context, kSubmitFiling, grpc::StubOptions(), &request, &response,
                   [&done](grpc::Status status) { done.set_value(std::move(status)); });
    return done.get_future().get();
  }

  std::string Log() const {
    std::ifstream file(log_path_);
    return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  }
  std::vector<std::string> LogLinesWith(const std::string& text) const {
    std::vector<std::string> lines;
    for (absl::string_view line : absl::StrSplit(Log(), '\n')) {
      if (absl::StrContains(line, text)) lines.emplace_back(line);
    }
    return lines;
  }

  testing::TempDir dir_;
  int registry_port_ = 0;
  std::filesystem::path log_path_;
  std::unique_ptr<testing::ChildProcess> process_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(HostileIntake, InvalidUtf8IsAClearInvalidArgumentAndIsNotLoggedPerRequest) {
  // The enterprise's name in GBK ("新疆" is D0C2 BDAE), as a client that never converted it
  // sends it: not UTF-8, which protobuf refuses in a proto3 string.
  std::string bytes = ValidRequest("gbk-name").SerializeAsString();
  bytes.replace(bytes.find("NAME"), 4, "\xd0\xc2\xbd\xae");
  constexpr int kRequests = 50;
  for (int i = 0; i < kRequests; ++i) {
    const grpc::Status status = SubmitRaw(bytes);
    ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << "request " << i << ": " << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("cannot be decoded"));
    EXPECT_THAT(status.error_message(), HasSubstr("stip.v1.AnnualFiling.enterprise_name"));
    EXPECT_THAT(status.error_message(), HasSubstr("not UTF-8"));
    google::rpc::Status details;
    ASSERT_TRUE(grpc::ExtractErrorDetails(status, &details).ok());
    google::rpc::BadRequest bad_request;
    ASSERT_EQ(details.details_size(), 1);
    ASSERT_TRUE(details.details(0).UnpackTo(&bad_request));
    ASSERT_EQ(bad_request.field_violations_size(), 1);
    EXPECT_EQ(bad_request.field_violations(0).field(), "stip.v1.AnnualFiling.enterprise_name");
  }
  EXPECT_TRUE(process_->running()) << Log();
  // Protobuf reports each refusal; the log keeps one of them a minute.
  EXPECT_LE(LogLinesWith("invalid UTF-8").size(), 1u) << Log();

  // Bytes that are not protobuf at all (a field tag with wire type 7, which does not exist).
  const grpc::Status garbage = SubmitRaw("\xff\xff\xff\xff");
  EXPECT_EQ(garbage.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << garbage.error_message();
  EXPECT_THAT(garbage.error_message(), HasSubstr("cannot be decoded"));
  EXPECT_TRUE(process_->running()) << Log();
}

TEST_F(HostileIntake, RegistryDownIsUnavailableWithAnErrorIdNotTheRegistrysAddress) {
  const grpc::Status status = SubmitRaw(ValidRequest("registry-down").SerializeAsString());
  ASSERT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  const std::string port = absl::StrCat(registry_port_);
  EXPECT_THAT(status.error_message(), Not(HasSubstr("127.0.0.1")));
  EXPECT_THAT(status.error_message(), Not(HasSubstr(port)));
  std::smatch match;
  const std::string message = status.error_message();
  ASSERT_TRUE(std::regex_search(message, match, std::regex("error id ([0-9a-f]{16})$"))) << message;
  // The operator finds the detail by the id.
  const std::vector<std::string> lines = LogLinesWith(match[1]);
  ASSERT_EQ(lines.size(), 1u) << Log();
  EXPECT_THAT(lines[0], HasSubstr("\"level\":\"error\""));
  EXPECT_THAT(lines[0], HasSubstr("registry"));
  EXPECT_TRUE(process_->running()) << Log();
}

}  // namespace
}  // namespace stip
