#include "cli/validate.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/commands.h"

namespace weft::cli {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "weft-validate-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& text) const {
    std::string p = path_ + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

constexpr char kGood[] = R"(apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {weft.dev/mesh: enabled}}
---
apiVersion: security.weft.dev/v1
kind: AuthorizationPolicy
metadata: {name: allow-web, namespace: prod}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{from: [{source: {principals: [cluster.local/ns/prod/sa/web]}}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: prod}
)";

constexpr char kBad[] = R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]}]
---
apiVersion: security.weft.dev/v1
kind: AuthorizationPolicy
metadata: {name: custom, namespace: prod}
spec: {action: CUSTOM, rules: [{}]}
)";

int Validate(const std::vector<std::string>& args, std::string* out) {
  std::ostringstream o, e;
  int rc = ValidateMain(args, o, e);
  *out = o.str() + e.str();
  return rc;
}

TEST(ValidateTest, GoodFilesExitZero) {
  TempDir dir;
  std::string out;
  EXPECT_EQ(Validate({dir.Write("good.yaml", kGood)}, &out), kExitOk) << out;
  EXPECT_EQ(out, "1 file, 3 objects (1 of unused kinds), 0 unreadable files, 0 rejected\n");
}

TEST(ValidateTest, RejectedObjectsArePrintedWithReasonsAndExitOne) {
  TempDir dir;
  const std::string bad = dir.Write("bad.yaml", kBad);
  std::string out;
  EXPECT_EQ(Validate({dir.Write("good.yaml", kGood), bad}, &out), kExitFailure);
  EXPECT_EQ(out, bad +
                     ": AuthorizationPolicy prod/custom: spec.action: CUSTOM action is not "
                     "supported (no external authorizer to ask)\n"
                     "  -> fail-closed: enforced as a DENY of what its rules select\n" +
                     bad +
                     ": NetworkPolicy prod/db: spec.ingress[0].from[0].ipBlock.except[0]: "
                     "\"192.168.0.0/16\" is not inside cidr \"10.0.0.0/8\"\n"
                     "  -> fail-closed: denies all ingress to the pods it selects (other "
                     "NetworkPolicies' rules still apply)\n"
                     "2 files, 5 objects (1 of unused kinds), 0 unreadable files, 2 rejected "
                     "(2 policies enforced fail-closed)\n");
}

TEST(ValidateTest, UnreadableFilesAndDuplicatesAcrossFiles) {
  TempDir dir;
  dir.Write("a.yaml", kGood);
  dir.Write("b.yml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n");
  dir.Write("c.json", "{\"kind\": [}");
  dir.Write("notes.txt", "ignored");
  std::string out;
  EXPECT_EQ(Validate({dir.path()}, &out), kExitFailure);
  EXPECT_NE(out.find(dir.path() + "/b.yml: Namespace prod: already defined by " + dir.path() +
                     "/a.yaml\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find(dir.path() + "/c.json: YAML syntax error"), std::string::npos) << out;
  EXPECT_NE(out.find("3 files, 4 objects (1 of unused kinds), 1 unreadable file, 1 rejected\n"),
            std::string::npos)
      << out;
}

// Istio's own policies, unchanged: read as Weft's (same checks, same fail-closed forms); a
// Weft and an Istio policy of the same namespace/name are one object, defined twice.
TEST(ValidateTest, IstioPoliciesAreReadAsWeftsOwn) {
  TempDir dir;
  const std::string istio = dir.Write("istio.yaml", R"(apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-web, namespace: prod}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{from: [{source: {principals: [cluster.local/ns/prod/sa/web]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-jobs, namespace: prod}
spec: {action: DENY, rules: [{from: [{source: {namespaces: [jobs]}}]}]}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: strict, namespace: prod}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: custom, namespace: prod}
spec: {action: CUSTOM, provider: {name: ext-authz}, rules: [{}]}
---
apiVersion: security.istio.io/v2
kind: PeerAuthentication
metadata: {name: future, namespace: prod}
spec: {mtls: {mode: DISABLE}}
)");
  std::string out;
  EXPECT_EQ(Validate({dir.Write("good.yaml", kGood), istio}, &out), kExitFailure);
  EXPECT_EQ(out,
            istio + ": AuthorizationPolicy prod/allow-web: already defined by " + dir.path() +
                "/good.yaml\n" + istio +
                ": AuthorizationPolicy prod/custom: spec.action: CUSTOM action is not "
                "supported (no external authorizer to ask)\n"
                "  -> fail-closed: enforced as a DENY of what its rules select\n" +
                istio +
                ": PeerAuthentication prod/future: apiVersion: \"security.istio.io/v2\" is "
                "not supported for PeerAuthentication (want security.weft.dev/v1, "
                "security.istio.io/v1 or security.istio.io/v1beta1)\n"
                "  -> fail-closed: enforced as STRICT mTLS on every port for every "
                "workload in namespace prod (in the whole mesh if that is the root namespace)\n"
                "2 files, 8 objects (1 of unused kinds), 0 unreadable files, 3 rejected "
                "(2 policies enforced fail-closed)\n");
}

