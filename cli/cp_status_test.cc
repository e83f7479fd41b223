// `weftctl status` rendering of a recorded weftd /status document: streams, rejected objects,
// the CA section and per-node certificate expiries with EXPIRED / RENEW OVERDUE flags.
#include <gtest/gtest.h>

#include "absl/time/time.h"
#include "cli/cp_status.h"

namespace weft::cli {
namespace {

// Recorded from weftd --kubernetes (tests/integration/weftd_k8s_test.cc), node-b's
// certificates edited to be near and past expiry.
constexpr char kStatus[] = R"({
  "source": "kubernetes",
  "model_generation": 14,
  "nodes": [{"name": "node-a", "identities": ["spiffe://cluster.local/ns/shop/sa/frontend"]}],
  "streams": [{"node": "node-a", "component": "ztunnel", "peer": "ipv4:127.0.0.1:40212",
               "connected": true, "version_sent": "14", "version_acked": "14", "acks": 2,
               "nacks": 0, "last_nack_version": "", "last_nack_error": "",
               "connected_at": "2026-11-27T08:00:00Z", "last_ack_at": "2026-11-27T08:10:00Z"}],
  "rejected": [],
  "file_errors": [],
  "ca": {
    "root": "ConfigMap weft-test/weft-ca-root-cert key root-cert.pem",
    "root_store": "Secret weft-test/weft-ca-root",
    "root_expires": "2036-11-25T08:00:00Z",
    "issued": 4, "refused_permission_denied": 1, "refused_unauthenticated": 1,
    "certificates": [
      {"node": "node-b", "identity": "spiffe://cluster.local/ns/shop/sa/catalogue",
       "serial": "5C1A", "not_before": "2026-11-26T11:59:00Z",
       "not_after": "2026-11-27T12:00:00Z", "issued_at": "2026-11-26T12:00:00Z"},
      {"node": "node-a", "identity": "spiffe://cluster.local/ns/shop/sa/frontend",
       "serial": "7F00A1", "not_before": "2026-11-27T07:59:00Z",
       "not_after": "2026-11-28T08:00:00Z", "issued_at": "2026-11-27T08:00:00Z"},
      {"node": "node-b", "identity": "spiffe://cluster.local/ns/shop/sa/db",
       "serial": "0D", "not_before": "2026-11-25T09:59:00Z",
       "not_after": "2026-11-26T10:00:00Z", "issued_at": "2026-11-25T10:00:00Z"}
    ]
  }
})";

std::chrono::system_clock::time_point At(const char* iso) {
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, iso, &t, &err)) << err;
  return absl::ToChronoTime(t);
}

