// The registry store: opening and migrating, parks, enterprises, the records and the
// enterprise timeline. Applying events and the roster are in store_apply.cc; statistics,
// feeds and the outbox in store_queries.cc.
#include "services/registry/registry_store.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/time_util.h"
#include "services/registry/registry_schema.h"
#include "services/registry/store_internal.h"

namespace stip::registry {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int32_t kDefaultPageSize = 100;
constexpr int32_t kMaxPageSize = 1000;

absl::StatusOr<v1::Park> ParkFromRow(const SqlRow& row) {
  v1::Park park;
  park.set_park_id(row.Text(0));
  park.set_name(row.Text(1));
  park.set_city(row.Text(2));
  park.set_province(row.Text(3));
  STIP_ASSIGN_OR_RETURN(const int64_t region, row.Int(4));
  STIP_ASSIGN_OR_RETURN(const int64_t year_founded, row.Int(5));
  park.set_region(static_cast<v1::EconomicRegion>(region));
  park.set_year_founded(static_cast<int32_t>(year_founded));
  return park;
}

constexpr char kParkColumns[] = "park_id, name, city, province, region, year_founded";

// Columns EnterpriseFromRow reads, in its order.
constexpr char kEnterpriseSelect[] =
    "SELECT e.uscc, e.name, e.park_id, e.foreign_invested, e.enroll_time_us, e.status, "
    "COALESCE(r.status, 1), p.region FROM enterprises e JOIN parks p ON p.park_id = e.park_id "
    "LEFT JOIN roster r ON r.uscc = e.uscc";

absl::StatusOr<v1::Enterprise> EnterpriseFromRow(const SqlRow& row) {
  v1::Enterprise enterprise;
  enterprise.set_uscc(row.Text(0));
  enterprise.set_name(row.Text(1));
  enterprise.set_park_id(row.Text(2));
  STIP_ASSIGN_OR_RETURN(const int64_t foreign_invested, row.Int(3));
  STIP_ASSIGN_OR_RETURN(const int64_t enroll_time_us, row.Int(4));
  STIP_ASSIGN_OR_RETURN(const int64_t status, row.Int(5));
  STIP_ASSIGN_OR_RETURN(const int64_t roster_status, row.Int(6));
  STIP_ASSIGN_OR_RETURN(const int64_t region, row.Int(7));
  enterprise.set_foreign_invested(foreign_invested != 0);
  *enterprise.mutable_enroll_time() = TimeUtil::MicrosecondsToTimestamp(enroll_time_us);
  enterprise.set_status(static_cast<v1::EnterpriseStatus>(status));
  enterprise.set_roster_status(static_cast<v1::RosterStatus>(roster_status));
  enterprise.set_region(static_cast<v1::EconomicRegion>(region));
  return enterprise;
}

absl::Status FillLatestRevisions(SqlSession& session, v1::Enterprise& enterprise) {
  auto rows = session.Run(
      "SELECT fiscal_year, revision, filing_id FROM enterprise_years "
      "WHERE uscc = $1 AND filing_id IS NOT NULL ORDER BY fiscal_year DESC",
      {enterprise.uscc()});
  if (!rows.ok()) return rows.status();
  for (const SqlRow& row : rows->rows) {
    STIP_ASSIGN_OR_RETURN(const int64_t fiscal_year, row.Int(0));
    STIP_ASSIGN_OR_RETURN(const int64_t filed_revision, row.Int(1));
    v1::FiledRevision* revision = enterprise.add_latest_revisions();
    revision->set_fiscal_year(static_cast<int32_t>(fiscal_year));
    revision->set_revision(static_cast<int32_t>(filed_revision));
    revision->set_filing_id(row.Text(2));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<v1::Enterprise>> ReadEnterprise(SqlSession& session,
                                                             std::string_view uscc) {
  auto rows = session.Run(absl::StrCat(kEnterpriseSelect, " WHERE e.uscc = $1"), {SqlParam(uscc)});
  if (!rows.ok()) return rows.status();
  if (rows->rows.empty()) return std::optional<v1::Enterprise>();
  STIP_ASSIGN_OR_RETURN(v1::Enterprise enterprise, EnterpriseFromRow(rows->rows.front()));
  if (absl::Status filled = FillLatestRevisions(session, enterprise); !filled.ok()) {
    return filled;
  }
  return std::optional<v1::Enterprise>(std::move(enterprise));
}

}  // namespace

std::string MakePageToken(std::string_view kind, std::string_view filter,
                          std::string_view last_key) {
  return absl::WebSafeBase64Escape(
      absl::StrCat(std::string(kind), "|", std::string(filter), "|", std::string(last_key)));
}

absl::StatusOr<std::string> ReadPageToken(std::string_view token, std::string_view kind,
                                          std::string_view filter) {
  if (token.empty()) return std::string();
  std::string decoded;
  const std::string expected_prefix =
      absl::StrCat(std::string(kind), "|", std::string(filter), "|");
  if (!absl::WebSafeBase64Unescape(std::string(token), &decoded) ||
      decoded.compare(0, expected_prefix.size(), expected_prefix) != 0 ||
      decoded.size() == expected_prefix.size()) {
    return absl::InvalidArgumentError(
        "page_token is not a token this listing returned with these filters: start again "
        "without a token, or repeat the filters the token came with");
  }
  return decoded.substr(expected_prefix.size());
}

int32_t EffectivePageSize(int32_t page_size) {
  if (page_size <= 0) return kDefaultPageSize;
  return std::min(page_size, kMaxPageSize);
}

RegistryStore::RegistryStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RegistryStore::~RegistryStore() = default;

absl::StatusOr<std::unique_ptr<RegistryStore>> RegistryStore::Open(std::string_view url,
                                                                   const StoreOptions& options) {
  auto db = OpenSqlDatabase(url, options.database);
  if (!db.ok()) return db.status();
  auto session = (*db)->Session();
  if (!session.ok()) return session.status();
  if (absl::Status migrated = MigrateSchema(**session); !migrated.ok()) {
    return absl::Status(migrated.code(),
                        absl::StrCat((*db)->DisplayName(), ": ", migrated.message()));
  }
  session->reset();
  return std::unique_ptr<RegistryStore>(
      new RegistryStore(std::make_unique<Impl>(std::move(*db), options)));
}

absl::StatusOr<int> RegistryStore::SchemaVersion() {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  return CurrentSchemaVersion(**session);
}

std::string RegistryStore::DisplayName() const { return impl_->db().DisplayName(); }

// --- Parks ---------------------------------------------------------------------------

absl::StatusOr<int> RegistryStore::LoadCatalogueIfEmpty(absl::Span<const v1::Park> parks) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  int loaded = 0;
  absl::Status status = InWriteTransaction(**session, [&]() -> absl::Status {
    auto count = (*session)->Run("SELECT COUNT(*) FROM parks");
    if (!count.ok()) return count.status();
    STIP_ASSIGN_OR_RETURN(const int64_t parks_known, count->rows.at(0).Int(0));
    if (parks_known > 0) return absl::OkStatus();
    for (const v1::Park& park : parks) {
      auto inserted = (*session)->Run(
          absl::StrCat("INSERT INTO parks (", kParkColumns, ") VALUES ($1, $2, $3, $4, $5, $6)"),
          {park.park_id(), park.name(), park.city(), park.province(), int64_t{park.region()},
           int64_t{park.year_founded()}});
      if (!inserted.ok()) return inserted.status();
      ++loaded;
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return loaded;
}

absl::StatusOr<v1::Park> RegistryStore::RegisterPark(const v1::Park& park) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  absl::Status status = InWriteTransaction(**session, [&]() -> absl::Status {
    auto existing = (*session)->Run(
        absl::StrCat("SELECT ", kParkColumns, " FROM parks WHERE park_id = $1"), {park.park_id()});
    if (!existing.ok()) return existing.status();
    if (!existing->rows.empty()) {
      STIP_ASSIGN_OR_RETURN(const v1::Park recorded, ParkFromRow(existing->rows.front()));
      if (recorded.SerializeAsString() == park.SerializeAsString()) return absl::OkStatus();
      return absl::AlreadyExistsError(
          absl::StrCat("park_id \"", park.park_id(), "\" is already registered, as \"",
                       recorded.name(), "\" (", recorded.city(), ", ", recorded.year_founded(),
                       "); a park's record is not changed by registering it again"));
    }
    return (*session)
        ->Run(
            absl::StrCat("INSERT INTO parks (", kParkColumns, ") VALUES ($1, $2, $3, $4, $5, $6)"),
            {park.park_id(), park.name(), park.city(), park.province(), int64_t{park.region()},
             int64_t{park.year_founded()}})
        .status();
  });
  if (!status.ok()) return status;
  return park;
}

absl::StatusOr<std::optional<v1::Park>> RegistryStore::GetPark(std::string_view park_id) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  auto rows = (*session)->Run(
      absl::StrCat("SELECT ", kParkColumns, " FROM parks WHERE park_id = $1"), {SqlParam(park_id)});
  if (!rows.ok()) return rows.status();
  if (rows->rows.empty()) return std::optional<v1::Park>();
  STIP_ASSIGN_OR_RETURN(v1::Park park, ParkFromRow(rows->rows.front()));
  return std::optional<v1::Park>(std::move(park));
}

absl::StatusOr<Page<v1::Park>> RegistryStore::ListParks(v1::EconomicRegion region,
                                                        int32_t page_size,
                                                        std::string_view page_token) {
  const std::string filter = absl::StrCat(static_cast<int>(region));
  auto after = ReadPageToken(page_token, "parks", filter);
  if (!after.ok()) return after.status();
  const int32_t size = EffectivePageSize(page_size);
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  auto rows =
      (*session)->Run(absl::StrCat("SELECT ", kParkColumns,
                                   " FROM parks WHERE park_id > $1 AND ($2 = 0 OR region = $2) "
                                   "ORDER BY park_id LIMIT $3"),
                      {*after, int64_t{region}, int64_t{size} + 1});
  if (!rows.ok()) return rows.status();
  Page<v1::Park> page;
  for (const SqlRow& row : rows->rows) {
    if (static_cast<int32_t>(page.items.size()) == size) {
      page.next_page_token = MakePageToken("parks", filter, page.items.back().park_id());
      break;
    }
    STIP_ASSIGN_OR_RETURN(v1::Park park, ParkFromRow(row));
    page.items.push_back(std::move(park));
  }
  return page;
}

// --- Enterprises -----------------------------------------------------------------------

absl::StatusOr<v1::Enterprise> RegistryStore::EnrollEnterprise(std::string_view uscc,
                                                               std::string_view name,
                                                               std::string_view park_id,
                                                               bool foreign_invested) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  std::optional<v1::Enterprise> enrolled;
  absl::Status status = InWriteTransaction(**session, [&]() -> absl::Status {
    auto park = (*session)->Run("SELECT 1 FROM parks WHERE park_id = $1", {SqlParam(park_id)});
    if (!park.ok()) return park.status();
    if (park->rows.empty()) {
      return absl::NotFoundError(absl::StrCat("park_id \"", std::string(park_id),
                                              "\" is not a registered park (ListParks)"));
    }
    auto upserted = (*session)->Run(
        "INSERT INTO enterprises (uscc, name, park_id, foreign_invested, enroll_time_us, "
        "status, status_year) VALUES ($1, $2, $3, $4, $5, $6, 0) "
        "ON CONFLICT (uscc) DO UPDATE SET name = excluded.name, park_id = excluded.park_id, "
        "foreign_invested = excluded.foreign_invested",
        {SqlParam(uscc), SqlParam(name), SqlParam(park_id), foreign_invested, impl_->NowMicros(),
         int64_t{v1::ENTERPRISE_STATUS_ENROLLED}});
    if (!upserted.ok()) return upserted.status();
    auto read = ReadEnterprise(**session, uscc);
    if (!read.ok()) return read.status();
    enrolled = std::move(*read);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return std::move(*enrolled);
}

absl::StatusOr<std::optional<v1::Enterprise>> RegistryStore::GetEnterprise(std::string_view uscc) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  std::optional<v1::Enterprise> enterprise;
  absl::Status status = InReadTransaction(**session, [&]() -> absl::Status {
    auto read = ReadEnterprise(**session, uscc);
    if (!read.ok()) return read.status();
    enterprise = std::move(*read);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return enterprise;
}

absl::StatusOr<Page<v1::Enterprise>> RegistryStore::ListEnterprises(const EnterpriseFilter& filter,
                                                                    int32_t page_size,
                                                                    std::string_view page_token) {
  const std::string fingerprint =
      absl::StrCat(filter.park_id, ",", static_cast<int>(filter.region), ",",
                   static_cast<int>(filter.status), ",", filter.fiscal_year);
  auto after = ReadPageToken(page_token, "enterprises", fingerprint);
  if (!after.ok()) return after.status();
  const int32_t size = EffectivePageSize(page_size);
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  Page<v1::Enterprise> page;
  absl::Status status = InReadTransaction(**session, [&]() -> absl::Status {
    auto rows = (*session)->Run(
        absl::StrCat(kEnterpriseSelect,
                     " WHERE e.uscc > $1 AND ($2 = '' OR e.park_id = $2) AND ($3 = 0 OR "
                     "p.region = $3) AND ($4 = 0 OR e.status = $4) AND ($5 = 0 OR EXISTS "
                     "(SELECT 1 FROM enterprise_years y WHERE y.uscc = e.uscc AND "
                     "y.fiscal_year = $5 AND y.filing_id IS NOT NULL)) ORDER BY e.uscc LIMIT $6"),
        {*after, filter.park_id, int64_t{filter.region}, int64_t{filter.status},
         int64_t{filter.fiscal_year}, int64_t{size} + 1});
    if (!rows.ok()) return rows.status();
    for (const SqlRow& row : rows->rows) {
      if (static_cast<int32_t>(page.items.size()) == size) {
        page.next_page_token = MakePageToken("enterprises", fingerprint, page.items.back().uscc());
        break;
      }
      STIP_ASSIGN_OR_RETURN(v1::Enterprise enterprise, EnterpriseFromRow(row));
      page.items.push_back(std::move(enterprise));
      if (absl::Status filled = FillLatestRevisions(**session, page.items.back()); !filled.ok()) {
        return filled;
      }
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return page;
}

absl::StatusOr<Page<v1::HistoryEntry>> RegistryStore::GetEnterpriseHistory(
    std::string_view uscc, int32_t page_size, std::string_view page_token) {
  auto after = ReadPageToken(page_token, "history", uscc);
  if (!after.ok()) return after.status();
  int64_t after_seq = 0;
  if (!after->empty() && !absl::SimpleAtoi(*after, &after_seq)) {
    return absl::InvalidArgumentError("page_token is not a token GetEnterpriseHistory returned");
  }
  const int32_t size = EffectivePageSize(page_size);
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  Page<v1::HistoryEntry> page;
  absl::Status status = InReadTransaction(**session, [&]() -> absl::Status {
    auto rows = (*session)->Run(
        "SELECT h.seq, h.kind, h.record_time_us, f.payload, d.payload, l.payload FROM history h "
        "LEFT JOIN filings f ON h.kind = 1 AND f.filing_id = h.ref "
        "LEFT JOIN decisions d ON h.kind = 2 AND d.decision_id = h.ref "
        "LEFT JOIN listings l ON h.kind = 3 AND l.event_id = h.ref "
        "WHERE h.uscc = $1 AND h.seq > $2 ORDER BY h.seq LIMIT $3",
        {SqlParam(uscc), after_seq, int64_t{size} + 1});
    if (!rows.ok()) return rows.status();
    int64_t last_seq = 0;
    for (const SqlRow& row : rows->rows) {
      if (static_cast<int32_t>(page.items.size()) == size) {
        page.next_page_token = MakePageToken("history", uscc, absl::StrCat(last_seq));
        break;
      }
      STIP_ASSIGN_OR_RETURN(last_seq, row.Int(0));
      STIP_ASSIGN_OR_RETURN(const int64_t kind, row.Int(1));
      STIP_ASSIGN_OR_RETURN(const int64_t record_time_us, row.Int(2));
      v1::HistoryEntry entry;
      *entry.mutable_record_time() = TimeUtil::MicrosecondsToTimestamp(record_time_us);
      const std::string key = absl::StrCat("history ", last_seq);
      switch (kind) {
        case kHistoryFiling: {
          auto filing = ParseStored<v1::AcceptedFiling>(row.Text(3), "filings", key);
          if (!filing.ok()) return filing.status();
          *entry.mutable_filing() = std::move(*filing);
          break;
        }
        case kHistoryDecision: {
          auto decision = ParseStored<v1::QualificationDecision>(row.Text(4), "decisions", key);
          if (!decision.ok()) return decision.status();
          *entry.mutable_decision() = std::move(*decision);
          break;
        }
        default: {
          auto listing = ParseStored<v1::TorchListing>(row.Text(5), "listings", key);
          if (!listing.ok()) return listing.status();
          *entry.mutable_listing() = std::move(*listing);
          break;
        }
      }
      page.items.push_back(std::move(entry));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return page;
}

// --- Records ---------------------------------------------------------------------------

absl::StatusOr<std::optional<v1::AcceptedFiling>> RegistryStore::GetFiling(
    std::string_view filing_id) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  auto rows =
      (*session)->Run("SELECT payload FROM filings WHERE filing_id = $1", {SqlParam(filing_id)});
  if (!rows.ok()) return rows.status();
  if (rows->rows.empty()) return std::optional<v1::AcceptedFiling>();
  auto filing = ParseStored<v1::AcceptedFiling>(rows->rows.front().Text(0), "filings", filing_id);
  if (!filing.ok()) return filing.status();
  return std::optional<v1::AcceptedFiling>(std::move(*filing));
}

absl::StatusOr<std::optional<v1::QualificationDecision>> RegistryStore::GetDecision(
    std::string_view decision_id) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  auto rows = (*session)->Run("SELECT payload FROM decisions WHERE decision_id = $1",
                              {SqlParam(decision_id)});
  if (!rows.ok()) return rows.status();
  if (rows->rows.empty()) return std::optional<v1::QualificationDecision>();
  auto decision =
      ParseStored<v1::QualificationDecision>(rows->rows.front().Text(0), "decisions", decision_id);
  if (!decision.ok()) return decision.status();
  return std::optional<v1::QualificationDecision>(std::move(*decision));
}

absl::StatusOr<std::optional<v1::QualificationDecision>> RegistryStore::FindDecisionForFiling(
    std::string_view filing_id) {
  auto session = impl_->db().Session();
  if (!session.ok()) return session.status();
  auto rows = (*session)->Run(
      "SELECT payload, decision_id FROM decisions WHERE filing_id = $1 "
      "ORDER BY policy_version DESC, seq DESC LIMIT 1",
      {SqlParam(filing_id)});
  if (!rows.ok()) return rows.status();
  if (rows->rows.empty()) return std::optional<v1::QualificationDecision>();
  auto decision = ParseStored<v1::QualificationDecision>(rows->rows.front().Text(0), "decisions",
                                                         rows->rows.front().Text(1));
  if (!decision.ok()) return decision.status();
  return std::optional<v1::QualificationDecision>(std::move(*decision));
}

}  // namespace stip::registry
