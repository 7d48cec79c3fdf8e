#include "services/intake/uscc.h"

#include <array>
#include <cstddef>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace stip::intake {
namespace {

constexpr int kModulus = 31;
static_assert(kUsccAlphabet.size() == kModulus);

// 3^(i-1) mod 31 for positions 1..17, computed rather than typed so that the table in
// GB 32100-2015 (1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28) cannot be mistyped; the
// static_asserts pin it to the standard's first and last entries.
constexpr std::array<int, kUsccLength - 1> Weights() {
  std::array<int, kUsccLength - 1> weights{};
  int weight = 1;
  for (int& w : weights) {
    w = weight;
    weight = weight * 3 % kModulus;
  }
  return weights;
}
constexpr std::array<int, kUsccLength - 1> kWeights = Weights();
static_assert(kWeights[0] == 1 && kWeights[3] == 27 && kWeights[9] == 29 && kWeights[16] == 28);

}  // namespace

int UsccCharacterValue(char c) {
  const std::size_t index = kUsccAlphabet.find(c);
  return index == std::string_view::npos ? -1 : static_cast<int>(index);
}

absl::StatusOr<char> UsccCheckCharacter(std::string_view first17) {
  if (first17.size() != kUsccLength - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("a USCC check character needs 17 characters, got ", first17.size()));
  }
  int sum = 0;
  for (std::size_t i = 0; i < first17.size(); ++i) {
    const int value = UsccCharacterValue(first17[i]);
    if (value < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("character ", i + 1,
                       " of a USCC is not a digit or a capital letter other "
                       "than I, O, S, V and Z"));
    }
    sum += value * kWeights[i];  // At most 17 * 30 * 30: no overflow.
  }
  return kUsccAlphabet[(kModulus - sum % kModulus) % kModulus];
}

bool IsValidUscc(std::string_view uscc) {
  if (uscc.size() != kUsccLength) return false;
  const absl::StatusOr<char> check = UsccCheckCharacter(uscc.substr(0, kUsccLength - 1));
  return check.ok() && *check == uscc.back();
}

}  // namespace stip::intake
