#include "bench/pipeline_load/population.h"

#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/intake/uscc.h"

namespace stip::bench::load {
namespace {

constexpr std::string_view kTitles[] = {
    "Grid-scale solar inverter", "Solid-state battery cell",  "Recombinant insulin process",
    "Carbon fibre wing spar",    "Industrial edge gateway",   "Desalination membrane",
    "Satellite attitude sensor", "Five-axis machining centre"};

}  // namespace

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t Fnv1a(std::string_view text) {
  uint64_t hash = 0xCBF29CE484222325ULL;
  for (const char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001B3ULL;
  }
  return hash;
}

int CurrentYearInChina() {
  return static_cast<int>(absl::ToCivilYear(absl::Now(), absl::FixedTimeZone(8 * 3600)).year());
}

Population::Population(const std::string& run_id, int first_year, int years, int64_t enterprises,
                       std::vector<std::string> parks)
    : seed_(Fnv1a(run_id)),
      first_year_(first_year),
      years_(years),
      enterprises_(enterprises),
      parks_(std::move(parks)) {
  // "91" (market regulation, enterprise), 7 symbols of the run id's hash, 8 of the index.
  uint64_t h = seed_;
  prefix_ = "91";
  for (int i = 0; i < 7; ++i) {
    prefix_ += stip::intake::kUsccAlphabet[h % 31];
    h /= 31;
  }
}

std::string Population::Uscc(int64_t e) const {
  std::string first17 = prefix_;
  char digits[8];
  uint64_t v = static_cast<uint64_t>(e);
  for (int i = 7; i >= 0; --i) {
    digits[i] = stip::intake::kUsccAlphabet[v % 31];
    v /= 31;
  }
  first17.append(digits, 8);
  return first17 + *stip::intake::UsccCheckCharacter(first17);
}

std::string Population::NameOf(int64_t e) const {
  return absl::StrCat("Bench Enterprise ", prefix_.substr(2), "-", e);
}

std::optional<int64_t> Population::IndexOf(std::string_view uscc, int fiscal_year) const {
  if (uscc.size() != 18 || uscc.substr(0, prefix_.size()) != prefix_) return std::nullopt;
  int64_t e = 0;
  for (size_t i = prefix_.size(); i < 17; ++i) {
    const int v = stip::intake::UsccCharacterValue(uscc[i]);
    if (v < 0) return std::nullopt;
    e = e * 31 + v;
  }
  const int y = fiscal_year - first_year_;
  if (e >= enterprises_ || y < 0 || y >= years_) return std::nullopt;
  return static_cast<int64_t>(y) * enterprises_ + e;
}

stip::v1::AnnualFiling Population::Filing(int64_t k) const {
  const int64_t e = k % enterprises_;
  const auto d = Draws(k);
  const bool qualifies = (d[0] & 1) == 0;
  const int failing = qualifies ? -1 : static_cast<int>((d[0] >> 1) % 3);
  stip::v1::AnnualFiling filing;
  filing.set_uscc(Uscc(e));
  filing.set_park_id(ParkOf(e));
  filing.set_fiscal_year(first_year_ + static_cast<int>(k / enterprises_));
  filing.set_revision(1);
  const int64_t revenue = 10'000'000 + static_cast<int64_t>(d[1] % 5'000'000'000ULL);
  const int64_t total = 20 + static_cast<int64_t>(d[2] % 1981);
  // A share in basis points: [pass_lo, pass_hi] when passing, [fail_lo, threshold) when
  // failing; a passing count rounds up and a failing one down, so the outcome is exact.
  const auto share = [](uint64_t draw, bool pass, int64_t threshold, int64_t lo, int64_t hi) {
    return pass ? threshold + static_cast<int64_t>(draw % static_cast<uint64_t>(hi - threshold))
                : lo + static_cast<int64_t>(draw % static_cast<uint64_t>(threshold - lo));
  };
  const auto part = [](int64_t whole, int64_t bp, bool pass) {
    return pass ? (whole * bp + 9999) / 10000 : whole * bp / 10000;
  };
  const bool rd_pass = failing != 0, tertiary_pass = failing != 1, staff_pass = failing != 2;
  filing.set_gross_revenue_fen(revenue);
  filing.set_rd_expenditure_fen(part(revenue, share(d[3], rd_pass, 300, 50, 1500), rd_pass));
  filing.set_total_employees(static_cast<int32_t>(total));
  filing.set_tertiary_educated_employees(static_cast<int32_t>(
      part(total, share(d[4], tertiary_pass, 3000, 500, 9000), tertiary_pass)));
  filing.set_rd_employees(
      static_cast<int32_t>(part(total, share(d[5], staff_pass, 1000, 100, 4000), staff_pass)));
  stip::v1::HiTechProject* project = filing.add_projects();
  project->set_project_id("p-1");
  project->set_title(std::string(kTitles[d[6] % std::size(kTitles)]));
  project->set_field(static_cast<stip::v1::TechnologyField>(1 + d[6] / 8 % 8));
  project->set_stage(d[6] / 64 % 2 == 0 ? stip::v1::PROJECT_STAGE_DEVELOPMENT
                                        : stip::v1::PROJECT_STAGE_COMMERCIALIZED);
  project->set_torch_nominated(d[6] / 128 % 2 == 0);
  filing.set_enterprise_name(NameOf(e));
  return filing;
}

std::array<uint64_t, 7> Population::Draws(int64_t k) const {
  uint64_t state = seed_ ^ (static_cast<uint64_t>(k) * 0xD1B54A32D192ED03ULL);
  std::array<uint64_t, 7> d{};
  for (uint64_t& v : d) v = SplitMix64(state);
  return d;
}

}  // namespace stip::bench::load