// Routes and TrafficPolicies: the same checks as weftd (field path and reason), and a note
// for what their status would say against the Services of the files.
TEST(ValidateTest, RoutesAndTrafficPolicies) {
  TempDir dir;
  const std::string file = dir.Write("traffic.yaml", R"(
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: prod}
spec: {clusterIP: 10.96.0.10, ports: [{port: 9080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: canary, namespace: prod}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules: [{backendRefs: [{name: reviews-v2, port: 9080, weight: 10}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad, namespace: prod}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules: [{matches: [{path: {type: RegularExpression, value: "/(v1"}}]}]
---
apiVersion: networking.weft.dev/v1
kind: TrafficPolicy
metadata: {name: reviews, namespace: prod}
spec: {targetRefs: [{kind: Service, name: reviews}], connectionPool: {maxConnections: -1}}
)");
  std::string out;
  EXPECT_EQ(Validate({file}, &out), kExitFailure);
  EXPECT_EQ(out, file +
                     ": HTTPRoute prod/bad: spec.rules[0].matches[0].path.value: \"/(v1\" is not a "
                     "valid RE2 regular expression: missing ): /(v1\n"
                     "  -> not applied: each Service parent's status says Accepted=False "
                     "(UnsupportedValue); traffic is routed as if the route did not exist\n" +
                     file +
                     ": TrafficPolicy prod/reviews: spec.connectionPool.maxConnections: -1 is out "
                     "of range 0-4294967295\n"
                     "note: HTTPRoute prod/bad -> Service prod/reviews: Accepted=False "
                     "UnsupportedValue: spec.rules[0].matches[0].path.value: \"/(v1\" is not a "
                     "valid RE2 regular expression: missing ): /(v1\n"
                     "note: HTTPRoute prod/canary -> Service prod/reviews: ResolvedRefs=False "
                     "BackendNotFound: spec.rules[0].backendRefs[0]: Service prod/reviews-v2 does "
                     "not exist (requests for an unresolved backendRef are answered 500)\n"
                     "1 file, 4 objects (0 of unused kinds), 0 unreadable files, 2 rejected\n");
}

TEST(ValidateTest, UsageErrors) {
  std::string out;
  EXPECT_EQ(Validate({}, &out), kExitUsage);
  EXPECT_EQ(Validate({"--strict"}, &out), kExitUsage);
  EXPECT_EQ(Validate({"--help"}, &out), kExitOk);
  EXPECT_NE(out.find("Usage: weftctl validate"), std::string::npos);
}

// The real binary, as a CI pipeline runs it: the exit status is what matters there.
TEST(ValidateTest, WeftctlExitStatus) {
  TempDir dir;
  const std::string good = dir.Write("good.yaml", kGood);
  const std::string bad = dir.Write("bad.yaml", kBad);
  auto status = [](const std::string& cmd) {
    int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  };
  EXPECT_EQ(status(std::string(WEFTCTL_PATH) + " validate " + good), 0);
  EXPECT_EQ(status(std::string(WEFTCTL_PATH) + " validate " + good + " " + bad), 1);
  EXPECT_EQ(status(std::string(WEFTCTL_PATH) + " validate " + dir.path() + "/missing.yaml"), 1);
  EXPECT_EQ(status(std::string(WEFTCTL_PATH) + " validate"), 2);
}

}  // namespace
}  // namespace weft::cli
