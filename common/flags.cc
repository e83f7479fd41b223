#include "common/flags.h"

#include <algorithm>
#include <iostream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/log.h"

namespace weft {
namespace {

class UsageFormatter : public CLI::Formatter {
 public:
  explicit UsageFormatter(std::string synopsis) : synopsis_(std::move(synopsis)) {
    column_width(28);
  }
  std::string make_usage(const CLI::App*, std::string) const override {
    return "usage: " + synopsis_ + "\n";
  }
  // Descriptions wrapped at word boundaries (CLI11 indents the continuation lines).
  std::string make_option_desc(const CLI::Option* opt) const override {
    constexpr size_t kWidth = 70;
    std::string out, line;
    for (absl::string_view word : absl::StrSplit(opt->get_description(), ' ')) {
      if (!line.empty() && line.size() + 1 + word.size() > kWidth) {
        absl::StrAppend(&out, line, "\n");
        line.clear();
      }
      absl::StrAppend(&line, line.empty() ? "" : " ", word);
    }
    return out + line;
  }

 private:
  std::string synopsis_;
};

// What CLI11 left unparsed, less the "--" that ends the flags (not an error).
std::vector<std::string> Extras(const CLI::App& app) {
  std::vector<std::string> extra = app.remaining();
  extra.erase(std::remove(extra.begin(), extra.end(), "--"), extra.end());
  return extra;
}

absl::Status ExtraError(const std::string& x) {
  return absl::InvalidArgumentError(x.size() > 1 && x[0] == '-' ? "unknown flag " + x
                                                                : "unexpected argument " + x);
}

}  // namespace

void SetUsage(CLI::App& app, std::string synopsis) {
  app.formatter(std::make_shared<UsageFormatter>(std::move(synopsis)));
}

absl::Status ParseArgs(CLI::App& app, const std::vector<std::string>& args) {
  app.allow_extras();  // reported below, in this file's words
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 pops from the back
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    // Help is processed before the check for unknown flags: do that check here.
    if (std::vector<std::string> extra = Extras(app); !extra.empty()) return ExtraError(extra[0]);
    return absl::CancelledError("help");
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  if (std::vector<std::string> extra = Extras(app); !extra.empty()) return ExtraError(extra[0]);
  return absl::OkStatus();
}

std::optional<int> ParseCommand(CLI::App& app, const std::vector<std::string>& args,
                                std::ostream& out, std::ostream& err) {
  absl::Status st = ParseArgs(app, args);
  if (st.ok()) return std::nullopt;
  if (absl::IsCancelled(st)) {
    out << app.help();
    return 0;
  }
  err << app.get_name() << ": " << st.message() << "\nRun '" << app.get_name() << " --help'.\n";
  return 2;
}

std::optional<int> ParseFlags(CLI::App& app, int argc, const char* const* argv) {
  bool version = false;
  app.add_flag("--version", version, "print the version and exit");
  if (auto code = ParseCommand(app, std::vector<std::string>(argv + std::min(argc, 1), argv + argc),
                               std::cout, std::cerr)) {
    return code;
  }
  if (!version) return std::nullopt;
  std::cout << app.get_name() << " " << WEFT_VERSION << "\n";
  return 0;
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

const CLI::Validator kNonEmpty(
    [](const std::string& v) { return v.empty() ? std::string("is empty") : std::string(); }, "",
    "NONEMPTY");

CLI::Option* AddDurationFlag(CLI::App& app, const std::string& name, std::chrono::milliseconds* out,
                             const std::string& help) {
  return app
      .add_option_function<std::string>(
          name,
          [out, name](const std::string& v) {
            absl::Duration d;
            if (!absl::ParseDuration(v, &d) || d <= absl::ZeroDuration())
              throw CLI::ValidationError(name, "\"" + v + "\" is not a duration like 20m or 90s");
            *out = std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
          },
          help)
      ->type_name("DUR");
}

CLI::Option* AddSockAddrFlag(CLI::App& app, const std::string& name, SockAddr* out,
                             const std::string& help) {
  return app
      .add_option_function<std::string>(
          name,
          [name, out](const std::string& v) {
            auto a = SockAddr::Parse(v);
            if (!a.ok())
              throw CLI::ValidationError(
                  name, "\"" + v + "\" is not ADDR:PORT (e.g. 127.0.0.1:15000, [::1]:0)");
            *out = *a;
          },
          help)
      ->type_name("ADDR:PORT")
      ->default_str(out->ToString());
}

CLI::Option* AddLogLevelFlag(CLI::App& app) {
  return app
      .add_option_function<std::string>(
          "--log-level",
          [](const std::string& v) {
            log::Level l;
            if (!log::ParseLevel(v, &l))
              throw CLI::ValidationError("--log-level",
                                         "unknown level \"" + v + "\"; use debug|info|warn|error");
            log::SetLevel(l);
          },
          "debug|info|warn|error")
      ->type_name("LEVEL")
      ->default_str("info");
}

}  // namespace weft
