// The register: parks, enterprises, filings, decisions, the Torch program roster, the
// statistics, the feeds regulators follow and the outbox of events to publish. One
// interface, written once over sql.h, on SQLite (embedded) and PostgreSQL (production).
//
// Guarantees:
//   - Apply() records a batch of consumed events and the positions after them in one
//     transaction. Events at positions already recorded are skipped inside that
//     transaction, so a batch replayed after a crash or a rebalance changes nothing twice,
//     and the consumer seeks to StoredOffsets() on start-up and on assignment.
//   - Repeats are dropped by identity: a filing by filing id and content hash, a decision by
//     decision id. A second, different filing with the same id is a conflict: the first
//     stays, the second is recorded and a RejectedFiling goes to the outbox.
//   - A decision for an older filing revision than the one on record is kept in the history
//     but never overwrites the newer one, and never changes the roster.
//   - Every roster change, conflict and dead letter is written to the outbox in the
//     transaction that caused it, with a stable event id; the relay publishes the outbox
//     in order and marks what the broker acknowledged, so a crash repeats at most events
//     with the same id.
//   - Feeds: every decision recorded and every roster change gets the next sequence number
//     of its feed, in commit order (writers are serialized), so a cursor "after N" never
//     misses a row committed later with a smaller number.
//
// Threading: thread-safe; every method may block on the database.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "services/common/event.h"
#include "services/common/event_log.h"
#include "services/registry/sql.h"
#include "stip/v1/decision.pb.h"
#include "stip/v1/enterprise.pb.h"
#include "stip/v1/filing.pb.h"
#include "stip/v1/listing.pb.h"
#include "stip/v1/park.pb.h"
#include "stip/v1/registry_service.pb.h"

namespace stip::registry {

// A consumed event, decoded. A dead letter is an event that could not be decoded: it is
// skipped, and sent to stip.deadletter.v1 through the outbox.
struct DeadLetter {
  ConsumedEvent event;
  std::string reason;
};
struct PositionedEvent {
  TopicPartition position;
  int64_t offset = 0;
  std::variant<v1::AcceptedFiling, v1::QualificationDecision, DeadLetter> event;
};

struct ApplyCounts {
  int64_t filings_recorded = 0;
  int64_t filings_repeated = 0;
  int64_t filing_conflicts = 0;
  int64_t decisions_recorded = 0;
  int64_t decisions_repeated = 0;
  // Recorded in the history, but for an older revision than the decision on record.
  int64_t decisions_stale = 0;
  int64_t roster_changes = 0;
  int64_t dead_letters = 0;
  // At a position already recorded (a replay): nothing done.
  int64_t events_already_applied = 0;
};

// An event waiting in the outbox to be published.
struct OutboxEvent {
  int64_t seq = 0;
  OutgoingEvent event;
};

// A page of a listing. `next_page_token` is empty on the last page. Tokens are opaque,
// bound to the query's filters (another filter with the token is kInvalidArgument), and
// stable while data changes: a page continues after the last key returned.
template <typename T>
struct Page {
  std::vector<T> items;
  std::string next_page_token;
};

struct EnterpriseFilter {
  std::string park_id;  // empty: any
  v1::EconomicRegion region = v1::ECONOMIC_REGION_UNSPECIFIED;
  v1::EnterpriseStatus status = v1::ENTERPRISE_STATUS_UNSPECIFIED;
  int32_t fiscal_year = 0;  // only enterprises that filed for it; 0: any
};

struct DecisionFeedFilter {
  std::string park_id;
  v1::EconomicRegion region = v1::ECONOMIC_REGION_UNSPECIFIED;
  v1::DecisionOutcome outcome = v1::DECISION_OUTCOME_UNSPECIFIED;
};
struct ListingFeedFilter {
  std::string park_id;
  v1::EconomicRegion region = v1::ECONOMIC_REGION_UNSPECIFIED;
  v1::ListingChange change = v1::LISTING_CHANGE_UNSPECIFIED;
};

template <typename T>
struct FeedEntry {
  int64_t seq = 0;
  T item;
};
// What a feed read returns: the matching entries after the cursor, and how far the read
// looked (`scanned_to`, at least the last entry's seq): the next read continues after it,
// so a filter that matches nothing still moves the cursor forward.
template <typename T>
struct FeedRead {
  std::vector<FeedEntry<T>> entries;
  int64_t scanned_to = 0;
};

struct StoreOptions {
  SqlDatabaseOptions database;
  // Tests only: the wall clock for record times.
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

class RegistryStore {
 public:
  // Opens the database `url` names (sql.h's OpenSqlDatabase) and applies the schema
  // migrations it lacks, each in its own transaction; two instances starting together
  // apply them once. kFailedPrecondition for a database whose schema is newer than this
  // binary knows.
  static absl::StatusOr<std::unique_ptr<RegistryStore>> Open(std::string_view url,
                                                             const StoreOptions& options = {});
  ~RegistryStore();
  RegistryStore(const RegistryStore&) = delete;
  RegistryStore& operator=(const RegistryStore&) = delete;

