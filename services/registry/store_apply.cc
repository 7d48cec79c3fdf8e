// Applying the event streams to the register, and the Torch program roster they drive:
// RegistryStore::Apply, CloseFilingWindow and StoredOffsets. Every change here happens
// inside one write transaction together with what it emits to the outbox.
#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "services/common/rejected_filing.h"
#include "services/registry/registry_store.h"
#include "services/registry/store_internal.h"

namespace stip::registry {
namespace {

using google::protobuf::util::TimeUtil;

constexpr char kRegistrySource[] = "/stip/registry";

std::string ChangeWord(v1::ListingChange change) {
  switch (change) {
    case v1::LISTING_CHANGE_LISTED:
      return "listed";
    case v1::LISTING_CHANGE_RENEWED:
      return "renewed";
    default:
      return "delisted";
  }
}

// Applies one batch inside the write transaction the caller opened.
class BatchApplier {
 public:
  BatchApplier(SqlSession& session, absl::Time now) : session_(session), now_(now) {}

  absl::Status ApplyFiling(const v1::AcceptedFiling& accepted, const TopicPartition& position,
                           int64_t offset);
  absl::Status ApplyDecision(const v1::QualificationDecision& decision);
  absl::Status ApplyDeadLetter(const DeadLetter& dead_letter);
  // Delists `uscc` for `fiscal_year` for want of a filing (CloseFilingWindow).
  absl::Status DelistForNoFiling(const std::string& uscc, int32_t fiscal_year);

  // Writes the history entries the batch made; call before committing.
  absl::Status FlushHistory();

  ApplyCounts& counts() { return counts_; }
  std::vector<v1::TorchListing>& listings() { return listings_; }

 private:
  absl::Status UpdateRoster(const v1::QualificationDecision& decision);
  absl::Status RecordRosterChange(v1::TorchListing listing, int64_t changes);
  // History entries are collected and written together by FlushHistory.
  void AddHistory(const std::string& uscc, int64_t kind, const std::string& ref);
  absl::Status AddToOutbox(const OutgoingEvent& event);
  absl::StatusOr<v1::EconomicRegion> ParkRegion(const std::string& park_id);

