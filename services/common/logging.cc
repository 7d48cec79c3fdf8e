#include "services/common/logging.h"

#include <algorithm>
#include <array>
#include <iostream>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "google/protobuf/stubs/logging.h"
#include "grpc/support/log.h"
#include "prometheus/counter.h"
#include "services/common/metrics.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace stip {
namespace {

// The fields of the LogWithFields call in progress on this thread. Loggers are synchronous,
// so the formatter runs on the logging thread inside that call and finds them here. Passing
// them inside the message text instead would let a message forge fields.
thread_local absl::Span<const LogField> current_fields;

void AppendHex4(unsigned value, spdlog::memory_buf_t& dest) {
  static constexpr char kHex[] = "0123456789abcdef";
  const char digits[] = {'\\',
                         'u',
                         kHex[(value >> 12) & 0xf],
                         kHex[(value >> 8) & 0xf],
                         kHex[(value >> 4) & 0xf],
                         kHex[value & 0xf]};
  dest.append(digits, digits + sizeof(digits));
}

// The length of the well-formed UTF-8 sequence at the start of `s`, or 0.
size_t Utf8SequenceLength(std::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(0);
  size_t length;
  uint32_t code_point;
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    code_point = lead & 0x1f;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    code_point = lead & 0x0f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    code_point = lead & 0x07;
  } else {
    return 0;
  }
  if (s.size() < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return 0;
    code_point = (code_point << 6) | (byte(i) & 0x3f);
  }
  // Overlong forms, UTF-16 surrogates and code points beyond U+10FFFF are not UTF-8.
  static constexpr std::array<uint32_t, 5> kMinimum = {0, 0, 0x80, 0x800, 0x10000};
  if (code_point < kMinimum[length] || code_point > 0x10ffff) return 0;
  if (code_point >= 0xd800 && code_point <= 0xdfff) return 0;
  return length;
}

// Appends `text` as the inside of a JSON string: quotes, backslashes and control characters
// escaped, and every byte that is not part of well-formed UTF-8 replaced by U+FFFD, so that
// the line stays valid JSON whatever the text held (binary keys, a peer's error message).
void AppendJsonEscaped(std::string_view text, spdlog::memory_buf_t& dest) {
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x80) {
      const size_t length = Utf8SequenceLength(text.substr(i));
      if (length == 0) {
        AppendHex4(0xfffd, dest);
        ++i;
      } else {
        dest.append(text.data() + i, text.data() + i + length);
        i += length;
      }
      continue;
    }
    switch (c) {
      case '"':
        dest.append(std::string_view("\\\""));
        break;
      case '\\':
        dest.append(std::string_view("\\\\"));
        break;
      case '\n':
        dest.append(std::string_view("\\n"));
        break;
      case '\r':
        dest.append(std::string_view("\\r"));
        break;
      case '\t':
        dest.append(std::string_view("\\t"));
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          AppendHex4(u, dest);
        } else {
          dest.push_back(c);
        }
    }
    ++i;
  }
}

bool IsReservedKey(std::string_view key) {
  return key == "time" || key == "level" || key == "logger" || key == "msg";
}

// Why custom flags rather than a pattern alone: spdlog's %v and %n copy the message and the
// logger name into the line as they are, and spdlog has no escaping flag. A message holding
// a quote, a backslash or a newline (an enterprise's name, a broker's error text, a filing
// field echoed back) would end the JSON string early, split the line in two, or inject
// members of its own. These flags write the same text escaped for JSON, and the structured
// fields, which never travel inside the message.
class JsonPartFormatter final : public spdlog::custom_flag_formatter {
 public:
  enum class Part { kMessage, kLoggerName, kJsonFields, kTextFields };
  explicit JsonPartFormatter(Part part) : part_(part) {}

  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    switch (part_) {
      case Part::kMessage:
        AppendJsonEscaped(std::string_view(msg.payload.data(), msg.payload.size()), dest);
        break;
      case Part::kLoggerName:
        AppendJsonEscaped(std::string_view(msg.logger_name.data(), msg.logger_name.size()), dest);
        break;
      case Part::kJsonFields:
        for (const LogField& field : current_fields) {
          dest.append(std::string_view(IsReservedKey(field.key()) ? ",\"_" : ",\""));
          AppendJsonEscaped(field.key(), dest);
          dest.append(std::string_view("\":"));
          if (field.quoted()) {
            dest.push_back('"');
            AppendJsonEscaped(field.value(), dest);
            dest.push_back('"');
          } else {
            dest.append(field.value());
          }
        }
        break;
      case Part::kTextFields:
        for (const LogField& field : current_fields) {
          dest.push_back(' ');
          dest.append(field.key());
          dest.push_back('=');
          const bool plain = !field.value().empty() &&
                             std::none_of(field.value().begin(), field.value().end(), [](char c) {
                               return absl::ascii_isspace(static_cast<unsigned char>(c)) ||
                                      c == '"' ||
                                      absl::ascii_iscntrl(static_cast<unsigned char>(c));
                             });
          if (plain || !field.quoted()) {
            dest.append(field.value());
          } else {
            dest.push_back('"');
            AppendJsonEscaped(field.value(), dest);
            dest.push_back('"');
          }
        }
        break;
    }
  }

  std::unique_ptr<spdlog::custom_flag_formatter> clone() const override {
    return std::make_unique<JsonPartFormatter>(part_);
  }

 private:
  Part part_;
};

