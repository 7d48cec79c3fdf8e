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
#include "services/common/sqlite_event_log.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/metrics.h"
#include "services/common/sqlite_db.h"
#include "spdlog/spdlog.h"
#include <sys/types.h>

// Early returns for absl::Status and absl::StatusOr, local to this file.
#define STIP_RETURN_IF_ERROR(expr)                                    \
  do {                                                                \
    if (absl::Status _status = (expr); !_status.ok()) return _status; \
  } while (0)
#define STIP_CONCAT_INNER(a, b) a##b
#define STIP_CONCAT(a, b) STIP_CONCAT_INNER(a, b)
// `lhs` may be a declaration ("Type name"), so it cannot be parenthesized.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define STIP_ASSIGN_OR_RETURN(lhs, expr) \
  STIP_ASSIGN_OR_RETURN_IMPL(STIP_CONCAT(_statusor_, __LINE__), lhs, expr)
#define STIP_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                               \
  if (!statusor.ok()) return statusor.status();         \
  lhs = std::move(*statusor)
// NOLINTEND(bugprone-macro-parentheses)

namespace stip {
namespace {

constexpr int64_t kSchemaVersion = 1;

// How often a waiting reader looks for commits made by other processes.
constexpr absl::Duration kCrossProcessPollInterval = absl::Milliseconds(20);
// A member whose heartbeat is older than this is removed from its group.
constexpr absl::Duration kSessionTimeout = absl::Seconds(15);
constexpr absl::Duration kHeartbeatInterval = absl::Seconds(1);
// While waiting for a rebalance, how often the members' processes are checked for life.
constexpr absl::Duration kLivenessInterval = absl::Milliseconds(200);
constexpr absl::Duration kLagInterval = absl::Seconds(1);
// Heartbeats and acknowledgements wait at most this for the write lock, so that a Poll is
// not held up behind a long transaction: they are tried again at the next Poll.
constexpr absl::Duration kMembershipLockWait = absl::Milliseconds(250);
constexpr absl::Duration kMaxRetryBackoff = absl::Seconds(30);
// One group-commit transaction takes at most this much; the rest waits for the next.
constexpr size_t kMaxGroupEvents = 50'000;
constexpr size_t kMaxGroupBytes = 64 << 20;
constexpr int32_t kMaxPartitions = 100'000;

// Table names start with eventlog_: the registry store lives in the same file.
//   events: WITHOUT ROWID, clustered on (topic, partition, offset), so a partition is read
//   in offset order from one b-tree range, without a second lookup per row.
//   headers: the header list, length-prefixed (see EncodeHeaders).
//   members.topics: the subscribed topics, one per line.
constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS eventlog_topics (
  name TEXT NOT NULL PRIMARY KEY,
  partitions INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS eventlog_events (
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  key BLOB NOT NULL,
  value BLOB NOT NULL,
  headers BLOB NOT NULL,
  timestamp_us INTEGER NOT NULL,
  PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS eventlog_group_offsets (
  group_id TEXT NOT NULL,
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  next_offset INTEGER NOT NULL,
  PRIMARY KEY (group_id, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS eventlog_groups (
  group_id TEXT NOT NULL PRIMARY KEY,
  generation INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS eventlog_members (
  group_id TEXT NOT NULL,
  member_id TEXT NOT NULL,
  incarnation INTEGER NOT NULL,
  topics TEXT NOT NULL,
  heartbeat_us INTEGER NOT NULL,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  pid_start INTEGER NOT NULL,
  acked_generation INTEGER NOT NULL,
  PRIMARY KEY (group_id, member_id)
) WITHOUT ROWID;
)sql";

// --- Process identity, to tell whether another member's process is still alive ----------

struct ProcessIdentity {
  // Boot id and pid namespace: pids of two processes are comparable only when these match.
  std::string host;
  int64_t pid = 0;
  int64_t start = 0;  // start time in clock ticks since boot: tells a reused pid apart
};

std::string ReadFirstLine(const std::string& path) {
  std::ifstream file(path);
  std::string line;
  std::getline(file, line);
  return line;
}

// State letter and start time of `pid` from /proc/<pid>/stat; nullopt when it is gone.
std::optional<std::pair<char, int64_t>> ReadProcessStat(int64_t pid) {
  const std::string stat = ReadFirstLine(absl::StrCat("/proc/", pid, "/stat"));
  const size_t comm_end = stat.rfind(')');  // the command may hold spaces and parentheses
  if (comm_end == std::string::npos) return std::nullopt;
  std::vector<std::string> fields =
      absl::StrSplit(stat.substr(comm_end + 1), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state) of proc(5), fields[19] field 22 (starttime).
  if (fields.size() < 20 || fields[0].empty()) return std::nullopt;
  return std::make_pair(fields[0][0],
                        static_cast<int64_t>(std::strtoll(fields[19].c_str(), nullptr, 10)));
}

const ProcessIdentity& Self() {
  static const ProcessIdentity* self = [] {
    auto* identity = new ProcessIdentity;
    identity->pid = getpid();
    std::error_code error;
    const std::string boot = ReadFirstLine("/proc/sys/kernel/random/boot_id");
    const auto pid_namespace = std::filesystem::read_symlink("/proc/self/ns/pid", error);
    if (!boot.empty() && !error) identity->host = absl::StrCat(boot, "/", pid_namespace.string());
    if (auto stat = ReadProcessStat(identity->pid)) identity->start = stat->second;
    return identity;
  }();
  return *self;
}

// True only when `pid` on `host` is certainly no longer the process that wrote the row.
bool ProcessGone(std::string_view host, int64_t pid, int64_t start) {
  const ProcessIdentity& self = Self();
  if (self.host.empty() || host != self.host || pid == self.pid) return false;
  const auto stat = ReadProcessStat(pid);
  if (!stat) return kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
  return stat->first == 'Z' || stat->first == 'X' || stat->second != start;
}

int64_t RandomId() {
  static std::mutex mutex;
  static std::mt19937_64 random(std::random_device{}() ^ static_cast<uint64_t>(getpid()));
  std::lock_guard<std::mutex> lock(mutex);
  return static_cast<int64_t>(random() >> 1);
}

// --- Headers: u32 little-endian length, bytes, for each name and value in turn ----------

void AppendLength(std::string& out, size_t length) {
  const auto value = static_cast<uint32_t>(length);
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<char>(value >> shift));
}

void EncodeHeaders(const EventHeaders& headers, std::string& out) {
  out.clear();
  for (const auto& [name, value] : headers) {
    AppendLength(out, name.size());
    out.append(name);
    AppendLength(out, value.size());
    out.append(value);
  }
}

bool ReadLengthPrefixed(std::string_view& in, std::string& out) {
  if (in.size() < 4) return false;
  uint32_t length = 0;
  for (int i = 0; i < 4; ++i) {
    length |= static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  }
  in.remove_prefix(4);
  if (in.size() < length) return false;
  out.assign(in.data(), length);
  in.remove_prefix(length);
  return true;
}

bool DecodeHeaders(std::string_view in, EventHeaders& headers) {
  headers.clear();
  while (!in.empty()) {
    std::string name, value;
    if (!ReadLengthPrefixed(in, name) || !ReadLengthPrefixed(in, value)) return false;
    headers.emplace_back(std::move(name), std::move(value));
  }
  return true;
}

// --- Metrics ----------------------------------------------------------------------------

prometheus::Histogram& PublishSeconds() {
  static prometheus::Histogram* histogram = &GetEventLogMetrics().publish_seconds.Add(
      {{"backend", "sqlite"}},
      prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                              0.25, 0.5, 1, 2.5, 5, 10});
  return *histogram;
}

void CountByTopic(prometheus::Family<prometheus::Counter>& family,
                  const std::map<std::string, int64_t>& counts) {
  for (const auto& [topic, count] : counts) {
    family.Add({{"topic", topic}}).Increment(static_cast<double>(count));
  }
}

void SetLag(const std::string& group, const TopicPartition& tp, int64_t lag) {
  GetEventLogMetrics()
      .consumer_lag
      .Add({{"group", group}, {"topic", tp.topic}, {"partition", std::to_string(tp.partition)}})
      .Set(static_cast<double>(lag));
}

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

// Every SharedFile of the process by canonical path; never destroyed (used at exit).
std::mutex& FilesMutex() {
  static auto* mutex = new std::mutex;
  return *mutex;
}
std::map<std::string, std::weak_ptr<SharedFile>>& Files() {
  static auto* files = new std::map<std::string, std::weak_ptr<SharedFile>>;
  return *files;
}

absl::StatusOr<std::unique_ptr<SqliteDb>> SharedFile::Connect() const {
  STIP_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(path_, busy_timeout_));
  // FULL: the WAL is synced at every commit, so a COMMIT that returned survives power loss
  // (NORMAL, the usual WAL setting, may lose the last commits).
  STIP_RETURN_IF_ERROR(
      db->Exec("PRAGMA synchronous = FULL; PRAGMA journal_size_limit = 67108864;"));
  return db;
}

absl::StatusOr<std::shared_ptr<SharedFile>> SharedFile::Get(const std::string& path,
                                                            const EventLogOptions& options) {
  std::error_code error;
  std::string key = std::filesystem::weakly_canonical(path, error).string();
  if (error) key = path;
  std::lock_guard<std::mutex> lock(FilesMutex());
  if (auto existing = Files()[key].lock()) return existing;

  std::shared_ptr<SharedFile> file(new SharedFile(path, options.publish_timeout));
  STIP_ASSIGN_OR_RETURN(file->db_, file->Connect());
  SqliteDb& db = *file->db_;
  // Persistent in the file. Fails with SQLITE_NOTADB (kDataLoss) on a file that is not a
  // database, which is why it comes first.
  {
    STIP_ASSIGN_OR_RETURN(SqliteStatement journal, db.Prepare("PRAGMA journal_mode = WAL"));
    SqliteResetter reset(journal);
    STIP_ASSIGN_OR_RETURN(bool row, journal.Step());
    if (!row || journal.ColumnText(0) != "wal") {
      return absl::FailedPreconditionError(absl::StrCat(
          "SQLite file ", path, ": cannot switch to WAL journal mode (journal_mode is ",
          row ? std::string(journal.ColumnText(0)) : "unknown",
          "); is it on a network file system?"));
    }
  }
  {
    WriteTransaction transaction(*file, db);
    STIP_RETURN_IF_ERROR(transaction.Begin());
    STIP_ASSIGN_OR_RETURN(SqliteStatement version, db.Prepare("PRAGMA user_version"));
    int64_t found = 0;
    {
      SqliteResetter reset(version);
      STIP_ASSIGN_OR_RETURN(bool row, version.Step());
      if (row) found = version.ColumnInt64(0);
    }
    if (found > kSchemaVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat("SQLite file ", path, ": event log schema version ", found,
                       " is newer than this program's (", kSchemaVersion, "); upgrade it"));
    }
    if (found < kSchemaVersion) {
      STIP_RETURN_IF_ERROR(db.Exec(kSchema));
      STIP_RETURN_IF_ERROR(db.Exec(absl::StrCat("PRAGMA user_version = ", kSchemaVersion)));
    }
    STIP_RETURN_IF_ERROR(transaction.Commit());
  }
  STIP_ASSIGN_OR_RETURN(file->appender_, EventAppender::Create(db, *file));
  Files()[key] = file;
  return file;
}

// --- EventAppender -------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<EventAppender>> EventAppender::Create(SqliteDb& db,
                                                                     SharedFile& shared) {
  std::unique_ptr<EventAppender> appender(new EventAppender(db, shared));
  STIP_ASSIGN_OR_RETURN(appender->insert_event_,
                        db.Prepare("INSERT INTO eventlog_events (topic, partition, offset, key, "
                                   "value, headers, timestamp_us) VALUES (?, ?, ?, ?, ?, ?, ?)"));
  STIP_ASSIGN_OR_RETURN(
      appender->max_offset_,
      db.Prepare("SELECT MAX(offset) FROM eventlog_events WHERE topic = ? AND partition = ?"));
  STIP_ASSIGN_OR_RETURN(appender->select_topic_,
                        db.Prepare("SELECT partitions FROM eventlog_topics WHERE name = ?"));
  STIP_ASSIGN_OR_RETURN(
      appender->insert_topic_,
      db.Prepare("INSERT OR IGNORE INTO eventlog_topics (name, partitions) VALUES (?, ?)"));
  // The groups with a member subscribed to the new topic rebalance to take its partitions.
  STIP_ASSIGN_OR_RETURN(
      appender->bump_subscribers_,
      db.Prepare("UPDATE eventlog_groups SET generation = generation + 1 WHERE group_id IN "
                 "(SELECT group_id FROM eventlog_members WHERE "
                 "instr(char(10) || topics || char(10), char(10) || ?1 || char(10)) > 0)"));
  return appender;
}

absl::StatusOr<std::optional<int32_t>> EventAppender::Partitions(const std::string& topic) {
  if (auto cached = shared_.CachedPartitions(topic)) return cached;
  SqliteResetter reset(select_topic_);
  select_topic_.BindText(1, topic);
  STIP_ASSIGN_OR_RETURN(bool row, select_topic_.Step());
  if (!row) return std::optional<int32_t>();
  const auto partitions = static_cast<int32_t>(select_topic_.ColumnInt64(0));
  shared_.CachePartitions(topic, partitions);
  return std::optional<int32_t>(partitions);
}

absl::Status EventAppender::CheckTopics(absl::Span<const OutgoingEvent> events) {
  const std::string* last = nullptr;  // a batch is mostly of one topic
  for (const OutgoingEvent& event : events) {
    if (last != nullptr && *last == event.topic) continue;
    STIP_ASSIGN_OR_RETURN(std::optional<int32_t> partitions, Partitions(event.topic));
    if (!partitions) {
      return absl::InvalidArgumentError(
          absl::StrCat("topic '", event.topic, "' does not exist in the event log ", shared_.path(),
                       "; create it with EnsureTopics"));
    }
    last = &event.topic;
  }
  return absl::OkStatus();
}

absl::StatusOr<int32_t> EventAppender::Append(const OutgoingEvent& event, int64_t timestamp_us) {
  auto topic = in_transaction_.find(event.topic);
  if (topic == in_transaction_.end()) {
    STIP_ASSIGN_OR_RETURN(std::optional<int32_t> partitions, Partitions(event.topic));
    if (!partitions) {
      return absl::InvalidArgumentError(absl::StrCat(
          "topic '", event.topic, "' does not exist in the event log ", shared_.path()));
    }
    topic =
        in_transaction_
            .emplace(event.topic, TopicOffsets{*partitions, std::vector<int64_t>(*partitions, -1)})
            .first;
  }
  const int32_t partition = PartitionForKey(event.key, topic->second.partitions);
  int64_t& next = topic->second.next[partition];
  if (next < 0) {
    SqliteResetter reset(max_offset_);
    max_offset_.BindText(1, event.topic);
    max_offset_.BindInt64(2, partition);
    STIP_ASSIGN_OR_RETURN(bool row, max_offset_.Step());
    next = row && !max_offset_.ColumnIsNull(0) ? max_offset_.ColumnInt64(0) + 1 : 0;
  }
  EncodeHeaders(event.headers, headers_);
  insert_event_.BindText(1, event.topic);
  insert_event_.BindInt64(2, partition);
  insert_event_.BindInt64(3, next);
  insert_event_.BindBlob(4, event.key);
  insert_event_.BindBlob(5, event.value);
  insert_event_.BindBlob(6, headers_);
  insert_event_.BindInt64(7, timestamp_us);
  STIP_RETURN_IF_ERROR(insert_event_.Run());
  ++next;
  return partition;
}

absl::StatusOr<bool> EventAppender::CreateTopic(const std::string& topic, int32_t partitions) {
  insert_topic_.BindText(1, topic);
  insert_topic_.BindInt64(2, partitions);
  STIP_RETURN_IF_ERROR(insert_topic_.Run());
  if (sqlite3_changes(db_.handle()) == 0) return false;
  bump_subscribers_.BindText(1, topic);
  STIP_RETURN_IF_ERROR(bump_subscribers_.Run());
  return true;
}

// --- Publishing -------------------------------------------------------------------------

absl::Status SharedFile::Publish(absl::Span<const OutgoingEvent> events, absl::Duration timeout) {
  if (events.empty()) return absl::OkStatus();
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + timeout;
  PublishRequest request;
  request.events = events;
  request.deadline = deadline;
  for (const OutgoingEvent& event : events) {
    request.bytes += event.key.size() + event.value.size() + event.topic.size();
  }

  std::unique_lock<std::mutex> lock(queue_mutex_);
  queue_.push_back(&request);
  bool in_flight_past_deadline = false;
  while (!request.done) {
    if (!leader_active_) {
      // Lead: take what is queued, up to the caps (always at least the first request).
      leader_active_ = true;
      std::vector<PublishRequest*> group;
      size_t group_events = 0, group_bytes = 0;
      while (!queue_.empty()) {
        PublishRequest* next = queue_.front();
        if (!group.empty() && (group_events + next->events.size() > kMaxGroupEvents ||
                               group_bytes + next->bytes > kMaxGroupBytes)) {
          break;
        }
        group_events += next->events.size();
        group_bytes += next->bytes;
        group.push_back(next);
        queue_.pop_front();
      }
      lock.unlock();
      WriteGroup(group);
      lock.lock();
      for (PublishRequest* written : group) written->done = true;
      leader_active_ = false;
      queue_changed_.notify_all();
      continue;
    }
    if (in_flight_past_deadline) {
      queue_changed_.wait(lock);
      continue;
    }
    if (queue_changed_.wait_until(lock, absl::ToChronoTime(deadline)) == std::cv_status::timeout &&
        !request.done) {
      auto queued = std::find(queue_.begin(), queue_.end(), &request);
      if (queued != queue_.end()) {
        queue_.erase(queued);
        lock.unlock();
        return absl::UnavailableError(absl::StrCat(
            "SQLite file ", path_, ": ", events.size(), " events not written within ",
            absl::FormatDuration(timeout), " (the file's write lock stayed busy); none published"));
      }
      // Already in the transaction being written: its outcome comes, whatever the time.
      in_flight_past_deadline = true;
    }
  }
  lock.unlock();
  PublishSeconds().Observe(absl::ToDoubleSeconds(absl::Now() - start));
  return request.status;
}

void SharedFile::WriteGroup(const std::vector<PublishRequest*>& group) {
  auto fail_all = [&](const absl::Status& status) {
    for (PublishRequest* request : group) {
      if (request->status.ok()) request->status = status;
    }
  };
  // The lock is waited for as long as the most patient caller of the group allows.
  absl::Time deadline = absl::InfinitePast();
  for (const PublishRequest* request : group) deadline = std::max(deadline, request->deadline);
  WriteTransaction transaction(*this, *db_);
  if (absl::Status status =
          transaction.Begin(std::max(deadline - absl::Now(), absl::Milliseconds(1)));
      !status.ok()) {
    return fail_all(status);
  }
  appender_->StartTransaction();
  const int64_t now_us = absl::ToUnixMicros(absl::Now());
  std::map<std::string, int64_t> produced;
  bool any = false;
  for (PublishRequest* request : group) {
    // All of a request or none of it: its topics are checked before any of it is appended.
    request->status = appender_->CheckTopics(request->events);
    if (!request->status.ok()) {
      if (absl::IsInvalidArgument(request->status)) continue;
      return fail_all(request->status);  // a SQLite error: the transaction is lost
    }
    for (const OutgoingEvent& event : request->events) {
      if (absl::StatusOr<int32_t> appended = appender_->Append(event, now_us); !appended.ok()) {
        return fail_all(appended.status());
      }
    }
    for (const OutgoingEvent& event : request->events) ++produced[event.topic];
    any = true;
  }
  if (!any) return;  // every request named an unknown topic: nothing to commit
  if (absl::Status status = transaction.Commit(); !status.ok()) return fail_all(status);
  CountByTopic(GetEventLogMetrics().events_produced, produced);
}

absl::Status SharedFile::EnsureTopics(absl::Span<const TopicSpec> topics) {
  for (const TopicSpec& spec : topics) {
    if (spec.name.empty() || spec.partitions < 1 || spec.partitions > kMaxPartitions) {
      return absl::InvalidArgumentError(absl::StrCat(
          "topic '", spec.name, "' with ", spec.partitions,
          " partitions: a topic needs a name and 1 to ", kMaxPartitions, " partitions"));
    }
  }
  WriteTransaction transaction(*this, *db_);
  STIP_RETURN_IF_ERROR(transaction.Begin());
  for (const TopicSpec& spec : topics) {
    STIP_ASSIGN_OR_RETURN(bool created, appender_->CreateTopic(spec.name, spec.partitions));
    (void)created;
  }
  return transaction.Commit();
}

class SqlitePublisher : public EventPublisher {
 public:
  explicit SqlitePublisher(std::shared_ptr<SharedFile> shared) : shared_(std::move(shared)) {}
  absl::Status Publish(absl::Span<const OutgoingEvent> events, absl::Duration timeout) override {
    return shared_->Publish(events, timeout);
  }

