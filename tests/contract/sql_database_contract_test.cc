// The SQL layer's contract (services/registry/sql.h), checked the same way on both backends:
// SQLite on a temporary file, and PostgreSQL on the real server the test command starts.
// Every test works on tables of its own (unique names), so runs never see each other's rows.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/registry/sql.h"
#include "tests/support/test_environment.h"

namespace stip::registry {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

enum class Backend { kSqlite, kPostgres };

std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "Sqlite" : "Postgres";
}

class SqlDatabaseContractTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    url_ = GetParam() == Backend::kSqlite ? absl::StrCat("sqlite://", dir_.path().string(), "/r.db")
                                          : testing::PostgresUrl();
    ASSERT_FALSE(url_.empty());
    db_ = Open();
    ASSERT_NE(db_, nullptr);
  }

  void TearDown() override {
    if (db_ == nullptr) return;
    auto session = db_->Session();
    if (!session.ok()) return;
    for (const std::string& table : tables_) {
      EXPECT_TRUE((*session)->ExecScript(absl::StrCat("DROP TABLE IF EXISTS ", table)).ok());
    }
  }

  std::unique_ptr<SqlDatabase> Open(SqlDatabaseOptions options = {}) {
    auto db = OpenSqlDatabase(url_, options);
    EXPECT_TRUE(db.ok()) << db.status();
    return db.ok() ? std::move(*db) : nullptr;
  }

  std::unique_ptr<SqlSession> Session(SqlDatabase& db) {
    auto session = db.Session();
    EXPECT_TRUE(session.ok()) << session.status();
    return session.ok() ? std::move(*session) : nullptr;
  }
  std::unique_ptr<SqlSession> Session() { return Session(*db_); }

  // A new table (id primary key, i integer, t text, b bytes) unique to this test.
  std::string NewTable() {
    std::string name = absl::StrReplaceAll(testing::UniqueName("sqlc"), {{"-", "_"}});
    const bool sqlite = GetParam() == Backend::kSqlite;
    const std::string ddl = absl::StrCat(
        "CREATE TABLE ", name, " (id ", sqlite ? "INTEGER" : "BIGINT", " PRIMARY KEY, i ",
        sqlite ? "INTEGER" : "BIGINT", ", t TEXT, b ", sqlite ? "BLOB" : "BYTEA", ")");
    auto session = Session();
    EXPECT_TRUE(session->ExecScript(ddl).ok());
    tables_.push_back(name);
    return name;
  }

  int64_t Count(SqlSession& session, const std::string& table) {
    auto result = session.Run(absl::StrCat("SELECT COUNT(*) FROM ", table));
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok() || result->rows.size() != 1) return -1;
    return result->rows[0].Int(0).value();
  }

  testing::TempDir dir_;
  std::string url_;
  std::unique_ptr<SqlDatabase> db_;
  std::vector<std::string> tables_;
};

