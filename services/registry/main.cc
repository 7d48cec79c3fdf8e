// stip-registry: keeps the register (parks, enterprises, filings, decisions), the Torch
// program roster and the statistics; applies stip.filings.v1 and stip.decisions.v1 to its
// database exactly once; relays roster changes to stip.listings.v1 through its outbox; and
// serves RegistryService, with the Watch streams regulators follow. Assembles what
// services/registry and services/common provide; the logic is there.
//
// Exit codes: 0 after a clean shutdown; 1 when something fails at start-up (the database,
// the event log, a port) or a step of the shutdown fails; 2 for a usage error.
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "services/common/abseil_runtime.h"
#include "services/common/config.h"
#include "services/common/dependency_watch.h"
#include "services/common/event_log.h"
#include "services/common/grpc_server.h"
#include "services/common/health.h"
#include "services/common/logging.h"
#include "services/common/metrics.h"
#include "services/common/shutdown.h"
#include "services/registry/change_notifier.h"
#include "services/registry/housekeeping.h"
#include "services/registry/outbox_relay.h"
#include "services/registry/park_catalogue.h"
#include "services/registry/registry_applier.h"
#include "services/registry/registry_service.h"
#include "services/registry/registry_store.h"
#include "spdlog/spdlog.h"

namespace {

constexpr char kName[] = "stip-registry";

}  // namespace

