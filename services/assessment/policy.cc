#include "services/assessment/policy.h"

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <sstream>
#include <system_error>
#include <type_traits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

namespace stip::assessment {
namespace {

constexpr int64_t kMaxBasisPoints = 10000;
// Four-digit years: wide enough for any fiscal year, narrow enough to catch a slip such as
// a threshold pasted where a year belongs.
constexpr int64_t kMinYear = 1000;
constexpr int64_t kMaxYear = 9999;
constexpr absl::string_view kOpen = "open";

constexpr absl::string_view kPolicyKeys[] = {"id",           "version",  "description",
                                             "fiscal_years", "criteria", "region_overrides"};
constexpr absl::string_view kYearsKeys[] = {"from", "to"};
constexpr absl::string_view kCriterionKeys[] = {"metric", "comparison", "threshold_basis_points",
                                                "revenue_bands"};
constexpr absl::string_view kBandKeys[] = {"revenue_up_to_fen", "threshold_basis_points"};
constexpr absl::string_view kOverrideKeys[] = {"region", "criteria"};

constexpr std::pair<absl::string_view, v1::Metric> kMetrics[] = {
    {"RD_INTENSITY", v1::METRIC_RD_INTENSITY},
    {"TERTIARY_SHARE", v1::METRIC_TERTIARY_SHARE},
    {"RD_STAFF_SHARE", v1::METRIC_RD_STAFF_SHARE},
};
constexpr std::pair<absl::string_view, v1::EconomicRegion> kRegions[] = {
    {"EASTERN", v1::ECONOMIC_REGION_EASTERN},
    {"CENTRAL", v1::ECONOMIC_REGION_CENTRAL},
    {"WESTERN", v1::ECONOMIC_REGION_WESTERN},
    {"NORTHEASTERN", v1::ECONOMIC_REGION_NORTHEASTERN},
};

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// " (did you mean \"x\"?)" when `word` is a likely typo of one of `known`: most refused keys
// and names are slips of one or two letters or of case, and naming the fix saves a round.
template <typename Names>
std::string DidYouMean(absl::string_view word, const Names& known) {
  const std::string upper = absl::AsciiStrToUpper(word);
  absl::string_view best;
  size_t best_distance = 3;
  for (const auto& entry : known) {
    absl::string_view name;
    if constexpr (std::is_convertible_v<decltype(entry), absl::string_view>) {
      name = entry;
    } else {
      name = entry.first;
    }
    const size_t distance = EditDistance(upper, absl::AsciiStrToUpper(name));
    if (distance < best_distance) {
      best_distance = distance;
      best = name;
    }
  }
  return best.empty() ? "" : absl::StrCat(" (did you mean \"", best, "\"?)");
}

template <typename Names>
std::string JoinNames(const Names& known) {
  std::vector<absl::string_view> names;
  for (const auto& [name, value] : known) names.push_back(name);
  return absl::StrJoin(names, ", ");
}

std::string Where(absl::string_view file, const YAML::Mark& mark) {
  // yaml-cpp counts from 0; editors and operators count from 1.
  if (mark.line < 0) return std::string{file};
  return absl::StrCat(file, ":", mark.line + 1, ":", mark.column + 1);
}

// The problems found in one file, reported in the order of their lines whatever order the
// checks ran in, each "file:line:column: message".
class Problems {
 public:
  explicit Problems(absl::string_view file) : file_(file) {}

  void Add(const YAML::Mark& mark, absl::string_view message) {
    found_.push_back({mark.line, mark.column, absl::StrCat(Where(file_, mark), ": ", message)});
  }
  int count() const { return static_cast<int>(found_.size()); }

  void AppendTo(std::vector<std::string>* out) {
    std::stable_sort(found_.begin(), found_.end(), [](const Found& a, const Found& b) {
      return std::pair(a.line, a.column) < std::pair(b.line, b.column);
    });
    for (Found& found : found_) out->push_back(std::move(found.message));
    found_.clear();
  }

 private:
  struct Found {
    int line;
    int column;
    std::string message;
  };
  std::string file_;
  std::vector<Found> found_;
};

struct Entry {
  YAML::Node key;
  YAML::Node value;
  std::string name;

