// HttpRouteFromProto and TrafficPolicyFromProto: what they accept, the defaults they fill, and
// the field path of every rejection (table-driven, objects written in protobuf text format).
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include "config/model/convert.h"

namespace weft::config {
namespace {

namespace pb = ::weft::config::v1;

template <typename Pb>
Pb Parse(const std::string& text) {
  Pb out;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &out)) << text;
  return out;
}

constexpr char kRouteHead[] = R"(name: "r" namespace: "shop" parent_service: "shop/reviews" )";

absl::StatusOr<HttpRoute> Route(const std::string& rest) {
  return HttpRouteFromProto(Parse<pb::HttpRoute>(kRouteHead + rest));
}

TEST(HttpRouteFromProtoTest, ConvertsAndFillsTheSpecDefaults) {
  auto r = Route(R"(
    parent_port: 9080 hostnames: "*.example.com" creation_timestamp_ms: 7
    rules { name: "a" }
    rules {
      matches { path_type: PATH_PREFIX path: "/api/" method: "GET"
                headers { name: "X-User" value: "jason" }
                headers { name: "x-user" value: "ignored" }
                query_params { type: REGULAR_EXPRESSION name: "v" value: "[0-9]+" } }
      filters { request_header_modifier { set { name: "X-A" value: "1" } remove: "X-B" } }
      filters { url_rewrite { path { type: REPLACE_PREFIX_MATCH value: "/v2" } } }
      filters { request_mirror { service: "shop/shadow" percent: 10 } }
      backends { service: "shop/reviews-v1" weight: 90 }
      backends { service: "gone" invalid: true }
      request_timeout_ms: 1000 backend_request_timeout_ms: 500
      retry { attempts: 2 }
    })");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->key(), "shop/r");
  EXPECT_EQ(r->parent_namespace(), "shop");
  EXPECT_FALSE(r->is_consumer());
  EXPECT_EQ(r->parent_port, 9080);
  ASSERT_EQ(r->rules.size(), 2u);
  // No matches: one PathPrefix "/".
  ASSERT_EQ(r->rules[0].matches.size(), 1u);
  EXPECT_EQ(r->rules[0].matches[0].path.kind, HttpPathMatch::Kind::kPrefix);
  EXPECT_EQ(r->rules[0].matches[0].path.value, "/");
  EXPECT_FALSE(r->rules[0].retry.has_value());
  const HttpRouteRule& rule = r->rules[1];
  ASSERT_EQ(rule.matches[0].headers.size(), 1u);  // the second x-user is ignored (the spec)
  EXPECT_EQ(rule.matches[0].headers[0].name, "x-user");
  EXPECT_TRUE(rule.matches[0].query_params[0].Matches("42"));
  EXPECT_FALSE(rule.matches[0].query_params[0].Matches("42a"));  // full match
  ASSERT_TRUE(rule.request_headers.has_value());
  EXPECT_EQ(rule.request_headers->set[0].name, "x-a");
  EXPECT_EQ(rule.request_headers->remove[0], "x-b");
  ASSERT_TRUE(rule.rewrite.has_value());
  EXPECT_EQ(rule.rewrite->path.kind, HttpPathModifier::Kind::kReplacePrefixMatch);
  EXPECT_EQ(rule.mirrors[0].percent, 10u);
  EXPECT_EQ(rule.backends[0].weight, 90u);
  EXPECT_TRUE(rule.backends[1].invalid);
  ASSERT_TRUE(rule.retry.has_value());
  EXPECT_EQ(rule.retry->codes, (std::vector<uint16_t>{500, 502, 503, 504}));
  EXPECT_EQ(rule.retry->attempts, 2u);

  auto consumer = HttpRouteFromProto(
      Parse<pb::HttpRoute>(R"(name: "r" namespace: "web" parent_service: "shop/reviews")"));
  ASSERT_TRUE(consumer.ok());
  EXPECT_TRUE(consumer->is_consumer());
}

