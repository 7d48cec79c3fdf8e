#include "services/intake/filing_validator.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "services/intake/uscc.h"
#include "services/intake/violation_codes.h"
#include "utf8cpp/utf8.h"

namespace stip::intake {

namespace {

// Debian 12's Abseil is built with its own absl::string_view, which std::string_view does
// not convert to; Debian 13's is std::string_view. This spelling compiles against both.
absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// A field's name in both languages. The English one starts a sentence.
struct Label {
  const char* en;
  const char* zh;
};

constexpr Label kUsccLabel{"The USCC", "统一社会信用代码"};
constexpr Label kParkIdLabel{"The park id", "园区标识"};
constexpr Label kFiscalYearLabel{"The fiscal year", "会计年度"};
constexpr Label kGrossRevenueLabel{"Gross revenue", "营业总收入"};
constexpr Label kRdExpenditureLabel{"R&D expenditure", "研发经费支出"};
constexpr Label kTertiaryLabel{"Employees with a tertiary degree", "大专及以上学历职工人数"};
constexpr Label kRdEmployeesLabel{"R&D employees", "研发人员数"};
constexpr Label kProjectIdLabel{"The project id", "项目编号"};
constexpr Label kTitleLabel{"The project title", "项目名称"};
constexpr Label kFieldLabel{"The technology field", "技术领域"};
constexpr Label kStageLabel{"The project stage", "项目阶段"};
constexpr Label kEnterpriseNameLabel{"The enterprise name", "企业名称"};

// At most this many offending characters are named in one message, so that a message stays
// short whatever the sender put in.
constexpr std::size_t kMaxListedCharacters = 5;

class Collector {
 public:
  void Violation(std::string_view reason, std::string field, std::string message,
                 std::string message_zh) {
    v1::FilingViolation& v = result_.violations.emplace_back();
    v.set_reason(std::string(reason));
    v.set_field(std::move(field));
    v.set_message(std::move(message));
    v.set_message_zh(std::move(message_zh));
  }
  void Warning(std::string_view code, std::string field, std::string message,
               std::string message_zh) {
    v1::FilingWarning& w = result_.warnings.emplace_back();
    w.set_code(std::string(code));
    w.set_field(std::move(field));
    w.set_message(std::move(message));
    w.set_message_zh(std::move(message_zh));
  }
  void Required(std::string field, const Label& label) {
    Violation(reason::kFieldRequired, std::move(field), absl::StrCat(label.en, " is required"),
              absl::StrCat(label.zh, "为必填项"));
  }
  ValidationResult Take() && { return std::move(result_); }

