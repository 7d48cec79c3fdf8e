#include "services/intake/inbound_handler.h"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "services/common/rejected_filing.h"
#include "services/intake/filing_intake.h"
#include "spdlog/spdlog.h"

namespace stip::intake {
namespace {

// How long one batch may wait for the registry before it is failed and retried.
constexpr absl::Duration kRegistryBudget = absl::Seconds(30);
// What a rejection leaves of the event limit for its key and CloudEvents headers.
constexpr size_t kRejectedFilingHeadroom = 16 * 1024;

absl::string_view AbslView(std::string_view text) { return {text.data(), text.size()}; }

bool IsJson(std::optional<std::string_view> content_type) {
  // "application/json; charset=utf-8" too.
  return content_type.has_value() &&
         absl::StartsWithIgnoreCase(absl::StripLeadingAsciiWhitespace(AbslView(*content_type)),
                                    AbslView(kContentTypeJson));
}

// The filing, or why the bytes are not one.
absl::StatusOr<v1::AnnualFiling> Decode(const ConsumedEvent& event) {
  v1::AnnualFiling filing;
  if (IsJson(event.Header("content-type"))) {
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;  // a misspelt field would otherwise vanish
    const auto parsed = google::protobuf::util::JsonStringToMessage(event.value, &filing, options);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("not the JSON mapping of stip.v1.AnnualFiling: ", parsed.ToString()));
    }
    return filing;
  }
  if (const auto type = event.Header("content-type");
      type.has_value() &&
      !absl::StartsWithIgnoreCase(AbslView(*type), AbslView(kContentTypeProtobuf))) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported content-type \"", AbslView(*type), "\""));
  }
  if (!filing.ParseFromString(event.value)) {
    return absl::InvalidArgumentError("not a protobuf stip.v1.AnnualFiling");
  }
  return filing;
}

OutgoingEvent RejectedEvent(const ConsumedEvent& event, const std::string& topic,
                            const v1::AnnualFiling* filing,
                            std::vector<v1::FilingViolation> violations, absl::Time now) {
  v1::RejectedFiling rejected;
  if (filing != nullptr) *rejected.mutable_filing() = *filing;
  for (v1::FilingViolation& violation : violations) {
    *rejected.add_violations() = std::move(violation);
  }
  *rejected.mutable_reject_time() = ToTimestamp(now);
  rejected.set_source(event.Position());
  SetOriginalPayload(rejected, event.value, event.Header("content-type").value_or(""));
  // Room for the CloudEvents headers and the key; the processor would dead-letter a
  // rejection over the limit, but an operator reads a rejection more easily.
  BoundRejectedFiling(rejected, kDefaultMaxEventBytes - kRejectedFilingHeadroom);
  CloudEventAttributes attributes;
  // The position names the inbound event once: a repeat after a retried batch has the
  // same id.
  attributes.id = absl::StrCat("rejected:", event.Position());
  attributes.type = std::string(kRejectedFilingType);
  attributes.source = std::string(kIntakeSource);
  attributes.time = now;
  std::string key = filing != nullptr && !filing->uscc().empty() ? filing->uscc() : event.key;
  return MakeCloudEvent(topic, std::move(key), rejected.SerializeAsString(), attributes);
}

}  // namespace

