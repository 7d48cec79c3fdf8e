// What is particular to the SQLite event log (services/common/sqlite_event_log.h): the file
// survives a reopen and a kill -9, group commit from many threads, placement by the murmur2
// partitioner, group membership over the file, wake-ups across connections and processes,
// and the processor's redelivery of a failed batch. The backend-agnostic contract is in
// tests/contract/event_log_contract_test.cc.
#include "services/common/sqlite_event_log.h"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/event_log.h"
#include "tests/support/test_environment.h"
#include <sqlite3.h>
#include <sys/wait.h>

namespace stip {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAreArray;

// The child process of the cross-process tests is this test binary itself, running one
// DISABLED_ test picked by --gtest_filter; the file it works on comes in this variable.
constexpr char kChildFileVariable[] = "STIP_SQLITE_CHILD_FILE";

std::unique_ptr<EventLog> Open(const std::string& path) {
  auto log = OpenSqliteEventLog(path, EventLogOptions{});
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? std::move(*log) : nullptr;
}

void CreateTopic(EventLog& log, const std::string& name, int32_t partitions) {
  const TopicSpec spec{name, partitions};
  const absl::Status status = log.EnsureTopics({&spec, 1});
  ASSERT_TRUE(status.ok()) << status;
}

// Polls until `count` events have arrived (or `limit` passes), committing after each Poll.
std::vector<ConsumedEvent> PollAtLeast(EventConsumer& consumer, size_t count,
                                       absl::Duration limit = absl::Seconds(30)) {
  std::vector<ConsumedEvent> events;
  const absl::Time give_up = absl::Now() + limit;
  while (events.size() < count && absl::Now() < give_up) {
    auto polled = consumer.Poll(500, absl::Milliseconds(100));
    EXPECT_TRUE(polled.ok()) << polled.status();
    if (!polled.ok()) break;
    for (auto& event : *polled) events.push_back(std::move(event));
    EXPECT_TRUE(consumer.Commit().ok());
  }
  return events;
}

std::vector<ConsumedEvent> ReadAll(EventLog& log, const std::string& topic, size_t count) {
  auto consumer = log.NewConsumer({testing::UniqueName("reader"), {topic}});
  EXPECT_TRUE(consumer.ok()) << consumer.status();
  if (!consumer.ok()) return {};
  std::vector<ConsumedEvent> events = PollAtLeast(**consumer, count);
  // Nothing beyond `count`.
  auto more = (*consumer)->Poll(500, absl::Milliseconds(100));
  EXPECT_TRUE(more.ok() && more->empty()) << "more events than expected";
  EXPECT_TRUE((*consumer)->Close(absl::Seconds(5)).ok());
  return events;
}

class SqliteEventLogTest : public ::testing::Test {
 protected:
  std::string Path() const { return (dir_.path() / "events.db").string(); }
  testing::TempDir dir_;
};

TEST_F(SqliteEventLogTest, EventsSurviveClosingAndReopeningTheFile) {
  {
    auto log = Open(Path());
    ASSERT_NE(log, nullptr);
    CreateTopic(*log, "durable", 3);
    auto publisher = log->NewPublisher();
    ASSERT_TRUE(publisher.ok());
    const std::vector<OutgoingEvent> events = {
        {"durable", "k1", "v1", {{"h", "x"}, {"empty", ""}}},
        {"durable", "k2", std::string("bin\0ary", 7), {}},
        {"durable", "k1", "v3", {{"ce_id", "3"}}},
    };
    ASSERT_TRUE((*publisher)->Publish(events, absl::Seconds(5)).ok());
  }
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  // Existing topics are left alone: asking again for another partition count changes nothing.
  CreateTopic(*log, "durable", 7);
  const auto events = ReadAll(*log, "durable", 3);
  ASSERT_THAT(events, SizeIs(3));
  std::map<std::string, const ConsumedEvent*> by_value;
  for (const auto& event : events) by_value[event.value] = &event;
  ASSERT_EQ(by_value.count("v1"), 1u);
  EXPECT_THAT(by_value["v1"]->headers, ElementsAre(Pair("h", "x"), Pair("empty", "")));
  EXPECT_EQ(by_value["v1"]->partition, PartitionForKey("k1", 3));
  EXPECT_EQ(by_value["v1"]->offset, 0);
  EXPECT_EQ(by_value["v3"]->offset, 1);
  EXPECT_EQ(by_value.count(std::string("bin\0ary", 7)), 1u);
  EXPECT_LT(absl::Now() - by_value["v1"]->timestamp, absl::Minutes(1));
}

TEST_F(SqliteEventLogTest, PublishToAnUnknownTopicNamesItAndPublishesNothing) {
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  CreateTopic(*log, "known", 1);
  auto publisher = log->NewPublisher();
  ASSERT_TRUE(publisher.ok());
  const std::vector<OutgoingEvent> events = {{"known", "k", "v", {}}, {"nowhere", "k", "v", {}}};
  const absl::Status status = (*publisher)->Publish(events, absl::Seconds(5));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("nowhere"));
  // All or nothing: "known" got nothing either.
  EXPECT_THAT(ReadAll(*log, "known", 0), IsEmpty());
}