  // Where to point at a problem with the value: a null value has no position of its own
  // (yaml-cpp marks it where the next token starts), so point at its key.
  YAML::Mark mark() const { return value.IsNull() ? key.Mark() : value.Mark(); }
};

// A YAML mapping whose keys have been checked against the ones its kind allows.
class Mapping {
 public:
  // Refuses (records a problem for) unknown keys, repeated keys and non-scalar keys; a
  // repeated key would otherwise be silently ignored by yaml-cpp after its first value.
  Mapping(const YAML::Node& node, absl::Span<const absl::string_view> allowed,
          absl::string_view what, Problems& problems)
      : mark_(node.Mark()), what_(what), problems_(problems) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!it->first.IsScalar()) {
        problems.Add(it->first.Mark(), absl::StrCat("keys of ", what, " must be plain names"));
        continue;
      }
      Entry entry{it->first, it->second, it->first.Scalar()};
      if (std::find(allowed.begin(), allowed.end(), entry.name) == allowed.end()) {
        problems.Add(entry.key.Mark(), absl::StrCat("unknown key \"", entry.name, "\" in ", what,
                                                    DidYouMean(entry.name, allowed),
                                                    "; allowed: ", absl::StrJoin(allowed, ", ")));
        continue;
      }
      if (const Entry* first = Find(entry.name); first != nullptr) {
        problems.Add(entry.key.Mark(),
                     absl::StrCat("\"", entry.name, "\" appears twice in ", what,
                                  " (first at line ", first->key.Mark().line + 1, ")"));
        continue;
      }
      entries_.push_back(std::move(entry));
    }
  }

  const Entry* Find(absl::string_view key) const {
    for (const Entry& entry : entries_) {
      if (entry.name == key) return &entry;
    }
    return nullptr;
  }

  // As Find, recording a problem (with `hint`, which says what to write) when it is missing.
  const Entry* Require(absl::string_view key, absl::string_view hint) const {
    const Entry* entry = Find(key);
    if (entry == nullptr) {
      problems_.Add(mark_, absl::StrCat(what_, " has no ", key, ": ", hint));
    }
    return entry;
  }

 private:
  YAML::Mark mark_;
  std::string what_;
  Problems& problems_;
  std::vector<Entry> entries_;
};

// The value of `entry` as a scalar, or nullopt with a problem recorded.
std::optional<std::string> Scalar(const Entry& entry, Problems& problems) {
  if (entry.value.IsScalar()) return entry.value.Scalar();
  problems.Add(entry.mark(), entry.value.IsNull()
                                 ? absl::StrCat(entry.name, " has no value")
                                 : absl::StrCat(entry.name, " must be a single value, not a ",
                                                entry.value.IsMap() ? "mapping" : "list"));
  return std::nullopt;
}

// Plain decimal digits, optionally grouped with '_' ("5_000_000_000") as YAML 1.1 allows,
// since fen amounts are long. No sign, and no leading zero: YAML 1.1 reads "0300" as octal,
// so a reader could not be sure what it means.
std::optional<int64_t> ParseWholeNumber(absl::string_view text) {
  if (text.empty() || text.front() == '_' || text.back() == '_') return std::nullopt;
  if (text.size() > 1 && text.front() == '0') return std::nullopt;
  int64_t value = 0;
  char previous = 0;
  for (char c : text) {
    if (c == '_') {
      if (previous == '_') return std::nullopt;
    } else if (c >= '0' && c <= '9') {
      const int digit = c - '0';
      if (value > (std::numeric_limits<int64_t>::max() - digit) / 10) return std::nullopt;
      value = value * 10 + digit;
    } else {
      return std::nullopt;
    }
    previous = c;
  }
  return value;
}

