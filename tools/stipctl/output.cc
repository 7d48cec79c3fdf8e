#include "tools/stipctl/output.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "yaml-cpp/yaml.h"

namespace stip::ctl {
namespace {

// The prefix every value of an enum type carries, by the style guide: "ECONOMIC_REGION_".
std::string EnumPrefix(const google::protobuf::EnumDescriptor* type) {
  for (int i = 0; i < type->value_count(); ++i) {
    const std::string& name = type->value(i)->name();
    if (absl::EndsWith(name, "_UNSPECIFIED")) {
      return name.substr(0, name.size() - std::string("UNSPECIFIED").size());
    }
  }
  return "";
}

size_t DisplayWidth(const std::string& text) {
  size_t width = 0;
  for (unsigned char c : text) {
    if ((c & 0xC0) != 0x80) ++width;  // count lead bytes only: one per code point
  }
  return width;
}

void SetBlockStyle(YAML::Node node) {
  if (node.IsMap() || node.IsSequence()) {
    node.SetStyle(YAML::EmitterStyle::Block);
    if (node.IsMap()) {
      for (auto entry : node) SetBlockStyle(entry.second);
    } else {
      for (auto entry : node) SetBlockStyle(entry);
    }
  }
}

}  // namespace

std::optional<OutputFormat> ParseOutputFormat(const std::string& text) {
  if (text == "table") return OutputFormat::kTable;
  if (text == "json") return OutputFormat::kJson;
  if (text == "yaml") return OutputFormat::kYaml;
  return std::nullopt;
}

std::string ToJson(const google::protobuf::Message& message, bool one_line) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = !one_line;
  std::string json;
  // Only fails for messages with Any fields of unknown types, which the API has none of.
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!one_line && !json.empty() && json.back() == '\n') json.pop_back();
  return json;
}

std::string ToYaml(const google::protobuf::Message& message) {
  // JSON is YAML: load the JSON mapping and emit it in block style, so that YAML and JSON
  // name every field the same way.
  YAML::Node node = YAML::Load(ToJson(message, true));
  SetBlockStyle(node);
  YAML::Emitter emitter;
  emitter << node;
  return emitter.c_str();
}

void PrintDocument(const google::protobuf::Message& message, OutputFormat format,
                   std::ostream& out) {
  if (format == OutputFormat::kYaml) {
    out << ToYaml(message) << "\n";
  } else {
    out << ToJson(message) << "\n";
  }
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths(header_.size(), 0);
  auto measure = [&widths](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], DisplayWidth(row[i]));
    }
  };
  measure(header_);
  for (const auto& row : rows_) measure(row);
  auto print = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - DisplayWidth(row[i]) + 2, ' ');
    }
    out << line << "\n";
  };
  std::vector<std::string> header;
  for (const std::string& name : header_) header.push_back(absl::AsciiStrToUpper(name));
  print(header);
  for (const auto& row : rows_) print(row);
}

void PrintFields(const std::vector<std::pair<std::string, std::string>>& fields,
                 std::ostream& out) {
  size_t width = 0;
  for (const auto& [label, value] : fields) width = std::max(width, DisplayWidth(label));
  for (const auto& [label, value] : fields) {
    out << label << ":" << std::string(width - DisplayWidth(label) + 1, ' ') << value << "\n";
  }
}

std::string Yuan(int64_t fen) {
  const bool negative = fen < 0;
  // Through uint64 so that INT64_MIN has a magnitude.
  const uint64_t magnitude =
      negative ? static_cast<uint64_t>(-(fen + 1)) + 1 : static_cast<uint64_t>(fen);
  std::string whole = absl::StrCat(magnitude / 100);
  std::string grouped;
  for (size_t i = 0; i < whole.size(); ++i) {
    if (i > 0 && (whole.size() - i) % 3 == 0) grouped.push_back(',');
    grouped.push_back(whole[i]);
  }
  return absl::StrFormat("%s%s.%02d", negative ? "-" : "", grouped,
                         static_cast<int>(magnitude % 100));
}

std::string Percent(int64_t basis_points) {
  const bool negative = basis_points < 0;
  const int64_t magnitude = negative ? -basis_points : basis_points;
  return absl::StrFormat("%s%d.%02d%%", negative ? "-" : "", magnitude / 100, magnitude % 100);
}

std::string EnumName(const google::protobuf::EnumDescriptor* type, int value) {
  const google::protobuf::EnumValueDescriptor* descriptor = type->FindValueByNumber(value);
  if (descriptor == nullptr) return absl::StrCat(value);
  if (absl::EndsWith(descriptor->name(), "_UNSPECIFIED")) return "-";
  const std::string prefix = EnumPrefix(type);
  return absl::StartsWith(descriptor->name(), prefix) ? descriptor->name().substr(prefix.size())
                                                      : descriptor->name();
}

std::string Time(const google::protobuf::Timestamp& timestamp) {
  if (timestamp.seconds() == 0 && timestamp.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(timestamp.seconds()),
                          absl::UTCTimeZone());
}

std::string OrDash(const std::string& text) { return text.empty() ? "-" : text; }

std::optional<int> ParseEnum(const google::protobuf::EnumDescriptor* type,
                             const std::string& text) {
  std::string upper = absl::AsciiStrToUpper(text);
  std::replace(upper.begin(), upper.end(), '-', '_');
  const std::string prefix = EnumPrefix(type);
  const google::protobuf::EnumValueDescriptor* value = type->FindValueByName(upper);
  if (value == nullptr) value = type->FindValueByName(prefix + upper);
  if (value == nullptr || value->number() == 0) return std::nullopt;
  return value->number();
}

std::string EnumChoices(const google::protobuf::EnumDescriptor* type) {
  std::vector<std::string> names;
  for (int i = 0; i < type->value_count(); ++i) {
    if (type->value(i)->number() == 0) continue;
    names.push_back(absl::AsciiStrToLower(EnumName(type, type->value(i)->number())));
  }
  return absl::StrJoin(names, ", ");
}

}  // namespace stip::ctl
