#include "common/flags.h"

#include <gtest/gtest.h>

#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "common/log.h"

namespace weft {
namespace {

struct Flags {
  CLI::App app{"a test binary", "tool"};
  std::string name;
  SockAddr addr = *SockAddr::Parse("127.0.0.1:15000");
  Flags() {
    SetUsage(app, "tool --name N [options]");
    app.add_option("--name", name, "a name")->check(kNonEmpty);
    AddSockAddrFlag(app, "--admin", &addr, "admin address");
    AddLogLevelFlag(app);
  }
  absl::Status Args(const std::vector<std::string>& args) { return ParseArgs(app, args); }
  std::optional<int> Parse(std::vector<const char*> args) {
    args.insert(args.begin(), "tool");
    return ParseFlags(app, static_cast<int>(args.size()), args.data());
  }
};

TEST(Flags, VersionPrintsNameAndVersionAndStops) {
  Flags f;
  testing::internal::CaptureStdout();
  EXPECT_EQ(f.Parse({"--version"}), 0);
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "tool " WEFT_VERSION "\n");
  Flags g;
  testing::internal::CaptureStdout();
  EXPECT_EQ(g.Parse({"--name", "x"}), std::nullopt);  // without it: nothing printed, go on
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "");
}

TEST(Flags, DurationFlagTakesAbslDurationsAndRefusesTheRest) {
  CLI::App app{"a test binary", "tool"};
  std::chrono::milliseconds d{7};
  AddDurationFlag(app, "--for", &d, "how long");
  ASSERT_TRUE(ParseArgs(app, {"--for", "1m30s"}).ok());
  EXPECT_EQ(d, std::chrono::milliseconds(90000));
  ASSERT_TRUE(ParseArgs(app, {"--for=250ms"}).ok());
  EXPECT_EQ(d, std::chrono::milliseconds(250));
  for (const char* bad : {"10", "0s", "-1s", "soon"}) {
    absl::Status st = ParseArgs(app, {"--for", bad});
    EXPECT_FALSE(st.ok()) << bad;
    EXPECT_TRUE(absl::StrContains(st.message(), "is not a duration like 20m or 90s")) << st;
  }
}

TEST(Flags, ValuesWithSpaceOrEqualsAndDefaults) {
  Flags f;
  EXPECT_EQ(f.Parse({"--name", "n1"}), std::nullopt);
  EXPECT_EQ(f.name, "n1");
  EXPECT_EQ(f.addr.ToString(), "127.0.0.1:15000");
  Flags g;
  EXPECT_EQ(g.Parse({"--name=n2", "--admin=[::1]:0", "--log-level", "info"}), std::nullopt);
  EXPECT_EQ(g.name, "n2");
  EXPECT_EQ(g.addr.ToString(), "[::1]:0");
}

TEST(Flags, ErrorsExitTwo) {
  EXPECT_EQ(Flags().Parse({"--frobnicate"}), 2);
  EXPECT_EQ(Flags().Parse({"--name"}), 2);
  EXPECT_EQ(Flags().Parse({"--name="}), 2);
  EXPECT_EQ(Flags().Parse({"--admin", "localhost"}), 2);
  EXPECT_EQ(Flags().Parse({"--log-level", "loud"}), 2);
  EXPECT_EQ(Flags().Parse({"stray"}), 2);
}

TEST(Flags, HelpExitsZeroOnlyIfWhatCameBeforeParsed) {
  EXPECT_EQ(Flags().Parse({"--help"}), 0);
  EXPECT_EQ(Flags().Parse({"--name", "n", "--help"}), 0);
  EXPECT_EQ(Flags().Parse({"--frobnicate", "--help"}), 2);
  EXPECT_EQ(Flags().Parse({"--admin", "nope", "--help"}), 2);
  Flags f;
  std::string help = f.app.help();
  EXPECT_TRUE(absl::StartsWith(help, "a test binary\nusage: tool --name N [options]\n")) << help;
  EXPECT_TRUE(absl::StrContains(help, "--admin")) << help;
  EXPECT_TRUE(absl::StrContains(help, "127.0.0.1:15000")) << help;
}

TEST(Flags, ErrorsNameTheFlagOrArgument) {
  EXPECT_EQ(Flags().Args({"--admin", "nope"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(Flags().Args({"--admin", "nope"}).message(), "--admin"));
  EXPECT_EQ(Flags().Args({"--frobnicate"}).message(), "unknown flag --frobnicate");
  EXPECT_EQ(Flags().Args({"stray"}).message(), "unexpected argument stray");
  EXPECT_EQ(Flags().Args({"--frobnicate", "--help"}).message(), "unknown flag --frobnicate");
  EXPECT_TRUE(absl::IsCancelled(Flags().Args({"--help"})));
  EXPECT_TRUE(Flags().Args({"--name", "n", "--"}).ok());  // "--" ends the flags
}

TEST(Flags, CommandsPrintHelpOrOneErrorLine) {
  std::ostringstream out, err;
  Flags f;
  EXPECT_EQ(ParseCommand(f.app, {"--bogus"}, out, err), 2);
  EXPECT_EQ(err.str(), "tool: unknown flag --bogus\nRun 'tool --help'.\n");
  EXPECT_EQ(out.str(), "");
  std::ostringstream out2, err2;
  Flags g;
  EXPECT_EQ(ParseCommand(g.app, {"--help"}, out2, err2), 0);
  EXPECT_TRUE(absl::StrContains(out2.str(), "usage: tool --name N [options]")) << out2.str();
  EXPECT_EQ(err2.str(), "");
}

TEST(Flags, PositiveAcceptsOnlyIntegersFromOne) {
  CLI::App app{"t", "t"};
  int n = 0;
  app.add_option("--n", n)->check(Positive());
  EXPECT_TRUE(ParseArgs(app, {"--n", "3"}).ok());
  EXPECT_EQ(n, 3);
  EXPECT_FALSE(ParseArgs(app, {"--n", "0"}).ok());
  EXPECT_FALSE(ParseArgs(app, {"--n", "x"}).ok());
}

}  // namespace
}  // namespace weft
