// Istio's own validation cases (testdata/istio_validation/*.yaml, transcribed from istio/istio's
// tests and test data) run through weftd's model: Weft accepts what Istio accepts and rejects,
// with the reason, what Istio rejects, except for the differences each file lists (and
// docs/security.md names). A rejected policy is never dropped: it is enforced fail-closed.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/file.h"
#include "controlplane/model/model_testing.h"

namespace weft::cp {
namespace {

using model_testing::Upsert;
using model_testing::Yaml;
using nlohmann::json;
namespace pb = ::weft::config::v1;

constexpr const char* kApiVersions[] = {"security.istio.io/v1", "security.istio.io/v1beta1"};

struct Tally {
  int cases = 0;
  int istio_valid = 0;
  int istio_invalid = 0;
  int weft_accepted = 0;
  int weft_rejected = 0;
  std::set<std::string> differences;  // case names
};

json Object(const json& doc, const json& c, const char* api_version) {
  json o = {{"apiVersion", api_version},
            {"kind", c.contains("kind") ? c["kind"] : doc["kind"]},
            {"metadata", {{"name", "name"}, {"namespace", "namespace"}}},
            {"spec", c["spec"]}};
  if (c.contains("annotations")) o["metadata"]["annotations"] = c["annotations"];
  return o;
}

void RunCase(const json& doc, const json& c, Tally& tally) {
  const std::string name = c["name"].get<std::string>();
  SCOPED_TRACE(name);
  ASSERT_TRUE(c["istio"] == "valid" || c["istio"] == "invalid") << c.dump();
  const bool istio_valid = c["istio"] == "valid";
  const bool differs = c.contains("difference");
  // Weft never accepts what Istio rejects: every difference is Weft refusing more.
  ASSERT_FALSE(differs && !istio_valid) << "a difference must be an Istio-valid case";
  ASSERT_TRUE(!differs || !c["difference"].get<std::string>().empty());
  const bool want_accepted = istio_valid && !differs;
  ASSERT_EQ(c.contains("reason"), !want_accepted) << "a rejected case names its reason";
  for (const char* api_version : kApiVersions) {
    SCOPED_TRACE(api_version);
    Model model;
    absl::Status st = model.Apply(Upsert(Object(doc, c, api_version)));
    if (want_accepted) {
      EXPECT_TRUE(st.ok()) << "Istio accepts it, Weft rejected it: " << st;
      EXPECT_TRUE(model.Rejected().empty());
      continue;
    }
    ASSERT_FALSE(st.ok()) << (istio_valid ? "listed as a difference but accepted"
                                          : "Istio rejects it, Weft accepted it");
    const std::string reason = c["reason"].get<std::string>();
    EXPECT_NE(std::string(st.message()).find(reason), std::string::npos)
        << "want the reason to contain: " << reason << "\ngot: " << st.message();
    // Never dropped: listed with what is enforced instead.
    ASSERT_EQ(model.Rejected().size(), 1u);
    EXPECT_TRUE(model.Rejected()[0].effect.starts_with("fail-closed: "))
        << model.Rejected()[0].effect;
  }
  ++tally.cases;
  ++(istio_valid ? tally.istio_valid : tally.istio_invalid);
  ++(want_accepted ? tally.weft_accepted : tally.weft_rejected);
  if (differs) tally.differences.insert(name);
}

Tally RunFile(const std::string& file) {
  const std::string path = std::string(WEFT_MODEL_TESTDATA) + "/istio_validation/" + file;
  json doc = Yaml(ReadFile(path).value());
  EXPECT_TRUE(doc.is_object() && doc["cases"].is_array()) << path;
  EXPECT_TRUE(doc.contains("source")) << "each file says where its cases come from";
  Tally tally;
  for (const json& c : doc["cases"]) RunCase(doc, c, tally);
  std::cout << file << ": " << tally.cases << " cases (Istio: " << tally.istio_valid << " valid, "
            << tally.istio_invalid << " invalid; Weft: " << tally.weft_accepted << " accepted, "
            << tally.weft_rejected << " rejected, " << tally.differences.size()
            << " differences)\n";
  return tally;
}

// docs/security.md lists every difference by the case's name.
void ExpectDocumented(const Tally& tally) {
  const std::string docs = ReadFile(std::string(WEFT_DOCS_DIR) + "/security.md").value();
  for (const std::string& name : tally.differences) {
    EXPECT_NE(docs.find(absl::StrCat("`", name, "`")), std::string::npos)
        << "docs/security.md must list the difference `" << name << "`";
  }
}

TEST(IstioValidationTest, AuthorizationPolicyTestTable) {
  Tally t = RunFile("authorizationpolicy_test_table.yaml");
  EXPECT_EQ(t.cases, 67) << "every case of Istio's TestValidateAuthorizationPolicy";
  ExpectDocumented(t);
}

TEST(IstioValidationTest, PeerAuthenticationTestTable) {
  Tally t = RunFile("peerauthentication_test_table.yaml");
  EXPECT_EQ(t.cases, 9) << "every case of Istio's TestValidatePeerAuthentication";
  EXPECT_TRUE(t.differences.empty());
}

TEST(IstioValidationTest, CrdTestData) {
  Tally t = RunFile("crds_testdata.yaml");
  EXPECT_EQ(t.cases, 12) << "every object of authz-* and peerauth-*.yaml";
  ExpectDocumented(t);
}

TEST(IstioValidationTest, EveryWhenKey) {
  Tally t = RunFile("when_keys.yaml");
  ExpectDocumented(t);
}

// Istio's serviceAccounts, notServiceAccounts and source.serviceAccount are evaluated as the
// principals they name: "<ns>/<sa>", or "<sa>" in the policy's own namespace.
TEST(IstioValidationTest, ServiceAccountsAreThePrincipalsTheyName) {
  Model model;
  model_testing::ApplyAll(model, model_testing::kTwoNodes);
  absl::Status st = model.Apply(Upsert(Yaml(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-sa, namespace: prod}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - from: [{source: {serviceAccounts: [web, jobs/runner], notServiceAccounts: [prod/old]}}]
    when: [{key: source.serviceAccount, notValues: [jobs/batch]}]
)")));
  ASSERT_TRUE(st.ok()) << st;
  pb::ConfigSnapshot view = model.NodeView("node-b");
  ASSERT_EQ(view.authorization_policies_size(), 1);
  const pb::Rule& rule = view.authorization_policies(0).rules(0);
  ASSERT_EQ(rule.from_size(), 1);
  pb::Source want;
  want.add_principals("*/ns/prod/sa/web");
  want.add_principals("*/ns/jobs/sa/runner");
  want.add_not_principals("*/ns/prod/sa/old");
  EXPECT_EQ(model_testing::ToJson(rule.from(0).source()), model_testing::ToJson(want));
  ASSERT_EQ(rule.when_size(), 1);
  EXPECT_EQ(rule.when(0).key(), "source.principal");
  ASSERT_EQ(rule.when(0).not_values_size(), 1);
  EXPECT_EQ(rule.when(0).not_values(0), "*/ns/jobs/sa/batch");
}

// istio.io/dry-run takes what Istio's check takes (Go's strconv.ParseBool), nothing else.
TEST(IstioValidationTest, DryRunValuesAreGosParseBool) {
  for (const char* v : {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false",
                        "False", "yes", "on", ""}) {
    SCOPED_TRACE(v);
    json o = Yaml(
        "{apiVersion: security.istio.io/v1, kind: AuthorizationPolicy, metadata: {name: a, "
        "namespace: prod}, spec: {action: DENY, rules: [{}]}}");
    o["metadata"]["annotations"]["istio.io/dry-run"] = v;
    Model model;
    model_testing::ApplyAll(model, model_testing::kBase);
    absl::Status st = model.Apply(Upsert(o));
    const std::string s = v;
    const bool is_true =
        s == "1" || s == "t" || s == "T" || s == "TRUE" || s == "true" || s == "True";
    const bool is_false =
        s == "0" || s == "f" || s == "F" || s == "FALSE" || s == "false" || s == "False";
    EXPECT_EQ(st.ok(), is_true || is_false) << st;
    pb::ConfigSnapshot view = model.NodeView("node-a");
    int found = 0;
    for (const auto& p : view.authorization_policies()) {
      if (p.name() != "a") continue;
      ++found;
      EXPECT_EQ(p.dry_run(), is_true);
    }
    EXPECT_EQ(found, 1);
  }
}

}  // namespace
}  // namespace weft::cp