 private:
  std::shared_ptr<SharedFile> shared_;
};

// --- Reading ----------------------------------------------------------------------------

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
                           const std::atomic<bool>* stop = nullptr) {
  while (true) {
    const absl::Time now = absl::Now();
    if (now >= until || (stop != nullptr && stop->load())) return absl::OkStatus();
    if (shared.WaitForCommit(sequence, std::min(until, now + kCrossProcessPollInterval))) {
      return absl::OkStatus();
    }
    STIP_ASSIGN_OR_RETURN(int64_t version, reader.DataVersion());
    if (version != data_version) return absl::OkStatus();
  }
}

// --- Group membership --------------------------------------------------------------------

// One member of a consumer group: its row in eventlog_members and the eager rebalance
// protocol described at the top of this file. Driven by its owner's thread only.
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

absl::StatusOr<std::unique_ptr<GroupMember>> GroupMember::Create(SharedFile& shared, SqliteDb& db,
                                                                 std::string group,
                                                                 std::string member_id,
                                                                 std::vector<std::string> topics) {
  std::sort(topics.begin(), topics.end());
  topics.erase(std::unique(topics.begin(), topics.end()), topics.end());
  std::unique_ptr<GroupMember> member(
      new GroupMember(shared, db, std::move(group), std::move(member_id), std::move(topics)));
  STIP_ASSIGN_OR_RETURN(member->reader_, EventReader::Create(db));
  STIP_ASSIGN_OR_RETURN(
      member->select_members_,
      db.Prepare("SELECT member_id, incarnation, topics, heartbeat_us, host, pid, pid_start, "
                 "acked_generation FROM eventlog_members WHERE group_id = ? ORDER BY member_id"));
  STIP_ASSIGN_OR_RETURN(member->select_self_, db.Prepare("SELECT incarnation FROM eventlog_members "
                                                         "WHERE group_id = ? AND member_id = ?"));
  STIP_ASSIGN_OR_RETURN(
      member->upsert_self_,
      db.Prepare("INSERT OR REPLACE INTO eventlog_members (group_id, member_id, incarnation, "
                 "topics, heartbeat_us, host, pid, pid_start, acked_generation) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, -1)"));
  STIP_ASSIGN_OR_RETURN(member->heartbeat_,
                        db.Prepare("UPDATE eventlog_members SET heartbeat_us = ? "
                                   "WHERE group_id = ? AND member_id = ?"));
  STIP_ASSIGN_OR_RETURN(member->delete_member_,
                        db.Prepare("DELETE FROM eventlog_members "
                                   "WHERE group_id = ? AND member_id = ? AND incarnation = ?"));
  STIP_ASSIGN_OR_RETURN(
      member->bump_generation_,
      db.Prepare("INSERT INTO eventlog_groups (group_id, generation) VALUES (?, 1) "
                 "ON CONFLICT (group_id) DO UPDATE SET generation = generation + 1"));
  STIP_ASSIGN_OR_RETURN(member->select_generation_,
                        db.Prepare("SELECT generation FROM eventlog_groups WHERE group_id = ?"));
  STIP_ASSIGN_OR_RETURN(member->ack_,
                        db.Prepare("UPDATE eventlog_members SET acked_generation = ? "
                                   "WHERE group_id = ? AND member_id = ? AND incarnation = ?"));
  STIP_ASSIGN_OR_RETURN(member->select_partitions_,
                        db.Prepare("SELECT partitions FROM eventlog_topics WHERE name = ?"));
  return member;
}

