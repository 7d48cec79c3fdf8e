// The id of a filing revision, shared by every service: intake derives it when it accepts a
// filing, assessment when it decides one (or a draft), the registry when it records it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace stip {

// "<uscc>/<fiscal_year>/<revision>", e.g. "91350100M000100Y43/2024/2": readable in logs and
// URLs, and the same for the same filing whichever instance derives it, so that a
// repeated submission is recognised downstream (it is also the event's CloudEvents id).
inline std::string FilingIdFor(std::string_view uscc, int32_t fiscal_year, int32_t revision) {
  return absl::StrCat(std::string(uscc), "/", fiscal_year, "/", revision);
}

}  // namespace stip
