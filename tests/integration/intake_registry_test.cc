// Intake's enrollment check against the real registry: the stip-registry binary (SQLite
// event log and SQLite database in a temporary folder) and the stip-intake binary pointed at
// it, on the same event log, so that the filings intake accepts reach the registry.
//   - an enterprise enrolled (RegistryService.EnrollEnterprise) in urumqi-hnz files for it:
//     accepted;
//   - a valid USCC that is not enrolled: FAILED_PRECONDITION, ENTERPRISE_NOT_ENROLLED on
//     filing.uscc;
//   - the enrolled enterprise naming another catalogue park (kunming-hnz):
//     FAILED_PRECONDITION, ENTERPRISE_IN_OTHER_PARK on filing.park_id;
//   - a park the registry does not know: INVALID_ARGUMENT, PARK_UNKNOWN on filing.park_id;
//   - once the registry applied the accepted filing (GetFiling, GetEnterprise's
//     latest_revisions), the same revision with other content: FAILED_PRECONDITION,
//     REVISION_NOT_NEWER on filing.revision — from the same intake (its own memory of the
//     request) and from a freshly started intake, which only the registry can tell; the
//     fresh intake answers a retry of the first request with its recorded receipt, and
//     accepts revision 2.
//
// The binaries are found beside the test's build folder (build/services/registry/,
// build/services/intake/).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/error_details.h"
#include "gtest/gtest.h"
#include "services/common/grpc_server.h"
#include "services/intake/uscc.h"
#include "stip/v1/intake_service.grpc.pb.h"
#include "stip/v1/registry_service.grpc.pb.h"
#include "tests/support/test_environment.h"
#include <sys/wait.h>

namespace stip::intake {
namespace {

constexpr char kPark[] = "urumqi-hnz";
constexpr char kOtherPark[] = "kunming-hnz";

std::filesystem::path BuildFolder() {
  return testing::TestProgramPath("stip-intake").parent_path().parent_path();
}
std::filesystem::path RegistryBinary() {
  return BuildFolder() / "services" / "registry" / "stip-registry";
}
std::filesystem::path IntakeBinary() {
  return BuildFolder() / "services" / "intake" / "stip-intake";
}

std::string Uscc(const std::string& first17) { return first17 + *UsccCheckCharacter(first17); }

v1::SubmitFilingRequest Request(const std::string& request_id, const std::string& uscc,
                                const std::string& park_id, int32_t revision) {
  v1::SubmitFilingRequest request;
  request.set_request_id(request_id);
  v1::AnnualFiling* filing = request.mutable_filing();
  filing->set_uscc(uscc);
  filing->set_park_id(park_id);
  filing->set_fiscal_year(2024);
  filing->set_revision(revision);
  filing->set_gross_revenue_fen(100'000'000);
  filing->set_rd_expenditure_fen(5'000'000);
  filing->set_total_employees(100);
  filing->set_tertiary_educated_employees(40);
  filing->set_rd_employees(15);
  return request;
}

template <typename Detail>
bool DetailOf(const grpc::Status& status, Detail* detail) {
  google::rpc::Status details;
  if (!grpc::ExtractErrorDetails(status, &details).ok()) return false;
  for (const auto& any : details.details()) {
    if (any.UnpackTo(detail)) return true;
  }
  return false;
}

// The (reason, field) pairs of a FAILED_PRECONDITION refusal.
std::vector<std::pair<std::string, std::string>> Preconditions(const grpc::Status& status) {
  google::rpc::PreconditionFailure failure;
  EXPECT_TRUE(DetailOf(status, &failure)) << "no PreconditionFailure: " << status.error_message();
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& violation : failure.violations()) {
    out.emplace_back(violation.type(), violation.subject());
  }
  return out;
}

// A started stip-intake and a stub to it.
struct Intake {
  Intake(const std::string& events, int registry_port) {
    const int port = testing::FreeLoopbackPort();
    EXPECT_GT(port, 0);
    process = std::make_unique<testing::ChildProcess>(std::vector<std::string>{
        IntakeBinary().string(), "--events=" + events,
        absl::StrCat("--grpc-listen=127.0.0.1:", port), "--admin-listen=127.0.0.1:0",
        absl::StrCat("--registry=127.0.0.1:", registry_port),
        "--instance-id=" + testing::UniqueName("intake"), "--partitions=2", "--log-format=text",
        "--log-level=warn"});
    auto channel = MakeChannel(absl::StrCat("127.0.0.1:", port), GrpcLimits{});
    connected =
        channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30));
    stub = v1::IntakeService::NewStub(channel);
  }
  grpc::Status Submit(const v1::SubmitFilingRequest& request,
                      v1::SubmitFilingResponse* response = nullptr) {
    v1::SubmitFilingResponse ignored;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    return stub->SubmitFiling(&context, request, response != nullptr ? response : &ignored);
  }
  // SIGTERM, then the exit status (or -1 when it does not exit within 20 s).
  int Terminate() {
    process->Signal(SIGTERM);
    const absl::Time by = absl::Now() + absl::Seconds(20);
    while (process->running() && absl::Now() < by) absl::SleepFor(absl::Milliseconds(20));
    return process->running() ? -1 : process->Wait();
  }

  std::unique_ptr<testing::ChildProcess> process;
  bool connected = false;
  std::unique_ptr<v1::IntakeService::Stub> stub;
};