TEST_P(SqlDatabaseContractTest, ParametersOfEveryKindRoundTrip) {
  const std::string table = NewTable();
  auto session = Session();
  EXPECT_EQ(session->dialect(), db_->dialect());
  const std::string insert =
      absl::StrCat("INSERT INTO ", table, " (id, i, t, b) VALUES ($1, $2, $3, $4)");
  const std::string text = "h\xC3\xA9llo \xE4\xB8\xAD\xE6\x96\x87 'single' \"double\" \\ ; --";
  const std::string bytes("\0\xFF\x01\x00\xFE'\\x", 8);
  const int64_t min = std::numeric_limits<int64_t>::min();
  const int64_t max = std::numeric_limits<int64_t>::max();

  ASSERT_TRUE(session->Run(insert, {int64_t{1}, min, text, SqlParam::Bytes(bytes)}).ok());
  ASSERT_TRUE(session->Run(insert, {int64_t{2}, max, std::string(), SqlParam::Bytes("")}).ok());
  ASSERT_TRUE(
      session->Run(insert, {int64_t{3}, SqlParam::Null(), SqlParam::Null(), SqlParam::Null()})
          .ok());
  ASSERT_TRUE(session->Run(insert, {int32_t{4}, true, "const char*", SqlParam::Null()}).ok());

  auto result = session->Run(absl::StrCat("SELECT id, i, t, b FROM ", table, " ORDER BY id"));
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->rows.size(), 4u);
  const auto& rows = result->rows;
  EXPECT_EQ(rows[0].size(), 4u);
  EXPECT_EQ(rows[0].Int(0).value(), 1);
  EXPECT_EQ(rows[0].Int(1).value(), min);
  EXPECT_EQ(rows[0].Text(2), text);
  EXPECT_EQ(rows[0].Text(3), bytes);
  EXPECT_EQ(rows[1].Int(1).value(), max);
  EXPECT_FALSE(rows[1].IsNull(2));
  EXPECT_EQ(rows[1].Text(2), "");
  EXPECT_FALSE(rows[1].IsNull(3));
  EXPECT_EQ(rows[1].Text(3), "");
  for (size_t column = 1; column < 4; ++column) {
    EXPECT_TRUE(rows[2].IsNull(column)) << column;
    EXPECT_EQ(rows[2].Int(column).value(), 0);
    EXPECT_EQ(rows[2].Text(column), "");
  }
  EXPECT_EQ(rows[3].Int(0).value(), 4);
  EXPECT_EQ(rows[3].Int(1).value(), 1);
  EXPECT_EQ(rows[3].Text(2), "const char*");

  // Parameters in WHERE, of each kind.
  auto by_bytes = session->Run(absl::StrCat("SELECT id FROM ", table, " WHERE b = $1"),
                               {SqlParam::Bytes(bytes)});
  ASSERT_TRUE(by_bytes.ok()) << by_bytes.status();
  ASSERT_EQ(by_bytes->rows.size(), 1u);
  EXPECT_EQ(by_bytes->rows[0].Int(0).value(), 1);
  auto by_text =
      session->Run(absl::StrCat("SELECT id FROM ", table, " WHERE t = $1 AND i = $2"), {text, min});
  ASSERT_TRUE(by_text.ok()) << by_text.status();
  ASSERT_EQ(by_text->rows.size(), 1u);
}

TEST_P(SqlDatabaseContractTest, TheSameStatementRunsManyTimes) {
  const std::string table = NewTable();
  auto session = Session();
  const std::string insert = absl::StrCat("INSERT INTO ", table, " (id, t) VALUES ($1, $2)");
  const std::string select = absl::StrCat("SELECT t FROM ", table, " WHERE id = $1");
  for (int64_t id = 1; id <= 300; ++id) {
    const std::string value = absl::StrCat("value-", id);
    ASSERT_TRUE(session->Run(insert, {id, value}).ok()) << id;
    auto row = session->Run(select, {id});
    ASSERT_TRUE(row.ok()) << row.status();
    ASSERT_EQ(row->rows.size(), 1u);
    EXPECT_EQ(row->rows[0].Text(0), value);
  }
  EXPECT_EQ(Count(*session, table), 300);
}

TEST_P(SqlDatabaseContractTest, ParametersMayAppearOutOfOrder) {
  const std::string table = NewTable();
  auto session = Session();
  ASSERT_TRUE(session
                  ->Run(absl::StrCat("INSERT INTO ", table, " (t, id, i) VALUES ($2, $1, $1)"),
                        {int64_t{7}, "seven"})
                  .ok());
  auto result = session->Run(absl::StrCat("SELECT id, i, t FROM ", table));
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->rows.size(), 1u);
  EXPECT_EQ(result->rows[0].Int(0).value(), 7);
  EXPECT_EQ(result->rows[0].Int(1).value(), 7);
  EXPECT_EQ(result->rows[0].Text(2), "seven");
}

