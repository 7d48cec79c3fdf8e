// The Unified Social Credit Code (USCC) of GB 32100-2015: 18 characters of a 31-symbol
// alphabet, the last one a check character over the first 17.
//
//   position  1      registration authority (9: market regulation, 5: civil affairs, ...)
//   position  2      entity type under that authority (1: enterprise, ...)
//   positions 3-8    administrative division code (GB/T 2260)
//   positions 9-17   organization code (GB 11714, with its own check character at 17)
//   position  18     the check character over positions 1-17, modulo 31
//
// Only the alphabet, the length and the modulo-31 check character are verified here; the
// inner structure (division codes, the GB 11714 check) is the issuing authority's business
// and varies with the authority, so a well-formed code with a correct check character is
// accepted. Every function is pure, allocation-free and thread-safe.
#pragma once

#include <cstddef>
#include <string_view>

#include "absl/status/statusor.h"

namespace stip::intake {

// The 31 symbols in value order: 0-9 are worth 0-9, 'A' 10, ..., 'Y' 30. I, O, S, V and Z
// are left out so that a code cannot be misread (1/I, 0/O, 5/S, U/V, 2/Z).
inline constexpr std::string_view kUsccAlphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY";
inline constexpr std::size_t kUsccLength = 18;

// The value (0..30) of `c` in kUsccAlphabet, or -1 when `c` is not one of its symbols.
// Case-sensitive: lowercase letters are not symbols of the alphabet.
int UsccCharacterValue(char c);

// The check character (position 18) for the first 17 characters of a USCC: with the
// weights 3^(i-1) mod 31 for positions i = 1..17, check = (31 - sum mod 31) mod 31, mapped
// back through kUsccAlphabet. For generators of codes and for error messages.
// InvalidArgument when `first17` is not exactly 17 symbols of kUsccAlphabet.
absl::StatusOr<char> UsccCheckCharacter(std::string_view first17);

// True when `uscc` is 18 symbols of kUsccAlphabet and its check character is right.
// ("91350100M000100Y43" is valid.) Lowercase input is not valid: see filing_validator.h.
bool IsValidUscc(std::string_view uscc);

}  // namespace stip::intake
