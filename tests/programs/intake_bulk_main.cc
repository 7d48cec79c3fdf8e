// intake-bulk: uploads N filings (100,000 by default) through one SubmitFilings stream to
// an in-process IntakeService (a fake registry that enrolls everyone, the SQLite event log
// in a temporary folder) and prints the process's resident memory as it goes, to show that
// a stream of any length takes bounded memory. The idempotency cache is the one part that
// grows with the number of filings, up to --max-requests entries; run with a small
// --max-requests to see the stream alone.
//
//   intake-bulk [--filings=100000] [--max-requests=100000] [--window=256]
//
// Prints one line per 10,000 responses (responses, seconds, VmRSS MiB) and a summary line
// with VmHWM (peak). Exit code 0 when every filing was accepted, in order.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "services/common/event_log.h"
#include "services/common/grpc_server.h"
#include "services/common/logging.h"
#include "services/intake/filing_intake.h"
#include "services/intake/intake_service.h"
#include "services/intake/registry_client.h"
#include "services/intake/uscc.h"
#include "stip/v1/intake_service.grpc.pb.h"
#include "stip/v1/registry_service.grpc.pb.h"
#include "tests/support/enroll_everyone_registry.h"

namespace {

constexpr const char* kPark = stip::testing::EnrollEveryoneRegistry::kParkId;

// A /proc/self/status value in KiB ("VmRSS", "VmHWM").
int64_t StatusKib(const std::string& name) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(name + ":", 0) == 0) return std::atoll(line.c_str() + name.size() + 1);
  }
  return 0;
}

int FlagValue(int argc, char** argv, const std::string& name, int fallback) {
  const std::string prefix = absl::StrCat("--", name, "=");
  for (int i = 1; i < argc; ++i) {
    int value = 0;
    if (std::string(argv[i]).rfind(prefix, 0) == 0 &&
        absl::SimpleAtoi(std::string(argv[i]).substr(prefix.size()), &value)) {
      return value;
    }
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  const int filings = FlagValue(argc, argv, "filings", 100000);
  const int max_requests = FlagValue(argc, argv, "max-requests", 100000);
  const int window = FlagValue(argc, argv, "window", 256);
  stip::InitLogging("intake-bulk", spdlog::level::warn, stip::LogFormat::kText);

  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / absl::StrCat("intake-bulk-", getpid());
  std::filesystem::create_directories(dir);
  auto log = stip::OpenEventLog(absl::StrCat("sqlite://", (dir / "events.db").string()));
  if (!log.ok() || !(*log)->EnsureTopics(stip::StandardTopics(3)).ok()) {
    std::fprintf(stderr, "event log: %s\n", log.status().ToString().c_str());
    return 1;
  }
  auto publisher = (*log)->NewPublisher();
  if (!publisher.ok()) return 1;
  stip::GrpcServerOptions local;
  local.listen_address = "127.0.0.1:0";
  stip::testing::EnrollEveryoneRegistry fake_registry;
  auto registry_server = stip::StartGrpcServer(local, {&fake_registry});
  if (!registry_server.ok()) return 1;
  stip::intake::RegistryClient registry(stip::MakeChannel(
      absl::StrCat("127.0.0.1:", (*registry_server)->port()), stip::GrpcLimits{}));
  stip::intake::FilingIntake intake(&registry, publisher->get(),
                                    {.max_requests = static_cast<size_t>(max_requests)});
  stip::intake::IntakeServiceImpl service(&intake, {.stream_window = static_cast<size_t>(window)});
  auto server = stip::StartGrpcServer(local, {&service});
  if (!server.ok()) return 1;
  auto stub = stip::v1::IntakeService::NewStub(
      stip::MakeChannel(absl::StrCat("127.0.0.1:", (*server)->port()), stip::GrpcLimits{}));

  const absl::Time start = absl::Now();
  std::printf("start: VmRSS %.1f MiB\n", StatusKib("VmRSS") / 1024.0);
  grpc::ClientContext context;
  auto stream = stub->SubmitFilings(&context);
  std::thread writer([&] {
    for (int i = 0; i < filings; ++i) {
      stip::v1::SubmitFilingsRequest request;
      request.set_request_id(absl::StrCat("bulk-", i));
      stip::v1::AnnualFiling* filing = request.mutable_filing();
      const std::string first17 = absl::StrFormat("91650100MD%07d", i);
      filing->set_uscc(first17 + *stip::intake::UsccCheckCharacter(first17));
      filing->set_park_id(kPark);
      filing->set_fiscal_year(2024);
      filing->set_revision(1);
      filing->set_gross_revenue_fen(100'000'000);
      filing->set_rd_expenditure_fen(5'000'000);
      filing->set_total_employees(100);
      filing->set_tertiary_educated_employees(40);
      filing->set_rd_employees(15);
      stip::v1::HiTechProject* project = filing->add_projects();
      project->set_project_id("p-1");
      project->set_title("Solar inverter");
      project->set_field(stip::v1::TECHNOLOGY_FIELD_NEW_ENERGY);
      project->set_stage(stip::v1::PROJECT_STAGE_DEVELOPMENT);
      if (!stream->Write(request)) break;
    }
    stream->WritesDone();
  });
  int responses = 0;
  int failures = 0;
  stip::v1::SubmitFilingsResponse response;
  while (stream->Read(&response)) {
    if (response.error_code() != 0 || response.request_id() != absl::StrCat("bulk-", responses)) {
      if (++failures <= 5) {
        std::fprintf(stderr, "response %d: %s %d %s\n", responses, response.request_id().c_str(),
                     response.error_code(), response.error_message().c_str());
      }
    }
    if (++responses % 10000 == 0) {
      std::printf("%d responses, %.1f s, VmRSS %.1f MiB\n", responses,
                  absl::ToDoubleSeconds(absl::Now() - start), StatusKib("VmRSS") / 1024.0);
      std::fflush(stdout);
    }
  }
  writer.join();
  const grpc::Status status = stream->Finish();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf(
      "done: %d filings, %d responses, %d failures, %.1f s (%.0f filings/s), VmRSS %.1f MiB, "
      "VmHWM (peak) %.1f MiB, max-requests %d, window %d, stream %s\n",
      filings, responses, failures, seconds, responses / seconds, StatusKib("VmRSS") / 1024.0,
      StatusKib("VmHWM") / 1024.0, max_requests, window, status.ok() ? "OK" : "failed");
  (*server)->Shutdown(absl::Now() + absl::Seconds(5));
  (*registry_server)->Shutdown(absl::Now() + absl::Seconds(5));
  std::filesystem::remove_all(dir);
  return status.ok() && failures == 0 && responses == filings ? 0 : 1;
}
