// Command-line parsing for weftctl's subcommands and Weft's example and test programs: CLI11
// with one behaviour everywhere. --help prints the generated usage (flags, arguments, defaults);
// an unknown flag, an extra argument, or a missing or malformed value is an error that names it.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"

namespace weft::flags {

// Parses `args` (without the program or subcommand name) into the options of `app`. OK, or:
// Cancelled("help") for -h/--help (print app.help()); InvalidArgument with a one-line message
// for an unknown flag ("unknown flag --x"), an argument nothing takes ("unexpected argument x"),
// or a missing, malformed or out-of-range value (CLI11's message, which names the flag).
absl::Status Parse(CLI::App& app, const std::vector<std::string>& args);

// Parse for a weftctl subcommand whose App is named "weftctl CMD": prints the help to `out`
// (exit code 0) or "weftctl CMD: <error>\nRun 'weftctl CMD --help'." to `err` (exit code 2).
// Returns the exit code when the command should stop there, nullopt when it goes on.
std::optional<int> ParseCommand(CLI::App& app, const std::vector<std::string>& args,
                                std::ostream& out, std::ostream& err);

// Accepts integers >= 1 ("must be a positive number").
const CLI::Validator& Positive();

// --name NAME and --state-root DIR: which local mesh (see cli/up/state.h) a command acts on.
void AddMeshFlags(CLI::App& app, std::string* name, std::string* state_root);

}  // namespace weft::flags
