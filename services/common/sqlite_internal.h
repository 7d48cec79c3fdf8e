// Private to the SQLite backend (sqlite_*.cc): the state every handle on one file in this
// process shares (SharedFile), its write transactions, the appender, the read side of a
// connection, group membership and the pieces the publisher, the consumer and the processor
// share. How the backend keeps the contract of event_log.h is described at the top of
// sqlite_event_log.cc. Nothing outside services/common/sqlite_*.cc includes this header.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "services/common/event_log.h"
#include "services/common/metrics.h"
#include "services/common/sqlite_db.h"
#include "services/common/status_macros.h"

namespace stip::sqlite {

// How often a waiting reader looks for commits made by other processes.
inline constexpr absl::Duration kCrossProcessPollInterval = absl::Milliseconds(20);
// A member whose heartbeat is older than this is removed from its group.
inline constexpr absl::Duration kSessionTimeout = absl::Seconds(15);
inline constexpr absl::Duration kHeartbeatInterval = absl::Seconds(1);
// While waiting for a rebalance, how often the members' processes are checked for life.
inline constexpr absl::Duration kLivenessInterval = absl::Milliseconds(200);
inline constexpr absl::Duration kLagInterval = absl::Seconds(1);
// Heartbeats and acknowledgements wait at most this for the write lock, so that a Poll is
// not held up behind a long transaction: they are tried again at the next Poll.
inline constexpr absl::Duration kMembershipLockWait = absl::Milliseconds(250);
inline constexpr absl::Duration kMaxRetryBackoff = absl::Seconds(30);
// One group-commit transaction takes at most this much; the rest waits for the next.
inline constexpr size_t kMaxGroupEvents = 50'000;
inline constexpr size_t kMaxGroupBytes = 64 << 20;
inline constexpr int32_t kMaxPartitions = 100'000;

// --- Headers (sqlite_shared_file.cc) -------------------------------------------------------

void EncodeHeaders(const EventHeaders& headers, std::string& out);
bool DecodeHeaders(std::string_view in, EventHeaders& headers);

// --- Metrics (sqlite_shared_file.cc) -------------------------------------------------------

void CountByTopic(prometheus::Family<prometheus::Counter>& family,
                  const std::map<std::string, int64_t>& counts);
void SetLag(const std::string& group, const TopicPartition& tp, int64_t lag);

// --- The state every handle on one file in this process shares ----------------------------

class SharedFile;

// Appends events to partitions inside the caller's open write transaction.
class EventAppender {
 public:
  static absl::StatusOr<std::unique_ptr<EventAppender>> Create(SqliteDb& db, SharedFile& shared);

  // Forgets the next offsets read in an earlier transaction. Call after BEGIN.
  void StartTransaction() { in_transaction_.clear(); }

  // The partition count of `topic`; nullopt for an unknown topic.
  absl::StatusOr<std::optional<int32_t>> Partitions(const std::string& topic);

  // kInvalidArgument naming the first topic among `events` that does not exist.
  absl::Status CheckTopics(absl::Span<const OutgoingEvent> events);

  // Appends one event whose topic CheckTopics accepted. Returns its partition.
  absl::StatusOr<int32_t> Append(const OutgoingEvent& event, int64_t timestamp_us);

  // Creates `topic` unless it exists, and starts a rebalance of the groups that wait for it.
  absl::StatusOr<bool> CreateTopic(const std::string& topic, int32_t partitions);

 private:
  EventAppender(SqliteDb& db, SharedFile& shared) : db_(db), shared_(shared) {}

  SqliteDb& db_;
  SharedFile& shared_;
  SqliteStatement insert_event_, max_offset_, select_topic_, insert_topic_, bump_subscribers_;
  // The topics written in this transaction: per partition, the next offset (-1: not read
  // yet). Looked up by the event's topic without building a key per event.
  struct TopicOffsets {
    int32_t partitions = 0;
    std::vector<int64_t> next;
  };
  std::map<std::string, TopicOffsets, std::less<>> in_transaction_;
  std::string headers_;
};

class SharedFile {
 public:
  static absl::StatusOr<std::shared_ptr<SharedFile>> Get(const std::string& path,
                                                         const EventLogOptions& options);
  ~SharedFile() = default;

