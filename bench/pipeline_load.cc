// pipeline-load: drives the running services (stip-intake, stip-assessment, stip-registry on
// Kafka and PostgreSQL, started by the caller) for two stages of bench/run, and measures the
// Kafka hop they are built on as a baseline.
//
//   pipeline-load latency --registry HOST:PORT --intake HOST:PORT --run-id ID
//                         [--rates 100,500,1000] [--seconds 10] [--drain-timeout-s 30]
//     Enrolls the enterprises, opens RegistryService.WatchDecisions from "now", then for each
//     rate in turn sends SubmitFiling on a fixed schedule (open loop: filing i at start +
//     i / rate, async, so a slow answer never delays the schedule) and matches every decision
//     on the stream to its filing. Latencies count from each filing's SCHEDULED send time (no
//     coordinated omission): submit = answer - scheduled, end to end = decision arrival -
//     scheduled.
//
//   pipeline-load kafka-hop --kafka HOST:PORT --topic T [--rates ...] [--seconds 10]
//     The baseline: one produce -> consume hop on librdkafka with the settings of the event
//     log's publisher (idempotent, acks=all), messages the size of a filing event with its
//     CloudEvents headers, on the same schedule; latency = arrival at a read_committed
//     consumer in this process - scheduled send time.
//
//   pipeline-load scale --registry HOST:PORT --kafka HOST:PORT --inbound-topic T
//                       --run-id ID --filings N [--rate R] [--interval-s 5]
//     Enrolls ceil(N / years) enterprises, produces N AnnualFilings to intake's inbound topic
//     and counts the decisions on WatchDecisions until all N arrived, sampling the rate every
//     interval.
//
// Filings are deterministic in (run id, index): enterprise e = index mod E files for fiscal
// year first_year + index div E, revision 1, figures from a seeded PRNG so that about half
// qualify under the default policy. USCCs carry a tag of the run id and the enterprise index,
// so that decisions are matched to filings without a table, and decisions of other runs on
// the same registry are told apart and ignored.
//
// Output: one JSON object to --json FILE, a short summary on stdout, progress on stderr.
// Errors end the process with exit 1 and a message; a scale run that times out exits 2.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/raw_copy.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "services/common/event.h"
#include "services/intake/uscc.h"
#include "stip/v1/intake_service.grpc.pb.h"
#include "stip/v1/registry_service.grpc.pb.h"
#include <librdkafka/rdkafka.h>

namespace {

using stip::bench::Clock;
using stip::bench::Die;
using stip::bench::SetOrDie;

// ---- Time and figures -----------------------------------------------------------------------

const Clock::time_point kEpoch = Clock::now();

// Nanoseconds since this process started (steady clock); never 0 after the start, so that 0
// can mean "not yet".
int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - kEpoch).count() + 1;
}
Clock::time_point FromNs(int64_t ns) { return kEpoch + std::chrono::nanoseconds(ns - 1); }

struct Percentiles {
  double p50_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;
  int64_t count = 0;
};

// Over `ms`, sorted here; zeros when empty.
Percentiles PercentilesOf(std::vector<double>& ms) {
  Percentiles p;
  p.count = static_cast<int64_t>(ms.size());
  if (ms.empty()) return p;
  std::sort(ms.begin(), ms.end());
  const auto at = [&](double q) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(q * static_cast<double>(ms.size())))];
  };
  p.p50_ms = at(0.50);
  p.p99_ms = at(0.99);
  p.p999_ms = at(0.999);
  p.max_ms = ms.back();
  return p;
}

std::string Num(double v) { return absl::StrFormat("%.3f", v); }
std::string Json(const Percentiles& p, std::string_view prefix) {
  return absl::StrFormat(
      "\"%1$sp50_ms\":%2$s,\"%1$sp99_ms\":%3$s,\"%1$sp999_ms\":%4$s,\"%1$smax_ms\":%5$s", prefix,
      Num(p.p50_ms), Num(p.p99_ms), Num(p.p999_ms), Num(p.max_ms));
}
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", static_cast<int>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

void WriteJson(const std::string& path, const std::string& json) {
  if (path.empty()) return;
  std::ofstream out(path);
  out << json << "\n";
  if (!out) Die(absl::StrCat("--json: cannot write ", path));
}

std::vector<double> ParseRates(const std::string& text) {
  std::vector<double> rates;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    double rate = 0;
    if (!absl::SimpleAtod(part, &rate) || !(rate > 0)) {
      Die(absl::StrCat("--rates: \"", text, "\" is not a list of positive rates, e.g. 100,500"));
    }
    rates.push_back(rate);
  }
  if (rates.empty()) Die("--rates: at least one rate is needed");
  return rates;
}

int CurrentYearInChina() {
  return static_cast<int>(absl::ToCivilYear(absl::Now(), absl::FixedTimeZone(8 * 3600)).year());
}

// ---- Deterministic enterprises and filings --------------------------------------------------

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t Fnv1a(std::string_view text) {
  uint64_t hash = 0xCBF29CE484222325ULL;
  for (const char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001B3ULL;
  }
  return hash;
}

constexpr std::string_view kTitles[] = {
    "Grid-scale solar inverter", "Solid-state battery cell",  "Recombinant insulin process",
    "Carbon fibre wing spar",    "Industrial edge gateway",   "Desalination membrane",
    "Satellite attitude sensor", "Five-axis machining centre"};

// The run's enterprises and their filings: enterprise e (0 <= e < enterprises) files for
// every fiscal year first_year .. first_year + years - 1; filing index k is enterprise
// k mod E, fiscal year first_year + k div E. Immutable after construction: thread-safe.
class Population {
 public:
  Population(const std::string& run_id, int first_year, int years, int64_t enterprises,
             std::vector<std::string> parks)
      : seed_(Fnv1a(run_id)),
        first_year_(first_year),
        years_(years),
        enterprises_(enterprises),
        parks_(std::move(parks)) {
    // "91" (market regulation, enterprise), 7 symbols of the run id's hash, 8 of the index.
    uint64_t h = seed_;
    prefix_ = "91";
    for (int i = 0; i < 7; ++i) {
      prefix_ += stip::intake::kUsccAlphabet[h % 31];
      h /= 31;
    }
  }

