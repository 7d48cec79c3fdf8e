// The one validator of annual filings. Every entry point (the gRPC IntakeService, the
// stip.filings.inbound.v1 consumer, stipctl's draft check) calls ValidateFiling, so a
// filing is judged the same way whichever way it came in.
//
// Plain code: no I/O, no clock, no locks, no exceptions. What it needs from the outside
// world comes in as arguments: the parks (ParkDirectory) and the current year
// (ValidationOptions).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "services/intake/violation_codes.h"
#include "stip/v1/filing.pb.h"
#include "stip/v1/park.pb.h"

namespace stip::intake {

// What the validator needs to know about a park.
struct ParkFacts {
  // The year the park was founded; 0 when unknown, and then no fiscal year is refused as
  // being before it.
  int year_founded = 0;
  v1::EconomicRegion region = v1::ECONOMIC_REGION_UNSPECIFIED;
};

// The parks a filing may name. The registry supplies the real one.
//
// Find is called at most once per ValidateFiling, on the caller's thread, and may be called
// from many threads at once: implementations must be thread-safe for concurrent calls.
// It must answer from memory (a snapshot or a cache the runtime refreshes): the validator
// does no I/O and has no way to report "the registry is unreachable", so a runtime that
// cannot get the parks answers UNAVAILABLE itself instead of validating.
class ParkDirectory {
 public:
  virtual ~ParkDirectory() = default;
  // The park's facts, or nullopt when no park has this id.
  virtual std::optional<ParkFacts> Find(std::string_view park_id) const = 0;
};

// A fixed set of parks held in memory: for tests, stipctl's offline draft check, and as the
// snapshot a runtime builds from the registry. Immutable once built, so thread-safe.
class InMemoryParkDirectory final : public ParkDirectory {
 public:
  InMemoryParkDirectory() = default;
  explicit InMemoryParkDirectory(absl::flat_hash_map<std::string, ParkFacts> parks)
      : parks_(std::move(parks)) {}

  std::optional<ParkFacts> Find(std::string_view park_id) const override;

 private:
  absl::flat_hash_map<std::string, ParkFacts> parks_;
};

struct ValidationOptions {
  // The current calendar year: no fiscal year after it is accepted. Injected, never read
  // from a clock here, so that tests and replays are deterministic. Must be set; see
  // ForTime. (0, the default, refuses every fiscal year as being in the future.)
  int current_year = 0;
  // The most projects one filing may list (0 or less: none). Projects past this count are
  // not examined one by one: the filing is refused with reason::kProjectsTooMany, and the
  // violations stay bounded whatever a sender puts in.
  int max_projects = 500;

  // Options for a filing received at `now`. The year is China Standard Time's (UTC+8, no
  // daylight saving), where the enterprises and their fiscal years are: at 2025-12-31
  // 17:00 UTC it is already 2026 in Beijing.
  static ValidationOptions ForTime(absl::Time now);
};

// Every problem found in one filing.
struct ValidationResult {
  // The reasons to refuse the filing, in the order of the filing's fields (proto field
  // number, then project index). Each has a reason code of violation_codes.h, a field path
  // starting with "filing." (e.g. "filing.projects[2].title"), and a message in English
  // and in simplified Chinese. Empty when the filing is accepted.
  std::vector<v1::FilingViolation> violations;
  // Conditions worth a second look that do not refuse the filing (code, field, messages as
  // above); an accepted filing carries them to the receipt and the AcceptedFiling event.
  std::vector<v1::FilingWarning> warnings;

  // True when the filing is accepted: no violations (warnings do not count).
  bool ok() const { return violations.empty(); }
};

// Limits on the strings of a filing, in Unicode code points.
inline constexpr std::size_t kMaxTitleCodePoints = 200;
inline constexpr std::size_t kMaxEnterpriseNameCodePoints = 200;
inline constexpr std::size_t kMaxParkIdLength = 64;
inline constexpr std::size_t kMaxProjectIdLength = 64;
// 1988: Zhongguancun, the first park, and the Torch program itself.
inline constexpr int kFirstProgramYear = 1988;
// The most any money field of a filing may hold: 10^17 fen, 10^15 CNY, several times
// China's annual GDP, so no real filing comes near it. Below it, the sums the registry and
// the evaluator form over many filings stay far from int64's 9.2 * 10^18.
inline constexpr int64_t kMaxMoneyFen = 100'000'000'000'000'000;

// Checks every rule on `filing` and returns every violation and warning at once, so a
// sender can fix everything in one round trip. The rules:
//   uscc              18 characters of kUsccAlphabet with the right check character
//                     (uscc.h); lowercase letters are refused, not converted.
//   park_id           a slug of at most 64 characters naming a park `parks` knows.
//   fiscal_year       set; not before the park was founded (nor before 1988); not after
//                     options.current_year.
//   revision          1 or more.
//   *_fen             not negative, at most kMaxMoneyFen; R&D expenditure above gross
//                     revenue is a warning.
//   headcounts        none negative; total_employees above 0; tertiary-educated and R&D
//                     employees each at most total_employees.
//   projects          at most options.max_projects; each with a unique project id (1-64 of
//                     [A-Za-z0-9._-], starting with a letter or digit, unique ignoring
//                     ASCII case); a title of 1-200 code points of valid UTF-8 without
//                     control characters; a defined stage and field, not UNSPECIFIED.
//   enterprise_name   optional (the registry's name stands); at most 200 code points of
//                     valid UTF-8 without control characters.
// Messages quote the sender's values only once they are known to be short, valid UTF-8.
// Thread-safe when `parks` is; does not keep references past the call.
ValidationResult ValidateFiling(const v1::AnnualFiling& filing, const ParkDirectory& parks,
                                const ValidationOptions& options);

}  // namespace stip::intake
