// weftd: thin main over weft_cp_weftd (controlplane/weftd/weftd.h).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/log.h"
#include "common/signals.h"
#include "controlplane/weftd/weftd.h"

namespace {

void AddFlags(CLI::App& app, weft::cp::WeftdOptions& o, std::vector<std::string>& node_tokens,
              std::vector<std::string>& ztunnel_sas, int& debounce_ms) {
  weft::SetUsage(app,
                 "weftd (--manifests DIR | --kubernetes [--kubeconfig FILE] [--api-server URL]\n"
                 "                               [--namespace NS]) [options]");
  app.add_option("--manifests", o.manifests_dir,
                 "local source: Kubernetes YAML/JSON manifests, re-read on change")
      ->type_name("DIR");
  app.add_flag("--kubernetes", o.kubernetes,
               "Kubernetes source: list+watch (in-cluster, or --kubeconfig/--api-server)");
  app.add_option("--kubeconfig", o.kubeconfig, "cluster mode: kubeconfig file")->type_name("FILE");
  app.add_option("--api-server", o.api_server,
                 "cluster mode: API server URL, e.g. http://127.0.0.1:8001 (kubectl proxy)")
      ->type_name("URL");
  app.add_option("--namespace", o.k8s_namespace,
                 "cluster mode: weftd's namespace. The CA root (cert + key) is kept in Secret "
                 "NS/weft-ca-root; its certificate is published for nodes in ConfigMap "
                 "NS/weft-ca-root-cert, key root-cert.pem (mount it; pass the file as the nodes' "
                 "--cp-root)")
      ->type_name("NS")
      ->capture_default_str();
  app.add_option("--istio-policies", o.istio_policies,
                 "cluster mode: also read Istio's security.istio.io/v1 (or, where only that is "
                 "served, v1beta1) AuthorizationPolicy and PeerAuthentication (as Weft's own; "
                 "skipped quietly while Istio's CRDs are not installed); false to ignore them")
      ->type_name("BOOL")
      ->default_str("true");
  app.add_option("--grpc", o.grpc_addr,
                 "config stream + CA (TLS with a certificate from weftd's own CA unless "
                 "--plaintext)")
      ->type_name("ADDR:PORT")
      ->capture_default_str();
  app.add_option("--state-dir", o.state_dir,
                 "local mode: CA root in DIR/ca (root-cert.pem, root-key.pem) and node tokens "
                 "(DIR/tokens). Nodes trust DIR/ca/root-cert.pem: copy it to them and pass it as "
                 "--cp-root")
      ->type_name("DIR")
      ->capture_default_str();
  app.add_option("--node-tokens", node_tokens,
                 "local mode: create a bootstrap token for each node (DIR/tokens/N.token)")
      ->type_name("LIST")
      ->delimiter(',');
  app.add_option("--ztunnel-sa", ztunnel_sas,
                 "cluster mode: a service account whose (node-bound) tokens nodes present, "
                 "repeatable (default system:serviceaccount:NS:ztunnel)")
      ->type_name("USER");
  app.add_option("--ca-audience", o.ca_audience,
                 "cluster mode: the audience node tokens must be valid for (the nodes' projected "
                 "serviceAccountToken audience)")
      ->type_name("AUD")
      ->capture_default_str();
  app.add_option("--pod-netns-prefix", o.pod_netns_prefix,
                 "local mode: Pods may carry annotation weft.dev/netns-path naming a network "
                 "namespace PREFIX<name> (weftctl up sets it; without it the annotation is "
                 "refused)")
      ->type_name("PREFIX");
  app.add_flag("--plaintext", o.plaintext, "gRPC without TLS (tests, loopback only)");
  app.add_option("--trust-domain", o.trust_domain, "the mesh's SPIFFE trust domain")
      ->type_name("TD")
      ->capture_default_str();
  weft::AddSockAddrFlag(app, "--admin", &o.admin_addr, "/status and /config_dump?node=N");
  weft::AddSockAddrFlag(app, "--metrics", &o.metrics_addr, "/metrics");
  weft::AddSockAddrFlag(app, "--readiness", &o.readiness_addr, "/healthz/ready");
  app.add_option("--debounce-ms", debounce_ms,
                 "wait this long after a change for more before pushing config")
      ->type_name("N")
      ->capture_default_str()
      ->check(CLI::Range(0, std::numeric_limits<int>::max()).description(""));
  weft::AddLogLevelFlag(app);
}

}  // namespace

int main(int argc, char** argv) {
  weft::cp::WeftdOptions o;
  std::vector<std::string> node_tokens, ztunnel_sas;
  int debounce_ms = static_cast<int>(o.debounce.count());
  CLI::App app("weftd: Weft's control plane", "weftd");
  AddFlags(app, o, node_tokens, ztunnel_sas, debounce_ms);
  if (auto code = weft::ParseFlags(app, argc, argv)) return *code;
  for (std::string& n : node_tokens) {
    if (!n.empty()) o.node_tokens.push_back(std::move(n));
  }
  o.debounce = std::chrono::milliseconds(debounce_ms);
  // Names that follow weftd's namespace unless given: the ztunnel service account whose tokens
  // nodes present, and the DNS name in weftd's serving certificate (weftd.<ns>.svc).
  o.ztunnel_service_accounts =
      ztunnel_sas.empty()
          ? std::vector<std::string>{"system:serviceaccount:" + o.k8s_namespace + ":ztunnel"}
          : ztunnel_sas;
  o.serving_names = {"weftd." + o.k8s_namespace + ".svc", "localhost"};
  weft::BlockTerminationSignals();

  weft::cp::Weftd weftd(o);
  absl::Status st = weftd.Start();
  if (!st.ok()) {
    std::fprintf(stderr, "weftd: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  int sig = weft::WaitForTerminationSignal();
  LOG_INFO("weftd", "signal received; stopping", {{"signal", strsignal(sig)}});
  weftd.Stop();
  return 0;
}
