#include "cli/demo/demo.h"

#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/commands.h"
#include "cli/demo/tea_shop.h"
#include "cli/localmesh/local_mesh.h"
#include "cli/testbed/testbed.h"
#include "common/scrape/scrape.h"
#include "common/status.h"

namespace weft::cli::demo {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr char kUsage[] =
    "Usage: weftctl demo [--nodes N] [--keep] [--work-dir DIR]\n"
    "\n"
    "Runs Weft for real on this machine (needs root): builds a local mesh of network\n"
    "namespaces with one ztunnel and one weft-agent per node, opens a small tea shop on it,\n"
    "and shows mTLS on the wire, Istio TCP metrics with peer identities, and an\n"
    "AuthorizationPolicy taking effect. Everything is removed at the end (or on Ctrl-C).\n"
    "Exits 0 only if every check held.\n"
    "\n"
    "Flags:\n"
    "  --nodes N        nodes in the mesh, 2..8 (default 2; the shop uses nodes 0 and 1)\n"
    "  --keep           after the checks, keep the mesh running until Ctrl-C\n"
    "  --work-dir DIR   certificates, mesh.yaml, logs and captures go here (default: a temp\n"
    "                   dir, removed afterwards unless --keep or a check failed)\n"
    "  -h, --help       show this help\n"
    "\n"
    "Binaries: ztunnel and weft-agent are taken from $WEFT_ZTUNNEL_BIN / $WEFT_AGENT_BIN, else\n"
    "$WEFT_BIN_DIR, else the build tree weftctl runs from, else weftctl's own directory.\n"
    "Needs iproute2 (ip), iptables-restore, and tshark (plus dumpcap or tcpdump) for captures.\n";

constexpr uint16_t kAppPort = 8080;
constexpr char kVip[] = "10.96.0.10";
constexpr uint16_t kVipPort = 80;
constexpr char kPolicyName[] = "deny-frontend-to-cart";
constexpr auto kTrafficTime = 3s;

// ---------------------------------------------------------------------------------------------
// Ctrl-C: the handler only sets a flag; every step checks it and unwinds normally, so the
// LocalMesh destructor removes namespaces and processes. SA_RESETHAND makes a second Ctrl-C
// kill at once (the next `weftctl demo` removes whatever that leaves behind).

std::atomic<bool> g_interrupted{false};

void OnSignal(int) {
  g_interrupted = true;
  constexpr char kMsg[] = "\n==> interrupted: cleaning up (press Ctrl-C again to quit at once)\n";
  ssize_t ignored = write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
  (void)ignored;
}

class SignalGuard {
 public:
  SignalGuard() {
    g_interrupted = false;
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sa.sa_flags = SA_RESETHAND;  // no SA_RESTART: blocking calls return EINTR and re-check
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalGuard() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {
  }, old_term_{};
};

bool Interrupted() {
  return g_interrupted.load();
}

// Sleeps `d` unless interrupted; returns false if interrupted.
bool Sleep(std::chrono::milliseconds d) {
  auto end = Clock::now() + d;
  while (!Interrupted()) {
    auto left = end - Clock::now();
    if (left <= 0s) return true;
    std::this_thread::sleep_for(std::min<Clock::duration>(left, 50ms));
  }
  return false;
}

absl::Status InterruptedError() {
  return absl::CancelledError("interrupted (Ctrl-C)");
}

bool IsExecutable(const std::string& path) {
  return !path.empty() && access(path.c_str(), X_OK) == 0 && std::filesystem::is_regular_file(path);
}

std::optional<std::string> InPath(const std::string& name) {
  const char* env = getenv("PATH");
  std::string path = env ? env : "";
  path += ":/usr/sbin:/sbin:/usr/bin:/bin";
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    std::string p = dir + "/" + name;
    if (IsExecutable(p)) return p;
  }
  return std::nullopt;
}

std::string RandomToken(std::string_view prefix) {
  std::mt19937_64 rng(std::random_device{}());
  std::ostringstream s;
  s << prefix << std::hex << rng();
  return s.str();
}

std::string Spiffe(const std::string& ns, const std::string& sa) {
  return "spiffe://cluster.local/ns/" + ns + "/sa/" + sa;
}

std::string Label(const MetricSample& s, const std::string& key) {
  auto it = s.labels.find(key);
  return it == s.labels.end() ? "" : it->second;
}

std::string FormatValue(double v) {
  if (v == static_cast<double>(static_cast<int64_t>(v))) return std::to_string(int64_t(v));
  return absl::StrCat(v);
}

// Prometheus' text form of one sample, restricted to `keys` (in that order) and leaving out
// labels that carry no information here.
std::string Render(const MetricSample& s, const std::vector<std::string>& keys) {
  std::vector<std::string> parts;
  for (const auto& k : keys) {
    std::string v = Label(s, k);
    if (v.empty() || v == "unknown") continue;
    parts.push_back(absl::StrCat(k, "=\"", v, "\""));
  }
  return absl::StrCat(s.name, "{", absl::StrJoin(parts, ","), "} ", FormatValue(s.value));
}

struct Check {
  std::string what;
  bool ok;
  std::string detail;
};

struct CallStats {
  int ok = 0;
  int failed = 0;
  std::string sample_reply;
  std::string first_error;
};

// ---------------------------------------------------------------------------------------------

class Demo {
 public:
  Demo(const DemoOptions& o, std::ostream& out, std::ostream& err) : o_(o), out_(out), err_(err) {}
  int Run();

