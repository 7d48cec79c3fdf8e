// Configuration from command-line flags and STIP_* environment variables (Kubernetes sets
// the latter from the chart's values), through CLI11. Every flag --foo-bar has the
// variable STIP_FOO_BAR; a flag given on the command line wins over the variable, and the
// variable over the default.
//
// A main assembles its options on a CLI::App: ServiceFlags for what every service shares,
// then its own, then parses:
//
//   int main(int argc, char** argv) {
//     stip::ServiceFlags flags;
//     flags.grpc.listen_address = "0.0.0.0:50051";  // this service's default
//     CLI::App app{"stip-intake: validates and accepts annual filings"};
//     flags.Register(app);
//     std::string registry = "localhost:50053";
//     stip::AddSetting(app, "--registry", registry, "The registry's gRPC address");
//     stip::ParseCommandLineOrExit(app, argc, argv);
//     ...
//
// Configuration is read once, at start-up, on the main thread; nothing here is thread-safe.
// Mistakes are refused with a message naming the flag or variable and what was expected,
// and exit code 2: an unknown flag, a value that does not parse, and any STIP_* variable the
// program does not know (an operator's typo would otherwise be silently ignored).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/event_log.h"
#include "services/common/grpc_server.h"
#include "services/common/logging.h"
#include "spdlog/common.h"

namespace stip {

// Exit code for a usage error (a bad flag, value or variable).
inline constexpr int kUsageExitCode = 2;

// Name to value.
using Environment = std::map<std::string, std::string>;

// This process's environment.
Environment CurrentEnvironment();

// "--grpc-listen" -> "STIP_GRPC_LISTEN".
std::string EnvNameForFlag(std::string_view flag);

// What every service shares. The values a ServiceFlags holds when Register is called are
// the defaults shown in --help; set per-service defaults (the gRPC port) before.
struct ServiceFlags {
  // --events: the event log, kafka://host:port[,host:port] or sqlite:///path.
  std::string events_url = "sqlite:///var/lib/stip/stip.db";
  // --grpc-listen, --enable-reflection, and the limits (--grpc-max-message-bytes,
  // --grpc-max-concurrent-streams, --grpc-max-threads, --grpc-keepalive-time,
  // --grpc-keepalive-timeout,
  // --grpc-max-connection-idle, --grpc-max-connection-age, --default-rpc-deadline).
  GrpcServerOptions grpc;
  // --admin-listen: the metrics endpoint (/metrics). Loopback unless the operator opens it.
  std::string admin_listen = "127.0.0.1:9464";
  // --log-level, --log-format.
  spdlog::level::level_enum log_level = spdlog::level::info;
  LogFormat log_format = LogFormat::kJson;
  // --shutdown-timeout: how long a SIGTERM may take from first step to exit. Below the
  // pod's terminationGracePeriodSeconds (30 s by default).
  absl::Duration shutdown_timeout = absl::Seconds(20);
  // --kafka-property NAME=VALUE (repeatable): librdkafka properties for every Kafka client.
  std::vector<std::string> kafka_properties;

  // Adds the flags above to `app`, writing into this object when it is parsed. This object
  // must outlive the parse.
  void Register(CLI::App& app);

  // Opens the event log --events names, with the --kafka-property values.
  // kInvalidArgument (a usage error) for a malformed URL or property.
  absl::StatusOr<std::unique_ptr<EventLog>> OpenEventLog() const;
};

// Adds an option --flag with the environment variable EnvNameForFlag(flag), writing into
// `value` (which holds the default). For strings, integers and booleans; for booleans the
// option is a flag (--enable-x, or --enable-x=false; STIP_ENABLE_X=true|false).
template <typename T>
CLI::Option* AddSetting(CLI::App& app, const std::string& flag, T& value, const std::string& help) {
  CLI::Option* option;
  if constexpr (std::is_same_v<T, bool>) {
    option = app.add_flag(flag, value, help);
  } else {
    option = app.add_option(flag, value, help)->capture_default_str();
  }
  return option->envname(EnvNameForFlag(flag));
}

// A size setting in bytes: "1048576", "1MiB", "512KiB"; from 1 byte to 2 GiB.
CLI::Option* AddByteSizeSetting(CLI::App& app, const std::string& flag, int& value,
                                const std::string& help);

// A duration setting: "250ms", "10s", "2m", "1h30m" (absl::ParseDuration); positive, or
// also "inf" when `allow_infinite`.
CLI::Option* AddDurationSetting(CLI::App& app, const std::string& flag, absl::Duration& value,
                                const std::string& help, bool allow_infinite = false);

// Parses `args` (without the program name) and `env` into the options registered on
// `app`. Only `env` is read, never the process environment, so tests pass their own.
//   OK                  parsed; run.
//   kInvalidArgument    a usage error; the message is for the operator (exit 2).
//   kCancelled          --help was asked for; the message is the help text (exit 0).
// STIP_* variables in `env` that no option of `app` (or of its subcommands) takes are
// refused, except STIP_TEST_* (set by the test harness for its own use) and the
// *_SERVICE_HOST / *_SERVICE_PORT / *_PORT* variables Kubernetes derives from the names of
// Services (a Service named "stip-registry" gives STIP_REGISTRY_PORT=tcp://...); pods
// should also set enableServiceLinks: false. Values from `env` are applied after the
// command line, like CLI11's own envname handling, so options with ->required() may be
// given either way; ->needs()/->excludes() between options are checked on the command line
// only.
absl::Status ParseCommandLine(CLI::App& app, const std::vector<std::string>& args,
                              const Environment& env);

// ParseCommandLine over argv and the process environment. Prints the help text and exits
// with 0 when asked for it; prints the error to stderr and exits with kUsageExitCode on a
// usage error.
void ParseCommandLineOrExit(CLI::App& app, int argc, const char* const* argv);

// The default instance id of a service (the stable part of its Kafka transactional id and
// consumer member): the host name, which is the pod name on Kubernetes; "0" when unknown.
std::string DefaultInstanceId();

}  // namespace stip