  SqlSession& session_;
  const absl::Time now_;
  ApplyCounts counts_;
  std::vector<v1::TorchListing> listings_;
  struct HistoryRow {
    std::string uscc;
    int64_t kind;
    std::string ref;
  };
  std::vector<HistoryRow> history_;
};

void BatchApplier::AddHistory(const std::string& uscc, int64_t kind, const std::string& ref) {
  history_.push_back({uscc, kind, ref});
}

absl::Status BatchApplier::FlushHistory() {
  // Multi-row inserts of a few fixed sizes (each a statement prepared once): a round trip
  // per chunk rather than per entry, in the order the entries were made.
  constexpr size_t kChunk = 128;
  size_t done = 0;
  while (done < history_.size()) {
    size_t chunk = kChunk;
    while (chunk > history_.size() - done) chunk /= 2;
    std::string sql = "INSERT INTO history (uscc, kind, ref, record_time_us) VALUES ";
    std::vector<SqlParam> params;
    params.reserve(chunk * 3 + 1);
    params.emplace_back(absl::ToUnixMicros(now_));
    for (size_t i = 0; i < chunk; ++i) {
      const HistoryRow& row = history_[done + i];
      absl::StrAppend(&sql, i == 0 ? "" : ", ", "($", params.size() + 1, ", $", params.size() + 2,
                      ", $", params.size() + 3, ", $1)");
      params.emplace_back(row.uscc);
      params.emplace_back(row.kind);
      params.emplace_back(row.ref);
    }
    if (auto inserted = session_.Run(sql, params); !inserted.ok()) return inserted.status();
    done += chunk;
  }
  history_.clear();
  return absl::OkStatus();
}

absl::Status BatchApplier::AddToOutbox(const OutgoingEvent& event) {
  return session_
      .Run("INSERT INTO outbox (topic, event_key, event_value, headers) VALUES ($1, $2, $3, $4)",
           {event.topic, event.key, SqlParam::Bytes(event.value),
            SqlParam::Bytes(EncodeHeaders(event.headers))})
      .status();
}

absl::StatusOr<v1::EconomicRegion> BatchApplier::ParkRegion(const std::string& park_id) {
  auto rows = session_.Run("SELECT region FROM parks WHERE park_id = $1", {park_id});
  if (!rows.ok()) return rows.status();
  if (rows->rows.empty()) return v1::ECONOMIC_REGION_UNSPECIFIED;
  STIP_ASSIGN_OR_RETURN(const int64_t region, rows->rows.front().Int(0));
  return static_cast<v1::EconomicRegion>(region);
}

absl::Status BatchApplier::ApplyFiling(const v1::AcceptedFiling& accepted,
                                       const TopicPartition& position, int64_t offset) {
  const v1::AnnualFiling& filing = accepted.filing();
  const std::string& filing_id = accepted.filing_id();
  const std::string sha = accepted.content_sha256().empty() ? Sha256Hex(filing.SerializeAsString())
                                                            : accepted.content_sha256();
  const std::string payload = accepted.SerializeAsString();
  // Insert first: a new filing (the common case) costs one statement.
  auto inserted = session_.Run(
      "INSERT INTO filings (filing_id, uscc, fiscal_year, revision, content_sha256, payload, "
      "record_time_us) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (filing_id) DO NOTHING",
      {filing_id, filing.uscc(), int64_t{filing.fiscal_year()}, int64_t{filing.revision()}, sha,
       SqlParam::Bytes(payload), absl::ToUnixMicros(now_)});
  if (!inserted.ok()) return inserted.status();
  if (inserted->rows_affected == 0) {
    auto recorded =
        session_.Run("SELECT content_sha256 FROM filings WHERE filing_id = $1", {filing_id});
    if (!recorded.ok()) return recorded.status();
    if (recorded->rows.front().Text(0) == sha) {
      ++counts_.filings_repeated;
      return absl::OkStatus();
    }
    // The same id with other content: the first stays; the second is reported once.
    auto conflict = session_.Run(
        "INSERT INTO filing_conflicts (filing_id, content_sha256, payload, record_time_us) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        {filing_id, sha, SqlParam::Bytes(payload), absl::ToUnixMicros(now_)});
    if (!conflict.ok()) return conflict.status();
    if (conflict->rows_affected == 0) {
      ++counts_.filings_repeated;
      return absl::OkStatus();
    }
    ++counts_.filing_conflicts;
    v1::RejectedFiling rejected;
    *rejected.mutable_filing() = filing;
    v1::FilingViolation* violation = rejected.add_violations();
    violation->set_reason("FILING_CONFLICT");
    violation->set_field("filing.revision");
    violation->set_message(absl::StrCat(
        "filing ", filing_id, " is already recorded with other content (sha256 ",
        recorded->rows.front().Text(0), "); a correction must carry a higher revision"));
    violation->set_message_zh(
        absl::StrCat("申报 ", filing_id, " 已以不同内容登记；更正申报须使用更高的修订号"));
    *rejected.mutable_reject_time() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now_));
    rejected.set_source(absl::StrCat(position.topic, "/", position.partition, "@", offset));
    SetOriginalPayload(rejected, payload, kContentTypeProtobuf);
    // Room for the key and the CloudEvents headers: the relay could not publish more.
    BoundRejectedFiling(rejected, kDefaultMaxEventBytes - 16 * 1024);
    return AddToOutbox(MakeCloudEvent(std::string(kFilingsRejectedTopic), filing.uscc(),
                                      rejected.SerializeAsString(),
                                      {.id = absl::StrCat("conflict/", filing_id, "/", sha),
                                       .type = "stip.v1.RejectedFiling",
                                       .source = kRegistrySource,
                                       .time = now_}));
  }