 private:
  absl::Status Preflight();
  absl::Status BuildMesh();
  absl::Status OpenShop();
  absl::Status DriveTrafficAndCapture();
  absl::Status ShowMetrics();
  absl::Status ApplyPolicy();
  void WaitForCtrlC();

  void Step(const std::string& s) { out_ << "==> " << s << std::endl; }
  void Info(const std::string& s) { out_ << "    " << s << std::endl; }
  void Record(const std::string& what, bool ok, const std::string& detail = "") {
    checks_.push_back({what, ok, detail});
  }
  absl::StatusOr<UniqueFd> Netns(const std::string& pod) { return mesh_->PodNetns(pod); }
  SockAddr PodAddr(const std::string& pod) { return SockAddr{*mesh_->PodIp(pod), kAppPort}; }
  SockAddr VipAddr() { return SockAddr{*IpAddr::Parse(kVip), kVipPort}; }
  // One request; success means a reply of the right service that echoes `ref`.
  void Call(int netns_fd, const SockAddr& to, const std::string& request,
            const std::string& want_prefix, const std::string& ref, CallStats& st,
            std::chrono::milliseconds timeout = 3s);
  // The destination-side node of a pod.
  int NodeOf(const std::string& pod) const;

  DemoOptions o_;
  std::ostream& out_;
  std::ostream& err_;
  DemoBinaries bins_;
  bool temp_dir_ = false;
  std::unique_ptr<localmesh::LocalMesh> mesh_;
  std::unique_ptr<TeaServer> catalogue_, cart_;
  std::string marker_, legacy_marker_;
  std::vector<Check> checks_;
};

int Demo::NodeOf(const std::string& pod) const {
  for (const auto& p : mesh_->options().pods)
    if (p.name == pod) return p.node;
  return 0;
}

void Demo::Call(int netns_fd, const SockAddr& to, const std::string& request,
                const std::string& want_prefix, const std::string& ref, CallStats& st,
                std::chrono::milliseconds timeout) {
  auto r = TeaCall(netns_fd, to, request + " ref " + ref, timeout);
  bool good =
      r.ok() && r->rfind(want_prefix, 0) == 0 && r->find("[ref " + ref + "]") != std::string::npos;
  if (good) {
    st.ok++;
    if (st.sample_reply.empty()) st.sample_reply = *r;
    return;
  }
  st.failed++;
  if (st.first_error.empty())
    st.first_error = r.ok() ? "unexpected reply \"" + *r + "\"" : std::string(r.status().message());
}

absl::Status Demo::Preflight() {
  if (geteuid() != 0)
    return absl::PermissionDeniedError(
        "weftctl demo needs root: it creates network namespaces, veth pairs and iptables rules; "
        "run it with sudo");
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return absl::InternalError("cannot resolve /proc/self/exe");
  self[n] = '\0';
  WEFT_ASSIGN_OR_RETURN(bins_, FindDemoBinaries(self));
  std::vector<std::string> missing;
  for (const char* tool : {"ip", "iptables-restore", "tshark"})
    if (!InPath(tool)) missing.push_back(tool);
  if (!InPath("dumpcap") && !InPath("tcpdump") && !InPath("tshark"))
    missing.push_back("dumpcap or tcpdump");
  if (!missing.empty())
    return absl::FailedPreconditionError(
        absl::StrCat("missing tools: ", absl::StrJoin(missing, ", "),
                     "; install them (Debian: apt-get install iproute2 iptables tshark)"));
  if (o_.work_dir.empty()) {
    const char* base = getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/weft-demo-XXXXXX";
    if (!mkdtemp(tmpl.data())) return ErrnoError(errno, "mkdtemp " + tmpl);
    o_.work_dir = tmpl;
    temp_dir_ = true;
  } else {
    std::error_code ec;
    std::filesystem::create_directories(o_.work_dir, ec);
    if (ec)
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create --work-dir ", o_.work_dir, ": ", ec.message()));
    o_.work_dir = std::filesystem::absolute(o_.work_dir).string();
  }
  Info("ztunnel:    " + bins_.ztunnel);
  Info("weft-agent: " + bins_.agent);
  Info("work dir:   " + o_.work_dir);
  return absl::OkStatus();
}

absl::Status Demo::BuildMesh() {
  Step(absl::StrCat("building a ", o_.nodes,
                    "-node mesh (namespaces, certificates, one ztunnel + one weft-agent per "
                    "node) ..."));
  localmesh::Options m;
  m.role = "demo";
  m.nodes = o_.nodes;
  auto pod = [](std::string name, std::string ns, int node, bool mesh) {
    localmesh::MeshPod p;
    p.labels = {{"app", name}};
    p.service_account = name;
    p.name = std::move(name);
    p.ns = std::move(ns);
    p.node = node;
    p.mesh = mesh;
    return p;
  };
  m.pods = {pod("frontend", "shop", 0, true), pod("catalogue", "shop", 1, true),
            pod("cart", "shop", 1, true), pod("legacy", "legacy", 0, /*mesh=*/false)};
  m.services = {{.name = "catalogue",
                 .ns = "shop",
                 .vip = kVip,
                 .port = kVipPort,
                 .target_port = kAppPort,
                 .pods = {"catalogue"}}};
  m.ztunnel_bin = bins_.ztunnel;
  m.agent_bin = bins_.agent;
  m.work_dir = o_.work_dir;
  auto start = Clock::now();
  WEFT_ASSIGN_OR_RETURN(mesh_, localmesh::LocalMesh::Start(m));
  if (Interrupted()) return InterruptedError();
  auto& tb = mesh_->testbed();
  for (const auto& node : tb.nodes()) {
    std::vector<std::string> pods;
    for (const auto& p : tb.pods()) {
      if (p.node != node.index) continue;
      const localmesh::MeshPod* mp = nullptr;
      for (const auto& q : m.pods)
        if (q.name == p.name) mp = &q;
      pods.push_back(absl::StrCat(p.name, " ", p.ip.ToString(), " (",
                                  mp->mesh ? "identity " + Spiffe(mp->ns, mp->service_account)
                                           : "namespace " + mp->ns + ", not in the mesh",
                                  ")"));
    }
    Info(absl::StrCat("node", node.index, " ", node.ip.ToString(), ": ztunnel + weft-agent"));
    for (const auto& p : pods) Info("  pod " + p);
  }
  Info(absl::StrCat("service catalogue.shop ", kVip, ":", kVipPort, " -> catalogue:", kAppPort));
  Info(absl::StrCat(
      "testbed ", tb.prefix(), "-*, ready in ",
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count() / 1000.0,
      "s"));
  return absl::OkStatus();
}

absl::Status Demo::OpenShop() {
  Step(absl::StrCat("opening the tea shop: catalogue and cart servers on port ", kAppPort,
                    " in their pods ..."));
  SockAddr any{*IpAddr::Parse("0.0.0.0"), kAppPort};
  WEFT_ASSIGN_OR_RETURN(auto cns, Netns("catalogue"));
  WEFT_ASSIGN_OR_RETURN(catalogue_, TeaServer::Start(TeaService::kCatalogue, any, cns.get()));
  WEFT_ASSIGN_OR_RETURN(auto kns, Netns("cart"));
  WEFT_ASSIGN_OR_RETURN(cart_, TeaServer::Start(TeaService::kCart, any, kns.get()));
  return absl::OkStatus();
}

absl::Status Demo::DriveTrafficAndCapture() {
  WEFT_ASSIGN_OR_RETURN(auto node0, mesh_->testbed().NodeNetns(0));
  std::string iface = mesh_->testbed().NodeFabricIface(0);
  std::string pcap = o_.work_dir + "/fabric.pcap";
  Step(absl::StrCat("capturing on node0's fabric interface (", iface, ") into ", pcap, " ..."));
  WEFT_ASSIGN_OR_RETURN(auto cap, testbed::StartCapture(node0, iface, pcap, "tcp"));

  marker_ = RandomToken("tea-secret-");
  legacy_marker_ = RandomToken("legacy-secret-");
  Step(absl::StrCat("driving traffic from frontend for ", kTrafficTime.count(),
                    "s (every request carries the marker ", marker_, ") ..."));
  WEFT_ASSIGN_OR_RETURN(auto fns, Netns("frontend"));
  static const char* kWords[] = {"green", "black", "oolong", "china", "japan", "white", "pu"};
  static const char* kCartTeas[] = {"sencha", "assam", "tieguanyin", "rooibos", "matcha"};
  CallStats cat, cart;
  auto end = Clock::now() + kTrafficTime;
  for (int i = 0; Clock::now() < end && !Interrupted(); i++) {
    Call(fns.get(), VipAddr(), absl::StrCat("search ", kWords[i % std::size(kWords)]),
         "catalogue: ", marker_, cat);
    Call(fns.get(), PodAddr("cart"), absl::StrCat("add ", kCartTeas[i % std::size(kCartTeas)]),
         "cart: ", marker_, cart);
    Sleep(20ms);
  }
  // The contrast: a pod outside the mesh talks plain TCP across the same wire.
  WEFT_ASSIGN_OR_RETURN(auto lns, Netns("legacy"));
  CallStats legacy;
  Call(lns.get(), PodAddr("catalogue"), "count", "catalogue: ", legacy_marker_, legacy);
  WEFT_RETURN_IF_ERROR(cap.Stop());
  if (Interrupted()) return InterruptedError();

  auto report = [&](const std::string& what, const CallStats& st) {
    std::string line = absl::StrCat(what, ": ", st.ok, "/", st.ok + st.failed, " ok");
    if (!st.sample_reply.empty()) absl::StrAppend(&line, "   e.g. \"", st.sample_reply, "\"");
    Info(line);
    if (st.failed) Info("  first failure: " + st.first_error);
  };
  report(absl::StrCat("frontend -> catalogue.shop (", VipAddr().ToString(), ", the service VIP)"),
         cat);
  report(absl::StrCat("frontend -> cart (", PodAddr("cart").ToString(), ", the pod IP)"), cart);
  report(absl::StrCat("legacy -> catalogue (", PodAddr("catalogue").ToString(),
                      ", from outside the mesh)"),
         legacy);
  Info(absl::StrCat("catalogue served ", catalogue_->requests(), " requests, cart ",
                    cart_->requests()));
  Record("frontend -> catalogue via the service VIP", cat.ok > 0 && cat.failed == 0,
         absl::StrCat(cat.ok, "/", cat.ok + cat.failed, " ok ", cat.first_error));
  Record("frontend -> cart via the pod IP", cart.ok > 0 && cart.failed == 0,
         absl::StrCat(cart.ok, "/", cart.ok + cart.failed, " ok ", cart.first_error));
  Record("legacy (outside the mesh) -> catalogue in permissive mode", legacy.ok == 1,
         legacy.first_error);

  Step(absl::StrCat("what crossed the wire between the nodes (node0 ", iface, ")"));
  WEFT_ASSIGN_OR_RETURN(bool leaked, testbed::PcapContains(pcap, marker_));
  WEFT_ASSIGN_OR_RETURN(bool legacy_clear, testbed::PcapContains(pcap, legacy_marker_));
  WEFT_ASSIGN_OR_RETURN(auto stats, testbed::PcapSummary(pcap, {15008}));
  Info(absl::StrCat("captured ", stats.frames, " frames, ", stats.tcp_payload_bytes,
                    " bytes of TCP payload"));
  Info(absl::StrCat("payload marker found in clear: ", leaked ? "YES" : "no"));
  Info(absl::StrCat("TLS records seen: ", stats.tls_records, " (", stats.tls_handshake_records,
                    " handshake, ", stats.tls_app_data_records,
                    " application data) on HBONE port 15008"));
  Info(absl::StrCat("legacy's marker found in clear: ", legacy_clear ? "yes" : "no",
                    " (plain TCP: legacy is not in the mesh)"));
  bool tls = stats.tls_app_data_records > 0;
  if (!leaked && tls && legacy_clear) {
    Info("=> this proves mTLS between nodes: the mesh's bytes crossed the wire only inside TLS,");
    Info("   while the same capture shows a non-mesh pod's bytes in clear.");
  }
  Record("no clear-text payload of meshed pods on the wire", !leaked,
         leaked ? "the marker " + marker_ + " was found in " + pcap : "");
  Record("TLS records seen between the nodes", tls,
         absl::StrCat(stats.tls_records, " TLS records in ", pcap));
  Record("the capture sees clear text when there is some (legacy's marker)", legacy_clear,
         legacy_clear ? "" : "the capture did not show legacy's plain-text marker");
  return absl::OkStatus();
}

absl::Status Demo::ShowMetrics() {
  Step("istio_tcp_* metrics from both ztunnels (the shop's connections)");
  const std::vector<std::string> keys = {"reporter", "source_workload", "destination_workload",
                                         "destination_service", "connection_security_policy"};
  // Counters are updated when connections open and close; give the last ones a moment.
  std::map<int, std::vector<MetricSample>> by_node;
  auto want = [&](const MetricSample& s, const std::string& reporter, const std::string& src,
                  const std::string& dst) {
    return s.name == "istio_tcp_connections_opened_total" && Label(s, "reporter") == reporter &&
           Label(s, "source_principal") == src && Label(s, "destination_principal") == dst &&
           Label(s, "connection_security_policy") == "mutual_tls" && s.value > 0;
  };
  const std::string fe = Spiffe("shop", "frontend"), cat = Spiffe("shop", "catalogue");
  bool src_ok = false, dst_ok = false;
  auto deadline = Clock::now() + 5s;
  while (true) {
    by_node.clear();
    for (int n = 0; n < 2; n++) {
      WEFT_ASSIGN_OR_RETURN(std::string text, mesh_->Metrics(n));
      by_node[n] = ParseSamples(text, "istio_tcp_");
    }
    src_ok = std::any_of(by_node[0].begin(), by_node[0].end(),
                         [&](const auto& s) { return want(s, "source", fe, cat); });
    dst_ok = std::any_of(by_node[1].begin(), by_node[1].end(),
                         [&](const auto& s) { return want(s, "destination", fe, cat); });
    if ((src_ok && dst_ok) || Clock::now() > deadline) break;
    if (!Sleep(200ms)) return InterruptedError();
  }
  using Pair = std::tuple<std::string, std::string, std::string>;
  std::set<std::pair<int, Pair>> identities;
  for (auto& [node, samples] : by_node) {
    Info(absl::StrCat("node", node, " ztunnel:"));
    std::sort(samples.begin(), samples.end(), [](const auto& a, const auto& b) {
      return std::tie(a.name, a.labels) < std::tie(b.name, b.labels);
    });
    for (const auto& s : samples) {
      std::string dst = Label(s, "destination_workload");
      if (dst != "catalogue" && dst != "cart") continue;
      Info("  " + Render(s, keys));
      identities.insert({node, Pair{Label(s, "source_principal"), Label(s, "destination_principal"),
                                    Label(s, "connection_security_policy")}});
    }
  }
  Step("peer identities seen (source_principal -> destination_principal)");
  for (const auto& [node, p] : identities) {
    auto show = [](const std::string& v) { return v.empty() ? std::string("unknown") : v; };
    Info(absl::StrCat("node", node, ": ", show(std::get<0>(p)), " -> ", show(std::get<1>(p)), "  [",
                      show(std::get<2>(p)), "]"));
  }
  Record("source ztunnel reports frontend -> catalogue as mutual_tls with both identities", src_ok,
         "no matching istio_tcp_connections_opened_total on node0");
  Record("destination ztunnel reports frontend -> catalogue as mutual_tls with both identities",
         dst_ok, "no matching istio_tcp_connections_opened_total on node1");
  return absl::OkStatus();
}

absl::Status Demo::ApplyPolicy() {
  const std::string yaml = absl::StrCat(R"(- name: )", kPolicyName, R"(
  namespace: shop
  selector: {matchLabels: {app: cart}}
  action: DENY
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/shop/sa/frontend"]}
)");
  Step(absl::StrCat("applying AuthorizationPolicy shop/", kPolicyName,
                    " (security.weft.dev/v1): DENY frontend -> cart"));
  std::istringstream lines(yaml);
  for (std::string l; std::getline(lines, l);) Info("  " + l);
  WEFT_RETURN_IF_ERROR(mesh_->SetPolicies(yaml));
  Info(absl::StrCat("every ztunnel runs config ", mesh_->version()));
  if (Interrupted()) return InterruptedError();

  WEFT_ASSIGN_OR_RETURN(auto fns, Netns("frontend"));
  std::string ref = RandomToken("after-policy-");
  CallStats cart, cat;
  Call(fns.get(), PodAddr("cart"), "add sencha", "cart: ", ref, cart, 2s);
  Call(fns.get(), VipAddr(), "search oolong", "catalogue: ", ref, cat);
  Info(cart.ok ? "frontend -> cart: ok \"" + cart.sample_reply + "\" (expected a denial)"
               : "frontend -> cart: denied (" + cart.first_error + ")");
  Info(cat.ok ? "frontend -> catalogue.shop: ok \"" + cat.sample_reply + "\""
              : "frontend -> catalogue.shop: FAILED (" + cat.first_error + ")");
  Record("frontend -> cart is denied by the policy", cart.failed == 1 && cart.ok == 0,
         cart.ok ? "the call succeeded: " + cart.sample_reply : "");
  Record("frontend -> catalogue still works under the policy", cat.ok == 1, cat.first_error);

  int node = NodeOf("cart");
  std::vector<MetricSample> denials;
  double ours = 0;
  auto deadline = Clock::now() + 5s;
  while (true) {
    WEFT_ASSIGN_OR_RETURN(std::string text, mesh_->Metrics(node));
    denials = ParseSamples(text, "weft_policy_denials_total");
    ours = MetricSum(text, "weft_policy_denials_total",
                     {{"policy", absl::StrCat("shop/", kPolicyName)}});
    if (ours >= 1 || Clock::now() > deadline) break;
    if (!Sleep(100ms)) return InterruptedError();
  }
  Info(absl::StrCat("node", node, " ztunnel (cart's node, where the policy is enforced):"));
  if (denials.empty()) Info("  (no weft_policy_denials_total samples)");
  for (const auto& s : denials) Info("  " + Render(s, {"policy", "direction", "reason"}));
  Record("weft_policy_denials_total counts the denial on the destination ztunnel", ours >= 1,
         absl::StrCat("weft_policy_denials_total{policy=\"shop/", kPolicyName, "\"} = ", ours));
  return absl::OkStatus();
}

void Demo::WaitForCtrlC() {
  auto& tb = mesh_->testbed();
  Step("the mesh stays up (--keep); press Ctrl-C to tear it down");
  Info("talk to the shop from the frontend pod, e.g.:");
  Info(absl::StrCat("  ip netns exec ", *tb.PodNetns("frontend"), " nc ", kVip, " ", kVipPort,
                    "   (then type: search green)"));
  Info(absl::StrCat("metrics: ip netns exec ", *tb.NodeNetns(0), " curl -s http://",
                    tb.NodeIp(0)->ToString(), ":15020/metrics"));
  Info(absl::StrCat("config: ", mesh_->config_path(), "   logs: ", o_.work_dir, "/logs"));
  while (Sleep(1s)) {
  }
}

int Demo::Run() {
  SignalGuard guard;
  out_ << "==> weftctl demo: Weft on a " << o_.nodes
       << "-node mesh in network namespaces, with a tea shop on top" << std::endl;
  absl::Status st = Preflight();
  if (st.ok()) st = BuildMesh();
  if (st.ok() && !Interrupted()) st = OpenShop();
  if (st.ok() && !Interrupted()) st = DriveTrafficAndCapture();
  if (st.ok() && !Interrupted()) st = ShowMetrics();
  if (st.ok() && !Interrupted()) st = ApplyPolicy();
  if (st.ok() && Interrupted()) st = InterruptedError();
  bool all_ok = st.ok() && !checks_.empty() &&
                std::all_of(checks_.begin(), checks_.end(), [](const Check& c) { return c.ok; });
  if (st.ok() && o_.keep) WaitForCtrlC();

  if (mesh_) {
    Step("tearing down (ztunnels, agents, namespaces) ...");
    cart_.reset();
    catalogue_.reset();
    mesh_.reset();
  }
  if (!st.ok()) err_ << "weftctl demo: " << st.message() << std::endl;
  if (!checks_.empty()) {
    Step("checks");
    for (const auto& c : checks_) {
      Info(absl::StrCat(c.ok ? "[ok]     " : "[FAILED] ", c.what));
      if (!c.ok && !c.detail.empty()) Info("         " + c.detail);
    }
  }
  // A failed run keeps its temp dir for the logs; an interrupted one is not worth the clutter.
  bool keep_dir = !temp_dir_ || o_.keep || (!all_ok && !Interrupted());
  if (temp_dir_ && !keep_dir) {
    std::error_code ec;
    std::filesystem::remove_all(o_.work_dir, ec);
  } else if (!o_.work_dir.empty()) {
    Info("logs, config and capture kept in " + o_.work_dir);
  }
  if (all_ok) {
    Step("demo passed: mTLS on the wire, Istio metrics with peer identities, and policy enforced");
    return kExitOk;
  }
  int failed = static_cast<int>(
      std::count_if(checks_.begin(), checks_.end(), [](const Check& c) { return !c.ok; }));
  if (Interrupted())
    Step("demo interrupted: everything it created has been removed");
  else if (!st.ok())
    Step("demo FAILED: it stopped at the error above");
  else
    Step(absl::StrCat("demo FAILED: ", failed, " of ", checks_.size(), " checks failed"));
  return kExitFailure;
}

}  // namespace

