#include "bench/pipeline_load/report.h"

#include <algorithm>
#include <chrono>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace stip::bench::load {
namespace {

const Clock::time_point kEpoch = Clock::now();

}  // namespace

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - kEpoch).count() + 1;
}
Clock::time_point FromNs(int64_t ns) { return kEpoch + std::chrono::nanoseconds(ns - 1); }

std::string Num(double v) { return absl::StrFormat("%.3f", v); }
std::string PercentilesJson(const Percentiles& p, std::string_view prefix) {
  return absl::StrFormat(
      "\"%1$sp50_ms\":%2$s,\"%1$sp99_ms\":%3$s,\"%1$sp999_ms\":%4$s,\"%1$smax_ms\":%5$s", prefix,
      Num(p.p50_ms), Num(p.p99_ms), Num(p.p999_ms), Num(p.max_ms));
}
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", static_cast<int>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

void WriteJson(const std::string& path, const std::string& json) {
  if (path.empty()) return;
  std::ofstream out(path);
  out << json << "\n";
  if (!out) Die(absl::StrCat("--json: cannot write ", path));
}

std::vector<double> ParseRates(const std::string& text) {
  std::vector<double> rates;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    double rate = 0;
    if (!absl::SimpleAtod(part, &rate) || !(rate > 0)) {
      Die(absl::StrCat("--rates: \"", text, "\" is not a list of positive rates, e.g. 100,500"));
    }
    rates.push_back(rate);
  }
  if (rates.empty()) Die("--rates: at least one rate is needed");
  return rates;
}

}  // namespace stip::bench::load
