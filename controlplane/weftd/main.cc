// weftd: thin main over weft_cp_weftd (controlplane/weftd/weftd.h).
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "controlplane/weftd/weftd.h"

namespace {

const char kUsage[] =
    "usage: weftd (--manifests DIR | --kubernetes [--kubeconfig FILE] [--api-server URL]\n"
    "                                 [--namespace NS])\n"
    "             [--grpc ADDR:PORT] [--state-dir DIR] [--node-tokens NODE,...] [--plaintext]\n"
    "             [--trust-domain TD] [--admin ADDR] [--metrics ADDR] [--readiness ADDR]\n"
    "             [--debounce-ms N] [--ztunnel-sa USER] [--log-level LEVEL]\n"
    "  --manifests DIR     local source: Kubernetes YAML/JSON manifests, re-read on change\n"
    "  --kubernetes        Kubernetes source: list+watch (in-cluster, or "
    "--kubeconfig/--api-server)\n"
    "  --namespace NS      cluster mode: weftd's namespace (default weft-system). The CA root\n"
    "                      (cert + key) is kept in Secret NS/weft-ca-root; its certificate is\n"
    "                      published for nodes in ConfigMap NS/weft-ca-root-cert, key\n"
    "                      root-cert.pem (mount it; pass the file as the nodes' --cp-root)\n"
    "  --grpc ADDR:PORT    config stream + CA (default 0.0.0.0:15012; TLS with a certificate from\n"
    "                      weftd's own CA unless --plaintext)\n"
    "  --state-dir DIR     local mode: CA root in DIR/ca (root-cert.pem, root-key.pem) and node\n"
    "                      tokens (DIR/tokens); default /var/lib/weft. Nodes trust\n"
    "                      DIR/ca/root-cert.pem: copy it to them and pass it as --cp-root\n"
    "  --node-tokens LIST  local mode: create a bootstrap token for each node "
    "(DIR/tokens/N.token)\n"
    "  --ztunnel-sa USER   cluster mode: a service account whose (node-bound) tokens nodes\n"
    "                      present, repeatable (default system:serviceaccount:NS:ztunnel)\n"
    "  --admin ADDR        /status and /config_dump?node=N (default 127.0.0.1:15010)\n"
    "  --metrics ADDR      /metrics (default 0.0.0.0:15014)\n"
    "  --readiness ADDR    /healthz/ready (default 0.0.0.0:15015)\n";

int Fail(const std::string& msg) {
  std::fprintf(stderr, "weftd: %s\n\n%s", msg.c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  weft::cp::WeftdOptions o;
  std::string level = "info";
  std::vector<std::string> ztunnel_sas;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    auto addr = [&](weft::SockAddr* out) -> bool {
      const char* v = next();
      if (!v) return false;
      auto p = weft::SockAddr::Parse(v);
      if (!p.ok()) return false;
      *out = *p;
      return true;
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--manifests") {
      const char* v = next();
      if (!v) return Fail("--manifests needs a directory");
      o.manifests_dir = v;
    } else if (a == "--kubernetes") {
      o.kubernetes = true;
    } else if (a == "--kubeconfig") {
      const char* v = next();
      if (!v) return Fail("--kubeconfig needs a file");
      o.kubeconfig = v;
    } else if (a == "--namespace") {
      const char* v = next();
      if (!v) return Fail("--namespace needs a namespace");
      o.k8s_namespace = v;
    } else if (a == "--api-server") {
      const char* v = next();
      if (!v) return Fail("--api-server needs a URL");
      o.api_server = v;
    } else if (a == "--grpc") {
      const char* v = next();
      if (!v) return Fail("--grpc needs ADDR:PORT");
      o.grpc_addr = v;
    } else if (a == "--state-dir") {
      const char* v = next();
      if (!v) return Fail("--state-dir needs a directory");
      o.state_dir = v;
    } else if (a == "--node-tokens") {
      const char* v = next();
      if (!v) return Fail("--node-tokens needs a comma-separated list of node names");
      for (auto n : absl::StrSplit(v, ',', absl::SkipEmpty())) o.node_tokens.emplace_back(n);
    } else if (a == "--ztunnel-sa") {
      const char* v = next();
      if (!v)
        return Fail("--ztunnel-sa needs a user, e.g. system:serviceaccount:weft-system:ztunnel");
      ztunnel_sas.emplace_back(v);
    } else if (a == "--plaintext") {
      o.plaintext = true;
    } else if (a == "--trust-domain") {
      const char* v = next();
      if (!v) return Fail("--trust-domain needs a value");
      o.trust_domain = v;
    } else if (a == "--admin") {
      if (!addr(&o.admin_addr)) return Fail("--admin needs ADDR:PORT");
    } else if (a == "--metrics") {
      if (!addr(&o.metrics_addr)) return Fail("--metrics needs ADDR:PORT");
    } else if (a == "--readiness") {
      if (!addr(&o.readiness_addr)) return Fail("--readiness needs ADDR:PORT");
    } else if (a == "--debounce-ms") {
      const char* v = next();
      int ms = 0;
      if (!v || !absl::SimpleAtoi(v, &ms) || ms < 0) return Fail("--debounce-ms needs a number");
      o.debounce = std::chrono::milliseconds(ms);
    } else if (a == "--log-level") {
      const char* v = next();
      weft::log::Level l;
      if (!v || !weft::log::ParseLevel(v, &l)) return Fail("--log-level: debug|info|warn|error");
      weft::log::SetLevel(l);
    } else {
      return Fail("unknown argument \"" + std::string(a) + "\"");
    }
  }
  // Names that follow weftd's namespace unless given: the ztunnel service account whose tokens
  // nodes present, and the DNS name in weftd's serving certificate (weftd.<ns>.svc).
  o.ztunnel_service_accounts =
      ztunnel_sas.empty()
          ? std::vector<std::string>{"system:serviceaccount:" + o.k8s_namespace + ":ztunnel"}
          : ztunnel_sas;
  o.serving_names = {"weftd." + o.k8s_namespace + ".svc", "localhost"};
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  weft::cp::Weftd weftd(o);
  absl::Status st = weftd.Start();
  if (!st.ok()) {
    std::fprintf(stderr, "weftd: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  int sig = 0;
  sigwait(&sigs, &sig);
  LOG_INFO("weftd", "signal received; stopping", {{"signal", strsignal(sig)}});
  weftd.Stop();
  return 0;
}