  int64_t enterprises() const { return enterprises_; }
  int64_t capacity() const { return enterprises_ * years_; }
  int first_year() const { return first_year_; }
  int years() const { return years_; }
  const std::string& prefix() const { return prefix_; }

  std::string Uscc(int64_t e) const {
    std::string first17 = prefix_;
    char digits[8];
    uint64_t v = static_cast<uint64_t>(e);
    for (int i = 7; i >= 0; --i) {
      digits[i] = stip::intake::kUsccAlphabet[v % 31];
      v /= 31;
    }
    first17.append(digits, 8);
    return first17 + *stip::intake::UsccCheckCharacter(first17);
  }
  const std::string& ParkOf(int64_t e) const {
    return parks_[static_cast<size_t>(e) % parks_.size()];
  }
  std::string NameOf(int64_t e) const {
    return absl::StrCat("Bench Enterprise ", prefix_.substr(2), "-", e);
  }

  // The filing index of (uscc, fiscal_year), or nullopt when it is not one of this run's.
  std::optional<int64_t> IndexOf(std::string_view uscc, int fiscal_year) const {
    if (uscc.size() != 18 || uscc.substr(0, prefix_.size()) != prefix_) return std::nullopt;
    int64_t e = 0;
    for (size_t i = prefix_.size(); i < 17; ++i) {
      const int v = stip::intake::UsccCharacterValue(uscc[i]);
      if (v < 0) return std::nullopt;
      e = e * 31 + v;
    }
    const int y = fiscal_year - first_year_;
    if (e >= enterprises_ || y < 0 || y >= years_) return std::nullopt;
    return static_cast<int64_t>(y) * enterprises_ + e;
  }

  // Whether filing k qualifies under the default policy (R&D >= 3% of revenue, tertiary >=
  // 30%, R&D staff >= 10%): about half do; a filing that does not fails one criterion.
  bool Qualifies(int64_t k) const { return (Draws(k)[0] & 1) == 0; }

  stip::v1::AnnualFiling Filing(int64_t k) const {
    const int64_t e = k % enterprises_;
    const auto d = Draws(k);
    const bool qualifies = (d[0] & 1) == 0;
    const int failing = qualifies ? -1 : static_cast<int>((d[0] >> 1) % 3);
    stip::v1::AnnualFiling filing;
    filing.set_uscc(Uscc(e));
    filing.set_park_id(ParkOf(e));
    filing.set_fiscal_year(first_year_ + static_cast<int>(k / enterprises_));
    filing.set_revision(1);
    const int64_t revenue = 10'000'000 + static_cast<int64_t>(d[1] % 5'000'000'000ULL);
    const int64_t total = 20 + static_cast<int64_t>(d[2] % 1981);
    // A share in basis points: [pass_lo, pass_hi] when passing, [fail_lo, threshold) when
    // failing; a passing count rounds up and a failing one down, so the outcome is exact.
    const auto share = [](uint64_t draw, bool pass, int64_t threshold, int64_t lo, int64_t hi) {
      return pass ? threshold + static_cast<int64_t>(draw % static_cast<uint64_t>(hi - threshold))
                  : lo + static_cast<int64_t>(draw % static_cast<uint64_t>(threshold - lo));
    };
    const auto part = [](int64_t whole, int64_t bp, bool pass) {
      return pass ? (whole * bp + 9999) / 10000 : whole * bp / 10000;
    };
    const bool rd_pass = failing != 0, tertiary_pass = failing != 1, staff_pass = failing != 2;
    filing.set_gross_revenue_fen(revenue);
    filing.set_rd_expenditure_fen(part(revenue, share(d[3], rd_pass, 300, 50, 1500), rd_pass));
    filing.set_total_employees(static_cast<int32_t>(total));
    filing.set_tertiary_educated_employees(static_cast<int32_t>(
        part(total, share(d[4], tertiary_pass, 3000, 500, 9000), tertiary_pass)));
    filing.set_rd_employees(
        static_cast<int32_t>(part(total, share(d[5], staff_pass, 1000, 100, 4000), staff_pass)));
    stip::v1::HiTechProject* project = filing.add_projects();
    project->set_project_id("p-1");
    project->set_title(std::string(kTitles[d[6] % std::size(kTitles)]));
    project->set_field(static_cast<stip::v1::TechnologyField>(1 + d[6] / 8 % 8));
    project->set_stage(d[6] / 64 % 2 == 0 ? stip::v1::PROJECT_STAGE_DEVELOPMENT
                                          : stip::v1::PROJECT_STAGE_COMMERCIALIZED);
    project->set_torch_nominated(d[6] / 128 % 2 == 0);
    filing.set_enterprise_name(NameOf(e));
    return filing;
  }

 private:
  std::array<uint64_t, 7> Draws(int64_t k) const {
    uint64_t state = seed_ ^ (static_cast<uint64_t>(k) * 0xD1B54A32D192ED03ULL);
    std::array<uint64_t, 7> d{};
    for (uint64_t& v : d) v = SplitMix64(state);
    return d;
  }

  const uint64_t seed_;
  const int first_year_;
  const int years_;
  const int64_t enterprises_;
  const std::vector<std::string> parks_;
  std::string prefix_;
};

// ---- gRPC -----------------------------------------------------------------------------------

// A channel with its own connection (a local subchannel pool), so that several channels to
// one server spread the calls over several HTTP/2 connections.
std::shared_ptr<grpc::Channel> NewChannel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(16 * 1024 * 1024);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

void WaitConnected(const std::shared_ptr<grpc::Channel>& channel, const std::string& flag,
                   const std::string& target) {
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    Die(absl::StrCat(flag, ": cannot connect to ", target, " within 10 s"));
  }
}

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

// Every park founded in or before `first_year` (so that every fiscal year of the run is
// after the park's founding, which intake checks), ordered by id.
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

struct EnrollResult {
  int64_t enterprises = 0;
  int64_t parks = 0;
  double seconds = 0;
  double per_s = 0;
  int64_t retries = 0;
};

