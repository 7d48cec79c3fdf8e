// The PostgreSQL driver of sql.h, on libpq: a pool of connections, statements prepared once
// per connection, writers serialized by a transaction-scoped advisory lock.
#include <algorithm>
#include <cmath>
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
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/common/grpc_server.h"
#include "services/common/logging.h"
#include "services/registry/sql.h"
#include "services/registry/sql_pool.h"
#include <libpq-fe.h>

namespace stip::registry {
namespace {

// The key of the advisory lock every write transaction takes: "STIPREG1" in ASCII. Any
// other user of advisory locks on the same database must stay clear of it.
constexpr int64_t kWriterLockKey = 0x5354495052454731;

constexpr unsigned int kByteaOid = 17;

// libpq calls this for NOTICE and WARNING messages (e.g. "table does not exist, skipping"),
// which it would otherwise print to stderr.
void LogNotice(void* /*arg*/, const char* message) {
  static const auto logger = GetLogger("postgres");
  std::string text(message);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  logger->debug("{}", text);
}

std::string Shorten(std::string_view sql, size_t limit = 200) {
  return std::string(sql.substr(0, limit));
}

// The URL without its password, in the authority (user:password@) or the query
// (password=...).
std::string StripPassword(std::string_view url) {
  std::string out(url);
  const size_t scheme_end = out.find("://");
  if (scheme_end != std::string::npos) {
    const size_t start = scheme_end + 3;
    size_t end = out.find_first_of("/?", start);
    if (end == std::string::npos) end = out.size();
    const size_t at = out.rfind('@', end);
    if (at != std::string::npos && at >= start) {
      const size_t colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) out.erase(colon, at - colon);
    }
  }
  const size_t query = out.find('?');
  if (query != std::string::npos) {
    size_t pos = query + 1;
    while (pos < out.size()) {
      size_t amp = out.find('&', pos);
      if (amp == std::string::npos) amp = out.size();
      if (std::string_view(out).substr(pos, amp - pos).starts_with("password=")) {
        // Drop "password=...", and the '&' after it or, when last, the separator before it.
        if (amp < out.size()) {
          out.erase(pos, amp + 1 - pos);
        } else {
          out.erase(pos - 1);
        }
        continue;
      }
      pos = amp + 1;
    }
  }
  return out;
}

struct ResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

class PostgresConnection {
 public:
  PostgresConnection(PGconn* conn, std::string display_name)
      : conn_(conn), display_name_(std::move(display_name)) {}
  ~PostgresConnection() { PQfinish(conn_); }
  PostgresConnection(const PostgresConnection&) = delete;
  PostgresConnection& operator=(const PostgresConnection&) = delete;

