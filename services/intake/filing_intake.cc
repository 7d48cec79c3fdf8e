#include "services/intake/filing_intake.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/rpc/error_details.pb.h"
#include "prometheus/counter.h"
#include "services/common/event.h"
#include "services/common/grpc_server.h"
#include "services/common/metrics.h"
#include "services/intake/violation_codes.h"
#include <openssl/evp.h>

namespace stip::intake {
namespace {

constexpr char kPreconditionFailureTypeUrl[] = "type.googleapis.com/google.rpc.PreconditionFailure";
// A park registered this recently may be missing from the cached list.
constexpr absl::Duration kFreshParksAge = absl::Seconds(2);

v1::FilingViolation Violation(std::string_view reason, std::string field, std::string message,
                              std::string message_zh) {
  v1::FilingViolation violation;
  violation.set_reason(std::string(reason));
  violation.set_field(std::move(field));
  violation.set_message(std::move(message));
  violation.set_message_zh(std::move(message_zh));
  return violation;
}

Refusal Refuse(absl::StatusCode code, std::string message, v1::FilingViolation violation) {
  Refusal refusal{code, std::move(message), {}};
  refusal.violations.push_back(std::move(violation));
  return refusal;
}

struct IntakeCounters {
  prometheus::Counter& accepted;
  prometheus::Counter& refused;
  prometheus::Family<prometheus::Counter>& violations;
};

IntakeCounters& Counters() {
  static IntakeCounters* counters = [] {
    auto& filings = prometheus::BuildCounter()
                        .Name("stip_intake_filings_total")
                        .Help("Filings intake decided on, by result (accepted, refused)")
                        .Register(MetricsRegistry());
    auto& violations = prometheus::BuildCounter()
                           .Name("stip_intake_violations_total")
                           .Help("Violations of refused filings, by reason code")
                           .Register(MetricsRegistry());
    return new IntakeCounters{filings.Add({{"result", "accepted"}}),
                              filings.Add({{"result", "refused"}}), violations};
  }();
  return *counters;
}

Refusal TooLargeToPublish(size_t event_bytes, size_t max_event_bytes) {
  return Refuse(
      absl::StatusCode::kInvalidArgument,
      absl::StrCat("filing is too large: it would be an event of ", event_bytes,
                   " bytes, over the limit of ", max_event_bytes, " bytes"),
      Violation(reason::kFilingTooLarge, "filing",
                absl::StrCat("would be an event of ", event_bytes, " bytes, over the limit of ",
                             max_event_bytes,
                             " bytes (fields this server does not know count "
                             "too); nothing was filed"),
                absl::StrCat("申报过大：发布后为 ", event_bytes, " 字节，超过上限 ",
                             max_event_bytes, " 字节（包括本服务不识别的字段）；未予受理")));
}

SubmissionOutcome Refused(const Refusal& refusal) {
  CountRefused(refusal.violations);
  return {refusal.ToStatus(), {}, refusal.violations};
}

}  // namespace

std::string ContentSha256(const v1::AnnualFiling& filing) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    filing.SerializeToCodedStream(&coded);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_sha256(), nullptr);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), static_cast<size_t>(size)));
}

