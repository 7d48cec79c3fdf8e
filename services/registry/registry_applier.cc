#include "services/registry/registry_applier.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "prometheus/counter.h"
#include "prometheus/histogram.h"
#include "services/common/metrics.h"
#include "spdlog/spdlog.h"

namespace stip::registry {
namespace {

struct ApplierMetrics {
  prometheus::Family<prometheus::Counter>& events;  // {result}
  prometheus::Histogram& apply_seconds;
  prometheus::Counter& batch_failures;
};

ApplierMetrics& Metrics() {
  static ApplierMetrics* const metrics = [] {
    auto& events = prometheus::BuildCounter()
                       .Name("stip_registry_events_applied_total")
                       .Help(
                           "Events the registry applied, by what they did: filing, "
                           "filing_repeat, filing_conflict, decision, decision_repeat, "
                           "decision_stale, dead_letter, replayed (skipped: already applied)")
                       .Register(MetricsRegistry());
    auto& latency =
        prometheus::BuildHistogram()
            .Name("stip_registry_apply_seconds")
            .Help("Time to apply one batch in one database transaction")
            .Register(MetricsRegistry())
            .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.025,
                                                             0.05, 0.1, 0.25, 0.5, 1, 2.5, 5});
    auto& failures = prometheus::BuildCounter()
                         .Name("stip_registry_apply_failures_total")
                         .Help("Batches the database refused (retried with back-off)")
                         .Register(MetricsRegistry())
                         .Add({});
    return new ApplierMetrics{events, latency, failures};
  }();
  return *metrics;
}

void CountApplied(const ApplyCounts& counts) {
  auto& events = Metrics().events;
  const std::pair<const char*, int64_t> results[] = {
      {"filing", counts.filings_recorded},
      {"filing_repeat", counts.filings_repeated},
      {"filing_conflict", counts.filing_conflicts},
      {"decision", counts.decisions_recorded - counts.decisions_stale},
      {"decision_repeat", counts.decisions_repeated},
      {"decision_stale", counts.decisions_stale},
      {"dead_letter", counts.dead_letters},
      {"replayed", counts.events_already_applied}};
  for (const auto& [result, count] : results) {
    if (count > 0) events.Add({{"result", result}}).Increment(static_cast<double>(count));
  }
}

}  // namespace

PositionedEvent DecodeRegistryEvent(const ConsumedEvent& event, const ApplierOptions& options) {
  PositionedEvent decoded;
  decoded.position = {event.topic, event.partition};
  decoded.offset = event.offset;
  if (event.topic == options.filings_topic) {
    v1::AcceptedFiling filing;
    if (!filing.ParseFromString(event.value)) {
      decoded.event = DeadLetter{event, "not a stip.v1.AcceptedFiling in protobuf encoding"};
    } else if (filing.filing_id().empty() || filing.filing().uscc().empty()) {
      decoded.event = DeadLetter{event, "stip.v1.AcceptedFiling without filing_id or uscc"};
    } else {
      decoded.event = std::move(filing);
    }
  } else if (event.topic == options.decisions_topic) {
    v1::QualificationDecision decision;
    if (!decision.ParseFromString(event.value)) {
      decoded.event = DeadLetter{event, "not a stip.v1.QualificationDecision in protobuf encoding"};
    } else if (decision.decision_id().empty() || decision.uscc().empty() ||
               decision.filing_id().empty()) {
      decoded.event =
          DeadLetter{event, "stip.v1.QualificationDecision without decision_id, filing_id or uscc"};
    } else {
      decoded.event = std::move(decision);
    }
  } else {
    decoded.event = DeadLetter{event, absl::StrCat("the registry does not read ", event.topic)};
  }
  return decoded;
}

RegistryApplier::RegistryApplier(EventLog* log, RegistryStore* store, ChangeNotifier* notifier,
                                 ApplierOptions options)
    : log_(log), store_(store), notifier_(notifier), options_(std::move(options)) {}

absl::Status RegistryApplier::ApplyWithRetry(const std::vector<PositionedEvent>& batch) {
  absl::Duration backoff = options_.retry_backoff;
  while (true) {
    const absl::Time started = absl::Now();
    auto counts = store_->Apply(options_.group, batch);
    if (counts.ok()) {
      Metrics().apply_seconds.Observe(absl::ToDoubleSeconds(absl::Now() - started));
      CountApplied(*counts);
      events_applied_ += static_cast<int64_t>(batch.size());
      notifier_->Notify();
      return absl::OkStatus();
    }
    Metrics().batch_failures.Increment();
    spdlog::warn("applying a batch of {} events failed, retrying in {}: {}", batch.size(),
                 absl::FormatDuration(backoff), counts.status().ToString());
    if (stop_) return counts.status();
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(30));
  }
}

absl::Status RegistryApplier::Run() {
  ConsumerOptions consumer_options;
  consumer_options.group = options_.group;
  consumer_options.topics = {options_.filings_topic, options_.decisions_topic};
  consumer_options.start_from_earliest = true;
  consumer_options.start_offsets = [this](const std::vector<TopicPartition>& partitions) {
    // Without the stored positions the consumer cannot start safely: wait for the database.
    absl::Duration backoff = options_.retry_backoff;
    while (true) {
      auto offsets = store_->StoredOffsets(options_.group, partitions);
      if (offsets.ok()) return *offsets;
      spdlog::warn("reading the stored positions failed, retrying in {}: {}",
                   absl::FormatDuration(backoff), offsets.status().ToString());
      if (stop_) return std::map<TopicPartition, int64_t>{};
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(30));
    }
  };
  auto consumer = log_->NewConsumer(consumer_options);
  if (!consumer.ok()) return consumer.status();

  std::vector<PositionedEvent> batch;
  absl::Time batch_started;
  while (!stop_) {
    auto events =
        (*consumer)->Poll(options_.max_batch_events - batch.size(),
                          batch.empty() ? absl::Milliseconds(200) : absl::Milliseconds(5));
    if (!events.ok()) {
      // The event log retries what it can itself; what comes back is worth a pause.
      spdlog::warn("polling {} and {} failed: {}", options_.filings_topic, options_.decisions_topic,
                   events.status().ToString());
      absl::SleepFor(options_.retry_backoff);
      continue;
    }
    if (batch.empty() && !events->empty()) batch_started = absl::Now();
    for (const ConsumedEvent& event : *events) {
      batch.push_back(DecodeRegistryEvent(event, options_));
    }
    if (batch.empty()) continue;
    if (batch.size() < options_.max_batch_events &&
        absl::Now() - batch_started < options_.max_batch_delay) {
      continue;
    }
    if (absl::Status applied = ApplyWithRetry(batch); !applied.ok()) break;  // stopping
    batch.clear();
    // For lag monitoring only: the positions that count are in the database.
    if (absl::Status committed = (*consumer)->Commit(); !committed.ok()) {
      spdlog::debug("committing offsets to the broker (monitoring only): {}", committed.ToString());
    }
  }
  if (!batch.empty() && ApplyWithRetry(batch).ok()) (void)(*consumer)->Commit();
  return (*consumer)->Close(absl::Seconds(10));
}

}  // namespace stip::registry
