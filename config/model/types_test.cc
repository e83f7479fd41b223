#include "config/model/types.h"

#include <gtest/gtest.h>

namespace weft::config {
namespace {

struct StringMatchCase {
  std::string pattern;
  StringMatch::Kind kind;
  std::string value;
  std::vector<std::string> matches;
  std::vector<std::string> misses;
};

TEST(StringMatchTest, IstioSemantics) {
  const StringMatchCase cases[] = {
      {"*", StringMatch::Kind::kAny, "", {"a", "cluster.local/ns/x/sa/y"}, {""}},
      {"cluster.local/ns/prod/*",
       StringMatch::Kind::kPrefix,
       "cluster.local/ns/prod/",
       {"cluster.local/ns/prod/sa/web", "cluster.local/ns/prod/"},
       {"cluster.local/ns/production/sa/web", "other/ns/prod/sa/x", ""}},
      {"*/sa/web",
       StringMatch::Kind::kSuffix,
       "/sa/web",
       {"cluster.local/ns/prod/sa/web", "/sa/web"},
       {"cluster.local/ns/prod/sa/web2", ""}},
      {"prod", StringMatch::Kind::kExact, "prod", {"prod"}, {"prod2", "pro", "Prod", ""}},
  };
  for (const auto& c : cases) {
    StringMatch m = StringMatch::Parse(c.pattern);
    EXPECT_EQ(m.kind, c.kind) << c.pattern;
    EXPECT_EQ(m.value, c.value) << c.pattern;
    for (const auto& s : c.matches) EXPECT_TRUE(m.Matches(s)) << c.pattern << " vs " << s;
    for (const auto& s : c.misses) EXPECT_FALSE(m.Matches(s)) << c.pattern << " vs " << s;
  }
}

TEST(SelectorMatchesTest, AllLabelsMustMatch) {
  Labels labels = {{"app", "db"}, {"version", "v1"}};
  EXPECT_TRUE(SelectorMatches({}, labels));
  EXPECT_TRUE(SelectorMatches({{"app", "db"}}, labels));
  EXPECT_TRUE(SelectorMatches({{"app", "db"}, {"version", "v1"}}, labels));
  EXPECT_FALSE(SelectorMatches({{"app", "db"}, {"version", "v2"}}, labels));
  EXPECT_FALSE(SelectorMatches({{"tier", "db"}}, labels));
  EXPECT_FALSE(SelectorMatches({{"app", "db"}}, {}));
}

TEST(ServiceTest, FindPort) {
  Service s;
  s.ports = {{80, 8080, "http", "http"}, {443, 443, "https", ""}};
  ASSERT_NE(s.FindPort(80), nullptr);
  EXPECT_EQ(s.FindPort(80)->target_port, 8080);
  EXPECT_EQ(s.FindPort(443)->name, "https");
  EXPECT_EQ(s.FindPort(8080), nullptr);  // target ports are not service ports
}

TEST(ModelTest, L7Attributes) {
  AuthzOperation op;
  op.ports = {80};
  EXPECT_FALSE(op.has_l7());
  op.not_paths = {StringMatch::Parse("/admin*")};
  EXPECT_TRUE(op.has_l7());

  AuthzCondition c;
  c.key = "source.ip";
  EXPECT_FALSE(c.has_l7());
  c.key = "request.headers[x-user]";
  EXPECT_TRUE(c.has_l7());
}

TEST(ModelTest, WorkloadIdentity) {
  Workload w;
  w.trust_domain = "cluster.local";
  w.ns = "prod";
  w.service_account = "db";
  EXPECT_EQ(w.identity().Principal(), "cluster.local/ns/prod/sa/db");
  EXPECT_FALSE(w.in_mesh());
  w.protocol = WorkloadProtocol::kHbone;
  EXPECT_TRUE(w.in_mesh());
}

}  // namespace
}  // namespace weft::config
