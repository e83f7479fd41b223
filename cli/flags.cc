#include "cli/flags.h"

#include <algorithm>
#include <ostream>

#include "absl/strings/numbers.h"

namespace weft::flags {

absl::Status Parse(CLI::App& app, const std::vector<std::string>& args) {
  app.allow_extras();  // reported below, in this file's words
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 pops from the back
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    return absl::CancelledError("help");
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  std::vector<std::string> extra = app.remaining();
  // With extras allowed, CLI11 also lists the "--" that ends the flags; it is not an error.
  extra.erase(std::remove(extra.begin(), extra.end(), "--"), extra.end());
  if (!extra.empty()) {
    const std::string& x = extra.front();
    return absl::InvalidArgumentError(x.size() > 1 && x[0] == '-' ? "unknown flag " + x
                                                                  : "unexpected argument " + x);
  }
  return absl::OkStatus();
}

std::optional<int> ParseCommand(CLI::App& app, const std::vector<std::string>& args,
                                std::ostream& out, std::ostream& err) {
  absl::Status st = Parse(app, args);
  if (st.ok()) return std::nullopt;
  if (absl::IsCancelled(st)) {
    out << app.help();
    return 0;
  }
  err << app.get_name() << ": " << st.message() << "\nRun '" << app.get_name() << " --help'.\n";
  return 2;
}

const CLI::Validator& Positive() {
  static const CLI::Validator v(
      [](std::string& s) -> std::string {
        int64_t n = 0;
        return absl::SimpleAtoi(s, &n) && n >= 1 ? "" : "must be a positive number, not " + s;
      },
      "POSITIVE");
  return v;
}

void AddMeshFlags(CLI::App& app, std::string* name, std::string* state_root) {
  app.add_option("--name", *name, "the mesh (several meshes may run side by side)")
      ->type_name("NAME")
      ->capture_default_str();
  app.add_option("--state-root", *state_root,
                 "where meshes keep their state (default $WEFT_STATE_ROOT or /run/weft)")
      ->type_name("DIR");
}

}  // namespace weft::flags
