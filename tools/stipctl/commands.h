// The commands, by room: filing_commands.cc (enterprises), registry_commands.cc (park
// offices, regulators' queries, policies, health), watch_commands.cc (regulators' streams).
//
// Each Add*Commands registers its subcommands on the root CLI::App. Parsing runs the
// chosen command's callback, which only stores what to run in `CommandLine::run`; main
// runs it once the global options are parsed and checked, with the Clients made from them.
#pragma once

#include <functional>
#include <ostream>
#include <string>

#include "CLI/CLI.hpp"
#include "tools/stipctl/clients.h"

namespace stip::ctl {

struct CommandLine {
  GlobalOptions options;
  // Set by the chosen command's callback; returns the exit code.
  std::function<int(Clients&)> run;
};

void AddFilingCommands(CLI::App& app, CommandLine& command_line);
void AddRegistryCommands(CLI::App& app, CommandLine& command_line);
void AddWatchCommands(CLI::App& app, CommandLine& command_line);

// Adds a subcommand with `description` and an "Example:" footer for its --help.
CLI::App* AddCommand(CLI::App& parent, const std::string& name, const std::string& description,
                     const std::string& example);

// A decision as a person reads it: the outcome, then one row per criterion with the measured
// value, the threshold and the shortfall (the R&D spending or the employees missing).
void PrintDecisionText(const v1::QualificationDecision& decision, std::ostream& out);

// Parses an enum filter flag's value; on failure prints a usage error naming `flag` and the
// accepted values and returns false.
bool ParseEnumFlag(const google::protobuf::EnumDescriptor* type, const std::string& flag,
                   const std::string& text, int* value);

}  // namespace stip::ctl