// A whole number in [min, max]; `range` describes the allowed values for the message.
std::optional<int64_t> Number(const Entry& entry, int64_t min, int64_t max, absl::string_view range,
                              Problems& problems) {
  const std::optional<std::string> text = Scalar(entry, problems);
  if (!text.has_value()) return std::nullopt;
  const std::optional<int64_t> value = ParseWholeNumber(*text);
  if (!value.has_value() || *value < min || *value > max) {
    problems.Add(entry.mark(),
                 absl::StrCat(entry.name, " must be ", range, ", not \"", *text, "\""));
    return std::nullopt;
  }
  return value;
}

std::optional<int32_t> BasisPoints(const Entry& entry, Problems& problems) {
  const std::optional<int64_t> value =
      Number(entry, 0, kMaxBasisPoints,
             "a whole number of basis points from 0 to 10000 (300 is 3.00%)", problems);
  if (!value.has_value()) return std::nullopt;
  return static_cast<int32_t>(*value);
}

// A sequence with at least one item, or nullopt with a problem recorded.
std::optional<YAML::Node> List(const Entry& entry, absl::string_view items, Problems& problems) {
  if (!entry.value.IsSequence() || entry.value.size() == 0) {
    problems.Add(entry.mark(), absl::StrCat(entry.name, " must be a list of one or more ", items));
    return std::nullopt;
  }
  return entry.value;
}

bool IsMapping(const YAML::Node& node, absl::string_view what, Problems& problems) {
  if (node.IsMap()) return true;
  problems.Add(node.Mark(), absl::StrCat(what, " must be a mapping of keys to values"));
  return false;
}

template <typename Enum, size_t N>
std::optional<Enum> Named(const Entry& entry, const std::pair<absl::string_view, Enum> (&known)[N],
                          Problems& problems) {
  const std::optional<std::string> text = Scalar(entry, problems);
  if (!text.has_value()) return std::nullopt;
  for (const auto& [name, value] : known) {
    if (name == *text) return value;
  }
  problems.Add(entry.mark(), absl::StrCat("unknown ", entry.name, " \"", *text, "\"",
                                          DidYouMean(*text, known), "; known: ", JoinNames(known)));
  return std::nullopt;
}

std::optional<v1::Comparison> ParseComparison(const Entry& entry, Problems& problems) {
  const std::optional<std::string> text = Scalar(entry, problems);
  if (!text.has_value()) return std::nullopt;
  if (*text == ">=") return v1::COMPARISON_GREATER_OR_EQUAL;
  if (*text == ">") return v1::COMPARISON_GREATER;
  // An unquoted '>' starts a YAML folded block and reads as an empty string.
  problems.Add(entry.mark(),
               absl::StrCat("comparison must be \">=\" or \">\", in quotes, not \"", *text, "\""));
  return std::nullopt;
}

std::optional<std::vector<v1::RevenueBand>> ParseBands(const Entry& entry, Problems& problems) {
  const std::optional<YAML::Node> list = List(entry, "revenue bands", problems);
  if (!list.has_value()) return std::nullopt;
  const int problems_before = problems.count();
  std::vector<v1::RevenueBand> bands;
  int64_t previous_bound = 0;
  int previous_line = 0;
  for (size_t i = 0; i < list->size(); ++i) {
    const YAML::Node node = (*list)[i];
    if (!IsMapping(node, "a revenue band", problems)) continue;
    const bool last = i + 1 == list->size();
    const Mapping band(node, kBandKeys, "a revenue band", problems);
    v1::RevenueBand parsed;
    if (const Entry* e = band.Require("threshold_basis_points",
                                      "the threshold for revenue in this band, e.g. 500 (5.00%)");
        e != nullptr) {
      if (std::optional<int32_t> bp = BasisPoints(*e, problems)) {
        parsed.set_threshold_basis_points(*bp);
      }
    }
    const Entry* bound = band.Require(
        "revenue_up_to_fen", "the band's inclusive upper bound in fen, or open for the last band");
    if (bound != nullptr) {
      const std::optional<std::string> text = Scalar(*bound, problems);
      if (text == kOpen) {
        if (!last) {
          problems.Add(bound->mark(), "only the last revenue band may be open");
        }
      } else if (text.has_value()) {
        const std::optional<int64_t> up_to = Number(
            *bound, 1, std::numeric_limits<int64_t>::max(),
            "an amount of fen from 1 to 9223372036854775807, or open for the last band", problems);
        if (up_to.has_value()) {
          if (last) {
            problems.Add(bound->mark(),
                         "the last revenue band must be open (revenue_up_to_fen: open), so that "
                         "every revenue has a threshold");
          } else if (*up_to <= previous_bound) {
            problems.Add(bound->mark(),
                         absl::StrCat("revenue bands must be in ascending order of revenue: ",
                                      *up_to, " fen is not above ", previous_bound,
                                      " fen of the band at line ", previous_line));
          }
          parsed.set_revenue_up_to_fen(*up_to);
          previous_bound = std::max(previous_bound, *up_to);
          previous_line = bound->key.Mark().line + 1;
        }
      }
    }
    bands.push_back(parsed);
  }
  if (problems.count() != problems_before) return std::nullopt;
  return bands;
}

