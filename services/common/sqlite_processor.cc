// ExactlyOnceProcessor on SQLite (SqliteProcessor): each batch is read from the group's
// committed offsets and, in ONE write transaction, checked, handled, appended and committed.
// The design (processors, fencing) is described at the top of sqlite_event_log.cc.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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
#include "spdlog/spdlog.h"

namespace stip::sqlite {
namespace {

// --- Exactly-once processor --------------------------------------------------------------

// An output over the event limit goes to the dead-letter topic, cut to fit: SQLite would
// take it, but the limit is the Kafka backend's, so that both behave alike.
class CollectingOutput : public BatchOutput {
 public:
  CollectingOutput(size_t max_event_bytes, std::string source)
      : max_event_bytes_(max_event_bytes), source_(std::move(source)) {}

  void Emit(OutgoingEvent event) override {
    if (const size_t bytes = EventBytes(event); bytes > max_event_bytes_) {
      const std::string reason =
          absl::StrCat("an event of ", bytes, " bytes for topic ", event.topic,
                       " is over the event log's limit of ", max_event_bytes_, " bytes");
      spdlog::warn("processor of group '{}': {}; dead-lettered instead", source_, reason);
      dead_letters.push_back(DeadLetterForOutput(event, reason, source_, max_event_bytes_));
      ++dead_lettered_from[event.topic];
      return;
    }
    outputs.push_back(std::move(event));
  }
  void DeadLetter(const ConsumedEvent& event, std::string_view reason) override {
    dead_letters.push_back(DeadLetterFor(event, reason, max_event_bytes_));
    ++dead_lettered_from[event.topic];
  }

  const size_t max_event_bytes_;
  const std::string source_;

  std::vector<OutgoingEvent> outputs;
  std::vector<OutgoingEvent> dead_letters;
  std::map<std::string, int64_t> dead_lettered_from;
};

class SqliteProcessor : public ExactlyOnceProcessor {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteProcessor>> Create(std::shared_ptr<SharedFile> shared,
                                                                 const ProcessorOptions& options,
                                                                 BatchHandler* handler,
                                                                 size_t max_event_bytes);

  absl::Status Run() override;
  void Stop() override {
    stop_ = true;
    shared_->WakeAll();
  }
  ProcessorCounters Counters() const override {
    return {batches_committed_.load(), batches_aborted_.load(),      events_consumed_.load(),
            events_produced_.load(),   events_dead_lettered_.load(), events_in_hand_.load(),
            aborted_in_a_row_.load()};
  }

 private:
  enum class Outcome { kCommitted, kStale, kHandlerFailed };

  SqliteProcessor(std::shared_ptr<SharedFile> shared, ProcessorOptions options,
                  BatchHandler* handler, size_t max_event_bytes)
      : shared_(std::move(shared)),
        options_(std::move(options)),
        handler_(handler),
        max_event_bytes_(max_event_bytes) {}

  absl::Status Loop();
  // Starts a batch at the group's committed offsets of the assigned partitions.
  absl::Status StartBatch();
  // Reads more of the assigned partitions into the batch, up to max_batch_events.
  absl::Status ReadMore();
  absl::StatusOr<Outcome> WriteBatch();
  // Counts a batch that was not committed (the handler or the log failed it).
  void CountAborted();
  void DropBatch() {
    retrying_ = false;
    batch_.clear();
    events_in_hand_ = 0;
    batch_start_.clear();
    read_positions_.clear();
  }
  absl::Status UpdateLag();
  // Sleeps `duration`, following the group meanwhile; stops early for Stop().
  absl::Status Backoff(absl::Duration duration);

  std::shared_ptr<SharedFile> shared_;
  const ProcessorOptions options_;
  BatchHandler* const handler_;
  const size_t max_event_bytes_;
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
      events_produced_{0}, events_dead_lettered_{0}, events_in_hand_{0}, aborted_in_a_row_{0};
};

absl::StatusOr<std::unique_ptr<SqliteProcessor>> SqliteProcessor::Create(
    std::shared_ptr<SharedFile> shared, const ProcessorOptions& options, BatchHandler* handler,
    size_t max_event_bytes) {
  if (options.group.empty() || options.input_topics.empty() || handler == nullptr ||
      options.max_batch_events == 0) {
    return absl::InvalidArgumentError(
        "a processor needs a group, input topics, a handler and max_batch_events > 0");
  }
  std::unique_ptr<SqliteProcessor> processor(
      new SqliteProcessor(std::move(shared), options, handler, max_event_bytes));
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
      // Not counted as an aborted batch (the handler never saw it), but no progress either.
      GetEventLogMetrics()
          .batches_aborted_in_a_row.Add({{"group", options_.group}})
          .Set(static_cast<double>(++aborted_in_a_row_));
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
  events_in_hand_ = static_cast<int64_t>(batch_.size());
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

  CollectingOutput output(max_event_bytes_, options_.group);
  if (absl::Status handled = handler_->HandleBatch(batch_, output); !handled.ok()) {
    transaction.Rollback();
    CountAborted();
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
    CountAborted();
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
  aborted_in_a_row_ = 0;
  metrics.batches_aborted_in_a_row.Add({{"group", options_.group}}).Set(0);
  events_consumed_ += static_cast<int64_t>(batch_.size());
  events_produced_ += static_cast<int64_t>(output.outputs.size());
  events_dead_lettered_ += static_cast<int64_t>(output.dead_letters.size());
  if (absl::Now() >= next_lag_update_) {
    for (const auto& [tp, next] : next_offsets) read_positions_[tp] = next;
    STIP_RETURN_IF_ERROR(UpdateLag());
  }
  return Outcome::kCommitted;
}

void SqliteProcessor::CountAborted() {
  ++batches_aborted_;
  EventLogMetrics& metrics = GetEventLogMetrics();
  metrics.batches.Add({{"group", options_.group}, {"result", "aborted"}}).Increment();
  metrics.batches_aborted_in_a_row.Add({{"group", options_.group}})
      .Set(static_cast<double>(++aborted_in_a_row_));
}

absl::Status SqliteProcessor::UpdateLag() {
  next_lag_update_ = absl::Now() + kLagInterval;
  for (const auto& [tp, position] : read_positions_) {
    STIP_ASSIGN_OR_RETURN(auto bounds, reader_->Bounds(tp));
    SetLag(options_.group, tp, std::max<int64_t>(0, bounds.second - position));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ExactlyOnceProcessor>> NewProcessor(
    std::shared_ptr<SharedFile> shared, const ProcessorOptions& options, BatchHandler* handler,
    size_t max_event_bytes) {
  STIP_ASSIGN_OR_RETURN(
      std::unique_ptr<SqliteProcessor> processor,
      SqliteProcessor::Create(std::move(shared), options, handler, max_event_bytes));
  return std::unique_ptr<ExactlyOnceProcessor>(std::move(processor));
}

}  // namespace stip::sqlite