  ++counts_.filings_recorded;
  AddHistory(filing.uscc(), kHistoryFiling, filing_id);

  v1::EconomicRegion region = accepted.region();
  if (region == v1::ECONOMIC_REGION_UNSPECIFIED) {
    auto looked_up = ParkRegion(filing.park_id());
    if (!looked_up.ok()) return looked_up.status();
    region = *looked_up;
  }
  int64_t commercialized = 0;
  int64_t nominated = 0;
  for (const v1::HiTechProject& project : filing.projects()) {
    commercialized += project.stage() == v1::PROJECT_STAGE_COMMERCIALIZED ? 1 : 0;
    nominated += project.torch_nominated() ? 1 : 0;
  }
  // The year's figures follow the highest revision recorded, whatever order revisions
  // arrive in; a row a decision made first (filing_id NULL) takes any revision.
  return session_
      .Run(
          "INSERT INTO enterprise_years (uscc, fiscal_year, park_id, region, filing_id, "
          "revision, revenue_fen, rd_expenditure_fen, projects, commercialized_projects, "
          "nominated_projects, decision_id, decision_revision, decision_policy_version, "
          "outcome, listed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, 0, 0, "
          "0, 0) ON CONFLICT (uscc, fiscal_year) DO UPDATE SET park_id = excluded.park_id, "
          "region = excluded.region, filing_id = excluded.filing_id, revision = "
          "excluded.revision, revenue_fen = excluded.revenue_fen, rd_expenditure_fen = "
          "excluded.rd_expenditure_fen, projects = excluded.projects, commercialized_projects "
          "= excluded.commercialized_projects, nominated_projects = excluded.nominated_projects, "
          // A newer revision than the one decided has no decision in force yet.
          "outcome = CASE WHEN enterprise_years.decision_id IS NOT NULL AND "
          "enterprise_years.decision_revision >= excluded.revision THEN enterprise_years.outcome "
          "ELSE 0 END "
          "WHERE enterprise_years.filing_id IS NULL OR enterprise_years.revision < "
          "excluded.revision",
          {filing.uscc(), int64_t{filing.fiscal_year()}, filing.park_id(), int64_t{region},
           filing_id, int64_t{filing.revision()}, filing.gross_revenue_fen(),
           filing.rd_expenditure_fen(), int64_t{filing.projects_size()}, commercialized, nominated})
      .status();
}

absl::Status BatchApplier::ApplyDecision(const v1::QualificationDecision& decision) {
  const std::string& decision_id = decision.decision_id();
  auto inserted = session_.Run(
      "INSERT INTO decisions (decision_id, filing_id, uscc, park_id, region, fiscal_year, "
      "revision, policy_version, outcome, payload, record_time_us) VALUES ($1, $2, $3, $4, $5, "
      "$6, $7, $8, $9, $10, $11) ON CONFLICT (decision_id) DO NOTHING",
      {decision_id, decision.filing_id(), decision.uscc(), decision.park_id(),
       int64_t{decision.region()}, int64_t{decision.fiscal_year()},
       int64_t{decision.filing_revision()}, int64_t{decision.policy_version()},
       int64_t{decision.outcome()}, SqlParam::Bytes(decision.SerializeAsString()),
       absl::ToUnixMicros(now_)});
  if (!inserted.ok()) return inserted.status();
  if (inserted->rows_affected == 0) {
    ++counts_.decisions_repeated;
    return absl::OkStatus();
  }
  AddHistory(decision.uscc(), kHistoryDecision, decision_id);

  // Is it the decision in force for its year? Not when a newer revision is on record
  // (filed or decided), nor when the same revision was decided under a newer policy.
  auto year = session_.Run(
      "SELECT filing_id, revision, decision_id, decision_revision, decision_policy_version "
      "FROM enterprise_years WHERE uscc = $1 AND fiscal_year = $2",
      {decision.uscc(), int64_t{decision.fiscal_year()}});
  if (!year.ok()) return year.status();
  const int64_t revision = decision.filing_revision();
  if (!year->rows.empty()) {
    const SqlRow& row = year->rows.front();
    STIP_ASSIGN_OR_RETURN(const int64_t filed_revision, row.Int(1));
    STIP_ASSIGN_OR_RETURN(const int64_t decided_revision, row.Int(3));
    STIP_ASSIGN_OR_RETURN(const int64_t decided_policy_version, row.Int(4));
    const bool filing_newer = !row.IsNull(0) && filed_revision > revision;
    const bool decided_newer =
        !row.IsNull(2) &&
        (decided_revision > revision ||
         (decided_revision == revision && decided_policy_version >= decision.policy_version()));
    if (filing_newer || decided_newer) {
      ++counts_.decisions_stale;
      ++counts_.decisions_recorded;
      return absl::OkStatus();
    }
  }
  ++counts_.decisions_recorded;
  if (auto updated = session_.Run(
          "INSERT INTO enterprise_years (uscc, fiscal_year, park_id, region, filing_id, "
          "revision, revenue_fen, rd_expenditure_fen, projects, commercialized_projects, "
          "nominated_projects, decision_id, decision_revision, decision_policy_version, "
          "outcome, listed) VALUES ($1, $2, $3, $4, NULL, 0, 0, 0, 0, 0, 0, $5, $6, $7, $8, 0) "
          "ON CONFLICT (uscc, fiscal_year) DO UPDATE SET decision_id = excluded.decision_id, "
          "decision_revision = excluded.decision_revision, decision_policy_version = "
          "excluded.decision_policy_version, outcome = excluded.outcome",
          {decision.uscc(), int64_t{decision.fiscal_year()}, decision.park_id(),
           int64_t{decision.region()}, decision_id, revision, int64_t{decision.policy_version()},
           int64_t{decision.outcome()}});
      !updated.ok()) {
    return updated.status();
  }
  const int64_t status = decision.outcome() == v1::DECISION_OUTCOME_QUALIFIED
                             ? v1::ENTERPRISE_STATUS_QUALIFIED
                             : v1::ENTERPRISE_STATUS_NOT_QUALIFIED;
  if (auto updated =
          session_.Run("UPDATE enterprises SET status = $2, status_year = $3 WHERE uscc = $1 AND "
                       "status_year <= $3",
                       {decision.uscc(), status, int64_t{decision.fiscal_year()}});
      !updated.ok()) {
    return updated.status();
  }
  return UpdateRoster(decision);
}

// The roster's rules: LISTED the first year an enterprise qualifies (or again after a
// delisting), RENEWED each later year it qualifies, DELISTED when a decision says
// NOT_QUALIFIED. A decision for a year before the roster's last change changes nothing;
// one for that same year (an amended filing) can reverse it.
absl::Status BatchApplier::UpdateRoster(const v1::QualificationDecision& decision) {
  auto rows = session_.Run("SELECT status, roster_year, changes FROM roster WHERE uscc = $1",
                           {decision.uscc()});
  if (!rows.ok()) return rows.status();
  int64_t status = v1::ROSTER_STATUS_NOT_LISTED;
  int64_t roster_year = 0;
  int64_t changes = 0;
  if (!rows->rows.empty()) {
    STIP_ASSIGN_OR_RETURN(status, rows->rows.front().Int(0));
    STIP_ASSIGN_OR_RETURN(roster_year, rows->rows.front().Int(1));
    STIP_ASSIGN_OR_RETURN(changes, rows->rows.front().Int(2));
  }
  const int32_t year = decision.fiscal_year();
  if (year < roster_year) return absl::OkStatus();
  v1::ListingChange change = v1::LISTING_CHANGE_UNSPECIFIED;
  if (decision.outcome() == v1::DECISION_OUTCOME_QUALIFIED) {
    if (status != v1::ROSTER_STATUS_LISTED) {
      change = v1::LISTING_CHANGE_LISTED;
    } else if (roster_year < year) {
      change = v1::LISTING_CHANGE_RENEWED;
    }
  } else if (status == v1::ROSTER_STATUS_LISTED) {
    change = v1::LISTING_CHANGE_DELISTED;
  }
  if (change == v1::LISTING_CHANGE_UNSPECIFIED) return absl::OkStatus();

  v1::TorchListing listing;
  listing.set_uscc(decision.uscc());
  listing.set_park_id(decision.park_id());
  listing.set_region(decision.region());
  listing.set_fiscal_year(year);
  listing.set_change(change);
  listing.set_decision_id(decision.decision_id());
  if (change == v1::LISTING_CHANGE_DELISTED) {
    listing.set_delist_reason(v1::DELIST_REASON_NOT_QUALIFIED);
  } else {
    auto filing =
        session_.Run("SELECT payload FROM filings WHERE filing_id = $1", {decision.filing_id()});
    if (!filing.ok()) return filing.status();
    if (!filing->rows.empty()) {
      auto accepted = ParseStored<v1::AcceptedFiling>(filing->rows.front().Text(0), "filings",
                                                      decision.filing_id());
      if (!accepted.ok()) return accepted.status();
      for (const v1::HiTechProject& project : accepted->filing().projects()) {
        if (project.torch_nominated()) *listing.add_nominated_projects() = project;
      }
    }
  }
  return RecordRosterChange(std::move(listing), changes);
}

absl::Status BatchApplier::RecordRosterChange(v1::TorchListing listing, int64_t changes) {
  const bool delisted = listing.change() == v1::LISTING_CHANGE_DELISTED;
  // Numbered per enterprise, so the id is the same whoever replays the same events.
  listing.set_event_id(absl::StrCat(listing.uscc(), "/", listing.fiscal_year(), "/",
                                    ChangeWord(listing.change()), "/", changes + 1));
  *listing.mutable_change_time() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now_));
  if (auto upserted = session_.Run(
          "INSERT INTO roster (uscc, status, roster_year, changes, park_id, region) VALUES ($1, "
          "$2, $3, $4, $5, $6) ON CONFLICT (uscc) DO UPDATE SET status = excluded.status, "
          "roster_year = excluded.roster_year, changes = excluded.changes, park_id = "
          "excluded.park_id, region = excluded.region",
          {listing.uscc(),
           int64_t{delisted ? v1::ROSTER_STATUS_DELISTED : v1::ROSTER_STATUS_LISTED},
           int64_t{listing.fiscal_year()}, changes + 1, listing.park_id(),
           int64_t{listing.region()}});
      !upserted.ok()) {
    return upserted.status();
  }
  if (auto flagged = session_.Run(
          "UPDATE enterprise_years SET listed = $3 WHERE uscc = $1 AND fiscal_year = $2",
          {listing.uscc(), int64_t{listing.fiscal_year()}, !delisted});
      !flagged.ok()) {
    return flagged.status();
  }
  const std::string payload = listing.SerializeAsString();
  if (auto inserted = session_.Run(
          "INSERT INTO listings (event_id, uscc, park_id, region, fiscal_year, change, payload, "
          "record_time_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
          {listing.event_id(), listing.uscc(), listing.park_id(), int64_t{listing.region()},
           int64_t{listing.fiscal_year()}, int64_t{listing.change()}, SqlParam::Bytes(payload),
           absl::ToUnixMicros(now_)});
      !inserted.ok()) {
    return inserted.status();
  }
  AddHistory(listing.uscc(), kHistoryListing, listing.event_id());
  ++counts_.roster_changes;
  if (absl::Status queued =
          AddToOutbox(MakeCloudEvent(std::string(kListingsTopic), listing.uscc(), payload,
                                     {.id = listing.event_id(),
                                      .type = "stip.v1.TorchListing",
                                      .source = kRegistrySource,
                                      .time = now_}));
      !queued.ok()) {
    return queued;
  }
  listings_.push_back(std::move(listing));
  return absl::OkStatus();
}