  const std::string& path() const { return path_; }
  absl::Duration busy_timeout() const { return busy_timeout_; }

  // A new connection to the file, set up as every connection of this backend is.
  absl::StatusOr<std::unique_ptr<SqliteDb>> Connect() const;

  // --- Commit notification
  uint64_t sequence() {
    std::lock_guard<std::mutex> lock(notify_mutex_);
    return sequence_;
  }
  void NotifyCommitted() {
    std::lock_guard<std::mutex> lock(notify_mutex_);
    ++sequence_;
    notify_.notify_all();
  }
  // Wakes every waiter without a commit (a processor's Stop).
  void WakeAll() {
    std::lock_guard<std::mutex> lock(notify_mutex_);
    notify_.notify_all();
  }
  // Waits until a commit after `seen`, a wake-up, or `deadline`. True after a commit.
  bool WaitForCommit(uint64_t seen, absl::Time deadline) {
    std::unique_lock<std::mutex> lock(notify_mutex_);
    if (sequence_ == seen) notify_.wait_until(lock, absl::ToChronoTime(deadline));
    return sequence_ != seen;
  }

  // --- This process's write token, taken before BEGIN IMMEDIATE
  bool LockWriter(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(writer_mutex_);
    if (!writer_free_.wait_until(lock, absl::ToChronoTime(absl::Now() + timeout),
                                 [this] { return !writer_busy_; })) {
      return false;
    }
    writer_busy_ = true;
    return true;
  }
  void UnlockWriter() {
    {
      std::lock_guard<std::mutex> lock(writer_mutex_);
      writer_busy_ = false;
    }
    writer_free_.notify_one();
  }

  // --- Partition counts, which never change once a topic exists
  std::optional<int32_t> CachedPartitions(const std::string& topic) {
    std::lock_guard<std::mutex> lock(topics_mutex_);
    auto found = partitions_.find(topic);
    if (found == partitions_.end()) return std::nullopt;
    return found->second;
  }
  void CachePartitions(const std::string& topic, int32_t partitions) {
    std::lock_guard<std::mutex> lock(topics_mutex_);
    partitions_[topic] = partitions;
  }

  absl::Status Publish(absl::Span<const OutgoingEvent> events, absl::Duration timeout);
  absl::Status EnsureTopics(absl::Span<const TopicSpec> topics);

 private:
  struct PublishRequest {
    absl::Span<const OutgoingEvent> events;
    absl::Time deadline;
    size_t bytes = 0;
    bool done = false;
    absl::Status status;
  };

  SharedFile(std::string path, absl::Duration busy_timeout)
      : path_(std::move(path)), busy_timeout_(busy_timeout) {}

  // The leader's work: one transaction for every request of `group`.
  void WriteGroup(const std::vector<PublishRequest*>& group);

  const std::string path_;
  const absl::Duration busy_timeout_;

  // std:: rather than absl:: synchronization: ThreadSanitizer sees through it (Debian's
  // Abseil is not built for it), and the tests run under it.
  std::mutex notify_mutex_;
  std::condition_variable notify_;
  uint64_t sequence_ ABSL_GUARDED_BY(notify_mutex_) = 0;

  // The write token: a flag rather than a std::timed_mutex, whose timed lock
  // ThreadSanitizer does not see.
  std::mutex writer_mutex_;
  std::condition_variable writer_free_;
  bool writer_busy_ ABSL_GUARDED_BY(writer_mutex_) = false;

  std::mutex topics_mutex_;
  std::map<std::string, int32_t> partitions_ ABSL_GUARDED_BY(topics_mutex_);

  std::mutex queue_mutex_;
  std::condition_variable queue_changed_;
  std::deque<PublishRequest*> queue_ ABSL_GUARDED_BY(queue_mutex_);
  bool leader_active_ ABSL_GUARDED_BY(queue_mutex_) = false;

  // Used only while holding the write token: by the publish leader and EnsureTopics.
  std::unique_ptr<SqliteDb> db_;
  std::unique_ptr<EventAppender> appender_;
};

// A write transaction of this process: the write token, then BEGIN IMMEDIATE. Rolls back
// unless committed; notifies waiting readers after a commit.
class WriteTransaction {
 public:
  WriteTransaction(SharedFile& shared, SqliteDb& db) : shared_(shared), db_(db) {}
  ~WriteTransaction() { End(); }
  WriteTransaction(const WriteTransaction&) = delete;
  WriteTransaction& operator=(const WriteTransaction&) = delete;

