// The SQLite driver of sql.h: a pool of connections to one file, over stip::SqliteDb.
#include "services/registry/sql.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/grpc_server.h"
#include "services/common/sqlite_db.h"
#include "services/registry/sql_pool.h"
#include <sqlite3.h>

namespace stip::registry {
namespace {

struct StatementDeleter {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using StatementPtr = std::unique_ptr<sqlite3_stmt, StatementDeleter>;

// Resets a statement (ending its implicit read transaction, which would pin the WAL) and
// clears its bindings when the scope ends.
class ResetOnExit {
 public:
  explicit ResetOnExit(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~ResetOnExit() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  ResetOnExit(const ResetOnExit&) = delete;
  ResetOnExit& operator=(const ResetOnExit&) = delete;

 private:
  sqlite3_stmt* stmt_;
};

// $N -> ?N: the same numbered parameter in SQLite's spelling. Our SQL has no '$' inside
// literals, so a plain scan is enough.
std::string ToSqlitePlaceholders(std::string_view sql) {
  std::string out(sql);
  for (size_t i = 0; i + 1 < out.size(); ++i) {
    if (out[i] == '$' && out[i + 1] >= '0' && out[i + 1] <= '9') out[i] = '?';
  }
  return out;
}

class SqliteConnection {
 public:
  explicit SqliteConnection(std::unique_ptr<SqliteDb> db) : db_(std::move(db)) {}

  static absl::StatusOr<std::unique_ptr<SqliteConnection>> Open(const std::string& path,
                                                                absl::Duration busy_timeout) {
    absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(path, busy_timeout);
    if (!db.ok()) return db.status();
    // WAL: readers never block the writer; FULL: a commit survives power loss. Two
    // connections switching a fresh file to WAL at once: SQLite answers one of them
    // SQLITE_BUSY at once, without waiting in the busy handler (waiting could deadlock), so
    // the switch is retried here for as long as the busy timeout allows.
    absl::Status status;
    for (const absl::Time deadline = absl::Now() + busy_timeout;;
         absl::SleepFor(absl::Milliseconds(5))) {
      status =
          (*db)->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
      if (status.ok() || !absl::IsUnavailable(status) || absl::Now() >= deadline) break;
    }
    if (!status.ok()) return status;
    return std::make_unique<SqliteConnection>(std::move(*db));
  }

  SqlDialect dialect() const { return SqlDialect::kSqlite; }

  absl::Status ExecScript(std::string_view sql) { return db_->Exec(sql); }

  absl::StatusOr<SqlResult> Run(std::string_view sql, absl::Span<const SqlParam> params) {
    absl::StatusOr<sqlite3_stmt*> prepared = Prepared(sql);
    if (!prepared.ok()) return prepared.status();
    sqlite3_stmt* stmt = *prepared;
    ResetOnExit reset(stmt);

    const int expected = sqlite3_bind_parameter_count(stmt);
    if (static_cast<size_t>(expected) != params.size()) {
      return absl::InvalidArgumentError(absl::StrCat("statement '", std::string(sql), "' takes ",
                                                     expected, " parameters, given ",
                                                     params.size()));
    }
    for (size_t i = 0; i < params.size(); ++i) {
      const int index = static_cast<int>(i) + 1;
      const SqlParam& param = params[i];
      const std::string_view bytes = param.bytes();
      int rc = SQLITE_OK;
      switch (param.kind()) {
        case SqlParam::Kind::kNull:
          rc = sqlite3_bind_null(stmt, index);
          break;
        case SqlParam::Kind::kInt:
          rc = sqlite3_bind_int64(stmt, index, param.int_value());
          break;
        case SqlParam::Kind::kText:
          // "" rather than a null pointer, which SQLite would bind as NULL.
          rc = sqlite3_bind_text64(stmt, index, bytes.empty() ? "" : bytes.data(), bytes.size(),
                                   SQLITE_STATIC, SQLITE_UTF8);
          break;
        case SqlParam::Kind::kBytes:
          rc = bytes.empty()
                   ? sqlite3_bind_zeroblob(stmt, index, 0)
                   : sqlite3_bind_blob64(stmt, index, bytes.data(), bytes.size(), SQLITE_STATIC);
          break;
      }
      if (rc != SQLITE_OK)
        return db_->Error(rc, absl::StrCat("binding $", index, " of '", std::string(sql), "'"));
    }

    SqlResult result;
    const int columns = sqlite3_column_count(stmt);
    const int64_t changes_before = sqlite3_total_changes64(db_->handle());
    while (true) {
      const int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return StepError(rc, sql);
      std::vector<std::optional<std::string>> row;
      row.reserve(columns);
      for (int c = 0; c < columns; ++c) row.push_back(Column(stmt, c));
      result.rows.emplace_back(std::move(row));
    }
    // sqlite3_changes() keeps the count of the last INSERT/UPDATE/DELETE, even across a
    // SELECT or DDL that follows it: count only when this statement changed something.
    if (sqlite3_total_changes64(db_->handle()) != changes_before) {
      result.rows_affected = sqlite3_changes64(db_->handle());
    }
    return result;
  }

  absl::Status BeginRead() { return Begin("BEGIN"); }
  // IMMEDIATE takes the write lock now (waiting up to the busy timeout), which serializes
  // writers across connections and processes.
  absl::Status BeginWrite() { return Begin("BEGIN IMMEDIATE"); }

