// Process-wide Prometheus metrics, through prometheus-cpp. One registry per process,
// served over HTTP by MetricsServer (the admin port). Thread-safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace prometheus {
class Exposer;
}

namespace stip {

// The process's registry. Every metric of the system is registered here.
prometheus::Registry& MetricsRegistry();

// The event log's metric families, shared by both backends.
struct EventLogMetrics {
  prometheus::Family<prometheus::Counter>& events_consumed;       // {topic}
  prometheus::Family<prometheus::Counter>& events_produced;       // {topic}
  prometheus::Family<prometheus::Counter>& events_dead_lettered;  // {topic}
  prometheus::Family<prometheus::Counter>& batches;            // {group, result=committed|aborted}
  prometheus::Family<prometheus::Gauge>& consumer_lag;         // {group, topic, partition}
  prometheus::Family<prometheus::Histogram>& publish_seconds;  // {backend}
  prometheus::Family<prometheus::Gauge>& batches_aborted_in_a_row;  // {group}
};
EventLogMetrics& GetEventLogMetrics();

// Serves MetricsRegistry() at http://address/metrics until destroyed.
class MetricsServer {
 public:
  // `address` is "host:port"; port 0 picks a free one. Fails with kUnavailable, naming the
  // address, when it cannot listen.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& address);
  ~MetricsServer();
  int port() const { return port_; }

 private:
  MetricsServer(std::shared_ptr<prometheus::Registry> registry,
                std::unique_ptr<prometheus::Exposer> exposer, int port);
  // The Exposer holds only a weak_ptr to what it serves: this keeps it alive.
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_;
};

}  // namespace stip
