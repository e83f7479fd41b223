// Command-line flags: the conventions every Weft binary follows on top of CLI11, the one flag
// library. --help prints the usage to stdout and exits 0; an unknown flag, a missing value or a
// malformed one prints "NAME: what is wrong" to stderr and exits 2. Flags take "--flag value" or
// "--flag=value".
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "common/net.h"

namespace weft {

// The usage line(s) --help prints first instead of CLI11's "Usage: NAME [OPTIONS]", e.g.
// "weftd (--manifests DIR | --kubernetes) [options]"; "usage: " is prepended. The option list
// follows, each with its help text and default.
void SetUsage(CLI::App& app, std::string synopsis);

// Parses argv into `app` (the flags' callbacks and checks run). nullopt: go on; otherwise the
// code main should exit with: 0 after --help (printed), 2 after an error (printed). --help after
// an unknown flag is that error, so "BINARY ARGS... --help" checks that ARGS parse.
std::optional<int> ParseFlags(CLI::App& app, int argc, const char* const* argv);

// The same without printing, for parsers with their own caller (e.g. a ParseCommandLine that
// returns a status): InvalidArgument with CLI11's message (which names the flag). --help is an
// error here too; handle it before calling this.
absl::Status ParseFlagsStatus(CLI::App& app, int argc, const char* const* argv);

// A non-empty value ("--node=" is an error, not an empty name).
extern const CLI::Validator kNonEmpty;

// An ADDR:PORT flag ("127.0.0.1:15000", "[::1]:0") parsed into `out`; its current value is the
// default shown in --help.
CLI::Option* AddSockAddrFlag(CLI::App& app, const std::string& name, SockAddr* out,
                             const std::string& help);

// --log-level debug|info|warn|error: sets the process's log level as it is parsed.
CLI::Option* AddLogLevelFlag(CLI::App& app);

}  // namespace weft
