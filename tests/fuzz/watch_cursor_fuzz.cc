// Fuzzes the Watch streams' cursors (services/registry/watch_cursor.h): what a regulator's
// client sends to resume WatchDecisions or WatchListings.
//
// Input: the cursor, as sent.
//
// Checked beyond the sanitizers: a cursor is accepted by one feed at most (a decisions
// cursor never resumes the listings feed); an accepted cursor names a seq of 0 or more,
// and the cursor the service makes for that seq is read back as the same seq; and that
// form is the canonical one (no sign, no leading zeros beyond "0") when the input was it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "services/registry/watch_cursor.h"

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "watch_cursor_fuzz: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string cursor(reinterpret_cast<const char*>(data), size);
  const auto decisions = stip::registry::ParseCursor('d', cursor);
  const auto listings = stip::registry::ParseCursor('l', cursor);
  Check(!(decisions.has_value() && listings.has_value()), "a cursor of both feeds");
  for (const auto& [prefix, seq] : {std::pair{'d', decisions}, std::pair{'l', listings}}) {
    if (!seq.has_value()) continue;
    Check(*seq >= 0, "a cursor naming a negative seq");
    const std::string made = stip::registry::Cursor(prefix, *seq);
    const auto read = stip::registry::ParseCursor(prefix, made);
    Check(read.has_value() && *read == *seq, "a cursor the service made does not read back");
    const bool canonical = cursor.size() == 3 || cursor[2] != '0';
    if (canonical) Check(made == cursor, "an accepted canonical cursor made differently");
  }
  return 0;
}
