// Fuzzes the policy loader (services/assessment/policy.h): YAML policy files as an operator
// writes them (policies/), parsed and checked as one set.
//
// Input: the text of one policy file, or of up to three files of one set separated by
// kSeparator (overlapping fiscal years, repeated ids and versions are checked across files).
//
// Checked beyond the sanitizers: a refusal says why (a message naming the file); a set that
// loads keeps its promises: every threshold within 0..10000 basis points, revenue bands
// strictly ascending with a final open band, fiscal years that do not overlap, Select
// answering for every year of every policy and every region, and Get finding each policy
// by id and version.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "services/assessment/policy.h"
#include "stip/v1/park.pb.h"
#include "stip/v1/policy.pb.h"

namespace {

// absl::string_view: Debian's Abseil keeps its own type, which StrSplit wants.
constexpr absl::string_view kSeparator = "\n---8<---\n";

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "policy_fuzz: %s\n", what);
    std::abort();
  }
}

void CheckCriterion(const stip::v1::Criterion& criterion) {
  if (criterion.revenue_bands_size() == 0) {
    Check(criterion.threshold_basis_points() >= 0 && criterion.threshold_basis_points() <= 10000,
          "a threshold outside 0..10000 basis points was loaded");
    return;
  }
  int64_t previous = std::numeric_limits<int64_t>::min();
  for (int i = 0; i < criterion.revenue_bands_size(); ++i) {
    const stip::v1::RevenueBand& band = criterion.revenue_bands(i);
    Check(band.threshold_basis_points() >= 0 && band.threshold_basis_points() <= 10000,
          "a band's threshold outside 0..10000 basis points was loaded");
    if (i + 1 < criterion.revenue_bands_size()) {
      Check(band.revenue_up_to_fen() > previous, "revenue bands not strictly ascending");
      previous = band.revenue_up_to_fen();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<stip::assessment::PolicySource> sources;
  for (absl::string_view part : absl::StrSplit(text, absl::MaxSplits(kSeparator, 2))) {
    sources.push_back({absl::StrCat("policies/fuzz-", sources.size(), ".yaml"), std::string(part)});
  }
  auto set = stip::assessment::PolicySet::Parse(sources);
  if (!set.ok()) {
    Check(!set.status().message().empty(), "a refusal without a reason");
    Check(absl::StrContains(set.status().message(), "policies/fuzz-"),
          "a refusal that names no file");
    return 0;
  }
  const auto policies = set->List();
  Check(!policies.empty(), "a set loaded without a policy");
  constexpr int32_t kOpen = std::numeric_limits<int32_t>::max();
  int32_t previous_last = std::numeric_limits<int32_t>::min();
  for (const stip::v1::Policy& policy : policies) {
    const int32_t first = policy.first_fiscal_year();
    const int32_t last = policy.has_last_fiscal_year() ? policy.last_fiscal_year() : kOpen;
    Check(first <= last, "a policy whose years end before they start");
    Check(first > previous_last, "two policies' fiscal years overlap");
    previous_last = last;
    for (const auto& criterion : policy.criteria()) CheckCriterion(criterion);
    for (const auto& region : policy.region_overrides()) {
      for (const auto& criterion : region.criteria()) CheckCriterion(criterion);
    }
    auto found = set->Get(policy.policy_id(), policy.version());
    Check(found.ok() && *found != nullptr && (*found)->policy_id() == policy.policy_id(),
          "Get does not find a policy of the set");
    // The first and last years (and the ones beside them), in every region.
    for (int64_t year : {int64_t{first}, int64_t{first} + 1, int64_t{last} - 1, int64_t{last}}) {
      if (year < first || year > last) continue;
      for (int region = 0; region <= 4; ++region) {
        auto selected =
            set->Select(static_cast<int32_t>(year), static_cast<stip::v1::EconomicRegion>(region));
        Check(selected.ok() && selected->policy == &policy,
              "Select does not answer with the policy covering the year");
        Check(!selected->criteria.empty(), "a policy in force without criteria");
        for (const auto& criterion : selected->criteria) CheckCriterion(criterion);
      }
    }
  }
  return 0;
}
