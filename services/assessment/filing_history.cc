#include "services/assessment/filing_history.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "spdlog/spdlog.h"

namespace stip::assessment {
namespace {

constexpr size_t kPollEvents = 5000;
constexpr absl::Duration kPollTimeout = absl::Milliseconds(200);
constexpr absl::Duration kCloseTimeout = absl::Seconds(5);

}  // namespace

std::string EnterpriseYearKey(std::string_view uscc, int32_t fiscal_year) {
  return absl::StrCat(std::string(uscc), "/", fiscal_year);
}

FilingHistory::FilingHistory(EventLog* log, Options options, Classifier classify)
    : log_(log),
      options_(std::move(options)),
      classify_(std::move(classify)),
      reader_([this] { ReaderLoop(); }) {}

FilingHistory::~FilingHistory() { Stop(absl::Now() + kCloseTimeout); }

absl::Status FilingHistory::EnsureIndexedBelow(const std::map<int32_t, int64_t>& first_offsets) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> missing;
  for (const auto& [partition, offset] : first_offsets) {
    const int64_t indexed_end = partitions_[partition].indexed_end;
    if (indexed_end >= offset) continue;
    int64_t& target = targets_[partition];
    target = std::max(target, offset);
    missing.push_back(
        absl::StrCat(partition, " (read below ", indexed_end, ", batch from ", offset, ")"));
  }
  if (missing.empty()) return absl::OkStatus();
  if (stopping_) return absl::UnavailableError("the filing history is stopped");
  return absl::UnavailableError(absl::StrCat(
      "the history of ", options_.topic, " is not read up to the batch yet in partitions ",
      absl::StrJoin(missing, ", "), "; reading it, the batch is handed over again"));
}

FilingPast FilingHistory::Lookup(int32_t partition, int64_t offset,
                                 const IndexedFiling& filing) const {
  FilingPast past;
  absl::MutexLock lock(&mu_);
  auto index = partitions_.find(partition);
  if (index == partitions_.end()) return past;
  auto entries = index->second.filings.find(filing.enterprise_year);
  if (entries == index->second.filings.end()) return past;
  int32_t best = 0;
  for (const Entry& entry : entries->second) {
    // Entries are in offset order; later ones are the future of this position (a batch
    // handed over again after an abort sees them) and must not change the answer.
    if (entry.offset >= offset) break;
    if (entry.revision == filing.revision) {
      if (!past.repeat) {
        past.repeat_differs = entry.content_fingerprint != filing.content_fingerprint;
      }
      past.repeat = true;
    } else if (entry.revision < filing.revision && entry.revision > best) {
      best = entry.revision;
      past.superseded_filing_id = entry.filing_id;
    }
  }
  return past;
}

void FilingHistory::Record(int32_t partition, int64_t offset, std::optional<IndexedFiling> filing) {
  absl::MutexLock lock(&mu_);
  RecordLocked(partition, offset, std::move(filing));
}

void FilingHistory::RecordLocked(int32_t partition, int64_t offset,
                                 std::optional<IndexedFiling> filing) {
  PartitionIndex& index = partitions_[partition];
  if (offset < index.indexed_end) return;  // indexed already, by the handler or the reader
  if (filing.has_value()) {
    index.filings[filing->enterprise_year].push_back(
        {offset, filing->revision, filing->content_fingerprint, std::move(filing->filing_id)});
  }
  index.indexed_end = offset + 1;
}

bool FilingHistory::ReaderHasWorkLocked() const { return stopping_ || HasUnmetTargetsLocked(); }

bool FilingHistory::HasUnmetTargetsLocked() const {
  for (const auto& [partition, target] : targets_) {
    auto index = partitions_.find(partition);
    if (index == partitions_.end() || index->second.indexed_end < target) return true;
  }
  return false;
}

void FilingHistory::Stop(absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      stopping_ = true;
      stop_deadline_ = deadline;
    }
  }
  if (reader_.joinable()) reader_.join();
}

int64_t FilingHistory::catch_ups() const {
  absl::MutexLock lock(&mu_);
  return catch_ups_;
}

