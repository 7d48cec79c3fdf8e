// Private to the registry store's .cc files: the implementation object and the helpers
// they share. Not an interface: include registry_store.h.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/status_macros.h"
#include "services/registry/registry_store.h"
#include "services/registry/sql.h"

namespace stip::registry {

class RegistryStore::Impl {
 public:
  Impl(std::unique_ptr<SqlDatabase> db, StoreOptions options)
      : db_(std::move(db)), options_(std::move(options)) {}

  SqlDatabase& db() { return *db_; }
  int64_t NowMicros() const { return absl::ToUnixMicros(options_.now()); }
  absl::Time Now() const { return options_.now(); }

 private:
  std::unique_ptr<SqlDatabase> db_;
  StoreOptions options_;
};

// History entry kinds (history.kind).
inline constexpr int64_t kHistoryFiling = 1;
inline constexpr int64_t kHistoryDecision = 2;
inline constexpr int64_t kHistoryListing = 3;

// Page tokens: "<kind>|<filter fingerprint>|<last key>", web-safe base64. A token is
// refused (kInvalidArgument, field page_token) when it is not one of ours, or was made
// for another listing or other filters.
std::string MakePageToken(std::string_view kind, std::string_view filter,
                          std::string_view last_key);
// The last key of the page before; "" for an empty token (the first page).
absl::StatusOr<std::string> ReadPageToken(std::string_view token, std::string_view kind,
                                          std::string_view filter);
// page_size 0 means the default (100); larger than 1000 is clamped to 1000.
int32_t EffectivePageSize(int32_t page_size);

// Parses a protobuf stored in a payload column; kDataLoss naming the table and key when it
// does not parse (a corrupted row).
template <typename Message>
absl::StatusOr<Message> ParseStored(const std::string& bytes, std::string_view table,
                                    std::string_view key) {
  Message message;
  if (!message.ParseFromString(bytes)) {
    return absl::DataLossError(std::string("the row of ") + std::string(table) + " \"" +
                               std::string(key) + "\" does not parse as " +
                               Message::descriptor()->full_name());
  }
  return message;
}

}  // namespace stip::registry

namespace stip::registry {
// Event headers as stored in the outbox: (4-byte little-endian length, bytes) for each
// name and value in turn.
std::string EncodeHeaders(const EventHeaders& headers);
absl::StatusOr<EventHeaders> DecodeHeaders(std::string_view encoded);
}  // namespace stip::registry
