// registry-apply: events applied per second by RegistryStore::Apply on SQLite and on
// PostgreSQL, beside a plain batched insert of the same rows into the same database, in one
// run. Prints a Markdown table per database.
//
//   registry-apply --postgres "$(deploy/local/postgres.sh url)" [--sqlite-dir DIR]
//                  [--events 200000] [--batch 2000] [--rounds 3]
//
// The events: half AcceptedFilings (3 projects each), half QualificationDecisions, one for
// each filing and trailing it by a few hundred events as the assessment stream does, about
// half of them QUALIFIED, keyed over 40,000 enterprises and 2 fiscal years (the filings
// beyond one per enterprise and year are second revisions). Filings and decisions sit on 6
// partitions each of their topics, with offsets, as the applier hands them over.
//
// Each round, for each database:
//   - the baseline: a fresh database with the registry's schema (so the same tables and
//     indexes), its park catalogue and the 40,000 enterprises enrolled, and each event's row,
//     payload bytes included, inserted into `filings` or `decisions` with one INSERT through sql.h,
//     one BeginWrite transaction per batch. It is the floor of recording those events through our
//     SQL layer.
//   - Apply: a fresh database seeded the same way and RegistryStore::Apply over the same events in
//   the same
//     batches: the dedup lookups, enterprise_years, the enterprise status, the roster, the
//     history, listings, the outbox and the offsets on top of those inserts.
// Only the batches are timed (not opening, migrating or generating). The ratio
// Apply/baseline is the share of the raw insert rate the registry's logic keeps.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "google/protobuf/util/time_util.h"
#include "services/common/abseil_runtime.h"
#include "services/common/event.h"
#include "services/registry/park_catalogue.h"
#include "services/registry/registry_store.h"
#include "services/registry/sql.h"
#include "stip/v1/decision.pb.h"
#include "stip/v1/filing.pb.h"
#include <libpq-fe.h>

namespace {

using Clock = std::chrono::steady_clock;
using google::protobuf::util::TimeUtil;
using stip::registry::PositionedEvent;
using stip::registry::SqlParam;

constexpr int kEnterprises = 40000;
constexpr int kFirstYear = 2023;
constexpr int kYears = 2;
constexpr int kPartitions = 6;
// How many events a decision trails its filing by.
constexpr int kDecisionLag = 500;

[[noreturn]] void Die(const std::string& what) {
  std::cerr << "registry-apply: " << what << "\n";
  std::exit(1);
}

template <typename T>
T OrDie(absl::StatusOr<T> value, const std::string& what) {
  if (!value.ok()) Die(absl::StrCat(what, ": ", value.status().ToString()));
  return *std::move(value);
}

void OrDie(const absl::Status& status, const std::string& what) {
  if (!status.ok()) Die(absl::StrCat(what, ": ", status.ToString()));
}

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}

struct FilingKey {
  int enterprise;
  int32_t year;
  int32_t revision;
};

// The k-th filing: one per enterprise and year first (2023, then 2024, enterprises in a
// scattered order), then second revisions.
FilingKey KeyOf(int k) {
  constexpr int slots = kEnterprises * kYears;
  const int round = k / slots;
  const int slot = k % slots;
  // 7919 and 104729 are primes, coprime to 40,000: permutations of the enterprises.
  const uint64_t multiplier = round == 0 ? 7919 : 104729;
  return {
      static_cast<int>((static_cast<uint64_t>(slot % kEnterprises) * multiplier + round) %
                       kEnterprises),
      round == 0 ? kFirstYear + slot / kEnterprises : kFirstYear + kYears - 1 - slot / kEnterprises,
      1 + round};
}

std::string Uscc(int enterprise) {
  return absl::StrFormat("91320100MA%08d", 10000000 + enterprise);
}

std::string FilingId(const FilingKey& key) {
  return absl::StrCat(Uscc(key.enterprise), "/", key.year, "/", key.revision);
}