absl::Status BatchApplier::DelistForNoFiling(const std::string& uscc, int32_t fiscal_year) {
  auto rows = session_.Run("SELECT changes, park_id, region FROM roster WHERE uscc = $1", {uscc});
  if (!rows.ok()) return rows.status();
  if (rows->rows.empty()) return absl::OkStatus();
  v1::TorchListing listing;
  listing.set_uscc(uscc);
  listing.set_park_id(rows->rows.front().Text(1));
  STIP_ASSIGN_OR_RETURN(const int64_t changes, rows->rows.front().Int(0));
  STIP_ASSIGN_OR_RETURN(const int64_t region, rows->rows.front().Int(2));
  listing.set_region(static_cast<v1::EconomicRegion>(region));
  listing.set_fiscal_year(fiscal_year);
  listing.set_change(v1::LISTING_CHANGE_DELISTED);
  listing.set_delist_reason(v1::DELIST_REASON_NO_FILING);
  return RecordRosterChange(std::move(listing), changes);
}

absl::Status BatchApplier::ApplyDeadLetter(const DeadLetter& dead_letter) {
  ++counts_.dead_letters;
  return AddToOutbox(DeadLetterFor(dead_letter.event, dead_letter.reason));
}

}  // namespace

std::string EncodeHeaders(const EventHeaders& headers) {
  std::string encoded;
  for (const auto& [name, value] : headers) {
    for (const std::string* part : {&name, &value}) {
      const uint32_t size = static_cast<uint32_t>(part->size());
      for (int shift = 0; shift < 32; shift += 8)
        encoded.push_back(static_cast<char>(size >> shift));
      encoded += *part;
    }
  }
  return encoded;
}

