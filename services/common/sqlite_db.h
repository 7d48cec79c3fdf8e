// A thin RAII layer over SQLite's C API: a connection, prepared statements, transactions,
// and one mapping of SQLite's result codes to absl::Status. The SQLite event log uses it;
// the registry store that shares the file can too.
//
// Threading: a SqliteDb and its statements belong to one thread at a time (connections are
// opened SQLITE_OPEN_NOMUTEX); callers that share one serialize access themselves.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include <sqlite3.h>

namespace stip {

// The status for SQLite result `code` from `what` on the database file `path`. Busy or
// locked beyond the busy timeout and I/O errors -> kUnavailable (a retry may succeed);
// corrupt or not a database -> kDataLoss; disk full -> kResourceExhausted; cannot open,
// read-only, no permission -> kFailedPrecondition; anything else -> kInternal.
absl::Status SqliteStatus(int code, std::string_view path, std::string_view what,
                          std::string_view detail);

class SqliteDb;

// A prepared statement. Parameters are 1-based, columns 0-based, as in SQLite. Text and
// blob parameters are bound without a copy: the bytes must stay valid until Reset().
class SqliteStatement {
 public:
  SqliteStatement() = default;
  SqliteStatement(SqliteDb* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  SqliteStatement(SqliteStatement&& other) noexcept;
  SqliteStatement& operator=(SqliteStatement&& other) noexcept;
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;
  ~SqliteStatement();

  void BindInt64(int index, int64_t value);
  void BindText(int index, std::string_view value);
  void BindBlob(int index, std::string_view value);

  // True when a row is ready, false when the statement is done.
  absl::StatusOr<bool> Step();
  // Steps a statement that returns no rows, then resets it.
  absl::Status Run();
  // Ends the statement's use (and, outside BEGIN, its implicit read transaction, which
  // would otherwise pin the WAL) and clears its bindings. Always call when done.
  void Reset();

  int64_t ColumnInt64(int column) const;
  bool ColumnIsNull(int column) const;
  std::string_view ColumnBlob(int column) const;
  std::string_view ColumnText(int column) const;

 private:
  SqliteDb* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// Resets a statement when the scope ends, whichever way it ends.
class SqliteResetter {
 public:
  explicit SqliteResetter(SqliteStatement& statement) : statement_(statement) {}
  ~SqliteResetter() { statement_.Reset(); }
  SqliteResetter(const SqliteResetter&) = delete;
  SqliteResetter& operator=(const SqliteResetter&) = delete;

 private:
  SqliteStatement& statement_;
};

// One connection to one database file.
class SqliteDb {
 public:
  // Opens (creating when missing) `path` read-write, with extended result codes and the
  // given busy timeout: how long a write waits for another connection's lock.
  static absl::StatusOr<std::unique_ptr<SqliteDb>> Open(const std::string& path,
                                                        absl::Duration busy_timeout);
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  // Runs SQL without parameters or result rows (several statements allowed).
  absl::Status Exec(std::string_view sql);
  // A statement kept for the life of the connection (SQLITE_PREPARE_PERSISTENT).
  absl::StatusOr<SqliteStatement> Prepare(std::string_view sql);
  // The status for `code`, with this connection's error message.
  absl::Status Error(int code, std::string_view what) const;

  const std::string& path() const { return path_; }
  sqlite3* handle() const { return db_; }

 private:
  SqliteDb(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  std::string path_;
  sqlite3* db_;
};

// A transaction that rolls back when destroyed uncommitted.
class SqliteTransaction {
 public:
  // BEGIN IMMEDIATE: takes the write lock now (waiting up to the busy timeout), so the
  // transaction never fails later for want of it.
  static absl::StatusOr<SqliteTransaction> Immediate(SqliteDb& db);
  // BEGIN (deferred): a consistent read snapshot from the first read on.
  static absl::StatusOr<SqliteTransaction> Read(SqliteDb& db);

  SqliteTransaction(SqliteTransaction&& other) noexcept;
  SqliteTransaction& operator=(SqliteTransaction&&) = delete;
  SqliteTransaction(const SqliteTransaction&) = delete;
  SqliteTransaction& operator=(const SqliteTransaction&) = delete;
  ~SqliteTransaction();

  absl::Status Commit();
  void Rollback();

 private:
  explicit SqliteTransaction(SqliteDb* db) : db_(db) {}
  SqliteDb* db_;
};

}  // namespace stip
