// stip-sample-year: writes a deterministic year of enrolments, filings and corrected filings
// for five named parks (sample_year.h). This file only parses the command line.
// Exit codes: 0 written, 1 the files could not be written, 2 usage.
#include <cstdint>
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "tools/sample_year/sample_year.h"

namespace stip::sample_year {
namespace {

int Main(int argc, char** argv) {
  Options options;
  std::string out;
  CLI::App app{
      "stip-sample-year: a deterministic year of sample data for the STIP register.\n"
      "Writes into --out:\n"
      "  enterprises.ndjson  one stip.v1.EnrollEnterpriseRequest per line (JSON mapping)\n"
      "  filings.ndjson      one stip.v1.AnnualFiling per line, revision 1: about 97% of the\n"
      "                      enterprises file, about 1% of the filings are invalid (intake\n"
      "                      refuses them; nothing in the file marks them)\n"
      "  amendments.ndjson   revision-2 filings for about 3% of the enterprises, a third of\n"
      "                      them turning a decision to QUALIFIED and a third away from it\n"
      "  summary.json        per park: the counts and the qualified share expected under the\n"
      "                      default rules (basis points); also printed to stdout\n"
      "Parks: urumqi-hnz 679 enterprises (51 foreign-invested, 147 qualified), kunming-hnz 878\n"
      "(121), zhongguancun 4000 (45%), wuhan-east-lake 600 (30%), changchun-hnz 450 (24%).\n"
      "The same flags always give byte-identical files.",
      "stip-sample-year"};
  app.footer(
      "Example:\n"
      "  stip-sample-year --out /tmp/sample-2024 --year 2024 --seed 1\n"
      "  stip-sample-year --out /tmp/small --scale 0.05   # about 330 enterprises, for tests");
  app.add_option("--out", out, "The folder to write (created if missing; files are replaced)")
      ->required();
  app.add_option("--year", options.fiscal_year, "The fiscal year filed for (1992-9999)")
      ->capture_default_str();
  app.add_option("--seed", options.seed, "The random seed; the same seed, the same files")
      ->capture_default_str();
  app.add_option("--scale", options.scale,
                 "Multiplies every park's enterprise count, e.g. 0.05 for a quick test (0-100]")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "stip-sample-year: " << e.what() << "\nRun with --help for the usage.\n";
    return 2;
  }

  const absl::StatusOr<SampleYear> sample = Generate(options);
  if (!sample.ok()) {
    std::cerr << "stip-sample-year: " << sample.status().message() << "\n";
    return 2;
  }
  if (const absl::Status written = WriteSampleYear(options, *sample, out); !written.ok()) {
    std::cerr << "stip-sample-year: " << written.message() << "\n";
    return 1;
  }
  std::cout << absl::StrFormat("%-16s %11s %7s %7s %7s %10s %9s %9s %9s\n", "park", "enterprises",
                               "foreign", "filings", "invalid", "amendments", "qualified", "share",
                               "target");
  for (const ParkSummary& park : sample->parks) {
    std::cout << absl::StrFormat(
        "%-16s %11d %7d %7d %7d %10d %9d %8.2f%% %8.2f%%\n", park.park_id, park.enterprises,
        park.foreign_invested, park.filings, park.invalid_filings, park.amendments,
        park.qualified_final, park.expected_qualified_bp / 100.0, park.target_qualified_bp / 100.0);
  }
  std::cout << "Written to " << out << " (summary.json has the details)\n";
  return 0;
}

}  // namespace
}  // namespace stip::sample_year

int main(int argc, char** argv) { return stip::sample_year::Main(argc, argv); }
