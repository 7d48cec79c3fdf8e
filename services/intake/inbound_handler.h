// The Kafka entry: a BatchHandler for an ExactlyOnceProcessor on stip.filings.inbound.v1.
// Each inbound event is an AnnualFiling, protobuf (content-type application/protobuf, or
// none), or its JSON mapping (content-type application/json). Every event ends in exactly
// one place, atomically with the batch's offsets:
//   accepted   an AcceptedFiling on `accepted_topic`, the same event the gRPC path
//              publishes (filing_id as ce_id; request_id the inbound ce_id, or the inbound
//              position when it has none);
//   refused    a RejectedFiling on `rejected_topic` (violations, the first 4 KiB of the
//              original payload with its size, SHA-256 and content type, the source
//              position; the decoded filing unless it is too large to carry); keyed by the
//              USCC, or by the inbound key when the filing has none. A ce_id that breaks the
//              request_id rule (CheckRequestId) refuses the filing too, with a violation on
//              "request_id";
//   undecodable  the dead-letter topic, with the reason (cut to the event limit, marked).
// No inbound event, whatever its size, stops the partitions: nothing this handler emits is
// over the event log's limit, and the processor dead-letters what the broker refuses.
// An inbound event that repeats a filing the registry already recorded with the same
// request_id and content produces nothing (it was accepted before).
//
// The registry unreachable during a batch fails the batch: it is retried after a back-off,
// never rejected. Threads: HandleBatch on the processor's thread only.
#pragma once

#include <string>

#include "absl/container/flat_hash_map.h"
#include "services/common/event.h"
#include "services/common/event_log.h"
#include "services/intake/registry_client.h"

namespace stip::intake {

struct InboundTopics {
  std::string inbound = std::string(kFilingsInboundTopic);
  std::string accepted = std::string(kFilingsTopic);
  std::string rejected = std::string(kFilingsRejectedTopic);
};

// The consumer group of the inbound entry.
inline constexpr char kInboundGroup[] = "stip-intake.inbound";

class InboundFilingHandler final : public BatchHandler {
 public:
  // `registry` outlives the handler.
  InboundFilingHandler(RegistryClient* registry, InboundTopics topics)
      : registry_(registry), topics_(std::move(topics)) {}

  absl::Status HandleBatch(absl::Span<const ConsumedEvent> batch, BatchOutput& output) override;

 private:
  RegistryClient* const registry_;
  const InboundTopics topics_;
};

}  // namespace stip::intake
