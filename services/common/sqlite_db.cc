#include "services/common/sqlite_db.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/grpc_server.h"

namespace stip {

namespace {

absl::Status ClassifySqliteStatus(int code, std::string_view path, std::string_view what,
                                  std::string_view detail) {
  // Debian's Abseil has its own string_view, which std::string_view does not convert to.
  const std::string message = absl::StrCat("SQLite file ", std::string(path), ": ",
                                           std::string(what), " failed: ", std::string(detail),
                                           " (", sqlite3_errstr(code), ", code ", code, ")");
  switch (code & 0xff) {  // the primary code of an extended one
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_PROTOCOL:
      return absl::UnavailableError(message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(message);
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(message);
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace

absl::Status SqliteStatus(int code, std::string_view path, std::string_view what,
                          std::string_view detail) {
  // It names the file: for operators only, whatever the code.
  return WithInternalDetail(ClassifySqliteStatus(code, path, what, detail));
}

SqliteStatement::SqliteStatement(SqliteStatement&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), stmt_(std::exchange(other.stmt_, nullptr)) {}

SqliteStatement& SqliteStatement::operator=(SqliteStatement&& other) noexcept {
  if (this != &other) {
    if (stmt_ != nullptr) sqlite3_finalize(stmt_);
    db_ = std::exchange(other.db_, nullptr);
    stmt_ = std::exchange(other.stmt_, nullptr);
  }
  return *this;
}

SqliteStatement::~SqliteStatement() {
  if (stmt_ != nullptr) sqlite3_finalize(stmt_);
}

void SqliteStatement::BindInt64(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
}

void SqliteStatement::BindText(int index, std::string_view value) {
  sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_STATIC, SQLITE_UTF8);
}

void SqliteStatement::BindBlob(int index, std::string_view value) {
  // A zero-length blob, not NULL, even for an empty string (whose data() may be null).
  if (value.empty()) {
    sqlite3_bind_zeroblob(stmt_, index, 0);
  } else {
    sqlite3_bind_blob64(stmt_, index, value.data(), value.size(), SQLITE_STATIC);
  }
}

absl::StatusOr<bool> SqliteStatement::Step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return db_->Error(rc, absl::StrCat("statement '", sqlite3_sql(stmt_), "'"));
}

absl::Status SqliteStatement::Run() {
  SqliteResetter reset(*this);
  absl::StatusOr<bool> row = Step();
  if (!row.ok()) return row.status();
  return absl::OkStatus();
}

void SqliteStatement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t SqliteStatement::ColumnInt64(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

bool SqliteStatement::ColumnIsNull(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

std::string_view SqliteStatement::ColumnBlob(int column) const {
  const void* data = sqlite3_column_blob(stmt_, column);
  const int size = sqlite3_column_bytes(stmt_, column);
  if (data == nullptr || size <= 0) return {};
  return {static_cast<const char*>(data), static_cast<size_t>(size)};
}

std::string_view SqliteStatement::ColumnText(int column) const {
  const unsigned char* data = sqlite3_column_text(stmt_, column);
  const int size = sqlite3_column_bytes(stmt_, column);
  if (data == nullptr || size <= 0) return {};
  return {reinterpret_cast<const char*>(data), static_cast<size_t>(size)};
}

absl::StatusOr<std::unique_ptr<SqliteDb>> SqliteDb::Open(const std::string& path,
                                                         absl::Duration busy_timeout) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    const std::string detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return SqliteStatus(rc, path, "opening the database", detail);
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, static_cast<int>(absl::ToInt64Milliseconds(busy_timeout)));
  return std::unique_ptr<SqliteDb>(new SqliteDb(path, db));
}

SqliteDb::~SqliteDb() { sqlite3_close_v2(db_); }

absl::Status SqliteDb::Exec(std::string_view sql) {
  const std::string text(sql);
  const int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return Error(rc, absl::StrCat("'", text, "'"));
  return absl::OkStatus();
}

absl::StatusOr<SqliteStatement> SqliteDb::Prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return Error(rc, absl::StrCat("preparing '", std::string(sql), "'"));
  return SqliteStatement(this, stmt);
}

absl::Status SqliteDb::Error(int code, std::string_view what) const {
  return SqliteStatus(code, path_, what, sqlite3_errmsg(db_));
}

absl::StatusOr<SqliteTransaction> SqliteTransaction::Immediate(SqliteDb& db) {
  if (absl::Status status = db.Exec("BEGIN IMMEDIATE"); !status.ok()) return status;
  return SqliteTransaction(&db);
}

absl::StatusOr<SqliteTransaction> SqliteTransaction::Read(SqliteDb& db) {
  if (absl::Status status = db.Exec("BEGIN"); !status.ok()) return status;
  return SqliteTransaction(&db);
}

SqliteTransaction::SqliteTransaction(SqliteTransaction&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)) {}

SqliteTransaction::~SqliteTransaction() { Rollback(); }

absl::Status SqliteTransaction::Commit() {
  if (db_ == nullptr) return absl::FailedPreconditionError("transaction already ended");
  absl::Status status = db_->Exec("COMMIT");
  // A failed COMMIT can leave the transaction open (SQLite then expects a ROLLBACK).
  if (!status.ok()) {
    Rollback();
  }
  db_ = nullptr;
  return status;
}

void SqliteTransaction::Rollback() {
  if (db_ == nullptr) return;
  if (!sqlite3_get_autocommit(db_->handle())) {
    sqlite3_exec(db_->handle(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
  db_ = nullptr;
}

}  // namespace stip
