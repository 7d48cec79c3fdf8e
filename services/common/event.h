// Events as the event log carries them: keyed bytes with headers, in CloudEvents binary
// mode (https://github.com/cloudevents/spec, Kafka protocol binding).
#pragma once

#include <cstddef>
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
// Set on a dead letter that had to be cut to fit the log's event limit: "true". The value
// (and, when they alone are too large, the key and the original headers) are cut, never
// the reason and the source.
inline constexpr std::string_view kDeadLetterTruncatedHeader = "stip_dlq_truncated";
// With kDeadLetterTruncatedHeader: the size in bytes of the original event (key, value
// and headers), so that an operator knows how much is missing.
inline constexpr std::string_view kDeadLetterOriginalSizeHeader = "stip_dlq_original_size";

// The largest event (key + value + header names and values, in bytes) that processors and
// publishers hand to the log. Kafka's default limit for a topic (max.message.bytes, and
// the broker's message.max.bytes) is 1,048,588 bytes for a whole record batch; 1,000,000
// leaves room for the batch and record overhead, and is librdkafka's default
// message.max.bytes. An event over it is refused before it reaches the producer
// (EventPublisher::Publish) or goes to the dead-letter topic, cut to fit (processors).
inline constexpr size_t kDefaultMaxEventBytes = 1'000'000;

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

// The size the event log counts for an event: key, value, header names and values.
size_t EventBytes(const OutgoingEvent& event);

// The event that carries `event` to stip.deadletter.v1: its key, value and headers, plus
// the reason and its position (kDeadLetterReasonHeader, kDeadLetterSourceHeader). Never
// larger than `max_bytes` (EventBytes): an event that would be is cut to fit and marked
// (kDeadLetterTruncatedHeader, kDeadLetterOriginalSizeHeader), so that a dead letter can
// always be published.
OutgoingEvent DeadLetterFor(const ConsumedEvent& event, std::string_view reason,
                            size_t max_bytes = kDefaultMaxEventBytes);

// The dead letter for an output a processor or relay could not publish (too large, or
// refused by the log for its own content): the event as it was meant to be, `reason`
// naming the topic it was for, cut to `max_bytes` like DeadLetterFor. `source` is the
// kDeadLetterSourceHeader: what produced the event (e.g. the processor's group).
OutgoingEvent DeadLetterForOutput(const OutgoingEvent& event, std::string_view reason,
                                  std::string_view source,
                                  size_t max_bytes = kDefaultMaxEventBytes);

// Kafka's default (Java client) partitioner: murmur2 of the key, positive, modulo the
// partition count. Both backends place keys with it, so one enterprise lands on the same
// partition whichever backend or client published it.
int32_t PartitionForKey(std::string_view key, int32_t partition_count);

// Kafka's murmur2 (org.apache.kafka.common.utils.Utils#murmur2), seed 0x9747b28c.
uint32_t Murmur2(std::string_view data);

}  // namespace stip
