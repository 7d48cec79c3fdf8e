// What stipctl prints on stdout: tables for people, protobuf's JSON mapping and YAML for
// programs, and the formats of money, shares, enums and times in tables.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"

namespace stip::ctl {

enum class OutputFormat { kTable, kJson, kYaml };

// "table", "json", "yaml".
std::optional<OutputFormat> ParseOutputFormat(const std::string& text);

// `message` in protobuf's JSON mapping (lowerCamelCase names, enums by name, int64 as
// strings), indented; one line when `one_line` (JSON Lines).
std::string ToJson(const google::protobuf::Message& message, bool one_line = false);
// The same document as YAML (block style).
std::string ToYaml(const google::protobuf::Message& message);
// Prints `message` as JSON or YAML on `out` (kTable is the caller's own rendering).
void PrintDocument(const google::protobuf::Message& message, OutputFormat format,
                   std::ostream& out);

// A table whose columns are as wide as their widest cell, separated by two spaces, with
// the header in capitals. A small printer of our own: Debian 12 packages no C++ table
// library (libfort, tabulate and friends are not in it), and aligning UTF-8 text in
// columns is forty lines. Widths count code points, so park names in Chinese
// characters are counted one column each (a terminal shows them two wide; the columns
// after them still line up within a column of Chinese names).
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.empty(); }
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// Prints one "Label: value" block, the labels aligned.
void PrintFields(const std::vector<std::pair<std::string, std::string>>& fields, std::ostream& out);

// Fen as yuan with two decimals: 123456 -> "1,234.56", -5 -> "-0.05".
std::string Yuan(int64_t fen);
// Basis points as a percentage with two decimals: 300 -> "3.00%".
std::string Percent(int64_t basis_points);
// An enum value without its type's prefix, e.g. ECONOMIC_REGION_WESTERN -> "WESTERN";
// "-" for the *_UNSPECIFIED value.
std::string EnumName(const google::protobuf::EnumDescriptor* type, int value);
// RFC 3339 in UTC, seconds precision; "-" when unset.
std::string Time(const google::protobuf::Timestamp& timestamp);
// "-" for an empty string.
std::string OrDash(const std::string& text);

// Parses a filter value of an enum flag: the short name in any case ("western"), or the
// full name ("ECONOMIC_REGION_WESTERN"). nullopt when it is no value of `type` (or the
// UNSPECIFIED one).
std::optional<int> ParseEnum(const google::protobuf::EnumDescriptor* type, const std::string& text);
// The accepted short names, lower case, for messages: "eastern, central, western, ...".
std::string EnumChoices(const google::protobuf::EnumDescriptor* type);

}  // namespace stip::ctl
