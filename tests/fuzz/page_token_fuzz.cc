// Fuzzes the registry's page tokens (services/registry/store_internal.h): what a client
// sends back as page_token, decoded by ReadPageToken and then used by the store's listings
// (parks, enterprises, an enterprise's history) on a small SQLite register.
//
// Input: a byte choosing the listing and its filters, a byte for the page size (1-3), then
// the token (the seeds are tokens the store made).
//
// Checked beyond the sanitizers: a token is answered with a page or kInvalidArgument, never
// another error (a SQL error on a crafted token would be a query of death); a page's own
// next_page_token always works; and MakePageToken/ReadPageToken round-trip any key.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "services/registry/park_catalogue.h"
#include "services/registry/registry_store.h"
#include "services/registry/store_internal.h"

namespace {

using stip::registry::RegistryStore;

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "page_token_fuzz: %s\n", what);
    std::abort();
  }
}

void CheckAnswer(const absl::Status& status) {
  if (!status.ok() && !absl::IsInvalidArgument(status)) {
    std::fprintf(stderr, "page_token_fuzz: a page token answered with %s\n",
                 status.ToString().c_str());
    std::abort();
  }
}

// The register every input reads: the national catalogue and a few enterprises, in a
// SQLite file of this process's own (removed when the process exits normally).
RegistryStore& Store() {
  static RegistryStore* store = [] {
    const std::filesystem::path path =
        std::filesystem::temp_directory_path() / absl::StrCat("stip-page-token-fuzz-", getpid());
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
    auto opened = RegistryStore::Open(absl::StrCat("sqlite://", (path / "registry.db").string()));
    Check(opened.ok(), "the store did not open");
    Check((*opened)->LoadCatalogueIfEmpty(stip::registry::EmbeddedParkCatalogue()).ok(),
          "the catalogue did not load");
    for (int i = 0; i < 6; ++i) {
      const std::string uscc = absl::StrCat("91650100MA000000", i, "X");
      Check((*opened)
                ->EnrollEnterprise(uscc, absl::StrCat("Enterprise ", i),
                                   i % 2 == 0 ? "urumqi-hnz" : "zhongguancun", i % 3 == 0)
                .ok(),
            "an enterprise did not enroll");
    }
    static const std::filesystem::path kept = path;
    std::atexit([] { std::filesystem::remove_all(kept); });
    return opened->release();
  }();
  return *store;
}

// Answers a listing with `token` (a page or kInvalidArgument), then follows the page's own
// next_page_token, which must work.
template <typename T>
void CheckListing(
    const std::string& token,
    const std::function<absl::StatusOr<stip::registry::Page<T>>(const std::string&)>& list) {
  auto page = list(token);
  CheckAnswer(page.status());
  if (page.ok() && !page->next_page_token.empty()) {
    Check(list(page->next_page_token).ok(), "a page's own next_page_token was refused");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t choice = data[0];
  const int32_t page_size = 1 + data[1] % 3;
  const std::string token(reinterpret_cast<const char*>(data) + 2, size - 2);

  // The decoder alone: any key round-trips, and what it accepts re-encodes to itself.
  static constexpr const char* kKinds[] = {"parks", "enterprises", "history"};
  const char* kind = kKinds[choice % 3];
  const std::string filter = absl::StrCat(choice >> 2);
  auto key = stip::registry::ReadPageToken(token, kind, filter);
  CheckAnswer(key.status());
  if (key.ok() && !token.empty()) {
    auto again = stip::registry::ReadPageToken(stip::registry::MakePageToken(kind, filter, *key),
                                               kind, filter);
    Check(again.ok() && *again == *key, "a key did not survive MakePageToken/ReadPageToken");
  }

  // The listings, with the token as a client sends it.
  RegistryStore& store = Store();
  switch (choice % 3) {
    case 0: {
      const auto region = static_cast<stip::v1::EconomicRegion>((choice >> 2) % 5);
      CheckListing<stip::v1::Park>(
          token, [&](const std::string& t) { return store.ListParks(region, page_size, t); });
      break;
    }
    case 1: {
      stip::registry::EnterpriseFilter filter;
      if (choice & 0x04) filter.park_id = "urumqi-hnz";
      if (choice & 0x08) filter.region = stip::v1::ECONOMIC_REGION_WESTERN;
      if (choice & 0x10) filter.status = stip::v1::ENTERPRISE_STATUS_ENROLLED;
      if (choice & 0x20) filter.fiscal_year = 2024;
      CheckListing<stip::v1::Enterprise>(
          token, [&](const std::string& t) { return store.ListEnterprises(filter, page_size, t); });
      break;
    }
    default: {
      const std::string uscc = absl::StrCat("91650100MA000000", (choice >> 2) % 6, "X");
      CheckListing<stip::v1::HistoryEntry>(token, [&](const std::string& t) {
        return store.GetEnterpriseHistory(uscc, page_size, t);
      });
      break;
    }
  }
  return 0;
}
