// The cursors of the Watch streams (registry_service.h): "d.<seq>" on WatchDecisions and
// "l.<seq>" on WatchListings, <seq> the decimal feed sequence number of the last entry
// delivered or scanned. Apart from the service so that the parser, which reads what any
// client sends, can be tested and fuzzed on its own (tests/fuzz/watch_cursor_fuzz.cc).
// Plain functions: no state, thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace stip::registry {

// The cursor of feed `prefix` ('d' or 'l') at `seq` (0 or more).
std::string Cursor(char prefix, int64_t seq);

// The seq a cursor names: `prefix`, '.', then decimal digits only (no sign, no space) for a
// value of 0..INT64_MAX. nullopt for anything else, including a cursor of the other feed.
std::optional<int64_t> ParseCursor(char prefix, const std::string& cursor);

}  // namespace stip::registry
