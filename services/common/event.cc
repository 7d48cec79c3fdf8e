#include "services/common/event.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

// Debian 12's Abseil has its own absl::string_view, not std::string_view: strings cross into
// Abseil as std::string.

namespace stip {

std::optional<std::string_view> ConsumedEvent::Header(std::string_view name) const {
  for (const auto& [header_name, value] : headers) {
    if (header_name == name) return std::string_view(value);
  }
  return std::nullopt;
}

std::string ConsumedEvent::Position() const {
  return absl::StrCat(topic, "/", partition, "@", offset);
}

OutgoingEvent MakeCloudEvent(std::string topic, std::string key, std::string value,
                             const CloudEventAttributes& attributes) {
  OutgoingEvent event{std::move(topic), std::move(key), std::move(value), {}};
  event.headers = {
      {"ce_specversion", "1.0"},
      {"ce_id", attributes.id},
      {"ce_type", attributes.type},
      {"ce_source", attributes.source},
      {"ce_time", absl::FormatTime(absl::RFC3339_full, attributes.time, absl::UTCTimeZone())},
      {"content-type", attributes.content_type},
  };
  return event;
}

std::optional<CloudEventAttributes> ReadCloudEventAttributes(const ConsumedEvent& event) {
  auto id = event.Header("ce_id");
  auto type = event.Header("ce_type");
  if (!id || !type) return std::nullopt;
  CloudEventAttributes attributes;
  attributes.id = std::string(*id);
  attributes.type = std::string(*type);
  attributes.source = std::string(event.Header("ce_source").value_or(""));
  attributes.content_type = std::string(event.Header("content-type").value_or(""));
  std::string error;
  if (auto time = event.Header("ce_time");
      !time || !absl::ParseTime(absl::RFC3339_full, std::string(*time), &attributes.time, &error)) {
    attributes.time = event.timestamp;
  }
  return attributes;
}

uint32_t Murmur2(std::string_view data) {
  // A transcription of Kafka's Utils.murmur2, the partitioner's hash; librdkafka's
  // murmur2_random does the same, but is not exported for the SQLite backend to call.
  constexpr uint32_t kSeed = 0x9747b28c;
  constexpr uint32_t kM = 0x5bd1e995;
  constexpr int kR = 24;
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  const size_t length = data.size();
  uint32_t h = kSeed ^ static_cast<uint32_t>(length);
  const size_t whole_words = length / 4;
  for (size_t i = 0; i < whole_words; ++i) {
    const size_t at = i * 4;
    uint32_t k = static_cast<uint32_t>(bytes[at]) | (static_cast<uint32_t>(bytes[at + 1]) << 8) |
                 (static_cast<uint32_t>(bytes[at + 2]) << 16) |
                 (static_cast<uint32_t>(bytes[at + 3]) << 24);
    k *= kM;
    k ^= k >> kR;
    k *= kM;
    h *= kM;
    h ^= k;
  }
  const size_t tail = whole_words * 4;
  switch (length % 4) {
    case 3:
      h ^= static_cast<uint32_t>(bytes[tail + 2]) << 16;
      [[fallthrough]];
    case 2:
      h ^= static_cast<uint32_t>(bytes[tail + 1]) << 8;
      [[fallthrough]];
    case 1:
      h ^= static_cast<uint32_t>(bytes[tail]);
      h *= kM;
  }
  h ^= h >> 13;
  h *= kM;
  h ^= h >> 15;
  return h;
}

int32_t PartitionForKey(std::string_view key, int32_t partition_count) {
  // Kafka's Utils.toPositive: clear the sign bit, not abs().
  return static_cast<int32_t>((Murmur2(key) & 0x7fffffff) % static_cast<uint32_t>(partition_count));
}

namespace {

size_t HeaderBytes(const EventHeaders& headers) {
  size_t bytes = 0;
  for (const auto& [name, value] : headers) bytes += name.size() + value.size();
  return bytes;
}

// A reason is for people; a sender's megabyte of text in it would only crowd out the event.
constexpr size_t kMaxReasonBytes = 1024;

// Builds a dead letter of `key`, `value` and `headers`, cut to `max_bytes` when needed: the
// reason and the source always stay (they say what happened), then the original headers
// in order while they fit, then as much of the key and the value as is left.
OutgoingEvent BoundedDeadLetter(const std::string& key, const std::string& value,
                                const EventHeaders& headers, std::string_view reason,
                                std::string source, size_t max_bytes) {
  OutgoingEvent dead_letter{std::string(kDeadLetterTopic), key, value, headers};
  std::string why(reason.substr(0, kMaxReasonBytes));
  dead_letter.headers.emplace_back(std::string(kDeadLetterReasonHeader), why);
  dead_letter.headers.emplace_back(std::string(kDeadLetterSourceHeader), source);
  const size_t original = EventBytes(dead_letter);
  if (original <= max_bytes) return dead_letter;

  OutgoingEvent cut{std::string(kDeadLetterTopic), {}, {}, {}};
  cut.headers.emplace_back(std::string(kDeadLetterReasonHeader), std::move(why));
  cut.headers.emplace_back(std::string(kDeadLetterSourceHeader), std::move(source));
  cut.headers.emplace_back(std::string(kDeadLetterTruncatedHeader), "true");
  cut.headers.emplace_back(std::string(kDeadLetterOriginalSizeHeader),
                           std::to_string(key.size() + value.size() + HeaderBytes(headers)));
  size_t room = max_bytes > EventBytes(cut) ? max_bytes - EventBytes(cut) : 0;
  // Room for the key first (it places the event), then the headers, then the value.
  cut.key = key.substr(0, std::min(key.size(), room / 2));
  room -= cut.key.size();
  for (const auto& [name, header_value] : headers) {
    if (name.size() + header_value.size() > room / 2) continue;
    cut.headers.emplace_back(name, header_value);
    room -= name.size() + header_value.size();
  }
  cut.value = value.substr(0, room);
  return cut;
}

}  // namespace

size_t EventBytes(const OutgoingEvent& event) {
  return event.key.size() + event.value.size() + HeaderBytes(event.headers);
}

OutgoingEvent DeadLetterFor(const ConsumedEvent& event, std::string_view reason, size_t max_bytes) {
  return BoundedDeadLetter(event.key, event.value, event.headers, reason, event.Position(),
                           max_bytes);
}

OutgoingEvent DeadLetterForOutput(const OutgoingEvent& event, std::string_view reason,
                                  std::string_view source, size_t max_bytes) {
  return BoundedDeadLetter(event.key, event.value, event.headers, reason, std::string(source),
                           max_bytes);
}

}  // namespace stip