TEST_F(SqliteEventLogTest, APublishThatCannotGetTheLockInTimeIsUnavailableAndPublishesNothing) {
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  CreateTopic(*log, "locked", 1);
  auto publisher = log->NewPublisher();
  ASSERT_TRUE(publisher.ok());
  // Another process holding the write lock looks like this connection.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(Path().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  const std::vector<OutgoingEvent> events = {{"locked", "k", "v", {}}};
  const absl::Time start = absl::Now();
  const absl::Status status = (*publisher)->Publish(events, absl::Milliseconds(300));
  // Bounded by the call's 300 ms, not SQLite's busy timeout; the bound leaves room for load.
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr(Path()));
  ASSERT_EQ(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  EXPECT_THAT(ReadAll(*log, "locked", 0), IsEmpty());
  EXPECT_TRUE((*publisher)->Publish(events, absl::Seconds(5)).ok());
}

TEST_F(SqliteEventLogTest, AFileThatIsNotADatabaseIsDataLossNamingIt) {
  std::ofstream(Path()) << std::string(8192, 'x');
  auto log = OpenSqliteEventLog(Path(), EventLogOptions{});
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss) << log.status();
  EXPECT_THAT(std::string(log.status().message()), ::testing::HasSubstr(Path()));
}

TEST_F(SqliteEventLogTest, GroupCommitFromEightThreadsKeepsEveryEventAndTheOrderOfEachKey) {
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  CreateTopic(*log, "busy", 4);
  auto publisher = log->NewPublisher();
  ASSERT_TRUE(publisher.ok());
  constexpr int kThreads = 8, kBatches = 60, kBatchSize = 25;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  const absl::Time start = absl::Now();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int b = 0; b < kBatches; ++b) {
        std::vector<OutgoingEvent> batch;
        for (int i = 0; i < kBatchSize; ++i) {
          // Each thread owns its keys: per key, the sequence is the publishing order.
          const int sequence = b * kBatchSize + i;
          batch.push_back({"busy", absl::StrCat("t", t, "-k", i % 5), absl::StrCat(sequence), {}});
        }
        if (!(*publisher)->Publish(batch, absl::Seconds(30)).ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const absl::Duration took = absl::Now() - start;
  ASSERT_EQ(failures, 0);
  constexpr int kTotal = kThreads * kBatches * kBatchSize;
  std::cout << "[ perf     ] " << kTotal << " events in " << kThreads * kBatches
            << " acknowledged publishes from " << kThreads
            << " threads: " << static_cast<int64_t>(kTotal / absl::ToDoubleSeconds(took))
            << " events/s\n";

  const auto events = ReadAll(*log, "busy", kTotal);
  ASSERT_THAT(events, SizeIs(kTotal));
  std::map<std::string, int> last;
  std::map<int32_t, int64_t> next_offset;
  std::set<std::pair<std::string, int>> seen;
  for (const auto& event : events) {
    const int sequence = std::stoi(event.value);
    EXPECT_TRUE(seen.emplace(event.key, sequence).second) << "duplicate " << event.Position();
    auto [it, first] = last.try_emplace(event.key, sequence);
    if (!first) {
      EXPECT_GT(sequence, it->second) << "key " << event.key << " out of order";
      it->second = sequence;
    }
    // Offsets of a partition are contiguous from 0.
    auto [offset, new_partition] = next_offset.try_emplace(event.partition, 0);
    EXPECT_EQ(event.offset, offset->second) << event.Position();
    offset->second = event.offset + 1;
  }
}

TEST_F(SqliteEventLogTest, PartitionPlacementIsKafkasMurmur2Partitioner) {
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  CreateTopic(*log, "placed", 6);
  auto publisher = log->NewPublisher();
  ASSERT_TRUE(publisher.ok());
  std::vector<OutgoingEvent> events;
  events.reserve(301);
  for (int i = 0; i < 300; ++i) events.push_back({"placed", absl::StrCat("91350100M", i), "v", {}});
  events.push_back({"placed", "", "empty key", {}});
  ASSERT_TRUE((*publisher)->Publish(events, absl::Seconds(5)).ok());
  std::set<int32_t> used;
  for (const auto& event : ReadAll(*log, "placed", events.size())) {
    EXPECT_EQ(event.partition, PartitionForKey(event.key, 6)) << event.key;
    used.insert(event.partition);
  }
  EXPECT_THAT(used, SizeIs(6));
}

TEST_F(SqliteEventLogTest, StartsAtTheLatestEventWhenAskedAndHonoursStartOffsets) {
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  CreateTopic(*log, "late", 1);
  auto publisher = log->NewPublisher();
  ASSERT_TRUE(publisher.ok());
  const std::vector<OutgoingEvent> before = {{"late", "k", "old-0", {}},
                                             {"late", "k", "old-1", {}}};
  ASSERT_TRUE((*publisher)->Publish(before, absl::Seconds(5)).ok());

  ConsumerOptions latest{"latest-group", {"late"}};
  latest.start_from_earliest = false;
  auto consumer = log->NewConsumer(latest);
  ASSERT_TRUE(consumer.ok());
  const std::vector<OutgoingEvent> after = {{"late", "k", "new", {}}};
  ASSERT_TRUE((*publisher)->Publish(after, absl::Seconds(5)).ok());
  auto events = PollAtLeast(**consumer, 1);
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].value, "new");

  ConsumerOptions custom{"custom-group", {"late"}};
  std::vector<TopicPartition> asked;
  custom.start_offsets = [&](const std::vector<TopicPartition>& partitions) {
    asked = partitions;
    return std::map<TopicPartition, int64_t>{{{"late", 0}, 1}};
  };
  auto second = log->NewConsumer(custom);
  ASSERT_TRUE(second.ok());
  events = PollAtLeast(**second, 2);
  EXPECT_THAT(asked, ElementsAre(TopicPartition{"late", 0}));
  ASSERT_THAT(events, SizeIs(2));
  EXPECT_EQ(events[0].value, "old-1");
  EXPECT_EQ(events[1].value, "new");
}