constexpr char kMessageFlag = 'q';
constexpr char kLoggerNameFlag = 'N';
constexpr char kJsonFieldsFlag = 'Q';
constexpr char kTextFieldsFlag = 'K';

std::mutex& LoggerMutex() {
  static auto* mu = new std::mutex();
  return *mu;
}

// Sinks shared by the default logger and every GetLogger() logger.
std::vector<spdlog::sink_ptr>& SharedSinks() {
  static auto* sinks = new std::vector<spdlog::sink_ptr>();
  return *sinks;
}

void LogFromGrpc(gpr_log_func_args* args) {
  static const auto logger = GetLogger("grpc");
  spdlog::level::level_enum level = spdlog::level::info;
  switch (args->severity) {
    case GPR_LOG_SEVERITY_DEBUG:
      level = spdlog::level::debug;
      break;
    case GPR_LOG_SEVERITY_INFO:
      level = spdlog::level::info;
      break;
    case GPR_LOG_SEVERITY_ERROR:
      level = spdlog::level::err;
      break;
  }
  LogWithFields(level, args->message != nullptr ? args->message : "",
                {{"file", args->file != nullptr ? args->file : ""}, {"line", args->line}},
                logger.get());
}

// The parse error protobuf reported last on this thread (TakeProtobufParseError).
thread_local std::string last_parse_error;

// Protobuf's lines, at most one a minute per source line: a client sending strings that are
// not UTF-8 makes one per request otherwise. Returns whether to log this one, and how many
// were left out since the last one logged.
bool ShouldLogProtobufLine(const char* file, int line, int64_t* suppressed) {
  struct Source {
    absl::Time logged = absl::InfinitePast();
    int64_t suppressed = 0;
  };
  static auto* mu = new std::mutex();
  static auto* sources = new std::map<std::pair<std::string, int>, Source>();
  const absl::Time now = absl::Now();
  std::lock_guard<std::mutex> lock(*mu);
  Source& source = (*sources)[{file != nullptr ? file : "", line}];
  if (now - source.logged < absl::Minutes(1)) {
    ++source.suppressed;
    return false;
  }
  source.logged = now;
  *suppressed = std::exchange(source.suppressed, 0);
  return true;
}

void LogFromProtobuf(google::protobuf::LogLevel severity, const char* file, int line,
                     const std::string& message) {
  static const auto logger = GetLogger("protobuf");
  static auto& counted = prometheus::BuildCounter()
                             .Name("stip_protobuf_log_messages_total")
                             .Help(
                                 "Messages protobuf reported (parse errors among them), by "
                                 "level, logged or not")
                             .Register(MetricsRegistry());
  if (absl::StrContains(message, "when parsing a protocol buffer")) last_parse_error = message;
  spdlog::level::level_enum level = spdlog::level::info;
  switch (severity) {
    case google::protobuf::LOGLEVEL_INFO:
      level = spdlog::level::info;
      break;
    case google::protobuf::LOGLEVEL_WARNING:
      level = spdlog::level::warn;
      break;
    case google::protobuf::LOGLEVEL_ERROR:
      level = spdlog::level::err;
      break;
    case google::protobuf::LOGLEVEL_FATAL:
      level = spdlog::level::critical;
      break;
  }
  const spdlog::string_view_t level_name = spdlog::level::to_string_view(level);
  counted.Add({{"level", std::string(level_name.data(), level_name.size())}}).Increment();
  int64_t suppressed = 0;
  if (level != spdlog::level::critical && !ShouldLogProtobufLine(file, line, &suppressed)) return;
  LogWithFields(level, message,
                {{"file", file != nullptr ? file : ""}, {"line", line}, {"suppressed", suppressed}},
                logger.get());
}

}  // namespace

