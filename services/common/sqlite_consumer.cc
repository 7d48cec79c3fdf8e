// EventConsumer on SQLite (SqliteConsumer): a member of a consumer group (GroupMember) that
// reads its partitions from the group's committed offsets and commits when told to. The
// design (consumer groups, waking readers) is described at the top of sqlite_event_log.cc.
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/metrics.h"
#include "services/common/sqlite_db.h"
#include "services/common/sqlite_internal.h"

namespace stip::sqlite {
namespace {

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

}  // namespace

absl::StatusOr<std::unique_ptr<EventConsumer>> NewConsumer(std::shared_ptr<SharedFile> shared,
                                                           const ConsumerOptions& options) {
  STIP_ASSIGN_OR_RETURN(std::unique_ptr<SqliteConsumer> consumer,
                        SqliteConsumer::Create(std::move(shared), options));
  return std::unique_ptr<EventConsumer>(std::move(consumer));
}

}  // namespace stip::sqlite