  static absl::StatusOr<std::unique_ptr<PostgresConnection>> Open(const std::string& url,
                                                                  const std::string& display_name,
                                                                  absl::Duration connect_timeout) {
    // Defaults first, then the URL: with expand_dbname, later keywords win, so the URL's
    // own connect_timeout or application_name, when it has them, override these.
    const std::string timeout_seconds = std::to_string(std::max<int64_t>(
        2, static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(connect_timeout)))));
    const char* const keywords[] = {"connect_timeout", "application_name", "dbname", nullptr};
    const char* const values[] = {timeout_seconds.c_str(), "stip-registry", url.c_str(), nullptr};
    PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
    if (conn == nullptr) {
      return WithInternalDetail(absl::ResourceExhaustedError(
          absl::StrCat("PostgreSQL ", display_name, ": libpq could not allocate a connection")));
    }
    if (PQstatus(conn) != CONNECTION_OK) {
      std::string message = PQerrorMessage(conn);
      PQfinish(conn);
      while (!message.empty() && message.back() == '\n') message.pop_back();
      return absl::UnavailableError(
          absl::StrCat("PostgreSQL ", display_name, ": cannot connect: ", message));
    }
    PQsetNoticeProcessor(conn, LogNotice, nullptr);
    return std::make_unique<PostgresConnection>(conn, display_name);
  }

  SqlDialect dialect() const { return SqlDialect::kPostgres; }

  absl::Status ExecScript(std::string_view sql) {
    const std::string text(sql);
    ResultPtr result(PQexec(conn_, text.c_str()));
    return Check(result.get(), "script", sql);
  }

  absl::StatusOr<SqlResult> Run(std::string_view sql, absl::Span<const SqlParam> params) {
    absl::StatusOr<const Prepared*> prepared = Prepare(sql);
    if (!prepared.ok()) return prepared.status();
    if (static_cast<size_t>((*prepared)->params) != params.size()) {
      return absl::InvalidArgumentError(absl::StrCat("statement '", Shorten(sql), "' takes ",
                                                     (*prepared)->params, " parameters, given ",
                                                     params.size()));
    }

    // Text-format values must end in NUL, which a string_view need not: copies of those.
    std::vector<std::string> texts(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    std::vector<int> lengths(params.size(), 0);
    std::vector<int> formats(params.size(), 0);
    for (size_t i = 0; i < params.size(); ++i) {
      const SqlParam& param = params[i];
      switch (param.kind()) {
        case SqlParam::Kind::kNull:
          break;
        case SqlParam::Kind::kInt:
          texts[i] = std::to_string(param.int_value());
          values[i] = texts[i].c_str();
          break;
        case SqlParam::Kind::kText:
          texts[i] = std::string(param.bytes());
          values[i] = texts[i].c_str();
          break;
        case SqlParam::Kind::kBytes:
          // Binary format: BYTEA's binary form is the bytes themselves, no escaping.
          values[i] = param.bytes().empty() ? "" : param.bytes().data();
          lengths[i] = static_cast<int>(param.bytes().size());
          formats[i] = 1;
          break;
      }
    }
    ResultPtr result(PQexecPrepared(conn_, (*prepared)->name.c_str(),
                                    static_cast<int>(params.size()), values.data(), lengths.data(),
                                    formats.data(), /*resultFormat=*/0));
    if (absl::Status status = Check(result.get(), "statement", sql); !status.ok()) return status;

    SqlResult out;
    const int rows = PQntuples(result.get());
    const int columns = PQnfields(result.get());
    out.rows.reserve(rows);
    for (int r = 0; r < rows; ++r) {
      std::vector<std::optional<std::string>> row;
      row.reserve(columns);
      for (int c = 0; c < columns; ++c) {
        if (PQgetisnull(result.get(), r, c)) {
          row.emplace_back(std::nullopt);
          continue;
        }
        const char* value = PQgetvalue(result.get(), r, c);
        if (PQftype(result.get(), c) == kByteaOid) {
          size_t size = 0;
          unsigned char* bytes =
              PQunescapeBytea(reinterpret_cast<const unsigned char*>(value), &size);
          if (bytes == nullptr) {
            return WithInternalDetail(absl::ResourceExhaustedError(
                absl::StrCat("PostgreSQL ", display_name_, ": cannot decode a BYTEA column of '",
                             Shorten(sql), "'")));
          }
          row.emplace_back(std::string(reinterpret_cast<const char*>(bytes), size));
          PQfreemem(bytes);
        } else {
          row.emplace_back(std::string(value, PQgetlength(result.get(), r, c)));
        }
      }
      out.rows.emplace_back(std::move(row));
    }
    // PQcmdTuples counts SELECT rows too; rows_affected is about changes only.
    if (!std::string_view(PQcmdStatus(result.get())).starts_with("SELECT")) {
      int64_t affected = 0;
      if (absl::SimpleAtoi(PQcmdTuples(result.get()), &affected)) out.rows_affected = affected;
    }
    return out;
  }

  // REPEATABLE READ: one snapshot, taken at the first statement, for the whole transaction.
  absl::Status BeginRead() { return Begin({"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"}); }

  // READ COMMITTED plus the advisory lock: writers queue on the lock, so each sees every
  // earlier writer's commit and identity values are handed out in commit order.
  absl::Status BeginWrite() {
    return Begin({"BEGIN", absl::StrCat("SELECT pg_advisory_xact_lock(", kWriterLockKey, ")")});
  }

  absl::Status Commit() {
    if (!in_transaction_) return absl::FailedPreconditionError("Commit without a transaction");
    in_transaction_ = false;
    ResultPtr result(PQexec(conn_, "COMMIT"));
    if (absl::Status status = Check(result.get(), "COMMIT", "COMMIT"); !status.ok()) {
      RollbackNow();
      return status;
    }
    // COMMIT of a transaction in the failed state answers "ROLLBACK", not an error.
    if (std::string_view(PQcmdStatus(result.get())) == "ROLLBACK") {
      return absl::AbortedError(
          absl::StrCat("PostgreSQL ", display_name_,
                       ": transaction rolled back at COMMIT because a statement in it had failed"));
    }
    return absl::OkStatus();
  }

  void Rollback() {
    in_transaction_ = false;
    RollbackNow();
  }

  bool EndSession() {
    Rollback();
    return !broken_ && PQstatus(conn_) == CONNECTION_OK;
  }

 private:
  struct Prepared {
    std::string name;
    int params = 0;
  };

  absl::Status Begin(std::vector<std::string> statements) {
    if (in_transaction_) {
      return absl::FailedPreconditionError("a transaction is already open on this session");
    }
    for (const std::string& sql : statements) {
      ResultPtr result(PQexec(conn_, sql.c_str()));
      if (absl::Status status = Check(result.get(), "statement", sql); !status.ok()) {
        RollbackNow();
        return status;
      }
    }
    in_transaction_ = true;
    return absl::OkStatus();
  }

  void RollbackNow() {
    if (broken_) return;
    const PGTransactionStatusType state = PQtransactionStatus(conn_);
    if (state == PQTRANS_IDLE) return;
    if (state != PQTRANS_INTRANS && state != PQTRANS_INERROR) {
      broken_ = true;
      return;
    }
    ResultPtr result(PQexec(conn_, "ROLLBACK"));
    if (PQresultStatus(result.get()) != PGRES_COMMAND_OK) broken_ = true;
  }

  absl::StatusOr<const Prepared*> Prepare(std::string_view sql) {
    const std::string text(sql);
    auto found = prepared_.find(text);
    if (found != prepared_.end()) return &found->second;
    Prepared prepared{absl::StrCat("stip_", prepared_.size() + 1), 0};
    {
      ResultPtr result(PQprepare(conn_, prepared.name.c_str(), text.c_str(), 0, nullptr));
      if (absl::Status status = Check(result.get(), "preparing", sql); !status.ok()) {
        return status;
      }
    }
    ResultPtr described(PQdescribePrepared(conn_, prepared.name.c_str()));
    if (absl::Status status = Check(described.get(), "describing", sql); !status.ok()) {
      return status;
    }
    prepared.params = PQnparams(described.get());
    return &prepared_.emplace(text, std::move(prepared)).first->second;
  }

  // OK for a result that succeeded; otherwise the status its SQLSTATE maps to, marked
  // WithInternalDetail: it names the server and the statement, for operators only. A lost
  // connection marks this one broken, so the pool closes it instead of reusing it.
  absl::Status Check(const PGresult* result, std::string_view what, std::string_view sql) {
    return WithInternalDetail(Classify(result, what, sql));
  }
  absl::Status Classify(const PGresult* result, std::string_view what, std::string_view sql) {
    const ExecStatusType status = result == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(result);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY) {
      return absl::OkStatus();
    }
    const char* state_field =
        result == nullptr ? nullptr : PQresultErrorField(result, PG_DIAG_SQLSTATE);
    const char* primary =
        result == nullptr ? nullptr : PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
    std::string message = primary != nullptr ? primary : PQerrorMessage(conn_);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    const std::string sqlstate = state_field != nullptr ? state_field : "";
    const std::string text =
        absl::StrCat("PostgreSQL ", display_name_, ": ", std::string(what), " failed: ", message,
                     sqlstate.empty() ? "" : " (SQLSTATE " + sqlstate + ")");

    const bool connection_lost = PQstatus(conn_) == CONNECTION_BAD;
    if (connection_lost || sqlstate.starts_with("08") || sqlstate == "57P01" ||
        sqlstate == "57P02" || sqlstate == "57P03") {
      broken_ = true;
      return absl::UnavailableError(text);
    }
    if (sqlstate == "23505") return absl::AlreadyExistsError(text);
    if (sqlstate.starts_with("23")) return absl::FailedPreconditionError(text);
    if (sqlstate == "40001" || sqlstate == "40P01") return absl::AbortedError(text);
    // 42xxx (syntax, undefined table or column) is a bug in our SQL, the rest unexpected:
    // both name the statement.
    return absl::InternalError(absl::StrCat(text, "; SQL: ", Shorten(sql)));
  }

  PGconn* const conn_;
  const std::string display_name_;
  // SQL text -> its prepared statement on this connection.
  std::unordered_map<std::string, Prepared> prepared_;
  bool in_transaction_ = false;  // BeginRead/BeginWrite succeeded, Commit/Rollback not yet
  bool broken_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SqlDatabase>> OpenPostgresSqlDatabase(
    const std::string& url, const SqlDatabaseOptions& options) {
  std::string display_name = StripPassword(url);
  char* parse_error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(url.c_str(), &parse_error);
  if (parsed == nullptr) {
    std::string detail = parse_error != nullptr ? parse_error : "out of memory";
    PQfreemem(parse_error);
    while (!detail.empty() && detail.back() == '\n') detail.pop_back();
    return absl::InvalidArgumentError(
        absl::StrCat("database URL '", display_name, "' is not a valid PostgreSQL URL: ", detail,
                     "; use postgresql://user[:password]@host[:port]/dbname[?params]"));
  }
  PQconninfoFree(parsed);

  const absl::Duration connect_timeout = options.busy_timeout;
  auto pool = std::make_shared<SqlConnectionPool<PostgresConnection>>(
      options.max_connections, [url, display_name, connect_timeout] {
        return PostgresConnection::Open(url, display_name, connect_timeout);
      });
  // Connect now, so that a wrong URL or an unreachable server fails at start-up.
  absl::StatusOr<std::unique_ptr<PostgresConnection>> first = pool->Acquire();
  if (!first.ok()) return first.status();
  pool->Release(std::move(*first));
  return std::make_unique<PooledSqlDatabase<PostgresConnection>>(
      SqlDialect::kPostgres, std::move(display_name), std::move(pool));
}

}  // namespace stip::registry