// A value that does not fit the accessor is an error of that one read, never an abort of
// the process: PostgreSQL's SUM(bigint) is a numeric, beyond int64 once the sum is.
TEST_P(SqlDatabaseContractTest, IntegerAccessorsAnswerErrorsForValuesThatDoNotFit) {
  auto session = Session();
  auto result = session->Run(
      "SELECT '18446744073709551614', '-170141183460469231731687303715884105728', "
      "'12.5', 'twelve', NULL");
  ASSERT_TRUE(result.ok()) << result.status();
  const SqlRow& row = result->rows.at(0);
  EXPECT_EQ(row.Int(0).status().code(), absl::StatusCode::kOutOfRange) << row.Int(0).status();
  ASSERT_TRUE(row.Int128(0).ok()) << row.Int128(0).status();
  EXPECT_EQ(*row.Int128(0), absl::MakeInt128(0, 18446744073709551614u));
  EXPECT_EQ(row.Int128(1).value(), std::numeric_limits<absl::int128>::min());
  EXPECT_EQ(row.Int(2).status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(row.Int128(3).status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(row.Int(4).value(), 0);
  EXPECT_EQ(row.Int(5).status().code(), absl::StatusCode::kInternal);  // no such column
}

TEST_P(SqlDatabaseContractTest, WrongParameterCountIsInvalidArgument) {
  const std::string table = NewTable();
  auto session = Session();
  auto result = session->Run(absl::StrCat("INSERT INTO ", table, " (id) VALUES ($1)"), {1, 2});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
  EXPECT_EQ(Count(*session, table), 0);
}

TEST_P(SqlDatabaseContractTest, RowsAffectedCountsChangedRows) {
  const std::string table = NewTable();
  auto session = Session();
  for (int64_t id = 1; id <= 5; ++id) {
    auto inserted =
        session->Run(absl::StrCat("INSERT INTO ", table, " (id, i) VALUES ($1, 0)"), {id});
    ASSERT_TRUE(inserted.ok()) << inserted.status();
    EXPECT_EQ(inserted->rows_affected, 1);
  }
  auto updated = session->Run(absl::StrCat("UPDATE ", table, " SET i = $1 WHERE id > $2"),
                              {int64_t{9}, int64_t{2}});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->rows_affected, 3);
  auto none = session->Run(absl::StrCat("DELETE FROM ", table, " WHERE id = $1"), {int64_t{99}});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->rows_affected, 0);
  auto selected = session->Run(absl::StrCat("SELECT id FROM ", table));
  ASSERT_TRUE(selected.ok());
  EXPECT_EQ(selected->rows.size(), 5u);
  EXPECT_EQ(selected->rows_affected, 0);
  auto deleted = session->Run(absl::StrCat("DELETE FROM ", table, " WHERE i = $1"), {int64_t{9}});
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->rows_affected, 3);
}