std::optional<v1::Criterion> ParseCriterion(const YAML::Node& node, Problems& problems) {
  if (!IsMapping(node, "a criterion", problems)) return std::nullopt;
  const int problems_before = problems.count();
  const Mapping criterion(node, kCriterionKeys, "a criterion", problems);
  v1::Criterion parsed;
  if (const Entry* e = criterion.Require("metric", absl::StrCat("one of ", JoinNames(kMetrics)));
      e != nullptr) {
    if (std::optional<v1::Metric> metric = Named(*e, kMetrics, problems)) {
      parsed.set_metric(*metric);
    }
  }
  // Required even though ">=" is the usual rule: whether a filing exactly at the threshold
  // passes is the regulator's call and must be visible in the file.
  if (const Entry* e = criterion.Require(
          "comparison", "write comparison: \">=\" or comparison: \">\" (in quotes)");
      e != nullptr) {
    if (std::optional<v1::Comparison> comparison = ParseComparison(*e, problems)) {
      parsed.set_comparison(*comparison);
    }
  }
  const Entry* threshold = criterion.Find("threshold_basis_points");
  const Entry* bands = criterion.Find("revenue_bands");
  if (threshold != nullptr && bands != nullptr) {
    problems.Add(bands->key.Mark(),
                 "a criterion has threshold_basis_points or revenue_bands, not both");
  } else if (threshold != nullptr) {
    if (std::optional<int32_t> bp = BasisPoints(*threshold, problems)) {
      parsed.set_threshold_basis_points(*bp);
    }
  } else if (bands != nullptr) {
    if (parsed.metric() != v1::METRIC_RD_INTENSITY && parsed.metric() != v1::METRIC_UNSPECIFIED) {
      problems.Add(bands->key.Mark(), "revenue_bands apply to metric RD_INTENSITY only");
    } else if (std::optional<std::vector<v1::RevenueBand>> parsed_bands =
                   ParseBands(*bands, problems)) {
      for (v1::RevenueBand& band : *parsed_bands) *parsed.add_revenue_bands() = std::move(band);
    }
  } else {
    problems.Add(node.Mark(),
                 "a criterion has no threshold_basis_points (e.g. 300 for 3.00%) and no "
                 "revenue_bands");
  }
  if (problems.count() != problems_before) return std::nullopt;
  return parsed;
}

// Criteria of one list (the policy's or a region override's); a metric may appear once.
std::optional<std::vector<v1::Criterion>> ParseCriteria(const Entry& entry, Problems& problems) {
  const std::optional<YAML::Node> list = List(entry, "criteria", problems);
  if (!list.has_value()) return std::nullopt;
  const int problems_before = problems.count();
  std::vector<v1::Criterion> criteria;
  std::vector<int> lines;
  for (const YAML::Node& node : *list) {
    std::optional<v1::Criterion> criterion = ParseCriterion(node, problems);
    if (!criterion.has_value()) continue;
    for (size_t i = 0; i < criteria.size(); ++i) {
      if (criteria[i].metric() == criterion->metric()) {
        problems.Add(node.Mark(), absl::StrCat("metric ", v1::Metric_Name(criterion->metric()),
                                               " appears twice in one criteria list (first at "
                                               "line ",
                                               lines[i], ")"));
      }
    }
    criteria.push_back(*std::move(criterion));
    lines.push_back(node.Mark().line + 1);
  }
  if (problems.count() != problems_before) return std::nullopt;
  return criteria;
}