TEST_F(SqliteEventLogTest, AConsumerOfATopicCreatedLaterGetsItsPartitions) {
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  auto consumer = log->NewConsumer({"early", {"later"}});
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  EXPECT_THAT((*consumer)->Assignment(), IsEmpty());
  auto polled = (*consumer)->Poll(10, absl::Milliseconds(50));
  ASSERT_TRUE(polled.ok());
  EXPECT_THAT(*polled, IsEmpty());

  CreateTopic(*log, "later", 2);
  auto publisher = log->NewPublisher();
  ASSERT_TRUE(publisher.ok());
  const std::vector<OutgoingEvent> events = {{"later", "k", "v", {}}};
  ASSERT_TRUE((*publisher)->Publish(events, absl::Seconds(5)).ok());
  EXPECT_THAT(PollAtLeast(**consumer, 1), SizeIs(1));
  EXPECT_THAT((*consumer)->Assignment(), SizeIs(2));
}

// Two members of one group split the partitions; when one leaves, the other takes its
// partitions from the committed offsets: nothing lost, nothing twice.
TEST_F(SqliteEventLogTest, TwoMembersSplitPartitionsAndALeaverHandsItsOnWithoutLossOrRepeat) {
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  CreateTopic(*log, "shared", 4);
  auto publisher = log->NewPublisher();
  ASSERT_TRUE(publisher.ok());
  auto publish = [&](int from, int count) {
    std::vector<OutgoingEvent> events;
    for (int i = from; i < from + count; ++i) {
      events.push_back({"shared", absl::StrCat("key-", i % 41), absl::StrCat(i), {}});
    }
    ASSERT_TRUE((*publisher)->Publish(events, absl::Seconds(5)).ok());
  };
  publish(0, 2000);

  auto first = log->NewConsumer({"pair", {"shared"}});
  ASSERT_TRUE(first.ok());
  EXPECT_THAT((*first)->Assignment(), SizeIs(4)) << "alone in the group: every partition";
  auto second = log->NewConsumer({"pair", {"shared"}});
  ASSERT_TRUE(second.ok());

  // Both poll until each holds two partitions.
  EventConsumer* const members[] = {first->get(), second->get()};
  std::vector<ConsumedEvent> got_first, got_second;
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (((*first)->Assignment().size() != 2 || (*second)->Assignment().size() != 2) &&
         absl::Now() < give_up) {
    for (EventConsumer* consumer : members) {
      auto polled = consumer->Poll(10, absl::Milliseconds(10));
      ASSERT_TRUE(polled.ok()) << polled.status();
      auto& into = consumer == members[0] ? got_first : got_second;
      into.insert(into.end(), polled->begin(), polled->end());
      ASSERT_TRUE(consumer->Commit().ok());
    }
  }
  ASSERT_THAT((*first)->Assignment(), SizeIs(2));
  ASSERT_THAT((*second)->Assignment(), SizeIs(2));
  std::set<TopicPartition> all;
  for (const auto& tp : (*first)->Assignment()) all.insert(tp);
  for (const auto& tp : (*second)->Assignment()) all.insert(tp);
  EXPECT_THAT(all, SizeIs(4)) << "the two assignments overlap";

  // Each reads some of its share, commits, and the second leaves.
  for (int round = 0; round < 5; ++round) {
    for (EventConsumer* consumer : members) {
      auto polled = consumer->Poll(100, absl::Milliseconds(50));
      ASSERT_TRUE(polled.ok());
      for (const auto& event : *polled) {
        const auto assignment = consumer->Assignment();
        EXPECT_TRUE(std::find(assignment.begin(), assignment.end(),
                              TopicPartition{event.topic, event.partition}) != assignment.end());
      }
      auto& into = consumer == members[0] ? got_first : got_second;
      into.insert(into.end(), polled->begin(), polled->end());
      ASSERT_TRUE(consumer->Commit().ok());
    }
  }
  EXPECT_FALSE(got_second.empty());
  ASSERT_TRUE((*second)->Close(absl::Seconds(5)).ok());
  publish(2000, 1000);

  const size_t remaining = 3000 - got_first.size() - got_second.size();
  auto rest = PollAtLeast(**first, remaining);
  EXPECT_THAT((*first)->Assignment(), SizeIs(4));
  got_first.insert(got_first.end(), rest.begin(), rest.end());

  std::vector<std::string> values;
  for (const auto* events : {&got_first, &got_second}) {
    for (const auto& event : *events) values.push_back(event.value);
  }
  std::vector<std::string> expected;
  expected.reserve(3000);
  for (int i = 0; i < 3000; ++i) expected.push_back(absl::StrCat(i));
  EXPECT_THAT(values, UnorderedElementsAreArray(expected));
  auto extra = (*first)->Poll(100, absl::Milliseconds(200));
  ASSERT_TRUE(extra.ok());
  EXPECT_THAT(*extra, IsEmpty());
}

