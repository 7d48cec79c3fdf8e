// The decision stream: stip.filings.v1 -> stip.decisions.v1, exactly once.
//
// DecisionHandler is the BatchHandler that stip-assessment runs in an ExactlyOnceProcessor
// (group "stip-assessment"). For each AcceptedFiling event (protobuf, CloudEvents binary
// mode) it publishes one of:
//   - a QualificationDecision to stip.decisions.v1, keyed by the USCC, as a CloudEvent with
//     ce_id = decision_id, ce_type "stip.v1.QualificationDecision", ce_source
//     "/stip/assessment", ce_time = decide_time;
//   - when no policy covers the filing's fiscal year, a RejectedFiling to
//     stip.filings.rejected.v1 (see "No policy" below);
//   - nothing, when the same filing revision was filed earlier (see "Repeats");
//   - a dead letter (BatchOutput::DeadLetter) with the reason, when the event is not an
//     AcceptedFiling that can be assessed: another ce_type or content-type, bytes that do
//     not parse, no filing_id, uscc, fiscal year or revision, negative amounts, or a region
//     value this build does not know.
// Delivery: each filing event affects the output exactly once (the processor commits a
// batch's outputs with its offsets). Order: events of one partition are handled in offset
// order and their outputs published in that order, keyed by USCC, so one enterprise's
// decisions keep the order of its filings.
//
// SUPERSEDES. A later revision of a filing gets a new decision that names the decision it
// supersedes. The service keeps no state of its own (DESIGN.md: assessment is stateless):
// what it needs of the past it reads back from the log. It reads the *input* topic, not
// its own output:
//   - Filings are keyed by USCC, so every revision of one enterprise's filing for a year is
//     in one partition, in the order it was filed. The filing a revision supersedes is
//     therefore fixed by the partition's events below it: the greatest revision below its
//     own among the decided filings of the same enterprise and year at lower offsets
//     ("strictly below", so a filing never supersedes itself). The decision on it is
//     DecisionId(its filing id, the new decision's policy): both revisions are of the same
//     fiscal year, hence decided under the same policy (policies cover whole fiscal years).
//   - So a decision is a function of the filing, the partition's events below it and the
//     policy set, and of nothing else. A batch handed over again after an abort, a crash
//     or a rebalance, to this instance or another, gives byte-identical events, the link
//     included; entries the history gained from the aborted attempt lie at or above the
//     filing's offset and do not count.
//   - What the history must read is bounded exactly by the batch's first offset per
//     partition (FilingHistory): no guess of where a topic ends, no timing.
// The alternative, a map rebuilt from stip.decisions.v1 "read to its end" at start-up and
// updated by batches, was not taken: the event log interface cannot say where "the end" is
// (a read that stops early silently gives wrong links), decisions another instance makes
// for a partition before it moves here would need a second read at each rebalance, and
// batches that are then aborted leave entries that were never committed.
// Costs: the first batch of a partition after start-up (or after another instance had
// it) fails while its history is read and is retried after the processor's back-off; and
// stip.filings.v1 must keep every filing that can still be superseded (it is the system of
// record: retention.ms=-1). A reload that changed the policy of a year already decided, which
// policies/README.md rules out, would make a link name the decision the previous revision
// gets under the new policy. Adding partitions to stip.filings.v1 moves enterprises between
// partitions (as for every keyed consumer) and is not supported.
//
// DECIDE TIME. decide_time (and ce_time) is the filing event's timestamp in the log
// (ConsumedEvent::timestamp: Kafka's CreateTime from intake's producer, or the SQLite
// append time), not the wall clock: the decision is fixed by then, and a batch handed over
// again stamps the same time.
//
// NO POLICY. A filing for a fiscal year no policy covers gets no decision: a decision names
// the policy it applies and there is none (and NOT_QUALIFIED would be a verdict nobody
// made). It is not a dead letter either: the event is sound, and the enterprise and the
// regulator need the answer, not an operator. It goes to stip.filings.rejected.v1 as a
// RejectedFiling with the violation POLICY_NOT_FOUND on filing.fiscal_year, the original
// payload and its source position, where refused filings are already reported; waiting
// for a policy instead would hold up every enterprise of the partition. Once a policy for
// the year exists, operators re-drive the filings from there.
//
// REPEATS. A filing revision filed again (same enterprise, year and revision, so the same
// filing id) gets no second decision: the first stands. When the content differs, a
// warning is logged; the registry reports the conflict.
//
// Threads: HandleBatch on the processor's thread only; the policy store and the history are
// thread-safe and shared with the gRPC service and the history reader.
//
// Metrics (counted the first time this process handles an event, so a batch handed over
// again is not counted twice; one aborted here and committed by another instance is
// counted by both):
//   stip_decisions_total{outcome="qualified"|"not_qualified"}
//   stip_assessment_filings_total{result="decided"|"repeat"|"rejected"|"dead_lettered"}
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "services/assessment/filing_history.h"
#include "services/assessment/policy.h"
#include "services/assessment/policy_store.h"
#include "services/common/event.h"
#include "services/common/event_log.h"
#include "stip/v1/decision.pb.h"
#include "stip/v1/filing.pb.h"

namespace stip::assessment {

inline constexpr std::string_view kAssessmentGroup = "stip-assessment";
inline constexpr std::string_view kAssessmentSource = "/stip/assessment";
inline constexpr std::string_view kAcceptedFilingType = "stip.v1.AcceptedFiling";
inline constexpr std::string_view kDecisionType = "stip.v1.QualificationDecision";
inline constexpr std::string_view kRejectedFilingType = "stip.v1.RejectedFiling";
// The FilingViolation reason of a filing no policy covers.
inline constexpr std::string_view kPolicyNotFoundReason = "POLICY_NOT_FOUND";

// Where the stream publishes. The defaults are DESIGN.md's topics; tests give their own.
struct DecisionTopics {
  std::string decisions = std::string(kDecisionsTopic);
  std::string rejected = std::string(kFilingsRejectedTopic);
};

// The AcceptedFiling an event carries. kInvalidArgument, with the reason for the dead
// letter, when it is not one that can be assessed (see the top of this file).
absl::StatusOr<v1::AcceptedFiling> DecodeAcceptedFiling(const ConsumedEvent& event);

// What the filing history keeps of `event`: the filing when it gets a decision under
// `policies`, nullopt otherwise. The history's Classifier.
std::optional<IndexedFiling> ClassifyFiling(const ConsumedEvent& event, const PolicySet& policies);

// A Classifier over the policies in force at each call.
FilingHistory::Classifier HistoryClassifier(const PolicyStore* policies);

// The decision event for `decision` (see the top of this file).
OutgoingEvent DecisionEvent(const v1::QualificationDecision& decision, const std::string& topic);

class DecisionHandler final : public BatchHandler {
 public:
  // `policies` and `history` outlive the handler; `history` indexes the topic the handler
  // consumes.
  DecisionHandler(const PolicyStore* policies, FilingHistory* history, DecisionTopics topics);

  // kUnavailable, publishing nothing, while the history is not read up to the batch (the
  // processor hands the batch over again after its back-off); OK otherwise. A bad event
  // never fails a batch.
  absl::Status HandleBatch(absl::Span<const ConsumedEvent> batch, BatchOutput& output) override;

 private:
  const PolicyStore* const policies_;
  FilingHistory* const history_;
  const DecisionTopics topics_;
  // Partition -> the offset after the last event this process handled: for the metrics.
  std::map<int32_t, int64_t> handled_end_;
};

}  // namespace stip::assessment
