// intake-latency: SubmitFiling throughput and latency through the real IntakeService
// (validator, registry check against an in-process registry that enrolls everyone, the event
// log's durable publish) beside a bare gRPC server that answers the same call with a receipt
// of the same size and does nothing else, in the same run, at the same concurrency. The
// bare server is the limit gRPC itself sets on this machine; the ratio is what intake's
// work costs. Closed loop: each client thread sends its next call when the last returns. Open
// loop (after it, unless --no-open-loop): calls started on a fixed schedule at 50% and 80% of
// the bare server's saturation (its best closed-loop rate), latency counted from each call's
// scheduled send time so that a stalled server is not hidden (no coordinated omission).
// Clients and servers share this process: its CPU figures include the client's.
//
//   intake-latency [--events sqlite:///tmp/x.db | kafka://127.0.0.1:19092] [--seconds 5]
//                  [--concurrency 1,4,16,64] [--no-open-loop] [--json FILE]
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/percentiles.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "services/common/abseil_runtime.h"
#include "services/common/event_log.h"
#include "services/common/grpc_server.h"
#include "services/common/logging.h"
#include "services/intake/filing_intake.h"
#include "services/intake/intake_service.h"
#include "services/intake/registry_client.h"
#include "services/intake/uscc.h"
#include "stip/v1/intake_service.grpc.pb.h"
#include "tests/support/enroll_everyone_registry.h"
#include <sys/resource.h>