absl::StatusOr<std::vector<GroupMember::Member>> GroupMember::ReadMembers() {
  std::vector<Member> members;
  SqliteResetter reset(select_members_);
  select_members_.BindText(1, group_);
  while (true) {
    STIP_ASSIGN_OR_RETURN(bool row, select_members_.Step());
    if (!row) break;
    Member& member = members.emplace_back();
    member.id = std::string(select_members_.ColumnText(0));
    member.incarnation = select_members_.ColumnInt64(1);
    const std::string topics(select_members_.ColumnText(2));
    for (absl::string_view topic : absl::StrSplit(topics, '\n', absl::SkipEmpty())) {
      member.topics.emplace(topic);
    }
    member.heartbeat_us = select_members_.ColumnInt64(3);
    member.host = std::string(select_members_.ColumnText(4));
    member.pid = select_members_.ColumnInt64(5);
    member.pid_start = select_members_.ColumnInt64(6);
    member.acked_generation = select_members_.ColumnInt64(7);
  }
  return members;
}

bool GroupMember::Dead(const Member& member, int64_t now_us) const {
  if (member.id == member_id_) return false;
  return member.heartbeat_us < now_us - absl::ToInt64Microseconds(kSessionTimeout) ||
         ProcessGone(member.host, member.pid, member.pid_start);
}