absl::StatusOr<DemoOptions> ParseDemoArgs(const std::vector<std::string>& args) {
  DemoOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "-h" || a == "--help") {
      o.help = true;
      return o;
    }
    if (a == "--keep") {
      o.keep = true;
      continue;
    }
    std::string_view name = a, value;
    bool has_value = false;
    if (size_t eq = a.find('='); eq != std::string_view::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      has_value = true;
    }
    if (name != "--nodes" && name != "--work-dir") {
      if (a.empty() || a[0] != '-')
        return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", Av(a), "\""));
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", Av(name)));
    }
    if (!has_value) {
      if (i + 1 >= args.size())
        return absl::InvalidArgumentError(absl::StrCat(Av(name), " needs a value"));
      value = args[++i];
    }
    if (name == "--nodes") {
      if (!absl::SimpleAtoi(Av(value), &o.nodes) || o.nodes < 2 || o.nodes > 8)
        return absl::InvalidArgumentError(
            absl::StrCat("--nodes \"", Av(value), "\" must be a number from 2 to 8"));
    } else {
      if (value.empty()) return absl::InvalidArgumentError("--work-dir must not be empty");
      o.work_dir = std::string(value);
    }
  }
  return o;
}

absl::StatusOr<DemoBinaries> FindDemoBinaries(const std::string& self_exe) {
  namespace fs = std::filesystem;
  const char* env_z = getenv("WEFT_ZTUNNEL_BIN");
  const char* env_a = getenv("WEFT_AGENT_BIN");
  const char* env_dir = getenv("WEFT_BIN_DIR");
  std::string dir_z, dir_a;
  if (env_dir && *env_dir) {
    dir_z = std::string(env_dir) + "/ztunnel";
    dir_a = std::string(env_dir) + "/weft-agent";
  }
  fs::path self_dir = fs::path(self_exe).parent_path();
  fs::path build = self_dir.parent_path();
  std::string tree_z = (build / "ztunnel/app/ztunnel").string();
  std::string tree_a = (build / "agent/weft-agent").string();
  std::string side_z = (self_dir / "ztunnel").string();
  std::string side_a = (self_dir / "weft-agent").string();
  // Each binary independently: an explicit variable wins, then the directories in order.
  auto choose = [](const char* env, std::initializer_list<std::string> candidates) {
    if (env && *env) return std::string(env);
    for (const auto& c : candidates)
      if (IsExecutable(c)) return c;
    return std::string();
  };
  DemoBinaries b;
  b.ztunnel = choose(env_z, {dir_z, tree_z, side_z});
  b.agent = choose(env_a, {dir_a, tree_a, side_a});
  std::vector<std::string> problems;
  auto check = [&](const char* what, const char* var, const std::string& chosen,
                   std::initializer_list<std::string> candidates) {
    if (IsExecutable(chosen)) return;
    if (!chosen.empty()) {
      problems.push_back(absl::StrCat("$", var, "=", chosen, " is not an executable file"));
      return;
    }
    std::vector<std::string> where;
    for (const auto& c : candidates)
      if (!c.empty()) where.push_back(c);
    problems.push_back(
        absl::StrCat(what, " not found (looked at ", absl::StrJoin(where, ", "), ")"));
  };
  check("ztunnel", "WEFT_ZTUNNEL_BIN", b.ztunnel, {dir_z, tree_z, side_z});
  check("weft-agent", "WEFT_AGENT_BIN", b.agent, {dir_a, tree_a, side_a});
  if (!problems.empty())
    return absl::NotFoundError(absl::StrCat(
        absl::StrJoin(problems, "; "),
        ". Build them (ninja ztunnel weft-agent) or point weftctl at them with WEFT_BIN_DIR "
        "(a directory holding both) or WEFT_ZTUNNEL_BIN and WEFT_AGENT_BIN"));
  return b;
}

int RunDemo(const DemoOptions& opts, std::ostream& out, std::ostream& err) {
  Demo d(opts, out, err);
  return d.Run();
}

int DemoMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  auto opts = ParseDemoArgs(args);
  if (!opts.ok()) {
    err << "weftctl demo: " << opts.status().message() << "\n"
        << "Run 'weftctl demo --help' for usage.\n";
    return kExitUsage;
  }
  if (opts->help) {
    out << kUsage;
    return kExitOk;
  }
  return RunDemo(*opts, out, err);
}

}  // namespace weft::cli::demo
