#include "services/common/config.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stip {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

struct Parsed {
  ServiceFlags flags;
  CLI::App app{"test service"};
  std::string registry = "localhost:50053";
  absl::Status status;

  Parsed(const std::vector<std::string>& args, const Environment& env) {
    flags.grpc.listen_address = "0.0.0.0:50051";
    flags.Register(app);
    AddSetting(app, "--registry", registry, "The registry");
    status = ParseCommandLine(app, args, env);
  }
};

TEST(ConfigTest, DefaultsWhenNothingIsGiven) {
  Parsed parsed({}, {});
  ASSERT_TRUE(parsed.status.ok()) << parsed.status;
  const ServiceFlags& flags = parsed.flags;
  EXPECT_EQ(flags.events_url, "sqlite:///var/lib/stip/stip.db");
  EXPECT_EQ(flags.grpc.listen_address, "0.0.0.0:50051");
  EXPECT_EQ(flags.admin_listen, "127.0.0.1:9464");
  EXPECT_EQ(flags.log_level, spdlog::level::info);
  EXPECT_EQ(flags.log_format, LogFormat::kJson);
  EXPECT_EQ(flags.shutdown_timeout, absl::Seconds(20));
  EXPECT_FALSE(flags.grpc.enable_reflection);
  EXPECT_EQ(flags.grpc.limits.max_message_bytes, 1024 * 1024);
  EXPECT_EQ(flags.grpc.limits.max_concurrent_streams, 100);
  EXPECT_EQ(flags.grpc.max_threads, 128);
  EXPECT_EQ(parsed.registry, "localhost:50053");
}

TEST(ConfigTest, FlagsSetEveryValue) {
  // clang-format off
  Parsed parsed({"--events", "kafka://broker:9092",
                 "--grpc-listen=127.0.0.1:0",
                 "--admin-listen", "0.0.0.0:9000",
                 "--log-level", "debug",
                 "--log-format=text",
                 "--shutdown-timeout", "2500ms",
                 "--enable-reflection",
                 "--grpc-max-message-bytes", "1MiB",
                 "--grpc-max-concurrent-streams", "7",
                 "--grpc-max-threads", "9",
                 "--grpc-keepalive-time", "1m",
                 "--grpc-keepalive-timeout", "5s",
                 "--grpc-max-connection-idle", "inf",
                 "--grpc-max-connection-age", "1h30m",
                 "--default-rpc-deadline", "3s",
                 "--registry", "registry:1"},
                {});
  // clang-format on
  ASSERT_TRUE(parsed.status.ok()) << parsed.status;
  const ServiceFlags& flags = parsed.flags;
  EXPECT_EQ(flags.events_url, "kafka://broker:9092");
  EXPECT_EQ(flags.grpc.listen_address, "127.0.0.1:0");
  EXPECT_EQ(flags.admin_listen, "0.0.0.0:9000");
  EXPECT_EQ(flags.log_level, spdlog::level::debug);
  EXPECT_EQ(flags.log_format, LogFormat::kText);
  EXPECT_EQ(flags.shutdown_timeout, absl::Milliseconds(2500));
  EXPECT_TRUE(flags.grpc.enable_reflection);
  EXPECT_EQ(flags.grpc.limits.max_message_bytes, 1 << 20);
  EXPECT_EQ(flags.grpc.limits.max_concurrent_streams, 7);
  EXPECT_EQ(flags.grpc.max_threads, 9);
  EXPECT_EQ(flags.grpc.limits.keepalive_time, absl::Minutes(1));
  EXPECT_EQ(flags.grpc.limits.keepalive_timeout, absl::Seconds(5));
  EXPECT_EQ(flags.grpc.limits.max_connection_idle, absl::InfiniteDuration());
  EXPECT_EQ(flags.grpc.limits.max_connection_age, absl::Minutes(90));
  EXPECT_EQ(flags.grpc.limits.default_rpc_deadline, absl::Seconds(3));
  EXPECT_EQ(parsed.registry, "registry:1");
}

