// stipctl: the command line for enterprises, park offices and regulators. This file only
// wires the commands (filing_commands.cc, registry_commands.cc, watch_commands.cc) to the
// global options and turns parse errors into exit code 2.
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "tools/stipctl/clients.h"
#include "tools/stipctl/commands.h"
#include "tools/stipctl/output.h"

namespace stip::ctl {
namespace {

int Main(int argc, char** argv) {
  CommandLine command_line;
  GlobalOptions& options = command_line.options;
  std::string output = "table";
  std::string timeout = "30s";

  CLI::App app{
      "stipctl: file annual filings, enroll enterprises, follow decisions and the Torch "
      "program roster, and query the STIP register.\n"
      "Data goes to stdout, messages to stderr. Exit codes: 0 ok, 1 failed (e.g. a filing "
      "refused), 2 usage, 64+gRPC code when a call fails (78: server unavailable).",
      "stipctl"};
  app.footer("Example:\n  stipctl --server 127.0.0.1:50050 filing submit filing-2024.json --wait");
  app.fallthrough();  // global options are accepted after the command too
  app.require_subcommand(1);
  app.add_option("--server", options.server,
                 "The services' address HOST:PORT (stip-local serves all three on one port)")
      ->envname("STIP_SERVER")
      ->capture_default_str();
  app.add_option("--intake", options.intake, "IntakeService's address (default: --server)")
      ->envname("STIP_INTAKE");
  app.add_option("--assessment", options.assessment,
                 "AssessmentService's address (default: --server)")
      ->envname("STIP_ASSESSMENT");
  app.add_option("--registry", options.registry, "RegistryService's address (default: --server)")
      ->envname("STIP_REGISTRY");
  app.add_option("-o,--output", output,
                 "Output format: table, json (JSON Lines when streaming), yaml")
      ->check(CLI::IsMember({"table", "json", "yaml"}))
      ->capture_default_str();
  app.add_option("--timeout", timeout, "The deadline of each call, e.g. 30s, 2m")
      ->capture_default_str();

  struct Group {
    const char* name;
    const char* description;
    const char* example;
  };
  for (const Group& group : {
           Group{"filing", "Annual filings: validate, submit, submit-bulk, get",
                 "stipctl filing submit filing-2024.json --wait"},
           Group{"enterprise", "Enterprises: enroll, get, list, history",
                 "stipctl enterprise list --park urumqi-hnz"},
           Group{"decision", "Qualification decisions: get, watch",
                 "stipctl decision watch --park urumqi-hnz"},
           Group{"listing", "The Torch program roster: watch",
                 "stipctl listing watch --change delisted -o json"},
           Group{"park", "Parks: list, stats", "stipctl park stats urumqi-hnz --year 2024"},
           Group{"region", "Economic regions: stats", "stipctl region stats --year 2024"},
           Group{"window", "Filing windows: close", "stipctl window close 2024"},
           Group{"policy", "Qualification policies: list, show",
                 "stipctl policy show stip-default"},
       }) {
    CLI::App* command = AddCommand(app, group.name, group.description, group.example);
    command->require_subcommand(1);
  }
  AddFilingCommands(app, command_line);
  AddRegistryCommands(app, command_line);
  AddWatchCommands(app, command_line);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return UsageError(e.what());
  }

  options.output = *ParseOutputFormat(output);
  int64_t seconds = 0;
  if (absl::SimpleAtoi(timeout, &seconds)) timeout += "s";
  if (!absl::ParseDuration(timeout, &options.timeout) || options.timeout <= absl::ZeroDuration()) {
    return UsageError("--timeout " + timeout + ": not a duration such as 30s or 2m");
  }
  if (!command_line.run) return UsageError("no command given");
  Clients clients(options);
  const int code = command_line.run(clients);
  std::cout.flush();
  return code;
}

}  // namespace
}  // namespace stip::ctl

int main(int argc, char** argv) { return stip::ctl::Main(argc, argv); }