  // The schema version now in force.
  absl::StatusOr<int> SchemaVersion();
  std::string DisplayName() const;

  // --- Parks -------------------------------------------------------------------------
  // Registers `parks` when the register has no park at all (first start); returns how
  // many were loaded (0 when parks existed).
  absl::StatusOr<int> LoadCatalogueIfEmpty(absl::Span<const v1::Park> parks);
  // Idempotent for the same park; kAlreadyExists when the id is taken by different data.
  // Validation (slug, region, year) is the caller's.
  absl::StatusOr<v1::Park> RegisterPark(const v1::Park& park);
  absl::StatusOr<std::optional<v1::Park>> GetPark(std::string_view park_id);
  // Ordered by park id.
  absl::StatusOr<Page<v1::Park>> ListParks(v1::EconomicRegion region, int32_t page_size,
                                           std::string_view page_token);

  // --- Enterprises -------------------------------------------------------------------
  // Enrolls, or moves to another park, or renames. kNotFound when the park is unknown.
  absl::StatusOr<v1::Enterprise> EnrollEnterprise(std::string_view uscc, std::string_view name,
                                                  std::string_view park_id, bool foreign_invested);
  // With status, roster status and the latest revision per year; nullopt when unknown.
  absl::StatusOr<std::optional<v1::Enterprise>> GetEnterprise(std::string_view uscc);
  // Ordered by USCC.
  absl::StatusOr<Page<v1::Enterprise>> ListEnterprises(const EnterpriseFilter& filter,
                                                       int32_t page_size,
                                                       std::string_view page_token);
  // Filings, decisions and roster changes in the order they were recorded.
  absl::StatusOr<Page<v1::HistoryEntry>> GetEnterpriseHistory(std::string_view uscc,
                                                              int32_t page_size,
                                                              std::string_view page_token);

  // --- Filings and decisions ---------------------------------------------------------
  absl::StatusOr<std::optional<v1::AcceptedFiling>> GetFiling(std::string_view filing_id);
  absl::StatusOr<std::optional<v1::QualificationDecision>> GetDecision(
      std::string_view decision_id);
  // The latest decision recorded for the filing (the highest policy version), if any.
  absl::StatusOr<std::optional<v1::QualificationDecision>> FindDecisionForFiling(
      std::string_view filing_id);

  // --- Applying the event streams ----------------------------------------------------
  // The position after the last event applied, per partition, for consumer `group`.
  // Partitions never applied are absent.
  absl::StatusOr<std::map<TopicPartition, int64_t>> StoredOffsets(
      std::string_view group, const std::vector<TopicPartition>& partitions);
  // Applies `events` (in offset order per partition) and records the positions after
  // them, in one transaction (see the guarantees above).
  absl::StatusOr<ApplyCounts> Apply(std::string_view group,
                                    absl::Span<const PositionedEvent> events);

  // --- The roster --------------------------------------------------------------------
  // Delists every listed enterprise with no filing for `fiscal_year`; returns the changes
  // (none when the window was closed before: closing again is harmless).
  absl::StatusOr<std::vector<v1::TorchListing>> CloseFilingWindow(int32_t fiscal_year);

  // --- Statistics --------------------------------------------------------------------
  // kNotFound for an unknown park.
  absl::StatusOr<v1::ParkStatistics> GetParkStatistics(std::string_view park_id,
                                                       int32_t fiscal_year);
  // One entry per region, in enum order.
  absl::StatusOr<std::vector<v1::RegionStatistics>> GetRegionalStatistics(int32_t fiscal_year);

  // --- Feeds -------------------------------------------------------------------------
  // Entries with seq > `after` matching `filter`, up to `limit` of them, scanning at most
  // `scan_limit` rows. kOutOfRange when `after` is older than the feed keeps (pruned).
  absl::StatusOr<FeedRead<v1::QualificationDecision>> ReadDecisions(
      int64_t after, const DecisionFeedFilter& filter, int32_t limit, int32_t scan_limit);
  absl::StatusOr<FeedRead<v1::TorchListing>> ReadListings(int64_t after,
                                                          const ListingFeedFilter& filter,
                                                          int32_t limit, int32_t scan_limit);
  // The newest seq of each feed (0 when empty).
  absl::StatusOr<int64_t> DecisionFeedHead();
  absl::StatusOr<int64_t> ListingFeedHead();
  // Forgets feed entries recorded before `before` (the register keeps the decisions and
  // listings themselves). A cursor older than what remains gets kOutOfRange.
  absl::Status PruneFeeds(absl::Time before);

  // --- The outbox --------------------------------------------------------------------
  // The oldest events not yet relayed, up to `limit`, in the order they were written.
  absl::StatusOr<std::vector<OutboxEvent>> PendingOutbox(int32_t limit);
  // Marks every event up to and including `seq` relayed (they are deleted).
  absl::Status MarkRelayed(int64_t seq);
  absl::StatusOr<int64_t> OutboxBacklog();

 private:
  class Impl;
  explicit RegistryStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace stip::registry
