// Route filters and backend choice: header modifiers, the spec's rewrite and redirect tables,
// weighted choice (distribution bounded statistically) and percentages.
#include "ztunnel/traffic/filters.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace weft::ztunnel::traffic {
namespace {

using config::HttpPathMatch;
using config::HttpPathModifier;

config::HttpRouteMatch PrefixMatch(std::string prefix) {
  config::HttpRouteMatch m;
  m.path = HttpPathMatch{HttpPathMatch::Kind::kPrefix, std::move(prefix), nullptr};
  return m;
}

TEST(FiltersTest, HeaderModifierRemovesThenSetsThenAdds) {
  config::HttpHeaderModifier m;
  m.set = {{"x-set", "new"}, {"x-fresh", "1"}};
  m.add = {{"x-add", "two"}};
  m.remove = {"x-gone"};
  Headers h = {{"x-set", "old1"}, {"x-gone", "a"}, {"x-add", "one"},
               {"x-set", "old2"}, {"x-gone", "b"}, {"keep", "k"}};
  ApplyHeaderModifier(m, &h);
  EXPECT_EQ(
      h,
      (Headers{
          {"x-set", "new"}, {"x-add", "one"}, {"keep", "k"}, {"x-fresh", "1"}, {"x-add", "two"}}));
}

struct PrefixCase {
  std::string prefix, path, replacement, want;
};

TEST(FiltersTest, ReplacePrefixMatchFollowsTheSpecTable) {
  // Gateway API HTTPPathModifier's table, plus the query kept.
  const PrefixCase cases[] = {
      {"/foo", "/foo/bar", "/xyz", "/xyz/bar"},
      {"/foo", "/foo/bar", "/xyz/", "/xyz/bar"},
      {"/foo/", "/foo/bar", "/xyz", "/xyz/bar"},
      {"/foo/", "/foo/bar", "/xyz/", "/xyz/bar"},
      {"/foo", "/foo", "/xyz", "/xyz"},
      {"/foo/", "/foo", "/xyz", "/xyz"},
      {"/foo", "/foo/", "/xyz", "/xyz/"},
      {"/foo", "/foo", "", "/"},
      {"/foo/", "/foo", "", "/"},
      {"/foo", "/foo/", "", "/"},
      {"/foo/", "/foo/", "/", "/"},
      {"/foo", "/foo/bar", "", "/bar"},
      {"/foo/", "/foo/bar", "/", "/bar"},
      {"/", "/foo", "/xyz", "/xyz/foo"},
      {"/", "/", "/xyz", "/xyz"},
      {"/foo", "/foo/bar?a=1&b", "/x", "/x/bar?a=1&b"},
  };
  for (const PrefixCase& c : cases) {
    HttpPathModifier m{HttpPathModifier::Kind::kReplacePrefixMatch, c.replacement};
    EXPECT_EQ(ModifyPath(m, PrefixMatch(c.prefix), c.path), c.want)
        << c.prefix << " " << c.path << " " << c.replacement;
  }
}

TEST(FiltersTest, ReplaceFullPathAndUrlRewrite) {
  HttpPathModifier full{HttpPathModifier::Kind::kReplaceFullPath, "/one"};
  EXPECT_EQ(ModifyPath(full, PrefixMatch("/a"), "/a/b?x=1"), "/one?x=1");
  EXPECT_EQ(ModifyPath(HttpPathModifier{}, PrefixMatch("/a"), "/a/b?x=1"), "/a/b?x=1");

  config::HttpUrlRewrite rw{"backend.example",
                            {HttpPathModifier::Kind::kReplacePrefixMatch, "/v2"}};
  std::string authority = "svc:8080", path = "/api/users";
  ApplyUrlRewrite(rw, PrefixMatch("/api"), &authority, &path);
  EXPECT_EQ(authority, "backend.example");
  EXPECT_EQ(path, "/v2/users");
  rw.hostname.clear();
  ApplyUrlRewrite(rw, PrefixMatch("/v2"), &authority, &path);
  EXPECT_EQ(authority, "backend.example");
  EXPECT_EQ(path, "/v2/users");
}

struct RedirectCase {
  std::string name;
  config::HttpRequestRedirect filter;
  std::string authority;
  uint16_t listener_port;
  std::string want_location;
};

TEST(FiltersTest, RedirectLocationFollowsTheSpecPortRules) {
  using K = HttpPathModifier::Kind;
  const RedirectCase cases[] = {
      {"HostOnlyKeepsListenerPort", {"", "example.org"}, "svc:80", 80, "http://example.org/a/b?q"},
      {"HostOnlyOnOtherPort",
       {"", "example.org"},
       "svc:9080",
       9080,
       "http://example.org:9080/a/b?q"},
      {"HttpsSchemeDefaultsTo443", {"https"}, "svc:8080", 8080, "https://svc/a/b?q"},
      {"HttpSchemeDefaultsTo80", {"http"}, "svc:8080", 8080, "http://svc/a/b?q"},
      {"ExplicitPort", {"", "", {}, 8443}, "svc", 80, "http://svc:8443/a/b?q"},
      {"HttpsExplicit443Omitted", {"https", "h.com", {}, 443}, "svc", 80, "https://h.com/a/b?q"},
      {"HttpsOnOtherPort", {"https", "h.com", {}, 8443}, "svc", 80, "https://h.com:8443/a/b?q"},
      {"FullPath", {"", "", {K::kReplaceFullPath, "/new"}}, "svc", 80, "http://svc/new?q"},
      {"PrefixPath", {"", "", {K::kReplacePrefixMatch, "/z"}}, "svc", 80, "http://svc/z/b?q"},
      {"Ipv6Host", {}, "[fd00::1]:80", 80, "http://[fd00::1]/a/b?q"},
  };
  for (const RedirectCase& c : cases) {
    Redirect r =
        BuildRedirect(c.filter, PrefixMatch("/a"), "http", c.authority, "/a/b?q", c.listener_port);
    EXPECT_EQ(r.location, c.want_location) << c.name;
    EXPECT_EQ(r.status, 302) << c.name;
  }
  config::HttpRequestRedirect moved{"https"};
  moved.status_code = 301;
  EXPECT_EQ(BuildRedirect(moved, PrefixMatch("/"), "http", "svc", "/", 80).status, 301);
}

TEST(FiltersTest, BackendChoiceEdgeCases) {
  std::vector<config::HttpBackendRef> none;
  EXPECT_EQ(ChooseBackend(none, 7).kind, BackendChoice::Kind::kNoBackend);
  std::vector<config::HttpBackendRef> zero(2);
  zero[0].weight = zero[1].weight = 0;
  EXPECT_EQ(ChooseBackend(zero, 7).kind, BackendChoice::Kind::kNoBackend);
  std::vector<config::HttpBackendRef> b(3);
  b[0].service = "a/zero";
  b[0].weight = 0;
  b[1].service = "a/bad";
  b[1].weight = 1;
  b[1].invalid = true;
  b[2].service = "a/good";
  b[2].weight = 1;
  EXPECT_EQ(ChooseBackend(b, 0).kind, BackendChoice::Kind::kInvalidBackend);
  EXPECT_EQ(ChooseBackend(b, 0).backend->service, "a/bad");
  EXPECT_EQ(ChooseBackend(b, 1).kind, BackendChoice::Kind::kBackend);
  EXPECT_EQ(ChooseBackend(b, 1).index, 2u);
  EXPECT_EQ(ChooseBackend(b, ~uint64_t{0}).index, 2u);  // 2^64-1 is odd
}

// A 90/10/0 split over 100000 requests stays within 5 standard deviations of its weights (the
// probability of a false failure is below 1e-6), and the weight-0 backend gets nothing.
TEST(FiltersTest, WeightedChoiceDistribution) {
  std::vector<config::HttpBackendRef> b(3);
  b[0].weight = 90;
  b[1].weight = 10;
  b[2].weight = 0;
  std::mt19937_64 rng(12345);
  constexpr int kN = 100000;
  int counts[3] = {0, 0, 0};
  for (int i = 0; i < kN; ++i) counts[ChooseBackend(b, rng()).index]++;
  const double sigma = std::sqrt(kN * 0.9 * 0.1);
  EXPECT_NEAR(counts[0], kN * 0.9, 5 * sigma);
  EXPECT_NEAR(counts[1], kN * 0.1, 5 * sigma);
  EXPECT_EQ(counts[2], 0);
}

TEST(FiltersTest, ChanceAndMirror) {
  EXPECT_FALSE(Chance(0, 0));
  EXPECT_TRUE(Chance(100, ~uint64_t{0}));
  EXPECT_TRUE(Chance(50, 0));
  EXPECT_FALSE(Chance(50, ~uint64_t{0}));
  EXPECT_TRUE(Chance(50, (uint64_t{1} << 63) - 4096));  // just below one half
  EXPECT_FALSE(Chance(50, uint64_t{1} << 63));          // exactly one half
  std::mt19937_64 rng(7);
  config::HttpRequestMirror m{"a/b", 0, 25};
  int mirrored = 0;
  constexpr int kN = 40000;
  for (int i = 0; i < kN; ++i) mirrored += ShouldMirror(m, rng()) ? 1 : 0;
  EXPECT_NEAR(mirrored, kN / 4, 5 * std::sqrt(kN * 0.25 * 0.75));
}

}  // namespace
}  // namespace weft::ztunnel::traffic
