#include "services/common/config.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <set>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;  // NOLINT: POSIX

namespace stip {
namespace {

absl::string_view AsAbsl(std::string_view text) { return {text.data(), text.size()}; }

// An option whose text is turned into `T` by `parse`; its error message is the operator's.
template <typename T>
CLI::Option* AddParsedSetting(CLI::App& app, const std::string& flag, T& value,
                              const std::string& help, const std::string& type_name,
                              const std::string& default_text,
                              std::function<absl::StatusOr<T>(std::string_view)> parse) {
  CLI::Option* option = app.add_option_function<std::string>(
      flag,
      [&value, parse](const std::string& text) {
        // Validated already (below), so this cannot fail.
        if (absl::StatusOr<T> parsed = parse(text); parsed.ok()) value = *parsed;
      },
      help);
  option->check(CLI::Validator(
      [parse](std::string& text) -> std::string {
        absl::StatusOr<T> parsed = parse(text);
        return parsed.ok() ? std::string() : std::string(parsed.status().message());
      },
      /*validator_desc=*/""));
  option->type_name(type_name);
  option->default_str(default_text);
  option->envname(EnvNameForFlag(flag));
  return option;
}

absl::StatusOr<int> ParseByteSize(std::string_view text) {
  static constexpr std::pair<std::string_view, int64_t> kUnits[] = {
      {"GiB", int64_t{1} << 30},
      {"MiB", int64_t{1} << 20},
      {"KiB", int64_t{1} << 10},
      {"G", int64_t{1} << 30},
      {"M", int64_t{1} << 20},
      {"K", int64_t{1} << 10},
      {"B", 1},
  };
  std::string_view digits = text;
  int64_t unit = 1;
  for (const auto& [suffix, multiplier] : kUnits) {
    if (digits.size() > suffix.size() && digits.ends_with(suffix)) {
      digits.remove_suffix(suffix.size());
      unit = multiplier;
      break;
    }
  }
  int64_t number = 0;
  if (!absl::SimpleAtoi(AsAbsl(digits), &number) || number <= 0 || number > INT_MAX / unit) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", AsAbsl(text), "\" is not a size from 1 byte to 2GiB; write e.g. ",
                     "1048576, 1MiB or 512KiB"));
  }
  return static_cast<int>(number * unit);
}

std::string FormatByteSize(int bytes) {
  if (bytes > 0 && bytes % (1 << 20) == 0) return absl::StrCat(bytes >> 20, "MiB");
  if (bytes > 0 && bytes % (1 << 10) == 0) return absl::StrCat(bytes >> 10, "KiB");
  return absl::StrCat(bytes);
}

std::function<absl::StatusOr<absl::Duration>(std::string_view)> DurationParser(
    bool allow_infinite) {
  return [allow_infinite](std::string_view text) -> absl::StatusOr<absl::Duration> {
    absl::Duration duration;
    const bool parsed = absl::ParseDuration(AsAbsl(text), &duration);
    if (parsed && duration == absl::InfiniteDuration() && allow_infinite) return duration;
    if (!parsed || duration <= absl::ZeroDuration() || duration == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", AsAbsl(text), "\" is not a positive duration; write e.g. 250ms, 10s, 2m or 1h30m",
          allow_infinite ? " (or inf for no limit)" : ""));
    }
    return duration;
  };
}

// Every option of `app` and of its subcommands and option groups.
void CollectOptions(CLI::App& app, std::vector<CLI::Option*>& options) {
  for (CLI::Option* option : app.get_options([](CLI::Option*) { return true; })) {
    options.push_back(option);
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    CollectOptions(*sub, options);
  }
}

bool AllDigits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c));
  });
}

