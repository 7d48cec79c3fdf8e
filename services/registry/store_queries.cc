// Reading what the register derives: park and regional statistics, the decision and
// listing feeds behind the Watch streams, and the outbox the relay drains.
#include <string>
#include <utility>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "services/registry/registry_store.h"
#include "services/registry/store_internal.h"

namespace stip::registry {
namespace {

// part / whole in basis points, rounded down, without overflow for any int64 inputs.
int64_t BasisPoints(int64_t part, int64_t whole) {
  if (whole <= 0) return 0;
  return static_cast<int64_t>(absl::int128(part) * 10000 / whole);
}

absl::StatusOr<int64_t> FeedFloor(SqlSession& session, std::string_view name) {
  auto rows = session.Run("SELECT value FROM registry_meta WHERE name = $1", {SqlParam(name)});
  if (!rows.ok()) return rows.status();
  return rows->rows.empty() ? 0 : rows->rows.front().Int(0);
}

absl::Status CheckCursor(SqlSession& session, std::string_view floor_name, int64_t after) {
  auto floor = FeedFloor(session, floor_name);
  if (!floor.ok()) return floor.status();
  if (after < *floor) {
    return absl::OutOfRangeError(absl::StrCat(
        "the cursor is older than the feed keeps (entries up to ", *floor,
        " have passed the retention period): resume from an empty cursor, and read what was "
        "missed with ListEnterprises and GetEnterpriseHistory"));
  }
  return absl::OkStatus();
}

// Reads entries after `after` of a feed table, filtering in SQL, parsing each payload.
template <typename T>
absl::StatusOr<FeedRead<T>> ReadFeed(SqlSession& session, const std::string& table,
                                     std::string_view floor_name, const std::string& kind_column,
                                     int64_t after, const std::string& park_id, int64_t region,
                                     int64_t kind, int32_t limit, int32_t scan_limit) {
  FeedRead<T> read;
  read.scanned_to = after;
  absl::Status status = InReadTransaction(session, [&]() -> absl::Status {
    if (absl::Status valid = CheckCursor(session, floor_name, after); !valid.ok()) return valid;
    // The scan window first, so that a filter that matches nothing still moves on.
    auto window = session.Run(absl::StrCat("SELECT MAX(seq) FROM (SELECT seq FROM ", table,
                                           " WHERE seq > $1 ORDER BY seq LIMIT $2) AS w"),
                              {after, int64_t{scan_limit}});
    if (!window.ok()) return window.status();
    if (window->rows.front().IsNull(0)) return absl::OkStatus();
    const int64_t scan_end = window->rows.front().Int(0);
    auto rows = session.Run(
        absl::StrCat("SELECT seq, payload FROM ", table,
                     " WHERE seq > $1 AND seq <= $2 AND ($3 = '' OR park_id = $3) AND ($4 = 0 "
                     "OR region = $4) AND ($5 = 0 OR ",
                     kind_column, " = $5) ORDER BY seq LIMIT $6"),
        {after, scan_end, park_id, region, kind, int64_t{limit}});
    if (!rows.ok()) return rows.status();
    for (const SqlRow& row : rows->rows) {
      auto item = ParseStored<T>(row.Text(1), table, absl::StrCat(row.Int(0)));
      if (!item.ok()) return item.status();
      read.entries.push_back({row.Int(0), std::move(*item)});
    }
    // A full page stops at its last entry; otherwise the whole window was looked at.
    read.scanned_to =
        static_cast<int32_t>(read.entries.size()) == limit ? read.entries.back().seq : scan_end;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return read;
}

absl::StatusOr<int64_t> FeedHead(SqlDatabase& db, const std::string& table) {
  auto session = db.Session();
  if (!session.ok()) return session.status();
  auto rows = (*session)->Run(absl::StrCat("SELECT MAX(seq) FROM ", table));
  if (!rows.ok()) return rows.status();
  return rows->rows.front().Int(0);
}

}  // namespace

absl::StatusOr<v1::ParkStatistics> RegistryStore::GetParkStatistics(std::string_view park_id,
                                                                    int32_t fiscal_year) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  v1::ParkStatistics statistics;
  statistics.set_park_id(std::string(park_id));
  statistics.set_fiscal_year(fiscal_year);
  absl::Status status = InReadTransaction(**session, [&]() -> absl::Status {
    auto park = (*session)->Run("SELECT 1 FROM parks WHERE park_id = $1", {SqlParam(park_id)});
    if (!park.ok()) return park.status();
    if (park->rows.empty()) {
      return absl::NotFoundError(
          absl::StrCat("park_id \"", std::string(park_id), "\" is not a registered park"));
    }
    auto enrolled = (*session)->Run(
        "SELECT COUNT(*), COALESCE(SUM(foreign_invested), 0) FROM enterprises WHERE park_id = $1",
        {SqlParam(park_id)});
    if (!enrolled.ok()) return enrolled.status();
    statistics.set_enterprises(enrolled->rows.front().Int(0));
    statistics.set_foreign_invested_enterprises(enrolled->rows.front().Int(1));
    auto years = (*session)->Run(
        "SELECT COUNT(filing_id), COALESCE(SUM(CASE WHEN outcome = $3 THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(listed), 0), COALESCE(SUM(projects), 0), "
        "COALESCE(SUM(commercialized_projects), 0), "
        "COALESCE(SUM(CASE WHEN listed = 1 THEN nominated_projects ELSE 0 END), 0), "
        "COALESCE(SUM(revenue_fen), 0), COALESCE(SUM(rd_expenditure_fen), 0) "
        "FROM enterprise_years WHERE park_id = $1 AND fiscal_year = $2",
        {SqlParam(park_id), int64_t{fiscal_year}, int64_t{v1::DECISION_OUTCOME_QUALIFIED}});
    if (!years.ok()) return years.status();
    const SqlRow& row = years->rows.front();
    statistics.set_filed_enterprises(row.Int(0));
    statistics.set_hi_tech_enterprises(row.Int(1));
    statistics.set_listed_enterprises(row.Int(2));
    statistics.set_hi_tech_projects(row.Int(3));
    statistics.set_commercialized_projects(row.Int(4));
    statistics.set_listed_projects(row.Int(5));
    statistics.set_total_revenue_fen(row.Int(6));
    statistics.set_total_rd_expenditure_fen(row.Int(7));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return statistics;
}

absl::StatusOr<std::vector<v1::RegionStatistics>> RegistryStore::GetRegionalStatistics(
    int32_t fiscal_year) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  std::vector<v1::RegionStatistics> regions;
  absl::Status status = InReadTransaction(**session, [&]() -> absl::Status {
    auto parks = (*session)->Run("SELECT region, COUNT(*) FROM parks GROUP BY region");
    if (!parks.ok()) return parks.status();
    // The output of a region is the revenue filed in its parks (by the park's region in the
    // register, so a park's figures count where the park is).
    auto output = (*session)->Run(
        "SELECT p.region, COALESCE(SUM(y.revenue_fen), 0) FROM enterprise_years y JOIN parks p "
        "ON p.park_id = y.park_id WHERE y.fiscal_year = $1 GROUP BY p.region",
        {int64_t{fiscal_year}});
    if (!output.ok()) return output.status();
    for (int region = v1::ECONOMIC_REGION_EASTERN; region <= v1::ECONOMIC_REGION_NORTHEASTERN;
         ++region) {
      v1::RegionStatistics statistics;
      statistics.set_region(static_cast<v1::EconomicRegion>(region));
      regions.push_back(statistics);
    }
    int64_t all_parks = 0;
    int64_t all_output = 0;
    for (const SqlRow& row : parks->rows) {
      const int64_t region = row.Int(0);
      if (region < 1 || region > 4) continue;
      regions[region - 1].set_parks(row.Int(1));
      all_parks += row.Int(1);
    }
    for (const SqlRow& row : output->rows) {
      const int64_t region = row.Int(0);
      if (region < 1 || region > 4) continue;
      regions[region - 1].set_output_fen(row.Int(1));
      all_output += row.Int(1);
    }
    for (v1::RegionStatistics& statistics : regions) {
      statistics.set_park_share_basis_points(BasisPoints(statistics.parks(), all_parks));
      statistics.set_output_share_basis_points(BasisPoints(statistics.output_fen(), all_output));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return regions;
}

absl::StatusOr<FeedRead<v1::QualificationDecision>> RegistryStore::ReadDecisions(
    int64_t after, const DecisionFeedFilter& filter, int32_t limit, int32_t scan_limit) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  return ReadFeed<v1::QualificationDecision>(**session, "decisions", "decision_feed_floor",
                                             "outcome", after, filter.park_id, filter.region,
                                             filter.outcome, limit, scan_limit);
}

absl::StatusOr<FeedRead<v1::TorchListing>> RegistryStore::ReadListings(
    int64_t after, const ListingFeedFilter& filter, int32_t limit, int32_t scan_limit) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  return ReadFeed<v1::TorchListing>(**session, "listings", "listing_feed_floor", "change", after,
                                    filter.park_id, filter.region, filter.change, limit,
                                    scan_limit);
}

absl::StatusOr<int64_t> RegistryStore::DecisionFeedHead() {
  return FeedHead(impl_->db(), "decisions");
}
absl::StatusOr<int64_t> RegistryStore::ListingFeedHead() {
  return FeedHead(impl_->db(), "listings");
}

absl::Status RegistryStore::PruneFeeds(absl::Time before) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  return InWriteTransaction(**session, [&]() -> absl::Status {
    for (const auto& [table, floor] :
         {std::pair<const char*, const char*>{"decisions", "decision_feed_floor"},
          {"listings", "listing_feed_floor"}}) {
      // The floor only rises: entries are never un-pruned.
      auto raised = (*session)->Run(
          absl::StrCat("UPDATE registry_meta SET value = (SELECT COALESCE(MAX(seq), 0) FROM ",
                       table, " WHERE record_time_us < $2) WHERE name = $1 AND value < (SELECT ",
                       "COALESCE(MAX(seq), 0) FROM ", table, " WHERE record_time_us < $2)"),
          {floor, absl::ToUnixMicros(before)});
      if (!raised.ok()) return raised.status();
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<OutboxEvent>> RegistryStore::PendingOutbox(int32_t limit) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  auto rows = (*session)->Run(
      "SELECT seq, topic, event_key, event_value, headers FROM outbox ORDER BY seq LIMIT $1",
      {int64_t{limit}});
  if (!rows.ok()) return rows.status();
  std::vector<OutboxEvent> events;
  events.reserve(rows->rows.size());
  for (const SqlRow& row : rows->rows) {
    auto headers = DecodeHeaders(row.Text(4));
    if (!headers.ok()) {
      return absl::DataLossError(
          absl::StrCat("outbox ", row.Int(0), ": ", headers.status().message()));
    }
    events.push_back(
        {row.Int(0), OutgoingEvent{row.Text(1), row.Text(2), row.Text(3), std::move(*headers)}});
  }
  return events;
}

absl::Status RegistryStore::MarkRelayed(int64_t seq) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  return (*session)->Run("DELETE FROM outbox WHERE seq <= $1", {seq}).status();
}

absl::StatusOr<int64_t> RegistryStore::OutboxBacklog() {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  auto rows = (*session)->Run("SELECT COUNT(*) FROM outbox");
  if (!rows.ok()) return rows.status();
  return rows->rows.front().Int(0);
}

}  // namespace stip::registry
