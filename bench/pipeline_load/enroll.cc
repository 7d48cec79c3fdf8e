#include "bench/pipeline_load/enroll.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/pipeline_load/grpc_channel.h"
#include "bench/pipeline_load/report.h"
#include "bench/raw_copy.h"
#include "grpcpp/client_context.h"

namespace stip::bench::load {
namespace {

// At most `limit` calls in flight.
class InFlight {
 public:
  explicit InFlight(int limit) : limit_(limit) {}
  void Acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return count_ < limit_; });
    ++count_;
  }
  void Release() {
    std::lock_guard lock(mu_);
    --count_;
    cv_.notify_all();
  }
  void WaitIdle() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return count_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_ = 0;
  const int limit_;
};

bool Retryable(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::RESOURCE_EXHAUSTED || code == grpc::StatusCode::ABORTED;
}

}  // namespace

std::string Json(const EnrollResult& r) {
  return absl::StrFormat(
      "{\"enterprises\":%d,\"parks\":%d,\"seconds\":%s,\"per_s\":%.1f,\"retries\":%d}",
      r.enterprises, r.parks, Num(r.seconds), r.per_s, r.retries);
}

std::vector<std::string> EligibleParks(stip::v1::RegistryService::Stub& registry, int first_year) {
  std::vector<std::string> parks;
  std::string token;
  int listed = 0;
  do {
    stip::v1::ListParksRequest request;
    request.set_page_size(100);
    request.set_page_token(token);
    stip::v1::ListParksResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    const grpc::Status status = registry.ListParks(&context, request, &response);
    if (!status.ok()) Die(absl::StrCat("--registry: ListParks: ", status.error_message()));
    for (const stip::v1::Park& park : response.parks()) {
      ++listed;
      if (park.year_founded() <= first_year) parks.push_back(park.park_id());
    }
    token = response.next_page_token();
  } while (!token.empty());
  if (parks.empty()) {
    Die(absl::StrCat("--first-year ", first_year, ": none of the registry's ", listed,
                     " parks was founded by then; choose a later first year"));
  }
  std::sort(parks.begin(), parks.end());
  return parks;
}

EnrollResult Enroll(const std::string& target, const Population& population, int concurrency,
                    int64_t parks) {
  constexpr int kChannels = 4;
  std::vector<std::unique_ptr<stip::v1::RegistryService::Stub>> stubs;
  for (int c = 0; c < kChannels; ++c) {
    stubs.push_back(stip::v1::RegistryService::NewStub(NewChannel(target)));
  }
  struct Call {
    grpc::ClientContext context;
    stip::v1::EnrollEnterpriseRequest request;
    stip::v1::EnrollEnterpriseResponse response;
    int64_t enterprise = 0;
  };
  InFlight in_flight(concurrency);
  std::mutex mu;
  std::vector<int64_t> retry;
  std::string fatal;
  std::atomic<int64_t> done{0};
  EnrollResult result;
  result.enterprises = population.enterprises();
  result.parks = parks;
  const auto start = Clock::now();
  auto last_progress = start;
  std::vector<int64_t> pending(static_cast<size_t>(population.enterprises()));
  for (int64_t e = 0; e < population.enterprises(); ++e) pending[static_cast<size_t>(e)] = e;
  std::fprintf(stderr, "enroll: %lld enterprises over %lld parks, %d in flight\n",
               static_cast<long long>(population.enterprises()), static_cast<long long>(parks),
               concurrency);
  for (int round = 0; !pending.empty(); ++round) {
    if (round > 0) {
      if (round > 5) Die(absl::StrCat("--registry: ", pending.size(), " enrollments kept failing"));
      result.retries += static_cast<int64_t>(pending.size());
      std::this_thread::sleep_for(std::chrono::seconds(round));
    }
    for (size_t i = 0; i < pending.size(); ++i) {
      in_flight.Acquire();
      auto* call = new Call;
      call->enterprise = pending[i];
      call->request.set_uscc(population.Uscc(call->enterprise));
      call->request.set_name(population.NameOf(call->enterprise));
      call->request.set_park_id(population.ParkOf(call->enterprise));
      call->request.set_foreign_invested(call->enterprise % 13 == 0);
      call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      stubs[i % kChannels]->async()->EnrollEnterprise(
          &call->context, &call->request, &call->response, [&, call](grpc::Status status) {
            if (status.ok()) {
              ++done;
            } else {
              std::lock_guard lock(mu);
              if (Retryable(status.error_code())) {
                retry.push_back(call->enterprise);
              } else if (fatal.empty()) {
                fatal = absl::StrCat(
                    "EnrollEnterprise ", call->request.uscc(), " in park ", call->request.park_id(),
                    ": code ", static_cast<int>(status.error_code()), ": ", status.error_message());
              }
            }
            delete call;
            in_flight.Release();
          });
      if (Clock::now() - last_progress > std::chrono::seconds(2)) {
        last_progress = Clock::now();
        const double s = stip::bench::Seconds(start, last_progress);
        std::fprintf(stderr, "enroll: %lld of %lld in %.1f s (%.0f/s)\n",
                     static_cast<long long>(done.load()),
                     static_cast<long long>(population.enterprises()), s,
                     static_cast<double>(done.load()) / s);
      }
      std::lock_guard lock(mu);
      if (!fatal.empty()) break;
    }
    in_flight.WaitIdle();
    std::lock_guard lock(mu);
    if (!fatal.empty()) Die(absl::StrCat("--registry: ", fatal));
    pending.swap(retry);
    retry.clear();
  }
  result.seconds = stip::bench::Seconds(start, Clock::now());
  result.per_s = static_cast<double>(result.enterprises) / result.seconds;
  std::fprintf(stderr, "enroll: %lld enterprises in %.2f s (%.0f/s)\n",
               static_cast<long long>(result.enterprises), result.seconds, result.per_s);
  return result;
}

std::pair<Population, EnrollResult> Prepare(const CommonOptions& o, int64_t filings) {
  if (o.run_id.empty()) Die("--run-id must not be empty");
  if (o.years < 1) Die("--years must be at least 1");
  const int current = CurrentYearInChina();
  if (o.first_year < 1988 || o.first_year + o.years - 1 > current) {
    Die(absl::StrCat("--first-year ", o.first_year, " --years ", o.years,
                     ": the fiscal years must lie in 1988 .. ", current,
                     " (intake refuses others)"));
  }
  if (o.enroll_concurrency < 1) Die("--enroll-concurrency must be at least 1");
  const int64_t needed = (filings + o.years - 1) / o.years;
  const int64_t enterprises = o.enterprises > 0 ? o.enterprises : needed;
  if (enterprises < needed) {
    Die(absl::StrCat("--enterprises ", enterprises, ": ", filings, " filings over ", o.years,
                     " years need at least ", needed));
  }
  auto channel = NewChannel(o.registry);
  WaitConnected(channel, "--registry", o.registry);
  auto stub = stip::v1::RegistryService::NewStub(channel);
  std::vector<std::string> parks = EligibleParks(*stub, o.first_year);
  const auto park_count = static_cast<int64_t>(parks.size());
  Population population(o.run_id, o.first_year, o.years, enterprises, std::move(parks));
  std::fprintf(stderr, "run %s: USCC prefix %s, fiscal years %d..%d\n", o.run_id.c_str(),
               population.prefix().c_str(), o.first_year, o.first_year + o.years - 1);
  EnrollResult enroll = Enroll(o.registry, population, o.enroll_concurrency, park_count);
  return {std::move(population), enroll};
}

}  // namespace stip::bench::load