// A member removed from its group (here: its row deleted, as the others do to one that
// missed its heartbeats) cannot commit, and rejoins at its next Poll.
TEST_F(SqliteEventLogTest, AMemberRemovedFromItsGroupCannotCommitAndRejoins) {
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  CreateTopic(*log, "lonely", 2);
  auto publisher = log->NewPublisher();
  ASSERT_TRUE(publisher.ok());
  const std::vector<OutgoingEvent> events = {{"lonely", "a", "1", {}}, {"lonely", "b", "2", {}}};
  ASSERT_TRUE((*publisher)->Publish(events, absl::Seconds(5)).ok());
  auto consumer = log->NewConsumer({"expelled", {"lonely"}});
  ASSERT_TRUE(consumer.ok());
  auto polled = (*consumer)->Poll(1, absl::Seconds(5));
  ASSERT_TRUE(polled.ok());
  ASSERT_THAT(*polled, SizeIs(1));

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(Path().c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  ASSERT_EQ(sqlite3_exec(db, "DELETE FROM eventlog_members WHERE group_id = 'expelled'", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);

  EXPECT_EQ((*consumer)->Commit().code(), absl::StatusCode::kAborted);
  // Back in the group, from the committed offsets: both events (the first one again).
  auto again = PollAtLeast(**consumer, 2);
  EXPECT_THAT(again, SizeIs(2));
  EXPECT_THAT((*consumer)->Assignment(), SizeIs(2));
}

// Wake-ups: a Poll blocked on one handle returns soon after a commit made through another
// handle, a raw SQLite connection (what another process looks like), or another process.
// The poll may wait far longer than a loaded machine can delay the commit: a poll that
// returns within half of it was woken, one that did not wake would wait it out.
constexpr absl::Duration kLongPoll = absl::Seconds(120);

TEST_F(SqliteEventLogTest, ABlockedPollWakesForAnotherHandlesCommit) {
  auto reader_log = Open(Path());
  ASSERT_NE(reader_log, nullptr);
  CreateTopic(*reader_log, "wake", 1);
  auto writer_log = Open(Path());
  ASSERT_NE(writer_log, nullptr);
  auto consumer = reader_log->NewConsumer({"waker", {"wake"}});
  ASSERT_TRUE(consumer.ok());

  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto publisher = writer_log->NewPublisher();
    const std::vector<OutgoingEvent> events = {{"wake", "k", "hello", {}}};
    EXPECT_TRUE((*publisher)->Publish(events, absl::Seconds(5)).ok());
  });
  const absl::Time start = absl::Now();
  auto polled = (*consumer)->Poll(10, kLongPoll);
  const absl::Duration waited = absl::Now() - start;
  writer.join();
  ASSERT_TRUE(polled.ok());
  ASSERT_THAT(*polled, SizeIs(1));
  EXPECT_LT(waited, kLongPoll / 2) << "the poll waited out its time instead of waking";
}

