#include "services/assessment/decision_handler.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/timestamp.pb.h"
#include "services/assessment/evaluator.h"
#include "services/common/metrics.h"
#include "services/common/rejected_filing.h"
#include "spdlog/spdlog.h"
#include "stip/v1/filing.pb.h"

namespace stip::assessment {
namespace {

enum class Result { kDecided, kRepeat, kRejected, kDeadLettered };

struct StreamMetrics {
  prometheus::Counter& qualified;
  prometheus::Counter& not_qualified;
  prometheus::Counter& decided;
  prometheus::Counter& repeat;
  prometheus::Counter& rejected;
  prometheus::Counter& dead_lettered;
};

StreamMetrics& Metrics() {
  static StreamMetrics* metrics = [] {
    auto& decisions = prometheus::BuildCounter()
                          .Name("stip_decisions_total")
                          .Help("Qualification decisions made by the stream, by outcome")
                          .Register(MetricsRegistry());
    auto& filings = prometheus::BuildCounter()
                        .Name("stip_assessment_filings_total")
                        .Help("Filing events handled by the stream, by result")
                        .Register(MetricsRegistry());
    return new StreamMetrics{
        decisions.Add({{"outcome", "qualified"}}), decisions.Add({{"outcome", "not_qualified"}}),
        filings.Add({{"result", "decided"}}),      filings.Add({{"result", "repeat"}}),
        filings.Add({{"result", "rejected"}}),     filings.Add({{"result", "dead_lettered"}}),
    };
  }();
  return *metrics;
}

google::protobuf::Timestamp ToTimestamp(absl::Time time) {
  const int64_t nanos = absl::ToUnixNanos(time);
  google::protobuf::Timestamp timestamp;
  // Floor division: times before 1970 keep nanos in [0, 1e9).
  int64_t seconds = nanos / 1000000000;
  int64_t rest = nanos % 1000000000;
  if (rest < 0) {
    rest += 1000000000;
    --seconds;
  }
  timestamp.set_seconds(seconds);
  timestamp.set_nanos(static_cast<int32_t>(rest));
  return timestamp;
}

absl::Time FromTimestamp(const google::protobuf::Timestamp& timestamp) {
  return absl::FromUnixSeconds(timestamp.seconds()) + absl::Nanoseconds(timestamp.nanos());
}

// intake sets content_sha256; a filing without it is fingerprinted by its bytes.
uint64_t Fingerprint(const v1::AcceptedFiling& filing) {
  if (!filing.content_sha256().empty()) {
    return std::hash<std::string_view>{}(filing.content_sha256());
  }
  return std::hash<std::string>{}(filing.filing().SerializeAsString());
}

IndexedFiling IndexedFor(const v1::AcceptedFiling& filing) {
  return {EnterpriseYearKey(filing.filing().uscc(), filing.filing().fiscal_year()),
          filing.filing().revision(), filing.filing_id(), Fingerprint(filing)};
}

OutgoingEvent RejectedEvent(const ConsumedEvent& event, const v1::AcceptedFiling& filing) {
  const int32_t year = filing.filing().fiscal_year();
  v1::RejectedFiling rejected;
  *rejected.mutable_filing() = filing.filing();
  v1::FilingViolation* violation = rejected.add_violations();
  violation->set_reason(std::string(kPolicyNotFoundReason));
  violation->set_field("filing.fiscal_year");
  violation->set_message(absl::StrCat("no qualification policy covers fiscal year ", year,
                                      ": the filing cannot be assessed until one does"));
  violation->set_message_zh(absl::StrCat("没有适用于", year, "财年的资格认定政策，暂无法评定"));
  *rejected.mutable_reject_time() = ToTimestamp(event.timestamp);
  rejected.set_source(event.Position());
  SetOriginalPayload(rejected, event.value,
                     event.Header("content-type").value_or(kContentTypeProtobuf));
  BoundRejectedFiling(rejected, kDefaultMaxEventBytes - 16 * 1024);
  CloudEventAttributes attributes;
  // One rejection per filing revision and reason: a repeat of it is the same event.
  attributes.id = absl::StrCat(filing.filing_id(), "/", std::string(kPolicyNotFoundReason));
  attributes.type = std::string(kRejectedFilingType);
  attributes.source = std::string(kAssessmentSource);
  attributes.time = event.timestamp;
  return MakeCloudEvent("", filing.filing().uscc(), rejected.SerializeAsString(), attributes);
}

}  // namespace

absl::StatusOr<v1::AcceptedFiling> DecodeAcceptedFiling(const ConsumedEvent& event) {
  const std::optional<std::string_view> type = event.Header("ce_type");
  if (!type.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("no ce_type header: not a CloudEvent (expected ",
                                                   std::string(kAcceptedFilingType), ")"));
  }
  if (*type != kAcceptedFilingType) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ce_type is \"", std::string(*type), "\", expected ", std::string(kAcceptedFilingType)));
  }
  // Binary mode may leave the content type out; when given it must be protobuf.
  if (const auto content_type = event.Header("content-type");
      content_type.has_value() && *content_type != kContentTypeProtobuf) {
    return absl::InvalidArgumentError(absl::StrCat("content-type is \"", std::string(*content_type),
                                                   "\", expected ",
                                                   std::string(kContentTypeProtobuf)));
  }
  v1::AcceptedFiling filing;
  if (!filing.ParseFromString(event.value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the value (", event.value.size(), " bytes) is not a stip.v1.AcceptedFiling"));
  }
  std::string_view missing;
  if (filing.filing_id().empty()) {
    missing = "filing_id";
  } else if (!filing.has_filing()) {
    missing = "filing";
  } else if (filing.filing().uscc().empty()) {
    missing = "filing.uscc";
  } else if (filing.filing().fiscal_year() <= 0) {
    missing = "filing.fiscal_year";
  } else if (filing.filing().revision() <= 0) {
    missing = "filing.revision";
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the AcceptedFiling has no ",
                                                   std::string(missing), " (filing_id \"",
                                                   filing.filing_id(), "\")"));
  }
  return filing;
}