namespace {

using Clock = std::chrono::steady_clock;
using stip::bench::Percentiles;
using stip::bench::PercentilesOf;

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

// User + system CPU of this whole process (client threads and every server in it), in s.
double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

struct Result {
  int64_t calls = 0;  // answered OK
  double calls_per_second = 0;
  Percentiles latency;
  int64_t errors = 0;
  // Process CPU over the measurement / calls: the client and the server under load (the idle
  // servers cost next to nothing), so an upper bound of the server's own cost.
  double cpu_us_per_call = 0;
};

// `concurrency` threads, each with its own channel, calling for `seconds`.
Result Load(int port, int concurrency, int seconds, std::atomic<int64_t>& sequence) {
  std::vector<std::vector<double>> latencies(static_cast<size_t>(concurrency));
  std::atomic<int64_t> errors{0};
  const double cpu_before = ProcessCpuSeconds();
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
  const double cpu_s = ProcessCpuSeconds() - cpu_before;
  std::vector<double> all;
  for (const auto& some : latencies) all.insert(all.end(), some.begin(), some.end());
  Result result;
  result.errors = errors;
  result.calls = static_cast<int64_t>(all.size());
  if (all.empty()) return result;
  result.calls_per_second = static_cast<double>(all.size()) / seconds;
  result.latency = PercentilesOf(all);
  result.cpu_us_per_call = cpu_s * 1e6 / static_cast<double>(all.size());
  return result;
}

// Unmeasured calls until `calls` are answered or 10 s pass: connections up and the event log
// warm (on Kafka, without this, the first call of the first row took about a second).
// Returns the calls answered.
int WarmUp(int port, int calls, std::atomic<int64_t>& sequence) {
  auto stub = stip::v1::IntakeService::NewStub(
      stip::MakeChannel(absl::StrCat("127.0.0.1:", port), stip::GrpcLimits{}));
  const auto give_up = Clock::now() + std::chrono::seconds(10);
  int answered = 0;
  while (answered < calls && Clock::now() < give_up) {
    stip::v1::SubmitFilingResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (stub->SubmitFiling(&context, MakeRequest(sequence++), &response).ok()) ++answered;
  }
  return answered;
}

struct OpenResult {
  double target_per_second = 0;
  int64_t sent = 0;
  int64_t calls = 0;   // answered OK
  int64_t errors = 0;  // failed, deadline included
  // OK calls / (first scheduled send to last answer): below the target when the server (or
  // the pacer) cannot keep up.
  double achieved_per_second = 0;
  // From each call's scheduled send time, not from when it was sent: a late send counts.
  Percentiles latency;
  double cpu_us_per_call = 0;
};

// One in-flight call of the open loop; owned by its callback, which deletes it.
struct OpenCall {
  grpc::ClientContext context;
  stip::v1::SubmitFilingRequest request;
  stip::v1::SubmitFilingResponse response;
  Clock::time_point scheduled;
};

// Open loop: a pacer thread starts call i at start + i / rate (async, callback API, over a few
// channels) for `seconds`, whatever the answers do, then waits for every answer. A call not
// answered within `seconds` (at least 2 s) after the last send fails with DEADLINE_EXCEEDED.
OpenResult OpenLoad(int port, double rate, int seconds, std::atomic<int64_t>& sequence) {
  constexpr int kChannels = 4;
  std::vector<std::unique_ptr<stip::v1::IntakeService::Stub>> stubs;
  for (int c = 0; c < kChannels; ++c) {
    stubs.push_back(stip::v1::IntakeService::NewStub(
        stip::MakeChannel(absl::StrCat("127.0.0.1:", port), stip::GrpcLimits{})));
  }
  const auto total = static_cast<int64_t>(std::llround(rate * seconds));
  std::mutex mutex;
  std::condition_variable all_done;
  int64_t done = 0, errors = 0;
  std::vector<double> latencies;
  latencies.reserve(static_cast<size_t>(total));
  Clock::time_point last_answer;

  const double cpu_before = ProcessCpuSeconds();
  const auto start = Clock::now() + std::chrono::milliseconds(10);
  const auto deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(10) +
                        std::chrono::seconds(seconds + std::max(2, seconds));
  const double period_ns = 1e9 / rate;
  for (int64_t i = 0; i < total; ++i) {
    auto* call = new OpenCall;
    call->request = MakeRequest(sequence++);
    call->scheduled =
        start + std::chrono::nanoseconds(static_cast<int64_t>(static_cast<double>(i) * period_ns));
    call->context.set_deadline(deadline);
    std::this_thread::sleep_until(call->scheduled);
    stubs[static_cast<size_t>(i % kChannels)]->async()->SubmitFiling(
        &call->context, &call->request, &call->response, [&, call](grpc::Status status) {
          const auto now = Clock::now();
          const double ms =
              std::chrono::duration<double, std::milli>(now - call->scheduled).count();
          delete call;
          std::lock_guard lock(mutex);
          if (status.ok()) {
            latencies.push_back(ms);
          } else if (errors++ == 0) {
            std::fprintf(stderr, "error: %s\n", status.error_message().c_str());
          }
          last_answer = std::max(last_answer, now);
          if (++done == total) all_done.notify_all();
        });
  }
  std::unique_lock lock(mutex);
  all_done.wait(lock, [&] { return done == total; });
  OpenResult result;
  result.target_per_second = rate;
  result.sent = total;
  result.errors = errors;
  result.calls = static_cast<int64_t>(latencies.size());
  if (latencies.empty()) return result;
  result.achieved_per_second = static_cast<double>(latencies.size()) /
                               std::chrono::duration<double>(last_answer - start).count();
  result.cpu_us_per_call =
      (ProcessCpuSeconds() - cpu_before) * 1e6 / static_cast<double>(latencies.size());
  result.latency = PercentilesOf(latencies);
  return result;
}

std::string LatencyJson(const Percentiles& p) {
  return absl::StrFormat(R"("p50_ms": %.3f, "p99_ms": %.3f, "p999_ms": %.3f)", p.p50_ms, p.p99_ms,
                         p.p999_ms);
}
std::string ResultJson(const Result& r) {
  return absl::StrFormat(
      R"({"calls": %d, "calls_per_s": %.0f, %s, "errors": %d, "process_cpu_us_per_call": %.1f})",
      r.calls, r.calls_per_second, LatencyJson(r.latency), r.errors, r.cpu_us_per_call);
}
std::string OpenResultJson(const OpenResult& r) {
  return absl::StrFormat(R"({"sent": %d, "calls": %d, "errors": %d, "achieved_per_s": %.0f, %s, )"
                         R"("process_cpu_us_per_call": %.1f})",
                         r.sent, r.calls, r.errors, r.achieved_per_second, LatencyJson(r.latency),
                         r.cpu_us_per_call);
}
std::string Ms(const Percentiles& p) {
  return absl::StrFormat("%.2f / %.2f / %.2f", p.p50_ms, p.p99_ms, p.p999_ms);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"SubmitFiling through intake beside a bare gRPC server, side by side"};
  std::string events_url =
      absl::StrCat("sqlite://", std::filesystem::temp_directory_path().string(),
                   "/stip-intake-latency-", getpid(), ".db");
  int seconds = 5;
  std::vector<int> concurrency = {1, 4, 16, 64};
  bool open_loop = true;
  std::string json_path;
  app.add_option("--events", events_url, "Event log URL")->capture_default_str();
  app.add_option("--seconds", seconds, "Seconds per measurement")->capture_default_str();
  app.add_option("--concurrency", concurrency, "Client threads, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  app.add_flag("--open-loop,!--no-open-loop", open_loop,
               "Then the open loop at 50% and 80% of the bare server's saturation")
      ->capture_default_str();
  app.add_option("--json", json_path, "Also write every result to this file as JSON");
  CLI11_PARSE(app, argc, argv);
  stip::InitLogging("intake-latency", spdlog::level::warn, stip::LogFormat::kText);
  stip::ConfigureAbseilForServing();  // as stip-intake does

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