  absl::Status Commit() {
    if (!in_transaction_) return absl::FailedPreconditionError("Commit without a transaction");
    in_transaction_ = false;
    if (InSqliteTransaction()) {
      absl::Status status = db_->Exec("COMMIT");
      if (!status.ok()) RollbackNow();  // a failed COMMIT may leave the transaction open
      return status;
    }
    // SQLite rolled back on its own (I/O error, disk full, ...): nothing was committed.
    return absl::AbortedError(
        absl::StrCat("SQLite file ", db_->path(), ": transaction was rolled back by an error"));
  }

  void Rollback() {
    in_transaction_ = false;
    RollbackNow();
  }

  bool EndSession() {
    Rollback();
    return !broken_;
  }

 private:
  bool InSqliteTransaction() const { return sqlite3_get_autocommit(db_->handle()) == 0; }

  absl::Status Begin(std::string_view sql) {
    if (in_transaction_) {
      return absl::FailedPreconditionError("a transaction is already open on this session");
    }
    if (absl::Status status = db_->Exec(sql); !status.ok()) return status;
    in_transaction_ = true;
    return absl::OkStatus();
  }

  void RollbackNow() {
    if (!InSqliteTransaction()) return;
    if (sqlite3_exec(db_->handle(), "ROLLBACK", nullptr, nullptr, nullptr) != SQLITE_OK) {
      broken_ = true;  // state unknown: close it rather than hand it to another session
    }
  }

  absl::StatusOr<sqlite3_stmt*> Prepared(std::string_view sql) {
    auto found = statements_.find(std::string(sql));
    if (found != statements_.end()) return found->second.get();
    const std::string translated = ToSqlitePlaceholders(sql);
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    const int rc =
        sqlite3_prepare_v3(db_->handle(), translated.data(), static_cast<int>(translated.size()),
                           SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK) return db_->Error(rc, absl::StrCat("preparing '", translated, "'"));
    StatementPtr owned(stmt);
    if (owned == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("'", std::string(sql), "' has no statement"));
    }
    if (tail != nullptr &&
        std::string_view(tail).find_first_not_of(" \t\r\n;") != std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", std::string(sql), "' holds several statements: use ExecScript"));
    }
    sqlite3_stmt* raw = owned.get();
    statements_.emplace(std::string(sql), std::move(owned));
    return raw;
  }

  // Marked WithInternalDetail, as every SQLite error (SqliteStatus): it names the file and
  // the statement, for operators only.
  absl::Status StepError(int rc, std::string_view sql) {
    return WithInternalDetail(ClassifyStepError(rc, sql));
  }
  absl::Status ClassifyStepError(int rc, std::string_view sql) {
    const std::string what = absl::StrCat("statement '", std::string(sql), "'");
    if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
      return absl::AlreadyExistsError(absl::StrCat("SQLite file ", db_->path(), ": ", what,
                                                   " failed: ", sqlite3_errmsg(db_->handle())));
    }
    // Other constraints (NOT NULL, CHECK, FOREIGN KEY) as PostgreSQL's class 23.
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
      return absl::FailedPreconditionError(absl::StrCat(
          "SQLite file ", db_->path(), ": ", what, " failed: ", sqlite3_errmsg(db_->handle())));
    }
    return db_->Error(rc, what);
  }

  static std::optional<std::string> Column(sqlite3_stmt* stmt, int column) {
    switch (sqlite3_column_type(stmt, column)) {
      case SQLITE_NULL:
        return std::nullopt;
      case SQLITE_INTEGER:
        return std::to_string(sqlite3_column_int64(stmt, column));
      case SQLITE_BLOB: {
        const void* data = sqlite3_column_blob(stmt, column);
        const int size = sqlite3_column_bytes(stmt, column);
        if (data == nullptr || size <= 0) return std::string();
        return std::string(static_cast<const char*>(data), static_cast<size_t>(size));
      }
      default: {  // TEXT, and REAL as SQLite's text for it
        const unsigned char* data = sqlite3_column_text(stmt, column);
        const int size = sqlite3_column_bytes(stmt, column);
        if (data == nullptr || size <= 0) return std::string();
        return std::string(reinterpret_cast<const char*>(data), static_cast<size_t>(size));
      }
    }
  }

  // Statements die before the connection they belong to (declared after db_).
  std::unique_ptr<SqliteDb> db_;
  // Keyed by the caller's text ($N), prepared once for the connection's life.
  std::unordered_map<std::string, StatementPtr> statements_;
  bool in_transaction_ = false;  // BeginRead/BeginWrite succeeded, Commit/Rollback not yet
  bool broken_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SqlDatabase>> OpenSqliteSqlDatabase(
    const std::string& path, const SqlDatabaseOptions& options) {
  const absl::Duration busy_timeout = options.busy_timeout;
  auto pool = std::make_shared<SqlConnectionPool<SqliteConnection>>(
      options.max_connections,
      [path, busy_timeout] { return SqliteConnection::Open(path, busy_timeout); });
  // Open one connection now, so that a bad path fails at start-up; it stays in the pool.
  absl::StatusOr<std::unique_ptr<SqliteConnection>> first = pool->Acquire();
  if (!first.ok()) return first.status();
  pool->Release(std::move(*first));
  return std::make_unique<PooledSqlDatabase<SqliteConnection>>(
      SqlDialect::kSqlite, absl::StrCat("sqlite://", path), std::move(pool));
}

}  // namespace stip::registry