// The variables of the project's own scripts (deploy/local/*.sh, scripts/test.sh,
// scripts/run-local.sh, bench/run and its Kafka Streams peer), of stipctl (the servers it
// calls) and of the test suite share the STIP_ prefix; a developer who set them in the shell
// still starts services there, so they are not "unknown settings".
bool IsDeveloperToolSetting(std::string_view name) {
  static constexpr std::string_view kToolSettings[] = {"STIP_CACHE_DIR",
                                                       "STIP_STATE_DIR",
                                                       "STIP_BUILD_DIR",
                                                       "STIP_KAFKA_PORT",
                                                       "STIP_KAFKA_CONTROLLER_PORT",
                                                       "STIP_KAFKA_HEAP",
                                                       "STIP_KAFKA_START_TIMEOUT",
                                                       "STIP_PG_PORT",
                                                       "STIP_PG_START_TIMEOUT",
                                                       "STIP_DEMO_DIR",
                                                       "STIP_DEMO_PORT",
                                                       "STIP_SERVER",
                                                       "STIP_INTAKE",
                                                       "STIP_ASSESSMENT",
                                                       "STIP_REGISTRY",
                                                       "STIP_PEER_JAVA_OPTS"};
  if (name.starts_with("STIP_TEST_") || name.starts_with("STIP_BENCH_")) return true;
  for (std::string_view setting : kToolSettings) {
    if (name == setting) return true;
  }
  return false;
}

// The variables Kubernetes puts in every pod for every Service of its namespace (unless
// enableServiceLinks is false): for a Service "stip-registry" with port 50053,
//   STIP_REGISTRY_SERVICE_HOST, STIP_REGISTRY_SERVICE_PORT[_<port name>],
//   STIP_REGISTRY_PORT=tcp://10.0.0.7:50053, STIP_REGISTRY_PORT_50053_TCP[_PROTO|_PORT|_ADDR].
bool IsKubernetesServiceLink(std::string_view name, std::string_view value) {
  if (name.ends_with("_SERVICE_HOST") || name.ends_with("_SERVICE_PORT") ||
      name.find("_SERVICE_PORT_") != std::string_view::npos) {
    return true;
  }
  if (name.ends_with("_PORT") && (value.starts_with("tcp://") || value.starts_with("udp://") ||
                                  value.starts_with("sctp://"))) {
    return true;
  }
  // ..._PORT_<number>_<TCP|UDP|SCTP>[_PROTO|_PORT|_ADDR]
  for (std::string_view protocol : {"_TCP", "_UDP", "_SCTP"}) {
    size_t at = name.rfind(protocol);
    if (at == std::string_view::npos) continue;
    std::string_view rest = name.substr(at + protocol.size());
    if (!rest.empty() && rest != "_PROTO" && rest != "_PORT" && rest != "_ADDR") continue;
    std::string_view head = name.substr(0, at);
    size_t port_at = head.rfind("_PORT_");
    if (port_at != std::string_view::npos && AllDigits(head.substr(port_at + 6))) return true;
  }
  return false;
}

// While a parse runs, the options' environment variable names are cleared so that CLI11
// reads nothing from the process environment (only the Environment given is read), and
// options whose value comes from it are not required on the command line. Restored after.
class EnvNamesSuspended {
 public:
  EnvNamesSuspended(const std::vector<CLI::Option*>& options, const Environment& env)
      : options_(options) {
    for (CLI::Option* option : options_) {
      const std::string name = option->get_envname();
      saved_.push_back({name, option->get_required()});
      if (name.empty()) continue;
      option->envname("");
      auto it = env.find(name);
      if (it != env.end() && !it->second.empty()) option->required(false);
    }
  }
  ~EnvNamesSuspended() {
    for (size_t i = 0; i < options_.size(); ++i) {
      options_[i]->envname(saved_[i].first);
      options_[i]->required(saved_[i].second);
    }
  }
  EnvNamesSuspended(const EnvNamesSuspended&) = delete;
  EnvNamesSuspended& operator=(const EnvNamesSuspended&) = delete;

 private:
  const std::vector<CLI::Option*>& options_;
  std::vector<std::pair<std::string, bool>> saved_;
};

}  // namespace

Environment CurrentEnvironment() {
  Environment env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    const size_t equals = text.find('=');
    if (equals == std::string_view::npos) continue;
    env.emplace(std::string(text.substr(0, equals)), std::string(text.substr(equals + 1)));
  }
  return env;
}