TEST_P(SqlDatabaseContractTest, UniqueViolationIsAlreadyExistsAndTheSessionGoesOn) {
  const std::string table = NewTable();
  auto session = Session();
  const std::string insert = absl::StrCat("INSERT INTO ", table, " (id, t) VALUES ($1, $2)");
  ASSERT_TRUE(session->Run(insert, {int64_t{1}, "first"}).ok());
  auto again = session->Run(insert, {int64_t{1}, "second"});
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
  ASSERT_TRUE(session->Run(insert, {int64_t{2}, "third"}).ok());
  EXPECT_EQ(Count(*session, table), 2);

  // Inside a write transaction too: the caller rolls back, and the session is usable.
  absl::Status status = InWriteTransaction(*session, [&]() -> absl::Status {
    auto duplicate = session->Run(insert, {int64_t{2}, "dup"});
    return duplicate.status();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_EQ(Count(*session, table), 2);
}

TEST_P(SqlDatabaseContractTest, RolledBackWriteLeavesNothing) {
  const std::string table = NewTable();
  auto session = Session();
  const std::string insert = absl::StrCat("INSERT INTO ", table, " (id) VALUES ($1)");
  ASSERT_TRUE(session->BeginWrite().ok());
  ASSERT_TRUE(session->Run(insert, {int64_t{1}}).ok());
  ASSERT_TRUE(session->Run(insert, {int64_t{2}}).ok());
  EXPECT_EQ(Count(*session, table), 2);
  session->Rollback();
  EXPECT_EQ(Count(*session, table), 0);

  absl::Status status = InWriteTransaction(*session, [&]() -> absl::Status {
    if (auto inserted = session->Run(insert, {int64_t{3}}); !inserted.ok())
      return inserted.status();
    return absl::CancelledError("body failed");
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(Count(*Session(), table), 0);

  ASSERT_TRUE(InWriteTransaction(*session, [&] {
                return session->Run(insert, {int64_t{4}}).status();
              }).ok());
  EXPECT_EQ(Count(*Session(), table), 1);
  EXPECT_EQ(session->Commit().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(SqlDatabaseContractTest, ReadTransactionSeesAStableSnapshot) {
  const std::string table = NewTable();
  auto reader = Session();
  auto writer = Session();
  const std::string insert = absl::StrCat("INSERT INTO ", table, " (id) VALUES ($1)");
  ASSERT_TRUE(writer->Run(insert, {int64_t{1}}).ok());

  ASSERT_TRUE(reader->BeginRead().ok());
  EXPECT_EQ(Count(*reader, table), 1);
  ASSERT_TRUE(
      InWriteTransaction(*writer, [&] { return writer->Run(insert, {int64_t{2}}).status(); }).ok());
  ASSERT_TRUE(writer->Run(insert, {int64_t{3}}).ok());  // autocommit
  EXPECT_EQ(Count(*writer, table), 3);
  EXPECT_EQ(Count(*reader, table), 1);
  ASSERT_TRUE(reader->Commit().ok());
  EXPECT_EQ(Count(*reader, table), 3);
}

TEST_P(SqlDatabaseContractTest, WritersSerialize) {
  const std::string table = NewTable();
  const std::string insert = absl::StrCat("INSERT INTO ", table, " (id, t) VALUES ($1, $2)");
  auto first = Session();
  ASSERT_TRUE(first->BeginWrite().ok());

  std::atomic<bool> second_starting{false};
  int64_t second_saw = -1;
  absl::Status second_status;
  std::thread second_writer([&] {
    auto second = Session();
    second_starting = true;
    second_status = InWriteTransaction(*second, [&]() -> absl::Status {
      // Only once the first writer has committed may this run: then its row is visible.
      second_saw = Count(*second, table);
      return second->Run(insert, {second_saw + 1, "second"}).status();
    });
  });
  while (!second_starting) std::this_thread::yield();
  // Gives the second writer time to reach BeginWrite and wait; the assertions below hold
  // whether or not it got there, since they check the order of the writes, not the time.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_TRUE(first->Run(insert, {int64_t{1}, "first"}).ok());
  ASSERT_TRUE(first->Commit().ok());
  second_writer.join();

  ASSERT_TRUE(second_status.ok()) << second_status;
  EXPECT_EQ(second_saw, 1);
  auto rows = first->Run(absl::StrCat("SELECT id, t FROM ", table, " ORDER BY id"));
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->rows.size(), 2u);
  EXPECT_EQ(rows->rows[0].Text(1), "first");
  EXPECT_EQ(rows->rows[1].Int(0).value(), 2);
  EXPECT_EQ(rows->rows[1].Text(1), "second");
}

TEST_P(SqlDatabaseContractTest, SessionDestroyedInATransactionRollsBack) {
  const std::string table = NewTable();
  SqlDatabaseOptions options;
  options.max_connections = 1;  // the next session gets the same connection
  auto db = Open(options);
  ASSERT_NE(db, nullptr);
  const std::string insert = absl::StrCat("INSERT INTO ", table, " (id) VALUES ($1)");
  {
    auto session = Session(*db);
    ASSERT_TRUE(session->BeginWrite().ok());
    ASSERT_TRUE(session->Run(insert, {int64_t{1}}).ok());
  }
  {
    auto session = Session(*db);
    EXPECT_EQ(Count(*session, table), 0);
    // The write lock went with the transaction: another writer gets it.
    ASSERT_TRUE(InWriteTransaction(*session, [&] {
                  return session->Run(insert, {int64_t{2}}).status();
                }).ok());
    ASSERT_TRUE(session->BeginRead().ok());
  }
  auto session = Session(*db);
  EXPECT_EQ(Count(*session, table), 1);
  EXPECT_EQ(Count(*Session(), table), 1);
}

TEST_P(SqlDatabaseContractTest, SessionWaitsForAFreeConnection) {
  SqlDatabaseOptions options;
  options.max_connections = 1;
  auto db = Open(options);
  ASSERT_NE(db, nullptr);
  auto held = Session(*db);
  std::atomic<bool> got_second{false};
  std::atomic<bool> released{false};
  bool released_before_second = false;
  std::thread waiter([&] {
    auto second = Session(*db);
    released_before_second = released;
    got_second = true;
    EXPECT_TRUE(second->Run("SELECT 1").ok());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(got_second);
  released = true;
  held.reset();
  waiter.join();
  EXPECT_TRUE(released_before_second);
}

TEST_P(SqlDatabaseContractTest, ScriptsRunSeveralStatements) {
  const std::string table = NewTable();
  auto session = Session();
  ASSERT_TRUE(session
                  ->ExecScript(absl::StrCat("INSERT INTO ", table, " (id) VALUES (1);\n",
                                            "INSERT INTO ", table, " (id) VALUES (2);"))
                  .ok());
  EXPECT_EQ(Count(*session, table), 2);
  EXPECT_FALSE(session->ExecScript("NOT SQL AT ALL").ok());
  EXPECT_FALSE(session->Run("SELECT * FROM no_such_table_anywhere").ok());
  EXPECT_EQ(Count(*session, table), 2);
}

INSTANTIATE_TEST_SUITE_P(Backends, SqlDatabaseContractTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendName);

TEST(OpenSqlDatabaseTest, UnknownSchemeIsInvalidArgumentNamingTheUrl) {
  for (const std::string url : {"mysql://db.example/registry", "sqlite://relative/path.db", "",
                                "/var/lib/stip/registry.db"}) {
    auto db = OpenSqlDatabase(url);
    EXPECT_EQ(db.status().code(), absl::StatusCode::kInvalidArgument) << url;
    EXPECT_THAT(std::string(db.status().message()), HasSubstr(absl::StrCat("'", url, "'")));
    EXPECT_THAT(std::string(db.status().message()), HasSubstr("sqlite:///"));
    EXPECT_THAT(std::string(db.status().message()), HasSubstr("postgresql://"));
  }
}

TEST(OpenSqlDatabaseTest, UnreachablePostgresIsUnavailableWithoutThePassword) {
  SqlDatabaseOptions options;
  options.busy_timeout = absl::Seconds(2);
  for (const std::string url : {"postgresql://stip:s3cret@127.0.0.1:1/stip",
                                "postgres://stip@127.0.0.1:1/stip?password=s3cret"}) {
    auto db = OpenSqlDatabase(url, options);
    EXPECT_EQ(db.status().code(), absl::StatusCode::kUnavailable) << db.status();
    EXPECT_THAT(std::string(db.status().message()), HasSubstr("127.0.0.1:1/stip"));
    EXPECT_THAT(std::string(db.status().message()), Not(HasSubstr("s3cret")));
  }
}

TEST(OpenSqlDatabaseTest, DisplayNameHasNoPassword) {
  const std::string url = testing::PostgresUrl();
  ASSERT_FALSE(url.empty());
  // Trust authentication: the server ignores the password we add.
  const std::string with_password =
      absl::StrReplaceAll(url, {{"postgresql://stip@", "postgresql://stip:s3cret@"}});
  auto db = OpenSqlDatabase(with_password);
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_THAT((*db)->DisplayName(), Not(HasSubstr("s3cret")));
  EXPECT_THAT((*db)->DisplayName(), HasSubstr("stip@127.0.0.1"));
}

TEST(OpenSqlDatabaseTest, MissingSqliteFolderFails) {
  testing::TempDir dir;
  auto db = OpenSqlDatabase(absl::StrCat("sqlite://", dir.path().string(), "/missing/r.db"));
  EXPECT_FALSE(db.ok());
}

}  // namespace
}  // namespace stip::registry