absl::Status GroupMember::BumpGeneration() {
  bump_generation_.BindText(1, group_);
  return bump_generation_.Run();
}

absl::Status GroupMember::WriteMembership(bool join, absl::Duration lock_wait) {
  WriteTransaction transaction(shared_, db_);
  STIP_RETURN_IF_ERROR(transaction.Begin(lock_wait));
  const absl::Time now = absl::Now();
  const int64_t now_us = absl::ToUnixMicros(now);
  bool changed = join;
  if (!join) {
    std::optional<int64_t> incarnation;
    {
      SqliteResetter reset(select_self_);
      select_self_.BindText(1, group_);
      select_self_.BindText(2, member_id_);
      STIP_ASSIGN_OR_RETURN(bool row, select_self_.Step());
      if (row) incarnation = select_self_.ColumnInt64(0);
    }
    if (incarnation && *incarnation != incarnation_) return Fenced();
    if (!incarnation) {
      // Removed by the others (missed heartbeats): join again, as a new member would.
      spdlog::warn("member '{}' of group '{}' ({}) was removed from the group; rejoining",
                   member_id_, group_, shared_.path());
      generation_ = -1;
      changed = true;
    } else {
      heartbeat_.BindInt64(1, now_us);
      heartbeat_.BindText(2, group_);
      heartbeat_.BindText(3, member_id_);
      STIP_RETURN_IF_ERROR(heartbeat_.Run());
    }
  }
  if (changed) {
    const ProcessIdentity& self = Self();
    const std::string topics = absl::StrJoin(topics_, "\n");
    upsert_self_.BindText(1, group_);
    upsert_self_.BindText(2, member_id_);
    upsert_self_.BindInt64(3, incarnation_);
    upsert_self_.BindText(4, topics);
    upsert_self_.BindInt64(5, now_us);
    upsert_self_.BindText(6, self.host);
    upsert_self_.BindInt64(7, self.pid);
    upsert_self_.BindInt64(8, self.start);
    STIP_RETURN_IF_ERROR(upsert_self_.Run());
  }
  STIP_ASSIGN_OR_RETURN(std::vector<Member> members, ReadMembers());
  for (const Member& member : members) {
    if (!Dead(member, now_us)) continue;
    spdlog::info("removing member '{}' from group '{}' ({}): {}", member.id, group_, shared_.path(),
                 member.heartbeat_us < now_us - absl::ToInt64Microseconds(kSessionTimeout)
                     ? "no heartbeat within the session timeout"
                     : "its process is gone");
    delete_member_.BindText(1, group_);
    delete_member_.BindText(2, member.id);
    delete_member_.BindInt64(3, member.incarnation);
    STIP_RETURN_IF_ERROR(delete_member_.Run());
    changed = true;
  }
  if (changed) STIP_RETURN_IF_ERROR(BumpGeneration());
  STIP_RETURN_IF_ERROR(transaction.Commit());
  next_heartbeat_ = now + kHeartbeatInterval;
  next_liveness_check_ = now + kLivenessInterval;
  dirty_ = true;
  return absl::OkStatus();
}

std::vector<TopicPartition> GroupMember::ComputeAssignment(
    const std::vector<Member>& members, const std::map<std::string, int32_t>& topics) {
  // Round robin over every partition, in order, among the members subscribed to its topic;
  // `members` is sorted by id, so every member computes the same.
  std::vector<TopicPartition> mine;
  size_t next = 0;
  for (const auto& [topic, partitions] : topics) {
    for (int32_t partition = 0; partition < partitions; ++partition) {
      for (size_t tried = 0; tried < members.size(); ++tried) {
        const Member& member = members[(next + tried) % members.size()];
        if (!member.topics.contains(topic)) continue;
        if (member.id == member_id_) mine.push_back({topic, partition});
        next = (next + tried + 1) % members.size();
        break;
      }
    }
  }
  return mine;
}