absl::StatusOr<EventHeaders> DecodeHeaders(std::string_view encoded) {
  EventHeaders headers;
  std::string parts[2];
  int part = 0;
  while (!encoded.empty()) {
    if (encoded.size() < 4) return absl::DataLossError("outbox headers are truncated");
    uint32_t size = 0;
    for (int i = 0; i < 4; ++i) size |= uint32_t{static_cast<unsigned char>(encoded[i])} << (8 * i);
    encoded.remove_prefix(4);
    if (encoded.size() < size) return absl::DataLossError("outbox headers are truncated");
    parts[part] = std::string(encoded.substr(0, size));
    encoded.remove_prefix(size);
    if (part == 1) headers.emplace_back(std::move(parts[0]), std::move(parts[1]));
    part = 1 - part;
  }
  if (part != 0) return absl::DataLossError("outbox headers are truncated");
  return headers;
}

absl::StatusOr<std::map<TopicPartition, int64_t>> RegistryStore::StoredOffsets(
    std::string_view group, const std::vector<TopicPartition>& partitions) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  std::map<TopicPartition, int64_t> offsets;
  for (const TopicPartition& partition : partitions) {
    auto rows = (*session)->Run(
        "SELECT next_offset FROM consumed_offsets WHERE consumer_group = $1 AND topic = $2 AND "
        "partition_id = $3",
        {SqlParam(group), partition.topic, int64_t{partition.partition}});
    if (!rows.ok()) return rows.status();
    if (rows->rows.empty()) continue;
    STIP_ASSIGN_OR_RETURN(offsets[partition], rows->rows.front().Int(0));
  }
  return offsets;
}