std::optional<v1::RegionOverride> ParseOverride(const YAML::Node& node, Problems& problems) {
  if (!IsMapping(node, "a region override", problems)) return std::nullopt;
  const int problems_before = problems.count();
  const Mapping mapping(node, kOverrideKeys, "a region override", problems);
  v1::RegionOverride parsed;
  if (const Entry* e = mapping.Require("region", absl::StrCat("one of ", JoinNames(kRegions)));
      e != nullptr) {
    if (std::optional<v1::EconomicRegion> region = Named(*e, kRegions, problems)) {
      parsed.set_region(*region);
    }
  }
  if (const Entry* e =
          mapping.Require("criteria", "the criteria that replace the policy's for this region");
      e != nullptr) {
    if (std::optional<std::vector<v1::Criterion>> criteria = ParseCriteria(*e, problems)) {
      for (v1::Criterion& c : *criteria) *parsed.add_criteria() = std::move(c);
    }
  }
  if (problems.count() != problems_before) return std::nullopt;
  return parsed;
}

bool IsSlug(absl::string_view id) {
  if (id.empty() || id.size() > 63 || id.front() == '-' || id.back() == '-') return false;
  for (size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && id[i - 1] != '-');
    if (!ok) return false;
  }
  return true;
}

// A parsed policy and where its parts are, for refusals that involve two files.
struct ParsedPolicy {
  v1::Policy policy;
  std::string years_where;
  std::string id_where;
};

void ParseYears(const Entry& entry, v1::Policy& policy, Problems& problems) {
  if (!IsMapping(entry.value, "fiscal_years", problems)) return;
  const Mapping years(entry.value, kYearsKeys, "fiscal_years", problems);
  std::optional<int64_t> from;
  if (const Entry* e = years.Require("from", "the first fiscal year the policy applies to");
      e != nullptr) {
    from = Number(*e, kMinYear, kMaxYear, "a four-digit year", problems);
    if (from.has_value()) policy.set_first_fiscal_year(static_cast<int32_t>(*from));
  }
  // Required, like the comparison: an open end must be a decision, not an omission.
  const Entry* to = years.Require("to", "the last fiscal year it applies to, or open");
  if (to == nullptr) return;
  const std::optional<std::string> text = Scalar(*to, problems);
  if (!text.has_value() || *text == kOpen) return;
  const std::optional<int64_t> last =
      Number(*to, kMinYear, kMaxYear, "a four-digit year or open", problems);
  if (!last.has_value()) return;
  if (from.has_value() && *last < *from) {
    problems.Add(to->mark(), absl::StrCat("fiscal_years to ", *last, " is before from ", *from));
    return;
  }
  policy.set_last_fiscal_year(static_cast<int32_t>(*last));
}

