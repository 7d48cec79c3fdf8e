#include "bench/pipeline_load/latency.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/pipeline_load/decision_watch.h"
#include "bench/pipeline_load/grpc_channel.h"
#include "bench/pipeline_load/population.h"
#include "bench/pipeline_load/report.h"
#include "bench/raw_copy.h"
#include "grpcpp/client_context.h"
#include "stip/v1/intake_service.grpc.pb.h"

namespace stip::bench::load {
namespace {

// One filing of the open loop: owned by its callback, which deletes it.
struct SubmitCall {
  grpc::ClientContext context;
  stip::v1::SubmitFilingRequest request;
  stip::v1::SubmitFilingResponse response;
  size_t slot = 0;
};

struct RateResult {
  double target_per_s = 0;
  int64_t sent = 0, accepted = 0, decided = 0, missing = 0;
  std::map<std::string, int64_t> errors;  // gRPC code name -> count
  double achieved_per_s = 0;
  Percentiles submit, end_to_end;
};

std::string CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const auto i = static_cast<size_t>(code);
  return i < std::size(kNames) ? kNames[i] : absl::StrCat("CODE_", i);
}

// Sends filings [first, first + count) on the schedule start + i / rate and waits for their
// answers and decisions (at most drain_timeout_s after the last scheduled send).
RateResult RunRate(const Population& population, DecisionWatch& watch,
                   std::vector<std::unique_ptr<stip::v1::IntakeService::Stub>>& stubs,
                   const std::string& run_id, int64_t first, int64_t count, double rate,
                   double drain_timeout_s, bool quiet) {
  RateResult result;
  result.target_per_s = rate;
  result.sent = count;
  std::vector<int64_t> scheduled_ns(static_cast<size_t>(count));
  std::vector<int64_t> answered_ns(static_cast<size_t>(count), 0);
  std::vector<grpc::StatusCode> codes(static_cast<size_t>(count), grpc::StatusCode::OK);
  std::mutex mu;
  std::condition_variable cv;
  int64_t answered = 0;
  std::map<grpc::StatusCode, std::string> first_error;

  // Requests are made before the clock starts: the pacer only stamps and starts calls.
  std::vector<SubmitCall*> calls(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    auto* call = new SubmitCall;
    call->slot = static_cast<size_t>(i);
    call->request.set_request_id(absl::StrCat("pipeline-load-", run_id, "-", first + i));
    *call->request.mutable_filing() = population.Filing(first + i);
    calls[static_cast<size_t>(i)] = call;
  }
  const int64_t start_ns = NowNs() + 20'000'000;  // 20 ms ahead
  const double period_ns = 1e9 / rate;
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(
                            (static_cast<double>(count) / rate + drain_timeout_s) * 1000 + 20));
  for (int64_t i = 0; i < count; ++i) {
    SubmitCall* call = calls[static_cast<size_t>(i)];
    const int64_t at = start_ns + static_cast<int64_t>(static_cast<double>(i) * period_ns);
    scheduled_ns[call->slot] = at;
    std::this_thread::sleep_until(FromNs(at));
    call->context.set_deadline(deadline);
    stubs[static_cast<size_t>(i) % stubs.size()]->async()->SubmitFiling(
        &call->context, &call->request, &call->response, [&, call](grpc::Status status) {
          const int64_t now = NowNs();
          std::lock_guard lock(mu);
          answered_ns[call->slot] = now;
          codes[call->slot] = status.error_code();
          if (!status.ok() &&
              first_error.emplace(status.error_code(), status.error_message()).second) {
            std::fprintf(stderr, "latency: SubmitFiling %s: %s: %s\n",
                         call->request.filing().uscc().c_str(),
                         CodeName(status.error_code()).c_str(), status.error_message().c_str());
          }
          delete call;
          if (++answered == static_cast<int64_t>(scheduled_ns.size())) cv.notify_all();
        });
  }
  const int64_t last_scheduled = scheduled_ns.back();
  const int64_t drain_until = last_scheduled + static_cast<int64_t>(drain_timeout_s * 1e9);
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return answered == count; });  // every call has a deadline
  }
  // Decisions of the accepted filings, until all arrived or the drain timeout.
  auto all_decided = [&] {
    for (int64_t i = 0; i < count; ++i) {
      if (codes[static_cast<size_t>(i)] == grpc::StatusCode::OK && watch.ArrivalNs(first + i) == 0)
        return false;
    }
    return true;
  };
  while (!all_decided() && NowNs() < drain_until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::vector<double> submit_ms, e2e_ms;
  int64_t last_decision = 0;
  for (int64_t i = 0; i < count; ++i) {
    const auto s = static_cast<size_t>(i);
    if (codes[s] == grpc::StatusCode::OK) {
      ++result.accepted;
      submit_ms.push_back(static_cast<double>(answered_ns[s] - scheduled_ns[s]) / 1e6);
    } else {
      ++result.errors[CodeName(codes[s])];
    }
    const int64_t arrival = watch.ArrivalNs(first + i);
    if (arrival != 0) {
      ++result.decided;
      e2e_ms.push_back(static_cast<double>(arrival - scheduled_ns[s]) / 1e6);
      last_decision = std::max(last_decision, arrival);
    } else if (codes[s] == grpc::StatusCode::OK) {
      ++result.missing;
    }
  }
  if (result.decided > 0) {
    result.achieved_per_s =
        static_cast<double>(result.decided) / (static_cast<double>(last_decision - start_ns) / 1e9);
  }
  result.submit = PercentilesOf(submit_ms);
  result.end_to_end = PercentilesOf(e2e_ms);
  if (!quiet) {
    std::fprintf(stderr,
                 "latency: %.0f/s: sent %lld, accepted %lld, decided %lld, missing %lld, "
                 "achieved %.1f/s; submit p50 %.1f p99 %.1f ms; end to end p50 %.1f p99 %.1f "
                 "max %.1f ms\n",
                 rate, static_cast<long long>(result.sent), static_cast<long long>(result.accepted),
                 static_cast<long long>(result.decided), static_cast<long long>(result.missing),
                 result.achieved_per_s, result.submit.p50_ms, result.submit.p99_ms,
                 result.end_to_end.p50_ms, result.end_to_end.p99_ms, result.end_to_end.max_ms);
  }
  return result;
}