absl::StatusOr<GroupMember::Change> GroupMember::Sync() {
  const absl::Time now = absl::Now();
  // A membership write that does not get the lock soon is tried again shortly: only an
  // absence of kSessionTimeout costs the membership.
  auto write_membership = [&]() -> absl::Status {
    absl::Status status = WriteMembership(/*join=*/false, kMembershipLockWait);
    if (absl::IsUnavailable(status)) {
      next_heartbeat_ = now + kLivenessInterval;
      return absl::OkStatus();
    }
    return status;
  };
  if (now >= next_heartbeat_) {
    STIP_RETURN_IF_ERROR(write_membership());
  } else if (!active_ && now >= next_liveness_check_) {
    // Waiting for the others to acknowledge: a crashed one would hold the group up until its
    // session times out, unless it is noticed sooner.
    next_liveness_check_ = now + kLivenessInterval;
    STIP_ASSIGN_OR_RETURN(std::vector<Member> members, ReadMembers());
    const int64_t now_us = absl::ToUnixMicros(now);
    if (std::any_of(members.begin(), members.end(),
                    [&](const Member& member) { return Dead(member, now_us); })) {
      STIP_RETURN_IF_ERROR(write_membership());
    }
  }

  // Membership changes only by commits of other connections (seen in the data version) or
  // of this member (which set dirty_).
  STIP_ASSIGN_OR_RETURN(int64_t data_version, reader_->DataVersion());
  if (!dirty_ && data_version == seen_data_version_) return Change::kNone;
  seen_data_version_ = data_version;
  dirty_ = false;

  // One snapshot for the generation, the members and the partition counts.
  int64_t generation = 0;
  std::vector<Member> members;
  std::map<std::string, int32_t> partitions;
  {
    STIP_ASSIGN_OR_RETURN(SqliteTransaction snapshot, SqliteTransaction::Read(db_));
    {
      SqliteResetter reset(select_generation_);
      select_generation_.BindText(1, group_);
      STIP_ASSIGN_OR_RETURN(bool row, select_generation_.Step());
      if (row) generation = select_generation_.ColumnInt64(0);
    }
    STIP_ASSIGN_OR_RETURN(members, ReadMembers());
    std::set<std::string> subscribed;
    for (const Member& member : members) {
      subscribed.insert(member.topics.begin(), member.topics.end());
    }
    for (const std::string& topic : subscribed) {
      SqliteResetter reset(select_partitions_);
      select_partitions_.BindText(1, topic);
      STIP_ASSIGN_OR_RETURN(bool row, select_partitions_.Step());
      if (row) partitions[topic] = static_cast<int32_t>(select_partitions_.ColumnInt64(0));
    }
    snapshot.Rollback();
  }

  auto self = std::find_if(members.begin(), members.end(),
                           [&](const Member& member) { return member.id == member_id_; });
  if (self == members.end()) {
    // Removed by the others while away: drop everything and join again.
    spdlog::warn("member '{}' of group '{}' ({}) was removed from the group; rejoining", member_id_,
                 group_, shared_.path());
    const bool had_partitions = active_ || generation_ >= 0;
    active_ = false;
    assignment_.clear();
    generation_ = -1;
    STIP_RETURN_IF_ERROR(WriteMembership(/*join=*/true, shared_.busy_timeout()));
    return had_partitions ? Change::kRevoked : Change::kNone;
  }
  if (self->incarnation != incarnation_) return Fenced();

  if (generation != generation_) {
    // Eager: give up every partition before acknowledging the new generation.
    active_ = false;
    assignment_.clear();
    generation_ = generation;
    target_ = ComputeAssignment(members, partitions);
    dirty_ = true;
    absl::Status acked = [&] {
      WriteTransaction transaction(shared_, db_);
      STIP_RETURN_IF_ERROR(transaction.Begin(kMembershipLockWait));
      ack_.BindInt64(1, generation);
      ack_.BindText(2, group_);
      ack_.BindText(3, member_id_);
      ack_.BindInt64(4, incarnation_);
      STIP_RETURN_IF_ERROR(ack_.Run());
      return transaction.Commit();
    }();
    if (absl::IsUnavailable(acked)) {
      generation_ = -1;  // acknowledge at the next Sync
    } else if (!acked.ok()) {
      return acked;
    }
    return Change::kRevoked;
  }
  if (!active_ && std::all_of(members.begin(), members.end(), [&](const Member& member) {
        return member.acked_generation == generation;
      })) {
    active_ = true;
    assignment_ = target_;
    return Change::kAssigned;
  }
  return Change::kNone;
}

absl::Status GroupMember::Leave(absl::Duration timeout) {
  WriteTransaction transaction(shared_, db_);
  STIP_RETURN_IF_ERROR(transaction.Begin(timeout));
  delete_member_.BindText(1, group_);
  delete_member_.BindText(2, member_id_);
  delete_member_.BindInt64(3, incarnation_);
  STIP_RETURN_IF_ERROR(delete_member_.Run());
  if (sqlite3_changes(db_.handle()) > 0) STIP_RETURN_IF_ERROR(BumpGeneration());
  STIP_RETURN_IF_ERROR(transaction.Commit());
  active_ = false;
  assignment_.clear();
  return absl::OkStatus();
}

absl::Status GroupMember::CheckMembership() {
  SqliteResetter reset(select_self_);
  select_self_.BindText(1, group_);
  select_self_.BindText(2, member_id_);
  STIP_ASSIGN_OR_RETURN(bool row, select_self_.Step());
  if (!row) {
    dirty_ = true;
    return absl::AbortedError(absl::StrCat(
        "member '", member_id_, "' of group '", group_, "' in SQLite file ", shared_.path(),
        " was removed from the group (no heartbeat within ", absl::FormatDuration(kSessionTimeout),
        "); its uncommitted events go to another member"));
  }
  if (select_self_.ColumnInt64(0) != incarnation_) return Fenced();
  return absl::OkStatus();
}

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

std::string NewMemberId(const std::string& kind) {
  return absl::StrCat(kind, "/", getpid(), "-", absl::Hex(RandomId(), absl::kZeroPad16));
}

// --- Consumer -----------------------------------------------------------------------------

class SqliteConsumer : public EventConsumer {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteConsumer>> Create(std::shared_ptr<SharedFile> shared,
                                                                const ConsumerOptions& options);

  ~SqliteConsumer() override {
    if (!closed_ && member_ != nullptr) (void)member_->Leave(absl::Seconds(1));
  }

  absl::StatusOr<std::vector<ConsumedEvent>> Poll(size_t max_events,
                                                  absl::Duration timeout) override;
  absl::Status Commit() override;
  std::vector<TopicPartition> Assignment() override {
    return member_->active() ? member_->assignment() : std::vector<TopicPartition>{};
  }
  absl::Status Close(absl::Duration timeout) override;

 private:
  SqliteConsumer(std::shared_ptr<SharedFile> shared, ConsumerOptions options)
      : shared_(std::move(shared)), options_(std::move(options)) {}

  absl::Status OnChange(GroupMember::Change change);
  absl::StatusOr<std::vector<ConsumedEvent>> Fetch(size_t max_events);
  absl::Status UpdateLag();

  std::shared_ptr<SharedFile> shared_;
  const ConsumerOptions options_;
  std::unique_ptr<SqliteDb> db_;
  std::unique_ptr<EventReader> reader_;
  std::unique_ptr<GroupMember> member_;
  // Where each partition of the latest topics ended when this consumer joined: the start
  // of a partition without a committed offset when !start_from_earliest.
  std::map<TopicPartition, int64_t> end_at_join_;
  std::map<TopicPartition, int64_t> positions_;
  std::map<TopicPartition, int64_t> committed_;  // as stored in the group's offsets
  size_t next_partition_ = 0;
  absl::Time next_lag_update_ = absl::InfinitePast();
  bool closed_ = false;
};