std::string Json(const EnrollResult& r) {
  return absl::StrFormat(
      "{\"enterprises\":%d,\"parks\":%d,\"seconds\":%s,\"per_s\":%.1f,\"retries\":%d}",
      r.enterprises, r.parks, Num(r.seconds), r.per_s, r.retries);
}

bool Retryable(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::RESOURCE_EXHAUSTED || code == grpc::StatusCode::ABORTED;
}

// EnrollEnterprise for every enterprise of `population`, `concurrency` calls in flight over a
// few connections; retries transient failures, dies on any other. Progress every 2 s.
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

// ---- The decision stream --------------------------------------------------------------------

// Follows RegistryService.WatchDecisions from "now" (an empty cursor) on its own thread and
// records, per filing of `population`, when its decision arrived; decisions of filings that
// are not this run's (other runs, other revisions) are counted and ignored. Reconnects from
// the last cursor when the stream ends early. Arrival times and counters may be read from
// any thread while it runs.
class DecisionWatch {
 public:
  DecisionWatch(const std::string& target, const Population* population)
      : stub_(stip::v1::RegistryService::NewStub(NewChannel(target))),
        population_(population),
        arrival_ns_(static_cast<size_t>(population->capacity())) {}
  ~DecisionWatch() { Stop(); }

  // Opens the stream and returns once the server sent its first message (the heartbeat that
  // says where "now" is): from then on every decision applied is seen.
  void Start() {
    thread_ = std::thread([this] { Run(); });
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(30), [&] { return started_; })) {
      Die("--registry: WatchDecisions sent nothing within 30 s");
    }
  }
  void Stop() {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      if (context_ != nullptr) context_->TryCancel();
    }
    if (thread_.joinable()) thread_.join();
  }

  // 0 when the decision has not arrived.
  int64_t ArrivalNs(int64_t k) const {
    return arrival_ns_[static_cast<size_t>(k)].load(std::memory_order_acquire);
  }
  int64_t decided() const { return decided_.load(); }
  int64_t duplicates() const { return duplicates_.load(); }
  int64_t foreign() const { return foreign_.load(); }
  int64_t qualified() const { return qualified_.load(); }
  int64_t outcome_mismatches() const { return mismatches_.load(); }
  int64_t reconnects() const { return reconnects_.load(); }

 private:
  void Run() {
    std::string cursor;
    while (true) {
      grpc::ClientContext context;
      {
        std::lock_guard lock(mu_);
        if (stopping_) return;
        context_ = &context;
      }
      stip::v1::WatchDecisionsRequest request;
      request.set_cursor(cursor);
      auto reader = stub_->WatchDecisions(&context, request);
      stip::v1::WatchDecisionsResponse response;
      while (reader->Read(&response)) {
        if (!response.cursor().empty()) cursor = response.cursor();
        if (!started_) {
          std::lock_guard lock(mu_);
          started_ = true;
          cv_.notify_all();
        }
        if (response.has_decision()) Record(response.decision());
      }
      const grpc::Status status = reader->Finish();
      {
        std::lock_guard lock(mu_);
        context_ = nullptr;
        if (stopping_) return;
        if (!started_) {
          Die(absl::StrCat("--registry: WatchDecisions: ", status.error_message(), " (code ",
                           static_cast<int>(status.error_code()), ")"));
        }
      }
      ++reconnects_;
      std::fprintf(stderr, "watch: the stream ended (%s); resuming from %s\n",
                   status.error_message().c_str(), cursor.c_str());
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }

  void Record(const stip::v1::QualificationDecision& decision) {
    const int64_t now = NowNs();
    const std::optional<int64_t> k =
        decision.filing_revision() == 1
            ? population_->IndexOf(decision.uscc(), decision.fiscal_year())
            : std::nullopt;
    if (!k.has_value()) {
      ++foreign_;
      return;
    }
    int64_t expected = 0;
    if (!arrival_ns_[static_cast<size_t>(*k)].compare_exchange_strong(expected, now)) {
      ++duplicates_;
      return;
    }
    const bool qualified = decision.outcome() == stip::v1::DECISION_OUTCOME_QUALIFIED;
    if (qualified) ++qualified_;
    if (qualified != population_->Qualifies(*k)) ++mismatches_;
    ++decided_;
  }

  std::unique_ptr<stip::v1::RegistryService::Stub> stub_;
  const Population* const population_;
  std::vector<std::atomic<int64_t>> arrival_ns_;
  std::atomic<int64_t> decided_{0}, duplicates_{0}, foreign_{0}, qualified_{0}, mismatches_{0},
      reconnects_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;
  bool stopping_ = false;
  grpc::ClientContext* context_ = nullptr;
  std::thread thread_;
};

std::string Json(const DecisionWatch& watch) {
  return absl::StrFormat(
      "{\"decided\":%d,\"qualified\":%d,\"not_qualified\":%d,\"outcome_mismatches\":%d,"
      "\"duplicates\":%d,\"other_decisions\":%d,\"reconnects\":%d}",
      watch.decided(), watch.qualified(), watch.decided() - watch.qualified(),
      watch.outcome_mismatches(), watch.duplicates(), watch.foreign(), watch.reconnects());
}

// ---- Common options -------------------------------------------------------------------------

struct CommonOptions {
  std::string registry;
  std::string run_id;
  int64_t enterprises = 0;  // 0: computed
  int first_year = 2015;
  int years = 10;
  int enroll_concurrency = 64;
  std::string json;
};

void AddCommon(CLI::App* app, CommonOptions& o) {
  app->add_option("--registry", o.registry, "RegistryService HOST:PORT (stip-registry's gRPC)")
      ->required();
  app->add_option("--run-id", o.run_id,
                  "Makes this run's USCCs unique (derived from it and the enterprise index), "
                  "so repeated runs on one database do not collide")
      ->required();
  app->add_option("--enterprises", o.enterprises,
                  "Enterprises to enroll (default: just enough for the filings)");
  app->add_option("--first-year", o.first_year, "First fiscal year filed")->capture_default_str();
  app->add_option("--years", o.years, "Fiscal years filed per enterprise")->capture_default_str();
  app->add_option("--enroll-concurrency", o.enroll_concurrency, "EnrollEnterprise calls in flight")
      ->capture_default_str();
  app->add_option("--json", o.json, "Write the results to FILE as one JSON object");
}