stip::v1::AcceptedFiling MakeFiling(const FilingKey& key, int64_t now_us) {
  const std::vector<stip::v1::Park>& parks = stip::registry::EmbeddedParkCatalogue();
  const stip::v1::Park& park = parks[Mix(key.enterprise) % parks.size()];
  const uint64_t h = Mix(static_cast<uint64_t>(key.enterprise) * 131 + key.year * 7 + key.revision);
  stip::v1::AcceptedFiling accepted;
  accepted.set_filing_id(FilingId(key));
  accepted.set_region(park.region());
  *accepted.mutable_receive_time() = TimeUtil::MicrosecondsToTimestamp(now_us);
  accepted.set_request_id(absl::StrFormat("%08x-%04x-4%03x-8%03x-%012x", h >> 32, h & 0xffff,
                                          (h >> 16) & 0xfff, (h >> 28) & 0xfff,
                                          Mix(h) & 0xffffffffffffULL));
  accepted.set_content_sha256(
      absl::StrFormat("%016x%016x%016x%016x", Mix(h + 1), Mix(h + 2), Mix(h + 3), Mix(h + 4)));
  stip::v1::AnnualFiling* filing = accepted.mutable_filing();
  filing->set_uscc(Uscc(key.enterprise));
  filing->set_park_id(park.park_id());
  filing->set_fiscal_year(key.year);
  filing->set_revision(key.revision);
  const int64_t revenue = 50'000'000'00 + static_cast<int64_t>(h % 900'000'000'00);
  filing->set_gross_revenue_fen(revenue);
  filing->set_rd_expenditure_fen(revenue / 100 * static_cast<int64_t>(1 + (h >> 8) % 6));
  filing->set_total_employees(static_cast<int32_t>(80 + (h >> 16) % 2000));
  filing->set_tertiary_educated_employees(filing->total_employees() / 3);
  filing->set_rd_employees(filing->total_employees() / 8);
  filing->set_enterprise_name(
      absl::StrCat("Jiangsu Example Intelligent Technology Co., Ltd. No. ", key.enterprise));
  for (int p = 0; p < 3; ++p) {
    stip::v1::HiTechProject* project = filing->add_projects();
    project->set_project_id(absl::StrCat("P", key.year, "-", p + 1));
    project->set_title(
        absl::StrCat("Low-power edge inference module for industrial inspection, "
                     "phase ",
                     p + 1));
    project->set_field(static_cast<stip::v1::TechnologyField>(1 + (h >> (4 * p)) % 8));
    project->set_stage((h >> (8 + p)) % 2 == 0 ? stip::v1::PROJECT_STAGE_DEVELOPMENT
                                               : stip::v1::PROJECT_STAGE_COMMERCIALIZED);
    project->set_torch_nominated(p == 0 || (h >> (12 + p)) % 2 == 0);
  }
  return accepted;
}

stip::v1::QualificationDecision MakeDecision(const stip::v1::AcceptedFiling& accepted,
                                             int64_t now_us) {
  const stip::v1::AnnualFiling& filing = accepted.filing();
  const uint64_t h = Mix(std::hash<std::string>{}(accepted.filing_id()));
  const bool qualified = h % 2 == 0;
  stip::v1::QualificationDecision decision;
  decision.set_decision_id(absl::StrCat(accepted.filing_id(), "/stip-default/1"));
  decision.set_filing_id(accepted.filing_id());
  decision.set_uscc(filing.uscc());
  decision.set_park_id(filing.park_id());
  decision.set_region(accepted.region());
  decision.set_fiscal_year(filing.fiscal_year());
  decision.set_filing_revision(filing.revision());
  decision.set_policy_id("stip-default");
  decision.set_policy_version(1);
  decision.set_outcome(qualified ? stip::v1::DECISION_OUTCOME_QUALIFIED
                                 : stip::v1::DECISION_OUTCOME_NOT_QUALIFIED);
  const stip::v1::Metric metrics[] = {stip::v1::METRIC_RD_INTENSITY,
                                      stip::v1::METRIC_TERTIARY_SHARE,
                                      stip::v1::METRIC_RD_STAFF_SHARE};
  const int32_t thresholds[] = {300, 3000, 1000};
  const int failing = qualified ? -1 : static_cast<int>((h >> 8) % 3);
  for (int c = 0; c < 3; ++c) {
    stip::v1::CriterionResult* criterion = decision.add_criteria();
    criterion->set_metric(metrics[c]);
    const int64_t basis_points = c == failing ? thresholds[c] - 37 : thresholds[c] + 412;
    criterion->mutable_measured()->set_numerator(basis_points * filing.total_employees());
    criterion->mutable_measured()->set_denominator(10000LL * filing.total_employees());
    criterion->set_measured_basis_points(basis_points);
    criterion->set_comparison(stip::v1::COMPARISON_GREATER_OR_EQUAL);
    criterion->set_threshold_basis_points(thresholds[c]);
    criterion->set_outcome(c == failing ? stip::v1::CRITERION_OUTCOME_FAIL
                                        : stip::v1::CRITERION_OUTCOME_PASS);
    if (c == failing) criterion->mutable_shortfall()->set_employees(12);
  }
  if (filing.revision() > 1) {
    decision.set_supersedes_decision_id(absl::StrCat(filing.uscc(), "/", filing.fiscal_year(), "/",
                                                     filing.revision() - 1, "/stip-default/1"));
  }
  *decision.mutable_decide_time() = TimeUtil::MicrosecondsToTimestamp(now_us);
  decision.set_explanation(qualified ? "Every criterion of stip-default v1 passed."
                                     : "Not qualified: one criterion of stip-default v1 fell "
                                       "short; see its shortfall.");
  return decision;
}

