// stip-local: intake, assessment and registry with their processors in one process, on the
// embedded backends by default (the SQLite event log and the SQLite store, in one data
// directory), serving the three gRPC services on one port and the metrics endpoint.
// The same flags as the separate binaries point it at Kafka and PostgreSQL instead.
//
// First start: creates the data directory, registers the park catalogue, and writes the
// default policy into <data-dir>/policies (edit it there; SIGHUP reloads). SIGTERM stops it
// cleanly; a restart carries on where it stopped (every processor is exactly once, and an
// acknowledged filing is durable in the event log before the caller hears of it).
//
// Exit codes: 0 after a clean shutdown; 1 when something fails at start-up or in a
// shutdown step; 2 for a usage error.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "services/assessment/assessment_service.h"
#include "services/assessment/decision_handler.h"
#include "services/assessment/filing_history.h"
#include "services/assessment/policy_store.h"
#include "services/common/abseil_runtime.h"
#include "services/common/config.h"
#include "services/common/dependency_watch.h"
#include "services/common/event_log.h"
#include "services/common/grpc_server.h"
#include "services/common/health.h"
#include "services/common/logging.h"
#include "services/common/metrics.h"
#include "services/common/shutdown.h"
#include "services/intake/filing_intake.h"
#include "services/intake/inbound_handler.h"
#include "services/intake/intake_service.h"
#include "services/intake/registry_client.h"
#include "services/registry/change_notifier.h"
#include "services/registry/housekeeping.h"
#include "services/registry/outbox_relay.h"
#include "services/registry/park_catalogue.h"
#include "services/registry/registry_applier.h"
#include "services/registry/registry_service.h"
#include "services/registry/registry_store.h"
#include "spdlog/spdlog.h"

namespace stip {
extern const char kEmbeddedDefaultPolicy[];  // policies/stip-default.yaml, cmake/EmbedText.cmake
}  // namespace stip

namespace {

constexpr char kName[] = "stip-local";

std::string DefaultDataDir() {
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg != nullptr && *xdg != '\0') {
    return absl::StrCat(xdg, "/stip-compliance");
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return absl::StrCat(home, "/.local/share/stip-compliance");
  }
  return "stip-data";
}

