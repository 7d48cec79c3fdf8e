// Accepting filings: what the gRPC IntakeService and the stip.filings.inbound.v1 consumer
// share. A filing is accepted when the validator (filing_validator.h) finds no violation
// and the registry confirms that its enterprise is enrolled in the park it names and that
// its revision is newer than the latest one recorded for the fiscal year. An accepted
// filing becomes a stip.v1.AcceptedFiling event on stip.filings.v1, keyed by USCC:
//
//   filing_id       "<uscc>/<fiscal_year>/<revision>", e.g. "91350100M000100Y43/2024/2"
//                   (FilingIdFor, services/common/filing_id.h): the same filing
//                   always gets the same id, and the id is the event's ce_id, so a
//                   repeated event is dropped downstream by id.
//   content_sha256  hex SHA-256 of the filing's deterministic protobuf serialization.
//   receive_time    when intake received the first attempt of the request.
//   request_id      the request that filed it (gRPC: the client's request_id; inbound:
//                   the inbound event's ce_id, or its position when it has none).
//
// Idempotency (AIP-155), FilingIntake::Submit: a request_id is remembered, with the content
// hash and the receipt, in a bounded in-memory cache (FilingIntakeOptions). A retry with
// the same request_id and the same filing gets the original receipt, while the first
// attempt is still in flight too (it waits for it: two concurrent attempts publish once).
// The same request_id with a different filing is refused (kInvalidArgument, violation on
// request_id). When the cache does not know the request (intake restarted, or the entry
// was evicted) and the registry has recorded a revision at least as new, the recorded
// AcceptedFiling answers a retry whose request_id and content hash match it.
// The window that remains: intake restarted (or evicted the entry) AND the registry has not
// yet recorded the first attempt. The retry then publishes a second, identical event with
// the same filing_id and ce_id, which consumers drop by id; its receipt carries a later
// receive_time. Filings with different request_ids for the same enterprise, year and
// revision are refused by intake when it accepted the first itself, and by the registry
// (as a conflict) otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "google/protobuf/timestamp.pb.h"
#include "services/common/event.h"
#include "services/common/event_log.h"
#include "services/common/filing_id.h"
#include "services/intake/filing_validator.h"
#include "services/intake/registry_client.h"
#include "stip/v1/filing.pb.h"

namespace stip::intake {

// Reasons of refusals that come from the registry or the request rather than from the
// filing alone; stable like those of violation_codes.h.
namespace reason {
// The request has no request_id (field "request_id").
inline constexpr std::string_view kRequestIdRequired = "REQUEST_ID_REQUIRED";
// The request_id is longer than kMaxRequestIdLength or holds a byte outside printable
// ASCII, 0x21-0x7E (field "request_id"; on the inbound topic, the event's ce_id).
inline constexpr std::string_view kRequestIdFormat = "REQUEST_ID_FORMAT";
// The request_id was used before for a different filing (field "request_id").
inline constexpr std::string_view kRequestIdReused = "REQUEST_ID_REUSED";
// The registry knows no enterprise with this USCC (field "filing.uscc").
inline constexpr std::string_view kEnterpriseNotEnrolled = "ENTERPRISE_NOT_ENROLLED";
// The enterprise is enrolled in another park than the filing names (field
// "filing.park_id"); the message names the park it is enrolled in.
inline constexpr std::string_view kEnterpriseInOtherPark = "ENTERPRISE_IN_OTHER_PARK";
// The revision is not newer than the latest recorded (or accepted) for the fiscal year
// (field "filing.revision"); the message names the current revision.
inline constexpr std::string_view kRevisionNotNewer = "REVISION_NOT_NEWER";
// The revision skips ahead: beyond the latest recorded (or accepted) for the fiscal year
// plus one (field "filing.revision"); the message names the highest it may be.
inline constexpr std::string_view kRevisionBeyondNext = "REVISION_BEYOND_NEXT";
// The accepted filing would be an event larger than the event log takes
// (EventPublisher::MaxEventBytes, 1,000,000 bytes by default), which a request within the
// gRPC message limit can be, mostly through fields this server does not know (field
// "filing"); the message gives both sizes. Nothing was published; a retry cannot succeed.
inline constexpr std::string_view kFilingTooLarge = "FILING_TOO_LARGE";
}  // namespace reason

// A request_id (AIP-155) is 1 to 128 printable ASCII characters (0x21-0x7E): enough for a
// UUID or any client's own scheme, and small enough that the idempotency cache, the
// AcceptedFiling event and every receipt that carry it stay small.
inline constexpr size_t kMaxRequestIdLength = 128;
// The violation of a request_id that breaks that rule (kRequestIdRequired when it is empty,
// kRequestIdFormat otherwise), or nullopt for a good one. The message never quotes the id.
std::optional<v1::FilingViolation> CheckRequestId(std::string_view request_id);
inline constexpr std::string_view kAcceptedFilingType = "stip.v1.AcceptedFiling";
inline constexpr std::string_view kRejectedFilingType = "stip.v1.RejectedFiling";
inline constexpr std::string_view kIntakeSource = "/stip/intake";

// Hex SHA-256 of `filing` serialized deterministically (map order fixed; unknown fields,
// which a client cannot have meant to file, are part of it as they are of the bytes).
std::string ContentSha256(const v1::AnnualFiling& filing);
google::protobuf::Timestamp ToTimestamp(absl::Time time);
absl::Time FromTimestamp(const google::protobuf::Timestamp& timestamp);
// The receipt an accepted filing is answered with.
v1::FilingReceipt ReceiptFor(const v1::AcceptedFiling& accepted);
// The CloudEvent on `topic`: key USCC, ce_id filing_id, ce_type stip.v1.AcceptedFiling,
// ce_source /stip/intake, ce_time receive_time.
OutgoingEvent AcceptedFilingEvent(const v1::AcceptedFiling& accepted, std::string topic);

// Why a filing is refused.
struct Refusal {
  // kInvalidArgument: the request or the filing is wrong whatever the registry holds.
  // kFailedPrecondition: the registry's state refuses it (the enterprise is not enrolled,
  // or enrolled elsewhere; the revision is not newer); the same request may succeed once
  // that changes (after enrolling, say).
  absl::StatusCode code = absl::StatusCode::kInvalidArgument;
  std::string message;
  std::vector<v1::FilingViolation> violations;

