// The sample-year generator: a deterministic year of enrolments, annual filings and corrected
// filings for a few named parks, with the sizes the program reports (Urumqi: 679 enterprises,
// 51 foreign-invested, 147 hi-tech; Kunming: 878, 121 approved hi-tech; Zhongguancun much
// larger) and realistic spreads of revenue, R&D spending, degrees and R&D staff.
//
// Deterministic: the same options give the same messages, byte for byte, on every machine.
// Random numbers come from std::mt19937_64 (whose output the standard fixes) through this
// file's own transforms (Box-Muller, inversion), never std::*_distribution (whose algorithms
// are the library's choice).
//
// How the qualified share is hit: each criterion's measure is drawn from a distribution whose
// pass probability is set per park so that the three multiply to the park's target; which
// enterprises qualify is then fixed exactly (a shuffled set of the target size), and each
// enterprise's measures are drawn from those distributions conditioned on that outcome
// (rejection sampling, judged by the exact integer rules). So the shares are the targets to
// the enterprise, while every measure keeps a realistic spread.
//
// Plain code: no I/O except WriteSampleYear, no clock, no globals; thread-compatible.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stip/v1/filing.pb.h"
#include "stip/v1/registry_service.pb.h"

namespace stip::sample_year {

struct Options {
  // The fiscal year of every filing. At least 1992 (the youngest park generated was founded
  // then) and at most 9999.
  int fiscal_year = 2024;
  uint64_t seed = 1;
  // Multiplies every park's enterprise and foreign-invested counts (rounded; at least one
  // enterprise per park). More than 0, at most 100.
  double scale = 1.0;
};

// A park the generator fills, with its size and its target qualified share.
struct ParkSpec {
  std::string park_id;
  std::string city;
  int enterprises = 0;
  int foreign_invested = 0;
  // The share of the park's enterprises that qualify under the default rules (basis points).
  int target_qualified_bp = 0;
};

// The parks generated at scale 1, in output order.
const std::vector<ParkSpec>& DefaultParks();

// What was generated for one park; every count is exact (it is what the files hold).
struct ParkSummary {
  std::string park_id;
  int enterprises = 0;
  int foreign_invested = 0;
  // Enterprises that filed (revision 1); the others filed nothing.
  int filings = 0;
  // Revision-1 filings intake must refuse (one field violation each, or two).
  int invalid_filings = 0;
  // Revision-2 filings (always valid), and how many change the outcome each way.
  int amendments = 0;
  int amendments_to_qualified = 0;
  int amendments_to_not_qualified = 0;
  // Enterprises whose valid revision-1 filing qualifies, and whose latest valid filing does.
  int qualified_revision1 = 0;
  int qualified_final = 0;
  int target_qualified_bp = 0;
  // qualified_final / enterprises, in basis points (rounded half up).
  int expected_qualified_bp = 0;
  // Over the latest valid filings: projects, commercialized ones, Torch-nominated ones, and
  // the nominated projects of qualified enterprises (what the roster would list).
  int projects = 0;
  int commercialized_projects = 0;
  int nominated_projects = 0;
  int listed_projects = 0;
};

struct SampleYear {
  std::vector<v1::EnrollEnterpriseRequest> enterprises;
  // Revision 1, one per filing enterprise, in enterprise order.
  std::vector<v1::AnnualFiling> filings;
  // Revision 2, in enterprise order.
  std::vector<v1::AnnualFiling> amendments;
  std::vector<ParkSummary> parks;
};

// InvalidArgument for options out of range (the message says which and why).
absl::StatusOr<SampleYear> Generate(const Options& options);

// True when `filing` qualifies under the default policy (stip-default version 1): R&D
// expenditure >= 3% of gross revenue, tertiary-educated >= 30% and R&D employees >= 10% of
// all employees, compared exactly in integers. For a valid filing only.
bool QualifiesUnderDefaultRules(const v1::AnnualFiling& filing);

// summary.json: the options and one object per park with the counts of ParkSummary, plus the
// totals. Deterministic text, keys in a fixed order.
std::string SummaryJson(const Options& options, const SampleYear& sample);

// Writes enterprises.ndjson, filings.ndjson, amendments.ndjson (protobuf's JSON mapping, one
// message a line) and summary.json into `dir`, creating it if needed and replacing the files.
absl::Status WriteSampleYear(const Options& options, const SampleYear& sample,
                             const std::filesystem::path& dir);

}  // namespace stip::sample_year