// Where the stream's second document starts (the mark of its root node), if it has one.
// Reads at most two documents: yaml-cpp 0.7 (Debian 12) reads some malformed streams (a
// lone ",") as endless empty documents, on which YAML::LoadAll loops forever, allocating
// (jbeder/yaml-cpp#1319). As the fixed LoadAll does, an empty document ends the stream.
class SecondDocumentFinder final : public YAML::EventHandler {
 public:
  std::optional<YAML::Mark> Find(const std::string& yaml) {
    std::istringstream input(yaml);
    YAML::Parser parser(input);
    if (!parser.HandleNextDocument(*this)) return std::nullopt;
    root_.reset();
    if (!parser.HandleNextDocument(*this)) return std::nullopt;
    return root_;
  }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { Content(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Content(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Content(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Content(mark);
  }
  void OnMapEnd() override {}

 private:
  void Content(const YAML::Mark& mark) {
    if (!root_.has_value()) root_ = mark;
  }
  std::optional<YAML::Mark> root_;
};

std::optional<ParsedPolicy> ParseFile(const PolicySource& source, Problems& problems) {
  YAML::Node root;
  std::optional<YAML::Mark> second;
  try {
    // The first document, then only whether there is a second: never YAML::LoadAll, which
    // can loop forever on a malformed file (SecondDocumentFinder).
    root = YAML::Load(source.yaml);
    second = SecondDocumentFinder().Find(source.yaml);
  } catch (const YAML::Exception& e) {
    std::string message = absl::StrCat("YAML syntax: ", e.msg);
    if (message.find("block scalar") != std::string::npos) {
      absl::StrAppend(&message, " (put comparisons in quotes: comparison: \">=\")");
    }
    problems.Add(e.mark, message);
    return std::nullopt;
  }
  if (root.IsNull()) {
    problems.Add(YAML::Mark::null_mark(), "the file is empty; a policy file holds one policy");
    return std::nullopt;
  }
  if (second.has_value()) {
    problems.Add(*second,
                 "a policy file holds one policy (one YAML document); put this one in a file "
                 "of its own");
    return std::nullopt;
  }
  if (!IsMapping(root, "a policy file", problems)) return std::nullopt;

  ParsedPolicy parsed;
  v1::Policy& policy = parsed.policy;
  policy.set_source_file(source.file);
  const Mapping mapping(root, kPolicyKeys, "the policy", problems);
  if (const Entry* e = mapping.Require("id", "a lowercase name such as stip-default");
      e != nullptr) {
    parsed.id_where = Where(source.file, e->key.Mark());
    if (std::optional<std::string> id = Scalar(*e, problems)) {
      if (IsSlug(*id)) {
        policy.set_policy_id(*id);
      } else {
        problems.Add(e->mark(), absl::StrCat("id must be lowercase letters, digits and single "
                                             "hyphens (at most 63), not \"",
                                             *id, "\""));
      }
    }
  }
  if (const Entry* e = mapping.Require("version", "a whole number, 1 for a policy's first");
      e != nullptr) {
    if (std::optional<int64_t> version = Number(*e, 1, std::numeric_limits<int32_t>::max(),
                                                "a whole number, 1 or more", problems)) {
      policy.set_version(static_cast<int32_t>(*version));
    }
  }
  if (const Entry* e = mapping.Find("description"); e != nullptr) {
    if (std::optional<std::string> description = Scalar(*e, problems)) {
      policy.set_description(*description);
    }
  }
  if (const Entry* e = mapping.Require("fiscal_years", "from: <year> and to: <year> or open");
      e != nullptr) {
    parsed.years_where = Where(source.file, e->key.Mark());
    ParseYears(*e, policy, problems);
  }
  if (const Entry* e = mapping.Require("criteria", "a list of criteria"); e != nullptr) {
    if (std::optional<std::vector<v1::Criterion>> criteria = ParseCriteria(*e, problems)) {
      for (v1::Criterion& c : *criteria) *policy.add_criteria() = std::move(c);
    }
  }
  if (const Entry* e = mapping.Find("region_overrides"); e != nullptr) {
    if (std::optional<YAML::Node> list = List(*e, "region overrides", problems)) {
      std::vector<int> lines;
      for (const YAML::Node& node : *list) {
        std::optional<v1::RegionOverride> region_override = ParseOverride(node, problems);
        if (!region_override.has_value()) continue;
        for (int i = 0; i < policy.region_overrides_size(); ++i) {
          if (policy.region_overrides(i).region() == region_override->region()) {
            problems.Add(node.Mark(),
                         absl::StrCat("region ", v1::EconomicRegion_Name(region_override->region()),
                                      " is overridden twice (first at line ", lines[i], ")"));
          }
        }
        *policy.add_region_overrides() = *std::move(region_override);
        lines.push_back(node.Mark().line + 1);
      }
    }
  }
  if (problems.count() != 0) return std::nullopt;
  return parsed;
}

std::optional<ParsedPolicy> ParsePolicy(const PolicySource& source, std::vector<std::string>* out) {
  Problems problems(source.file);
  std::optional<ParsedPolicy> parsed = ParseFile(source, problems);
  problems.AppendTo(out);
  return parsed;
}

std::string Years(const v1::Policy& policy) {
  return absl::StrCat(
      policy.first_fiscal_year(), " to ",
      policy.has_last_fiscal_year() ? absl::StrCat(policy.last_fiscal_year()) : std::string{kOpen});
}

bool Overlap(const v1::Policy& a, const v1::Policy& b) {
  constexpr int64_t kForever = std::numeric_limits<int64_t>::max();
  const int64_t a_last = a.has_last_fiscal_year() ? a.last_fiscal_year() : kForever;
  const int64_t b_last = b.has_last_fiscal_year() ? b.last_fiscal_year() : kForever;
  return a.first_fiscal_year() <= b_last && b.first_fiscal_year() <= a_last;
}

// Problems between policies of different files: each fiscal year has one policy in force,
// and an id and version name one policy.
void CheckSet(const std::vector<ParsedPolicy>& parsed, std::vector<std::string>* out) {
  for (size_t i = 0; i < parsed.size(); ++i) {
    for (size_t j = i + 1; j < parsed.size(); ++j) {
      const v1::Policy& a = parsed[i].policy;
      const v1::Policy& b = parsed[j].policy;
      if (a.policy_id() == b.policy_id() && a.version() == b.version()) {
        out->push_back(absl::StrCat(parsed[j].id_where, ": policy ", b.policy_id(), " version ",
                                    b.version(), " is also defined in ", parsed[i].id_where,
                                    "; give the newer one a higher version"));
      }
      if (Overlap(a, b)) {
        out->push_back(absl::StrCat(
            parsed[j].years_where, ": fiscal years ", Years(b), " of policy ", b.policy_id(),
            " version ", b.version(), " overlap fiscal years ", Years(a), " of policy ",
            a.policy_id(), " version ", a.version(), " in ", parsed[i].years_where,
            "; each fiscal year must have exactly one policy in force"));
      }
    }
  }
}

std::string Refusal(absl::string_view what, const std::vector<std::string>& problems) {
  return absl::StrCat("policy set ", what, " refused (", problems.size(),
                      problems.size() == 1 ? " problem" : " problems", "):\n  ",
                      absl::StrJoin(problems, "\n  "));
}

// The policies of `sources`, checked, in the order of their fiscal years; or every problem.
absl::StatusOr<std::vector<v1::Policy>> CheckedPolicies(absl::string_view what,
                                                        const std::vector<PolicySource>& sources) {
  if (sources.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("policy set ", what,
                     " holds no policy files (*.yaml); without a policy nothing can be decided"));
  }
  std::vector<std::string> problems;
  std::vector<ParsedPolicy> parsed;
  for (const PolicySource& source : sources) {
    if (std::optional<ParsedPolicy> policy = ParsePolicy(source, &problems)) {
      parsed.push_back(*std::move(policy));
    }
  }
  // Cross-file checks only between policies that parsed: a file with problems already
  // stops start-up, and its half-read years would give misleading overlaps.
  CheckSet(parsed, &problems);
  if (!problems.empty()) return absl::InvalidArgumentError(Refusal(what, problems));

  std::sort(parsed.begin(), parsed.end(), [](const ParsedPolicy& a, const ParsedPolicy& b) {
    return a.policy.first_fiscal_year() < b.policy.first_fiscal_year();
  });
  std::vector<v1::Policy> policies;
  policies.reserve(parsed.size());
  for (ParsedPolicy& p : parsed) policies.push_back(std::move(p.policy));
  return policies;
}

}  // namespace

std::vector<v1::Criterion> EffectiveCriteria(const v1::Policy& policy, v1::EconomicRegion region) {
  std::vector<v1::Criterion> criteria(policy.criteria().begin(), policy.criteria().end());
  for (const v1::RegionOverride& region_override : policy.region_overrides()) {
    if (region == v1::ECONOMIC_REGION_UNSPECIFIED || region_override.region() != region) {
      continue;
    }
    for (const v1::Criterion& replacement : region_override.criteria()) {
      auto same_metric = std::find_if(criteria.begin(), criteria.end(), [&](const auto& c) {
        return c.metric() == replacement.metric();
      });
      if (same_metric != criteria.end()) {
        *same_metric = replacement;
      } else {
        criteria.push_back(replacement);
      }
    }
  }
  return criteria;
}

absl::StatusOr<PolicySet> PolicySet::Load(const std::filesystem::path& directory) {
  std::error_code error;
  if (!std::filesystem::is_directory(directory, error)) {
    return absl::NotFoundError(
        absl::StrCat("policy set ", directory.string(), " is not a directory"));
  }
  std::vector<std::filesystem::path> files;
  for (const auto& item : std::filesystem::directory_iterator(directory, error)) {
    const std::filesystem::path& path = item.path();
    const std::string name = path.filename().string();
    const std::string extension = path.extension().string();
    if (name.front() == '.' || (extension != ".yaml" && extension != ".yml")) continue;
    if (!item.is_regular_file(error)) continue;
    files.push_back(path);
  }
  if (error) {
    return absl::InvalidArgumentError(
        absl::StrCat("policy set ", directory.string(), " cannot be read: ", error.message()));
  }
  // Sorted, so that refusals come in the same order on every machine.
  std::sort(files.begin(), files.end());
  std::vector<PolicySource> sources;
  std::vector<std::string> problems;
  for (const std::filesystem::path& path : files) {
    std::ifstream in(path, std::ios::binary);
    std::string text;
    if (in) text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!in.is_open() || in.bad()) {
      problems.push_back(absl::StrCat(
          path.string(), ": cannot be read: ", std::generic_category().message(errno)));
      continue;
    }
    sources.push_back({path.string(), std::move(text)});
  }
  if (!problems.empty()) return absl::InvalidArgumentError(Refusal(directory.string(), problems));
  absl::StatusOr<std::vector<v1::Policy>> policies = CheckedPolicies(directory.string(), sources);
  if (!policies.ok()) return policies.status();
  return PolicySet(*std::move(policies));
}

