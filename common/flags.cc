#include "common/flags.h"

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
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

// Parses; CLI11's exceptions are the outcomes (CallForHelp included).
void Parse(CLI::App& app, int argc, const char* const* argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    // Help is processed before the check for unknown flags: do that check here.
    if (!app.remaining().empty()) throw CLI::ExtrasError(app.remaining());
    throw;
  }
}

}  // namespace

void SetUsage(CLI::App& app, std::string synopsis) {
  app.formatter(std::make_shared<UsageFormatter>(std::move(synopsis)));
}

std::optional<int> ParseFlags(CLI::App& app, int argc, const char* const* argv) {
  try {
    Parse(app, argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s\n(%s --help lists the flags)\n", app.get_name().c_str(), e.what(),
                 app.get_name().c_str());
    return 2;
  }
  return std::nullopt;
}

absl::Status ParseFlagsStatus(CLI::App& app, int argc, const char* const* argv) {
  try {
    Parse(app, argc, argv);
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  return absl::OkStatus();
}

const CLI::Validator kNonEmpty(
    [](const std::string& v) { return v.empty() ? std::string("is empty") : std::string(); }, "",
    "NONEMPTY");

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
