// Command-line flags: the conventions every Weft binary and every weftctl subcommand follows on
// top of CLI11, the one flag library. --help prints the usage to stdout and exits 0; an unknown
// flag, an argument nothing takes, a missing value or a malformed one prints
// "NAME: what is wrong\nRun 'NAME --help'." to stderr and exits 2. Flags take "--flag value" or
// "--flag=value".
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/net.h"

namespace weft {

// The usage line(s) --help prints first instead of CLI11's "Usage: NAME [OPTIONS]", e.g.
// "weftd (--manifests DIR | --kubernetes) [options]"; "usage: " is prepended. The option list
// follows, each with its help text and default.
void SetUsage(CLI::App& app, std::string synopsis);

// The one parser: `args` (without the program or subcommand name) into the options of `app`
// (the flags' callbacks and checks run). OK, or: Cancelled("help") for -h/--help; InvalidArgument
// with a one-line message for an unknown flag ("unknown flag --x"), an argument nothing takes
// ("unexpected argument x"), or a missing, malformed or out-of-range value (CLI11's message,
// which names the flag). --help after an unknown flag is that error, so "BINARY ARGS... --help"
// checks that ARGS parse.
absl::Status ParseArgs(CLI::App& app, const std::vector<std::string>& args);

// ParseArgs, then what a command does with the outcome: prints the help to `out` (code 0) or
// "NAME: <error>\nRun 'NAME --help'." to `err` (code 2), NAME being the App's name (e.g.
// "weftctl stat"). Returns the code the command should exit with, nullopt when it goes on.
std::optional<int> ParseCommand(CLI::App& app, const std::vector<std::string>& args,
                                std::ostream& out, std::ostream& err);

// ParseCommand for a main's argv, printing to stdout/stderr; it adds --version, which prints
// "NAME VERSION" (the project's version) and exits 0.
std::optional<int> ParseFlags(CLI::App& app, int argc, const char* const* argv);

// A non-empty value ("--node=" is an error, not an empty name).
extern const CLI::Validator kNonEmpty;

// Accepts integers >= 1 ("must be a positive number").
const CLI::Validator& Positive();

// An ADDR:PORT flag ("127.0.0.1:15000", "[::1]:0") parsed into `out`; its current value is the
// default shown in --help.
CLI::Option* AddSockAddrFlag(CLI::App& app, const std::string& name, SockAddr* out,
                             const std::string& help);

// A positive duration flag ("20m", "90s", "500ms"; absl's syntax) into `out`; anything else is
// "\"x\" is not a duration like 20m or 90s".
CLI::Option* AddDurationFlag(CLI::App& app, const std::string& name, std::chrono::milliseconds* out,
                             const std::string& help);

// --log-level debug|info|warn|error: sets the process's log level as it is parsed.
CLI::Option* AddLogLevelFlag(CLI::App& app);

}  // namespace weft