int main(int argc, char** argv) {
  stip::BlockShutdownSignals();  // before any thread exists

  stip::ServiceFlags flags;
  flags.grpc.listen_address = "0.0.0.0:50053";
  flags.admin_listen = "127.0.0.1:9463";
  flags.grpc.health_service_names = {"stip.v1.RegistryService"};
  CLI::App app{
      "stip-registry: the register of parks, enterprises, filings and decisions, the Torch "
      "program roster and statistics; applies stip.filings.v1 and stip.decisions.v1 to its "
      "database exactly once and serves RegistryService\n\n"
      "Example:\n  stip-registry --events kafka://kafka:9092 "
      "--db postgresql://stip@postgres:5432/stip"};
  flags.Register(app);
  std::string db_url = "sqlite:///var/lib/stip/registry.db";
  stip::AddSetting(app, "--db", db_url,
                   "The register's database: postgresql://user@host:port/dbname (the password "
                   "from PGPASSWORD or ~/.pgpass) or sqlite:///absolute/path.db");
  bool load_catalogue = true;
  stip::AddSetting(app, "--load-park-catalogue", load_catalogue,
                   "On first start (no park registered), register the national STIPs shipped "
                   "with this build");
  int partitions = 6;
  stip::AddSetting(app, "--partitions", partitions,
                   "Partitions of the topics created at start-up (existing ones are left)")
      ->check(CLI::Range(1, 10000));
  stip::registry::ApplierOptions applier_options;
  stip::AddSetting(app, "--group", applier_options.group,
                   "Consumer group of the applier (its positions are kept in the database)");
  stip::AddSetting(app, "--filings-topic", applier_options.filings_topic,
                   "Topic of accepted filings read (tests and migrations)");
  stip::AddSetting(app, "--decisions-topic", applier_options.decisions_topic,
                   "Topic of decisions read (tests and migrations)");
  stip::AddDurationSetting(app, "--batch-delay", applier_options.max_batch_delay,
                           "A batch is applied at most this long after its first event");
  stip::registry::RegistryServiceOptions service_options;
  stip::AddDurationSetting(app, "--heartbeat-interval", service_options.heartbeat_interval,
                           "Watch streams: a heartbeat after this long without a message");
  stip::AddDurationSetting(app, "--slow-subscriber-timeout",
                           service_options.slow_subscriber_timeout,
                           "Watch streams: a subscriber that has not taken a message for this "
                           "long is cut off (RESOURCE_EXHAUSTED) and may resume from its cursor");
  stip::AddSetting(app, "--watch-max-streams", service_options.max_subscribers,
                   "Watch streams open at once; more are refused (RESOURCE_EXHAUSTED)")
      ->check(CLI::Range(1, 100000));
  stip::AddSetting(app, "--watch-max-streams-per-client",
                   service_options.max_subscribers_per_client,
                   "Watch streams one client address may have open at once (behind a proxy "
                   "every client has the proxy's address: raise it to --watch-max-streams)")
      ->check(CLI::Range(1, 100000));
  stip::AddDurationSetting(app, "--max-decision-wait", service_options.max_decision_wait,
                           "The longest one WaitForDecision call waits, whatever its deadline; "
                           "it then answers DEADLINE_EXCEEDED and the client calls again");
  stip::AddSetting(app, "--max-waiting-decision-calls", service_options.max_waiting_calls,
                   "WaitForDecision calls waiting at once (each holds a gRPC thread; keep it "
                   "below --grpc-max-threads); more are refused (RESOURCE_EXHAUSTED)")
      ->check(CLI::Range(1, 100000));
  absl::Duration feed_retention = absl::Hours(24 * 30);
  stip::AddDurationSetting(app, "--feed-retention", feed_retention,
                           "How far back a Watch cursor may resume; older cursors get "
                           "OUT_OF_RANGE (the register itself keeps everything)");
  stip::ParseCommandLineOrExit(app, argc, argv);
  stip::InitLogging(kName, flags.log_level, flags.log_format);
  stip::ConfigureAbseilForServing();

  auto store = stip::registry::RegistryStore::Open(db_url);
  if (!store.ok()) {
    return stip::StartupFailure(kName,
                                absl::IsInvalidArgument(store.status()) ? stip::kUsageExitCode : 1,
                                absl::StrCat("--db: ", store.status().ToString()));
  }
  if (load_catalogue) {
    auto loaded = (*store)->LoadCatalogueIfEmpty(stip::registry::EmbeddedParkCatalogue());
    if (!loaded.ok()) return stip::StartupFailure(kName, 1, loaded.status().ToString());
    if (*loaded > 0) spdlog::info("park catalogue: {} national STIPs registered", *loaded);
  }

  auto log = flags.OpenEventLog();
  if (!log.ok()) {
    return stip::StartupFailure(kName,
                                absl::IsInvalidArgument(log.status()) ? stip::kUsageExitCode : 1,
                                log.status().ToString());
  }
  const std::vector<stip::TopicSpec> topic_specs = stip::StandardTopics(
      partitions, {applier_options.filings_topic, applier_options.decisions_topic});
  if (absl::Status ensured = (*log)->EnsureTopics(topic_specs); !ensured.ok()) {
    return stip::StartupFailure(kName, 1,
                                absl::StrCat("creating the topics: ", ensured.ToString()));
  }
  auto publisher = (*log)->NewPublisher();
  if (!publisher.ok()) return stip::StartupFailure(kName, 1, publisher.status().ToString());

  // Declared in dependency order: each outlives what uses it.
  stip::ShutdownCoordinator shutdown(flags.shutdown_timeout);
  stip::HealthReporter health;
  stip::registry::ChangeNotifier notifier;
  stip::registry::RegistryApplier applier(log->get(), store->get(), &notifier, applier_options);
  stip::registry::OutboxRelay relay(store->get(), publisher->get(), &notifier);
  auto metrics = stip::MetricsServer::Start(flags.admin_listen);
  if (!metrics.ok()) return stip::StartupFailure(kName, 1, metrics.status().ToString());
  stip::registry::RegistryServiceImpl service(store->get(), &notifier, service_options);
  auto server = stip::StartGrpcServer(flags.grpc, {&service}, &health);
  if (!server.ok()) return stip::StartupFailure(kName, 1, server.status().ToString());
  stip::ProcessorThread apply("apply", &applier, shutdown.RequestShutdownOnFailure("apply"));
  stip::ProcessorThread relay_thread("outbox", &relay, shutdown.RequestShutdownOnFailure("outbox"));
  stip::registry::Housekeeping housekeeping(store->get(), &service, feed_retention);
  stip::ProcessorThread housekeeping_thread("housekeeping", &housekeeping);
  stip::DependencyWatch dependencies(
      &health, {{"database", [&store] { return (*store)->SchemaVersion().status(); }},
                {"event log", [&log] { return (*log)->CheckReachable(absl::Seconds(3)); }},
                stip::ProgressCheck("outbox", "relaying the outbox",
                                    [&relay] { return relay.FailuresInARow(); })});
  stip::ProcessorThread dependency_thread("dependencies", &dependencies);
  spdlog::info("{} ready: gRPC on port {}, metrics on port {}, {} + {} -> {} as {}", kName,
               (*server)->port(), (*metrics)->port(), applier_options.filings_topic,
               applier_options.decisions_topic, (*store)->DisplayName(), applier_options.group);

  shutdown.AddStep("health NOT_SERVING", [&health](absl::Time) {
    health.SetServing(false, "draining");
    return absl::OkStatus();
  });
  shutdown.AddStep("end Watch streams", [&service](absl::Time) {
    service.Stop();
    return absl::OkStatus();
  });
  shutdown.AddStep("gRPC server", [&server](absl::Time deadline) {
    (*server)->Shutdown(deadline);
    return absl::OkStatus();
  });
  shutdown.AddStep(
      "stop applier, relay and housekeeping",
      stip::StopProcessorsStep({&apply, &relay_thread, &housekeeping_thread, &dependency_thread}));
  shutdown.AddStep("metrics server", [&metrics](absl::Time) {
    metrics->reset();
    return absl::OkStatus();
  });
  if (absl::Status started = shutdown.Start(); !started.ok()) {
    return stip::StartupFailure(kName, 1, started.ToString());
  }
  const bool clean = shutdown.WaitForShutdown().ok();
  notifier.Shutdown();
  return clean ? 0 : 1;
}
