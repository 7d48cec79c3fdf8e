// The connection pool both SQL drivers share (sql.h), the SqlSession that leases one
// connection from it, and the drivers' entry points. Internal to the registry's SQL layer.
//
// A Connection type provides the SqlSession operations (dialect, ExecScript, Run, BeginRead,
// BeginWrite, Commit, Rollback) plus:
//   // Called when a session ends: rolls back a transaction left open. False when the
//   // connection is broken and must be closed rather than reused.
//   bool EndSession();
//
// Threading: the pool is thread-safe; a connection is used by one session (one thread) at a
// time. Ownership: idle connections belong to the pool; a leased one to its session, which
// gives it back when destroyed. Sessions keep the pool alive (shared_ptr), so a session may
// outlive its SqlDatabase.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "services/registry/sql.h"

namespace stip::registry {

template <typename Connection>
class SqlConnectionPool {
 public:
  using Opener = std::function<absl::StatusOr<std::unique_ptr<Connection>>()>;

  // At most `max_connections` (at least 1) open at once; `open` opens one more.
  SqlConnectionPool(size_t max_connections, Opener open)
      : max_connections_(max_connections == 0 ? 1 : max_connections), open_(std::move(open)) {}

  SqlConnectionPool(const SqlConnectionPool&) = delete;
  SqlConnectionPool& operator=(const SqlConnectionPool&) = delete;

  // An idle connection, or a new one when the pool has room; otherwise blocks until a
  // session gives one back. The error of `open` when opening fails.
  absl::StatusOr<std::unique_ptr<Connection>> Acquire() {
    {
      std::unique_lock lock(mutex_);
      returned_.wait(lock, [&] { return !idle_.empty() || open_count_ < max_connections_; });
      if (!idle_.empty()) {
        std::unique_ptr<Connection> connection = std::move(idle_.back());
        idle_.pop_back();
        return connection;
      }
      ++open_count_;  // the slot is ours while we open, outside the lock
    }
    absl::StatusOr<std::unique_ptr<Connection>> opened = open_();
    if (!opened.ok()) Discard();
    return opened;
  }

  // Takes back a connection whose session ended (nullptr: it was discarded).
  void Release(std::unique_ptr<Connection> connection) {
    // Rolling back talks to the database: done before taking the lock.
    if (connection == nullptr || !connection->EndSession()) {
      connection.reset();
      Discard();
      return;
    }
    {
      std::lock_guard lock(mutex_);
      idle_.push_back(std::move(connection));
    }
    returned_.notify_one();
  }

 private:
  void Discard() {
    {
      std::lock_guard lock(mutex_);
      --open_count_;
    }
    returned_.notify_one();
  }

  const size_t max_connections_;
  const Opener open_;
  std::mutex mutex_;
  std::condition_variable returned_;
  std::vector<std::unique_ptr<Connection>> idle_;  // guarded by mutex_
  size_t open_count_ = 0;                          // idle + leased + being opened; mutex_
};

// A SqlSession over one leased connection; gives it back to the pool when destroyed.
template <typename Connection>
class PooledSqlSession final : public SqlSession {
 public:
  PooledSqlSession(std::shared_ptr<SqlConnectionPool<Connection>> pool,
                   std::unique_ptr<Connection> connection)
      : pool_(std::move(pool)), connection_(std::move(connection)) {}
  ~PooledSqlSession() override { pool_->Release(std::move(connection_)); }
  PooledSqlSession(const PooledSqlSession&) = delete;
  PooledSqlSession& operator=(const PooledSqlSession&) = delete;

  SqlDialect dialect() const override { return connection_->dialect(); }
  absl::Status ExecScript(std::string_view sql) override { return connection_->ExecScript(sql); }
  absl::StatusOr<SqlResult> Run(std::string_view sql, absl::Span<const SqlParam> params) override {
    return connection_->Run(sql, params);
  }
  absl::Status BeginRead() override { return connection_->BeginRead(); }
  absl::Status BeginWrite() override { return connection_->BeginWrite(); }
  absl::Status Commit() override { return connection_->Commit(); }
  void Rollback() override { connection_->Rollback(); }

 private:
  std::shared_ptr<SqlConnectionPool<Connection>> pool_;
  std::unique_ptr<Connection> connection_;
};

// The SqlDatabase of a driver: a pool of `Connection`s and a display name.
template <typename Connection>
class PooledSqlDatabase final : public SqlDatabase {
 public:
  PooledSqlDatabase(SqlDialect dialect, std::string display_name,
                    std::shared_ptr<SqlConnectionPool<Connection>> pool)
      : dialect_(dialect), display_name_(std::move(display_name)), pool_(std::move(pool)) {}

  SqlDialect dialect() const override { return dialect_; }
  absl::StatusOr<std::unique_ptr<SqlSession>> Session() override {
    absl::StatusOr<std::unique_ptr<Connection>> connection = pool_->Acquire();
    if (!connection.ok()) return connection.status();
    return std::make_unique<PooledSqlSession<Connection>>(pool_, std::move(*connection));
  }
  std::string DisplayName() const override { return display_name_; }

 private:
  const SqlDialect dialect_;
  const std::string display_name_;
  const std::shared_ptr<SqlConnectionPool<Connection>> pool_;
};

// The drivers, which OpenSqlDatabase picks by the URL's scheme. `path` is absolute; `url`
// is the whole postgresql:// or postgres:// URL.
absl::StatusOr<std::unique_ptr<SqlDatabase>> OpenSqliteSqlDatabase(
    const std::string& path, const SqlDatabaseOptions& options);
absl::StatusOr<std::unique_ptr<SqlDatabase>> OpenPostgresSqlDatabase(
    const std::string& url, const SqlDatabaseOptions& options);

}  // namespace stip::registry
