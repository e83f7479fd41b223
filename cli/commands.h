// weftctl subcommand registry and dispatcher.
//
// Exit codes for every subcommand: 0 success, 1 the operation failed (message on stderr),
// 2 usage error (bad flags/arguments; a hint to run `--help` on stderr).
#pragma once

#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace weft::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// `args` excludes the program and subcommand names.
using CommandFn = int (*)(const std::vector<std::string>& args, std::ostream& out,
                          std::ostream& err);

struct Command {
  std::string_view name;
  std::string_view summary;  // one line for `weftctl --help`
  CommandFn run;
};

// The built-in commands, plus any added with AddCommand (call before Main; not thread-safe).
const std::vector<Command>& Commands();
void AddCommand(Command c);

// Entry point: `weftctl [--help|--version] <command> [args...]`.
int Main(int argc, char** argv, std::ostream& out, std::ostream& err);

}  // namespace weft::cli
