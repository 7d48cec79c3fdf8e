// The USCC check character (GB 32100-2015) and the USCC rules of the filing validator.
#include "services/intake/uscc.h"

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/intake/filing_validator.h"
#include "services/intake/violation_codes.h"
#include "stip/v1/filing.pb.h"

namespace stip::intake {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// Real-looking codes across registration authorities and regions, with organization codes
// whose GB 11714 check characters are right too. The check characters were computed apart
// from the code under test (a short script over the standard's weights), so that this
// table can catch a wrong weight or a wrong alphabet rather than repeat it.
struct Example {
  std::string_view uscc;
  std::string_view what;
};
constexpr Example kExamples[] = {
    {"91350100M000100Y43", "enterprise, Fuzhou (the example of the brief)"},
    {"91110108MA01C2LK60", "enterprise, Haidian, Beijing (Zhongguancun)"},
    {"91650100228600125Q", "enterprise, Urumqi"},
    {"915301002165820705", "enterprise, Kunming; check character 5, organization check 0"},
    {"91440300MA5FXT4B42", "enterprise, Shenzhen"},
    {"92310115MA1K4N3R1U", "individual business, Pudong, Shanghai"},
    {"93510100MA6CJ3RTX3", "farmers' cooperative, Chengdu; organization check X"},
    {"11110000000013047X", "government body, Beijing"},
    {"12650000457600217A", "public institution, Xinjiang"},
    {"514201005070012649", "social organization, Wuhan"},
    {"52210100MA0XD82U8P", "private non-enterprise unit, Shenyang"},
    {"53100000500002125N", "foundation, national"},
    {"Y1320500MA1MN0QE41", "other authority, Suzhou"},
    {"31610100E33527417F", "law firm (justice authority), Xi'an"},
    {"N2220100MA17Y36K0W", "rural collective, Changchun"},
};

TEST(UsccCheckCharacterTest, MatchesIndependentlyComputedExamples) {
  for (const Example& example : kExamples) {
    SCOPED_TRACE(example.what);
    const absl::StatusOr<char> check = UsccCheckCharacter(example.uscc.substr(0, 17));
    ASSERT_TRUE(check.ok()) << check.status();
    EXPECT_EQ(*check, example.uscc[17]) << example.uscc;
    EXPECT_TRUE(IsValidUscc(example.uscc)) << example.uscc;
  }
}

TEST(UsccCheckCharacterTest, CheckValueZeroAndThirty) {
  // sum % 31 == 0 gives check 0 (not 31); the table above has 0 and the highest symbols.
  EXPECT_EQ(*UsccCheckCharacter("00000000000000000"), '0');
  // One at position 1 (weight 1): 31 - 1 = 30 = 'Y'.
  EXPECT_EQ(*UsccCheckCharacter("10000000000000000"), 'Y');
  // 'Y' (30) at position 17 (weight 28): 840 % 31 = 3, check 28 = 'W'.
  EXPECT_EQ(*UsccCheckCharacter("0000000000000000Y"), 'W');
}

TEST(UsccCheckCharacterTest, RefusesWhatIsNotSeventeenSymbols) {
  EXPECT_EQ(UsccCheckCharacter("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UsccCheckCharacter("9135010").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UsccCheckCharacter("91350100M000100Y43").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UsccCheckCharacter("91350100m000100y4").status().code(),
            absl::StatusCode::kInvalidArgument);
  for (const char forbidden : std::string_view("IOSVZ")) {
    std::string first17 = "91350100M000100Y4";
    first17[8] = forbidden;
    EXPECT_EQ(UsccCheckCharacter(first17).status().code(), absl::StatusCode::kInvalidArgument)
        << first17;
  }
}

TEST(UsccCharacterValueTest, AlphabetAndForbiddenLetters) {
  ASSERT_EQ(kUsccAlphabet.size(), 31u);
  for (std::size_t i = 0; i < kUsccAlphabet.size(); ++i) {
    EXPECT_EQ(UsccCharacterValue(kUsccAlphabet[i]), static_cast<int>(i));
  }
  for (const char c : std::string_view("IOSVZabcyz -\0", 13)) {
    EXPECT_EQ(UsccCharacterValue(c), -1) << static_cast<int>(c);
  }
}

TEST(IsValidUsccTest, RefusesNearMisses) {
  EXPECT_FALSE(IsValidUscc(""));
  EXPECT_FALSE(IsValidUscc("91350100M000100Y4"));
  EXPECT_FALSE(IsValidUscc("91350100M000100Y433"));
  EXPECT_FALSE(IsValidUscc("91350100m000100y43"));
  EXPECT_FALSE(IsValidUscc(" 91350100M000100Y43"));
  EXPECT_FALSE(IsValidUscc("91350100M000100Y44"));
}

// Modulo a prime with weights that are never 0 mod 31, any one changed character changes
// the sum: every single substitution, at every position including the check character,
// must be caught.
TEST(IsValidUsccTest, CatchesEverySingleSubstitution) {
  int caught = 0;
  for (const Example& example : kExamples) {
    for (std::size_t position = 0; position < kUsccLength; ++position) {
      for (const char replacement : kUsccAlphabet) {
        if (replacement == example.uscc[position]) continue;
        std::string corrupted(example.uscc);
        corrupted[position] = replacement;
        EXPECT_FALSE(IsValidUscc(corrupted)) << corrupted;
        ++caught;
      }
    }
  }
  EXPECT_EQ(caught, 15 * 18 * 30);
}

// --- The USCC rules of ValidateFiling ---------------------------------------------------

std::vector<v1::FilingViolation> UsccViolations(std::string_view uscc) {
  v1::AnnualFiling filing;
  filing.set_uscc(std::string(uscc));
  filing.set_park_id("urumqi-hnz");
  filing.set_fiscal_year(2023);
  filing.set_revision(1);
  filing.set_total_employees(10);
  const InMemoryParkDirectory parks({{"urumqi-hnz", ParkFacts{1992, v1::ECONOMIC_REGION_WESTERN}}});
  ValidationResult result = ValidateFiling(filing, parks, ValidationOptions{.current_year = 2024});
  for (const v1::FilingViolation& v : result.violations) {
    EXPECT_EQ(v.field(), "filing.uscc") << "only the USCC is wrong in these filings";
  }
  return std::move(result.violations);
}

TEST(UsccRulesTest, ValidExamplesPass) {
  for (const Example& example : kExamples) {
    EXPECT_THAT(UsccViolations(example.uscc), IsEmpty()) << example.uscc;
  }
}

TEST(UsccRulesTest, CorruptedCheckCharacterNamesTheExpectedOne) {
  for (const Example& example : kExamples) {
    SCOPED_TRACE(example.uscc);
    std::string corrupted(example.uscc);
    const int value = UsccCharacterValue(corrupted[17]);
    corrupted[17] = kUsccAlphabet[(value + 1) % 31];
    const std::vector<v1::FilingViolation> violations = UsccViolations(corrupted);
    ASSERT_EQ(violations.size(), 1u);
    EXPECT_EQ(violations[0].reason(), reason::kUsccCheckCharacter);
    const std::string expected(1, example.uscc[17]);
    const std::string found(1, corrupted[17]);
    EXPECT_THAT(violations[0].message(),
                AllOf(HasSubstr("must be '" + expected + "'"), HasSubstr("is '" + found + "'")));
    EXPECT_THAT(violations[0].message_zh(), HasSubstr("应为“" + expected + "”"));
  }
}

TEST(UsccRulesTest, ForbiddenLetterIsNamedAndNoCheckCharacterIsComputed) {
  for (const Example& example : kExamples) {
    for (const char forbidden : std::string_view("IOSVZ")) {
      std::string corrupted(example.uscc);
      corrupted[8] = forbidden;  // Position 9: the first of the organization code.
      SCOPED_TRACE(corrupted);
      const std::vector<v1::FilingViolation> violations = UsccViolations(corrupted);
      ASSERT_EQ(violations.size(), 1u);
      EXPECT_EQ(violations[0].reason(), reason::kUsccCharacter);
      EXPECT_THAT(violations[0].message(),
                  HasSubstr(std::string("'") + forbidden + "' at position 9"));
      EXPECT_THAT(violations[0].message_zh(), HasSubstr(std::string("第 9 位“") + forbidden + "”"));
    }
  }
}

TEST(UsccRulesTest, ForbiddenCheckCharacter) {
  // The check character itself can never be I, O, S, V or Z.
  const std::vector<v1::FilingViolation> violations = UsccViolations("91350100M000100Y4Z");
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_EQ(violations[0].reason(), reason::kUsccCharacter);
  EXPECT_THAT(violations[0].message(), HasSubstr("'Z' at position 18"));
}

TEST(UsccRulesTest, LowercaseIsRefusedWithTheCapitalisedCode) {
  const std::vector<v1::FilingViolation> violations = UsccViolations("91350100m000100y43");
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_EQ(violations[0].reason(), reason::kUsccLowercase);
  EXPECT_THAT(violations[0].message(),
              AllOf(HasSubstr("positions 9, 16"), HasSubstr("91350100M000100Y43")));
  EXPECT_THAT(violations[0].message_zh(), HasSubstr("应为 91350100M000100Y43"));
}

TEST(UsccRulesTest, LowercaseForbiddenLetterIsAForbiddenCharacter) {
  // 'i' is not a matter of case: 'I' is not allowed either.
  const std::vector<v1::FilingViolation> violations = UsccViolations("91350100i000100y43");
  ASSERT_EQ(violations.size(), 2u);
  EXPECT_EQ(violations[0].reason(), reason::kUsccLowercase);
  EXPECT_THAT(violations[0].message(), Not(HasSubstr("91350100")));  // No suggested code.
  EXPECT_EQ(violations[1].reason(), reason::kUsccCharacter);
  EXPECT_THAT(violations[1].message(), HasSubstr("'i' at position 9"));
}

TEST(UsccRulesTest, Length) {
  EXPECT_EQ(UsccViolations("")[0].reason(), reason::kFieldRequired);
  for (const std::string_view uscc : {"91350100M000100Y4", "91350100M000100Y433", "9"}) {
    const std::vector<v1::FilingViolation> violations = UsccViolations(uscc);
    ASSERT_EQ(violations.size(), 1u) << uscc;
    EXPECT_EQ(violations[0].reason(), reason::kUsccLength);
    EXPECT_THAT(violations[0].message(), HasSubstr("it has " + std::to_string(uscc.size())));
  }
}

TEST(UsccRulesTest, WrongLengthAndForbiddenCharacterAreBothReported) {
  const std::vector<v1::FilingViolation> violations = UsccViolations("91350100I000100Y4");
  ASSERT_EQ(violations.size(), 2u);
  EXPECT_EQ(violations[0].reason(), reason::kUsccLength);
  EXPECT_EQ(violations[1].reason(), reason::kUsccCharacter);
}

TEST(UsccRulesTest, FullWidthDigitsAreCountedAsCharactersAndNamed) {
  // "９" (U+FF19) is 3 bytes: counted as one character, shown as U+FF19.
  const std::vector<v1::FilingViolation> violations = UsccViolations("\uFF191350100M000100Y43");
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_EQ(violations[0].reason(), reason::kUsccCharacter);
  EXPECT_THAT(violations[0].message(), HasSubstr("'U+FF19' at position 1"));
}

TEST(UsccRulesTest, ManyBadCharactersAreListedBriefly) {
  const std::vector<v1::FilingViolation> violations = UsccViolations("IOSVZIOSVZIOSVZIOS");
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_EQ(violations[0].reason(), reason::kUsccCharacter);
  EXPECT_THAT(violations[0].message(), HasSubstr("'Z' at position 5 and 13 more"));
  EXPECT_THAT(violations[0].message(), Not(HasSubstr("position 6")));
  EXPECT_THAT(violations[0].message_zh(), HasSubstr("等 18 处"));
}

TEST(UsccRulesTest, InvalidUtf8IsReportedAlone) {
  const std::vector<v1::FilingViolation> violations =
      UsccViolations(std::string_view("91350100M000100Y4\xFF", 18));
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_EQ(violations[0].reason(), reason::kTextInvalidUtf8);
  EXPECT_THAT(violations[0].message(), HasSubstr("offset 17"));
}

TEST(UsccRulesTest, SurroundingWhiteSpaceIsNotTrimmed) {
  const std::vector<v1::FilingViolation> violations = UsccViolations(" 91350100M000100Y43");
  ASSERT_EQ(violations.size(), 2u);
  EXPECT_EQ(violations[0].reason(), reason::kUsccLength);
  EXPECT_EQ(violations[1].reason(), reason::kUsccCharacter);
  EXPECT_THAT(violations[1].message(), HasSubstr("'U+0020' at position 1"));
}

}  // namespace
}  // namespace stip::intake