struct Workload {
  std::vector<PositionedEvent> events;
  int filings = 0;
  int decisions = 0;
  size_t filing_bytes = 0;
  size_t decision_bytes = 0;
};

Workload MakeWorkload(int count) {
  Workload workload;
  workload.filings = (count + 1) / 2;
  workload.decisions = count / 2;
  const int64_t now_us = absl::ToUnixMicros(absl::Now());
  std::vector<int64_t> filing_offsets(kPartitions, 0), decision_offsets(kPartitions, 0);
  std::vector<stip::v1::AcceptedFiling> filings;
  filings.reserve(workload.filings);
  auto add_decision = [&](int k) {
    stip::v1::QualificationDecision decision = MakeDecision(filings[k], now_us);
    workload.decision_bytes += decision.ByteSizeLong();
    const int partition =
        static_cast<int>(Mix(std::hash<std::string>{}(decision.uscc())) % kPartitions);
    workload.events.push_back({{std::string(stip::kDecisionsTopic), partition},
                               decision_offsets[partition]++,
                               std::move(decision)});
  };
  for (int k = 0; k < workload.filings; ++k) {
    filings.push_back(MakeFiling(KeyOf(k), now_us));
    workload.filing_bytes += filings.back().ByteSizeLong();
    const int partition = static_cast<int>(
        Mix(std::hash<std::string>{}(filings.back().filing().uscc())) % kPartitions);
    workload.events.push_back({{std::string(stip::kFilingsTopic), partition},
                               filing_offsets[partition]++,
                               filings.back()});
    if (k >= kDecisionLag && k - kDecisionLag < workload.decisions) add_decision(k - kDecisionLag);
  }
  for (int k = std::max(0, workload.filings - kDecisionLag); k < workload.decisions; ++k) {
    add_decision(k);
  }
  return workload;
}

// One measured run: the time of each batch.
struct Run {
  std::vector<double> batch_seconds;
  double Total() const {
    double total = 0;
    for (double seconds : batch_seconds) total += seconds;
    return total;
  }
};

template <typename Body>
Run TimeBatches(const Workload& workload, int batch, Body&& body) {
  Run run;
  const absl::Span<const PositionedEvent> all(workload.events);
  for (size_t first = 0; first < all.size(); first += static_cast<size_t>(batch)) {
    const absl::Span<const PositionedEvent> events = all.subspan(first, static_cast<size_t>(batch));
    const Clock::time_point start = Clock::now();
    body(events);
    run.batch_seconds.push_back(Seconds(start, Clock::now()));
  }
  return run;
}

