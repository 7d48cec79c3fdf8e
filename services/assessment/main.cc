// stip-assessment: decides whether accepted filings qualify (stip.filings.v1 ->
// stip.decisions.v1, exactly once) and serves AssessmentService (dry runs, policies).
// Assembles what services/assessment and services/common provide; the logic is there.
//
// Exit codes: 0 after a clean shutdown; 1 when something fails at start-up (the event log,
// a port) or a step of the shutdown fails; 2 for a usage error, which includes policies
// that are refused (the message names the file and line).
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
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
#include "spdlog/spdlog.h"

namespace {

constexpr char kName[] = "stip-assessment";

}  // namespace

int main(int argc, char** argv) {
  stip::BlockShutdownSignals();  // before any thread exists

  stip::ServiceFlags flags;
  flags.grpc.listen_address = "0.0.0.0:50052";
  flags.admin_listen = "127.0.0.1:9462";
  flags.grpc.health_service_names = {"stip.v1.AssessmentService"};
  CLI::App app{
      "stip-assessment: decides whether accepted filings qualify (stip.filings.v1 -> "
      "stip.decisions.v1, exactly once) and serves AssessmentService"};
  flags.Register(app);
  std::string policies_dir = "/etc/stip/policies";
  stip::AddSetting(app, "--policies", policies_dir,
                   "Directory of the policy set (*.yaml); SIGHUP reloads it, keeping the "
                   "policies in force when it is refused");
  std::string instance_id = stip::DefaultInstanceId();
  stip::AddSetting(app, "--instance-id", instance_id,
                   "This instance's id, stable across its restarts (a StatefulSet pod name): "
                   "a restarted instance fences its predecessor's unfinished transaction");
  absl::Duration commit_interval = absl::Milliseconds(100);
  stip::AddDurationSetting(app, "--commit-interval", commit_interval,
                           "A batch of decisions commits at most this long after its first "
                           "filing was read");
  int partitions = 6;
  stip::AddSetting(app, "--partitions", partitions,
                   "Partitions of the topics created at start-up (existing ones are left)")
      ->check(CLI::Range(1, 10000));
  std::string group(stip::assessment::kAssessmentGroup);
  stip::AddSetting(app, "--group", group, "Consumer group of the decision stream");
  std::string filings_topic(stip::kFilingsTopic);
  stip::AddSetting(app, "--filings-topic", filings_topic,
                   "Topic of accepted filings read (tests and migrations)");
  stip::assessment::DecisionTopics topics;
  stip::AddSetting(app, "--decisions-topic", topics.decisions,
                   "Topic decisions are published to (tests and migrations)");
  stip::AddSetting(app, "--rejected-topic", topics.rejected,
                   "Topic filings no policy covers are reported to (tests and migrations)");
  stip::ParseCommandLineOrExit(app, argc, argv);
  stip::InitLogging(kName, flags.log_level, flags.log_format);
  stip::ConfigureAbseilForServing();

  auto policies = stip::assessment::PolicyStore::Open(policies_dir);
  if (!policies.ok()) {
    return stip::StartupFailure(kName, stip::kUsageExitCode,
                                absl::StrCat("--policies: ", policies.status().message()));
  }
  spdlog::info("policies: {} loaded from {}", (*policies)->Current()->List().size(), policies_dir);

  auto log = flags.OpenEventLog();
  if (!log.ok()) {
    return stip::StartupFailure(kName,
                                absl::IsInvalidArgument(log.status()) ? stip::kUsageExitCode : 1,
                                log.status().ToString());
  }
  const std::vector<stip::TopicSpec> topic_specs =
      stip::StandardTopics(partitions, {filings_topic, topics.decisions, topics.rejected});
  if (absl::Status ensured = (*log)->EnsureTopics(topic_specs); !ensured.ok()) {
    return stip::StartupFailure(kName, 1,
                                absl::StrCat("creating the topics: ", ensured.ToString()));
  }

  // The history and the handler outlive the processor that calls them.
  stip::assessment::FilingHistory history(
      log->get(),
      {.topic = filings_topic, .reader_group_prefix = group + ".history." + instance_id},
      stip::assessment::HistoryClassifier(policies->get()));
  stip::assessment::DecisionHandler handler(policies->get(), &history, topics);
  stip::ProcessorOptions processor_options;
  processor_options.group = group;
  processor_options.input_topics = {filings_topic};
  processor_options.instance_id = instance_id;
  processor_options.commit_interval = commit_interval;
  auto processor = (*log)->NewProcessor(processor_options, &handler);
  if (!processor.ok()) return stip::StartupFailure(kName, 1, processor.status().ToString());

  stip::ShutdownCoordinator shutdown(flags.shutdown_timeout);  // outlives what follows
  stip::HealthReporter health;
  auto metrics = stip::MetricsServer::Start(flags.admin_listen);
  if (!metrics.ok()) return stip::StartupFailure(kName, 1, metrics.status().ToString());
  stip::assessment::AssessmentServiceImpl service(policies->get());
  auto server = stip::StartGrpcServer(flags.grpc, {&service}, &health);
  if (!server.ok()) return stip::StartupFailure(kName, 1, server.status().ToString());
  stip::ProcessorThread stream("assess", processor->get(),
                               shutdown.RequestShutdownOnFailure("assess"));
  stip::DependencyWatch dependencies(
      &health, {{"event log", [&log] { return (*log)->CheckReachable(absl::Seconds(3)); }},
                stip::ProgressCheck("assess", "the assessment's batch", [&processor] {
                  return (*processor)->Counters().batches_aborted_in_a_row;
                })});
  stip::ProcessorThread dependency_thread("dependencies", &dependencies);
  spdlog::info("{} ready: gRPC on port {}, metrics on port {}, {} -> {} as {}-{}", kName,
               (*server)->port(), (*metrics)->port(), filings_topic, topics.decisions, group,
               instance_id);

  shutdown.OnReload(stip::assessment::PolicyReloader(policies->get()));
  shutdown.AddStep("health NOT_SERVING", [&health](absl::Time) {
    health.SetServing(false, "draining");
    return absl::OkStatus();
  });
  shutdown.AddStep("stop processors", stip::StopProcessorsStep({&stream, &dependency_thread}));
  shutdown.AddStep("history reader", [&history](absl::Time deadline) {
    history.Stop(deadline);
    return absl::OkStatus();
  });
  shutdown.AddStep("gRPC server", [&server](absl::Time deadline) {
    (*server)->Shutdown(deadline);
    return absl::OkStatus();
  });
  shutdown.AddStep("metrics server", [&metrics](absl::Time) {
    metrics->reset();
    return absl::OkStatus();
  });
  if (absl::Status started = shutdown.Start(); !started.ok()) {
    return stip::StartupFailure(kName, 1, started.ToString());
  }
  return shutdown.WaitForShutdown().ok() ? 0 : 1;
}