  // kInvalidArgument with google.rpc.BadRequest field violations (description
  // "REASON: message"); kFailedPrecondition with google.rpc.PreconditionFailure
  // violations (type REASON, subject the field, description the message).
  absl::Status ToStatus() const;
};

// The refusal of a filing the validator found violations in (kInvalidArgument): what
// intake answers, and what AssessmentService.EvaluateFiling answers for a draft.
Refusal InvalidFiling(std::vector<v1::FilingViolation> violations);

// What the registry says about a candidate (a valid filing as an AcceptedFiling with
// filing_id, filing, request_id and content_sha256 set).
struct RegistryVerdict {
  std::optional<Refusal> refusal;
  // The same filing (same request_id and content hash) already recorded: answer with it.
  std::optional<v1::AcceptedFiling> recorded;
  // The enterprise's region, for the event.
  v1::EconomicRegion region = v1::ECONOMIC_REGION_UNSPECIFIED;
};
// Checks enrollment and revision: newer than the latest recorded for the fiscal year, and
// at most one beyond it (kInvalidArgument, kRevisionBeyondNext), so that no revision can
// be pushed to the top of int32 and leave the enterprise no next one.
// `previous_accepted`: the caller accepted revision - 1 itself (its idempotency cache, or
// earlier in the batch), which the registry may not have recorded yet.
// kUnavailable / kDeadlineExceeded when the registry cannot tell: the caller must not
// accept the filing then.
absl::StatusOr<RegistryVerdict> CheckWithRegistry(const v1::AcceptedFiling& candidate,
                                                  RegistryClient& registry, absl::Time deadline,
                                                  bool previous_accepted = false);

// Validates against the registry's parks; when a park is unknown, asks for a fresh park
// list once (a park registered in the last seconds) and validates again.
// kUnavailable when the parks cannot be had.
absl::StatusOr<ValidationResult> ValidateWithRegistry(const v1::AnnualFiling& filing,
                                                      RegistryClient& registry, absl::Time now,
                                                      absl::Time deadline);

// Counts an accepted filing, or a refused one and its violations, in
// stip_intake_filings_total{result} and stip_intake_violations_total{reason}.
void CountAccepted();
void CountRefused(const std::vector<v1::FilingViolation>& violations);

struct FilingIntakeOptions {
  std::string filings_topic = std::string(kFilingsTopic);
  // The idempotency cache: requests are remembered for `request_ttl` or until newer ones
  // pushed them out, when there are `max_requests` or they take more than `max_bytes`,
  // whichever comes first. An entry holds the receipt and its keys: about 1.1 KiB measured
  // for the usual ids, so 100,000 entries take about 110 MiB
  // (tests/programs/intake_bulk_main.cc); long request_ids take more, and the byte bound
  // holds whatever they are. Requests still in flight are never forgotten (a retry must find
  // them); there are at most as many as calls in progress.
  absl::Duration request_ttl = absl::Hours(24);
  size_t max_requests = 100000;
  size_t max_bytes = 128 * 1024 * 1024;
};

struct Submission {
  std::string request_id;
  v1::AnnualFiling filing;
};

struct SubmissionOutcome {
  // OK with `receipt`; a refusal's status (with its details) and `violations`; or
  // kUnavailable / kDeadlineExceeded when the registry or the event log failed.
  absl::Status status;
  v1::FilingReceipt receipt;
  std::vector<v1::FilingViolation> violations;
};

// Validates, checks with the registry, publishes and remembers submissions. Thread-safe:
// any number of threads may Submit at once. `registry` and `publisher` outlive it.
class FilingIntake {
 public:
  FilingIntake(RegistryClient* registry, EventPublisher* publisher, FilingIntakeOptions options);
  ~FilingIntake();
  FilingIntake(const FilingIntake&) = delete;
  FilingIntake& operator=(const FilingIntake&) = delete;

  // One outcome per submission, in order. The accepted filings of the batch are published
  // in one Publish call, and an outcome is OK only once that returned OK: when it fails,
  // none of them is published, and all are kUnavailable (a retry may then succeed).
  // Blocks until `deadline` at most (a retry waiting for its first attempt, which is not
  // done by then, gets kDeadlineExceeded).
  std::vector<SubmissionOutcome> Submit(absl::Span<const Submission> submissions,
                                        absl::Time deadline);

  // The validator alone, against the registry's parks (kUnavailable when they cannot be
  // had). Nothing is published.
  absl::StatusOr<ValidationResult> Validate(const v1::AnnualFiling& filing, absl::Time deadline);

 private:
  class RequestCache;
  RegistryClient* const registry_;
  EventPublisher* const publisher_;
  const FilingIntakeOptions options_;
  std::unique_ptr<RequestCache> requests_;
};

}  // namespace stip::intake