absl::StatusOr<std::unique_ptr<SqliteConsumer>> SqliteConsumer::Create(
    std::shared_ptr<SharedFile> shared, const ConsumerOptions& options) {
  if (options.group.empty() || options.topics.empty()) {
    return absl::InvalidArgumentError("a consumer needs a group and at least one topic");
  }
  std::unique_ptr<SqliteConsumer> consumer(new SqliteConsumer(std::move(shared), options));
  SharedFile& file = *consumer->shared_;
  STIP_ASSIGN_OR_RETURN(consumer->db_, file.Connect());
  STIP_ASSIGN_OR_RETURN(consumer->reader_, EventReader::Create(*consumer->db_));
  STIP_ASSIGN_OR_RETURN(consumer->member_,
                        GroupMember::Create(file, *consumer->db_, options.group,
                                            NewMemberId("consumer"), options.topics));
  if (!options.start_from_earliest) {
    STIP_ASSIGN_OR_RETURN(SqliteStatement partitions,
                          consumer->db_->Prepare("SELECT partitions FROM eventlog_topics "
                                                 "WHERE name = ?"));
    for (const std::string& topic : options.topics) {
      int64_t count = 0;
      {
        SqliteResetter reset(partitions);
        partitions.BindText(1, topic);
        STIP_ASSIGN_OR_RETURN(bool row, partitions.Step());
        if (row) count = partitions.ColumnInt64(0);
      }
      for (int32_t partition = 0; partition < count; ++partition) {
        const TopicPartition tp{topic, partition};
        STIP_ASSIGN_OR_RETURN(auto bounds, consumer->reader_->Bounds(tp));
        consumer->end_at_join_[tp] = bounds.second;
      }
    }
  }
  STIP_RETURN_IF_ERROR(consumer->member_->Join());
  // A member alone in its group has its partitions at once.
  STIP_RETURN_IF_ERROR(FollowGroup(
      *consumer->member_, [&](GroupMember::Change change) { return consumer->OnChange(change); }));
  return consumer;
}

absl::Status SqliteConsumer::OnChange(GroupMember::Change change) {
  positions_.clear();
  committed_.clear();
  if (change != GroupMember::Change::kAssigned) return absl::OkStatus();
  const std::vector<TopicPartition>& assignment = member_->assignment();
  for (const TopicPartition& tp : assignment) {
    STIP_ASSIGN_OR_RETURN(std::optional<int64_t> committed, reader_->Committed(options_.group, tp));
    if (committed) {
      positions_[tp] = committed_[tp] = *committed;
    } else if (options_.start_from_earliest) {
      STIP_ASSIGN_OR_RETURN(auto bounds, reader_->Bounds(tp));
      positions_[tp] = bounds.first;
    } else {
      // A topic created after the join holds only events published after it.
      auto found = end_at_join_.find(tp);
      positions_[tp] = found != end_at_join_.end() ? found->second : 0;
    }
  }
  if (options_.start_offsets && !assignment.empty()) {
    for (const auto& [tp, offset] : options_.start_offsets(assignment)) {
      if (auto found = positions_.find(tp); found != positions_.end()) found->second = offset;
    }
  }
  next_partition_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ConsumedEvent>> SqliteConsumer::Poll(size_t max_events,
                                                                absl::Duration timeout) {
  if (closed_) return absl::FailedPreconditionError("Poll on a closed consumer");
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    // Taken before reading, so that a commit made meanwhile ends the wait below at once.
    const uint64_t sequence = shared_->sequence();
    STIP_ASSIGN_OR_RETURN(int64_t data_version, reader_->DataVersion());
    STIP_RETURN_IF_ERROR(
        FollowGroup(*member_, [this](GroupMember::Change change) { return OnChange(change); }));
    if (!positions_.empty() && max_events > 0) {
      STIP_ASSIGN_OR_RETURN(std::vector<ConsumedEvent> events, Fetch(max_events));
      if (absl::Now() >= next_lag_update_) STIP_RETURN_IF_ERROR(UpdateLag());
      if (!events.empty()) {
        std::map<std::string, int64_t> consumed;
        for (const ConsumedEvent& event : events) ++consumed[event.topic];
        CountByTopic(GetEventLogMetrics().events_consumed, consumed);
        return events;
      }
    }
    const absl::Time now = absl::Now();
    if (now >= deadline) return std::vector<ConsumedEvent>{};
    STIP_RETURN_IF_ERROR(WaitForChange(*shared_, *reader_, sequence, data_version,
                                       std::min(deadline, member_->next_timer())));
  }
}

absl::StatusOr<std::vector<ConsumedEvent>> SqliteConsumer::Fetch(size_t max_events) {
  std::vector<ConsumedEvent> events;
  std::vector<std::map<TopicPartition, int64_t>::iterator> partitions;
  for (auto it = positions_.begin(); it != positions_.end(); ++it) partitions.push_back(it);
  // Start at a different partition each time, so that a busy one cannot starve the others.
  const size_t first = next_partition_++ % partitions.size();
  for (size_t i = 0; i < partitions.size() && events.size() < max_events; ++i) {
    auto& [tp, position] = *partitions[(first + i) % partitions.size()];
    STIP_ASSIGN_OR_RETURN(position,
                          reader_->Read(tp, position, max_events - events.size(), events));
  }
  return events;
}

absl::Status SqliteConsumer::UpdateLag() {
  next_lag_update_ = absl::Now() + kLagInterval;
  for (const auto& [tp, position] : positions_) {
    STIP_ASSIGN_OR_RETURN(auto bounds, reader_->Bounds(tp));
    SetLag(options_.group, tp, std::max<int64_t>(0, bounds.second - position));
  }
  return absl::OkStatus();
}

absl::Status SqliteConsumer::Commit() {
  if (closed_) return absl::FailedPreconditionError("Commit on a closed consumer");
  std::vector<std::pair<TopicPartition, int64_t>> changed;
  for (const auto& [tp, position] : positions_) {
    auto found = committed_.find(tp);
    if (found == committed_.end() || found->second != position) changed.emplace_back(tp, position);
  }
  if (changed.empty()) return absl::OkStatus();
  WriteTransaction transaction(*shared_, *db_);
  STIP_RETURN_IF_ERROR(transaction.Begin());
  STIP_RETURN_IF_ERROR(member_->CheckMembership());
  for (const auto& [tp, position] : changed) {
    STIP_RETURN_IF_ERROR(reader_->Commit(options_.group, tp, position));
  }
  STIP_RETURN_IF_ERROR(transaction.Commit());
  for (const auto& [tp, position] : changed) committed_[tp] = position;
  return absl::OkStatus();
}

absl::Status SqliteConsumer::Close(absl::Duration timeout) {
  if (closed_) return absl::OkStatus();
  closed_ = true;
  positions_.clear();
  return member_->Leave(timeout);
}

// --- Exactly-once processor --------------------------------------------------------------

class CollectingOutput : public BatchOutput {
 public:
  void Emit(OutgoingEvent event) override { outputs.push_back(std::move(event)); }
  void DeadLetter(const ConsumedEvent& event, std::string_view reason) override {
    OutgoingEvent dead{std::string(kDeadLetterTopic), event.key, event.value, event.headers};
    dead.headers.emplace_back(kDeadLetterReasonHeader, reason);
    dead.headers.emplace_back(kDeadLetterSourceHeader, event.Position());
    dead_letters.push_back(std::move(dead));
    ++dead_lettered_from[event.topic];
  }

  std::vector<OutgoingEvent> outputs;
  std::vector<OutgoingEvent> dead_letters;
  std::map<std::string, int64_t> dead_lettered_from;
};

class SqliteProcessor : public ExactlyOnceProcessor {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteProcessor>> Create(std::shared_ptr<SharedFile> shared,
                                                                 const ProcessorOptions& options,
                                                                 BatchHandler* handler);

  absl::Status Run() override;
  void Stop() override {
    stop_ = true;
    shared_->WakeAll();
  }
  ProcessorCounters Counters() const override {
    return {batches_committed_.load(), batches_aborted_.load(), events_consumed_.load(),
            events_produced_.load(), events_dead_lettered_.load()};
  }

