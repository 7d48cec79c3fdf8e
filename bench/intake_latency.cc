// intake-latency: SubmitFiling throughput and latency through the real IntakeService
// (validator, registry check against an in-process registry that enrolls everyone, the event
// log's durable publish) beside a bare gRPC server that answers the same call with a receipt
// of the same size and does nothing else, in the same run, at the same concurrency. The
// bare server is the limit gRPC itself sets on this machine; the ratio is what intake's
// work costs. Closed loop: each client thread sends its next call when the last returns.
//
//   intake-latency [--events sqlite:///tmp/x.db | kafka://127.0.0.1:19092] [--seconds 5]
//                  [--concurrency 1,8,32]
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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
#include "tests/support/enroll_everyone_registry.h"

namespace {

using Clock = std::chrono::steady_clock;

// Answers SubmitFiling at once with a receipt shaped like intake's.
class BareIntake final : public stip::v1::IntakeService::Service {
 public:
  grpc::Status SubmitFiling(grpc::ServerContext*, const stip::v1::SubmitFilingRequest* request,
                            stip::v1::SubmitFilingResponse* response) override {
    stip::v1::FilingReceipt* receipt = response->mutable_receipt();
    const stip::v1::AnnualFiling& filing = request->filing();
    receipt->set_filing_id(
        absl::StrCat(filing.uscc(), "/", filing.fiscal_year(), "/", filing.revision()));
    receipt->set_uscc(filing.uscc());
    receipt->set_fiscal_year(filing.fiscal_year());
    receipt->set_revision(filing.revision());
    receipt->set_request_id(request->request_id());
    receipt->mutable_receive_time()->set_seconds(1764288000);
    return grpc::Status::OK;
  }
};

stip::v1::SubmitFilingRequest MakeRequest(int64_t n) {
  stip::v1::SubmitFilingRequest request;
  request.set_request_id(absl::StrCat("bench-", getpid(), "-", n));
  stip::v1::AnnualFiling* filing = request.mutable_filing();
  const std::string first17 = absl::StrFormat("91650100M%08d", n % 100000000);
  filing->set_uscc(first17 + *stip::intake::UsccCheckCharacter(first17));
  filing->set_park_id(stip::testing::EnrollEveryoneRegistry::kParkId);
  filing->set_fiscal_year(2024);
  filing->set_revision(static_cast<int32_t>(1 + n / 100000000));
  filing->set_gross_revenue_fen(100'000'000);
  filing->set_rd_expenditure_fen(5'000'000);
  filing->set_total_employees(100);
  filing->set_tertiary_educated_employees(40);
  filing->set_rd_employees(15);
  stip::v1::HiTechProject* project = filing->add_projects();
  project->set_project_id("p-1");
  project->set_title("Grid-scale solar inverter");
  project->set_field(stip::v1::TECHNOLOGY_FIELD_NEW_ENERGY);
  project->set_stage(stip::v1::PROJECT_STAGE_COMMERCIALIZED);
  return request;
}

struct Result {
  double calls_per_second = 0;
  double p50_ms = 0, p99_ms = 0, p999_ms = 0;
  int64_t errors = 0;
};

// `concurrency` threads, each with its own channel, calling for `seconds`.
Result Load(int port, int concurrency, int seconds, std::atomic<int64_t>& sequence) {
  std::vector<std::vector<double>> latencies(static_cast<size_t>(concurrency));
  std::atomic<int64_t> errors{0};
  const auto stop_at = Clock::now() + std::chrono::seconds(seconds);
  std::vector<std::thread> threads;
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&, t] {
      auto stub = stip::v1::IntakeService::NewStub(
          stip::MakeChannel(absl::StrCat("127.0.0.1:", port), stip::GrpcLimits{}));
      while (Clock::now() < stop_at) {
        const auto request = MakeRequest(sequence++);
        stip::v1::SubmitFilingResponse response;
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        const auto start = Clock::now();
        const grpc::Status status = stub->SubmitFiling(&context, request, &response);
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        if (!status.ok()) {
          if (errors++ == 0) std::fprintf(stderr, "error: %s\n", status.error_message().c_str());
          continue;
        }
        latencies[static_cast<size_t>(t)].push_back(ms);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::vector<double> all;
  for (const auto& some : latencies) all.insert(all.end(), some.begin(), some.end());
  std::sort(all.begin(), all.end());
  Result result;
  result.errors = errors;
  if (all.empty()) return result;
  const auto at = [&](double q) { return all[std::min(all.size() - 1, size_t(q * all.size()))]; };
  result.calls_per_second = static_cast<double>(all.size()) / seconds;
  result.p50_ms = at(0.50);
  result.p99_ms = at(0.99);
  result.p999_ms = at(0.999);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"SubmitFiling through intake beside a bare gRPC server, side by side"};
  std::string events_url =
      absl::StrCat("sqlite://", std::filesystem::temp_directory_path().string(),
                   "/stip-intake-latency-", getpid(), ".db");
  int seconds = 5;
  std::vector<int> concurrency = {1, 8, 32};
  app.add_option("--events", events_url, "Event log URL")->capture_default_str();
  app.add_option("--seconds", seconds, "Seconds per measurement")->capture_default_str();
  app.add_option("--concurrency", concurrency, "Client threads, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  stip::InitLogging("intake-latency", spdlog::level::warn, stip::LogFormat::kText);

  auto log = stip::OpenEventLog(events_url);
  if (!log.ok() || !(*log)->EnsureTopics(stip::StandardTopics(3)).ok()) {
    std::fprintf(stderr, "event log %s: %s\n", events_url.c_str(), log.status().ToString().c_str());
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
  stip::intake::FilingIntake intake(&registry, publisher->get(), {});
  stip::intake::IntakeServiceImpl intake_service(&intake, {});
  auto intake_server = stip::StartGrpcServer(local, {&intake_service});
  BareIntake bare_service;
  auto bare_server = stip::StartGrpcServer(local, {&bare_service});
  if (!intake_server.ok() || !bare_server.ok()) return 1;

  std::printf("SubmitFiling, closed loop, %d s per row, event log %s\n\n", seconds,
              events_url.substr(0, events_url.find(':')).c_str());
  std::printf(
      "| clients | bare calls/s | intake calls/s | ratio | bare p50/p99/p99.9 ms | intake "
      "p50/p99/p99.9 ms | errors |\n|---:|---:|---:|---:|---:|---:|---:|\n");
  std::atomic<int64_t> sequence{0};
  for (const int clients : concurrency) {
    const Result bare = Load((*bare_server)->port(), clients, seconds, sequence);
    const Result ours = Load((*intake_server)->port(), clients, seconds, sequence);
    std::printf("| %d | %.0f | %.0f | %.2f | %.2f / %.2f / %.2f | %.2f / %.2f / %.2f | %lld |\n",
                clients, bare.calls_per_second, ours.calls_per_second,
                bare.calls_per_second > 0 ? ours.calls_per_second / bare.calls_per_second : 0.0,
                bare.p50_ms, bare.p99_ms, bare.p999_ms, ours.p50_ms, ours.p99_ms, ours.p999_ms,
                static_cast<long long>(bare.errors + ours.errors));
    std::fflush(stdout);
  }
  return 0;
}