google::protobuf::Timestamp ToTimestamp(absl::Time time) {
  google::protobuf::Timestamp timestamp;
  const int64_t seconds = absl::ToUnixSeconds(time);  // rounds down: nanos in [0, 1e9)
  timestamp.set_seconds(seconds);
  timestamp.set_nanos(
      static_cast<int32_t>((time - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
  return timestamp;
}

absl::Time FromTimestamp(const google::protobuf::Timestamp& timestamp) {
  return absl::FromUnixSeconds(timestamp.seconds()) + absl::Nanoseconds(timestamp.nanos());
}

v1::FilingReceipt ReceiptFor(const v1::AcceptedFiling& accepted) {
  v1::FilingReceipt receipt;
  receipt.set_filing_id(accepted.filing_id());
  receipt.set_uscc(accepted.filing().uscc());
  receipt.set_fiscal_year(accepted.filing().fiscal_year());
  receipt.set_revision(accepted.filing().revision());
  *receipt.mutable_receive_time() = accepted.receive_time();
  *receipt.mutable_warnings() = accepted.warnings();
  receipt.set_request_id(accepted.request_id());
  return receipt;
}

OutgoingEvent AcceptedFilingEvent(const v1::AcceptedFiling& accepted, std::string topic) {
  CloudEventAttributes attributes;
  attributes.id = accepted.filing_id();
  attributes.type = std::string(kAcceptedFilingType);
  attributes.source = std::string(kIntakeSource);
  attributes.time = FromTimestamp(accepted.receive_time());
  return MakeCloudEvent(std::move(topic), accepted.filing().uscc(), accepted.SerializeAsString(),
                        attributes);
}

absl::Status Refusal::ToStatus() const {
  if (code == absl::StatusCode::kInvalidArgument) {
    std::vector<FieldViolation> fields;
    fields.reserve(violations.size());
    for (const v1::FilingViolation& violation : violations) {
      fields.push_back(
          {violation.field(), absl::StrCat(violation.reason(), ": ", violation.message())});
    }
    return InvalidArgumentWithViolations(message, fields);
  }
  absl::Status status(code, message);
  google::rpc::PreconditionFailure failure;
  for (const v1::FilingViolation& violation : violations) {
    google::rpc::PreconditionFailure::Violation* out = failure.add_violations();
    out->set_type(violation.reason());
    out->set_subject(violation.field());
    out->set_description(violation.message());
  }
  status.SetPayload(kPreconditionFailureTypeUrl, absl::Cord(failure.SerializeAsString()));
  return status;
}

Refusal InvalidFiling(std::vector<v1::FilingViolation> violations) {
  std::string message = absl::StrCat("the filing is not valid: ", violations.size(),
                                     violations.size() == 1 ? " violation" : " violations");
  return Refusal{absl::StatusCode::kInvalidArgument, std::move(message), std::move(violations)};
}

std::optional<v1::FilingViolation> CheckRequestId(std::string_view request_id) {
  if (request_id.empty()) {
    return Violation(reason::kRequestIdRequired, "request_id",
                     "is required: a value unique to this filing attempt, reused by its retries",
                     "必填：本次申报的唯一标识，重试时沿用");
  }
  if (request_id.size() > kMaxRequestIdLength) {
    return Violation(
        reason::kRequestIdFormat, "request_id",
        absl::StrCat("must be 1 to ", kMaxRequestIdLength,
                     " printable ASCII characters (0x21-0x7E); it is ", request_id.size(),
                     " bytes long"),
        absl::StrCat("须为 1 至 ", kMaxRequestIdLength,
                     " 个可打印 ASCII 字符（0x21-0x7E）；实际长度为 ", request_id.size(), " 字节"));
  }
  for (size_t i = 0; i < request_id.size(); ++i) {
    const unsigned char byte = static_cast<unsigned char>(request_id[i]);
    if (byte < 0x21 || byte > 0x7E) {
      return Violation(
          reason::kRequestIdFormat, "request_id",
          absl::StrCat("must be 1 to ", kMaxRequestIdLength,
                       " printable ASCII characters (0x21-0x7E); byte ", i, " is 0x",
                       absl::Hex(byte, absl::kZeroPad2)),
          absl::StrCat("须为 1 至 ", kMaxRequestIdLength, " 个可打印 ASCII 字符（0x21-0x7E）；第 ",
                       i, " 字节为 0x", absl::Hex(byte, absl::kZeroPad2)));
    }
  }
  return std::nullopt;
}

void CountAccepted() { Counters().accepted.Increment(); }

void CountRefused(const std::vector<v1::FilingViolation>& violations) {
  Counters().refused.Increment();
  for (const v1::FilingViolation& violation : violations) {
    Counters().violations.Add({{"reason", violation.reason()}}).Increment();
  }
}

absl::StatusOr<ValidationResult> ValidateWithRegistry(const v1::AnnualFiling& filing,
                                                      RegistryClient& registry, absl::Time now,
                                                      absl::Time deadline) {
  const ValidationOptions options = ValidationOptions::ForTime(now);
  auto parks = registry.Parks(deadline);
  if (!parks.ok()) return parks.status();
  ValidationResult result = ValidateFiling(filing, **parks, options);
  const bool park_unknown =
      std::any_of(result.violations.begin(), result.violations.end(),
                  [](const v1::FilingViolation& v) { return v.reason() == reason::kParkUnknown; });
  if (park_unknown) {
    parks = registry.Parks(deadline, kFreshParksAge);
    if (!parks.ok()) return parks.status();
    result = ValidateFiling(filing, **parks, options);
  }
  return result;
}

absl::StatusOr<RegistryVerdict> CheckWithRegistry(const v1::AcceptedFiling& candidate,
                                                  RegistryClient& registry, absl::Time deadline,
                                                  bool previous_accepted) {
  const v1::AnnualFiling& filing = candidate.filing();
  auto enterprise = registry.GetEnterprise(filing.uscc(), deadline);
  if (!enterprise.ok()) return enterprise.status();
  RegistryVerdict verdict;
  if (!enterprise->has_value()) {
    verdict.refusal = Refuse(
        absl::StatusCode::kFailedPrecondition,
        absl::StrCat("enterprise ", filing.uscc(), " is not enrolled in any park"),
        Violation(reason::kEnterpriseNotEnrolled, "filing.uscc",
                  absl::StrCat("no enterprise with USCC ", filing.uscc(),
                               " is enrolled; the park administrator enrolls it before it files"),
                  absl::StrCat("统一社会信用代码为 ", filing.uscc(),
                               " 的企业尚未入园登记；请先由园区管理机构办理登记")));
    return verdict;
  }
  const v1::Enterprise& found = **enterprise;
  if (found.park_id() != filing.park_id()) {
    verdict.refusal = Refuse(
        absl::StatusCode::kFailedPrecondition,
        absl::StrCat("enterprise ", filing.uscc(), " is enrolled in park ", found.park_id(),
                     ", not ", filing.park_id()),
        Violation(reason::kEnterpriseInOtherPark, "filing.park_id",
                  absl::StrCat("the enterprise is enrolled in park \"", found.park_id(),
                               "\"; file with that park"),
                  absl::StrCat("该企业登记在园区 \"", found.park_id(), "\"；请按该园区申报")));
    return verdict;
  }
  verdict.region = found.region();
  int32_t recorded = 0;
  for (const v1::FiledRevision& filed : found.latest_revisions()) {
    if (filed.fiscal_year() == filing.fiscal_year())
      recorded = std::max(recorded, filed.revision());
  }
  // In 64 bits: a revision recorded at the top of int32 has no int32 successor.
  const int64_t next = int64_t{recorded} + 1;
  if (filing.revision() > next && !previous_accepted) {
    verdict.refusal = Refuse(
        absl::StatusCode::kInvalidArgument,
        absl::StrCat("revision must be at most ", next, " for fiscal year ", filing.fiscal_year(),
                     " of enterprise ", filing.uscc(), "; it is ", filing.revision()),
        Violation(reason::kRevisionBeyondNext, "filing.revision",
                  absl::StrCat("must be at most ", next,
                               ": revisions are numbered one after "
                               "another, and the latest recorded for fiscal year ",
                               filing.fiscal_year(), " is ", recorded),
                  absl::StrCat("不能超过 ", next, "：修订版本号须逐次递增，", filing.fiscal_year(),
                               " 年度已记录的最新版本为第 ", recorded, " 版")));
    return verdict;
  }
  if (filing.revision() > recorded) return verdict;
  // Not newer: a retry of a request the registry has recorded is answered with the record.
  auto same_revision = registry.GetFiling(candidate.filing_id(), deadline);
  if (!same_revision.ok()) return same_revision.status();
  if (same_revision->has_value() && (*same_revision)->request_id() == candidate.request_id() &&
      (*same_revision)->content_sha256() == candidate.content_sha256()) {
    verdict.recorded = std::move(*same_revision);
    return verdict;
  }
  verdict.refusal = Refuse(
      absl::StatusCode::kFailedPrecondition,
      absl::StrCat("revision ", filing.revision(), " is not newer than revision ", recorded,
                   ", the current revision of fiscal year ", filing.fiscal_year(),
                   " for enterprise ", filing.uscc()),
      Violation(reason::kRevisionNotNewer, "filing.revision",
                absl::StrCat("revision ", recorded, " is the current revision for fiscal year ",
                             filing.fiscal_year(), "; a correction is filed as revision ", next),
                absl::StrCat(filing.fiscal_year(), " 年度当前版本为第 ", recorded,
                             " 版；更正申报请使用第 ", next, " 版")));
  return verdict;
}

// The idempotency cache. Entries are kept in insertion order and dropped from the front
// when older than the TTL or beyond the capacity. An entry is claimed by the first attempt
// of a request; retries find it and wait until it is done. Entries of attempts that failed
// are removed at once, so that a retry tries again.
class FilingIntake::RequestCache {
 public:
  struct Entry {
    std::string request_id;
    std::string content_sha256;
    std::string filing_id;
    absl::Time inserted;
    bool done = false;
    SubmissionOutcome outcome;  // when done
    size_t bytes = 0;           // counted in bytes_ while in order_
  };

  enum class ClaimKind { kOwner, kExisting, kRefused };
  struct Claim {
    ClaimKind kind;
    std::shared_ptr<Entry> entry;
    Refusal refusal;
  };

  RequestCache(absl::Duration ttl, size_t capacity, size_t max_bytes)
      : ttl_(ttl), capacity_(capacity), max_bytes_(max_bytes) {}

  Claim ClaimRequest(const std::string& request_id, const std::string& content_sha256,
                     const std::string& filing_id, absl::Time now) {
    absl::MutexLock lock(&mu_);
    Evict(now);
    if (auto it = by_request_.find(request_id); it != by_request_.end()) {
      if (it->second->content_sha256 != content_sha256) {
        return {
            ClaimKind::kRefused, nullptr,
            Refuse(absl::StatusCode::kInvalidArgument,
                   absl::StrCat("request_id \"", request_id,
                                "\" was already used for a different filing (",
                                it->second->filing_id, "); a new filing needs a new request_id"),
                   Violation(reason::kRequestIdReused, "request_id",
                             "was already used for a different filing; a retry resends the "
                             "same filing, a new filing takes a new request_id",
                             "该 request_id 已用于另一份申报；重试须提交相同内容，新申报须使用新的 "
                             "request_id"))};
      }
      return {ClaimKind::kExisting, it->second, {}};
    }
    if (auto it = by_filing_.find(filing_id); it != by_filing_.end()) {
      const std::string revision = filing_id.substr(filing_id.rfind('/') + 1);
      return {ClaimKind::kRefused, nullptr,
              Refuse(absl::StatusCode::kFailedPrecondition,
                     absl::StrCat("filing ", filing_id,
                                  " was already submitted by another request; revision ", revision,
                                  " is the current revision"),
                     Violation(reason::kRevisionNotNewer, "filing.revision",
                               absl::StrCat("revision ", revision,
                                            " was already filed by another request; a correction "
                                            "is filed with a higher revision"),
                               absl::StrCat("第 ", revision,
                                            " 版已由另一请求提交；更正申报请使用更高的版本号")))};
    }
    auto entry = std::make_shared<Entry>();
    entry->request_id = request_id;
    entry->content_sha256 = content_sha256;
    entry->filing_id = filing_id;
    entry->inserted = now;
    by_request_[request_id] = entry;
    by_filing_[filing_id] = entry;
    Count(*entry);
    order_.push_back(entry);
    return {ClaimKind::kOwner, std::move(entry), {}};
  }

  // Whether a request of this instance filed `filing_id` (in flight, or accepted and not
  // yet evicted): failed attempts are forgotten at once.
  bool Knows(const std::string& filing_id) {
    absl::MutexLock lock(&mu_);
    return by_filing_.contains(filing_id);
  }

  // The owner's outcome. A failure forgets the request.
  void Finish(const std::shared_ptr<Entry>& entry, SubmissionOutcome outcome) {
    absl::MutexLock lock(&mu_);
    entry->done = true;
    const bool ok = outcome.status.ok();
    entry->outcome = std::move(outcome);
    bytes_ -= entry->bytes;
    Count(*entry);
    if (!ok) Forget(entry);
  }

  SubmissionOutcome Await(const std::shared_ptr<Entry>& entry, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    const Entry* raw = entry.get();
    if (!mu_.AwaitWithDeadline(absl::Condition(
                                   +[](const Entry* e) { return e->done; }, raw),
                               deadline)) {
      return {
          absl::DeadlineExceededError(absl::StrCat("an earlier attempt of request \"",
                                                   entry->request_id, "\" is still in progress")),
          {},
          {}};
    }
    return entry->outcome;
  }

 private:
  // What an entry takes: its strings (the request id and filing id twice, as map keys too),
  // the receipt, and a fixed part for the Entry, its shared_ptr, two map slots and the
  // deque's pointer. Measured against VmRSS with tests/programs/intake_bulk_main.cc: about
  // 1.1 KiB an entry for the usual ids, which this estimates within 20%.
  void Count(Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    constexpr size_t kFixedBytes = 640;
    entry.bytes = kFixedBytes + 2 * entry.request_id.size() + 2 * entry.filing_id.size() +
                  entry.content_sha256.size() + entry.outcome.receipt.SpaceUsedLong() +
                  entry.outcome.status.message().size();
    bytes_ += entry.bytes;
  }

  void Pop() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    bytes_ -= order_.front()->bytes;
    order_.pop_front();
  }

  void Forget(const std::shared_ptr<Entry>& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (auto it = by_request_.find(entry->request_id);
        it != by_request_.end() && it->second == entry) {
      by_request_.erase(it);
    }
    if (auto it = by_filing_.find(entry->filing_id);
        it != by_filing_.end() && it->second == entry) {
      by_filing_.erase(it);
    }
  }

  void Evict(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // Entries still in flight stay until done: a retry must find them.
    while (!order_.empty() && order_.front()->done &&
           (order_.size() >= capacity_ || bytes_ > max_bytes_ ||
            now - order_.front()->inserted > ttl_)) {
      Forget(order_.front());
      Pop();
    }
    while (!order_.empty() && order_.front()->done && !order_.front()->outcome.status.ok()) {
      Pop();  // already forgotten
    }
  }

  const absl::Duration ttl_;
  const size_t capacity_;
  const size_t max_bytes_;
  absl::Mutex mu_;
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;  // of the entries in order_
  absl::flat_hash_map<std::string, std::shared_ptr<Entry>> by_request_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<Entry>> by_filing_ ABSL_GUARDED_BY(mu_);
  std::deque<std::shared_ptr<Entry>> order_ ABSL_GUARDED_BY(mu_);
};

FilingIntake::FilingIntake(RegistryClient* registry, EventPublisher* publisher,
                           FilingIntakeOptions options)
    : registry_(registry),
      publisher_(publisher),
      options_(std::move(options)),
      requests_(std::make_unique<RequestCache>(
          options_.request_ttl, std::max<size_t>(options_.max_requests, 1), options_.max_bytes)) {
  Counters();  // the metric families exist, at 0, from the start
}

FilingIntake::~FilingIntake() = default;

absl::StatusOr<ValidationResult> FilingIntake::Validate(const v1::AnnualFiling& filing,
                                                        absl::Time deadline) {
  return ValidateWithRegistry(filing, *registry_, absl::Now(), deadline);
}

std::vector<SubmissionOutcome> FilingIntake::Submit(absl::Span<const Submission> submissions,
                                                    absl::Time deadline) {
  const absl::Time now = absl::Now();
  std::vector<SubmissionOutcome> outcomes(submissions.size());
  struct Pending {
    size_t index;
    std::shared_ptr<RequestCache::Entry> entry;
    v1::AcceptedFiling accepted;
  };
  std::vector<Pending> owned;
  std::vector<Pending> waiting;

  for (size_t i = 0; i < submissions.size(); ++i) {
    const Submission& submission = submissions[i];
    if (std::optional<v1::FilingViolation> bad_id = CheckRequestId(submission.request_id)) {
      std::string message = absl::StrCat("request_id ", bad_id->message());
      outcomes[i] = Refused(
          Refuse(absl::StatusCode::kInvalidArgument, std::move(message), std::move(*bad_id)));
      continue;
    }
    absl::StatusOr<ValidationResult> validation =
        ValidateWithRegistry(submission.filing, *registry_, now, deadline);
    if (!validation.ok()) {
      outcomes[i].status = validation.status();
      continue;
    }
    if (!validation->ok()) {
      outcomes[i] = Refused(InvalidFiling(std::move(validation->violations)));
      continue;
    }
    Pending pending{i, nullptr, {}};
    v1::AcceptedFiling& accepted = pending.accepted;
    const v1::AnnualFiling& filing = submission.filing;
    accepted.set_filing_id(FilingIdFor(filing.uscc(), filing.fiscal_year(), filing.revision()));
    *accepted.mutable_filing() = filing;
    accepted.set_request_id(submission.request_id);
    accepted.set_content_sha256(ContentSha256(filing));
    for (v1::FilingWarning& warning : validation->warnings) {
      *accepted.add_warnings() = std::move(warning);
    }
    RequestCache::Claim claim = requests_->ClaimRequest(
        submission.request_id, accepted.content_sha256(), accepted.filing_id(), now);
    switch (claim.kind) {
      case RequestCache::ClaimKind::kRefused:
        outcomes[i] = Refused(claim.refusal);
        break;
      case RequestCache::ClaimKind::kExisting:
        pending.entry = std::move(claim.entry);
        waiting.push_back(std::move(pending));
        break;
      case RequestCache::ClaimKind::kOwner:
        pending.entry = std::move(claim.entry);
        owned.push_back(std::move(pending));
        break;
    }
  }

  // The registry's word on every filing this call owns; those it accepts are published.
  std::vector<Pending> to_publish;
  std::vector<OutgoingEvent> events;
  for (Pending& pending : owned) {
    const v1::AnnualFiling& filing = pending.accepted.filing();
    const bool previous_accepted =
        requests_->Knows(FilingIdFor(filing.uscc(), filing.fiscal_year(), filing.revision() - 1));
    absl::StatusOr<RegistryVerdict> verdict =
        CheckWithRegistry(pending.accepted, *registry_, deadline, previous_accepted);
    SubmissionOutcome outcome;
    if (!verdict.ok()) {
      outcome.status = verdict.status();
    } else if (verdict->refusal.has_value()) {
      outcome = Refused(*verdict->refusal);
    } else if (verdict->recorded.has_value()) {
      outcome.receipt = ReceiptFor(*verdict->recorded);
    } else {
      pending.accepted.set_region(verdict->region);
      *pending.accepted.mutable_receive_time() = ToTimestamp(now);
      OutgoingEvent event = AcceptedFilingEvent(pending.accepted, options_.filings_topic);
      // Checked here, per filing: Publish would refuse the whole batch for it, and the
      // caller would be told to retry what can never be published.
      if (const size_t bytes = EventBytes(event); bytes > publisher_->MaxEventBytes()) {
        outcome = Refused(TooLargeToPublish(bytes, publisher_->MaxEventBytes()));
      } else {
        events.push_back(std::move(event));
        to_publish.push_back(std::move(pending));
        continue;
      }
    }
    outcomes[pending.index] = outcome;
    requests_->Finish(pending.entry, std::move(outcome));
  }
  if (!to_publish.empty()) {
    const absl::Status published =
        publisher_->Publish(events, std::max(deadline - absl::Now(), absl::ZeroDuration()));
    for (Pending& pending : to_publish) {
      SubmissionOutcome outcome;
      if (published.ok()) {
        CountAccepted();
        outcome.receipt = ReceiptFor(pending.accepted);
      } else {
        outcome.status = absl::UnavailableError(
            absl::StrCat("the filing could not be published; nothing was filed, retry with the "
                         "same request_id: ",
                         published.message()));
      }
      outcomes[pending.index] = outcome;
      requests_->Finish(pending.entry, std::move(outcome));
    }
  }
  for (Pending& pending : waiting) {
    outcomes[pending.index] = requests_->Await(pending.entry, deadline);
  }
  return outcomes;
}

}  // namespace stip::intake
