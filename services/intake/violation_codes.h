// The stable codes of FilingViolation.reason (namespace reason) and FilingWarning.code
// (namespace warning). Clients match on these strings and on the field path, never on the
// messages, which may be reworded: a code, once published, keeps its name and its meaning.
// The field a code applies to is the violation's `field`, e.g. "filing.projects[2].title".
#pragma once

#include <string_view>

namespace stip::intake::reason {

// --- Any field ---------------------------------------------------------------------------
// A required value is missing: an empty or blank string, an enum left at *_UNSPECIFIED,
// or a 0 that proto3 cannot tell from "not set" (fiscal_year, revision).
inline constexpr std::string_view kFieldRequired = "FIELD_REQUIRED";
// A string that is not valid UTF-8 (overlong forms, surrogates, truncated sequences, code
// points above U+10FFFF, stray continuation bytes).
inline constexpr std::string_view kTextInvalidUtf8 = "TEXT_INVALID_UTF8";
// A string longer than its limit, counted in Unicode code points (not bytes).
inline constexpr std::string_view kTextTooLong = "TEXT_TOO_LONG";
// A one-line text (a name, a title) holding a control character (U+0000-U+001F,
// U+007F-U+009F), a line or paragraph separator (U+2028, U+2029), or a bidirectional
// embedding, override or isolate (U+202A-U+202E, U+2066-U+2069), which could make what a
// regulator reads differ from what was filed.
inline constexpr std::string_view kTextControlCharacter = "TEXT_CONTROL_CHARACTER";
// An enum number that the enum does not define (proto3 enums are open and carry any int32).
inline constexpr std::string_view kEnumUnknown = "ENUM_UNKNOWN";

// --- filing.uscc (GB 32100-2015) --------------------------------------------------------
// Not 18 characters long.
inline constexpr std::string_view kUsccLength = "USCC_LENGTH";
// Lowercase letters: the USCC is written in capitals. Refused, not converted, because the
// USCC is the enterprise's identity and every topic's key: the message gives the
// capitalised code for the sender to resubmit.
inline constexpr std::string_view kUsccLowercase = "USCC_LOWERCASE";
// A character outside 0-9 and the capitals other than I, O, S, V, Z.
inline constexpr std::string_view kUsccCharacter = "USCC_CHARACTER";
// The 18th character is not the check character of the first 17; the message names the
// expected one.
inline constexpr std::string_view kUsccCheckCharacter = "USCC_CHECK_CHARACTER";

// --- filing.park_id and filing.fiscal_year ----------------------------------------------
// Not a slug of 1-64 characters: lowercase ASCII letters and digits in groups joined by
// single hyphens ("urumqi-hnz").
inline constexpr std::string_view kParkIdFormat = "PARK_ID_FORMAT";
// A well-formed park id that the park directory does not know.
inline constexpr std::string_view kParkUnknown = "PARK_UNKNOWN";
// A fiscal year before the filing's park was founded.
inline constexpr std::string_view kFiscalYearBeforeParkFounded = "FISCAL_YEAR_BEFORE_PARK_FOUNDED";
// A fiscal year before 1988, the first park and the Torch program's start (used when the
// park, and so its founding year, is not known).
inline constexpr std::string_view kFiscalYearBeforeProgram = "FISCAL_YEAR_BEFORE_PROGRAM";
// A fiscal year after the current year.
inline constexpr std::string_view kFiscalYearInFuture = "FISCAL_YEAR_IN_FUTURE";

// --- filing.revision --------------------------------------------------------------------
// A negative revision (0 is kFieldRequired).
inline constexpr std::string_view kRevisionOutOfRange = "REVISION_OUT_OF_RANGE";

// --- Money and headcounts ---------------------------------------------------------------
// A negative amount of fen.
inline constexpr std::string_view kMoneyNegative = "MONEY_NEGATIVE";
// An amount above kMaxMoneyFen (filing_validator.h): 10^17 fen.
inline constexpr std::string_view kMoneyTooLarge = "MONEY_TOO_LARGE";
// A negative headcount.
inline constexpr std::string_view kEmployeesNegative = "EMPLOYEES_NEGATIVE";
// total_employees is 0: a filing enterprise has at least one employee.
inline constexpr std::string_view kEmployeesZero = "EMPLOYEES_ZERO";
// Tertiary-educated or R&D employees above total_employees.
inline constexpr std::string_view kEmployeesExceedTotal = "EMPLOYEES_EXCEED_TOTAL";

// --- filing.projects --------------------------------------------------------------------
// More projects than ValidationOptions::max_projects.
inline constexpr std::string_view kProjectsTooMany = "PROJECTS_TOO_MANY";
// A project id that is not 1-64 ASCII letters, digits, '.', '_' or '-' starting with a
// letter or a digit.
inline constexpr std::string_view kProjectIdFormat = "PROJECT_ID_FORMAT";
// A project id used by an earlier project of the filing (compared ignoring ASCII case).
inline constexpr std::string_view kProjectIdDuplicate = "PROJECT_ID_DUPLICATE";

}  // namespace stip::intake::reason

namespace stip::intake::warning {

// Codes of FilingWarning: the filing is not refused for them, and carries them.
// R&D expenditure above gross revenue: possible (a start-up, a loss year) but worth a look.
inline constexpr std::string_view kRdExceedsRevenue = "RD_EXCEEDS_REVENUE";

}  // namespace stip::intake::warning