TEST(IntakeRegistryTest, EnrollmentParkAndRevisionAreCheckedWithTheRealRegistry) {
  ASSERT_TRUE(std::filesystem::exists(RegistryBinary())) << RegistryBinary() << " is not built";
  ASSERT_TRUE(std::filesystem::exists(IntakeBinary())) << IntakeBinary() << " is not built";
  testing::TempDir dir;
  const std::string events = absl::StrCat("sqlite://", (dir.path() / "events.db").string());
  const std::string db = absl::StrCat("sqlite://", (dir.path() / "registry.db").string());

  const int registry_port = testing::FreeLoopbackPort();
  ASSERT_GT(registry_port, 0);
  testing::ChildProcess registry_process(
      {RegistryBinary().string(), "--events=" + events, "--db=" + db,
       absl::StrCat("--grpc-listen=127.0.0.1:", registry_port), "--admin-listen=127.0.0.1:0",
       "--partitions=2", "--log-format=text", "--log-level=warn"});
  auto registry_channel = MakeChannel(absl::StrCat("127.0.0.1:", registry_port), GrpcLimits{});
  ASSERT_TRUE(registry_channel->WaitForConnected(std::chrono::system_clock::now() +
                                                 std::chrono::seconds(30)))
      << "stip-registry did not start listening";
  auto registry = v1::RegistryService::NewStub(registry_channel);

  const std::string enrolled = Uscc("91650100MF0000001");
  const std::string unenrolled = Uscc("91650100MF0000002");
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::EnrollEnterpriseRequest request;
    request.set_uscc(enrolled);
    request.set_name("Xinjiang Test Materials Co., Ltd.");
    request.set_park_id(kPark);
    v1::EnrollEnterpriseResponse response;
    const grpc::Status status = registry->EnrollEnterprise(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.enterprise().park_id(), kPark);
  }

  Intake intake(events, registry_port);
  ASSERT_TRUE(intake.connected) << "stip-intake did not start listening";

  // Enrolled, in its park: accepted.
  const v1::SubmitFilingRequest first = Request("it-first", enrolled, kPark, 1);
  v1::SubmitFilingResponse accepted;
  {
    const grpc::Status status = intake.Submit(first, &accepted);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(accepted.receipt().filing_id(), absl::StrCat(enrolled, "/2024/1"));
  }

  // Not enrolled.
  {
    const grpc::Status status = intake.Submit(Request("it-unenrolled", unenrolled, kPark, 1));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
    EXPECT_THAT(Preconditions(status),
                ::testing::ElementsAre(::testing::Pair("ENTERPRISE_NOT_ENROLLED", "filing.uscc")));
  }

  // Enrolled, but in another park than the one named (revision 2: intake answers a second
  // filing of revision 1 from its own memory before asking the registry).
  {
    const grpc::Status status = intake.Submit(Request("it-other-park", enrolled, kOtherPark, 2));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
    EXPECT_THAT(Preconditions(status), ::testing::ElementsAre(::testing::Pair(
                                           "ENTERPRISE_IN_OTHER_PARK", "filing.park_id")));
    EXPECT_THAT(status.error_message(), ::testing::HasSubstr(kPark));
  }

  // A park the registry does not know: the validator's field violation.
  {
    const grpc::Status status =
        intake.Submit(Request("it-unknown-park", enrolled, "atlantis-hnz", 1));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    google::rpc::BadRequest bad_request;
    ASSERT_TRUE(DetailOf(status, &bad_request)) << status.error_message();
    ASSERT_EQ(bad_request.field_violations_size(), 1);
    EXPECT_EQ(bad_request.field_violations(0).field(), "filing.park_id");
    EXPECT_THAT(bad_request.field_violations(0).description(),
                ::testing::StartsWith("PARK_UNKNOWN"));
  }

  // The registry applies the accepted filing.
  const std::string filing_id = accepted.receipt().filing_id();
  bool recorded = false;
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (!recorded && absl::Now() < give_up) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GetFilingRequest request;
    request.set_filing_id(filing_id);
    v1::GetFilingResponse response;
    const grpc::Status status = registry->GetFiling(&context, request, &response);
    if (status.ok()) {
      recorded = true;
      EXPECT_EQ(response.filing().request_id(), "it-first");
      EXPECT_EQ(response.filing().filing().park_id(), kPark);
      EXPECT_EQ(response.filing().region(), v1::ECONOMIC_REGION_WESTERN);
    } else {
      ASSERT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
  ASSERT_TRUE(recorded) << filing_id << " was not applied by the registry within 20 s";
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GetEnterpriseRequest request;
    request.set_uscc(enrolled);
    v1::GetEnterpriseResponse response;
    const grpc::Status status = registry->GetEnterprise(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.enterprise().latest_revisions_size(), 1);
    EXPECT_EQ(response.enterprise().latest_revisions(0).fiscal_year(), 2024);
    EXPECT_EQ(response.enterprise().latest_revisions(0).revision(), 1);
    EXPECT_EQ(response.enterprise().latest_revisions(0).filing_id(), filing_id);
  }

  // The same revision, other content, another request: refused.
  v1::SubmitFilingRequest changed = Request("it-changed", enrolled, kPark, 1);
  changed.mutable_filing()->set_gross_revenue_fen(90'000'000);
  {
    const grpc::Status status = intake.Submit(changed);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
    EXPECT_THAT(Preconditions(status),
                ::testing::ElementsAre(::testing::Pair("REVISION_NOT_NEWER", "filing.revision")));
  }
  EXPECT_EQ(intake.Terminate(), 0);

  // A fresh intake remembers nothing: only the registry knows revision 1 is filed.
  Intake fresh(events, registry_port);
  ASSERT_TRUE(fresh.connected) << "the second stip-intake did not start listening";
  {
    const grpc::Status status = fresh.Submit(changed);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
    EXPECT_THAT(Preconditions(status),
                ::testing::ElementsAre(::testing::Pair("REVISION_NOT_NEWER", "filing.revision")));
    EXPECT_THAT(status.error_message(), ::testing::HasSubstr("is not newer than revision 1"));
  }
  // A retry of the first request gets the receipt the registry recorded.
  {
    v1::SubmitFilingResponse retried;
    const grpc::Status status = fresh.Submit(first, &retried);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(retried.receipt().filing_id(), filing_id);
    EXPECT_EQ(retried.receipt().request_id(), "it-first");
  }
  // A correction, revision 2: accepted.
  {
    v1::SubmitFilingRequest correction = changed;
    correction.set_request_id("it-revision-2");
    correction.mutable_filing()->set_revision(2);
    v1::SubmitFilingResponse response;
    const grpc::Status status = fresh.Submit(correction, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.receipt().filing_id(), absl::StrCat(enrolled, "/2024/2"));
  }
  EXPECT_EQ(fresh.Terminate(), 0);

  registry_process.Signal(SIGTERM);
  const absl::Time exit_by = absl::Now() + absl::Seconds(20);
  while (registry_process.running() && absl::Now() < exit_by) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_FALSE(registry_process.running()) << "stip-registry did not exit within 20 s of SIGTERM";
  const int exit_status = registry_process.Wait();
  EXPECT_TRUE(WIFEXITED(exit_status) && WEXITSTATUS(exit_status) == 0) << exit_status;
}

}  // namespace
}  // namespace stip::intake