// A register as the service has it before the streams arrive: the registry's schema, the
// embedded park catalogue and the enterprises enrolled (so that a decision's status update
// finds its row). Not timed.
std::unique_ptr<stip::registry::RegistryStore> OpenSeeded(const std::string& url) {
  auto store = OrDie(stip::registry::RegistryStore::Open(url), "opening the store at " + url);
  OrDie(store->LoadCatalogueIfEmpty(stip::registry::EmbeddedParkCatalogue()), "the catalogue");
  auto database = OrDie(stip::registry::OpenSqlDatabase(url), "opening " + url);
  auto session = OrDie(database->Session(), "a session");
  const std::vector<stip::v1::Park>& parks = stip::registry::EmbeddedParkCatalogue();
  const int64_t now_us = absl::ToUnixMicros(absl::Now());
  OrDie(stip::registry::InWriteTransaction(
            *session,
            [&]() -> absl::Status {
              for (int enterprise = 0; enterprise < kEnterprises; ++enterprise) {
                const std::string uscc = Uscc(enterprise);
                const std::string name = absl::StrCat("Enterprise ", enterprise);
                auto inserted = session->Run(
                    "INSERT INTO enterprises (uscc, name, park_id, foreign_invested, "
                    "enroll_time_us, status, status_year) VALUES ($1, $2, $3, 0, $4, $5, 0)",
                    {uscc, name, parks[Mix(enterprise) % parks.size()].park_id(), now_us,
                     int64_t{stip::v1::ENTERPRISE_STATUS_ENROLLED}});
                if (!inserted.ok()) return inserted.status();
              }
              return absl::OkStatus();
            }),
        "enrolling the enterprises");
  return store;
}

// The baseline: the rows Apply records for these events in `filings` and `decisions`, and
// nothing else. The payloads are serialized here as Apply serializes them.
Run PlainInsert(const std::string& url, const Workload& workload, int batch) {
  // The registry's own schema, so that the tables and their indexes are the same.
  OpenSeeded(url).reset();
  auto database = OrDie(stip::registry::OpenSqlDatabase(url), "opening " + url);
  auto session = OrDie(database->Session(), "a session");
  const int64_t record_time_us = absl::ToUnixMicros(absl::Now());
  return TimeBatches(workload, batch, [&](absl::Span<const PositionedEvent> events) {
    OrDie(stip::registry::InWriteTransaction(
              *session,
              [&]() -> absl::Status {
                for (const PositionedEvent& event : events) {
                  absl::StatusOr<stip::registry::SqlResult> inserted;
                  if (const auto* accepted = std::get_if<stip::v1::AcceptedFiling>(&event.event)) {
                    const stip::v1::AnnualFiling& filing = accepted->filing();
                    const std::string payload = accepted->SerializeAsString();
                    inserted = session->Run(
                        "INSERT INTO filings (filing_id, uscc, fiscal_year, revision, "
                        "content_sha256, payload, record_time_us) VALUES ($1, $2, $3, $4, $5, $6, "
                        "$7)",
                        {accepted->filing_id(), filing.uscc(), int64_t{filing.fiscal_year()},
                         int64_t{filing.revision()}, accepted->content_sha256(),
                         SqlParam::Bytes(payload), record_time_us});
                  } else {
                    const auto& decision = std::get<stip::v1::QualificationDecision>(event.event);
                    const std::string payload = decision.SerializeAsString();
                    inserted = session->Run(
                        "INSERT INTO decisions (decision_id, filing_id, uscc, park_id, region, "
                        "fiscal_year, revision, policy_version, outcome, payload, record_time_us) "
                        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                        {decision.decision_id(), decision.filing_id(), decision.uscc(),
                         decision.park_id(), int64_t{decision.region()},
                         int64_t{decision.fiscal_year()}, int64_t{decision.filing_revision()},
                         int64_t{decision.policy_version()}, int64_t{decision.outcome()},
                         SqlParam::Bytes(payload), record_time_us});
                  }
                  if (!inserted.ok()) return inserted.status();
                }
                return absl::OkStatus();
              }),
          "plain insert");
  });
}