 private:
  enum class Outcome { kCommitted, kStale, kHandlerFailed };

  SqliteProcessor(std::shared_ptr<SharedFile> shared, ProcessorOptions options,
                  BatchHandler* handler)
      : shared_(std::move(shared)), options_(std::move(options)), handler_(handler) {}

  absl::Status Loop();
  // Starts a batch at the group's committed offsets of the assigned partitions.
  absl::Status StartBatch();
  // Reads more of the assigned partitions into the batch, up to max_batch_events.
  absl::Status ReadMore();
  absl::StatusOr<Outcome> WriteBatch();
  void DropBatch() {
    retrying_ = false;
    batch_.clear();
    batch_start_.clear();
    read_positions_.clear();
  }
  absl::Status UpdateLag();
  // Sleeps `duration`, following the group meanwhile; stops early for Stop().
  absl::Status Backoff(absl::Duration duration);

  std::shared_ptr<SharedFile> shared_;
  const ProcessorOptions options_;
  BatchHandler* const handler_;
  std::unique_ptr<SqliteDb> db_;
  std::unique_ptr<EventReader> reader_;
  std::unique_ptr<EventAppender> appender_;
  std::unique_ptr<GroupMember> member_;

  std::vector<ConsumedEvent> batch_;
  // The committed offset each partition of the batch started from (nullopt: none yet).
  std::map<TopicPartition, std::optional<int64_t>> batch_start_;
  std::map<TopicPartition, int64_t> read_positions_;
  // The batch in hand failed in the handler: it is tried again as it is, not grown.
  bool retrying_ = false;
  size_t next_partition_ = 0;
  absl::Time next_lag_update_ = absl::InfinitePast();

  std::atomic<bool> running_{false};
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> batches_committed_{0}, batches_aborted_{0}, events_consumed_{0},
      events_produced_{0}, events_dead_lettered_{0};
};

absl::StatusOr<std::unique_ptr<SqliteProcessor>> SqliteProcessor::Create(
    std::shared_ptr<SharedFile> shared, const ProcessorOptions& options, BatchHandler* handler) {
  if (options.group.empty() || options.input_topics.empty() || handler == nullptr ||
      options.max_batch_events == 0) {
    return absl::InvalidArgumentError(
        "a processor needs a group, input topics, a handler and max_batch_events > 0");
  }
  std::unique_ptr<SqliteProcessor> processor(
      new SqliteProcessor(std::move(shared), options, handler));
  SharedFile& file = *processor->shared_;
  STIP_ASSIGN_OR_RETURN(processor->db_, file.Connect());
  STIP_ASSIGN_OR_RETURN(processor->reader_, EventReader::Create(*processor->db_));
  STIP_ASSIGN_OR_RETURN(processor->appender_, EventAppender::Create(*processor->db_, file));
  STIP_ASSIGN_OR_RETURN(
      processor->member_,
      GroupMember::Create(file, *processor->db_, options.group,
                          absl::StrCat("processor/", options.instance_id), options.input_topics));
  return processor;
}

absl::Status SqliteProcessor::Run() {
  if (running_.exchange(true)) {
    return absl::FailedPreconditionError("ExactlyOnceProcessor::Run is already running");
  }
  absl::Status status = Loop();
  if (!absl::IsFailedPrecondition(status)) {  // a fenced member's row is its successor's
    if (absl::Status left = member_->Leave(absl::Seconds(5)); !left.ok() && status.ok()) {
      spdlog::warn("processor of group '{}' could not leave the group: {}", options_.group,
                   left.ToString());
    }
  }
  running_ = false;
  return status;
}

absl::Status SqliteProcessor::Loop() {
  absl::Duration backoff = options_.retry_backoff;
  // Errors a retry may mend (a busy file) are logged and retried; these are not.
  auto fatal = [](const absl::Status& status) {
    return absl::IsFailedPrecondition(status) || absl::IsDataLoss(status) ||
           absl::IsInvalidArgument(status);
  };
  auto on_change = [this](GroupMember::Change) {
    DropBatch();  // uncommitted: whoever holds the partitions now reads it again
    return absl::OkStatus();
  };
  STIP_RETURN_IF_ERROR(member_->Join());
  while (true) {
    absl::Status status = FollowGroup(*member_, on_change);
    if (status.ok() && !member_->active()) {
      if (stop_) return absl::OkStatus();
      const uint64_t sequence = shared_->sequence();
      absl::StatusOr<int64_t> data_version = reader_->DataVersion();
      status = data_version.status();
      if (status.ok()) {
        status = WaitForChange(*shared_, *reader_, sequence, *data_version, member_->next_timer(),
                               &stop_);
      }
      if (status.ok()) continue;
    }
    if (status.ok() && batch_.empty()) {
      if (stop_) return absl::OkStatus();
      const uint64_t sequence = shared_->sequence();
      absl::StatusOr<int64_t> data_version = reader_->DataVersion();
      status = data_version.status();
      if (status.ok()) status = StartBatch();
      if (status.ok() && batch_.empty()) {
        status = WaitForChange(*shared_, *reader_, sequence, *data_version, member_->next_timer(),
                               &stop_);
        if (status.ok()) continue;
      }
    }
    if (status.ok()) {
      // Gather until the batch is full, commit_interval has passed since its first event,
      // or Stop(): then the batch in hand is written, not dropped.
      const absl::Time close_at = absl::Now() + options_.commit_interval;
      while (status.ok() && !retrying_ && batch_.size() < options_.max_batch_events && !stop_ &&
             absl::Now() < close_at) {
        const uint64_t sequence = shared_->sequence();
        absl::StatusOr<int64_t> data_version = reader_->DataVersion();
        status = data_version.status();
        const size_t before = batch_.size();
        if (status.ok()) status = ReadMore();
        if (status.ok() && batch_.size() == before) {
          status = WaitForChange(*shared_, *reader_, sequence, *data_version, close_at, &stop_);
        }
      }
    }
    absl::StatusOr<Outcome> outcome = status.ok() ? WriteBatch() : absl::StatusOr<Outcome>(status);
    if (outcome.ok() && *outcome == Outcome::kCommitted) {
      backoff = options_.retry_backoff;
      DropBatch();
      if (stop_) return absl::OkStatus();
      continue;
    }
    if (outcome.ok() && *outcome == Outcome::kStale) {
      DropBatch();
      continue;
    }
    if (!outcome.ok()) {
      if (fatal(outcome.status())) return outcome.status();
      spdlog::warn("processor of group '{}' ({}): {}; retrying in {}", options_.group,
                   shared_->path(), outcome.status().ToString(), absl::FormatDuration(backoff));
      DropBatch();  // read again from the committed offsets
    }
    // A failed batch: the same events again after the back-off (kept in batch_).
    if (outcome.ok()) retrying_ = true;
    if (stop_) return absl::OkStatus();
    STIP_RETURN_IF_ERROR(Backoff(backoff));
    backoff = std::min(backoff * 2, kMaxRetryBackoff);
    if (stop_) return absl::OkStatus();
  }
}

absl::Status SqliteProcessor::Backoff(absl::Duration duration) {
  const absl::Time until = absl::Now() + duration;
  while (!stop_ && absl::Now() < until) {
    // Keep the heartbeat going and follow rebalances, which drop the failed batch.
    absl::Status status = FollowGroup(*member_, [this](GroupMember::Change) {
      DropBatch();
      return absl::OkStatus();
    });
    if (absl::IsFailedPrecondition(status) || absl::IsDataLoss(status)) return status;
    // Plain sleeps: other commits are no reason to retry sooner.
    absl::SleepFor(std::min(until - absl::Now(), kCrossProcessPollInterval));
  }
  return absl::OkStatus();
}

