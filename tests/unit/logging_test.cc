#include "services/common/logging.h"

#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"

namespace stip {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A logger like InitLogging's, writing into a string.
class CapturedLog {
 public:
  explicit CapturedLog(LogFormat format, std::string name = "stip-test") {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out_);
    sink->set_formatter(MakeLogFormatter(format));
    logger_ = std::make_shared<spdlog::logger>(std::move(name), sink);
    logger_->set_level(spdlog::level::trace);
  }
  spdlog::logger& logger() { return *logger_; }
  std::vector<std::string> Lines() const {
    std::vector<std::string> lines = absl::StrSplit(out_.str(), '\n', absl::SkipEmpty());
    return lines;
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> logger_;
};

google::protobuf::Struct ParseJson(const std::string& line) {
  google::protobuf::Struct parsed;
  const auto status = google::protobuf::util::JsonStringToMessage(line, &parsed);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in: " << line;
  return parsed;
}

std::string Field(const google::protobuf::Struct& object, const std::string& key) {
  auto it = object.fields().find(key);
  return it == object.fields().end() ? "<missing>" : it->second.string_value();
}

TEST(LoggingTest, JsonLineHasTimeLevelLoggerAndMessage) {
  CapturedLog log(LogFormat::kJson, "stip-intake");
  log.logger().info("filing {} accepted", 42);
  log.logger().warn("slow");
  const std::vector<std::string> lines = log.Lines();
  ASSERT_EQ(lines.size(), 2u);
  const google::protobuf::Struct first = ParseJson(lines[0]);
  EXPECT_EQ(Field(first, "level"), "info");
  EXPECT_EQ(Field(first, "logger"), "stip-intake");
  EXPECT_EQ(Field(first, "msg"), "filing 42 accepted");
  EXPECT_TRUE(std::regex_match(Field(first, "time"),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)")))
      << Field(first, "time");
  EXPECT_EQ(Field(ParseJson(lines[1]), "level"), "warning");
}

TEST(LoggingTest, MessageIsEscaped) {
  CapturedLog log(LogFormat::kJson);
  static constexpr char kControl[] = "nul\0bell\a escape\x1b del\x7f";
  const std::vector<std::string> messages = {
      R"(a "quoted" name)",
      "two\nlines\r\n",
      "tab\tbackslash\\ slash/",
      std::string(kControl, sizeof(kControl) - 1),
      R"(not a field: ","level":"critical)",
      "{} braces {0}",
      "中关村 Zhongguancun, Ürümqi",
  };
  for (const std::string& message : messages) {
    log.logger().log(spdlog::level::info, spdlog::string_view_t(message.data(), message.size()));
  }
  const std::vector<std::string> lines = log.Lines();
  ASSERT_EQ(lines.size(), messages.size());  // no message split its line
  for (size_t i = 0; i < lines.size(); ++i) {
    const google::protobuf::Struct parsed = ParseJson(lines[i]);
    EXPECT_EQ(Field(parsed, "msg"), messages[i]);
    EXPECT_EQ(Field(parsed, "level"), "info") << lines[i];
    EXPECT_EQ(parsed.fields_size(), 4) << lines[i];
  }
}

TEST(LoggingTest, InvalidUtf8IsReplaced) {
  CapturedLog log(LogFormat::kJson);
  log.logger().info("bad \xff\xfe and overlong \xc0\xaf and cut \xe4\xb8");
  const std::vector<std::string> lines = log.Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(Field(ParseJson(lines[0]), "msg"),
            "bad \xEF\xBF\xBD\xEF\xBF\xBD and overlong \xEF\xBF\xBD\xEF\xBF\xBD and cut "
            "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(LoggingTest, StructuredFieldsAreJsonMembers) {
  CapturedLog log(LogFormat::kJson);
  LogWithFields(spdlog::level::info, "filing accepted",
                {{"uscc", "91650100MA77XXXX1X"},
                 {"revision", 2},
                 {"amount_fen", int64_t{-12345678901}},
                 {"foreign", true},
                 {"note", std::string("say \"hi\"\n")},
                 {"msg", "a field named msg"}},
                &log.logger());
  const std::vector<std::string> lines = log.Lines();
  ASSERT_EQ(lines.size(), 1u);
  const google::protobuf::Struct parsed = ParseJson(lines[0]);
  EXPECT_EQ(Field(parsed, "msg"), "filing accepted");
  EXPECT_EQ(Field(parsed, "uscc"), "91650100MA77XXXX1X");
  EXPECT_EQ(parsed.fields().at("revision").number_value(), 2);
  EXPECT_EQ(parsed.fields().at("amount_fen").number_value(), -12345678901.0);
  EXPECT_TRUE(parsed.fields().at("foreign").bool_value());
  EXPECT_EQ(Field(parsed, "note"), "say \"hi\"\n");
  EXPECT_EQ(Field(parsed, "_msg"), "a field named msg");
}

TEST(LoggingTest, FieldsBelongToTheirOwnLineOnly) {
  CapturedLog log(LogFormat::kJson);
  LogWithFields(spdlog::level::info, "with", {{"k", "v"}}, &log.logger());
  log.logger().info("without");
  const std::vector<std::string> lines = log.Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(ParseJson(lines[1]).fields_size(), 4);
}

TEST(LoggingTest, FilteredLevelWritesNothing) {
  CapturedLog log(LogFormat::kJson);
  log.logger().set_level(spdlog::level::warn);
  LogWithFields(spdlog::level::info, "quiet", {{"k", "v"}}, &log.logger());
  EXPECT_TRUE(log.Lines().empty());
}

TEST(LoggingTest, TextFormatIsForPeople) {
  CapturedLog log(LogFormat::kText, "stip-registry");
  LogWithFields(spdlog::level::warn, "slow batch",
                {{"events", 5000}, {"group", "registry"}, {"reason", "disk is busy"}},
                &log.logger());
  const std::vector<std::string> lines = log.Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("stip-registry: slow batch events=5000 group=registry "
                                  "reason=\"disk is busy\""));
  EXPECT_THAT(lines[0], HasSubstr("warning"));
  EXPECT_THAT(lines[0], Not(HasSubstr("{")));
}

TEST(LoggingTest, ParseLevelAndFormat) {
  EXPECT_EQ(*ParseLogLevel("warn"), spdlog::level::warn);
  EXPECT_EQ(*ParseLogLevel("warning"), spdlog::level::warn);
  EXPECT_EQ(*ParseLogLevel("error"), spdlog::level::err);
  EXPECT_FALSE(ParseLogLevel("verbose").ok());
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_EQ(*ParseLogFormat("text"), LogFormat::kText);
  EXPECT_FALSE(ParseLogFormat("xml").ok());
}

TEST(LoggingTest, InitLoggingWritesJsonToStdout) {
  ::testing::internal::CaptureStdout();
  InitLogging("stip-test-service", spdlog::level::info, LogFormat::kJson);
  spdlog::info("hello \"world\"");
  spdlog::debug("not shown");
  GetLogger("kafka")->warn("broker down");
  const std::string out = ::testing::internal::GetCapturedStdout();
  const std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << out;
  EXPECT_EQ(Field(ParseJson(lines[0]), "msg"), "hello \"world\"");
  EXPECT_EQ(Field(ParseJson(lines[0]), "logger"), "stip-test-service");
  EXPECT_EQ(Field(ParseJson(lines[1]), "logger"), "kafka");
}

}  // namespace
}  // namespace stip