TEST_F(SqliteEventLogTest, ABlockedPollWakesForACommitOfAnotherConnection) {
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  CreateTopic(*log, "raw", 1);
  auto consumer = log->NewConsumer({"raw-reader", {"raw"}});
  ASSERT_TRUE(consumer.ok());
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    // Not through this process's shared state: only PRAGMA data_version can see it.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(Path().c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    EXPECT_EQ(sqlite3_exec(db,
                           "INSERT INTO eventlog_events (topic, partition, offset, key, value, "
                           "headers, timestamp_us) VALUES ('raw', 0, 0, 'k', 'from outside', "
                           "x'', 0)",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  });
  const absl::Time start = absl::Now();
  auto polled = (*consumer)->Poll(10, kLongPoll);
  const absl::Duration waited = absl::Now() - start;
  writer.join();
  ASSERT_TRUE(polled.ok());
  ASSERT_THAT(*polled, SizeIs(1));
  EXPECT_EQ((*polled)[0].value, "from outside");
  EXPECT_LT(waited, kLongPoll / 2) << "the poll waited out its time instead of waking";
}

testing::ChildProcess StartChild(const std::string& test, const std::string& path) {
  setenv(kChildFileVariable, path.c_str(), 1);  // NOLINT(concurrency-mt-unsafe): one thread
  return testing::ChildProcess({"/proc/self/exe", "--gtest_also_run_disabled_tests",
                                absl::StrCat("--gtest_filter=SqliteEventLogChild.", test)});
}

