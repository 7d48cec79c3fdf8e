#include "services/registry/housekeeping.h"

#include "prometheus/gauge.h"
#include "services/common/metrics.h"
#include "spdlog/spdlog.h"

namespace stip::registry {

Housekeeping::Housekeeping(RegistryStore* store, RegistryServiceImpl* service,
                           absl::Duration feed_retention)
    : store_(store), service_(service), feed_retention_(feed_retention) {}

absl::Status Housekeeping::Run() {
  static prometheus::Gauge& subscribers = prometheus::BuildGauge()
                                              .Name("stip_registry_watch_subscribers")
                                              .Help(
                                                  "Watch streams open now (decisions and "
                                                  "listings)")
                                              .Register(MetricsRegistry())
                                              .Add({});
  static prometheus::Gauge& cut_off =
      prometheus::BuildGauge()
          .Name("stip_registry_watch_slow_subscribers_cut_off")
          .Help("Watch subscribers cut off for falling behind, since start")
          .Register(MetricsRegistry())
          .Add({});
  absl::Time next_prune = absl::Now();
  while (!stop_.WaitForNotificationWithTimeout(absl::Seconds(2))) {
    subscribers.Set(service_->ActiveSubscribers());
    cut_off.Set(static_cast<double>(service_->SlowSubscribersCutOff()));
    if (absl::Now() >= next_prune) {
      if (absl::Status pruned = store_->PruneFeeds(absl::Now() - feed_retention_); !pruned.ok()) {
        spdlog::warn("pruning the feeds: {}", pruned.ToString());
      }
      next_prune = absl::Now() + absl::Minutes(10);
    }
  }
  return absl::OkStatus();
}

}  // namespace stip::registry
