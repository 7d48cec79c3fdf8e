#include "services/registry/outbox_relay.h"

#include <algorithm>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "services/common/metrics.h"
#include "spdlog/spdlog.h"

namespace stip::registry {
namespace {

struct RelayMetrics {
  prometheus::Gauge& backlog;
  prometheus::Counter& relayed;
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
    return new RelayMetrics{backlog, relayed};
  }();
  return *metrics;
}

}  // namespace

OutboxRelay::OutboxRelay(RegistryStore* store, EventPublisher* publisher, ChangeNotifier* notifier,
                         OutboxRelayOptions options)
    : store_(store), publisher_(publisher), notifier_(notifier), options_(options) {}

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
    for (const OutboxEvent& entry : *pending) events.push_back(entry.event);
    if (absl::Status published = publisher_->Publish(events, options_.publish_timeout);
        !published.ok()) {
      spdlog::warn("relaying {} outbox events failed, retrying: {}", events.size(),
                   published.ToString());
      pause();
      continue;
    }
    if (absl::Status marked = store_->MarkRelayed(pending->back().seq); !marked.ok()) {
      // Published but not marked: they will be published again, with the same ids.
      spdlog::warn("marking {} outbox events relayed failed: {}", events.size(), marked.ToString());
      pause();
      continue;
    }
    backoff = options_.retry_backoff;
    relayed_ += static_cast<int64_t>(events.size());
    Metrics().relayed.Increment(static_cast<double>(events.size()));
    if (auto backlog = store_->OutboxBacklog(); backlog.ok()) {
      Metrics().backlog.Set(static_cast<double>(*backlog));
    }
  }
  return absl::OkStatus();
}

}  // namespace stip::registry