// Creates `directory` with the default policy in it when it does not exist yet; an existing
// directory is the operator's and is left as it is.
absl::Status EnsurePolicies(const std::filesystem::path& directory) {
  std::error_code error;
  if (std::filesystem::exists(directory, error)) return absl::OkStatus();
  if (!std::filesystem::create_directories(directory, error)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", directory.string(), ": ", error.message()));
  }
  std::ofstream file(directory / "stip-default.yaml");
  file << stip::kEmbeddedDefaultPolicy;
  file.close();
  if (!file) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot write ", (directory / "stip-default.yaml").string()));
  }
  spdlog::info("policies: wrote the default policy to {}", directory.string());
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  stip::BlockShutdownSignals();  // before any thread exists

  stip::ServiceFlags flags;
  flags.events_url.clear();  // default: in the data directory
  flags.grpc.listen_address = "127.0.0.1:50050";
  flags.admin_listen = "127.0.0.1:9460";
  flags.grpc.health_service_names = {"stip.v1.IntakeService", "stip.v1.AssessmentService",
                                     "stip.v1.RegistryService"};
  CLI::App app{
      "stip-local: the whole system in one process - intake, assessment and registry with "
      "their processors - on an event log and a register kept in one data directory\n\n"
      "Examples:\n"
      "  stip-local --data-dir /var/lib/stip\n"
      "  stip-local --events kafka://127.0.0.1:9092 --db postgresql://stip@127.0.0.1/stip"};
  flags.Register(app);
  std::string data_dir = DefaultDataDir();
  stip::AddSetting(app, "--data-dir", data_dir,
                   "Where the embedded event log (events.db), the register (registry.db) and "
                   "the policies live; created on first start");
  std::string db_url;
  stip::AddSetting(app, "--db", db_url,
                   "The register's database (default: sqlite:///<data-dir>/registry.db), or "
                   "postgresql://user@host:port/dbname");
  std::string policies_dir;
  stip::AddSetting(app, "--policies", policies_dir,
                   "Directory of the policy set (default: <data-dir>/policies, created with "
                   "the default policy on first start); SIGHUP reloads it");
  int partitions = 3;
  stip::AddSetting(app, "--partitions", partitions,
                   "Partitions of the topics created at start-up (existing ones are left)")
      ->check(CLI::Range(1, 10000));
  std::string instance_id = stip::DefaultInstanceId();
  stip::AddSetting(app, "--instance-id", instance_id,
                   "This instance's id, stable across its restarts (Kafka transactions)");
  stip::ParseCommandLineOrExit(app, argc, argv);
  stip::InitLogging(kName, flags.log_level, flags.log_format);
  stip::ConfigureAbseilForServing();

  std::error_code error;
  std::filesystem::create_directories(data_dir, error);
  if (error) {
    return stip::StartupFailure(kName, 1,
                                absl::StrCat("--data-dir ", data_dir, ": ", error.message()));
  }
  data_dir = std::filesystem::absolute(data_dir).lexically_normal().string();
  if (flags.events_url.empty())
    flags.events_url = absl::StrCat("sqlite://", data_dir, "/events.db");
  if (db_url.empty()) db_url = absl::StrCat("sqlite://", data_dir, "/registry.db");
  if (policies_dir.empty()) {
    policies_dir = data_dir + "/policies";
    if (absl::Status written = EnsurePolicies(policies_dir); !written.ok()) {
      return stip::StartupFailure(kName, 1, written.ToString());
    }
  }
  // --- The stores: register, policies, event log ---------------------------------------
  auto store = stip::registry::RegistryStore::Open(db_url);
  if (!store.ok()) {
    return stip::StartupFailure(kName,
                                absl::IsInvalidArgument(store.status()) ? stip::kUsageExitCode : 1,
                                absl::StrCat("--db: ", store.status().ToString()));
  }
  auto loaded = (*store)->LoadCatalogueIfEmpty(stip::registry::EmbeddedParkCatalogue());
  if (!loaded.ok()) return stip::StartupFailure(kName, 1, loaded.status().ToString());
  if (*loaded > 0) spdlog::info("park catalogue: {} national STIPs registered", *loaded);
  auto policies = stip::assessment::PolicyStore::Open(policies_dir);
  if (!policies.ok()) {
    return stip::StartupFailure(kName, stip::kUsageExitCode,
                                absl::StrCat("--policies: ", policies.status().message()));
  }
  auto log = flags.OpenEventLog();
  if (!log.ok()) {
    return stip::StartupFailure(kName,
                                absl::IsInvalidArgument(log.status()) ? stip::kUsageExitCode : 1,
                                log.status().ToString());
  }
  if (absl::Status ensured = (*log)->EnsureTopics(stip::StandardTopics(partitions));
      !ensured.ok()) {
    return stip::StartupFailure(kName, 1,
                                absl::StrCat("creating the topics: ", ensured.ToString()));
  }
  auto publisher = (*log)->NewPublisher();
  if (!publisher.ok()) return stip::StartupFailure(kName, 1, publisher.status().ToString());

  // --- The three services' parts. Declared in dependency order: each outlives its users.
  stip::ShutdownCoordinator shutdown(flags.shutdown_timeout);
  stip::HealthReporter health;
  std::unique_ptr<stip::GrpcServer> server;  // set below; the intake's registry client is
                                             // connected in-process on its first call
  // Registry.
  stip::registry::ChangeNotifier notifier;
  stip::registry::RegistryApplier applier(log->get(), store->get(), &notifier);
  stip::registry::OutboxRelay relay(store->get(), publisher->get(), &notifier);
  stip::registry::RegistryServiceImpl registry_service(store->get(), &notifier);
  stip::registry::Housekeeping housekeeping(store->get(), &registry_service, absl::Hours(24 * 30));
  // Assessment.
  const std::string assessment_group(stip::assessment::kAssessmentGroup);
  stip::assessment::DecisionTopics decision_topics;
  stip::assessment::FilingHistory history(
      log->get(),
      {.topic = std::string(stip::kFilingsTopic),
       .reader_group_prefix = assessment_group + ".history." + instance_id},
      stip::assessment::HistoryClassifier(policies->get()));
  stip::assessment::DecisionHandler decision_handler(policies->get(), &history, decision_topics);
  stip::ProcessorOptions assess_options;
  assess_options.group = assessment_group;
  assess_options.input_topics = {std::string(stip::kFilingsTopic)};
  assess_options.instance_id = instance_id;
  auto assess = (*log)->NewProcessor(assess_options, &decision_handler);
  if (!assess.ok()) return stip::StartupFailure(kName, 1, assess.status().ToString());
  stip::assessment::AssessmentServiceImpl assessment_service(policies->get());
  // Intake.
  stip::intake::RegistryClient registry_client(
      [&server] { return server->server()->InProcessChannel(grpc::ChannelArguments()); });
  stip::intake::FilingIntake intake(&registry_client, publisher->get(), {});
  stip::intake::InboundTopics inbound_topics;
  stip::intake::InboundFilingHandler inbound_handler(&registry_client, inbound_topics);
  stip::ProcessorOptions inbound_options;
  inbound_options.group = stip::intake::kInboundGroup;
  inbound_options.input_topics = {inbound_topics.inbound};
  inbound_options.instance_id = instance_id;
  auto inbound = (*log)->NewProcessor(inbound_options, &inbound_handler);
  if (!inbound.ok()) return stip::StartupFailure(kName, 1, inbound.status().ToString());
  stip::intake::IntakeServiceImpl intake_service(
      &intake, {.default_deadline = flags.grpc.limits.default_rpc_deadline,
                .max_response_bytes = static_cast<size_t>(flags.grpc.limits.max_message_bytes)});

  auto metrics = stip::MetricsServer::Start(flags.admin_listen);
  if (!metrics.ok()) return stip::StartupFailure(kName, 1, metrics.status().ToString());
  auto started = stip::StartGrpcServer(
      flags.grpc, {&intake_service, &assessment_service, &registry_service}, &health);
  if (!started.ok()) return stip::StartupFailure(kName, 1, started.status().ToString());
  server = std::move(*started);
  stip::ProcessorThread apply("apply", &applier, shutdown.RequestShutdownOnFailure("apply"));
  stip::ProcessorThread relay_thread("outbox", &relay, shutdown.RequestShutdownOnFailure("outbox"));
  stip::ProcessorThread housekeeping_thread("housekeeping", &housekeeping);
  stip::DependencyWatch dependencies(
      &health,
      {{"database", [&store] { return (*store)->SchemaVersion().status(); }},
       {"event log", [&log] { return (*log)->CheckReachable(absl::Seconds(3)); }},
       stip::ProgressCheck("outbox", "relaying the outbox",
                           [&relay] { return relay.FailuresInARow(); }),
       stip::ProgressCheck("assess", "the assessment's batch",
                           [&assess] { return (*assess)->Counters().batches_aborted_in_a_row; }),
       stip::ProgressCheck("inbound", "the inbound entry's batch", [&inbound] {
         return (*inbound)->Counters().batches_aborted_in_a_row;
       })});
  stip::ProcessorThread dependency_thread("dependencies", &dependencies);
  stip::ProcessorThread assess_thread("assess", assess->get(),
                                      shutdown.RequestShutdownOnFailure("assess"));
  stip::ProcessorThread inbound_thread("inbound", inbound->get(),
                                       shutdown.RequestShutdownOnFailure("inbound"));
  spdlog::info(
      "{} ready: gRPC on port {} (intake, assessment, registry), metrics on port {}, "
      "events {}, register {}, policies {}",
      kName, server->port(), (*metrics)->port(), flags.events_url, (*store)->DisplayName(),
      policies_dir);

  shutdown.OnReload(stip::assessment::PolicyReloader(policies->get()));
  shutdown.AddStep("health NOT_SERVING", [&health](absl::Time) {
    health.SetServing(false, "draining");
    return absl::OkStatus();
  });
  shutdown.AddStep("end Watch streams", [&registry_service](absl::Time) {
    registry_service.Stop();
    return absl::OkStatus();
  });
  // Calls in flight finish: each filing is answered only once it is durable.
  shutdown.AddStep("gRPC server", [&server](absl::Time deadline) {
    server->Shutdown(deadline);
    return absl::OkStatus();
  });
  shutdown.AddStep("stop processors",
                   stip::StopProcessorsStep({&inbound_thread, &assess_thread, &apply, &relay_thread,
                                             &housekeeping_thread, &dependency_thread}));
  shutdown.AddStep("history reader", [&history](absl::Time deadline) {
    history.Stop(deadline);
    return absl::OkStatus();
  });
  shutdown.AddStep("metrics server", [&metrics](absl::Time) {
    metrics->reset();
    return absl::OkStatus();
  });
  if (absl::Status running = shutdown.Start(); !running.ok()) {
    return stip::StartupFailure(kName, 1, running.ToString());
  }
  const bool clean = shutdown.WaitForShutdown().ok();
  notifier.Shutdown();
  return clean ? 0 : 1;
}