TEST(ConfigTest, EnvironmentSetsValuesAndFlagsWin) {
  Parsed parsed({"--log-level=error"}, {{"STIP_EVENTS", "kafka://k:9092"},
                                        {"STIP_LOG_LEVEL", "debug"},
                                        {"STIP_SHUTDOWN_TIMEOUT", "45s"},
                                        {"STIP_ENABLE_REFLECTION", "true"},
                                        {"STIP_GRPC_MAX_MESSAGE_BYTES", "65536"},
                                        {"STIP_REGISTRY", "registry.stip:50053"},
                                        {"PATH", "/usr/bin"}});
  ASSERT_TRUE(parsed.status.ok()) << parsed.status;
  EXPECT_EQ(parsed.flags.events_url, "kafka://k:9092");
  EXPECT_EQ(parsed.flags.log_level, spdlog::level::err);  // the flag wins
  EXPECT_EQ(parsed.flags.shutdown_timeout, absl::Seconds(45));
  EXPECT_TRUE(parsed.flags.grpc.enable_reflection);
  EXPECT_EQ(parsed.flags.grpc.limits.max_message_bytes, 65536);
  EXPECT_EQ(parsed.registry, "registry.stip:50053");
}

TEST(ConfigTest, BooleanFromEnvironmentCanBeFalse) {
  Parsed parsed({}, {{"STIP_ENABLE_REFLECTION", "false"}});
  ASSERT_TRUE(parsed.status.ok()) << parsed.status;
  EXPECT_FALSE(parsed.flags.grpc.enable_reflection);
}

TEST(ConfigTest, BooleanFlagTakesAnExplicitValue) {
  Parsed parsed({"--enable-reflection=false"}, {{"STIP_ENABLE_REFLECTION", "true"}});
  ASSERT_TRUE(parsed.status.ok()) << parsed.status;
  EXPECT_FALSE(parsed.flags.grpc.enable_reflection);
}

TEST(ConfigTest, OnlyTheGivenEnvironmentIsRead) {
  ASSERT_EQ(setenv("STIP_EVENTS", "kafka://from-process:9092", 1), 0);
  Parsed parsed({}, {});
  unsetenv("STIP_EVENTS");
  ASSERT_TRUE(parsed.status.ok()) << parsed.status;
  EXPECT_EQ(parsed.flags.events_url, "sqlite:///var/lib/stip/stip.db");
}