absl::StatusOr<ApplyCounts> RegistryStore::Apply(std::string_view group,
                                                 absl::Span<const PositionedEvent> events) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  BatchApplier applier(**session, impl_->Now());
  absl::Status status = InWriteTransaction(**session, [&]() -> absl::Status {
    // Positions already recorded (by this instance before a crash, or by another member
    // before a rebalance) are skipped: read inside the transaction that advances them.
    std::map<TopicPartition, int64_t> next_offsets;
    for (const PositionedEvent& event : events) next_offsets.emplace(event.position, -1);
    for (auto& [partition, next] : next_offsets) {
      auto rows = (*session)->Run(
          "SELECT next_offset FROM consumed_offsets WHERE consumer_group = $1 AND topic = $2 "
          "AND partition_id = $3",
          {SqlParam(group), partition.topic, int64_t{partition.partition}});
      if (!rows.ok()) return rows.status();
      if (!rows->rows.empty()) {
        STIP_ASSIGN_OR_RETURN(next, rows->rows.front().Int(0));
      }
    }
    std::map<TopicPartition, int64_t> advanced;
    for (const PositionedEvent& event : events) {
      if (event.offset < next_offsets[event.position]) {
        ++applier.counts().events_already_applied;
        continue;
      }
      absl::Status applied;
      if (const auto* filing = std::get_if<v1::AcceptedFiling>(&event.event)) {
        applied = applier.ApplyFiling(*filing, event.position, event.offset);
      } else if (const auto* decision = std::get_if<v1::QualificationDecision>(&event.event)) {
        applied = applier.ApplyDecision(*decision);
      } else {
        applied = applier.ApplyDeadLetter(std::get<DeadLetter>(event.event));
      }
      if (!applied.ok()) {
        return absl::Status(applied.code(), absl::StrCat("applying ", event.position.topic, "/",
                                                         event.position.partition, "@",
                                                         event.offset, ": ", applied.message()));
      }
      int64_t& next = advanced[event.position];
      next = std::max(next, event.offset + 1);
    }
    if (absl::Status flushed = applier.FlushHistory(); !flushed.ok()) return flushed;
    for (const auto& [partition, next] : advanced) {
      auto stored = (*session)->Run(
          "INSERT INTO consumed_offsets (consumer_group, topic, partition_id, next_offset) "
          "VALUES ($1, $2, $3, $4) ON CONFLICT (consumer_group, topic, partition_id) DO UPDATE "
          "SET next_offset = excluded.next_offset",
          {SqlParam(group), partition.topic, int64_t{partition.partition}, next});
      if (!stored.ok()) return stored.status();
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return applier.counts();
}

absl::StatusOr<std::vector<v1::TorchListing>> RegistryStore::CloseFilingWindow(
    int32_t fiscal_year) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  BatchApplier applier(**session, impl_->Now());
  absl::Status status = InWriteTransaction(**session, [&]() -> absl::Status {
    auto closed = (*session)->Run(
        "INSERT INTO filing_windows (fiscal_year, close_time_us) VALUES ($1, $2) "
        "ON CONFLICT DO NOTHING",
        {int64_t{fiscal_year}, impl_->NowMicros()});
    if (!closed.ok()) return closed.status();
    if (closed->rows_affected == 0) return absl::OkStatus();  // closed before
    // Listed for an earlier year, and nothing filed for this one.
    auto absent = (*session)->Run(
        "SELECT r.uscc FROM roster r WHERE r.status = $1 AND r.roster_year < $2 AND NOT EXISTS "
        "(SELECT 1 FROM enterprise_years y WHERE y.uscc = r.uscc AND y.fiscal_year = $2 AND "
        "y.filing_id IS NOT NULL) ORDER BY r.uscc",
        {int64_t{v1::ROSTER_STATUS_LISTED}, int64_t{fiscal_year}});
    if (!absent.ok()) return absent.status();
    for (const SqlRow& row : absent->rows) {
      if (absl::Status delisted = applier.DelistForNoFiling(row.Text(0), fiscal_year);
          !delisted.ok()) {
        return delisted;
      }
    }
    return applier.FlushHistory();
  });
  if (!status.ok()) return status;
  return std::move(applier.listings());
}

}  // namespace stip::registry