std::string EnvNameForFlag(std::string_view flag) {
  while (!flag.empty() && flag.front() == '-') flag.remove_prefix(1);
  std::string name = "STIP_";
  for (char c : flag) {
    name.push_back(c == '-' ? '_' : absl::ascii_toupper(static_cast<unsigned char>(c)));
  }
  return name;
}

CLI::Option* AddByteSizeSetting(CLI::App& app, const std::string& flag, int& value,
                                const std::string& help) {
  return AddParsedSetting<int>(app, flag, value, help, "BYTES", FormatByteSize(value),
                               &ParseByteSize);
}

CLI::Option* AddDurationSetting(CLI::App& app, const std::string& flag, absl::Duration& value,
                                const std::string& help, bool allow_infinite) {
  return AddParsedSetting<absl::Duration>(app, flag, value, help, "DURATION",
                                          absl::FormatDuration(value),
                                          DurationParser(allow_infinite));
}

void ServiceFlags::Register(CLI::App& app) {
  AddSetting(app, "--events", events_url,
             "The event log: kafka://host:port[,host:port...] or sqlite:///path/to/file.db");
  AddSetting(app, "--grpc-listen", grpc.listen_address,
             "Address the gRPC API listens on, host:port (port 0 picks a free one)");
  AddSetting(app, "--admin-listen", admin_listen,
             "Address of the admin HTTP server (Prometheus /metrics), host:port");
  AddSetting(app, "--health-listen", grpc.health_listen_address,
             "Address of a plaintext gRPC server with only grpc.health.v1, for Kubernetes' "
             "gRPC probes: service \"\" is readiness, \"stip.liveness\" liveness (default: "
             "off; the main port serves health too)");
  AddSetting(app, "--tls-cert-file", grpc.tls_cert_file,
             "TLS certificate (PEM) of the gRPC port; with --tls-key-file, the port speaks TLS");
  AddSetting(app, "--tls-key-file", grpc.tls_key_file, "TLS private key (PEM) of the gRPC port");
  AddSetting(app, "--tls-client-ca-file", grpc.tls_client_ca_file,
             "CA certificate (PEM) clients' certificates must be signed by (mutual TLS)");
  AddParsedSetting<spdlog::level::level_enum>(
      app, "--log-level", log_level,
      "Least severe level logged: trace, debug, info, warn, error, critical or off", "LEVEL",
      std::string(spdlog::level::to_string_view(log_level).data(),
                  spdlog::level::to_string_view(log_level).size()),
      [](std::string_view text) { return ParseLogLevel(text); });
  AddParsedSetting<LogFormat>(
      app, "--log-format", log_format,
      "json: one JSON object per line, for log collectors; text: for people", "FORMAT",
      log_format == LogFormat::kJson ? "json" : "text",
      [](std::string_view text) { return ParseLogFormat(text); });
  AddDurationSetting(app, "--shutdown-timeout", shutdown_timeout,
                     "Longest time from SIGTERM to exit; keep it below the pod's grace period");
  AddSetting(app, "--enable-reflection", grpc.enable_reflection,
             "Serve gRPC server reflection (grpc.reflection.v1alpha), for grpcurl");
  AddByteSizeSetting(app, "--grpc-max-message-bytes", grpc.limits.max_message_bytes,
                     "Largest gRPC message received or sent (e.g. 1048576, 1MiB)");
  AddSetting(app, "--grpc-max-concurrent-streams", grpc.limits.max_concurrent_streams,
             "Most concurrent gRPC calls on one connection")
      ->check(CLI::Range(1, 100000));
  AddSetting(app, "--grpc-max-threads", grpc.max_threads,
             "Most threads serving gRPC calls at once; a call beyond them gets "
             "RESOURCE_EXHAUSTED (0: no cap)")
      ->check(CLI::Range(0, 100000));
  AddDurationSetting(app, "--grpc-keepalive-time", grpc.limits.keepalive_time,
                     "Ping an idle gRPC connection this often");
  AddDurationSetting(app, "--grpc-keepalive-timeout", grpc.limits.keepalive_timeout,
                     "Close a gRPC connection whose ping is not answered within this");
  AddDurationSetting(app, "--grpc-max-connection-idle", grpc.limits.max_connection_idle,
                     "Close a gRPC connection without calls after this (inf: never)",
                     /*allow_infinite=*/true);
  AddDurationSetting(app, "--grpc-max-connection-age", grpc.limits.max_connection_age,
                     "Ask clients to reconnect after this, to rebalance (inf: never)",
                     /*allow_infinite=*/true);
  AddDurationSetting(app, "--default-rpc-deadline", grpc.limits.default_rpc_deadline,
                     "Deadline for the work of a gRPC call whose caller set none");
  AddSetting(app, "--kafka-property", kafka_properties,
             "A librdkafka property NAME=VALUE for every Kafka client (repeatable; librdkafka "
             "warns about it where a client does not take it), e.g. session.timeout.ms=10000");
}