TEST(HttpPathMatchTest, PrefixIsElementWise) {
  HttpPathMatch m{HttpPathMatch::Kind::kPrefix, "/a", nullptr};
  EXPECT_TRUE(m.Matches("/a"));
  EXPECT_TRUE(m.Matches("/a/"));
  EXPECT_TRUE(m.Matches("/a/b"));
  EXPECT_FALSE(m.Matches("/ab"));
  EXPECT_FALSE(m.Matches("/"));
  m.value = "/a/";  // a trailing slash is ignored
  EXPECT_TRUE(m.Matches("/a"));
  EXPECT_TRUE(m.Matches("/a/b"));
  EXPECT_FALSE(m.Matches("/ab"));
  m.value = "/";
  EXPECT_TRUE(m.Matches("/"));
  EXPECT_TRUE(m.Matches("/anything"));
}

struct BadRoute {
  std::string text;
  std::string path;  // the error's field path
};

TEST(HttpRouteFromProtoTest, RejectsWithTheFieldPath) {
  const BadRoute cases[] = {
      {R"(name: "r" parent_service: "shop/a")", "namespace"},
      {R"(name: "r" namespace: "shop")", "parentService"},
      {R"(name: "r" namespace: "shop" parent_service: "shop")", "parentService"},
      {R"(name: "r" namespace: "shop" parent_service: "Shop/a")", "parentService"},
      {R"(name: "r" namespace: "shop" parent_service: "shop/a" parent_port: 70000)", "parentPort"},
      {std::string(kRouteHead) + R"(hostnames: "Example.com")", "hostnames[0]"},
      {std::string(kRouteHead) + R"(hostnames: "a.*.com")", "hostnames[0]"},
      {std::string(kRouteHead) + R"(hostnames: "10.0.0.1")", "hostnames[0]"},
      {std::string(kRouteHead) + R"(hostnames: "a.com:80")", "hostnames[0]"},
      {std::string(kRouteHead) + R"(rules { matches { path_type: EXACT path: "a" } })",
       "rules[0].matches[0].path.value"},
      {std::string(kRouteHead) + R"(rules { matches { path_type: PATH_PREFIX path: "/a//b" } })",
       "rules[0].matches[0].path.value"},
      {std::string(kRouteHead) + R"(rules { matches { path_type: EXACT path: "/a/.." } })",
       "rules[0].matches[0].path.value"},
      {std::string(kRouteHead) + R"(rules { matches { path_type: PATH_UNSET path: "/a" } })",
       "rules[0].matches[0].path.value"},
      {std::string(kRouteHead) +
           R"(rules { matches { path_type: REGULAR_EXPRESSION path: "/(a" } })",
       "rules[0].matches[0].path.value"},
      {std::string(kRouteHead) + R"(rules { matches { headers { name: "a b" value: "x" } } })",
       "rules[0].matches[0].headers[0].name"},
      {std::string(kRouteHead) +
           R"(rules { matches { headers { type: REGULAR_EXPRESSION name: "a" value: "[" } } })",
       "rules[0].matches[0].headers[0].value"},
      {std::string(kRouteHead) + R"(rules { matches { query_params { value: "x" } } })",
       "rules[0].matches[0].queryParams[0].name"},
      {std::string(kRouteHead) + R"(rules { matches { method: "get" } })",
       "rules[0].matches[0].method"},
      {std::string(kRouteHead) + R"(rules { filters { } })", "rules[0].filters[0]"},
      {std::string(kRouteHead) +
           R"(rules { filters { request_header_modifier { } } filters { request_header_modifier { } } })",
       "rules[0].filters[1]"},
      {std::string(kRouteHead) +
           R"(rules { filters { request_header_modifier { set { name: "a" value: "x\ny" } } } })",
       "rules[0].filters[0].requestHeaderModifier.set[0].value"},
      {std::string(kRouteHead) +
           R"(rules { filters { request_header_modifier { add { name: "a" } add { name: "A" } } } })",
       "rules[0].filters[0].requestHeaderModifier.add[1].name"},
      {std::string(kRouteHead) +
           R"(rules { filters { request_redirect { } } filters { url_rewrite { } } })",
       "rules[0].filters"},
      {std::string(kRouteHead) + R"(rules { filters { request_redirect { scheme: "ftp" } } })",
       "rules[0].filters[0].requestRedirect.scheme"},
      {std::string(kRouteHead) + R"(rules { filters { request_redirect { status_code: 200 } } })",
       "rules[0].filters[0].requestRedirect.statusCode"},
      {std::string(kRouteHead) + R"(rules { filters { request_redirect { port: 65536 } } })",
       "rules[0].filters[0].requestRedirect.port"},
      {std::string(kRouteHead) +
           R"(rules { filters { request_redirect { path { type: REPLACE_FULL_PATH } } } })",
       "rules[0].filters[0].requestRedirect.path.replaceFullPath"},
      {std::string(kRouteHead) +
           R"(rules { filters { url_rewrite { path { type: REPLACE_FULL_PATH value: "x" } } } })",
       "rules[0].filters[0].urlRewrite.path.replaceFullPath"},
      // ReplacePrefixMatch only under a single PathPrefix match.
      {std::string(kRouteHead) + R"(rules { matches { path_type: EXACT path: "/a" }
           filters { url_rewrite { path { type: REPLACE_PREFIX_MATCH value: "/b" } } } })",
       "rules[0].filters"},
      {std::string(kRouteHead) + R"(rules { matches { path_type: PATH_PREFIX path: "/a" }
           matches { path_type: PATH_PREFIX path: "/c" }
           filters { request_redirect { path { type: REPLACE_PREFIX_MATCH value: "/b" } } } })",
       "rules[0].filters"},
      {std::string(kRouteHead) + R"(rules { filters { request_mirror { service: "x" } } })",
       "rules[0].filters[0].requestMirror.service"},
      {std::string(kRouteHead) +
           R"(rules { filters { request_mirror { service: "a/b" percent: 101 } } })",
       "rules[0].filters[0].requestMirror.percent"},
      {std::string(kRouteHead) + R"(rules { backends { service: "a" } })",
       "rules[0].backendRefs[0].service"},
      {std::string(kRouteHead) + R"(rules { backends { service: "a/b" weight: 1000001 } })",
       "rules[0].backendRefs[0].weight"},
      {std::string(kRouteHead) +
           R"(rules { backends { service: "a/b" filters { url_rewrite { } } } })",
       "rules[0].backendRefs[0].filters[0]"},
      {std::string(kRouteHead) + R"(rules { request_timeout_ms: 5 backend_request_timeout_ms: 6 })",
       "rules[0].timeouts.backendRequest"},
      {std::string(kRouteHead) + R"(rules { retry { codes: 200 } })", "rules[0].retry.codes[0]"},
  };
  for (const BadRoute& c : cases) {
    absl::Status st = HttpRouteFromProto(Parse<pb::HttpRoute>(c.text)).status();
    std::optional<ConfigError> e = GetConfigError(st);
    ASSERT_TRUE(e.has_value()) << c.text << " -> " << st;
    EXPECT_EQ(e->path, c.path) << c.text << " -> " << st;
  }
}