// Checks the options, lists the parks and enrolls: the population filings are made from.
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

// ---- latency --------------------------------------------------------------------------------

struct LatencyOptions {
  std::string intake;
  std::string rates = "100,500,1000";
  double seconds = 10;
  double drain_timeout_s = 30;
  int warmup = 50;
  int channels = 8;
};

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
      r.missing, r.achieved_per_s, Json(r.submit, "submit_"), Json(r.end_to_end, "e2e_"));
}

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

// ---- Kafka ----------------------------------------------------------------------------------

// The producer settings of the event log's publisher (services/common/kafka_publisher.cc),
// which intake publishes accepted filings with: idempotent, acks=all, murmur2, linger 1 ms.
void SetPublisherSettings(rd_kafka_conf_t* conf, int linger_ms) {
  SetOrDie(conf, "enable.idempotence", "true");
  SetOrDie(conf, "acks", "all");
  SetOrDie(conf, "partitioner", "murmur2_random");
  SetOrDie(conf, "linger.ms", std::to_string(linger_ms));
  SetOrDie(conf, "allow.auto.create.topics", "false");
}

// The number of partitions of `topic`, or 0 when it does not exist.
int PartitionCount(rd_kafka_t* client, const std::string& topic) {
  const rd_kafka_metadata_t* metadata = nullptr;
  rd_kafka_topic_t* handle = rd_kafka_topic_new(client, topic.c_str(), nullptr);
  const rd_kafka_resp_err_t err = rd_kafka_metadata(client, 0, handle, &metadata, 10000);
  rd_kafka_topic_destroy(handle);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Die(absl::StrCat("--kafka: metadata of ", topic, ": ", rd_kafka_err2str(err)));
  }
  int count = 0;
  if (metadata->topic_cnt == 1 && metadata->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    count = metadata->topics[0].partition_cnt;
  }
  rd_kafka_metadata_destroy(metadata);
  return count;
}

void CreateTopic(const std::string& bootstrap, const std::string& topic, int partitions) {
  char error[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  SetOrDie(conf, "bootstrap.servers", bootstrap);
  rd_kafka_t* admin = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof(error));
  if (admin == nullptr) Die(error);
  rd_kafka_NewTopic_t* new_topic =
      rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, error, sizeof(error));
  if (new_topic == nullptr) Die(absl::StrCat("--topic ", topic, ": ", error));
  rd_kafka_queue_t* queue = rd_kafka_queue_new(admin);
  rd_kafka_CreateTopics(admin, &new_topic, 1, nullptr, queue);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 30000);
  if (event == nullptr) Die("--kafka: CreateTopics: no answer within 30 s");
  if (rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Die(absl::StrCat("--kafka: CreateTopics: ", rd_kafka_event_error_string(event)));
  }
  size_t count = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count);
  for (size_t i = 0; i < count; ++i) {
    const rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      Die(absl::StrCat("--topic ", topic, ": ", rd_kafka_err2str(err)));
    }
  }
  rd_kafka_event_destroy(event);
  rd_kafka_NewTopic_destroy(new_topic);
  rd_kafka_queue_destroy(queue);
  rd_kafka_destroy(admin);
}

// A producer with a thread serving its delivery reports; Produce retries a full queue.
// Delivery reports count into the members below (the report opaque is the message's index
// plus one, and `on_delivery` is called with it on the serving thread).
class Producer {
 public:
  Producer(const std::string& bootstrap, int linger_ms,
           std::function<void(int64_t index, rd_kafka_resp_err_t err)> on_delivery)
      : on_delivery_(std::move(on_delivery)) {
    char error[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    SetOrDie(conf, "bootstrap.servers", bootstrap);
    SetOrDie(conf, "client.id", "pipeline-load");
    SetPublisherSettings(conf, linger_ms);
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* message,
                                         void* opaque) {
      static_cast<Producer*>(opaque)->on_delivery_(
          static_cast<int64_t>(reinterpret_cast<intptr_t>(message->_private)) - 1, message->err);
    });
    producer_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof(error));
    if (producer_ == nullptr) Die(absl::StrCat("--kafka: ", error));
    poller_ = std::thread([this] {
      while (!stop_) rd_kafka_poll(producer_, 50);
    });
  }
  ~Producer() {
    Flush();
    stop_ = true;
    poller_.join();
    rd_kafka_destroy(producer_);
  }
  rd_kafka_t* get() { return producer_; }

  void Produce(const stip::OutgoingEvent& event, int64_t index) {
    rd_kafka_headers_t* headers = rd_kafka_headers_new(event.headers.size());
    for (const auto& [name, value] : event.headers) {
      rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()), value.data(),
                          static_cast<ssize_t>(value.size()));
    }
    while (true) {
      const rd_kafka_resp_err_t err = rd_kafka_producev(
          producer_, RD_KAFKA_V_TOPIC(event.topic.c_str()),
          RD_KAFKA_V_KEY(event.key.data(), event.key.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(event.value.data()), event.value.size()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers),
          RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<intptr_t>(index + 1))),
          RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return;  // the headers are the message's now
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_headers_destroy(headers);
        Die(absl::StrCat("--kafka: produce to ", event.topic, ": ", rd_kafka_err2str(err)));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  void Flush() {
    while (rd_kafka_outq_len(producer_) > 0) rd_kafka_flush(producer_, 100);
  }

 private:
  std::function<void(int64_t, rd_kafka_resp_err_t)> on_delivery_;
  rd_kafka_t* producer_ = nullptr;
  std::atomic<bool> stop_{false};
  std::thread poller_;
};

// ---- kafka-hop ------------------------------------------------------------------------------

struct HopOptions {
  std::string kafka;
  std::string topic;
  std::string rates = "100,500,1000";
  double seconds = 10;
  int partitions = 6;
  int linger_ms = 1;
  int message_bytes = 0;  // 0: the size of an AcceptedFiling
  double drain_timeout_s = 30;
  std::string json;
};

