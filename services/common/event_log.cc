#include "services/common/event_log.h"

#include "absl/strings/str_cat.h"
#include "services/common/kafka_event_log.h"
#include "services/common/sqlite_event_log.h"

namespace stip {

std::vector<TopicSpec> StandardTopics(int32_t partitions) {
  std::vector<TopicSpec> topics;
  for (std::string_view name : {kFilingsInboundTopic, kFilingsTopic, kFilingsRejectedTopic,
                                kDecisionsTopic, kListingsTopic, kDeadLetterTopic}) {
    topics.push_back({std::string(name), partitions});
  }
  return topics;
}

std::vector<TopicSpec> StandardTopics(int32_t partitions, const std::vector<std::string>& also) {
  std::vector<TopicSpec> topics = StandardTopics(partitions);
  for (const std::string& name : also) {
    bool listed = false;
    for (const TopicSpec& spec : topics) listed = listed || spec.name == name;
    if (!listed) topics.push_back({name, partitions});
  }
  return topics;
}

absl::Status CheckEventSizes(absl::Span<const OutgoingEvent> events, size_t max_bytes) {
  for (const OutgoingEvent& event : events) {
    if (const size_t bytes = EventBytes(event); bytes > max_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "an event for topic ", event.topic, " is ", bytes,
          " bytes (key, value and headers), over the event log's limit of ", max_bytes, " bytes"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<EventLog>> OpenEventLog(std::string_view url,
                                                       const EventLogOptions& options) {
  constexpr std::string_view kKafka = "kafka://";
  constexpr std::string_view kSqlite = "sqlite://";
  if (url.starts_with(kKafka)) {
    std::string_view bootstrap = url.substr(kKafka.size());
    if (bootstrap.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("event log URL '", std::string(url),
                                                     "' names no broker: use kafka://host:port"));
    }
    return OpenKafkaEventLog(std::string(bootstrap), options);
  }
  if (url.starts_with(kSqlite)) {
    std::string_view path = url.substr(kSqlite.size());
    if (path.empty() || path.front() != '/') {
      return absl::InvalidArgumentError(absl::StrCat(
          "event log URL '", std::string(url),
          "' needs an absolute path: use sqlite:///var/lib/stip/stip.db (three slashes)"));
    }
    return OpenSqliteEventLog(std::string(path), options);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("event log URL '", std::string(url),
                   "' is neither kafka://host:port nor sqlite:///path/to/file.db"));
}

}  // namespace stip