// Run only as a child: publishes one event after a pause.
TEST(SqliteEventLogChild, DISABLED_PublishOneLater) {
  const char* path = std::getenv(kChildFileVariable);  // NOLINT(concurrency-mt-unsafe)
  ASSERT_NE(path, nullptr);
  auto log = Open(path);
  ASSERT_NE(log, nullptr);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto publisher = log->NewPublisher();
  const std::vector<OutgoingEvent> events = {{"cross", "k", "from the child", {}}};
  ASSERT_TRUE((*publisher)->Publish(events, absl::Seconds(5)).ok());
}

TEST_F(SqliteEventLogTest, ABlockedPollWakesForAnotherProcesssCommit) {
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  CreateTopic(*log, "cross", 1);
  auto consumer = log->NewConsumer({"cross-reader", {"cross"}});
  ASSERT_TRUE(consumer.ok());
  testing::ChildProcess child = StartChild("DISABLED_PublishOneLater", Path());
  auto polled = (*consumer)->Poll(10, absl::Seconds(20));
  ASSERT_TRUE(polled.ok());
  ASSERT_THAT(*polled, SizeIs(1));
  EXPECT_EQ((*polled)[0].value, "from the child");
  const int status = child.Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// Run only as a child: publishes numbered events one at a time, writing the number of the
// last acknowledged one to a side file, until killed.
TEST(SqliteEventLogChild, DISABLED_PublishUntilKilled) {
  const char* path = std::getenv(kChildFileVariable);  // NOLINT(concurrency-mt-unsafe)
  ASSERT_NE(path, nullptr);
  auto log = Open(path);
  ASSERT_NE(log, nullptr);
  auto publisher = log->NewPublisher();
  const std::string acknowledged = absl::StrCat(path, ".acked");
  for (int i = 0;; ++i) {
    const std::vector<OutgoingEvent> events = {
        {"killed", absl::StrCat("k", i % 7), absl::StrCat(i), {}}};
    ASSERT_TRUE((*publisher)->Publish(events, absl::Seconds(5)).ok());
    // Replaced by a rename, so that a kill never leaves it empty or half written.
    std::ofstream(acknowledged + ".tmp", std::ios::trunc) << i << "\n";
    std::filesystem::rename(acknowledged + ".tmp", acknowledged);
  }
}

TEST_F(SqliteEventLogTest, AcknowledgedEventsSurviveKillNine) {
  {
    auto log = Open(Path());
    ASSERT_NE(log, nullptr);
    CreateTopic(*log, "killed", 3);
  }
  {
    testing::ChildProcess child = StartChild("DISABLED_PublishUntilKilled", Path());
    // Killed once it has had a few publishes acknowledged, however slowly it starts.
    const absl::Time give_up = absl::Now() + absl::Seconds(120);
    int acknowledged_so_far = -1;
    while (acknowledged_so_far < 10 && child.running() && absl::Now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      std::ifstream(Path() + ".acked") >> acknowledged_so_far;
    }
    ASSERT_TRUE(child.running());
    child.Signal(SIGKILL);
    child.Wait();
  }
  int last_acknowledged = -1;
  std::ifstream(Path() + ".acked") >> last_acknowledged;
  ASSERT_GE(last_acknowledged, 10) << "the child published too little to tell";
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  auto consumer = log->NewConsumer({"after-kill", {"killed"}});
  ASSERT_TRUE(consumer.ok());
  const auto events =
      PollAtLeast(**consumer, static_cast<size_t>(last_acknowledged) + 1, absl::Seconds(10));
  std::set<int> values;
  for (const auto& event : events) values.insert(std::stoi(event.value));
  for (int i = 0; i <= last_acknowledged; ++i) {
    ASSERT_TRUE(values.contains(i)) << "acknowledged event " << i << " is missing";
  }
}

// Copies every input to `output`; fails the first time it sees `fail_on`.
class CopyHandler : public BatchHandler {
 public:
  explicit CopyHandler(std::string output) : output_(std::move(output)) {}
  absl::Status HandleBatch(absl::Span<const ConsumedEvent> batch, BatchOutput& out) override {
    std::vector<std::string> values;
    for (const auto& event : batch) values.push_back(event.value);
    batches.push_back(values);
    for (const auto& event : batch) {
      if (!fail_on.empty() && event.value == fail_on) {
        fail_on.clear();
        return absl::InternalError("injected");
      }
      if (event.value.starts_with("bad")) {
        out.DeadLetter(event, "cannot decode");
      } else {
        out.Emit({output_, event.key, event.value, {{"copied", "yes"}}});
      }
    }
    copied += static_cast<int64_t>(batch.size());
    return absl::OkStatus();
  }

  std::string fail_on;
  std::vector<std::vector<std::string>> batches;  // as handed over, on the processor's thread
  std::atomic<int64_t> copied{0};

 private:
  std::string output_;
};

absl::Status RunUntil(ExactlyOnceProcessor& processor, const std::function<bool()>& done) {
  absl::Status result;
  std::thread runner([&] { result = processor.Run(); });
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (!done() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
  processor.Stop();
  runner.join();
  return result;
}

TEST_F(SqliteEventLogTest, AFailedBatchIsHandedOverAgainUnchangedAndNothingOfItIsPublished) {
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  CreateTopic(*log, "in", 2);
  CreateTopic(*log, "out", 2);
  auto publisher = log->NewPublisher();
  ASSERT_TRUE(publisher.ok());
  std::vector<OutgoingEvent> inputs;
  inputs.reserve(50);
  for (int i = 0; i < 50; ++i) {
    inputs.push_back({"in", absl::StrCat("k", i % 3), absl::StrCat(i), {}});
  }
  ASSERT_TRUE((*publisher)->Publish(inputs, absl::Seconds(5)).ok());

  CopyHandler handler("out");
  handler.fail_on = "20";
  ProcessorOptions options;
  options.group = "copier";
  options.input_topics = {"in"};
  options.max_batch_events = 10;
  options.retry_backoff = absl::Milliseconds(20);
  auto processor = log->NewProcessor(options, &handler);
  ASSERT_TRUE(processor.ok());
  const absl::Status result = RunUntil(**processor, [&] { return handler.copied >= 50; });
  ASSERT_TRUE(result.ok()) << result;

  // The batch that failed comes again, the same events in the same order.
  size_t failed = 0;
  for (; failed < handler.batches.size(); ++failed) {
    const auto& batch = handler.batches[failed];
    if (std::find(batch.begin(), batch.end(), "20") != batch.end()) break;
  }
  ASSERT_LT(failed + 1, handler.batches.size());
  EXPECT_EQ(handler.batches[failed], handler.batches[failed + 1]);
  const ProcessorCounters counters = (*processor)->Counters();
  EXPECT_EQ(counters.batches_aborted, 1);
  EXPECT_EQ(counters.events_consumed, 50);
  EXPECT_EQ(counters.events_produced, 50);

  const auto outputs = ReadAll(*log, "out", 50);
  std::multiset<std::string> values;
  for (const auto& event : outputs) {
    values.insert(event.value);
    EXPECT_EQ(event.partition, PartitionForKey(event.key, 2));
    EXPECT_EQ(event.Header("copied").value_or(""), "yes");
  }
  EXPECT_THAT(values, SizeIs(50));
  EXPECT_EQ(std::set<std::string>(values.begin(), values.end()).size(), 50u) << "a duplicate";
}

TEST_F(SqliteEventLogTest, DeadLettersCreateTheirTopicAndCarryTheReasonAndSource) {
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  CreateTopic(*log, "in", 1);
  CreateTopic(*log, "out", 1);
  auto publisher = log->NewPublisher();
  ASSERT_TRUE(publisher.ok());
  const std::vector<OutgoingEvent> inputs = {{"in", "a", "good", {}},
                                             {"in", "b", "bad-1", {{"ce_id", "7"}}}};
  ASSERT_TRUE((*publisher)->Publish(inputs, absl::Seconds(5)).ok());
  CopyHandler handler("out");
  auto processor = log->NewProcessor({"dlq", {"in"}}, &handler);
  ASSERT_TRUE(processor.ok());
  ASSERT_TRUE(RunUntil(**processor, [&] { return handler.copied >= 2; }).ok());
  EXPECT_EQ((*processor)->Counters().events_dead_lettered, 1);

  const auto dead = ReadAll(*log, std::string(kDeadLetterTopic), 1);
  ASSERT_THAT(dead, SizeIs(1));
  EXPECT_EQ(dead[0].key, "b");
  EXPECT_EQ(dead[0].value, "bad-1");
  EXPECT_EQ(dead[0].Header("ce_id").value_or(""), "7");
  EXPECT_EQ(dead[0].Header(kDeadLetterReasonHeader).value_or(""), "cannot decode");
  EXPECT_EQ(dead[0].Header(kDeadLetterSourceHeader).value_or(""), "in/0@1");
}

// Two processors of one group over the same file, from two handles: every input is copied
// exactly once, whoever holds which partition when.
TEST_F(SqliteEventLogTest, ProcessorsOfOneGroupNeverApplyABatchTwice) {
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  CreateTopic(*log, "in", 3);
  CreateTopic(*log, "out", 3);
  auto publisher = log->NewPublisher();
  ASSERT_TRUE(publisher.ok());
  std::vector<OutgoingEvent> inputs;
  inputs.reserve(3000);
  for (int i = 0; i < 3000; ++i) {
    inputs.push_back({"in", absl::StrCat("k", i % 13), absl::StrCat(i), {}});
  }
  ASSERT_TRUE((*publisher)->Publish(inputs, absl::Seconds(5)).ok());

  auto other_log = Open(Path());
  ASSERT_NE(other_log, nullptr);
  CopyHandler first_handler("out"), second_handler("out");
  ProcessorOptions options;
  options.group = "pair";
  options.input_topics = {"in"};
  options.max_batch_events = 50;
  options.instance_id = "a";
  auto first = log->NewProcessor(options, &first_handler);
  options.instance_id = "b";
  auto second = other_log->NewProcessor(options, &second_handler);
  ASSERT_TRUE(first.ok() && second.ok());
  absl::Status second_result;
  std::thread second_runner([&] { second_result = (*second)->Run(); });
  const absl::Status first_result = RunUntil(**first, [&] {
    return (*first)->Counters().events_consumed + (*second)->Counters().events_consumed >= 3000;
  });
  (*second)->Stop();
  second_runner.join();
  ASSERT_TRUE(first_result.ok()) << first_result;
  ASSERT_TRUE(second_result.ok()) << second_result;
  EXPECT_EQ((*first)->Counters().events_consumed + (*second)->Counters().events_consumed, 3000);
  // Three partitions, two members: both had a share.
  EXPECT_GT((*first)->Counters().events_consumed, 0);
  EXPECT_GT((*second)->Counters().events_consumed, 0);
  const auto outputs = ReadAll(*log, "out", 3000);
  std::set<std::string> values;
  for (const auto& event : outputs) values.insert(event.value);
  EXPECT_THAT(values, SizeIs(3000));
  EXPECT_THAT(outputs, SizeIs(3000));
}

// A second processor with the same instance id fences the first, as a Kafka transactional
// producer does.
TEST_F(SqliteEventLogTest, ANewInstanceWithTheSameIdFencesTheOld) {
  auto log = Open(Path());
  ASSERT_NE(log, nullptr);
  CreateTopic(*log, "in", 1);
  CreateTopic(*log, "out", 1);
  CopyHandler old_handler("out"), new_handler("out");
  ProcessorOptions options;
  options.group = "fenced";
  options.input_topics = {"in"};
  auto old_processor = log->NewProcessor(options, &old_handler);
  ASSERT_TRUE(old_processor.ok());
  absl::Status old_result;
  std::thread old_runner([&] { old_result = (*old_processor)->Run(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto new_processor = log->NewProcessor(options, &new_handler);
  ASSERT_TRUE(new_processor.ok());
  absl::Status new_result;
  std::thread new_runner([&] { new_result = (*new_processor)->Run(); });
  old_runner.join();  // returns by itself, fenced
  EXPECT_EQ(old_result.code(), absl::StatusCode::kFailedPrecondition) << old_result;
  (*new_processor)->Stop();
  new_runner.join();
  EXPECT_TRUE(new_result.ok()) << new_result;
}

}  // namespace
}  // namespace stip
