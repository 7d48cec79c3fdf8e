// Events as the event log carries them: keyed bytes with headers, in CloudEvents binary
// mode (https://github.com/cloudevents/spec, Kafka protocol binding).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace stip {

using EventHeaders = std::vector<std::pair<std::string, std::string>>;

// The topics of DESIGN.md. Keys are always the enterprise's USCC.
inline constexpr std::string_view kFilingsInboundTopic = "stip.filings.inbound.v1";
inline constexpr std::string_view kFilingsTopic = "stip.filings.v1";
inline constexpr std::string_view kFilingsRejectedTopic = "stip.filings.rejected.v1";
inline constexpr std::string_view kDecisionsTopic = "stip.decisions.v1";
inline constexpr std::string_view kListingsTopic = "stip.listings.v1";
inline constexpr std::string_view kDeadLetterTopic = "stip.deadletter.v1";

// Headers a dead-lettered event carries besides its own (Kafka Connect's convention).
inline constexpr std::string_view kDeadLetterReasonHeader = "stip_dlq_reason";
inline constexpr std::string_view kDeadLetterSourceHeader =
    "stip_dlq_source";  // topic/partition@offset

inline constexpr std::string_view kContentTypeProtobuf = "application/protobuf";
inline constexpr std::string_view kContentTypeJson = "application/json";

// An event to publish.
struct OutgoingEvent {
  std::string topic;
  // Events with the same key land on the same partition and keep their order.
  std::string key;
  std::string value;
  EventHeaders headers;
};

// An event read from the log.
struct ConsumedEvent {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key;
  std::string value;
  EventHeaders headers;
  absl::Time timestamp;

  // The first header of that name, if any.
  std::optional<std::string_view> Header(std::string_view name) const;
  // "topic/partition@offset", for logs and dead letters.
  std::string Position() const;
};

// The CloudEvents context attributes we set on every event.
struct CloudEventAttributes {
  std::string id;      // unique per source; a repeat with the same id is the same event
  std::string type;    // e.g. "stip.v1.AcceptedFiling"
  std::string source;  // e.g. "/stip/intake"
  absl::Time time;
  std::string content_type = std::string(kContentTypeProtobuf);
};

// Builds an event in CloudEvents binary mode: ce_specversion, ce_id, ce_type, ce_source,
// ce_time (RFC 3339) and content-type headers.
OutgoingEvent MakeCloudEvent(std::string topic, std::string key, std::string value,
                             const CloudEventAttributes& attributes);

// Reads the attributes back; nullopt when ce_id or ce_type is missing.
std::optional<CloudEventAttributes> ReadCloudEventAttributes(const ConsumedEvent& event);

// The event that carries `event` to stip.deadletter.v1: its key, value and headers, plus
// the reason and its position (kDeadLetterReasonHeader, kDeadLetterSourceHeader).
OutgoingEvent DeadLetterFor(const ConsumedEvent& event, std::string_view reason);

// Kafka's default (Java client) partitioner: murmur2 of the key, positive, modulo the
// partition count. Both backends place keys with it, so one enterprise lands on the same
// partition whichever backend or client published it.
int32_t PartitionForKey(std::string_view key, int32_t partition_count);

// Kafka's murmur2 (org.apache.kafka.common.utils.Utils#murmur2), seed 0x9747b28c.
uint32_t Murmur2(std::string_view data);

}  // namespace stip
