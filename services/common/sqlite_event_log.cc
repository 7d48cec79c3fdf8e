// The SQLite backend of the event log (the embedded mode): topics, partitions, offsets,
// consumer groups and their members are tables of one SQLite file, so that one SQLite
// transaction covers a processor's consume, produce and offsets. See event_log.h for the
// contract; what follows is how this backend keeps it.
//
// Durability. WAL with synchronous=FULL: the WAL is fsynced before COMMIT returns, and
// Publish returns only after COMMIT, so an acknowledged event survives kill -9 and power
// loss. Every write is BEGIN IMMEDIATE (the write lock up front, never a failed upgrade
// from a read); a lock not obtained within the busy timeout (EventLogOptions::
// publish_timeout) is kUnavailable, a damaged file kDataLoss, each naming the file.
//
// Per-process sharing. Every handle opened on one file in this process shares one
// SharedFile (a process-wide map keyed by the file's canonical path): the group-commit
// queue, a write token that serializes this process's writers before SQLite's lock (so
// they queue on a mutex rather than in SQLite's sleeping busy handler; other processes
// still meet at SQLite's lock) and a condition variable notified after every commit. The
// first handle's EventLogOptions set the shared publish connection's busy timeout.
//
// Group commit. Publish is thread-safe and leader-follower: a caller queues its request;
// whoever finds no leader becomes one, takes every queued request (up to a cap), writes
// them in one transaction, and wakes the others with their own results. Each request is
// all-or-nothing (its topics are checked before any of it is written). A caller whose
// timeout passes while its request still waits in the queue takes it out and gets
// kUnavailable: nothing of it is written later. Once taken, it waits for the outcome; the
// leader waits for the write lock as long as the most patient caller of its group allows.
//
// Offsets. Per partition from 0, contiguous: the next offset is MAX(offset)+1 read inside
// the write transaction, so writers in several processes never collide.
//
// Memory. Nothing is read whole: a Poll reads at most max_events rows, a processor batch at
// most max_batch_events, with a LIMIT on an index range; connections keep SQLite's default
// page cache (2 MiB). Resident memory stays flat however long the topics grow.
//
// Waking readers. A Poll with nothing to read waits on the SharedFile's condition variable
// (woken by this process's commits) in 20 ms slices, and after each slice compares the
// connection's PRAGMA data_version, which changes when any other connection, in any
// process, has committed. In-process wake-ups are immediate, cross-process ones <= 20 ms.
//
// Consumer groups: an eager rebalance protocol over two tables. eventlog_members holds a
// row per live member (heartbeat time, process identity, subscribed topics, the group
// generation it has acknowledged); eventlog_groups a generation per group, bumped in the
// same transaction as every membership change (join, leave, expiry) and whenever a topic is
// created that a member subscribes to. Every member computes the same assignment from the
// same snapshot (members sorted by id, partitions sorted, round robin among the members
// subscribed to each topic). On a new generation a member drops its partitions and
// positions, then acknowledges the generation; it starts its new partitions, from the
// committed offsets, only when every member has acknowledged it. So no two members of one
// generation read the same partition, and a member leaves or loses partitions only at a
// Poll, after the Commit its caller made for the previous Poll: a consumer that commits
// after each Poll sees nothing twice across a rebalance.
//   Members heartbeat from Poll (and a processor's loop) every second; a member silent for
// kSessionTimeout is removed by the others. A member whose process has died (same boot
// and pid namespace, and its pid gone, a zombie or reused) is removed within ~200 ms by a
// member waiting for the rebalance, so a crashed process never holds a group up for long.
// A removed member that comes back finds its row gone, drops everything and joins again;
// its Commit in the meantime fails with kAborted (its events are redelivered). Caveat: a
// consumer that does not Poll for kSessionTimeout is removed, like Kafka's
// max.poll.interval.ms.
//
// Processors. Member id "processor/<instance_id>": a new instance replaces its
// predecessor's row (a new incarnation), and the predecessor's next step finds itself
// fenced, so its Run returns kFailedPrecondition, as a fenced Kafka producer does. Each
// batch is read from the group's committed offsets; then, in ONE write transaction, the
// committed offsets are checked to be still those the batch started from (if not, another
// member has progressed: the batch is dropped and read again), the handler runs, its
// outputs and dead letters are appended and the offsets advanced. Whatever the
// membership does, no input is applied twice: the offset check inside the write lock
// guarantees it. The handler runs inside the transaction and holds this file's write lock
// meanwhile: it must not Publish to the same file (that fails after the busy timeout).
//
// Where each part lives (sqlite_internal.h declares what they share):
//   sqlite_shared_file.cc: the per-process SharedFile, the schema, write transactions, the
//     appender, publishing with group commit, waking readers, headers and metrics.
//   sqlite_group.cc: consumer group membership and the process identity behind liveness.
//   sqlite_consumer.cc: the consumer. sqlite_processor.cc: the exactly-once processor.
//   This file: the backend (SqliteEventLog) and OpenSqliteEventLog.
#include "services/common/sqlite_event_log.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/common/sqlite_internal.h"

namespace stip {
namespace {

using sqlite::SharedFile;

// --- The backend --------------------------------------------------------------------------

class SqliteEventLog : public EventLog {
 public:
  SqliteEventLog(std::shared_ptr<SharedFile> shared, size_t max_event_bytes)
      : shared_(std::move(shared)), max_event_bytes_(max_event_bytes) {}

  absl::Status EnsureTopics(absl::Span<const TopicSpec> topics) override {
    return shared_->EnsureTopics(topics);
  }
  // A fresh read-only connection reads the schema: the file is there and readable.
  absl::Status CheckReachable(absl::Duration timeout) override {
    STIP_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(shared_->path(), timeout));
    return db->Exec("SELECT COUNT(*) FROM sqlite_master");
  }
  absl::StatusOr<std::unique_ptr<EventPublisher>> NewPublisher() override {
    return sqlite::NewPublisher(shared_, max_event_bytes_);
  }
  absl::StatusOr<std::unique_ptr<EventConsumer>> NewConsumer(
      const ConsumerOptions& options) override {
    return sqlite::NewConsumer(shared_, options);
  }
  absl::StatusOr<std::unique_ptr<ExactlyOnceProcessor>> NewProcessor(
      const ProcessorOptions& options, BatchHandler* handler) override {
    return sqlite::NewProcessor(shared_, options, handler, max_event_bytes_);
  }

 private:
  std::shared_ptr<SharedFile> shared_;
  const size_t max_event_bytes_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<EventLog>> OpenSqliteEventLog(const std::string& path,
                                                             const EventLogOptions& options) {
  STIP_ASSIGN_OR_RETURN(std::shared_ptr<SharedFile> shared, SharedFile::Get(path, options));
  return std::unique_ptr<EventLog>(new SqliteEventLog(std::move(shared), options.max_event_bytes));
}

}  // namespace stip