Run RegistryApply(const std::string& url, const Workload& workload, int batch,
                  stip::registry::ApplyCounts& totals) {
  auto store = OpenSeeded(url);
  totals = {};
  Run run = TimeBatches(workload, batch, [&](absl::Span<const PositionedEvent> events) {
    const stip::registry::ApplyCounts counts = OrDie(store->Apply("bench", events), "Apply");
    totals.filings_recorded += counts.filings_recorded;
    totals.decisions_recorded += counts.decisions_recorded;
    totals.decisions_stale += counts.decisions_stale;
    totals.roster_changes += counts.roster_changes;
  });
  if (totals.filings_recorded != workload.filings ||
      totals.decisions_recorded != workload.decisions) {
    Die(absl::StrCat("Apply recorded ", totals.filings_recorded, " filings and ",
                     totals.decisions_recorded, " decisions of ", workload.filings, " and ",
                     workload.decisions));
  }
  return run;
}

// --- Fresh databases --------------------------------------------------------------------

// Runs `sql`; "" when it succeeded, else PostgreSQL's message.
std::string TryPostgresExec(const std::string& url, const std::string& sql) {
  PGconn* connection = PQconnectdb(url.c_str());
  if (PQstatus(connection) != CONNECTION_OK) {
    const std::string message = PQerrorMessage(connection);
    PQfinish(connection);
    Die(absl::StrCat("cannot connect to ", url, ": ", message));
  }
  PGresult* result = PQexec(connection, sql.c_str());
  const bool ok = PQresultStatus(result) == PGRES_COMMAND_OK;
  std::string message = ok ? "" : PQerrorMessage(connection);
  if (!ok && message.empty()) message = "failed";
  PQclear(result);
  PQfinish(connection);
  return message;
}

void PostgresExec(const std::string& url, const std::string& sql) {
  const std::string error = TryPostgresExec(url, sql);
  if (!error.empty()) Die(absl::StrCat(sql, ": ", error));
}

// Drops a database this run made, once every connection of ours is closed. Not WITH (FORCE):
// that also terminates an autovacuum worker on the database, which PostgreSQL 15 allows only
// to superusers and pg_signal_backend members, so it failed now and then. A plain DROP
// cancels autovacuum by itself; a connection still closing makes it fail "being accessed by
// other users", which passes within moments, hence the bounded retry.
void DropPostgresDatabase(const std::string& base, const std::string& name) {
  const std::string sql = "DROP DATABASE IF EXISTS " + name;
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  std::string error = TryPostgresExec(base, sql);
  while (!error.empty() && absl::StrContains(error, "being accessed by other users") &&
         absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(200));
    error = TryPostgresExec(base, sql);
  }
  if (!error.empty()) Die(absl::StrCat(sql, ": ", error));
}

// A database created for one run and dropped after it, as tests/support's
// FreshPostgresDatabase.
class FreshPostgres {
 public:
  FreshPostgres(const std::string& base, const std::string& name) : base_(base), name_(name) {
    PostgresExec(base_, "CREATE DATABASE " + name_);
    const size_t authority = base.find("//");
    const size_t path = base.find('/', authority == std::string::npos ? 0 : authority + 2);
    const size_t query = base.find('?', path == std::string::npos ? 0 : path);
    url_ = base.substr(0, path) + "/" + name_;
    if (query != std::string::npos) url_ += base.substr(query);
  }
  ~FreshPostgres() { DropPostgresDatabase(base_, name_); }
  const std::string& url() const { return url_; }

 private:
  std::string base_, name_, url_;
};

class FreshSqlite {
 public:
  FreshSqlite(const std::filesystem::path& dir, const std::string& name)
      : path_(dir / (name + ".db")) {
    Remove();
  }
  ~FreshSqlite() { Remove(); }
  std::string url() const { return "sqlite://" + path_.string(); }

 private:
  void Remove() {
    for (const char* suffix : {"", "-wal", "-shm"}) {
      std::error_code ignored;
      std::filesystem::remove(path_.string() + suffix, ignored);
    }
  }
  std::filesystem::path path_;
};

std::string QueryText(const std::string& url, const std::string& sql) {
  auto database = OrDie(stip::registry::OpenSqlDatabase(url), "opening " + url);
  auto session = OrDie(database->Session(), "a session");
  auto result = OrDie(session->Run(sql), sql);
  return result.rows.empty() ? "" : result.rows.front().Text(0);
}

