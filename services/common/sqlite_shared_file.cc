// The state every handle on one SQLite file in this process shares (SharedFile): the
// schema, the write token, the appender (EventAppender), publishing with group commit, the
// publisher, the wait for commits, the encoding of headers and the metrics helpers. The
// design (durability, per-process sharing, group commit, offsets) is described at the top
// of sqlite_event_log.cc.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/metrics.h"
#include "services/common/sqlite_db.h"
#include "services/common/sqlite_internal.h"

namespace stip::sqlite {
namespace {

constexpr int64_t kSchemaVersion = 1;

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

}  // namespace

// --- Headers: u32 little-endian length, bytes, for each name and value in turn ----------
namespace {

void AppendLength(std::string& out, size_t length) {
  const auto value = static_cast<uint32_t>(length);
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<char>(value >> shift));
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

}  // namespace

void EncodeHeaders(const EventHeaders& headers, std::string& out) {
  out.clear();
  for (const auto& [name, value] : headers) {
    AppendLength(out, name.size());
    out.append(name);
    AppendLength(out, value.size());
    out.append(value);
  }
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
namespace {

prometheus::Histogram& PublishSeconds() {
  static prometheus::Histogram* histogram = &GetEventLogMetrics().publish_seconds.Add(
      {{"backend", "sqlite"}},
      prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                              0.25, 0.5, 1, 2.5, 5, 10});
  return *histogram;
}

}  // namespace

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

namespace {

// Every SharedFile of the process by canonical path; never destroyed (used at exit).
std::mutex& FilesMutex() {
  static auto* mutex = new std::mutex;
  return *mutex;
}
std::map<std::string, std::weak_ptr<SharedFile>>& Files() {
  static auto* files = new std::map<std::string, std::weak_ptr<SharedFile>>;
  return *files;
}

}  // namespace

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

namespace {

class SqlitePublisher : public EventPublisher {
 public:
  SqlitePublisher(std::shared_ptr<SharedFile> shared, size_t max_event_bytes)
      : shared_(std::move(shared)), max_event_bytes_(max_event_bytes) {}
  absl::Status Publish(absl::Span<const OutgoingEvent> events, absl::Duration timeout) override {
    // SQLite would take any size; the limit is the Kafka backend's, so that what works
    // embedded works on a cluster too.
    if (absl::Status sized = CheckEventSizes(events, MaxEventBytes()); !sized.ok()) return sized;
    return shared_->Publish(events, timeout);
  }
  size_t MaxEventBytes() const override { return max_event_bytes_; }

 private:
  std::shared_ptr<SharedFile> shared_;
  const size_t max_event_bytes_;
};

}  // namespace

std::unique_ptr<EventPublisher> NewPublisher(std::shared_ptr<SharedFile> shared,
                                             size_t max_event_bytes) {
  return std::make_unique<SqlitePublisher>(std::move(shared), max_event_bytes);
}

// --- Reading ----------------------------------------------------------------------------

// Waits until this process commits, another connection commits (seen through
// `reader`'s data version, checked every 20 ms), `stop` is set, or `until`.
absl::Status WaitForChange(SharedFile& shared, EventReader& reader, uint64_t sequence,
                           int64_t data_version, absl::Time until, const std::atomic<bool>* stop) {
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

}  // namespace stip::sqlite
