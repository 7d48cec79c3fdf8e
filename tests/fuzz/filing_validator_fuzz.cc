// Fuzzes the one filing validator (services/intake/filing_validator.h) with any filing the
// wire format can carry, strings included that are not UTF-8 (lenient_proto.h), against a
// fixed park directory and a fixed current year, so that every run is repeatable.
//
// Input: an AnnualFiling in protobuf wire format (the seeds are real filings).
//
// Checked beyond the sanitizers, from the header's contract: every violation and warning
// has a stable code, a field path under "filing." and both messages, all valid UTF-8 (they
// travel in proto3 strings and gRPC trailers); the violations stay bounded whatever the
// sender puts in; an accepted filing has only valid UTF-8 in it (it is published as
// protobuf); and validating twice gives the same answer.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "services/intake/filing_validator.h"
#include "stip/v1/filing.pb.h"
#include "tests/fuzz/lenient_proto.h"
#include "utf8cpp/utf8.h"

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "filing_validator_fuzz: %s\n", what);
    std::abort();
  }
}

bool Utf8(const std::string& text) { return utf8::is_valid(text.begin(), text.end()); }

template <typename Finding>
void CheckFinding(const Finding& finding, const std::string& code) {
  Check(!code.empty(), "a finding without a code");
  Check(absl::StartsWith(finding.field(), "filing."), "a finding's field not under filing.");
  Check(!finding.message().empty() && !finding.message_zh().empty(), "a finding without text");
  Check(
      Utf8(code) && Utf8(finding.field()) && Utf8(finding.message()) && Utf8(finding.message_zh()),
      "a finding that is not valid UTF-8");
}

const stip::intake::InMemoryParkDirectory& Parks() {
  static const auto* parks = new stip::intake::InMemoryParkDirectory({
      {"urumqi-hnz", {1992, stip::v1::ECONOMIC_REGION_WESTERN}},
      {"zhongguancun", {1988, stip::v1::ECONOMIC_REGION_EASTERN}},
      {"kunming", {1992, stip::v1::ECONOMIC_REGION_WESTERN}},
      {"founded-unknown", {0, stip::v1::ECONOMIC_REGION_CENTRAL}},
  });
  return *parks;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  stip::v1::AnnualFiling filing;
  if (!stip::fuzz::ParseLenient(data, size, &filing)) return 0;
  stip::intake::ValidationOptions options;
  options.current_year = 2025;
  options.max_projects = 50;  // the rule at a size the fuzzer reaches

  const stip::intake::ValidationResult result = ValidateFiling(filing, Parks(), options);
  for (const auto& violation : result.violations) CheckFinding(violation, violation.reason());
  for (const auto& warning : result.warnings) CheckFinding(warning, warning.code());
  const size_t examined = std::min<size_t>(filing.projects_size(), options.max_projects);
  Check(result.violations.size() <= 20 + 10 * examined, "violations without bound");
  if (result.ok()) {
    Check(Utf8(filing.uscc()) && Utf8(filing.park_id()) && Utf8(filing.enterprise_name()),
          "an accepted filing with a string that is not UTF-8");
    for (const auto& project : filing.projects()) {
      Check(Utf8(project.project_id()) && Utf8(project.title()),
            "an accepted project with a string that is not UTF-8");
    }
  }
  const stip::intake::ValidationResult again = ValidateFiling(filing, Parks(), options);
  Check(again.violations.size() == result.violations.size() &&
            again.warnings.size() == result.warnings.size(),
        "the same filing validated twice gave two answers");
  return 0;
}