 private:
  ValidationResult result_;
};

// What one pass over a string finds. Code point counts and positions are 1-based, as a
// person counts characters.
struct TextScan {
  bool valid_utf8 = true;
  std::size_t invalid_offset = 0;  // Byte offset of the first bad byte, when not valid.
  std::size_t code_points = 0;
  bool blank = true;  // No code point other than white space (or none at all).
  std::optional<std::pair<std::size_t, char32_t>> first_control;  // {position, code point}
};

bool IsWhiteSpace(char32_t c) {
  return c == 0x20 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Characters a one-line text must not hold: see reason::kTextControlCharacter.
bool IsControl(char32_t c) {
  return c <= 0x1F || (c >= 0x7F && c <= 0x9F) || c == 0x2028 || c == 0x2029 ||
         (c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069);
}

TextScan ScanText(std::string_view text) {
  TextScan scan;
  const char* const begin = text.data();
  const char* const end = begin + text.size();
  // utfcpp's find_invalid is strict: it refuses overlong forms, surrogates, code points
  // above U+10FFFF, truncated sequences and stray continuation bytes. Only after it has
  // passed is the unchecked (non-throwing) decoder safe to use.
  const char* const bad = utf8::find_invalid(begin, end);
  if (bad != end) {
    scan.valid_utf8 = false;
    scan.invalid_offset = static_cast<std::size_t>(bad - begin);
    return scan;
  }
  for (const char* it = begin; it != end;) {
    const char32_t c = utf8::unchecked::next(it);
    ++scan.code_points;
    if (!IsWhiteSpace(c)) scan.blank = false;
    if (!scan.first_control && IsControl(c)) scan.first_control = {scan.code_points, c};
  }
  return scan;
}

std::string CodePointName(char32_t c) { return absl::StrFormat("U+%04X", c); }

// A character of an identifier for a message: itself when printable ASCII, else U+XXXX, so
// that a message is always valid UTF-8 and shows what an eye cannot (a full-width digit).
std::string CharacterForMessage(char32_t c) {
  if (c > 0x20 && c < 0x7F) return std::string(1, static_cast<char>(c));
  return CodePointName(c);
}

// Checks a free text (a title, a name): UTF-8, presence, length, control characters.
void CheckText(Collector& out, std::string_view text, const std::string& field, const Label& label,
               bool required, std::size_t max_code_points) {
  const TextScan scan = ScanText(text);
  if (!scan.valid_utf8) {
    out.Violation(reason::kTextInvalidUtf8, field,
                  absl::StrCat(label.en, " is not valid UTF-8 (bad byte at offset ",
                               scan.invalid_offset, ")"),
                  absl::StrCat(label.zh, "不是有效的 UTF-8 编码（字节偏移 ", scan.invalid_offset,
                               " 处有误）"));
    return;
  }
  if (scan.blank) {
    if (required) out.Required(field, label);
    if (scan.code_points == 0) return;
  }
  if (scan.code_points > max_code_points) {
    out.Violation(reason::kTextTooLong, field,
                  absl::StrCat(label.en, " has ", scan.code_points, " characters; at most ",
                               max_code_points, " are allowed"),
                  absl::StrCat(label.zh, "长度为 ", scan.code_points, " 个字符，最多允许 ",
                               max_code_points, " 个"));
  }
  if (scan.first_control) {
    const auto [position, c] = *scan.first_control;
    out.Violation(reason::kTextControlCharacter, field,
                  absl::StrCat(label.en, " contains the control character ", CodePointName(c),
                               " at character ", position),
                  absl::StrCat(label.zh, "第 ", position, " 个字符为控制字符 ", CodePointName(c),
                               "，不允许使用"));
  }
}

struct BadCharacter {
  std::size_t position;
  char32_t c;
};

// "'I' at position 9, 'O' at position 12" / "第 9 位“I”、第 12 位“O”", naming at most
// kMaxListedCharacters of them.
std::pair<std::string, std::string> ListCharacters(const std::vector<BadCharacter>& bad) {
  std::vector<std::string> en;
  std::vector<std::string> zh;
  for (std::size_t i = 0; i < bad.size() && i < kMaxListedCharacters; ++i) {
    const std::string shown = CharacterForMessage(bad[i].c);
    en.push_back(absl::StrCat("'", shown, "' at position ", bad[i].position));
    zh.push_back(absl::StrCat("第 ", bad[i].position, " 位“", shown, "”"));
  }
  std::string list_en = absl::StrJoin(en, ", ");
  std::string list_zh = absl::StrJoin(zh, "、");
  if (bad.size() > kMaxListedCharacters) {
    absl::StrAppend(&list_en, " and ", bad.size() - kMaxListedCharacters, " more");
    absl::StrAppend(&list_zh, "等 ", bad.size(), " 处");
  }
  return {std::move(list_en), std::move(list_zh)};
}

void CheckUscc(Collector& out, std::string_view uscc) {
  const std::string field = "filing.uscc";
  if (uscc.empty()) {
    out.Required(field, kUsccLabel);
    return;
  }
  const TextScan scan = ScanText(uscc);
  if (!scan.valid_utf8) {
    // Without valid UTF-8 there are no characters to count or name.
    out.Violation(
        reason::kTextInvalidUtf8, field,
        absl::StrCat("The USCC is not valid UTF-8 (bad byte at offset ", scan.invalid_offset, ")"),
        absl::StrCat("统一社会信用代码不是有效的 UTF-8 编码（字节偏移 ", scan.invalid_offset,
                     " 处有误）"));
    return;
  }
  if (scan.code_points != kUsccLength) {
    out.Violation(reason::kUsccLength, field,
                  absl::StrCat("The USCC must be 18 characters long; it has ", scan.code_points),
                  absl::StrCat("统一社会信用代码应为 18 位，实际为 ", scan.code_points, " 位"));
  }
  std::vector<BadCharacter> lowercase;
  std::vector<BadCharacter> forbidden;
  std::size_t position = 0;
  for (const char* it = uscc.data(); it != uscc.data() + uscc.size();) {
    const char32_t c = utf8::unchecked::next(it);
    ++position;
    if (c < 0x80 && UsccCharacterValue(static_cast<char>(c)) >= 0) continue;
    // A lowercase letter whose capital is a symbol is a matter of case; 'i', 'o', 's', 'v'
    // and 'z' are forbidden in either case.
    if (c >= 'a' && c <= 'z' && UsccCharacterValue(static_cast<char>(c - 'a' + 'A')) >= 0) {
      lowercase.push_back({position, c});
    } else {
      forbidden.push_back({position, c});
    }
  }
  if (!lowercase.empty()) {
    std::vector<std::string> positions;
    for (std::size_t i = 0; i < lowercase.size() && i < kMaxListedCharacters; ++i) {
      positions.push_back(absl::StrCat(lowercase[i].position));
    }
    std::string listed = absl::StrJoin(positions, ", ");
    std::string listed_zh = absl::StrJoin(positions, "、");
    if (lowercase.size() > kMaxListedCharacters) {
      absl::StrAppend(&listed, ", ...");
      absl::StrAppend(&listed_zh, " 等");
    }
    std::string en =
        absl::StrCat("The USCC must be written in capital letters (lowercase at position",
                     lowercase.size() == 1 ? " " : "s ", listed, ")");
    std::string zh = absl::StrCat("统一社会信用代码须使用大写字母（第 ", listed_zh, " 位为小写）");
    // Naming the capitalised code is only safe, and useful, when that is all that is wrong.
    if (forbidden.empty() && scan.code_points == kUsccLength) {
      const std::string upper = absl::AsciiStrToUpper(AsAbsl(uscc));
      absl::StrAppend(&en, ": ", upper);
      absl::StrAppend(&zh, "，应为 ", upper);
    }
    out.Violation(reason::kUsccLowercase, field, std::move(en), std::move(zh));
  }
  if (!forbidden.empty()) {
    auto [list_en, list_zh] = ListCharacters(forbidden);
    out.Violation(reason::kUsccCharacter, field,
                  absl::StrCat("The USCC may hold only digits and capital letters other than "
                               "I, O, S, V and Z; not allowed: ",
                               list_en),
                  absl::StrCat("统一社会信用代码只能由数字和除 I、O、S、V、Z 以外的大写字母组成；",
                               list_zh, "不允许使用"));
  }
  if (scan.code_points == kUsccLength && lowercase.empty() && forbidden.empty()) {
    const absl::StatusOr<char> expected = UsccCheckCharacter(uscc.substr(0, kUsccLength - 1));
    if (expected.ok() && *expected != uscc.back()) {
      out.Violation(
          reason::kUsccCheckCharacter, field,
          absl::StrCat("The USCC's check character (position 18) is '", AsAbsl(uscc.substr(17)),
                       "' but must be '", std::string(1, *expected),
                       "' for the first 17 characters"),
          absl::StrCat("统一社会信用代码校验码（第 18 位）错误：应为“", std::string(1, *expected),
                       "”，实际为“", AsAbsl(uscc.substr(17)), "”"));
    }
  }
}

// ^[a-z0-9]+(-[a-z0-9]+)*$ without a regex engine.
bool IsSlug(std::string_view s) {
  if (s.empty() || s.front() == '-' || s.back() == '-') return false;
  char previous = 0;
  for (const char c : s) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && !(c == '-' && previous != '-')) return false;
    previous = c;
  }
  return true;
}

// ^[A-Za-z0-9][A-Za-z0-9._-]*$: safe in a log line, a URL path segment, a file name or a
// CSV cell without quoting, and never "." or ".." or an option ("-x").
bool IsProjectId(std::string_view s) {
  if (s.empty() || !absl::ascii_isalnum(static_cast<unsigned char>(s.front()))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

// Checks the park id; returns the park's facts when the park is known.
std::optional<ParkFacts> CheckPark(Collector& out, std::string_view park_id,
                                   const ParkDirectory& parks) {
  const std::string field = "filing.park_id";
  if (park_id.empty()) {
    out.Required(field, kParkIdLabel);
    return std::nullopt;
  }
  if (park_id.size() > kMaxParkIdLength || !IsSlug(park_id)) {
    out.Violation(reason::kParkIdFormat, field,
                  absl::StrCat("The park id must be 1 to ", kMaxParkIdLength,
                               " lowercase letters and digits in groups joined by single "
                               "hyphens, e.g. \"urumqi-hnz\""),
                  absl::StrCat("园区标识须为 1 至 ", kMaxParkIdLength,
                               " 个小写字母和数字，各段以单个连字符连接，例如“urumqi-hnz”"));
    return std::nullopt;
  }
  std::optional<ParkFacts> facts = parks.Find(park_id);
  if (!facts) {
    out.Violation(reason::kParkUnknown, field,
                  absl::StrCat("No park has the id \"", AsAbsl(park_id), "\""),
                  absl::StrCat("园区标识“", AsAbsl(park_id), "”不存在"));
  }
  return facts;
}

void CheckFiscalYear(Collector& out, int fiscal_year, const std::optional<ParkFacts>& park,
                     int current_year) {
  const std::string field = "filing.fiscal_year";
  if (fiscal_year == 0) {
    out.Required(field, kFiscalYearLabel);
    return;
  }
  if (park && park->year_founded > 0 && fiscal_year < park->year_founded) {
    out.Violation(
        reason::kFiscalYearBeforeParkFounded, field,
        absl::StrCat("Fiscal year ", fiscal_year, " is before the park was founded (",
                     park->year_founded, ")"),
        absl::StrCat("会计年度 ", fiscal_year, " 早于园区设立年份（", park->year_founded, " 年）"));
  } else if (fiscal_year < kFirstProgramYear) {
    out.Violation(
        reason::kFiscalYearBeforeProgram, field,
        absl::StrCat("Fiscal year ", fiscal_year, " is before ", kFirstProgramYear,
                     ", when the first park was founded"),
        absl::StrCat("会计年度 ", fiscal_year, " 早于首个园区设立的 ", kFirstProgramYear, " 年"));
  }
  if (fiscal_year > current_year) {
    out.Violation(reason::kFiscalYearInFuture, field,
                  absl::StrCat("Fiscal year ", fiscal_year, " is after the current year (",
                               current_year, ")"),
                  absl::StrCat("会计年度 ", fiscal_year, " 晚于当前年份（", current_year, " 年）"));
  }
}

void CheckRevision(Collector& out, int revision) {
  const std::string field = "filing.revision";
  if (revision == 0) {
    out.Violation(reason::kFieldRequired, field,
                  "The revision is required: 1 for the first filing of a year, higher for a "
                  "correction",
                  "修订版本号为必填项：年度首次申报为 1，更正申报依次递增");
  } else if (revision < 0) {
    out.Violation(reason::kRevisionOutOfRange, field,
                  absl::StrCat("The revision must be 1 or more; it is ", revision),
                  absl::StrCat("修订版本号须大于或等于 1，实际为 ", revision));
  }
}

void CheckMoney(Collector& out, int64_t fen, std::string field, const Label& label) {
  if (fen < 0) {
    out.Violation(reason::kMoneyNegative, std::move(field),
                  absl::StrCat(label.en, " must not be negative; it is ", fen, " fen"),
                  absl::StrCat(label.zh, "不能为负数，实际为 ", fen, " 分"));
  } else if (fen > kMaxMoneyFen) {
    out.Violation(
        reason::kMoneyTooLarge, std::move(field),
        absl::StrCat(label.en, " must be at most ", kMaxMoneyFen, " fen (10^15 CNY); it is ", fen,
                     " fen"),
        absl::StrCat(label.zh, "不能超过 ", kMaxMoneyFen, " 分（10^15 元），实际为 ", fen, " 分"));
  }
}

void CheckHeadcounts(Collector& out, const v1::AnnualFiling& filing) {
  const int total = filing.total_employees();
  if (total < 0) {
    out.Violation(reason::kEmployeesNegative, "filing.total_employees",
                  absl::StrCat("Total employees must not be negative; it is ", total),
                  absl::StrCat("职工总数不能为负数，实际为 ", total));
  } else if (total == 0) {
    out.Violation(reason::kEmployeesZero, "filing.total_employees",
                  "Total employees must be at least 1", "职工总数至少为 1");
  }
  const auto check_part = [&](int count, std::string field, const Label& label) {
    if (count < 0) {
      out.Violation(reason::kEmployeesNegative, std::move(field),
                    absl::StrCat(label.en, " must not be negative; it is ", count),
                    absl::StrCat(label.zh, "不能为负数，实际为 ", count));
    } else if (total >= 0 && count > total) {
      // Measured against a usable total only: a negative total is reported on its own.
      out.Violation(reason::kEmployeesExceedTotal, std::move(field),
                    absl::StrCat(label.en, " (", count, ") exceed total employees (", total, ")"),
                    absl::StrCat(label.zh, "（", count, "）超过职工总数（", total, "）"));
    }
  };
  check_part(filing.tertiary_educated_employees(), "filing.tertiary_educated_employees",
             kTertiaryLabel);
  check_part(filing.rd_employees(), "filing.rd_employees", kRdEmployeesLabel);
}

template <typename IsValid>
void CheckEnum(Collector& out, int value, const std::string& field, const Label& label,
               IsValid is_valid) {
  if (value == 0) {
    out.Required(field, label);
  } else if (!is_valid(value)) {
    out.Violation(reason::kEnumUnknown, field,
                  absl::StrCat(label.en, " has the unknown value ", value),
                  absl::StrCat(label.zh, "的取值 ", value, " 未定义"));
  }
}

void CheckProjects(Collector& out, const v1::AnnualFiling& filing, int max_projects) {
  const std::size_t limit = static_cast<std::size_t>(std::max(max_projects, 0));
  const std::size_t count = static_cast<std::size_t>(filing.projects_size());
  if (count > limit) {
    out.Violation(reason::kProjectsTooMany, "filing.projects",
                  absl::StrCat("A filing may list at most ", limit, " projects; this one lists ",
                               count, " (those past the first ", limit, " were not checked)"),
                  absl::StrCat("每份申报最多填报 ", limit, " 个项目，本申报填报了 ", count,
                               " 个（超出部分未逐项检查）"));
  }
  // Lowercased id -> index of the first project that used it.
  absl::flat_hash_map<std::string, std::size_t> first_use;
  for (std::size_t i = 0; i < std::min(count, limit); ++i) {
    const v1::HiTechProject& project = filing.projects(static_cast<int>(i));
    const std::string prefix = absl::StrCat("filing.projects[", i, "]");

    const std::string id_field = absl::StrCat(prefix, ".project_id");
    const std::string& id = project.project_id();
    if (id.empty()) {
      out.Required(id_field, kProjectIdLabel);
    } else if (id.size() > kMaxProjectIdLength || !IsProjectId(id)) {
      out.Violation(reason::kProjectIdFormat, id_field,
                    absl::StrCat("The project id must be 1 to ", kMaxProjectIdLength,
                                 " ASCII letters, digits, '.', '_' or '-', starting with a "
                                 "letter or a digit"),
                    absl::StrCat("项目编号须为 1 至 ", kMaxProjectIdLength,
                                 " 个 ASCII 字母、数字、“.”、“_”或“-”，并以字母或数字开头"));
    } else {
      // Ignoring case: people type these ids, and "HT-01" beside "ht-01" is one project
      // entered twice far more often than two projects.
      const auto [it, inserted] = first_use.try_emplace(absl::AsciiStrToLower(id), i);
      if (!inserted) {
        out.Violation(reason::kProjectIdDuplicate, id_field,
                      absl::StrCat("The project id \"", id, "\" is already used by ",
                                   "filing.projects[", it->second, "]"),
                      absl::StrCat("项目编号“", id, "”与 filing.projects[", it->second, "] 重复"));
      }
    }

    CheckText(out, project.title(), absl::StrCat(prefix, ".title"), kTitleLabel,
              /*required=*/true, kMaxTitleCodePoints);
    CheckEnum(out, project.field(), absl::StrCat(prefix, ".field"), kFieldLabel,
              [](int v) { return v1::TechnologyField_IsValid(v); });
    CheckEnum(out, project.stage(), absl::StrCat(prefix, ".stage"), kStageLabel,
              [](int v) { return v1::ProjectStage_IsValid(v); });
  }
}

}  // namespace

std::optional<ParkFacts> InMemoryParkDirectory::Find(std::string_view park_id) const {
  const auto it = parks_.find(AsAbsl(park_id));
  if (it == parks_.end()) return std::nullopt;
  return it->second;
}

ValidationOptions ValidationOptions::ForTime(absl::Time now) {
  // China has one time zone and no daylight saving: a fixed offset is exact, and needs no
  // time zone database in the container.
  static const absl::TimeZone kChinaStandardTime = absl::FixedTimeZone(8 * 60 * 60);
  ValidationOptions options;
  options.current_year = static_cast<int>(absl::ToCivilYear(now, kChinaStandardTime).year());
  return options;
}

ValidationResult ValidateFiling(const v1::AnnualFiling& filing, const ParkDirectory& parks,
                                const ValidationOptions& options) {
  // In proto field-number order, so that the violations come out in a stable order.
  Collector out;
  CheckUscc(out, filing.uscc());
  const std::optional<ParkFacts> park = CheckPark(out, filing.park_id(), parks);
  CheckFiscalYear(out, filing.fiscal_year(), park, options.current_year);
  CheckRevision(out, filing.revision());
  CheckMoney(out, filing.gross_revenue_fen(), "filing.gross_revenue_fen", kGrossRevenueLabel);
  CheckMoney(out, filing.rd_expenditure_fen(), "filing.rd_expenditure_fen", kRdExpenditureLabel);
  if (filing.gross_revenue_fen() >= 0 && filing.rd_expenditure_fen() > filing.gross_revenue_fen()) {
    out.Warning(warning::kRdExceedsRevenue, "filing.rd_expenditure_fen",
                absl::StrCat("R&D expenditure (", filing.rd_expenditure_fen(),
                             " fen) exceeds gross revenue (", filing.gross_revenue_fen(),
                             " fen); this is allowed, but check the figures"),
                absl::StrCat("研发经费支出（", filing.rd_expenditure_fen(), " 分）高于营业总收入（",
                             filing.gross_revenue_fen(), " 分）；此情况允许，但请核对数据"));
  }
  CheckHeadcounts(out, filing);
  CheckProjects(out, filing, options.max_projects);
  CheckText(out, filing.enterprise_name(), "filing.enterprise_name", kEnterpriseNameLabel,
            /*required=*/false, kMaxEnterpriseNameCodePoints);
  return std::move(out).Take();
}

}  // namespace stip::intake