TEST(HttpRouteFromProtoTest, AcceptsTheSpecPathPrefixRewriteAndRedirectForms) {
  for (const char* text : {
           R"(rules { filters { url_rewrite { path { type: REPLACE_PREFIX_MATCH } } } })",
           R"(rules { matches { path_type: PATH_PREFIX path: "/a" }
                filters { request_redirect { scheme: "https" port: 8443 status_code: 308
                  hostname: "example.com" path { type: REPLACE_PREFIX_MATCH value: "/" } } } })",
           R"(rules { matches { path_type: EXACT path: "/a" }
                filters { request_redirect { path { type: REPLACE_FULL_PATH value: "/b" } } } })",
           R"(rules { backends { service: "a/b" weight: 0 filters { request_header_modifier {
                set { name: "x" value: "y" } } } } })",
       }) {
    auto r = Route(text);
    EXPECT_TRUE(r.ok()) << text << " -> " << r.status();
  }
}

constexpr char kPolicyHead[] = R"(name: "p" namespace: "shop" target_service: "shop/reviews" )";

absl::StatusOr<TrafficPolicy> Policy(const std::string& rest) {
  return TrafficPolicyFromProto(Parse<pb::TrafficPolicy>(kPolicyHead + rest));
}

TEST(TrafficPolicyFromProtoTest, ConvertsAndFillsDefaults) {
  auto p = Policy(R"(
    target_port: 9080
    retries { attempts: 3 retry_on: "5xx,reset" retry_on: "unavailable" retry_on: "503" }
    fault_injection { delay { fixed_delay_ms: 100 percentage: 50 }
                      abort { http_status: 503 grpc_status: -1 percentage: 10 } }
    connection_pool { max_connections: 1 max_retries: 2 }
    outlier_detection { consecutive_5xx_errors: 3 }
    route_fault_injection { key: "shop/r#a" value { abort { grpc_status: 14 percentage: 100 } } })");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(p->retries.has_value());
  EXPECT_EQ(p->retries->retry_on,
            kRetryOn5xx | kRetryOnReset | kRetryOnGrpcUnavailable | kRetryOnRetriableStatusCodes);
  EXPECT_EQ(p->retries->retriable_status_codes, (std::vector<uint16_t>{503}));
  EXPECT_DOUBLE_EQ(p->retries->budget.retry_ratio, 0.2);  // Linkerd's defaults
  EXPECT_EQ(p->retries->budget.min_retries_per_second, 10u);
  EXPECT_EQ(p->retries->budget.ttl_ms, 10000u);
  EXPECT_EQ(p->fault_injection->abort->http_status, 503);
  EXPECT_EQ(p->fault_injection->delay->fixed_delay_ms, 100u);
  EXPECT_EQ(p->connection_pool->max_retries, 2u);
  EXPECT_EQ(p->outlier_detection->interval_ms, 10000u);  // Envoy's defaults
  EXPECT_EQ(p->outlier_detection->base_ejection_time_ms, 30000u);
  EXPECT_EQ(p->outlier_detection->max_ejection_percent, 10u);
  EXPECT_EQ(p->route_fault_injection.at("shop/r#a").abort->grpc_status, 14);
}