std::string Json(const RateResult& r) {
  std::vector<std::string> errors;
  int64_t total_errors = 0;
  for (const auto& [code, n] : r.errors) {
    errors.push_back(absl::StrCat(Quote(code), ":", n));
    total_errors += n;
  }
  return absl::StrFormat(
      "{\"target_per_s\":%s,\"sent\":%d,\"accepted\":%d,\"submit_errors\":%d,"
      "\"submit_errors_by_code\":{%s},\"decided\":%d,\"missing\":%d,\"achieved_per_s\":%.1f,"
      "%s,%s}",
      Num(r.target_per_s), r.sent, r.accepted, total_errors, absl::StrJoin(errors, ","), r.decided,
      r.missing, r.achieved_per_s, PercentilesJson(r.submit, "submit_"),
      PercentilesJson(r.end_to_end, "e2e_"));
}

}  // namespace

int Latency(const CommonOptions& common, const LatencyOptions& o) {
  const std::vector<double> rates = ParseRates(o.rates);
  if (!(o.seconds > 0)) Die("--seconds must be positive");
  if (!(o.drain_timeout_s >= 0)) Die("--drain-timeout-s must not be negative");
  if (o.warmup < 0) Die("--warmup must not be negative");
  if (o.channels < 1) Die("--channels must be at least 1");
  std::vector<int64_t> counts;
  int64_t filings = o.warmup;
  for (const double rate : rates) {
    counts.push_back(std::max<int64_t>(1, std::llround(rate * o.seconds)));
    filings += counts.back();
  }
  auto intake_channel = NewChannel(o.intake);
  WaitConnected(intake_channel, "--intake", o.intake);
  const auto prepared = Prepare(common, filings);
  const Population& population = prepared.first;
  const EnrollResult& enroll = prepared.second;
  std::vector<std::unique_ptr<stip::v1::IntakeService::Stub>> stubs;
  for (int c = 0; c < o.channels; ++c) {
    stubs.push_back(
        stip::v1::IntakeService::NewStub(c == 0 ? intake_channel : NewChannel(o.intake)));
  }
  DecisionWatch watch(common.registry, &population);
  watch.Start();
  int64_t next = 0;
  if (o.warmup > 0) {
    // Unmeasured: connections up, caches and producers warm along the whole pipeline.
    std::fprintf(stderr, "latency: warm-up, %d filings at 50/s\n", o.warmup);
    const RateResult warm = RunRate(population, watch, stubs, common.run_id, next, o.warmup, 50,
                                    o.drain_timeout_s, /*quiet=*/true);
    if (warm.accepted == 0) Die("--intake: no warm-up filing was accepted (see the errors above)");
    next += o.warmup;
  }
  std::vector<RateResult> results;
  for (size_t r = 0; r < rates.size(); ++r) {
    std::fprintf(stderr, "latency: %.0f filings/s for %.1f s (%lld filings)\n", rates[r], o.seconds,
                 static_cast<long long>(counts[r]));
    results.push_back(RunRate(population, watch, stubs, common.run_id, next, counts[r], rates[r],
                              o.drain_timeout_s, /*quiet=*/false));
    next += counts[r];
  }
  watch.Stop();

  std::vector<std::string> rows;
  for (const RateResult& r : results) rows.push_back(Json(r));
  WriteJson(
      common.json,
      absl::StrFormat("{\"tool\":\"pipeline-load\",\"mode\":\"latency\",\"run_id\":%s,"
                      "\"intake\":%s,\"registry\":%s,\"seconds_per_rate\":%s,"
                      "\"drain_timeout_s\":%s,\"warmup_filings\":%d,\"fiscal_years\":[%d,%d],"
                      "\"enroll\":%s,\"watch\":%s,\"rates\":[%s]}",
                      Quote(common.run_id), Quote(o.intake), Quote(common.registry), Num(o.seconds),
                      Num(o.drain_timeout_s), o.warmup, population.first_year(),
                      population.first_year() + population.years() - 1, Json(enroll), Json(watch),
                      absl::StrJoin(rows, ",")));
  std::printf("pipeline-load latency (run %s): enrolled %lld enterprises in %.2f s (%.0f/s)\n",
              common.run_id.c_str(), static_cast<long long>(enroll.enterprises), enroll.seconds,
              enroll.per_s);
  std::printf("%10s %7s %8s %7s %7s %7s %10s %22s %30s\n", "target/s", "sent", "accepted", "errors",
              "decided", "missing", "achieved/s", "submit p50/p99/p999 ms",
              "end-to-end p50/p99/p999/max ms");
  bool complete = true;
  for (const RateResult& r : results) {
    int64_t errors = 0;
    for (const auto& [code, n] : r.errors) errors += n;
    complete = complete && r.missing == 0 && errors == 0;
    std::printf(
        "%10.0f %7lld %8lld %7lld %7lld %7lld %10.1f %22s %30s\n", r.target_per_s,
        static_cast<long long>(r.sent), static_cast<long long>(r.accepted),
        static_cast<long long>(errors), static_cast<long long>(r.decided),
        static_cast<long long>(r.missing), r.achieved_per_s,
        absl::StrFormat("%.1f/%.1f/%.1f", r.submit.p50_ms, r.submit.p99_ms, r.submit.p999_ms)
            .c_str(),
        absl::StrFormat("%.1f/%.1f/%.1f/%.1f", r.end_to_end.p50_ms, r.end_to_end.p99_ms,
                        r.end_to_end.p999_ms, r.end_to_end.max_ms)
            .c_str());
  }
  std::printf("decisions: %lld qualified, %lld not qualified, %lld outcome mismatches\n",
              static_cast<long long>(watch.qualified()),
              static_cast<long long>(watch.decided() - watch.qualified()),
              static_cast<long long>(watch.outcome_mismatches()));
  return complete ? 0 : 2;
}

}  // namespace stip::bench::load