absl::Status SqliteProcessor::StartBatch() {
  DropBatch();
  for (const TopicPartition& tp : member_->assignment()) {
    STIP_ASSIGN_OR_RETURN(std::optional<int64_t> committed, reader_->Committed(options_.group, tp));
    batch_start_[tp] = committed;
    if (committed) {
      read_positions_[tp] = *committed;
    } else {
      STIP_ASSIGN_OR_RETURN(auto bounds, reader_->Bounds(tp));
      read_positions_[tp] = bounds.first;
    }
  }
  return ReadMore();
}

absl::Status SqliteProcessor::ReadMore() {
  if (read_positions_.empty()) return absl::OkStatus();
  std::vector<std::map<TopicPartition, int64_t>::iterator> partitions;
  for (auto it = read_positions_.begin(); it != read_positions_.end(); ++it) {
    partitions.push_back(it);
  }
  const size_t first = next_partition_++ % partitions.size();
  for (size_t i = 0; i < partitions.size() && batch_.size() < options_.max_batch_events; ++i) {
    auto& [tp, position] = *partitions[(first + i) % partitions.size()];
    STIP_ASSIGN_OR_RETURN(
        position, reader_->Read(tp, position, options_.max_batch_events - batch_.size(), batch_));
  }
  return absl::OkStatus();
}

absl::StatusOr<SqliteProcessor::Outcome> SqliteProcessor::WriteBatch() {
  if (batch_.empty()) return Outcome::kStale;
  WriteTransaction transaction(*shared_, *db_);
  STIP_RETURN_IF_ERROR(transaction.Begin());
  if (absl::Status membership = member_->CheckMembership(); !membership.ok()) {
    if (absl::IsAborted(membership)) return Outcome::kStale;  // rejoins at the next Sync
    return membership;
  }
  // Under the write lock: the offsets are still those the batch was read from, or another
  // member (another process, a predecessor) has committed some of it already.
  std::map<TopicPartition, int64_t> next_offsets;
  for (const ConsumedEvent& event : batch_) {
    next_offsets[{event.topic, event.partition}] = event.offset + 1;
  }
  for (const auto& [tp, next] : next_offsets) {
    STIP_ASSIGN_OR_RETURN(std::optional<int64_t> committed, reader_->Committed(options_.group, tp));
    if (committed != batch_start_[tp]) return Outcome::kStale;
  }

  CollectingOutput output;
  if (absl::Status handled = handler_->HandleBatch(batch_, output); !handled.ok()) {
    transaction.Rollback();
    ++batches_aborted_;
    GetEventLogMetrics()
        .batches.Add({{"group", options_.group}, {"result", "aborted"}})
        .Increment();
    spdlog::warn(
        "processor of group '{}': the handler failed a batch of {} events ({}); "
        "it is handed over again after the back-off",
        options_.group, batch_.size(), handled.ToString());
    return Outcome::kHandlerFailed;
  }

  appender_->StartTransaction();
  const int64_t now_us = absl::ToUnixMicros(absl::Now());
  std::map<std::string, int64_t> produced;
  if (absl::Status topics = appender_->CheckTopics(output.outputs); !topics.ok()) {
    if (!absl::IsInvalidArgument(topics)) return topics;
    // The handler emitted to a topic that does not exist: a configuration error that an
    // operator can mend by creating it, so the batch is retried, not skipped.
    transaction.Rollback();
    ++batches_aborted_;
    GetEventLogMetrics()
        .batches.Add({{"group", options_.group}, {"result", "aborted"}})
        .Increment();
    spdlog::error("processor of group '{}': {}", options_.group, topics.ToString());
    return Outcome::kHandlerFailed;
  }
  for (const OutgoingEvent& event : output.outputs) {
    STIP_RETURN_IF_ERROR(appender_->Append(event, now_us).status());
    ++produced[event.topic];
  }
  if (!output.dead_letters.empty()) {
    STIP_ASSIGN_OR_RETURN(std::optional<int32_t> partitions,
                          appender_->Partitions(std::string(kDeadLetterTopic)));
    if (!partitions) {
      STIP_ASSIGN_OR_RETURN(bool created, appender_->CreateTopic(std::string(kDeadLetterTopic), 1));
      (void)created;
    }
    for (const OutgoingEvent& event : output.dead_letters) {
      STIP_RETURN_IF_ERROR(appender_->Append(event, now_us).status());
      ++produced[event.topic];
    }
  }
  for (const auto& [tp, next] : next_offsets) {
    STIP_RETURN_IF_ERROR(reader_->Commit(options_.group, tp, next));
  }
  STIP_RETURN_IF_ERROR(transaction.Commit());

  std::map<std::string, int64_t> consumed;
  for (const ConsumedEvent& event : batch_) ++consumed[event.topic];
  EventLogMetrics& metrics = GetEventLogMetrics();
  CountByTopic(metrics.events_consumed, consumed);
  CountByTopic(metrics.events_produced, produced);
  CountByTopic(metrics.events_dead_lettered, output.dead_lettered_from);
  metrics.batches.Add({{"group", options_.group}, {"result", "committed"}}).Increment();
  ++batches_committed_;
  events_consumed_ += static_cast<int64_t>(batch_.size());
  events_produced_ += static_cast<int64_t>(output.outputs.size());
  events_dead_lettered_ += static_cast<int64_t>(output.dead_letters.size());
  if (absl::Now() >= next_lag_update_) {
    for (const auto& [tp, next] : next_offsets) read_positions_[tp] = next;
    STIP_RETURN_IF_ERROR(UpdateLag());
  }
  return Outcome::kCommitted;
}

absl::Status SqliteProcessor::UpdateLag() {
  next_lag_update_ = absl::Now() + kLagInterval;
  for (const auto& [tp, position] : read_positions_) {
    STIP_ASSIGN_OR_RETURN(auto bounds, reader_->Bounds(tp));
    SetLag(options_.group, tp, std::max<int64_t>(0, bounds.second - position));
  }
  return absl::OkStatus();
}

// --- The backend --------------------------------------------------------------------------

class SqliteEventLog : public EventLog {
 public:
  explicit SqliteEventLog(std::shared_ptr<SharedFile> shared) : shared_(std::move(shared)) {}

  absl::Status EnsureTopics(absl::Span<const TopicSpec> topics) override {
    return shared_->EnsureTopics(topics);
  }
  absl::StatusOr<std::unique_ptr<EventPublisher>> NewPublisher() override {
    return std::make_unique<SqlitePublisher>(shared_);
  }
  absl::StatusOr<std::unique_ptr<EventConsumer>> NewConsumer(
      const ConsumerOptions& options) override {
    STIP_ASSIGN_OR_RETURN(std::unique_ptr<SqliteConsumer> consumer,
                          SqliteConsumer::Create(shared_, options));
    return std::unique_ptr<EventConsumer>(std::move(consumer));
  }
  absl::StatusOr<std::unique_ptr<ExactlyOnceProcessor>> NewProcessor(
      const ProcessorOptions& options, BatchHandler* handler) override {
    STIP_ASSIGN_OR_RETURN(std::unique_ptr<SqliteProcessor> processor,
                          SqliteProcessor::Create(shared_, options, handler));
    return std::unique_ptr<ExactlyOnceProcessor>(std::move(processor));
  }

 private:
  std::shared_ptr<SharedFile> shared_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<EventLog>> OpenSqliteEventLog(const std::string& path,
                                                             const EventLogOptions& options) {
  STIP_ASSIGN_OR_RETURN(std::shared_ptr<SharedFile> shared, SharedFile::Get(path, options));
  return std::unique_ptr<EventLog>(new SqliteEventLog(std::move(shared)));
}

}  // namespace stip
