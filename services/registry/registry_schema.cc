#include "services/registry/registry_schema.h"

#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/status_macros.h"

namespace stip::registry {
namespace {

struct Migration {
  int version;
  std::string_view name;
  // {SEQ_KEY}: an integer key the database assigns in insertion order; {BYTES}: a binary
  // column.
  std::string_view sql;
};

// Times are microseconds since the Unix epoch (BIGINT): the same in both databases and
// exact. Booleans are INTEGER 0/1, so that every statement reads the same in both.
const std::vector<Migration>& Migrations() {
  static const std::vector<Migration> migrations = {
      {1, "register, roster, feeds and outbox", R"sql(
CREATE TABLE parks (
  park_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  city TEXT NOT NULL,
  province TEXT NOT NULL,
  region INTEGER NOT NULL,
  year_founded INTEGER NOT NULL
);
CREATE INDEX parks_by_region ON parks (region, park_id);

CREATE TABLE enterprises (
  uscc TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  park_id TEXT NOT NULL REFERENCES parks (park_id),
  foreign_invested INTEGER NOT NULL,
  enroll_time_us BIGINT NOT NULL,
  -- The outcome of the decision in force for the latest year decided (EnterpriseStatus).
  status INTEGER NOT NULL,
  status_year INTEGER NOT NULL
);
CREATE INDEX enterprises_by_park ON enterprises (park_id, uscc);
CREATE INDEX enterprises_by_status ON enterprises (status, uscc);

-- Every filing revision recorded, as its event (stip.v1.AcceptedFiling).
CREATE TABLE filings (
  filing_id TEXT PRIMARY KEY,
  uscc TEXT NOT NULL,
  fiscal_year INTEGER NOT NULL,
  revision INTEGER NOT NULL,
  content_sha256 TEXT NOT NULL,
  payload {BYTES} NOT NULL,
  record_time_us BIGINT NOT NULL
);

-- A second, different filing with an id already recorded.
CREATE TABLE filing_conflicts (
  filing_id TEXT NOT NULL,
  content_sha256 TEXT NOT NULL,
  payload {BYTES} NOT NULL,
  record_time_us BIGINT NOT NULL,
  PRIMARY KEY (filing_id, content_sha256)
);

-- Every decision recorded, in the order recorded: seq is the decision feed's cursor.
CREATE TABLE decisions (
  seq {SEQ_KEY},
  decision_id TEXT NOT NULL UNIQUE,
  filing_id TEXT NOT NULL,
  uscc TEXT NOT NULL,
  park_id TEXT NOT NULL,
  region INTEGER NOT NULL,
  fiscal_year INTEGER NOT NULL,
  revision INTEGER NOT NULL,
  policy_version INTEGER NOT NULL,
  outcome INTEGER NOT NULL,
  payload {BYTES} NOT NULL,
  record_time_us BIGINT NOT NULL
);
CREATE INDEX decisions_by_filing ON decisions (filing_id, policy_version);

-- Per enterprise and fiscal year: the latest filing revision's figures and the decision in
-- force. The statistics are sums over this table.
CREATE TABLE enterprise_years (
  uscc TEXT NOT NULL,
  fiscal_year INTEGER NOT NULL,
  park_id TEXT NOT NULL,
  region INTEGER NOT NULL,
  filing_id TEXT,
  revision INTEGER NOT NULL,
  revenue_fen BIGINT NOT NULL,
  rd_expenditure_fen BIGINT NOT NULL,
  projects INTEGER NOT NULL,
  commercialized_projects INTEGER NOT NULL,
  nominated_projects INTEGER NOT NULL,
  decision_id TEXT,
  decision_revision INTEGER NOT NULL,
  decision_policy_version INTEGER NOT NULL,
  outcome INTEGER NOT NULL,
  -- On the roster for this year (listed or renewed, and not delisted since).
  listed INTEGER NOT NULL,
  PRIMARY KEY (uscc, fiscal_year)
);
CREATE INDEX enterprise_years_by_park ON enterprise_years (fiscal_year, park_id);

-- Where each enterprise stands on the Torch program roster (RosterStatus).
CREATE TABLE roster (
  uscc TEXT PRIMARY KEY,
  status INTEGER NOT NULL,
  -- The fiscal year of the last change; decisions for earlier years change nothing.
  roster_year INTEGER NOT NULL,
  -- Roster changes so far: numbers the next change's event id.
  changes INTEGER NOT NULL,
  -- Where the enterprise was at its last change (its decision's park).
  park_id TEXT NOT NULL,
  region INTEGER NOT NULL
);
CREATE INDEX roster_by_status ON roster (status, roster_year);

-- Every roster change, in the order made: seq is the listing feed's cursor.
CREATE TABLE listings (
  seq {SEQ_KEY},
  event_id TEXT NOT NULL UNIQUE,
  uscc TEXT NOT NULL,
  park_id TEXT NOT NULL,
  region INTEGER NOT NULL,
  fiscal_year INTEGER NOT NULL,
  change INTEGER NOT NULL,
  payload {BYTES} NOT NULL,
  record_time_us BIGINT NOT NULL
);

-- Each enterprise's timeline: kind 1 filing, 2 decision, 3 listing; ref is its id.
CREATE TABLE history (
  seq {SEQ_KEY},
  uscc TEXT NOT NULL,
  kind INTEGER NOT NULL,
  ref TEXT NOT NULL,
  record_time_us BIGINT NOT NULL
);
CREATE INDEX history_by_enterprise ON history (uscc, seq);

-- Events written with the change that caused them, relayed to the event log in seq order.
CREATE TABLE outbox (
  seq {SEQ_KEY},
  topic TEXT NOT NULL,
  event_key TEXT NOT NULL,
  event_value {BYTES} NOT NULL,
  headers {BYTES} NOT NULL
);

-- The position after the last event applied, per consumer group and partition.
CREATE TABLE consumed_offsets (
  consumer_group TEXT NOT NULL,
  topic TEXT NOT NULL,
  partition_id INTEGER NOT NULL,
  next_offset BIGINT NOT NULL,
  PRIMARY KEY (consumer_group, topic, partition_id)
);

CREATE TABLE filing_windows (
  fiscal_year INTEGER PRIMARY KEY,
  close_time_us BIGINT NOT NULL
);

-- Named numbers: the feeds' retention floors.
CREATE TABLE registry_meta (
  name TEXT PRIMARY KEY,
  value BIGINT NOT NULL
);
INSERT INTO registry_meta (name, value) VALUES ('decision_feed_floor', 0);
INSERT INTO registry_meta (name, value) VALUES ('listing_feed_floor', 0);
)sql"},
  };
  return migrations;
}

std::string ForDialect(std::string_view sql, SqlDialect dialect) {
  const bool sqlite = dialect == SqlDialect::kSqlite;
  return absl::StrReplaceAll(
      std::string(sql),
      {{"{SEQ_KEY}", sqlite ? "INTEGER PRIMARY KEY AUTOINCREMENT"
                            : "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"},
       {"{BYTES}", sqlite ? "BLOB" : "BYTEA"}});
}

constexpr std::string_view kCreateMigrationsTable =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
    "name TEXT NOT NULL, applied_time_us BIGINT NOT NULL)";

// Under the writer lock: PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against a
// concurrent one (two instances starting on a fresh database).
absl::Status EnsureMigrationsTable(SqlSession& session) {
  return InWriteTransaction(session, [&] { return session.ExecScript(kCreateMigrationsTable); });
}

}  // namespace

int LatestSchemaVersion() { return Migrations().back().version; }

absl::StatusOr<int> CurrentSchemaVersion(SqlSession& session) {
  auto result = session.Run("SELECT MAX(version) FROM schema_migrations");
  if (!result.ok()) return result.status();
  STIP_ASSIGN_OR_RETURN(const int64_t version, result->rows.at(0).Int(0));
  return static_cast<int>(version);
}

absl::Status MigrateSchema(SqlSession& session) {
  if (absl::Status created = EnsureMigrationsTable(session); !created.ok()) return created;
  for (const Migration& migration : Migrations()) {
    absl::Status applied = InWriteTransaction(session, [&]() -> absl::Status {
      auto current = session.Run("SELECT MAX(version) FROM schema_migrations");
      if (!current.ok()) return current.status();
      STIP_ASSIGN_OR_RETURN(const int64_t version, current->rows.at(0).Int(0));
      if (version > LatestSchemaVersion()) {
        return absl::FailedPreconditionError(
            absl::StrCat("the database's schema is at version ", version, ", newer than the ",
                         LatestSchemaVersion(), " this binary knows: run the newer stip-registry"));
      }
      if (version >= migration.version) return absl::OkStatus();
      if (absl::Status ran = session.ExecScript(ForDialect(migration.sql, session.dialect()));
          !ran.ok()) {
        return absl::Status(ran.code(),
                            absl::StrCat("schema migration ", migration.version, " (",
                                         std::string(migration.name), "): ", ran.message()));
      }
      return session
          .Run("INSERT INTO schema_migrations (version, name, applied_time_us) VALUES ($1, $2, $3)",
               {int64_t{migration.version}, migration.name, absl::ToUnixMicros(absl::Now())})
          .status();
    });
    if (!applied.ok()) return applied;
  }
  return absl::OkStatus();
}

}  // namespace stip::registry
