#include "services/registry/watch_cursor.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace stip::registry {

std::string Cursor(char prefix, int64_t seq) {
  return absl::StrCat(std::string(1, prefix), ".", seq);
}

std::optional<int64_t> ParseCursor(char prefix, const std::string& cursor) {
  if (cursor.size() < 3 || cursor[0] != prefix || cursor[1] != '.') return std::nullopt;
  const std::string digits = cursor.substr(2);
  // Digits only: SimpleAtoi alone would also take "+7" and " 7".
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  int64_t seq = 0;
  if (!absl::SimpleAtoi(digits, &seq) || seq < 0) return std::nullopt;
  return seq;
}

}  // namespace stip::registry