TEST(RenderStatus, CertificateExpiriesPerNodeWithFlags) {
  std::string out = RenderStatus(nlohmann::json::parse(kStatus), At("2026-11-27T09:00:00Z"));
  // The CA section: where nodes get the root, where weftd keeps it, counters.
  EXPECT_NE(out.find("root for nodes (--cp-root): ConfigMap weft-test/weft-ca-root-cert key "
                     "root-cert.pem\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("root kept in: Secret weft-test/weft-ca-root\n"), std::string::npos) << out;
  EXPECT_NE(out.find("root expires: 2036-11-25T08:00:00Z (in 3650d23h)"), std::string::npos) << out;
  EXPECT_NE(out.find("certificates issued: 4, refused (not on the node): 1, refused (bad "
                     "credential): 1"),
            std::string::npos)
      << out;
  // Per node, sorted by node; each identity's expiry and time left.
  const std::string expected =
      "CERTIFICATES (the newest issued per node and identity)\n"
      "  node-a\n"
      "    spiffe://cluster.local/ns/shop/sa/frontend   expires 2026-11-28T08:00:00Z  in 23h0m\n"
      "  node-b\n"
      "    spiffe://cluster.local/ns/shop/sa/catalogue  expires 2026-11-27T12:00:00Z  in 3h0m"
      "  RENEW OVERDUE (88% of its lifetime used; nodes renew at 50%)\n"
      "    spiffe://cluster.local/ns/shop/sa/db         expires 2026-11-26T10:00:00Z  EXPIRED "
      "23h0m ago\n";
  EXPECT_NE(out.find(expected), std::string::npos) << out;
  // The rest of the document still renders.
  EXPECT_NE(out.find("node-a           ztunnel   yes"), std::string::npos) << out;
  EXPECT_NE(out.find("REJECTED OBJECTS\n  none"), std::string::npos) << out;
}

TEST(RenderStatus, RejectedObjectsAndWhatIsEnforcedInsteadOfAPolicy) {
  auto doc = nlohmann::json::parse(kStatus);
  doc["rejected"] = nlohmann::json::parse(R"([
    {"source": "kubernetes", "kind": "AuthorizationPolicy", "namespace": "shop",
     "name": "sni-only", "reason": "spec.rules[0].when[0].key: unsupported condition key",
     "effect": "fail-closed: enforced as an ALLOW with no usable rule: it allows nothing"},
    {"source": "kubernetes", "kind": "Service", "namespace": "shop", "name": "db",
     "reason": "spec.clusterIP: bad IP address", "effect": ""}])");
  std::string out = RenderStatus(doc, At("2026-11-27T09:00:00Z"));
  EXPECT_NE(out.find("REJECTED OBJECTS\n"
                     "  AuthorizationPolicy shop/sni-only (kubernetes): spec.rules[0].when[0].key: "
                     "unsupported condition key\n"
                     "    -> fail-closed: enforced as an ALLOW with no usable rule: it allows "
                     "nothing\n"
                     "  Service shop/db (kubernetes): spec.clusterIP: bad IP address\n"),
            std::string::npos)
      << out;
}

TEST(RenderStatus, RoutesWithTheirParentsConditions) {
  auto doc = nlohmann::json::parse(kStatus);
  doc["routes"] = nlohmann::json::parse(R"([
    {"kind": "HTTPRoute", "namespace": "shop", "name": "canary", "generation": 3,
     "parents": [
       {"parentRef": {"group": "", "kind": "Service", "namespace": "shop", "name": "catalogue",
                      "port": 80},
        "conditions": [
          {"type": "Accepted", "status": "True", "reason": "Accepted",
           "message": "attached to Service shop/catalogue port 80"},
          {"type": "ResolvedRefs", "status": "False", "reason": "RefNotPermitted",
           "message": "spec.rules[0].backendRefs[0]: Service other/x is in another namespace"}]},
       {"parentRef": {"group": "", "kind": "Service", "namespace": "shop", "name": "gone"},
        "conditions": [{"type": "Accepted", "status": "False", "reason": "NoMatchingParent",
                        "message": "Service shop/gone does not exist"}]}]}])");
  std::string out = RenderStatus(doc, At("2026-11-27T09:00:00Z"));
  EXPECT_NE(out.find("ROUTES (status per Service parent)\n"
                     "  HTTPRoute shop/canary (generation 3)\n"
                     "    -> Service shop/catalogue port 80\n"
                     "       Accepted=True Accepted: attached to Service shop/catalogue port 80\n"
                     "       ResolvedRefs=False RefNotPermitted: spec.rules[0].backendRefs[0]: "
                     "Service other/x is in another namespace\n"
                     "    -> Service shop/gone\n"
                     "       Accepted=False NoMatchingParent: Service shop/gone does not exist\n"),
            std::string::npos)
      << out;
}

TEST(RenderStatus, NoCertificatesYetAndOlderWeftdDocuments) {
  auto doc = nlohmann::json::parse(kStatus);
  doc["ca"]["certificates"] = nlohmann::json::array();
  std::string out = RenderStatus(doc, At("2026-11-27T09:00:00Z"));
  EXPECT_NE(out.find("CERTIFICATES (the newest issued per node and identity)\n  none issued yet\n"),
            std::string::npos)
      << out;
  // A weftd without certificate records (older /status): no section, no crash.
  doc["ca"].erase("certificates");
  doc["ca"].erase("root_expires");
  out = RenderStatus(doc, At("2026-11-27T09:00:00Z"));
  EXPECT_EQ(out.find("CERTIFICATES"), std::string::npos) << out;
  EXPECT_NE(out.find("certificates issued: 4"), std::string::npos) << out;
  // Malformed times are shown as unknown rather than misread.
  doc["ca"]["certificates"] = {
      {{"node", "n"}, {"identity", "spiffe://x/ns/a/sa/b"}, {"not_after", "tomorrow"}}};
  out = RenderStatus(doc, At("2026-11-27T09:00:00Z"));
  EXPECT_NE(out.find("expires tomorrow  (expiry unknown)"), std::string::npos) << out;
}

}  // namespace
}  // namespace weft::cli