  absl::Status Begin() { return Begin(shared_.busy_timeout()); }
  // Waits up to `timeout` for this process's other writers, then as long again for other
  // processes' (SQLite's busy timeout, for this BEGIN only).
  absl::Status Begin(absl::Duration timeout) {
    if (!shared_.LockWriter(timeout)) {
      return absl::UnavailableError(absl::StrCat("SQLite file ", shared_.path(),
                                                 ": this process's other writers held it for ",
                                                 absl::FormatDuration(timeout)));
    }
    locked_ = true;
    const bool own_timeout = timeout != shared_.busy_timeout();
    if (own_timeout) SetBusyTimeout(timeout);
    absl::StatusOr<SqliteTransaction> transaction = SqliteTransaction::Immediate(db_);
    if (own_timeout) SetBusyTimeout(shared_.busy_timeout());
    if (!transaction.ok()) {
      End();
      return transaction.status();
    }
    transaction_.emplace(std::move(*transaction));
    return absl::OkStatus();
  }

  absl::Status Commit() {
    absl::Status status = transaction_->Commit();
    transaction_.reset();
    End();
    if (status.ok()) shared_.NotifyCommitted();
    return status;
  }

  void Rollback() { End(); }

 private:
  void SetBusyTimeout(absl::Duration timeout) {
    sqlite3_busy_timeout(
        db_.handle(), static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(timeout))));
  }

  void End() {
    transaction_.reset();  // rolls back if still open
    if (locked_) shared_.UnlockWriter();
    locked_ = false;
  }

  SharedFile& shared_;
  SqliteDb& db_;
  std::optional<SqliteTransaction> transaction_;
  bool locked_ = false;
};

// --- Reading (WaitForChange: sqlite_shared_file.cc) ----------------------------------------

// The read side of one connection: events, offsets, and the data version.
class EventReader {
 public:
  static absl::StatusOr<std::unique_ptr<EventReader>> Create(SqliteDb& db) {
    std::unique_ptr<EventReader> reader(new EventReader(db));
    STIP_ASSIGN_OR_RETURN(
        reader->read_,
        db.Prepare("SELECT offset, key, value, headers, timestamp_us FROM eventlog_events "
                   "WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?"));
    STIP_ASSIGN_OR_RETURN(reader->bounds_,
                          db.Prepare("SELECT MIN(offset), MAX(offset) FROM eventlog_events "
                                     "WHERE topic = ? AND partition = ?"));
    STIP_ASSIGN_OR_RETURN(reader->committed_,
                          db.Prepare("SELECT next_offset FROM eventlog_group_offsets "
                                     "WHERE group_id = ? AND topic = ? AND partition = ?"));
    STIP_ASSIGN_OR_RETURN(
        reader->commit_,
        db.Prepare("INSERT INTO eventlog_group_offsets (group_id, topic, partition, next_offset) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT (group_id, topic, partition) "
                   "DO UPDATE SET next_offset = excluded.next_offset"));
    STIP_ASSIGN_OR_RETURN(reader->data_version_, db.Prepare("PRAGMA data_version"));
    return reader;
  }

  // Appends up to `limit` events of `tp` from `from` on to `out`; returns the offset after
  // the last one read (`from` when none).
  absl::StatusOr<int64_t> Read(const TopicPartition& tp, int64_t from, size_t limit,
                               std::vector<ConsumedEvent>& out) {
    SqliteResetter reset(read_);
    read_.BindText(1, tp.topic);
    read_.BindInt64(2, tp.partition);
    read_.BindInt64(3, from);
    read_.BindInt64(4, static_cast<int64_t>(limit));
    int64_t next = from;
    while (true) {
      STIP_ASSIGN_OR_RETURN(bool row, read_.Step());
      if (!row) break;
      ConsumedEvent& event = out.emplace_back();
      event.topic = tp.topic;
      event.partition = tp.partition;
      event.offset = read_.ColumnInt64(0);
      event.key = std::string(read_.ColumnBlob(1));
      event.value = std::string(read_.ColumnBlob(2));
      if (!DecodeHeaders(read_.ColumnBlob(3), event.headers)) {
        return absl::DataLossError(absl::StrCat("SQLite file ", db_.path(), ": the headers of ",
                                                event.Position(), " are malformed"));
      }
      event.timestamp = absl::FromUnixMicros(read_.ColumnInt64(4));
      next = event.offset + 1;
    }
    return next;
  }

