// The per-object conversions' structured errors. The conversions' full rule set is exercised
// through ztunnel's snapshots (ztunnel/state/snapshot_test.cc) and weftd's objects
// (controlplane/model/model_test.cc); here: errors carry a path and a reason, not just text.
#include "config/model/convert.h"

#include <gtest/gtest.h>

namespace weft::config {
namespace {

namespace pb = ::weft::config::v1;

ConfigError ErrorOf(const absl::Status& st) {
  std::optional<ConfigError> e = GetConfigError(st);
  EXPECT_TRUE(e.has_value()) << st;
  return e.value_or(ConfigError{});
}

TEST(ConfigErrorTest, CarriesPathAndReasonApartFromTheMessage) {
  absl::Status st = ConfigErrorStatus("rules[0].from[0]", "a: b: c");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "rules[0].from[0]: a: b: c");
  ConfigError e = ErrorOf(st);
  EXPECT_EQ(e.path, "rules[0].from[0]");
  EXPECT_EQ(e.reason, "a: b: c");
  EXPECT_EQ(e.ToString(), "rules[0].from[0]: a: b: c");
  EXPECT_FALSE(GetConfigError(absl::OkStatus()).has_value());
  EXPECT_FALSE(GetConfigError(absl::InvalidArgumentError("x: y")).has_value());
}

TEST(ConvertTest, AuthorizationPolicyErrorNamesTheFieldInsideTheObject) {
  pb::AuthorizationPolicy ap;
  ap.set_name("p");
  ap.set_namespace_("prod");
  ap.add_rules()->add_from()->mutable_source()->add_ip_blocks("10.0.0.0/33");
  ConfigError e = ErrorOf(AuthorizationPolicyFromProto(ap).status());
  EXPECT_EQ(e.path, "rules[0].from[0].source.ipBlocks[0]");
  EXPECT_EQ(e.reason.rfind("bad CIDR \"10.0.0.0/33\"", 0), 0u) << e.reason;

  ap.mutable_rules(0)->mutable_from(0)->mutable_source()->set_ip_blocks(0, "10.0.0.0/8");
  absl::StatusOr<AuthorizationPolicy> ok = AuthorizationPolicyFromProto(ap);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->key(), "prod/p");
  ASSERT_EQ(ok->rules.size(), 1u);
  ASSERT_EQ(ok->rules[0].from.size(), 1u);
  EXPECT_EQ(ok->rules[0].from[0].ip_blocks.size(), 1u);
}

TEST(ConvertTest, EveryNamedKindChecksNameThenNamespace) {
  EXPECT_EQ(ErrorOf(ServiceFromProto(pb::Service()).status()).path, "name");
  pb::PeerAuthentication pa;
  pa.set_name("x");
  ConfigError e = ErrorOf(PeerAuthenticationFromProto(pa).status());
  EXPECT_EQ(e.path, "namespace");
  EXPECT_EQ(e.reason, "is required");
  EXPECT_EQ(ErrorOf(NetworkPolicyFromProto(pb::NetworkPolicy()).status()).path, "name");
  EXPECT_EQ(ErrorOf(AuthorizationPolicyFromProto(pb::AuthorizationPolicy()).status()).path, "name");
  EXPECT_EQ(ErrorOf(WorkloadFromProto(pb::Workload(), "cluster.local").status()).path, "uid");
}

TEST(ConvertTest, RequestHeaderConditionsAreParsedForL7) {
  pb::Condition c;
  c.set_key("request.headers[X-User]");
  c.add_values("alice");
  c.add_values("*@example.com");
  c.add_values("a*b");  // Istio reads a '*' in the middle literally (exact match)
  c.add_not_values("*");
  auto out = AuthzConditionFromProto(c, "when[0]");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->kind, AuthzCondition::Kind::kL7);
  EXPECT_TRUE(out->has_l7());
  EXPECT_EQ(out->header_name, "x-user");
  ASSERT_EQ(out->match_values.size(), 3u);
  EXPECT_EQ(out->match_values[0].kind, StringMatch::Kind::kExact);
  EXPECT_EQ(out->match_values[1].kind, StringMatch::Kind::kSuffix);
  EXPECT_EQ(out->match_values[1].value, "@example.com");
  EXPECT_EQ(out->match_values[2].kind, StringMatch::Kind::kExact);
  ASSERT_EQ(out->not_match_values.size(), 1u);
  EXPECT_EQ(out->not_match_values[0].kind, StringMatch::Kind::kAny);

  // Other request.* keys, and malformed header keys, stay not evaluable (no header name).
  for (const char* key : {"request.auth.claims[iss]", "request.headers", "request.headers[]",
                          "request.headers[a]b]", "request.headersx[a]"}) {
    c.set_key(key);
    auto other = AuthzConditionFromProto(c, "when[0]");
    ASSERT_TRUE(other.ok()) << key << ": " << other.status();
    EXPECT_EQ(other->kind, AuthzCondition::Kind::kL7) << key;
    EXPECT_EQ(other->header_name, "") << key;
  }
}

TEST(ConvertTest, WorkloadDefaults) {
  pb::Workload w;
  w.set_uid("prod/a");
  w.set_namespace_("prod");
  w.add_addresses("10.0.0.1");
  absl::StatusOr<Workload> out = WorkloadFromProto(w, "example.org");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->service_account, "default");
  EXPECT_EQ(out->workload_name, "prod/a");
  EXPECT_EQ(out->trust_domain, "example.org");
  EXPECT_TRUE(out->running);

  w.add_addresses("10.0.0.1");
  ConfigError e = ErrorOf(WorkloadFromProto(w, "example.org").status());
  EXPECT_EQ(e.path, "addresses[1]");
  EXPECT_EQ(e.reason, "address 10.0.0.1 is listed twice");
}

TEST(ConvertTest, PeerAuthenticationPortLevelNeedsASelector) {
  pb::PeerAuthentication pa;
  pa.set_name("x");
  pa.set_namespace_("prod");
  (*pa.mutable_port_level_mtls())[8080].set_mode(pb::PeerAuthentication::STRICT);
  EXPECT_EQ(ErrorOf(PeerAuthenticationFromProto(pa).status()).path, "portLevelMtls");
  (*pa.mutable_selector()->mutable_match_labels())["app"] = "db";
  absl::StatusOr<PeerAuthentication> ok = PeerAuthenticationFromProto(pa);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->port_modes.at(8080), MtlsMode::kStrict);
}

}  // namespace
}  // namespace weft::config