// The size of the AcceptedFiling intake publishes for `filing` (filing id, request id, content
// hash, region and receive time around it): what one hop of the pipeline carries.
size_t AcceptedFilingSize(const stip::v1::AnnualFiling& filing) {
  stip::v1::AcceptedFiling accepted;
  accepted.set_filing_id(absl::StrCat(filing.uscc(), "/", filing.fiscal_year(), "/1"));
  *accepted.mutable_filing() = filing;
  accepted.set_region(stip::v1::ECONOMIC_REGION_WESTERN);
  accepted.mutable_receive_time()->set_seconds(1764288000);
  accepted.mutable_receive_time()->set_nanos(123456789);
  accepted.set_request_id("pipeline-load-0123456789abcdef-1234567");
  accepted.set_content_sha256(std::string(64, 'f'));
  return accepted.ByteSizeLong();
}

struct HopResult {
  double target_per_s = 0;
  int64_t sent = 0, acked = 0, delivery_errors = 0, received = 0, missing = 0;
  double achieved_per_s = 0;
  Percentiles ack, end_to_end;
};

std::string Json(const HopResult& r) {
  return absl::StrFormat(
      "{\"target_per_s\":%s,\"sent\":%d,\"acked\":%d,\"delivery_errors\":%d,\"received\":%d,"
      "\"missing\":%d,\"achieved_per_s\":%.1f,%s,%s}",
      Num(r.target_per_s), r.sent, r.acked, r.delivery_errors, r.received, r.missing,
      r.achieved_per_s, Json(r.ack, "ack_"), Json(r.end_to_end, "e2e_"));
}

