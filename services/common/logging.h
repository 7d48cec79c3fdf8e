// Logging through spdlog: one JSON object per line on stdout, for log collectors, or plain
// text for a human at a terminal (--log-format=text).
//
//   {"time":"2024-05-01T08:30:00.123456Z","level":"info","logger":"stip-intake",
//    "msg":"filing accepted","uscc":"91650100MA77XXXX1X","revision":2}
//
// (one line in reality). "time" is RFC 3339 in UTC with microseconds; "level" is one of trace,
// debug, info, warning, error, critical; "logger" is the service or a part of it ("kafka");
// "msg" is the message, JSON-escaped, whatever it holds. Structured fields follow.
//
// Everything may log from any thread: spdlog::info(...) goes to the service's logger.
// Loggers are synchronous: a call returns once its line is written and flushed to stdout, so
// no line is lost when the process is killed right after.
#pragma once

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "spdlog/common.h"
#include "spdlog/formatter.h"
#include "spdlog/logger.h"

namespace stip {

enum class LogFormat { kJson, kText };

// "json" or "text".
absl::StatusOr<LogFormat> ParseLogFormat(std::string_view name);
// trace, debug, info, warn (or warning), error, critical, off.
absl::StatusOr<spdlog::level::level_enum> ParseLogLevel(std::string_view name);

// Makes the default logger (what spdlog::info and friends use) a logger named
// `service_name` that writes to stdout in `format`, and routes gRPC's and protobuf's own
// log messages into it (loggers "grpc" and "protobuf"). Call once, early in main, before
// threads are started; calling it again replaces the format and level.
//
// Protobuf logs an error for every message it refuses to parse (a string field that is not
// UTF-8), which a client can send at will: its lines are logged at most once a minute per
// source line, with "suppressed" counting those left out since the last one, and counted in
// stip_protobuf_log_messages_total{level} (MetricsRegistry()).
void InitLogging(std::string_view service_name, spdlog::level::level_enum level, LogFormat format);

// The logger for one part of the process: same output, format and level as the default
// logger, its own "logger" name. Created on first use. Thread-safe.
std::shared_ptr<spdlog::logger> GetLogger(std::string_view name);

// The text of the last protobuf parse error (e.g. "String field 'stip.v1.AnnualFiling.name'
// contains invalid UTF-8 data when parsing a protocol buffer. ...") reported on this thread
// since the previous call, logged or not; "" when none. Clears it. For the gRPC server, which
// sees only that a request could not be decoded. Needs InitLogging (protobuf's messages
// reach nothing of ours before it).
std::string TakeProtobufParseError();

// The formatter InitLogging installs, for loggers with other sinks (tests).
std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format);

// One structured field of a log line: a string, an integer or a boolean.
class LogField {
 public:
  LogField(std::string_view key, std::string_view value) : key_(key), value_(value) {}
  LogField(std::string_view key, const char* value) : key_(key), value_(value) {}
  LogField(std::string_view key, const std::string& value) : key_(key), value_(value) {}
  template <std::integral T>
  LogField(std::string_view key, T value)
      : key_(key), value_(std::to_string(value)), quoted_(false) {}
  LogField(std::string_view key, bool value)
      : key_(key), value_(value ? "true" : "false"), quoted_(false) {}

  const std::string& key() const { return key_; }
  const std::string& value() const { return value_; }
  // Strings are quoted (and escaped) in JSON; numbers and booleans are not.
  bool quoted() const { return quoted_; }

 private:
  std::string key_;
  std::string value_;
  bool quoted_ = true;
};

// Logs `message` with structured fields, to `logger` (the default logger when null).
// JSON: "key":value members after "msg" (a key that would collide with time, level, logger
// or msg gets a leading underscore); text: " key=value" after the message.
//
//   LogWithFields(spdlog::level::info, "filing accepted",
//                 {{"uscc", filing.uscc()}, {"revision", filing.revision()}});
void LogWithFields(spdlog::level::level_enum level, std::string_view message,
                   std::initializer_list<LogField> fields, spdlog::logger* logger = nullptr);

// Reports a failure to start: to the log (for the collector) and to stderr as
// "<program>: <message>" (for the operator at a terminal). Returns `exit_code`, for
// `return StartupFailure(...)` in main.
int StartupFailure(std::string_view program, int exit_code, std::string_view message);

}  // namespace stip
