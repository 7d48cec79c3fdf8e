// A run's deterministic enterprises and filings: everything is a function of (run id,
// index), so that the decisions on the registry's stream are matched to their filings without
// a table, and decisions of other runs on the same registry are told apart. Also the PRNG and
// hash they are made with, and the current year the fiscal years are checked against.
// Pure computation: no I/O, nothing blocks; a Population is immutable, hence thread-safe.
#ifndef STIP_BENCH_PIPELINE_LOAD_POPULATION_H_
#define STIP_BENCH_PIPELINE_LOAD_POPULATION_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stip/v1/filing.pb.h"

namespace stip::bench::load {

// SplitMix64: advances `state` and returns the next value.
uint64_t SplitMix64(uint64_t& state);
// 64-bit FNV-1a of `text`.
uint64_t Fnv1a(std::string_view text);

// The current calendar year in China (UTC+8), the last fiscal year intake accepts.
int CurrentYearInChina();

// The run's enterprises and their filings: enterprise e (0 <= e < enterprises) files for
// every fiscal year first_year .. first_year + years - 1; filing index k is enterprise
// k mod E, fiscal year first_year + k div E. USCCs carry a tag of the run id and the
// enterprise index. Immutable after construction: thread-safe.
class Population {
 public:
  Population(const std::string& run_id, int first_year, int years, int64_t enterprises,
             std::vector<std::string> parks);

  int64_t enterprises() const { return enterprises_; }
  int64_t capacity() const { return enterprises_ * years_; }
  int first_year() const { return first_year_; }
  int years() const { return years_; }
  const std::string& prefix() const { return prefix_; }

  std::string Uscc(int64_t e) const;
  const std::string& ParkOf(int64_t e) const {
    return parks_[static_cast<size_t>(e) % parks_.size()];
  }
  std::string NameOf(int64_t e) const;

  // The filing index of (uscc, fiscal_year), or nullopt when it is not one of this run's.
  std::optional<int64_t> IndexOf(std::string_view uscc, int fiscal_year) const;

  // Whether filing k qualifies under the default policy (R&D >= 3% of revenue, tertiary >=
  // 30%, R&D staff >= 10%): about half do; a filing that does not fails one criterion.
  bool Qualifies(int64_t k) const { return (Draws(k)[0] & 1) == 0; }

  // Filing k: revision 1, figures from a PRNG seeded with the run id and k.
  stip::v1::AnnualFiling Filing(int64_t k) const;

 private:
  std::array<uint64_t, 7> Draws(int64_t k) const;

  const uint64_t seed_;
  const int first_year_;
  const int years_;
  const int64_t enterprises_;
  const std::vector<std::string> parks_;
  std::string prefix_;
};

}  // namespace stip::bench::load

#endif  // STIP_BENCH_PIPELINE_LOAD_POPULATION_H_