absl::Status InboundFilingHandler::HandleBatch(absl::Span<const ConsumedEvent> batch,
                                               BatchOutput& output) {
  const absl::Time now = absl::Now();
  const absl::Time deadline = now + kRegistryBudget;
  // Filings accepted earlier in this batch, which the registry cannot know yet: a second
  // one with the same id is a repeat (same content) or a conflict.
  absl::flat_hash_map<std::string, std::string> accepted_in_batch;  // filing_id -> sha256
  std::vector<OutgoingEvent> outputs;
  std::vector<std::pair<const ConsumedEvent*, std::string>> dead_letters;
  int64_t accepted_count = 0;
  std::vector<std::vector<v1::FilingViolation>> refused;

  for (const ConsumedEvent& event : batch) {
    absl::StatusOr<v1::AnnualFiling> filing = Decode(event);
    if (!filing.ok()) {
      dead_letters.emplace_back(&event, std::string(filing.status().message()));
      continue;
    }
    absl::StatusOr<ValidationResult> validation =
        ValidateWithRegistry(*filing, *registry_, now, deadline);
    if (!validation.ok()) return validation.status();  // the batch is retried
    // The request_id is the event's ce_id: held to the rule gRPC requests are, since it is
    // carried by the AcceptedFiling and every receipt. A bad one refuses the filing once;
    // retrying could never make it good.
    const std::string position = event.Position();
    const std::string_view request_id = event.Header("ce_id").value_or(position);
    if (std::optional<v1::FilingViolation> bad_id = CheckRequestId(request_id)) {
      bad_id->set_message(
          absl::StrCat("the inbound event's ce_id, the filing's request_id, ", bad_id->message()));
      validation->violations.insert(validation->violations.begin(), std::move(*bad_id));
    }
    if (!validation->ok()) {
      refused.push_back(validation->violations);
      outputs.push_back(
          RejectedEvent(event, topics_.rejected, &*filing, std::move(validation->violations), now));
      continue;
    }
    v1::AcceptedFiling accepted;
    accepted.set_filing_id(FilingIdFor(filing->uscc(), filing->fiscal_year(), filing->revision()));
    accepted.set_request_id(std::string(request_id));
    accepted.set_content_sha256(ContentSha256(*filing));
    for (v1::FilingWarning& warning : validation->warnings) {
      *accepted.add_warnings() = std::move(warning);
    }
    *accepted.mutable_filing() = std::move(*filing);
    if (auto it = accepted_in_batch.find(accepted.filing_id()); it != accepted_in_batch.end()) {
      if (it->second == accepted.content_sha256()) continue;  // a repeat within the batch
      v1::FilingViolation violation;
      violation.set_reason(std::string(reason::kRevisionNotNewer));
      violation.set_field("filing.revision");
      violation.set_message(absl::StrCat("revision ", accepted.filing().revision(),
                                         " was already filed with different content"));
      violation.set_message_zh(
          absl::StrCat("第 ", accepted.filing().revision(), " 版已以不同内容提交"));
      refused.push_back({violation});
      outputs.push_back(
          RejectedEvent(event, topics_.rejected, &accepted.filing(), {violation}, now));
      continue;
    }
    const bool previous_accepted = accepted_in_batch.contains(
        FilingIdFor(accepted.filing().uscc(), accepted.filing().fiscal_year(),
                    accepted.filing().revision() - 1));
    absl::StatusOr<RegistryVerdict> verdict =
        CheckWithRegistry(accepted, *registry_, deadline, previous_accepted);
    if (!verdict.ok()) return verdict.status();  // the batch is retried
    if (verdict->refusal.has_value()) {
      refused.push_back(verdict->refusal->violations);
      outputs.push_back(RejectedEvent(event, topics_.rejected, &accepted.filing(),
                                      std::move(verdict->refusal->violations), now));
      continue;
    }
    if (verdict->recorded.has_value()) {
      spdlog::debug("inbound {} repeats filing {}, already recorded", event.Position(),
                    accepted.filing_id());
      continue;
    }
    accepted.set_region(verdict->region);
    *accepted.mutable_receive_time() = ToTimestamp(now);
    accepted_in_batch[accepted.filing_id()] = accepted.content_sha256();
    outputs.push_back(AcceptedFilingEvent(accepted, topics_.accepted));
    ++accepted_count;
  }
  // A batch the handler fails leaves nothing behind. The counters count what is handed
  // over: a batch whose commit then fails is counted again when it is repeated.
  for (OutgoingEvent& event : outputs) output.Emit(std::move(event));
  for (const auto& [event, reason] : dead_letters) output.DeadLetter(*event, reason);
  for (int64_t i = 0; i < accepted_count; ++i) CountAccepted();
  for (const auto& violations : refused) CountRefused(violations);
  return absl::OkStatus();
}

}  // namespace stip::intake