absl::StatusOr<LogFormat> ParseLogFormat(std::string_view name) {
  if (name == "json") return LogFormat::kJson;
  if (name == "text") return LogFormat::kText;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown log format \"", std::string(name), "\"; expected json or text"));
}

absl::StatusOr<spdlog::level::level_enum> ParseLogLevel(std::string_view name) {
  static constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace},       {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},         {"warn", spdlog::level::warn},
      {"warning", spdlog::level::warn},      {"error", spdlog::level::err},
      {"critical", spdlog::level::critical}, {"off", spdlog::level::off},
  };
  for (const auto& [level_name, level] : kLevels) {
    if (name == level_name) return level;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown log level \"", std::string(name),
                   "\"; expected trace, debug, info, warn, error, critical or off"));
}

std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format) {
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  using Part = JsonPartFormatter::Part;
  if (format == LogFormat::kJson) {
    formatter->add_flag<JsonPartFormatter>(kMessageFlag, Part::kMessage);
    formatter->add_flag<JsonPartFormatter>(kLoggerNameFlag, Part::kLoggerName);
    formatter->add_flag<JsonPartFormatter>(kJsonFieldsFlag, Part::kJsonFields);
    formatter->set_pattern(absl::StrCat(R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l",)",
                                        R"("logger":"%)", std::string(1, kLoggerNameFlag),
                                        R"(","msg":"%)", std::string(1, kMessageFlag), R"(")", "%",
                                        std::string(1, kJsonFieldsFlag), "}"));
  } else {
    formatter->add_flag<JsonPartFormatter>(kTextFieldsFlag, Part::kTextFields);
    formatter->set_pattern(
        absl::StrCat("%Y-%m-%dT%H:%M:%S.%fZ %^%-8l%$ %n: %v%", std::string(1, kTextFieldsFlag)));
  }
  return formatter;
}

void InitLogging(std::string_view service_name, spdlog::level::level_enum level, LogFormat format) {
  {
    std::lock_guard<std::mutex> lock(LoggerMutex());
    spdlog::sink_ptr sink;
    if (format == LogFormat::kJson) {
      sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    } else {
      // Colours only when stdout is a terminal.
      sink = std::make_shared<spdlog::sinks::stdout_color_sink_mt>();
    }
    sink->set_formatter(MakeLogFormatter(format));
    SharedSinks() = {sink};

    auto logger = std::make_shared<spdlog::logger>(std::string(service_name), sink);
    logger->set_level(level);
    spdlog::drop(std::string(service_name));
    spdlog::set_default_logger(logger);
    // Loggers made by GetLogger before now switch to the new output and level.
    spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& other) {
      if (other == logger) return;
      other->sinks() = SharedSinks();
      other->set_level(level);
    });
  }
  gpr_set_log_function(&LogFromGrpc);
  google::protobuf::SetLogHandler(&LogFromProtobuf);
}

std::shared_ptr<spdlog::logger> GetLogger(std::string_view name) {
  std::lock_guard<std::mutex> lock(LoggerMutex());
  const std::string key(name);
  if (auto existing = spdlog::get(key)) return existing;
  std::vector<spdlog::sink_ptr> sinks = SharedSinks();
  if (sinks.empty()) sinks = spdlog::default_logger()->sinks();  // before InitLogging
  auto logger = std::make_shared<spdlog::logger>(key, sinks.begin(), sinks.end());
  logger->set_level(spdlog::default_logger()->level());
  spdlog::register_logger(logger);
  return logger;
}

void LogWithFields(spdlog::level::level_enum level, std::string_view message,
                   std::initializer_list<LogField> fields, spdlog::logger* logger) {
  if (logger == nullptr) logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;
  const absl::Span<const LogField> previous = current_fields;
  current_fields = absl::MakeConstSpan(fields.begin(), fields.size());
  logger->log(level, spdlog::string_view_t(message.data(), message.size()));
  current_fields = previous;
}

std::string TakeProtobufParseError() { return std::exchange(last_parse_error, std::string()); }

int StartupFailure(std::string_view program, int exit_code, std::string_view message) {
  spdlog::critical("{}", message);
  std::cerr << program << ": " << message << std::endl;
  return exit_code;
}

}  // namespace stip
