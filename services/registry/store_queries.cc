// Reading what the register derives: park and regional statistics, the decision and
// listing feeds behind the Watch streams, and the outbox the relay drains.
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "services/registry/registry_store.h"
#include "services/registry/store_internal.h"

namespace stip::registry {
namespace {

// part / whole in basis points, rounded down. The sums are exact in 128 bits and a part is
// at most its whole, so neither the product nor the share can overflow.
int64_t BasisPoints(absl::int128 part, absl::int128 whole) {
  if (whole <= 0) return 0;
  return static_cast<int64_t>(part * 10000 / whole);
}

// SUM(`column`) that cannot overflow, as two result columns that ExactSum joins: SQLite's
// SUM fails with "integer overflow" past int64, and PostgreSQL's SUM(bigint) is a numeric.
// Each value is split into its high 32 bits (an arithmetic shift, so negative values split
// too) and its low 32 bits; neither sum can leave int64 below 2^31 rows.
std::string SplitSum(absl::string_view column) {
  return absl::StrCat("COALESCE(SUM(", column, " >> 32), 0), COALESCE(SUM(", column,
                      " & 4294967295), 0)");
}

// The exact sum SplitSum selected at `column` and `column + 1`.
absl::StatusOr<absl::int128> ExactSum(const SqlRow& row, size_t column) {
  STIP_ASSIGN_OR_RETURN(const absl::int128 high, row.Int128(column));
  STIP_ASSIGN_OR_RETURN(const absl::int128 low, row.Int128(column + 1));
  return high * (absl::int128(1) << 32) + low;
}

// `sum` as the int64 a statistics message carries; kOutOfRange naming `what` when it does
// not fit (only amounts no valid filing has can add up to that: intake bounds every amount
// at 10^17 fen, but the store answers for whatever it holds).
absl::StatusOr<int64_t> ReportableSum(absl::int128 sum, absl::string_view what) {
  if (sum > std::numeric_limits<int64_t>::max() || sum < std::numeric_limits<int64_t>::min()) {
    std::ostringstream text;  // StrCat has no int128
    text << sum;
    return absl::OutOfRangeError(absl::StrCat(
        what, " is ", text.str(), " fen, beyond the largest total the statistics can report (",
        std::numeric_limits<int64_t>::max(),
        " fen): the register holds filings with implausible amounts; correct them with amended "
        "filings"));
  }
  return static_cast<int64_t>(sum);
}

absl::StatusOr<int64_t> FeedFloor(SqlSession& session, std::string_view name) {
  auto rows = session.Run("SELECT value FROM registry_meta WHERE name = $1", {SqlParam(name)});
  if (!rows.ok()) return rows.status();
  if (rows->rows.empty()) return 0;
  return rows->rows.front().Int(0);
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
    STIP_ASSIGN_OR_RETURN(const int64_t scan_end, window->rows.front().Int(0));
    auto rows = session.Run(
        absl::StrCat("SELECT seq, payload FROM ", table,
                     " WHERE seq > $1 AND seq <= $2 AND ($3 = '' OR park_id = $3) AND ($4 = 0 "
                     "OR region = $4) AND ($5 = 0 OR ",
                     kind_column, " = $5) ORDER BY seq LIMIT $6"),
        {after, scan_end, park_id, region, kind, int64_t{limit}});
    if (!rows.ok()) return rows.status();
    for (const SqlRow& row : rows->rows) {
      STIP_ASSIGN_OR_RETURN(const int64_t seq, row.Int(0));
      auto item = ParseStored<T>(row.Text(1), table, absl::StrCat(seq));
      if (!item.ok()) return item.status();
      read.entries.push_back({seq, std::move(*item)});
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
    STIP_ASSIGN_OR_RETURN(const int64_t enterprises, enrolled->rows.front().Int(0));
    STIP_ASSIGN_OR_RETURN(const int64_t foreign_invested, enrolled->rows.front().Int(1));
    statistics.set_enterprises(enterprises);
    statistics.set_foreign_invested_enterprises(foreign_invested);
    // Counts are bounded by the rows (projects by a filing's size); the amounts are summed
    // exactly (SplitSum) and must fit what the message reports.
    auto years = (*session)->Run(
        absl::StrCat(
            "SELECT COUNT(filing_id), COALESCE(SUM(CASE WHEN outcome = $3 THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(listed), 0), COALESCE(SUM(projects), 0), "
            "COALESCE(SUM(commercialized_projects), 0), "
            "COALESCE(SUM(CASE WHEN listed = 1 THEN nominated_projects ELSE 0 END), 0), ",
            SplitSum("revenue_fen"), ", ", SplitSum("rd_expenditure_fen"),
            " FROM enterprise_years WHERE park_id = $1 AND fiscal_year = $2"),
        {SqlParam(park_id), int64_t{fiscal_year}, int64_t{v1::DECISION_OUTCOME_QUALIFIED}});
    if (!years.ok()) return years.status();
    const SqlRow& row = years->rows.front();
    int64_t counts[6];
    for (size_t column = 0; column < 6; ++column) {
      STIP_ASSIGN_OR_RETURN(counts[column], row.Int(column));
    }
    statistics.set_filed_enterprises(counts[0]);
    statistics.set_hi_tech_enterprises(counts[1]);
    statistics.set_listed_enterprises(counts[2]);
    statistics.set_hi_tech_projects(counts[3]);
    statistics.set_commercialized_projects(counts[4]);
    statistics.set_listed_projects(counts[5]);
    const std::string of_park =
        absl::StrCat(" of park ", std::string(park_id), " for fiscal year ", fiscal_year);
    STIP_ASSIGN_OR_RETURN(const absl::int128 revenue, ExactSum(row, 6));
    STIP_ASSIGN_OR_RETURN(const absl::int128 rd_expenditure, ExactSum(row, 8));
    STIP_ASSIGN_OR_RETURN(
        const int64_t total_revenue,
        ReportableSum(revenue,
                      absl::StrCat("total_revenue_fen (the sum of gross revenue", of_park, ")")));
    STIP_ASSIGN_OR_RETURN(
        const int64_t total_rd_expenditure,
        ReportableSum(rd_expenditure, absl::StrCat("total_rd_expenditure_fen (the sum of R&D "
                                                   "expenditure",
                                                   of_park, ")")));
    statistics.set_total_revenue_fen(total_revenue);
    statistics.set_total_rd_expenditure_fen(total_rd_expenditure);
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
        absl::StrCat("SELECT p.region, ", SplitSum("y.revenue_fen"),
                     " FROM enterprise_years y JOIN parks p ON p.park_id = y.park_id WHERE "
                     "y.fiscal_year = $1 GROUP BY p.region"),
        {int64_t{fiscal_year}});
    if (!output.ok()) return output.status();
    for (int region = v1::ECONOMIC_REGION_EASTERN; region <= v1::ECONOMIC_REGION_NORTHEASTERN;
         ++region) {
      v1::RegionStatistics statistics;
      statistics.set_region(static_cast<v1::EconomicRegion>(region));
      regions.push_back(statistics);
    }
    // 128 bits: four int64 outputs can add up past int64, and a wrapped total would give
    // every region a share of 0.
    absl::int128 all_parks = 0;
    absl::int128 all_output = 0;
    for (const SqlRow& row : parks->rows) {
      STIP_ASSIGN_OR_RETURN(const int64_t region, row.Int(0));
      STIP_ASSIGN_OR_RETURN(const int64_t parks_in_region, row.Int(1));
      if (region < 1 || region > 4) continue;
      regions[region - 1].set_parks(parks_in_region);
      all_parks += parks_in_region;
    }
    for (const SqlRow& row : output->rows) {
      STIP_ASSIGN_OR_RETURN(const int64_t region, row.Int(0));
      if (region < 1 || region > 4) continue;
      STIP_ASSIGN_OR_RETURN(const absl::int128 region_output, ExactSum(row, 1));
      STIP_ASSIGN_OR_RETURN(
          const int64_t output_fen,
          ReportableSum(region_output,
                        absl::StrCat("output_fen (the gross revenue filed for fiscal year ",
                                     fiscal_year, " in the parks of region ",
                                     v1::EconomicRegion_Name(static_cast<int>(region)), ")")));
      regions[region - 1].set_output_fen(output_fen);
      all_output += region_output;
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
    STIP_ASSIGN_OR_RETURN(const int64_t seq, row.Int(0));
    auto headers = DecodeHeaders(row.Text(4));
    if (!headers.ok()) {
      return absl::DataLossError(absl::StrCat("outbox ", seq, ": ", headers.status().message()));
    }
    events.push_back(
        {seq, OutgoingEvent{row.Text(1), row.Text(2), row.Text(3), std::move(*headers)}});
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