TEST(TrafficPolicyFromProtoTest, RejectsWithTheFieldPath) {
  const BadRoute cases[] = {
      {R"(name: "p" namespace: "shop" target_service: "other/reviews")", "targetService"},
      {R"(name: "p" namespace: "shop")", "targetService"},
      {std::string(kPolicyHead) + R"(target_port: 65536)", "targetPort"},
      {std::string(kPolicyHead) + R"(retries { retry_on: "5xx,bogus" })", "retries.retryOn[0]"},
      {std::string(kPolicyHead) + R"(retries { retry_on: "700" })", "retries.retryOn[0]"},
      {std::string(kPolicyHead) + R"(retries { retriable_status_codes: 99 })",
       "retries.retriableStatusCodes[0]"},
      {std::string(kPolicyHead) + R"(retries { budget { retry_ratio: -1 } })",
       "retries.budget.retryRatio"},
      {std::string(kPolicyHead) + R"(retries { budget { ttl_ms: 500 } })", "retries.budget.ttl"},
      {std::string(kPolicyHead) + R"(fault_injection { delay { percentage: 5 } })",
       "faultInjection.delay.fixedDelay"},
      {std::string(kPolicyHead) +
           R"(fault_injection { delay { fixed_delay_ms: 1 percentage: 101 } })",
       "faultInjection.delay.percentage"},
      {std::string(kPolicyHead) + R"(fault_injection { abort { grpc_status: -1 } })",
       "faultInjection.abort"},
      {std::string(kPolicyHead) +
           R"(fault_injection { abort { http_status: 503 grpc_status: 14 } })",
       "faultInjection.abort"},
      {std::string(kPolicyHead) + R"(fault_injection { abort { grpc_status: 17 } })",
       "faultInjection.abort.grpcStatus"},
      {std::string(kPolicyHead) + R"(fault_injection { abort { http_status: 99 } })",
       "faultInjection.abort.httpStatus"},
      {std::string(kPolicyHead) + R"(outlier_detection { max_ejection_percent: 101 })",
       "outlierDetection.maxEjectionPercent"},
      {std::string(kPolicyHead) + R"(route_fault_injection { key: "r" value { } })",
       "routeFaultInjection[r]"},
      {std::string(kPolicyHead) + R"(route_fault_injection { key: "shop/r#" value { } })",
       "routeFaultInjection[shop/r#]"},
  };
  for (const BadRoute& c : cases) {
    absl::Status st = TrafficPolicyFromProto(Parse<pb::TrafficPolicy>(c.text)).status();
    std::optional<ConfigError> e = GetConfigError(st);
    ASSERT_TRUE(e.has_value()) << c.text << " -> " << st;
    EXPECT_EQ(e->path, c.path) << c.text << " -> " << st;
  }
}

}  // namespace
}  // namespace weft::config