  const std::string events_kind = events_url.substr(0, events_url.find(':'));
  std::printf("SubmitFiling, closed loop, %d s per row, event log %s\n\n", seconds,
              events_kind.c_str());
  std::printf(
      "| clients | bare calls/s | intake calls/s | ratio | bare p50/p99/p99.9 ms | intake "
      "p50/p99/p99.9 ms | errors |\n|---:|---:|---:|---:|---:|---:|---:|\n");
  std::atomic<int64_t> sequence{0};
  // Counted in the process's calls (its CPU covers them) but in no row.
  int64_t total_calls = WarmUp((*bare_server)->port(), 100, sequence) +
                        WarmUp((*intake_server)->port(), 100, sequence);
  double saturation = 0;
  int saturation_clients = 0;
  std::vector<std::string> closed_json;
  for (const int clients : concurrency) {
    const Result bare = Load((*bare_server)->port(), clients, seconds, sequence);
    const Result ours = Load((*intake_server)->port(), clients, seconds, sequence);
    const double ratio =
        bare.calls_per_second > 0 ? ours.calls_per_second / bare.calls_per_second : 0.0;
    std::printf("| %d | %.0f | %.0f | %.2f | %s | %s | %lld |\n", clients, bare.calls_per_second,
                ours.calls_per_second, ratio, Ms(bare.latency).c_str(), Ms(ours.latency).c_str(),
                static_cast<long long>(bare.errors + ours.errors));
    std::fflush(stdout);
    total_calls += bare.calls + ours.calls;
    if (bare.calls_per_second > saturation) {
      saturation = bare.calls_per_second;
      saturation_clients = clients;
    }
    closed_json.push_back(absl::StrFormat(R"({"concurrency": %d, "ratio": %.3f, "bare": %s, )"
                                          R"("intake": %s})",
                                          clients, ratio, ResultJson(bare), ResultJson(ours)));
  }

  std::vector<std::string> open_json;
  if (open_loop && saturation > 0) {
    std::printf(
        "\nOpen loop, %d s per row, at fractions of the bare server's saturation (its best "
        "closed-loop rate, %.0f calls/s at %d clients); latency from each call's scheduled "
        "send time\n\n",
        seconds, saturation, saturation_clients);
    std::printf(
        "| load | target calls/s | bare achieved | intake achieved | bare p50/p99/p99.9 ms | "
        "intake p50/p99/p99.9 ms | errors |\n|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const double fraction : {0.5, 0.8}) {
      const double rate = std::round(saturation * fraction);
      const OpenResult bare = OpenLoad((*bare_server)->port(), rate, seconds, sequence);
      const OpenResult ours = OpenLoad((*intake_server)->port(), rate, seconds, sequence);
      std::printf("| %.0f%% | %.0f | %.0f | %.0f | %s | %s | %lld |\n", fraction * 100, rate,
                  bare.achieved_per_second, ours.achieved_per_second, Ms(bare.latency).c_str(),
                  Ms(ours.latency).c_str(), static_cast<long long>(bare.errors + ours.errors));
      std::fflush(stdout);
      total_calls += bare.calls + ours.calls;
      open_json.push_back(
          absl::StrFormat(R"({"fraction": %.2f, "target_per_s": %.0f, "bare": %s, "intake": %s})",
                          fraction, rate, OpenResultJson(bare), OpenResultJson(ours)));
    }
  }

  if (!json_path.empty()) {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    const double cpu_s = ProcessCpuSeconds();
    std::ofstream out(json_path);
    out << absl::StrFormat(
        R"({"events": "%s", "seconds": %d, "closed_loop": [%s], )"
        R"("saturation": {"calls_per_s": %.0f, "concurrency": %d}, "open_loop": [%s], )"
        R"("process": {"calls": %d, "cpu_s": %.3f, "cpu_us_per_call": %.1f, )"
        R"("peak_rss_mib": %.1f}})"
        "\n",
        events_kind, seconds, absl::StrJoin(closed_json, ", "), saturation, saturation_clients,
        absl::StrJoin(open_json, ", "), total_calls, cpu_s,
        total_calls > 0 ? cpu_s * 1e6 / static_cast<double>(total_calls) : 0.0,
        static_cast<double>(usage.ru_maxrss) / 1024);
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
      return 1;
    }
  }
  return 0;
}
