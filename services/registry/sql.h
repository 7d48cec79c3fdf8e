// The SQL the registry store needs from a database, written once for SQLite (embedded) and
// PostgreSQL (production): parameterized statements with $1..$N placeholders in both
// dialects, prepared once per connection and cached by their text, a pool of connections,
// and transactions that serialize writers.
//
// Threading: SqlDatabase is thread-safe. A SqlSession (a leased connection) belongs to one
// thread at a time; it goes back to the pool when destroyed, rolled back if a transaction
// was left open.
//
// Writers: BeginWrite serializes every write transaction on the database, across
// processes: SQLite takes the write lock (BEGIN IMMEDIATE); PostgreSQL takes a
// transaction-scoped advisory lock. So identity columns grow in commit order, which the
// registry's resumable feeds rely on (a reader never sees seq N+1 committed before N).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace stip::registry {

enum class SqlDialect { kSqlite, kPostgres };

// A statement parameter: NULL, a 64-bit integer, text, or bytes (BLOB / BYTEA).
class SqlParam {
 public:
  enum class Kind { kNull, kInt, kText, kBytes };
  SqlParam() = default;
  SqlParam(int64_t value) : kind_(Kind::kInt), int_(value) {}       // NOLINT: implicit on purpose
  SqlParam(int32_t value) : kind_(Kind::kInt), int_(value) {}       // NOLINT
  SqlParam(bool value) : kind_(Kind::kInt), int_(value ? 1 : 0) {}  // NOLINT
  SqlParam(std::string_view text) : kind_(Kind::kText), text_(text) {}    // NOLINT
  SqlParam(const std::string& text) : kind_(Kind::kText), text_(text) {}  // NOLINT
  SqlParam(const char* text) : kind_(Kind::kText), text_(text) {}         // NOLINT
  static SqlParam Bytes(std::string_view bytes) {
    SqlParam param;
    param.kind_ = Kind::kBytes;
    param.text_ = bytes;
    return param;
  }
  static SqlParam Null() { return SqlParam(); }

  Kind kind() const { return kind_; }
  int64_t int_value() const { return int_; }
  // Text or bytes; not copied: the caller keeps them alive until the statement has run.
  std::string_view bytes() const { return text_; }

 private:
  Kind kind_ = Kind::kNull;
  int64_t int_ = 0;
  std::string_view text_;
};

// One result row. Columns are 0-based; a NULL column is nullopt.
//
// The numeric accessors return errors, never abort: what a column holds comes from the
// database, and a value that does not fit (PostgreSQL's SUM(bigint) is numeric, beyond int64
// once the sum is) must fail the one query, not the process that serves every other.
class SqlRow {
 public:
  explicit SqlRow(std::vector<std::optional<std::string>> columns) : columns_(std::move(columns)) {}
  size_t size() const { return columns_.size(); }
  bool IsNull(size_t column) const { return !columns_.at(column).has_value(); }
  // The column as a 64-bit integer; 0 for NULL. kOutOfRange for an integer beyond int64,
  // kInternal for a column that is not an integer at all (or past the row's last column).
  absl::StatusOr<int64_t> Int(size_t column) const;
  // The column as a 128-bit integer (0 for NULL): for sums, which may exceed int64 (on
  // PostgreSQL a numeric such as "18446744073709551614"). Errors as Int.
  absl::StatusOr<absl::int128> Int128(size_t column) const;
  // Text or bytes, exactly as stored (BYTEA already decoded); empty for NULL.
  const std::string& Text(size_t column) const;

 private:
  std::vector<std::optional<std::string>> columns_;
};

struct SqlResult {
  std::vector<SqlRow> rows;
  // INSERT/UPDATE/DELETE: rows changed.
  int64_t rows_affected = 0;
};

// A connection leased from the pool.
class SqlSession {
 public:
  virtual ~SqlSession() = default;

  virtual SqlDialect dialect() const = 0;

  // Runs `sql` (one statement or several, e.g. a migration) without parameters.
  virtual absl::Status ExecScript(std::string_view sql) = 0;

  // Runs one statement with $1..$N parameters. Outside a transaction it commits on its own.
  virtual absl::StatusOr<SqlResult> Run(std::string_view sql,
                                        absl::Span<const SqlParam> params = {}) = 0;

  // A read transaction: one consistent snapshot for every statement until Commit/Rollback.
  virtual absl::Status BeginRead() = 0;
  // A write transaction, serialized with every other writer on the database (see above).
  virtual absl::Status BeginWrite() = 0;
  virtual absl::Status Commit() = 0;
  // Never fails from the caller's point of view; a broken connection is discarded.
  virtual void Rollback() = 0;
};

struct SqlDatabaseOptions {
  // Connections kept open at most; Session() waits for one beyond that.
  size_t max_connections = 8;
  // SQLite: how long a writer waits for another process's write lock. PostgreSQL: the
  // connect timeout.
  absl::Duration busy_timeout = absl::Seconds(10);
};

class SqlDatabase {
 public:
  virtual ~SqlDatabase() = default;
  virtual SqlDialect dialect() const = 0;
  // A connection from the pool (opening one when none is idle and the pool has room;
  // otherwise waiting for one). kUnavailable when the database cannot be reached.
  virtual absl::StatusOr<std::unique_ptr<SqlSession>> Session() = 0;
  // The URL without its password, for logs.
  virtual std::string DisplayName() const = 0;
};

// Opens `url`: sqlite:///absolute/path.db (created when missing, WAL, synchronous=FULL) or
// postgresql://user[:password]@host[:port]/dbname[?params] (libpq's URI syntax; postgres://
// too). kInvalidArgument naming the URL for anything else; kUnavailable when the server
// cannot be reached. Connects once before returning, so a bad URL fails at start-up.
absl::StatusOr<std::unique_ptr<SqlDatabase>> OpenSqlDatabase(
    std::string_view url, const SqlDatabaseOptions& options = {});

// Runs `body` in a write transaction on `session`, committing when it returns OK and
// rolling back otherwise.
template <typename Body>
absl::Status InWriteTransaction(SqlSession& session, Body&& body) {
  if (absl::Status begun = session.BeginWrite(); !begun.ok()) return begun;
  absl::Status status = body();
  if (!status.ok()) {
    session.Rollback();
    return status;
  }
  return session.Commit();
}

template <typename Body>
absl::Status InReadTransaction(SqlSession& session, Body&& body) {
  if (absl::Status begun = session.BeginRead(); !begun.ok()) return begun;
  absl::Status status = body();
  if (!status.ok()) {
    session.Rollback();
    return status;
  }
  return session.Commit();
}

}  // namespace stip::registry