std::optional<IndexedFiling> ClassifyFiling(const ConsumedEvent& event, const PolicySet& policies) {
  absl::StatusOr<v1::AcceptedFiling> filing = DecodeAcceptedFiling(event);
  if (!filing.ok() || !Evaluate(*filing, policies).ok()) return std::nullopt;
  return IndexedFor(*filing);
}

FilingHistory::Classifier HistoryClassifier(const PolicyStore* policies) {
  return [policies](const ConsumedEvent& event) {
    return ClassifyFiling(event, *policies->Current());
  };
}

OutgoingEvent DecisionEvent(const v1::QualificationDecision& decision, const std::string& topic) {
  CloudEventAttributes attributes;
  attributes.id = decision.decision_id();
  attributes.type = std::string(kDecisionType);
  attributes.source = std::string(kAssessmentSource);
  attributes.time = FromTimestamp(decision.decide_time());
  return MakeCloudEvent(topic, decision.uscc(), decision.SerializeAsString(), attributes);
}

DecisionHandler::DecisionHandler(const PolicyStore* policies, FilingHistory* history,
                                 DecisionTopics topics)
    : policies_(policies), history_(history), topics_(std::move(topics)) {}

absl::Status DecisionHandler::HandleBatch(absl::Span<const ConsumedEvent> batch,
                                          BatchOutput& output) {
  // One snapshot for the whole batch: a reload between two events cannot split it.
  const std::shared_ptr<const PolicySet> policies = policies_->Current();
  std::map<int32_t, int64_t> first_offsets;
  for (const ConsumedEvent& event : batch) first_offsets.try_emplace(event.partition, event.offset);
  if (absl::Status indexed = history_->EnsureIndexedBelow(first_offsets); !indexed.ok()) {
    return indexed;
  }

  StreamMetrics& metrics = Metrics();
  for (const ConsumedEvent& event : batch) {
    Result result;
    absl::StatusOr<v1::AcceptedFiling> filing = DecodeAcceptedFiling(event);
    absl::StatusOr<v1::QualificationDecision> decision =
        filing.ok() ? Evaluate(*filing, *policies) : filing.status();
    if (!filing.ok()) {
      const std::string reason(filing.status().message());
      spdlog::warn("dead-lettering {}: {}", event.Position(), reason);
      output.DeadLetter(event, reason);
      history_->Record(event.partition, event.offset, std::nullopt);
      result = Result::kDeadLettered;
    } else if (absl::IsNotFound(decision.status())) {
      const std::string why{decision.status().message()};
      spdlog::info("rejecting filing {} at {}: {}", filing->filing_id(), event.Position(), why);
      OutgoingEvent rejected = RejectedEvent(event, *filing);
      rejected.topic = topics_.rejected;
      output.Emit(std::move(rejected));
      history_->Record(event.partition, event.offset, std::nullopt);
      result = Result::kRejected;
    } else if (!decision.ok()) {
      const std::string reason = absl::StrCat("filing ", filing->filing_id(),
                                              " cannot be assessed: ", decision.status().message());
      spdlog::warn("dead-lettering {}: {}", event.Position(), reason);
      output.DeadLetter(event, reason);
      history_->Record(event.partition, event.offset, std::nullopt);
      result = Result::kDeadLettered;
    } else {
      IndexedFiling indexed = IndexedFor(*filing);
      const FilingPast past = history_->Lookup(event.partition, event.offset, indexed);
      history_->Record(event.partition, event.offset, std::move(indexed));
      if (past.repeat) {
        if (past.repeat_differs) {
          spdlog::warn(
              "filing {} at {} repeats a revision filed earlier with other content; the first "
              "one's decision stands",
              filing->filing_id(), event.Position());
        }
        result = Result::kRepeat;
      } else {
        if (!past.superseded_filing_id.empty()) {
          decision->set_supersedes_decision_id(DecisionId(
              past.superseded_filing_id, decision->policy_id(), decision->policy_version()));
        }
        *decision->mutable_decide_time() = ToTimestamp(event.timestamp);
        output.Emit(DecisionEvent(*decision, topics_.decisions));
        result = Result::kDecided;
      }
    }

    int64_t& handled_end = handled_end_[event.partition];
    if (event.offset < handled_end) continue;  // handed over again: counted the first time
    handled_end = event.offset + 1;
    switch (result) {
      case Result::kDecided:
        metrics.decided.Increment();
        (decision->outcome() == v1::DECISION_OUTCOME_QUALIFIED ? metrics.qualified
                                                               : metrics.not_qualified)
            .Increment();
        break;
      case Result::kRepeat:
        metrics.repeat.Increment();
        break;
      case Result::kRejected:
        metrics.rejected.Increment();
        break;
      case Result::kDeadLettered:
        metrics.dead_lettered.Increment();
        break;
    }
  }
  return absl::OkStatus();
}

}  // namespace stip::assessment