TEST(ConfigTest, UnknownStipVariableIsRefusedByName) {
  Parsed parsed({}, {{"STIP_EVENT", "kafka://typo:9092"}});
  ASSERT_EQ(parsed.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(parsed.status.message(),
              AllOf(HasSubstr("unknown setting STIP_EVENT (from the environment)"),
                    HasSubstr("known: "), HasSubstr("STIP_EVENTS"), HasSubstr("STIP_REGISTRY"),
                    HasSubstr("STIP_SHUTDOWN_TIMEOUT")));
}

TEST(ConfigTest, TestHarnessAndKubernetesServiceVariablesAreNotSettings) {
  Parsed parsed({}, {{"STIP_TEST_KAFKA", "localhost:9092"},
                     {"STIP_REGISTRY_SERVICE_HOST", "10.0.0.7"},
                     {"STIP_REGISTRY_SERVICE_PORT", "50053"},
                     {"STIP_REGISTRY_SERVICE_PORT_GRPC", "50053"},
                     {"STIP_REGISTRY_PORT", "tcp://10.0.0.7:50053"},
                     {"STIP_REGISTRY_PORT_50053_TCP", "tcp://10.0.0.7:50053"},
                     {"STIP_REGISTRY_PORT_50053_TCP_PROTO", "tcp"},
                     {"STIP_REGISTRY_PORT_50053_TCP_PORT", "50053"},
                     {"STIP_REGISTRY_PORT_50053_TCP_ADDR", "10.0.0.7"}});
  EXPECT_TRUE(parsed.status.ok()) << parsed.status;
}

TEST(ConfigTest, TheProjectScriptsVariablesAreNotSettings) {
  // What a developer may have exported for deploy/local/*.sh, scripts/test.sh and bench/run
  // (scripts/test.sh exports the STIP_BENCH_ ones for the benchmark's smoke run).
  Parsed parsed({}, {{"STIP_CACHE_DIR", "/tmp/cache"},
                     {"STIP_STATE_DIR", "/tmp/state"},
                     {"STIP_KAFKA_PORT", "29092"},
                     {"STIP_PG_PORT", "25432"},
                     {"STIP_BENCH_KAFKA_CONTROLLER_PORT", "19093"},
                     {"STIP_BENCH_STATE_DIR", "/tmp/state"},
                     {"STIP_PEER_JAVA_OPTS", "-Xmx1g"}});
  EXPECT_TRUE(parsed.status.ok()) << parsed.status;
}

TEST(ConfigTest, StipPortThatIsNotAServiceLinkIsRefused) {
  Parsed parsed({}, {{"STIP_GRPC_PORT", "50051"}});
  ASSERT_EQ(parsed.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(parsed.status.message(), HasSubstr("unknown setting STIP_GRPC_PORT"));
}

TEST(ConfigTest, BadDurationNamesTheFlag) {
  Parsed parsed({"--shutdown-timeout", "20"}, {});
  ASSERT_EQ(parsed.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(parsed.status.message(),
              AllOf(HasSubstr("--shutdown-timeout"), HasSubstr("\"20\" is not a positive duration"),
                    HasSubstr("10s")));
}

TEST(ConfigTest, NegativeOrInfiniteDurationIsRefusedWhereNotAllowed) {
  EXPECT_EQ(Parsed({"--default-rpc-deadline=-1s"}, {}).status.code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parsed({"--default-rpc-deadline=inf"}, {}).status.code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Parsed({"--grpc-max-connection-age=inf"}, {}).status.ok());
}

TEST(ConfigTest, BadDurationFromEnvironmentNamesTheVariable) {
  Parsed parsed({}, {{"STIP_SHUTDOWN_TIMEOUT", "soon"}});
  ASSERT_EQ(parsed.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(parsed.status.message(),
              AllOf(HasSubstr("STIP_SHUTDOWN_TIMEOUT"), HasSubstr("from the environment"),
                    HasSubstr("--shutdown-timeout"), HasSubstr("\"soon\"")));
}

TEST(ConfigTest, BadValuesAreRefused) {
  const Parsed level({"--log-level", "loud"}, {});
  EXPECT_THAT(level.status.message(), AllOf(HasSubstr("--log-level"), HasSubstr("loud")));
  const Parsed format({"--log-format", "xml"}, {});
  EXPECT_THAT(format.status.message(), AllOf(HasSubstr("--log-format"), HasSubstr("xml")));
  const Parsed bytes({"--grpc-max-message-bytes", "lots"}, {});
  EXPECT_THAT(bytes.status.message(), HasSubstr("--grpc-max-message-bytes"));
  const Parsed streams({"--grpc-max-concurrent-streams", "0"}, {});
  EXPECT_THAT(streams.status.message(), HasSubstr("--grpc-max-concurrent-streams"));
  const Parsed too_big({"--grpc-max-message-bytes", "3GiB"}, {});
  EXPECT_EQ(too_big.status.code(), absl::StatusCode::kInvalidArgument);
}

TEST(ConfigTest, UnknownFlagIsRefused) {
  Parsed parsed({"--grpc-listen-address", "x"}, {});
  ASSERT_EQ(parsed.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(parsed.status.message(),
              AllOf(HasSubstr("--grpc-listen-address"), HasSubstr("--help")));
}

TEST(ConfigTest, HelpListsFlagsAndVariables) {
  Parsed parsed({"--help"}, {});
  ASSERT_EQ(parsed.status.code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(parsed.status.message(),
              AllOf(HasSubstr("--events"), HasSubstr("STIP_EVENTS"), HasSubstr("--registry"),
                    HasSubstr("STIP_SHUTDOWN_TIMEOUT"), HasSubstr("20s")));
}

TEST(ConfigTest, RequiredOptionMayComeFromTheEnvironment) {
  CLI::App app{"test"};
  std::string db;
  AddSetting(app, "--db", db, "The database")->required();
  EXPECT_TRUE(ParseCommandLine(app, {}, {{"STIP_DB", "sqlite:///x.db"}}).ok());
  EXPECT_EQ(db, "sqlite:///x.db");
  CLI::App app2{"test"};
  AddSetting(app2, "--db", db, "The database")->required();
  EXPECT_EQ(ParseCommandLine(app2, {}, {}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ConfigTest, EnvNameForFlag) {
  EXPECT_EQ(EnvNameForFlag("--grpc-max-message-bytes"), "STIP_GRPC_MAX_MESSAGE_BYTES");
  EXPECT_EQ(EnvNameForFlag("events"), "STIP_EVENTS");
}

TEST(ConfigDeathTest, UsageErrorExitsWithTwo) {
  const char* argv[] = {"stip-test", "--no-such-flag"};
  EXPECT_EXIT(
      {
        ServiceFlags flags;
        CLI::App app{"test"};
        flags.Register(app);
        ParseCommandLineOrExit(app, 2, argv);
      },
      ::testing::ExitedWithCode(kUsageExitCode), HasSubstr("--no-such-flag"));
}

}  // namespace
}  // namespace stip
