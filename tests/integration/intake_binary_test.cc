// The stip-intake binary as an operator runs it: on the SQLite event log, against a
// registry (a fake of the test's own), it accepts a filing over gRPC and, on SIGTERM, shuts
// down in order and exits with 0; the accepted filing is in the event log afterwards.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "services/common/event_log.h"
#include "services/common/grpc_server.h"
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

std::filesystem::path IntakeBinary() {
  return testing::TestProgramPath("stip-intake").parent_path().parent_path() / "services" /
         "intake" / "stip-intake";
}

TEST(IntakeBinaryTest, AcceptsAFilingAndShutsDownCleanlyOnSigterm) {
  FakeRegistry fake_registry;
  GrpcServerOptions registry_options;
  registry_options.listen_address = "127.0.0.1:0";
  auto registry = StartGrpcServer(registry_options, {&fake_registry});
  ASSERT_TRUE(registry.ok()) << registry.status();

  testing::TempDir dir;
  const std::string events = absl::StrCat("sqlite://", (dir.path() / "events.db").string());
  const int port = testing::FreeLoopbackPort();
  ASSERT_GT(port, 0);
  testing::ChildProcess intake({IntakeBinary().string(), absl::StrCat("--events=", events),
                                absl::StrCat("--grpc-listen=127.0.0.1:", port),
                                "--admin-listen=127.0.0.1:0",
                                absl::StrCat("--registry=127.0.0.1:", (*registry)->port()),
                                "--instance-id=test", "--partitions=2", "--log-format=text"});

  auto channel = MakeChannel(absl::StrCat("127.0.0.1:", port), GrpcLimits{});
  ASSERT_TRUE(
      channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20)))
      << "stip-intake did not start listening";
  auto stub = v1::IntakeService::NewStub(channel);
  v1::SubmitFilingRequest request;
  request.set_request_id("binary-1");
  const std::string first17 = "91650100ME0000001";
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
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::SubmitFilingResponse response;
  const grpc::Status status = stub->SubmitFiling(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.receipt().filing_id(), absl::StrCat(filing->uscc(), "/2024/1"));

  intake.Signal(SIGTERM);
  const int exit_status = intake.Wait();
  ASSERT_TRUE(WIFEXITED(exit_status)) << exit_status;
  EXPECT_EQ(WEXITSTATUS(exit_status), 0);

  auto log = OpenEventLog(events);
  ASSERT_TRUE(log.ok()) << log.status();
  auto consumer = (*log)->NewConsumer({"check", {std::string(kFilingsTopic)}});
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  auto polled = (*consumer)->Poll(100, absl::Seconds(1));
  ASSERT_TRUE(polled.ok()) << polled.status();
  ASSERT_EQ(polled->size(), 1u);
  EXPECT_EQ((*polled)[0].Header("ce_id").value_or(""), response.receipt().filing_id());
}

}  // namespace
}  // namespace stip::intake
