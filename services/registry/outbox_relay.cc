#include "services/registry/outbox_relay.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "services/common/metrics.h"
#include "spdlog/spdlog.h"

namespace stip::registry {
namespace {

struct RelayMetrics {
  prometheus::Gauge& backlog;
  prometheus::Counter& relayed;
  prometheus::Counter& dead_lettered;
  prometheus::Gauge& failures_in_a_row;
};

RelayMetrics& Metrics() {
  static RelayMetrics* const metrics = [] {
    auto& backlog = prometheus::BuildGauge()
                        .Name("stip_registry_outbox_backlog")
                        .Help("Events in the outbox not yet acknowledged by the event log")
                        .Register(MetricsRegistry())
                        .Add({});
    auto& relayed = prometheus::BuildCounter()
                        .Name("stip_registry_outbox_relayed_total")
                        .Help("Events the outbox relay published")
                        .Register(MetricsRegistry())
                        .Add({});
    auto& dead_lettered = prometheus::BuildCounter()
                              .Name("stip_registry_outbox_dead_lettered_total")
                              .Help(
                                  "Outbox events over the event log's limit, relayed to "
                                  "stip.deadletter.v1 (cut to fit) instead")
                              .Register(MetricsRegistry())
                              .Add({});
    auto& failures = prometheus::BuildGauge()
                         .Name("stip_registry_outbox_failures_in_a_row")
                         .Help(
                             "Relay rounds failed since the last one that published: above "
                             "a few, readiness says NOT_SERVING")
                         .Register(MetricsRegistry())
                         .Add({});
    return new RelayMetrics{backlog, relayed, dead_lettered, failures};
  }();
  return *metrics;
}

}  // namespace

OutboxRelay::OutboxRelay(RegistryStore* store, EventPublisher* publisher, ChangeNotifier* notifier,
                         OutboxRelayOptions options)
    : store_(store), publisher_(publisher), notifier_(notifier), options_(options) {}

void OutboxRelay::Failed() {
  Metrics().failures_in_a_row.Set(static_cast<double>(++failures_in_a_row_));
}

void OutboxRelay::Stop() {
  stop_ = true;
  notifier_->WakeAll();
}

absl::Status OutboxRelay::Run() {
  absl::Duration backoff = options_.retry_backoff;
  auto pause = [&] {
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(30));
  };
  while (!stop_) {
    const uint64_t version = notifier_->Version();  // before reading: no change missed
    auto pending = store_->PendingOutbox(options_.max_batch);
    if (!pending.ok()) {
      spdlog::warn("reading the outbox failed: {}", pending.status().ToString());
      Failed();
      pause();
      continue;
    }
    if (pending->empty()) {
      Metrics().backlog.Set(0);
      notifier_->Wait(version, absl::Now() + options_.idle_poll);
      continue;
    }
    std::vector<OutgoingEvent> events;
    events.reserve(pending->size());
    for (const OutboxEvent& entry : *pending) {
      // The log would refuse it on every try and hold back everything behind it.
      if (const size_t bytes = EventBytes(entry.event); bytes > publisher_->MaxEventBytes()) {
        const std::string reason = absl::StrCat(
            "an outbox event of ", bytes, " bytes for topic ", entry.event.topic,
            " is over the event log's limit of ", publisher_->MaxEventBytes(), " bytes");
        spdlog::error("{}; dead-lettered instead", reason);
        events.push_back(DeadLetterForOutput(entry.event, reason, "/stip/registry outbox",
                                             publisher_->MaxEventBytes()));
        Metrics().dead_lettered.Increment();
        continue;
      }
      events.push_back(entry.event);
    }
    if (absl::Status published = publisher_->Publish(events, options_.publish_timeout);
        !published.ok()) {
      spdlog::warn("relaying {} outbox events failed, retrying: {}", events.size(),
                   published.ToString());
      Failed();
      pause();
      continue;
    }
    if (absl::Status marked = store_->MarkRelayed(pending->back().seq); !marked.ok()) {
      // Published but not marked: they will be published again, with the same ids.
      spdlog::warn("marking {} outbox events relayed failed: {}", events.size(), marked.ToString());
      Failed();
      pause();
      continue;
    }
    backoff = options_.retry_backoff;
    failures_in_a_row_ = 0;
    Metrics().failures_in_a_row.Set(0);
    relayed_ += static_cast<int64_t>(events.size());
    Metrics().relayed.Increment(static_cast<double>(events.size()));
    if (auto backlog = store_->OutboxBacklog(); backlog.ok()) {
      Metrics().backlog.Set(static_cast<double>(*backlog));
    }
  }
  return absl::OkStatus();
}

}  // namespace stip::registry