absl::Status ParseCommandLine(CLI::App& app, const std::vector<std::string>& args,
                              const Environment& env) {
  std::vector<CLI::Option*> options;
  CollectOptions(app, options);
  try {
    {
      EnvNamesSuspended suspended(options, env);
      std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 wants it so
      app.parse(reversed);
    }

    std::set<std::string> known;
    for (const CLI::Option* option : options) {
      if (!option->get_envname().empty()) known.insert(option->get_envname());
    }
    for (const auto& [name, value] : env) {
      if (!name.starts_with("STIP_") || known.count(name) > 0) continue;
      if (IsDeveloperToolSetting(name) || IsKubernetesServiceLink(name, value)) continue;
      return absl::InvalidArgumentError(
          absl::StrCat("unknown setting ", name,
                       " (from the environment); known: ", absl::StrJoin(known, ", ")));
    }

    // The environment fills what the command line left unset, as CLI11's own envname
    // handling does; the value is checked like a flag's and errors name the variable.
    for (CLI::Option* option : options) {
      const std::string name = option->get_envname();
      auto it = name.empty() ? env.end() : env.find(name);
      if (it == env.end() || it->second.empty() || option->count() > 0) continue;
      try {
        option->add_result(it->second);
        option->run_callback();
      } catch (const CLI::ParseError& e) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, "=\"", it->second, "\" (from the environment): ", e.what()));
      }
    }
  } catch (const CLI::CallForHelp&) {
    return absl::CancelledError(app.help());
  } catch (const CLI::CallForAllHelp&) {
    return absl::CancelledError(app.help("", CLI::AppFormatMode::All));
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(e.what(), "\nRun with --help for the flags and their variables."));
  }
  return absl::OkStatus();
}

void ParseCommandLineOrExit(CLI::App& app, int argc, const char* const* argv) {
  if (app.get_name().empty() && argc > 0) {
    std::string_view program(argv[0]);
    const size_t slash = program.rfind('/');
    app.name(std::string(slash == std::string_view::npos ? program : program.substr(slash + 1)));
  }
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  const absl::Status status = ParseCommandLine(app, args, CurrentEnvironment());
  if (status.ok()) return;
  if (status.code() == absl::StatusCode::kCancelled) {
    std::cout << status.message() << std::flush;
    std::exit(0);
  }
  std::cerr << app.get_name() << ": " << status.message() << std::endl;
  std::exit(kUsageExitCode);
}

std::string DefaultInstanceId() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "0";
  return name;
}

absl::StatusOr<std::unique_ptr<EventLog>> ServiceFlags::OpenEventLog() const {
  EventLogOptions options;
  for (const std::string& value : kafka_properties) {
    const size_t equals = value.find('=');
    if (equals == std::string::npos || equals == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--kafka-property \"", value, "\" is not NAME=VALUE"));
    }
    options.kafka_properties[value.substr(0, equals)] = value.substr(equals + 1);
  }
  return stip::OpenEventLog(events_url, options);
}

}  // namespace stip