int64_t FilingHistory::events_read() const {
  absl::MutexLock lock(&mu_);
  return events_read_;
}

void FilingHistory::ReaderLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &FilingHistory::ReaderHasWorkLocked));
      if (stopping_) return;
    }
    if (absl::Status status = CatchUp(); !status.ok()) {
      spdlog::warn("reading the history of {} failed, trying again in {}: {}", options_.topic,
                   absl::FormatDuration(options_.retry_backoff), status.ToString());
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.retry_backoff);
    }
  }
}

absl::Status FilingHistory::CatchUp() {
  ConsumerOptions consumer_options;
  // Unique per catch-up, also across histories in one process and across pods (whose pids
  // are often all 1): a group shared with another reader would split the partitions.
  static std::atomic<int64_t> catch_up_counter{0};
  consumer_options.group = absl::StrCat(options_.reader_group_prefix, ".", getpid(), ".",
                                        ++catch_up_counter, ".", absl::Hex(std::random_device{}()));
  consumer_options.topics = {options_.topic};
  consumer_options.start_from_earliest = true;
  // Each partition from the end of what is indexed: a catch-up reads only what is missing.
  // Partitions with nothing indexed start at the earliest event kept.
  consumer_options.start_offsets = [this](const std::vector<TopicPartition>& assigned) {
    std::map<TopicPartition, int64_t> starts;
    absl::MutexLock lock(&mu_);
    for (const TopicPartition& tp : assigned) {
      auto index = partitions_.find(tp.partition);
      if (index != partitions_.end() && index->second.indexed_end > 0) {
        starts[tp] = index->second.indexed_end;
      }
    }
    return starts;
  };
  absl::StatusOr<std::unique_ptr<EventConsumer>> consumer = log_->NewConsumer(consumer_options);
  if (!consumer.ok()) return consumer.status();

  const absl::Time began = absl::Now();
  std::string wanted;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [partition, target] : targets_) {
      absl::StrAppend(&wanted, wanted.empty() ? "" : ", ", partition, " below ", target);
    }
  }
  spdlog::info("reading the history of {} (partitions {})", options_.topic, wanted);

  absl::Status status;
  int64_t read = 0;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      // A target once met stays met: the prefix only grows.
      for (auto it = targets_.begin(); it != targets_.end();) {
        auto index = partitions_.find(it->first);
        if (index != partitions_.end() && index->second.indexed_end >= it->second) {
          it = targets_.erase(it);
        } else {
          ++it;
        }
      }
      if (targets_.empty()) break;
    }
    absl::StatusOr<std::vector<ConsumedEvent>> events =
        (*consumer)->Poll(kPollEvents, kPollTimeout);
    if (!events.ok()) {
      status = events.status();
      break;
    }
    // Classified outside the lock: the handler's Lookup and Record are not held up by it.
    std::vector<std::optional<IndexedFiling>> classified;
    classified.reserve(events->size());
    for (const ConsumedEvent& event : *events) classified.push_back(classify_(event));
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < events->size(); ++i) {
      const ConsumedEvent& event = (*events)[i];
      if (event.topic != options_.topic) continue;
      // The reader started each partition at or below the prefix's end and is handed every
      // event from there on, so the handler's precondition of Record holds for it too.
      RecordLocked(event.partition, event.offset, std::move(classified[i]));
    }
    read += static_cast<int64_t>(events->size());
    events_read_ += static_cast<int64_t>(events->size());
  }

  absl::Time close_by;
  {
    absl::MutexLock lock(&mu_);
    close_by = std::min(stop_deadline_, absl::Now() + kCloseTimeout);
    if (status.ok() && !stopping_) ++catch_ups_;
  }
  if (absl::Status closed =
          (*consumer)->Close(std::max(close_by - absl::Now(), absl::ZeroDuration()));
      !closed.ok()) {
    spdlog::warn("closing the history reader of {}: {}", options_.topic, closed.ToString());
  }
  if (status.ok()) {
    spdlog::info("read the history of {}: {} events in {} ms", options_.topic, read,
                 absl::ToInt64Milliseconds(absl::Now() - began));
  }
  return status;
}

}  // namespace stip::assessment
