// stip-intake: validates annual filings, checks them with the registry and publishes the
// accepted ones to stip.filings.v1; serves IntakeService over gRPC and, with --inbound,
// takes filings from stip.filings.inbound.v1 too. Assembles what services/intake and
// services/common provide; the logic is there.
//
// Exit codes: 0 after a clean shutdown; 1 when something fails at start-up (the event log,
// a port) or a step of the shutdown fails; 2 for a usage error.
#include <unistd.h>

#include <climits>
#include <iostream>
#include <memory>
#include <optional>
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
#include "services/intake/filing_intake.h"
#include "services/intake/inbound_handler.h"
#include "services/intake/intake_service.h"
#include "services/intake/registry_client.h"
#include "spdlog/spdlog.h"

namespace {

constexpr char kName[] = "stip-intake";

}  // namespace

int main(int argc, char** argv) {
  stip::BlockShutdownSignals();  // before any thread exists

  stip::ServiceFlags flags;
  flags.grpc.listen_address = "0.0.0.0:50051";
  flags.admin_listen = "0.0.0.0:9461";
  flags.grpc.health_service_names = {"stip.v1.IntakeService"};
  CLI::App app{
      "stip-intake: validates annual filings, checks them with the registry and publishes the "
      "accepted ones to stip.filings.v1"};
  flags.Register(app);
  std::string registry_target = "127.0.0.1:50053";
  stip::AddSetting(app, "--registry", registry_target,
                   "The registry's gRPC address (host:port or dns:///name:port)");
  std::string registry_tls_ca_file;
  stip::AddSetting(app, "--registry-tls-ca-file", registry_tls_ca_file,
                   "CA certificate (PEM) to verify the registry's TLS certificate with; set it "
                   "when the registry's gRPC port speaks TLS");
  int partitions = 6;
  stip::AddSetting(app, "--partitions", partitions,
                   "Partitions of the topics created at start-up (existing ones are left)")
      ->check(CLI::Range(1, 10000));
  std::string instance_id = stip::DefaultInstanceId();
  stip::AddSetting(app, "--instance-id", instance_id,
                   "This instance's id, stable across its restarts (a StatefulSet pod name): "
                   "a restarted instance fences its predecessor's unfinished transaction");
  bool inbound = true;
  stip::AddSetting(app, "--inbound", inbound,
                   "Take filings from stip.filings.inbound.v1 too (--inbound=false: gRPC only)");
  stip::intake::InboundTopics topics;
  stip::AddSetting(app, "--inbound-topic", topics.inbound,
                   "Topic inbound filings are read from (tests and migrations)");
  stip::AddSetting(app, "--filings-topic", topics.accepted,
                   "Topic accepted filings are published to (tests and migrations)");
  stip::AddSetting(app, "--rejected-topic", topics.rejected,
                   "Topic refused inbound filings are reported to (tests and migrations)");
  std::string group = stip::intake::kInboundGroup;
  stip::AddSetting(app, "--group", group, "Consumer group of the inbound entry");
  int max_requests = 100000;
  stip::AddSetting(app, "--idempotency-max-requests", max_requests,
                   "Requests remembered for retries (AIP-155), at most; each takes about "
                   "1 KiB")
      ->check(CLI::Range(1, 100000000));
  absl::Duration request_ttl = absl::Hours(24);
  stip::AddDurationSetting(app, "--idempotency-ttl", request_ttl,
                           "How long a request is remembered for retries");
  int max_request_bytes = 128 * 1024 * 1024;
  stip::AddByteSizeSetting(app, "--idempotency-max-bytes", max_request_bytes,
                           "Memory the requests remembered for retries may take, at most (e.g. "
                           "128MiB); the oldest are forgotten first");
  absl::Duration write_timeout = absl::Seconds(30);
  stip::AddDurationSetting(app, "--stream-write-timeout", write_timeout,
                           "SubmitFilings: cancel a stream whose client has not read a response "
                           "for this long");
  stip::ParseCommandLineOrExit(app, argc, argv);
  stip::InitLogging(kName, flags.log_level, flags.log_format);
  stip::ConfigureAbseilForServing();

  auto log = flags.OpenEventLog();
  if (!log.ok()) {
    return stip::StartupFailure(kName,
                                absl::IsInvalidArgument(log.status()) ? stip::kUsageExitCode : 1,
                                log.status().ToString());
  }
  const std::vector<stip::TopicSpec> topic_specs =
      stip::StandardTopics(partitions, {topics.inbound, topics.accepted, topics.rejected});
  if (absl::Status ensured = (*log)->EnsureTopics(topic_specs); !ensured.ok()) {
    return stip::StartupFailure(kName, 1,
                                absl::StrCat("creating the topics: ", ensured.ToString()));
  }
  auto publisher = (*log)->NewPublisher();
  if (!publisher.ok()) return stip::StartupFailure(kName, 1, publisher.status().ToString());

  std::shared_ptr<grpc::Channel> registry_channel;
  if (registry_tls_ca_file.empty()) {
    registry_channel = stip::MakeChannel(registry_target, flags.grpc.limits);
  } else {
    auto channel = stip::MakeTlsChannel(registry_target, flags.grpc.limits, registry_tls_ca_file);
    if (!channel.ok()) {
      return stip::StartupFailure(
          kName, stip::kUsageExitCode,
          absl::StrCat("--registry-tls-ca-file: ", channel.status().message()));
    }
    registry_channel = *std::move(channel);
  }
  stip::intake::RegistryClient registry(registry_channel);
  stip::intake::FilingIntake intake(&registry, publisher->get(),
                                    {.filings_topic = topics.accepted,
                                     .request_ttl = request_ttl,
                                     .max_requests = static_cast<size_t>(max_requests),
                                     .max_bytes = static_cast<size_t>(max_request_bytes)});
  // The handler outlives the processor that calls it.
  stip::intake::InboundFilingHandler handler(&registry, topics);
  std::unique_ptr<stip::ExactlyOnceProcessor> processor;
  if (inbound) {
    stip::ProcessorOptions processor_options;
    processor_options.group = group;
    processor_options.input_topics = {topics.inbound};
    processor_options.instance_id = instance_id;
    auto made = (*log)->NewProcessor(processor_options, &handler);
    if (!made.ok()) return stip::StartupFailure(kName, 1, made.status().ToString());
    processor = std::move(*made);
  }

  stip::ShutdownCoordinator shutdown(flags.shutdown_timeout);  // outlives what follows
  stip::HealthReporter health;
  auto metrics = stip::MetricsServer::Start(flags.admin_listen);
  if (!metrics.ok()) return stip::StartupFailure(kName, 1, metrics.status().ToString());
  stip::intake::IntakeServiceImpl service(
      &intake, {.default_deadline = flags.grpc.limits.default_rpc_deadline,
                .write_timeout = write_timeout,
                .max_response_bytes = static_cast<size_t>(flags.grpc.limits.max_message_bytes)});
  auto server = stip::StartGrpcServer(flags.grpc, {&service}, &health);
  if (!server.ok()) return stip::StartupFailure(kName, 1, server.status().ToString());
  std::optional<stip::ProcessorThread> stream;
  if (processor != nullptr) {
    stream.emplace("inbound", processor.get(), shutdown.RequestShutdownOnFailure("inbound"));
  }
  // Ready while the broker and the registry answer: without them no filing can be accepted.
  // The registry is asked itself each round, never answered from the cached park list (which
  // outlives an outage by minutes): NOT_SERVING within a round of the registry going away.
  std::vector<stip::DependencyCheck> checks = {
      {"event log", [&log] { return (*log)->CheckReachable(absl::Seconds(3)); }},
      {"registry",
       [&registry] { return registry.CheckReachable(absl::Now() + absl::Seconds(3)); }}};
  // And while the inbound entry makes progress: batches aborted again and again hold back
  // every partition of this instance.
  if (processor != nullptr) {
    checks.push_back(stip::ProgressCheck("inbound", "the inbound entry's batch", [&processor] {
      return processor->Counters().batches_aborted_in_a_row;
    }));
  }
  stip::DependencyWatch dependencies(&health, std::move(checks));
  stip::ProcessorThread dependency_thread("dependencies", &dependencies);
  spdlog::info("{} ready: gRPC on port {}, metrics on port {}, registry {}, inbound {}", kName,
               (*server)->port(), (*metrics)->port(), registry_target,
               inbound ? topics.inbound : std::string("off"));

  shutdown.AddStep("health NOT_SERVING", [&health](absl::Time) {
    health.SetServing(false, "draining");
    return absl::OkStatus();
  });
  std::vector<stip::ProcessorThread*> threads = {&dependency_thread};
  if (stream.has_value()) threads.push_back(&*stream);
  shutdown.AddStep("stop processors", stip::StopProcessorsStep(threads));
  // Calls in flight finish: each answers only after its publish returned, so nothing
  // accepted is left unpublished when the publisher goes.
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
