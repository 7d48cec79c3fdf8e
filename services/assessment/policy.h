// Qualification policies as data: one YAML file per policy, a directory per policy set,
// checked once at start-up. The file format, the pack layout and how a regulator changes a
// threshold for a future year are described in policies/README.md.
//
// A PolicySet is immutable once loaded: every method is const and safe to call from any
// number of threads at once. Pointers and spans it hands out stay valid as long as the set
// they came from (a moved-from set hands its storage to the new one, so they stay valid
// across a move too).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "stip/v1/park.pb.h"
#include "stip/v1/policy.pb.h"

namespace stip::assessment {

// The text of one policy file and the name to cite in refusals ("file:line:column: ...").
struct PolicySource {
  std::string file;
  std::string yaml;
};

// The policy in force for one fiscal year and economic region, and the criteria a filing
// from that region is held to: the policy's own, with each criterion a region override
// gives for the same metric replacing the policy's (an override may also add a metric).
// Criteria are in the policy's order, added ones after. Both point into the PolicySet.
struct PolicyInForce {
  const v1::Policy* policy = nullptr;
  absl::Span<const v1::Criterion> criteria;
};

class PolicySet {
 public:
  // Loads every `*.yaml` and `*.yml` file directly in `directory` (not in its
  // subdirectories: those are other sets; files whose names start with '.' are skipped),
  // one policy per file, and checks the whole set. Fails with kNotFound when the directory
  // does not exist and kInvalidArgument otherwise, with one line per problem found, each
  // naming the file, line and column ("policies/stip-default.yaml:12:5: unknown key ...").
  // Every problem in every file is reported at once, so an operator fixes them in one go.
  // Refused: YAML syntax errors; unknown or repeated keys; missing required keys
  // (id, version, fiscal_years with from and to, criteria, and for each criterion metric,
  // comparison and a threshold); unknown metrics, comparisons or regions; thresholds
  // outside 0..10000 basis points; revenue bands on a metric other than RD_INTENSITY, not
  // strictly ascending, or without a final open band; a criterion with both a threshold
  // and bands; a metric twice in one list; a region overridden twice; two policies whose
  // fiscal years overlap (both files are named) or with the same id and version; an
  // empty directory.
  static absl::StatusOr<PolicySet> Load(const std::filesystem::path& directory);

  // As Load, from texts already read (tests, embedding); `sources` play the files' part.
  static absl::StatusOr<PolicySet> Parse(const std::vector<PolicySource>& sources);

  // The policy covering `fiscal_year` and its criteria for `region`
  // (ECONOMIC_REGION_UNSPECIFIED: the policy's own criteria). kNotFound when no policy of
  // the set covers the year; kInvalidArgument for a region value this build does not know.
  // Does not allocate.
  absl::StatusOr<PolicyInForce> Select(int32_t fiscal_year, v1::EconomicRegion region) const;

  // Every policy of the set, in the order of their fiscal years (which never overlap).
  absl::Span<const v1::Policy> List() const { return policies_; }

  // The policy with this id and version; version 0 means the newest version of the id.
  // kNotFound when there is none.
  absl::StatusOr<const v1::Policy*> Get(std::string_view policy_id, int32_t version) const;

 private:
  // Effective criteria for each EconomicRegion value, indexed by the enum's number.
  using CriteriaByRegion = std::array<std::vector<v1::Criterion>, 5>;

  explicit PolicySet(std::vector<v1::Policy> policies);  // already checked

  std::vector<v1::Policy> policies_;         // ordered by first_fiscal_year
  std::vector<CriteriaByRegion> effective_;  // parallel to policies_
};

// The criteria `policy` holds a filing from `region` to (see PolicyInForce).
std::vector<v1::Criterion> EffectiveCriteria(const v1::Policy& policy, v1::EconomicRegion region);

}  // namespace stip::assessment