int KafkaHop(const HopOptions& o) {
  const std::vector<double> rates = ParseRates(o.rates);
  if (!(o.seconds > 0)) Die("--seconds must be positive");
  if (o.partitions < 1) Die("--partitions must be at least 1");
  if (o.linger_ms < 0) Die("--linger-ms must not be negative");
  if (o.message_bytes < 0) Die("--message-bytes must not be negative");
  int64_t total = 0;
  std::vector<int64_t> counts;
  for (const double rate : rates) {
    counts.push_back(std::max<int64_t>(1, std::llround(rate * o.seconds)));
    total += counts.back();
  }
  // The size of the events the pipeline carries: a filing like latency's, with the
  // CloudEvents headers intake puts on it.
  // Keys: distinct USCCs, spread over the partitions as enterprises are.
  const Population keys("kafka-hop", 2015, 10, int64_t{1} << 40, {"zhongguancun"});
  const size_t value_size =
      std::max<size_t>(o.message_bytes > 0 ? static_cast<size_t>(o.message_bytes)
                                           : AcceptedFilingSize(keys.Filing(0)),
                       16);

  std::vector<int64_t> scheduled_ns(static_cast<size_t>(total), 0);
  std::vector<std::atomic<int64_t>> acked_ns(static_cast<size_t>(total));
  std::vector<std::atomic<int64_t>> received_ns(static_cast<size_t>(total));
  std::atomic<int64_t> delivery_errors{0};
  Producer producer(o.kafka, o.linger_ms, [&](int64_t index, rd_kafka_resp_err_t err) {
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (delivery_errors++ == 0) {
        std::fprintf(stderr, "kafka-hop: delivery failed: %s\n", rd_kafka_err2str(err));
      }
      return;
    }
    acked_ns[static_cast<size_t>(index)].store(NowNs());
  });
  int partitions = PartitionCount(producer.get(), o.topic);
  if (partitions == 0) {
    std::fprintf(stderr, "kafka-hop: creating %s with %d partitions\n", o.topic.c_str(),
                 o.partitions);
    CreateTopic(o.kafka, o.topic, o.partitions);
    for (int i = 0; i < 50 && partitions == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      partitions = PartitionCount(producer.get(), o.topic);
    }
    if (partitions == 0) Die(absl::StrCat("--topic ", o.topic, ": not visible after creation"));
  }

  // The consumer: the services' consumer settings, assigned every partition at its current
  // end (queried, so that nothing produced after this point is skipped).
  char error[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  SetOrDie(conf, "bootstrap.servers", o.kafka);
  SetOrDie(conf, "client.id", "pipeline-load-consumer");
  SetOrDie(conf, "group.id", absl::StrCat("pipeline-load-hop-", getpid(), "-", time(nullptr)));
  SetOrDie(conf, "enable.auto.commit", "false");
  SetOrDie(conf, "isolation.level", "read_committed");
  SetOrDie(conf, "enable.partition.eof", "false");
  SetOrDie(conf, "queued.max.messages.kbytes", "16384");
  rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof(error));
  if (consumer == nullptr) Die(absl::StrCat("--kafka: ", error));
  rd_kafka_poll_set_consumer(consumer);
  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    int64_t low = 0, high = 0;
    if (rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(consumer, o.topic.c_str(), p, &low, &high, 10000);
        err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      Die(absl::StrCat("--kafka: the end of ", o.topic, "/", p, ": ", rd_kafka_err2str(err)));
    }
    rd_kafka_topic_partition_list_add(assignment, o.topic.c_str(), p)->offset = high;
  }
  if (rd_kafka_resp_err_t err = rd_kafka_assign(consumer, assignment);
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Die(absl::StrCat("--kafka: assign: ", rd_kafka_err2str(err)));
  }
  rd_kafka_topic_partition_list_destroy(assignment);
  // The run's messages start with this tag, so others on the topic are ignored.
  const uint64_t tag = Fnv1a(absl::StrCat(getpid(), "-", NowNs()));
  std::atomic<bool> stop_consumer{false};
  std::thread consumer_thread([&] {
    while (!stop_consumer) {
      rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer, 100);
      if (message == nullptr) continue;
      const int64_t now = NowNs();
      if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR && message->len >= 16) {
        uint64_t message_tag = 0;
        int64_t index = 0;
        std::memcpy(&message_tag, message->payload, 8);
        std::memcpy(&index, static_cast<const char*>(message->payload) + 8, 8);
        if (message_tag == tag && index >= 0 && index < total) {
          int64_t expected = 0;
          received_ns[static_cast<size_t>(index)].compare_exchange_strong(expected, now);
        }
      }
      rd_kafka_message_destroy(message);
    }
  });
  // Let the consumer fetch from the assigned offsets before the clock starts.
  std::this_thread::sleep_for(std::chrono::seconds(1));

  std::vector<HopResult> results;
  int64_t next = 0;
  for (size_t r = 0; r < rates.size(); ++r) {
    const double rate = rates[r];
    const int64_t first = next, count = counts[r];
    next += count;
    std::fprintf(stderr, "kafka-hop: %.0f messages/s for %.1f s (%lld messages)\n", rate, o.seconds,
                 static_cast<long long>(count));
    // Events made before the clock starts: the pacer only stamps and produces.
    std::vector<stip::OutgoingEvent> events;
    events.reserve(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      stip::CloudEventAttributes attributes;
      attributes.id = absl::StrCat("pipeline-load-hop-", first + i);
      attributes.type = "stip.v1.AcceptedFiling";
      attributes.source = "/stip/intake";
      attributes.time = absl::Now();
      std::string value(value_size, 'x');
      std::memcpy(value.data(), &tag, 8);
      const int64_t index = first + i;
      std::memcpy(value.data() + 8, &index, 8);
      events.push_back(
          stip::MakeCloudEvent(o.topic, keys.Uscc(index), std::move(value), attributes));
    }
    const int64_t start_ns = NowNs() + 20'000'000;
    const double period_ns = 1e9 / rate;
    for (int64_t i = 0; i < count; ++i) {
      const int64_t at = start_ns + static_cast<int64_t>(static_cast<double>(i) * period_ns);
      scheduled_ns[static_cast<size_t>(first + i)] = at;
      std::this_thread::sleep_until(FromNs(at));
      producer.Produce(events[static_cast<size_t>(i)], first + i);
    }
    const int64_t drain_until = scheduled_ns[static_cast<size_t>(first + count - 1)] +
                                static_cast<int64_t>(o.drain_timeout_s * 1e9);
    auto all_received = [&] {
      for (int64_t i = first; i < first + count; ++i) {
        if (received_ns[static_cast<size_t>(i)].load() == 0) return false;
      }
      return true;
    };
    while (!all_received() && NowNs() < drain_until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    producer.Flush();
    HopResult result;
    result.target_per_s = rate;
    result.sent = count;
    std::vector<double> ack_ms, e2e_ms;
    int64_t last = 0;
    for (int64_t i = first; i < first + count; ++i) {
      const auto s = static_cast<size_t>(i);
      if (const int64_t acked = acked_ns[s].load(); acked != 0) {
        ++result.acked;
        ack_ms.push_back(static_cast<double>(acked - scheduled_ns[s]) / 1e6);
      }
      if (const int64_t received = received_ns[s].load(); received != 0) {
        ++result.received;
        e2e_ms.push_back(static_cast<double>(received - scheduled_ns[s]) / 1e6);
        last = std::max(last, received);
      } else {
        ++result.missing;
      }
    }
    result.delivery_errors = delivery_errors.exchange(0);
    if (result.received > 0) {
      result.achieved_per_s =
          static_cast<double>(result.received) / (static_cast<double>(last - start_ns) / 1e9);
    }
    result.ack = PercentilesOf(ack_ms);
    result.end_to_end = PercentilesOf(e2e_ms);
    std::fprintf(stderr,
                 "kafka-hop: %.0f/s: sent %lld, received %lld, missing %lld, achieved %.1f/s; "
                 "p50 %.2f p99 %.2f max %.2f ms\n",
                 rate, static_cast<long long>(result.sent), static_cast<long long>(result.received),
                 static_cast<long long>(result.missing), result.achieved_per_s,
                 result.end_to_end.p50_ms, result.end_to_end.p99_ms, result.end_to_end.max_ms);
    results.push_back(result);
  }
  stop_consumer = true;
  consumer_thread.join();
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);

  std::vector<std::string> rows;
  for (const HopResult& r : results) rows.push_back(Json(r));
  WriteJson(o.json,
            absl::StrFormat("{\"tool\":\"pipeline-load\",\"mode\":\"kafka-hop\",\"kafka\":%s,"
                            "\"topic\":%s,\"partitions\":%d,\"seconds_per_rate\":%s,"
                            "\"message_bytes\":%d,\"producer\":{\"acks\":\"all\","
                            "\"enable.idempotence\":true,\"linger.ms\":%d},"
                            "\"consumer\":{\"isolation.level\":\"read_committed\"},"
                            "\"librdkafka\":%s,\"rates\":[%s]}",
                            Quote(o.kafka), Quote(o.topic), partitions, Num(o.seconds), value_size,
                            o.linger_ms, Quote(rd_kafka_version_str()), absl::StrJoin(rows, ",")));
  std::printf("pipeline-load kafka-hop: %s (%d partitions), %zu-byte messages, linger.ms=%d\n",
              o.topic.c_str(), partitions, value_size, o.linger_ms);
  std::printf("%10s %7s %8s %7s %10s %30s\n", "target/s", "sent", "received", "missing",
              "achieved/s", "p50/p99/p999/max ms");
  bool complete = true;
  for (const HopResult& r : results) {
    complete = complete && r.missing == 0;
    std::printf("%10.0f %7lld %8lld %7lld %10.1f %30s\n", r.target_per_s,
                static_cast<long long>(r.sent), static_cast<long long>(r.received),
                static_cast<long long>(r.missing), r.achieved_per_s,
                absl::StrFormat("%.2f/%.2f/%.2f/%.2f", r.end_to_end.p50_ms, r.end_to_end.p99_ms,
                                r.end_to_end.p999_ms, r.end_to_end.max_ms)
                    .c_str());
  }
  return complete ? 0 : 2;
}

// ---- scale ----------------------------------------------------------------------------------

struct ScaleOptions {
  std::string kafka;
  std::string inbound_topic;
  int64_t filings = 0;
  double rate = 0;
  double interval_s = 5;
  double timeout_s = 900;
  int linger_ms = 5;
};