absl::StatusOr<PolicySet> PolicySet::Parse(const std::vector<PolicySource>& sources) {
  absl::StatusOr<std::vector<v1::Policy>> policies = CheckedPolicies("(from memory)", sources);
  if (!policies.ok()) return policies.status();
  return PolicySet(*std::move(policies));
}

PolicySet::PolicySet(std::vector<v1::Policy> policies) : policies_(std::move(policies)) {
  effective_.resize(policies_.size());
  for (size_t i = 0; i < policies_.size(); ++i) {
    for (size_t region = 0; region < effective_[i].size(); ++region) {
      effective_[i][region] =
          EffectiveCriteria(policies_[i], static_cast<v1::EconomicRegion>(region));
    }
  }
}

absl::StatusOr<PolicyInForce> PolicySet::Select(int32_t fiscal_year,
                                                v1::EconomicRegion region) const {
  const auto region_index = static_cast<size_t>(region);
  if (region < 0 || region_index >= CriteriaByRegion().size()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown economic region ", region));
  }
  for (size_t i = 0; i < policies_.size(); ++i) {
    const v1::Policy& policy = policies_[i];
    if (policy.first_fiscal_year() <= fiscal_year &&
        (!policy.has_last_fiscal_year() || fiscal_year <= policy.last_fiscal_year())) {
      return PolicyInForce{&policy, effective_[i][region_index]};
    }
  }
  return absl::NotFoundError(absl::StrCat("no policy is in force for fiscal year ", fiscal_year));
}

absl::StatusOr<const v1::Policy*> PolicySet::Get(std::string_view id, int32_t version) const {
  const absl::string_view policy_id(id.data(), id.size());
  const v1::Policy* found = nullptr;
  for (const v1::Policy& policy : policies_) {
    if (policy.policy_id() != policy_id) continue;
    if (version == 0 ? found == nullptr || policy.version() > found->version()
                     : policy.version() == version) {
      found = &policy;
    }
  }
  if (found == nullptr) {
    return absl::NotFoundError(version == 0
                                   ? absl::StrCat("no policy ", policy_id)
                                   : absl::StrCat("no policy ", policy_id, " version ", version));
  }
  return found;
}

}  // namespace stip::assessment
