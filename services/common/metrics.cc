#include "services/common/metrics.h"

#include <exception>

#include "absl/strings/str_cat.h"
#include "prometheus/exposer.h"

namespace stip {

prometheus::Registry& MetricsRegistry() {
  static auto* registry = new prometheus::Registry();  // never destroyed: used at exit
  return *registry;
}

EventLogMetrics& GetEventLogMetrics() {
  static auto* metrics = new EventLogMetrics{
      prometheus::BuildCounter()
          .Name("stip_events_consumed_total")
          .Help("Events consumed from the event log, by topic")
          .Register(MetricsRegistry()),
      prometheus::BuildCounter()
          .Name("stip_events_produced_total")
          .Help("Events produced to the event log and acknowledged, by topic")
          .Register(MetricsRegistry()),
      prometheus::BuildCounter()
          .Name("stip_events_dead_lettered_total")
          .Help("Events sent to the dead-letter topic, by source topic")
          .Register(MetricsRegistry()),
      prometheus::BuildCounter()
          .Name("stip_processor_batches_total")
          .Help("Exactly-once processor batches, by group and result (committed, aborted)")
          .Register(MetricsRegistry()),
      prometheus::BuildGauge()
          .Name("stip_consumer_lag")
          .Help("Events behind the end of the partition, by group, topic and partition")
          .Register(MetricsRegistry()),
      prometheus::BuildHistogram()
          .Name("stip_publish_seconds")
          .Help("Time from Publish to the log's acknowledgement, by backend")
          .Register(MetricsRegistry()),
      prometheus::BuildGauge()
          .Name("stip_event_batches_aborted_in_a_row")
          .Help("Batches a processor aborted since its last commit, by group: above a few, "
                "its partitions make no progress and readiness says NOT_SERVING")
          .Register(MetricsRegistry()),
  };
  return *metrics;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& address) {
  try {
    auto exposer = std::make_unique<prometheus::Exposer>(address, /*num_threads=*/1);
    // Not owning: MetricsRegistry() is never destroyed.
    auto registry =
        std::shared_ptr<prometheus::Registry>(&MetricsRegistry(), [](prometheus::Registry*) {});
    exposer->RegisterCollectable(registry);
    const auto ports = exposer->GetListeningPorts();
    const int port = ports.empty() ? 0 : ports.front();
    return std::unique_ptr<MetricsServer>(
        new MetricsServer(std::move(registry), std::move(exposer), port));
  } catch (const std::exception& e) {
    // civetweb reports a busy port or a bad address by throwing.
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
}

MetricsServer::MetricsServer(std::shared_ptr<prometheus::Registry> registry,
                             std::unique_ptr<prometheus::Exposer> exposer, int port)
    : registry_(std::move(registry)), exposer_(std::move(exposer)), port_(port) {}

MetricsServer::~MetricsServer() = default;

}  // namespace stip