  // The first offset of `tp` and the offset after its last (both 0 when empty).
  absl::StatusOr<std::pair<int64_t, int64_t>> Bounds(const TopicPartition& tp) {
    SqliteResetter reset(bounds_);
    bounds_.BindText(1, tp.topic);
    bounds_.BindInt64(2, tp.partition);
    STIP_ASSIGN_OR_RETURN(bool row, bounds_.Step());
    if (!row || bounds_.ColumnIsNull(1)) return std::make_pair(int64_t{0}, int64_t{0});
    return std::make_pair(bounds_.ColumnInt64(0), bounds_.ColumnInt64(1) + 1);
  }

  absl::StatusOr<std::optional<int64_t>> Committed(const std::string& group,
                                                   const TopicPartition& tp) {
    SqliteResetter reset(committed_);
    committed_.BindText(1, group);
    committed_.BindText(2, tp.topic);
    committed_.BindInt64(3, tp.partition);
    STIP_ASSIGN_OR_RETURN(bool row, committed_.Step());
    if (!row) return std::optional<int64_t>();
    return std::optional<int64_t>(committed_.ColumnInt64(0));
  }

  // Inside the caller's write transaction.
  absl::Status Commit(const std::string& group, const TopicPartition& tp, int64_t next_offset) {
    commit_.BindText(1, group);
    commit_.BindText(2, tp.topic);
    commit_.BindInt64(3, tp.partition);
    commit_.BindInt64(4, next_offset);
    return commit_.Run();
  }

  // Changes whenever another connection, of any process, has committed.
  absl::StatusOr<int64_t> DataVersion() {
    SqliteResetter reset(data_version_);
    STIP_ASSIGN_OR_RETURN(bool row, data_version_.Step());
    return row ? data_version_.ColumnInt64(0) : 0;
  }

 private:
  explicit EventReader(SqliteDb& db) : db_(db) {}
  SqliteDb& db_;
  SqliteStatement read_, bounds_, committed_, commit_, data_version_;
};

// Waits until this process commits, another connection commits (seen through
// `reader`'s data version, checked every 20 ms), `stop` is set, or `until`.
absl::Status WaitForChange(SharedFile& shared, EventReader& reader, uint64_t sequence,
                           int64_t data_version, absl::Time until,
                           const std::atomic<bool>* stop = nullptr);

// --- Group membership (sqlite_group.cc) ----------------------------------------------------

// A random non-negative id (a member's incarnation).
int64_t RandomId();

// One member of a consumer group: its row in eventlog_members and the eager rebalance
// protocol described at the top of sqlite_event_log.cc. Driven by its owner's thread only.
class GroupMember {
 public:
  enum class Change { kNone, kRevoked, kAssigned };

  static absl::StatusOr<std::unique_ptr<GroupMember>> Create(SharedFile& shared, SqliteDb& db,
                                                             std::string group,
                                                             std::string member_id,
                                                             std::vector<std::string> topics);

  // Enters the group (replacing a row of the same member id: the fencing of a previous
  // instance) and starts a rebalance.
  absl::Status Join() {
    incarnation_ = RandomId();
    generation_ = -1;
    active_ = false;
    assignment_.clear();
    return WriteMembership(/*join=*/true, shared_.busy_timeout());
  }

  // Heartbeats, removes dead members, follows the group's generation. kRevoked: the
  // assignment was dropped (positions must be forgotten); kAssigned: assignment() is new.
  // kFailedPrecondition when a newer instance with the same member id fenced this one.
  absl::StatusOr<Change> Sync();

  // Leaves the group: other members take its partitions.
  absl::Status Leave(absl::Duration timeout);