// --- Report -----------------------------------------------------------------------------

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p * values.size()));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(index),
                   values.end());
  return values[index];
}

struct Measured {
  std::vector<Run> baseline;
  std::vector<Run> apply;
};

std::string Range(double low, double high, int decimals) {
  return absl::StrFormat("%.*f–%.*f", decimals, low, decimals, high);
}

void PrintTable(const std::string& title, const std::string& settings, const Measured& measured,
                int events) {
  auto rates = [&](const std::vector<Run>& runs) {
    std::vector<double> out;
    for (const Run& run : runs) out.push_back(events / run.Total());
    return out;
  };
  auto batches = [](const std::vector<Run>& runs) {
    std::vector<double> out;
    for (const Run& run : runs) {
      out.insert(out.end(), run.batch_seconds.begin(), run.batch_seconds.end());
    }
    return out;
  };
  const std::vector<double> baseline = rates(measured.baseline);
  const std::vector<double> apply = rates(measured.apply);
  std::vector<double> ratios;
  for (size_t r = 0; r < apply.size(); ++r) ratios.push_back(apply[r] / baseline[r]);
  auto row = [&](const std::string& what, const std::vector<double>& per_second,
                 const std::vector<Run>& runs) {
    const std::vector<double> all = batches(runs);
    std::cout << absl::StrFormat("| %s | %s | %.1f | %.1f |\n", what,
                                 Range(*std::min_element(per_second.begin(), per_second.end()),
                                       *std::max_element(per_second.begin(), per_second.end()), 0),
                                 Percentile(all, 0.5) * 1e3, Percentile(all, 0.99) * 1e3);
  };
  std::cout << "\n## " << title << "\n\n" << settings << "\n\n";
  std::cout << "| | events/s (min–max over rounds) | batch p50 (ms) | batch p99 (ms) |\n"
               "|---|---:|---:|---:|\n";
  row("plain batched insert into filings/decisions (baseline)", baseline, measured.baseline);
  row("RegistryStore::Apply", apply, measured.apply);
  std::cout << absl::StrFormat("| **ratio Apply/baseline** | **%s** | | |\n",
                               Range(*std::min_element(ratios.begin(), ratios.end()),
                                     *std::max_element(ratios.begin(), ratios.end()), 3));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "registry-apply: events applied per second by RegistryStore::Apply (the registry's "
      "consumer of stip.filings.v1 and stip.decisions.v1) on SQLite and on PostgreSQL, beside "
      "a plain batched insert of the same rows into the same database in the same run.\n"
      "The baseline inserts each event's row (payload bytes included) into the registry's own "
      "filings/decisions tables, one INSERT per event through sql.h, one BeginWrite "
      "transaction per batch. Apply adds the dedup lookups, enterprise_years, the roster, "
      "history, listings, outbox and offsets. Every run uses a fresh database; only the "
      "batches are timed. The ratio Apply/baseline is reported per round, min–max, with the "
      "p50/p99 time of a batch."};
  std::string postgres;
  std::string sqlite_dir;
  int events = 200000;
  int batch = 2000;
  int rounds = 3;
  app.add_option("--postgres", postgres,
                 "PostgreSQL URL of a database to connect to for CREATE/DROP DATABASE (e.g. "
                 "`deploy/local/postgres.sh url`); without it the PostgreSQL rows are skipped");
  app.add_option("--sqlite-dir", sqlite_dir,
                 "Directory for the SQLite files (default: a temp dir)");
  app.add_option("--events", events, "Events per run: half filings, half decisions")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "Events per Apply call / per baseline transaction")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--rounds", rounds, "Rounds of baseline + Apply on each database")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  stip::ConfigureAbseilForServing();  // as stip-registry does

  bool own_sqlite_dir = false;
  if (sqlite_dir.empty()) {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "stip-bench-registry-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) Die("mkdtemp failed");
    sqlite_dir = pattern;
    own_sqlite_dir = true;
  }
  const std::filesystem::path dir = std::filesystem::absolute(sqlite_dir);
  std::filesystem::create_directories(dir);

  std::cerr << "generating " << events << " events...\n";
  const Workload workload = MakeWorkload(events);
  const std::string run = absl::StrCat(getpid());

  Measured sqlite, pg;
  stip::registry::ApplyCounts counts;
  for (int round = 0; round < rounds; ++round) {
    {
      FreshSqlite database(dir, absl::StrCat("baseline-", run, "-", round));
      sqlite.baseline.push_back(PlainInsert(database.url(), workload, batch));
    }
    {
      FreshSqlite database(dir, absl::StrCat("apply-", run, "-", round));
      sqlite.apply.push_back(RegistryApply(database.url(), workload, batch, counts));
    }
    std::cerr << absl::StrFormat("round %d SQLite: baseline %.2f s, Apply %.2f s\n", round + 1,
                                 sqlite.baseline.back().Total(), sqlite.apply.back().Total());
    if (postgres.empty()) continue;
    {
      FreshPostgres database(postgres, absl::StrCat("bench_registry_baseline_", run, "_", round));
      pg.baseline.push_back(PlainInsert(database.url(), workload, batch));
    }
    {
      FreshPostgres database(postgres, absl::StrCat("bench_registry_apply_", run, "_", round));
      pg.apply.push_back(RegistryApply(database.url(), workload, batch, counts));
    }
    std::cerr << absl::StrFormat("round %d PostgreSQL: baseline %.2f s, Apply %.2f s\n", round + 1,
                                 pg.baseline.back().Total(), pg.apply.back().Total());
  }

  std::cout << absl::StrFormat(
      "%d events per run (%d AcceptedFilings of %.0f bytes on average, 3 projects each; %d "
      "QualificationDecisions of %.0f bytes), %d enterprises x %d fiscal years, batches of %d, "
      "%d rounds, each run on a fresh database.\nApply per run: %d filings, %d decisions (%d "
      "stale), %d roster changes.\n",
      events, workload.filings, static_cast<double>(workload.filing_bytes) / workload.filings,
      workload.decisions,
      static_cast<double>(workload.decision_bytes) / std::max(1, workload.decisions), kEnterprises,
      kYears, batch, rounds, counts.filings_recorded, counts.decisions_recorded,
      counts.decisions_stale, counts.roster_changes);

  {
    FreshSqlite database(dir, absl::StrCat("settings-", run));
    const std::string url = database.url();
    const std::string version = QueryText(url, "SELECT sqlite_version()");
    const std::string journal = QueryText(url, "PRAGMA journal_mode");
    const std::string synchronous = QueryText(url, "PRAGMA synchronous");
    PrintTable(absl::StrCat("SQLite ", version),
               absl::StrCat("File in ", dir.string(), "; journal_mode=", journal,
                            ", synchronous=", synchronous == "2" ? "FULL" : synchronous,
                            " (as sql.h opens every SQLite database)."),
               sqlite, events);
  }
  if (!postgres.empty()) {
    const std::string version = QueryText(postgres, "SELECT current_setting('server_version')");
    const std::string fsync = QueryText(postgres, "SELECT current_setting('fsync')");
    const std::string synchronous_commit =
        QueryText(postgres, "SELECT current_setting('synchronous_commit')");
    const std::string shared_buffers =
        QueryText(postgres, "SELECT current_setting('shared_buffers')");
    std::string settings = absl::StrCat(
        "Server ", OrDie(stip::registry::OpenSqlDatabase(postgres), postgres)->DisplayName(),
        " (local TCP); fsync=", fsync, ", synchronous_commit=", synchronous_commit,
        ", shared_buffers=", shared_buffers, ".");
    if (fsync == "off") {
      settings += absl::StrCat(
          "\n**fsync is off on this server** (the local test server): commits do not wait for "
          "the disk, so both rates are higher than on a durable server and per-statement "
          "round trips weigh more in the ratio.");
    }
    PrintTable(absl::StrCat("PostgreSQL ", version), settings, pg, events);
  } else {
    std::cout << "\n(PostgreSQL skipped: no --postgres URL.)\n";
  }
  if (own_sqlite_dir) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  return 0;
}