int Scale(const CommonOptions& common, const ScaleOptions& o) {
  if (o.filings < 1) Die("--filings must be at least 1");
  if (o.rate < 0) Die("--rate must not be negative (0: as fast as the producer goes)");
  if (!(o.interval_s > 0)) Die("--interval-s must be positive");
  if (!(o.timeout_s > 0)) Die("--timeout-s must be positive");
  std::atomic<int64_t> acked{0}, delivery_errors{0};
  Producer producer(o.kafka, o.linger_ms, [&](int64_t, rd_kafka_resp_err_t err) {
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++acked;
    } else if (delivery_errors++ == 0) {
      std::fprintf(stderr, "scale: delivery failed: %s\n", rd_kafka_err2str(err));
    }
  });
  if (PartitionCount(producer.get(), o.inbound_topic) == 0) {
    Die(absl::StrCat("--inbound-topic ", o.inbound_topic,
                     ": no such topic; start stip-intake with --inbound-topic ", o.inbound_topic,
                     " first"));
  }
  const auto prepared = Prepare(common, o.filings);
  const Population& population = prepared.first;
  const EnrollResult& enroll = prepared.second;
  DecisionWatch watch(common.registry, &population);
  watch.Start();

  struct Sample {
    double t_s;
    int64_t produced, decided;
    double decided_per_s;
  };
  std::vector<Sample> series;
  const int64_t start_ns = NowNs();
  std::atomic<int64_t> produce_end_ns{0};
  std::fprintf(stderr, "scale: producing %lld filings to %s%s\n", static_cast<long long>(o.filings),
               o.inbound_topic.c_str(),
               o.rate > 0 ? absl::StrFormat(" at %.0f/s", o.rate).c_str() : "");
  std::thread produce_thread([&] {
    const double period_ns = o.rate > 0 ? 1e9 / o.rate : 0;
    for (int64_t k = 0; k < o.filings; ++k) {
      if (period_ns > 0) {
        std::this_thread::sleep_until(
            FromNs(start_ns + static_cast<int64_t>(static_cast<double>(k) * period_ns)));
      }
      const stip::v1::AnnualFiling filing = population.Filing(k);
      stip::CloudEventAttributes attributes;
      attributes.id = absl::StrCat("pipeline-load-", common.run_id, "-", k);
      attributes.type = "stip.v1.AnnualFiling";
      attributes.source = "/bench/pipeline-load";
      attributes.time = absl::Now();
      producer.Produce(stip::MakeCloudEvent(o.inbound_topic, filing.uscc(),
                                            filing.SerializeAsString(), attributes),
                       k);
    }
    producer.Flush();
    produce_end_ns = NowNs();
  });

  const int64_t interval_ns = static_cast<int64_t>(o.interval_s * 1e9);
  const int64_t give_up_ns = start_ns + static_cast<int64_t>(o.timeout_s * 1e9);
  int64_t next_sample = start_ns + interval_ns;
  int64_t last_decided = 0;
  int64_t last_sample_ns = start_ns;
  bool timed_out = false;
  while (true) {
    const int64_t decided = watch.decided();
    const int64_t now = NowNs();
    if (decided >= o.filings) break;
    if (now >= give_up_ns) {
      timed_out = true;
      break;
    }
    if (now >= next_sample) {
      const Sample sample{static_cast<double>(now - start_ns) / 1e9, acked.load(), decided,
                          static_cast<double>(decided - last_decided) /
                              (static_cast<double>(now - last_sample_ns) / 1e9)};
      series.push_back(sample);
      std::fprintf(stderr, "scale: %7.1f s  produced %lld  decided %lld  (%.0f decisions/s)\n",
                   sample.t_s, static_cast<long long>(sample.produced),
                   static_cast<long long>(sample.decided), sample.decided_per_s);
      last_decided = decided;
      last_sample_ns = now;
      next_sample += interval_ns;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // The last decision's arrival, exactly: the latest arrival time recorded.
  int64_t last_decision_ns = 0;
  for (int64_t k = 0; k < o.filings; ++k) {
    last_decision_ns = std::max(last_decision_ns, watch.ArrivalNs(k));
  }
  const int64_t end_ns = NowNs();
  const Sample final_sample{static_cast<double>(end_ns - start_ns) / 1e9, acked.load(),
                            watch.decided(),
                            static_cast<double>(watch.decided() - last_decided) /
                                (static_cast<double>(end_ns - last_sample_ns) / 1e9)};
  series.push_back(final_sample);
  produce_thread.join();
  watch.Stop();

  const double produce_s = static_cast<double>(produce_end_ns.load() - start_ns) / 1e9;
  const double decide_s =
      last_decision_ns > 0 ? static_cast<double>(last_decision_ns - start_ns) / 1e9 : 0;
  const int64_t decided = watch.decided();
  const double decisions_per_s = decide_s > 0 ? static_cast<double>(decided) / decide_s : 0;
  std::vector<std::string> samples;
  for (const Sample& s : series) {
    samples.push_back(absl::StrFormat(
        "{\"t_s\":%s,\"produced\":%d,\"decided\":%d,\"decided_per_s_in_interval\":%.1f}",
        Num(s.t_s), s.produced, s.decided, s.decided_per_s));
  }
  WriteJson(common.json,
            absl::StrFormat(
                "{\"tool\":\"pipeline-load\",\"mode\":\"scale\",\"run_id\":%s,\"kafka\":%s,"
                "\"inbound_topic\":%s,\"registry\":%s,\"filings\":%d,\"target_rate_per_s\":%s,"
                "\"fiscal_years\":[%d,%d],\"enroll\":%s,\"produced\":%d,\"delivery_errors\":%d,"
                "\"produce_s\":%s,\"produce_per_s\":%.1f,\"decided\":%d,\"missing\":%d,"
                "\"timed_out\":%s,\"decide_s\":%s,\"decisions_per_s\":%.1f,\"watch\":%s,"
                "\"interval_s\":%s,\"series\":[%s]}",
                Quote(common.run_id), Quote(o.kafka), Quote(o.inbound_topic),
                Quote(common.registry), o.filings, Num(o.rate), population.first_year(),
                population.first_year() + population.years() - 1, Json(enroll), acked.load(),
                delivery_errors.load(), Num(produce_s),
                produce_s > 0 ? static_cast<double>(acked.load()) / produce_s : 0.0, decided,
                o.filings - decided, timed_out ? "true" : "false", Num(decide_s), decisions_per_s,
                Json(watch), Num(o.interval_s), absl::StrJoin(samples, ",")));
  std::printf("pipeline-load scale (run %s): enrolled %lld enterprises in %.2f s (%.0f/s)\n",
              common.run_id.c_str(), static_cast<long long>(enroll.enterprises), enroll.seconds,
              enroll.per_s);
  std::printf(
      "produced %lld filings in %.2f s (%.0f/s); %lld decided in %.2f s from the first "
      "produce (%.0f decisions/s); %lld qualified, %lld outcome mismatches\n",
      static_cast<long long>(acked.load()), produce_s,
      produce_s > 0 ? static_cast<double>(acked.load()) / produce_s : 0.0,
      static_cast<long long>(decided), decide_s, decisions_per_s,
      static_cast<long long>(watch.qualified()),
      static_cast<long long>(watch.outcome_mismatches()));
  if (timed_out) {
    std::fprintf(stderr, "pipeline-load: scale: %lld of %lld decisions missing after %.0f s\n",
                 static_cast<long long>(o.filings - decided), static_cast<long long>(o.filings),
                 o.timeout_s);
    return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "pipeline-load: drives the running stip-intake, stip-assessment and stip-registry (on "
      "Kafka and PostgreSQL) and measures them, with a raw Kafka hop as the baseline.\n"
      "Filings are deterministic in --run-id: enterprise e files for fiscal years --first-year "
      ".. --first-year + --years - 1, revision 1, about half qualifying under the default "
      "policy. Decisions are followed on RegistryService.WatchDecisions from 'now' and matched "
      "to their filings by (USCC, fiscal year). Results: one JSON object to --json FILE, a "
      "summary on stdout, progress on stderr. Exit 0: every filing decided (every message "
      "received); 2: some missing; 1: an error."};
  app.require_subcommand(1);

  CommonOptions latency_common;
  LatencyOptions latency;
  CLI::App* latency_app = app.add_subcommand(
      "latency",
      "Open-loop SubmitFiling at each of --rates for --seconds; submit and end-to-end (decision "
      "on WatchDecisions) latency from each filing's scheduled send time");
  AddCommon(latency_app, latency_common);
  latency_app->add_option("--intake", latency.intake, "IntakeService HOST:PORT")->required();
  latency_app->add_option("--rates", latency.rates, "Target filings/s, one run each, in turn")
      ->capture_default_str();
  latency_app->add_option("--seconds", latency.seconds, "Seconds of sending per rate")
      ->capture_default_str();
  latency_app
      ->add_option("--drain-timeout-s", latency.drain_timeout_s,
                   "After a rate's last send, wait this long for outstanding decisions")
      ->capture_default_str();
  latency_app
      ->add_option("--warmup", latency.warmup,
                   "Unmeasured filings at 50/s first (connections, caches, producers warm)")
      ->capture_default_str();
  latency_app->add_option("--channels", latency.channels, "gRPC connections to intake")
      ->capture_default_str();

  HopOptions hop;
  CLI::App* hop_app = app.add_subcommand(
      "kafka-hop",
      "The baseline: produce (idempotent, acks=all, the event log publisher's settings) -> "
      "read_committed consume in this process, on a fixed schedule at each of --rates; latency "
      "from the scheduled send time");
  hop_app->add_option("--kafka", hop.kafka, "Kafka bootstrap servers HOST:PORT")->required();
  hop_app->add_option("--topic", hop.topic, "Topic (created when missing)")->required();
  hop_app->add_option("--rates", hop.rates, "Target messages/s, one run each, in turn")
      ->capture_default_str();
  hop_app->add_option("--seconds", hop.seconds, "Seconds of sending per rate")
      ->capture_default_str();
  hop_app->add_option("--partitions", hop.partitions, "Partitions of a topic created here")
      ->capture_default_str();
  hop_app
      ->add_option("--linger-ms", hop.linger_ms,
                   "Producer linger.ms (1: the event log publisher's, as intake publishes)")
      ->capture_default_str();
  hop_app
      ->add_option("--message-bytes", hop.message_bytes,
                   "Message value size (0: the size of the AcceptedFiling intake publishes)")
      ->capture_default_str();
  hop_app
      ->add_option("--drain-timeout-s", hop.drain_timeout_s,
                   "After a rate's last send, wait this long for outstanding messages")
      ->capture_default_str();
  hop_app->add_option("--json", hop.json, "Write the results to FILE as one JSON object");

  CommonOptions scale_common;
  ScaleOptions scale;
  CLI::App* scale_app = app.add_subcommand(
      "scale",
      "Enroll ceil(N / years) enterprises, produce N AnnualFilings to intake's inbound topic "
      "and count decisions on WatchDecisions until all N arrived, sampling every interval");
  AddCommon(scale_app, scale_common);
  scale_app->add_option("--kafka", scale.kafka, "Kafka bootstrap servers HOST:PORT")->required();
  scale_app
      ->add_option("--inbound-topic", scale.inbound_topic,
                   "Intake's inbound topic (stip-intake --inbound-topic); must exist")
      ->required();
  scale_app->add_option("--filings", scale.filings, "Filings to produce")->required();
  scale_app->add_option("--rate", scale.rate, "Filings/s (0: as fast as the producer goes)")
      ->capture_default_str();
  scale_app->add_option("--interval-s", scale.interval_s, "Seconds between samples")
      ->capture_default_str();
  scale_app->add_option("--timeout-s", scale.timeout_s, "Give up (exit 2) after")
      ->capture_default_str();
  scale_app
      ->add_option("--linger-ms", scale.linger_ms,
                   "Producer linger.ms (an upstream bulk producer batches)")
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  if (*latency_app) return Latency(latency_common, latency);
  if (*hop_app) return KafkaHop(hop);
  return Scale(scale_common, scale);
}