  // Inside the caller's write transaction: OK while this member is in the group as itself;
  // kAborted when it was removed (missed heartbeats); kFailedPrecondition when fenced.
  absl::Status CheckMembership();

  bool active() const { return active_; }
  const std::vector<TopicPartition>& assignment() const { return assignment_; }
  const std::string& group() const { return group_; }
  // When Sync has timed work to do (a heartbeat, a liveness check) even if nothing changed.
  absl::Time next_timer() const {
    return active_ ? next_heartbeat_ : std::min(next_heartbeat_, next_liveness_check_);
  }

 private:
  struct Member {
    std::string id;
    int64_t incarnation = 0;
    std::set<std::string> topics;
    int64_t heartbeat_us = 0;
    std::string host;
    int64_t pid = 0;
    int64_t pid_start = 0;
    int64_t acked_generation = 0;
  };

  GroupMember(SharedFile& shared, SqliteDb& db, std::string group, std::string member_id,
              std::vector<std::string> topics)
      : shared_(shared),
        db_(db),
        group_(std::move(group)),
        member_id_(std::move(member_id)),
        topics_(std::move(topics)) {}

  absl::StatusOr<std::vector<Member>> ReadMembers();
  bool Dead(const Member& member, int64_t now_us) const;
  // Join (upsert the row) or heartbeat, and remove dead members; bumps the generation when
  // membership changed. Its own write transaction.
  absl::Status WriteMembership(bool join, absl::Duration lock_wait);
  absl::Status BumpGeneration();
  std::vector<TopicPartition> ComputeAssignment(const std::vector<Member>& members,
                                                const std::map<std::string, int32_t>& topics);
  absl::Status Fenced() const {
    return absl::FailedPreconditionError(absl::StrCat(
        "member '", member_id_, "' of group '", group_, "' in SQLite file ", shared_.path(),
        " was fenced: a newer instance with the same id joined the group"));
  }

  SharedFile& shared_;
  SqliteDb& db_;
  const std::string group_;
  const std::string member_id_;
  const std::vector<std::string> topics_;  // sorted, unique
  std::unique_ptr<EventReader> reader_;
  SqliteStatement select_members_, select_self_, upsert_self_, heartbeat_, delete_member_,
      bump_generation_, select_generation_, ack_, select_partitions_;

  int64_t incarnation_ = 0;
  int64_t generation_ = -1;  // the generation whose assignment this member follows
  bool active_ = false;
  std::vector<TopicPartition> target_;      // this member's share in generation_
  std::vector<TopicPartition> assignment_;  // target_, once everyone acknowledged generation_
  absl::Time next_heartbeat_ = absl::InfinitePast();
  absl::Time next_liveness_check_ = absl::InfinitePast();
  int64_t seen_data_version_ = -1;
  bool dirty_ = true;  // read the group again even if the data version did not change
};

// Follows the group until nothing changes; `on_change` sees each change.
template <typename OnChange>
absl::Status FollowGroup(GroupMember& member, OnChange on_change) {
  for (int round = 0; round < 8; ++round) {
    STIP_ASSIGN_OR_RETURN(GroupMember::Change change, member.Sync());
    if (change == GroupMember::Change::kNone) return absl::OkStatus();
    STIP_RETURN_IF_ERROR(on_change(change));
  }
  return absl::OkStatus();
}

std::string NewMemberId(const std::string& kind);

// --- The parts of the backend (one file each) ----------------------------------------------

// sqlite_shared_file.cc
// `max_event_bytes`: EventLogOptions::max_event_bytes of the log that makes it (a per-handle
// setting: handles on one file may differ).
std::unique_ptr<EventPublisher> NewPublisher(std::shared_ptr<SharedFile> shared,
                                             size_t max_event_bytes);
// sqlite_consumer.cc
absl::StatusOr<std::unique_ptr<EventConsumer>> NewConsumer(std::shared_ptr<SharedFile> shared,
                                                           const ConsumerOptions& options);
// sqlite_processor.cc
absl::StatusOr<std::unique_ptr<ExactlyOnceProcessor>> NewProcessor(
    std::shared_ptr<SharedFile> shared, const ProcessorOptions& options, BatchHandler* handler,
    size_t max_event_bytes);

}  // namespace stip::sqlite
