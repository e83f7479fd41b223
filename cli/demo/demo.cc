#include "cli/demo/demo.h"

#include "cli/demo/runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/commands.h"
#include "cli/testbed/testbed.h"
#include "cli/up/state.h"
#include "common/flags.h"
#include "common/net.h"
#include "common/scrape/scrape.h"
#include "common/status.h"
#include "common/unique_fd.h"

#ifndef WEFT_SOURCE_DIR
#define WEFT_SOURCE_DIR ""
#endif

namespace weft::cli::demo {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr char kDescription[] =
    "Runs Weft for real on this machine (needs root), printing each command as it goes:\n"
    "`weftctl up` a local mesh with the tea shop (examples/teashop), shows the shop in plain\n"
    "TCP, enrols namespace shop live, drives load and prints `weftctl stat`, shows from a\n"
    "packet capture and the ztunnels' Istio metrics that traffic between the nodes is mTLS\n"
    "with SPIFFE identities, applies an AuthorizationPolicy and shows a call denied and\n"
    "counted while checkout still works, then `weftctl down` and checks nothing is left.\n"
    "Exits 0 only if every check held.\n"
    "\n"
    "`weftctl demo traffic`, the second part: the shop plus examples/teashop/traffic-demo's\n"
    "pods; a canary split 90/10 and shifted live to 50/50 with `weftctl apply`, retries hiding\n"
    "a back end that fails 30 % of requests, and a circuit breaker protecting an overloaded\n"
    "one, each measured from the ztunnels' istio_requests_total and `weftctl stat`.";

// The flags as given (checked after parsing, with messages that say what each takes).
struct DemoFlags {
  std::string part;
  std::string nodes, capture, load_duration;
  std::string name, state_root, manifests, work_dir;
  bool keep = false;
};

std::unique_ptr<CLI::App> DemoApp(DemoFlags& f) {
  auto app = std::make_unique<CLI::App>(kDescription, "weftctl demo");
  app->add_option("PART", f.part, "traffic: the traffic features (default: the tour)")
      ->type_name("[traffic]");
  app->add_option("--nodes", f.nodes,
                  "nodes in the mesh, 2..8 (default 2; the shop uses node0, node1)")
      ->type_name("N");
  app->add_option("--capture", f.capture, "traffic capture: auto (default), ebpf or iptables")
      ->type_name("MODE");
  app->add_flag("--keep", f.keep, "after the checks, keep the mesh up until Ctrl-C");
  app->add_option("--name", f.name, "the mesh's name (default weft), as `weftctl up --name`")
      ->type_name("NAME");
  app->add_option("--state-root", f.state_root,
                  "as `weftctl up --state-root` (default $WEFT_STATE_ROOT or /run/weft)")
      ->type_name("DIR");
  app->add_option("--manifests", f.manifests,
                  "the shop's manifests (default examples/teashop/manifests)")
      ->type_name("DIR");
  app->add_option("--load-duration", f.load_duration,
                  "how long the load driver runs, 3..60 (default 8)")
      ->type_name("SEC");
  app->add_option("--work-dir", f.work_dir,
                  "packet captures go here (default: a temp dir, removed afterwards\n"
                  "unless --keep or a check failed)")
      ->type_name("DIR");
  app->footer(
      "Needs iproute2 (ip), iptables, curl, and tshark (with dumpcap) for the captures;\n"
      "weftd, ztunnel, weft-agent and weft-teashop are found as `weftctl up` finds them.");
  return app;
}

constexpr char kPolicyName[] = "store-deny-except-frontend";
constexpr char kL7PolicyName[] = "store-orders-from-frontend";
constexpr char kFrontendUrl[] = "http://frontend.shop.svc.cluster.local";
constexpr char kStoreUrl[] = "http://store.shop.svc.cluster.local";

class Demo : public Runner {
 public:
  Demo(const DemoOptions& o, std::ostream& out, std::ostream& err) : Runner(o, out, err, 9) {}

 private:
  absl::Status Steps() override;
  std::vector<std::vector<std::string>> TryNext() const override;
  absl::Status PlainBefore();
  absl::Status LoadStatCapture();
  absl::Status Identities();
  absl::Status Policy();
  absl::Status L7Policy();
};

absl::Status Demo::Steps() {
  absl::Status st = Preflight();
  if (!st.ok()) return st;
  for (const char* name : {kPolicyName, kL7PolicyName}) {
    if (!std::filesystem::is_regular_file(PolicyFile(o_.manifests, name)))
      return absl::NotFoundError("no policy file " + PolicyFile(o_.manifests, name) +
                                 " next to the manifests (examples/teashop/policies)");
  }
  if (!Interrupted())
    st =
        Up(2, o_.manifests,
           absl::StrCat("bringing up a ", o_.nodes,
                        "-node mesh with the tea shop (namespaces shop and legacy, not enrolled)"));
  if (st.ok() && !Interrupted()) st = PlainBefore();
  if (st.ok() && !Interrupted()) st = Enrol(4);
  if (st.ok() && !Interrupted()) st = LoadStatCapture();
  if (st.ok() && !Interrupted()) st = Identities();
  if (st.ok() && !Interrupted()) st = Policy();
  if (st.ok() && !Interrupted()) st = L7Policy();
  return st;
}

std::vector<std::vector<std::string>> Demo::TryNext() const {
  return {
      {"stat", "shop"},
      {"exec", "legacy/client", "--", "weft-teashop", "--role", "load", "--target", kFrontendUrl,
       "--duration", "30s"},
      {"exec", "shop/cart", "--", "curl", "-sS", std::string(kStoreUrl) + "/healthz"},
      {"exec", "shop/cart", "--", "curl", "-sS", "-X", "POST", std::string(kStoreUrl) + "/orders"},
      {"tap", "shop"},
      {"delete", "-f", PolicyFile(o_.manifests, kL7PolicyName), "--wait"},
      {"label", "namespace", "shop", "weft.dev/mesh-", "--wait"},
      {"logs", "ztunnel", "node0"},
      {"status"}};
}

absl::Status Demo::PlainBefore() {
  Step(3, "the shop works, in plain TCP (nothing is enrolled yet)");
  const up::NodeState& n0 = state_.nodes[0];
  std::string pcap = o_.work_dir + "/before.pcap";
  Info(absl::StrCat("capturing node0's link to the other nodes (", n0.netns, " eth0)"));
  WEFT_ASSIGN_OR_RETURN(auto cap, testbed::StartCapture(n0.netns, "eth0", pcap, "tcp"));
  ChildResult r = Run(
      {"exec", "legacy/client", "--", "curl", "-sS", "-m", "10", "-o", "/dev/null", "-w",
       "GET / -> HTTP %{http_code}, %{size_download} bytes\\n", std::string(kFrontendUrl) + "/"},
      30s);
  WEFT_RETURN_IF_ERROR(cap.Stop());
  if (r.interrupted) return absl::CancelledError("interrupted");
  Record("the shop's home page answers before enrolment",
         r.code == 0 && r.output.find("HTTP 200") != std::string::npos,
         absl::StrCat("exit ", r.code, ": ", Trim(r.output)));
  // The HTTP requests the capture saw in clear, between which pods.
  std::string fields = ReadCommand({*InPath("tshark"), "-r", pcap, "-Y", "http.request", "-T",
                                    "fields", "-e", "ip.src", "-e", "ip.dst", "-e",
                                    "http.request.method", "-e", "http.request.uri"});
  int shown = 0, between_shop = 0;
  Info("HTTP requests seen in clear on the wire:");
  for (const std::string& line :
       std::vector<std::string>(absl::StrSplit(fields, '\n', absl::SkipEmpty()))) {
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    if (f.size() < 4) continue;
    std::string from = PodName(f[0]), to = PodName(f[1]);
    if (from.rfind("shop/", 0) == 0 && to.rfind("shop/", 0) == 0) between_shop++;
    if (shown++ < 6) Info(absl::StrCat("  ", from, " -> ", to, "  ", f[2], " ", f[3]));
  }
  if (shown > 6) Info(absl::StrCat("  ... ", shown - 6, " more"));
  Record("a capture shows the shop's calls between the nodes in clear text", between_shop > 0,
         "no HTTP request between two shop pods was seen in " + pcap);
  return absl::OkStatus();
}

absl::Status Demo::LoadStatCapture() {
  Step(5, absl::StrCat("driving load at the front end for ", FormatValue(o_.load_seconds),
                       "s, with `weftctl stat` meanwhile"));
  const up::NodeState& n0 = state_.nodes[0];
  const up::PodState* client = nullptr;
  for (const auto& p : state_.pods)
    if (p.ns == "legacy" && p.name == "client") client = &p;
  if (!client) return absl::NotFoundError("the manifests have no pod legacy/client");
  std::string pcap = o_.work_dir + "/enrolled.pcap";
  // legacy/client is outside the mesh by design: its requests to the front end stay plain
  // text, so they are left out; every other byte on the link belongs to the mesh.
  std::string filter = "tcp and not host " + client->ip;
  Info(absl::StrCat("capturing node0's link again (filter: ", filter,
                    ": legacy/client is outside the mesh and speaks plain HTTP to the front end)"));
  WEFT_ASSIGN_OR_RETURN(auto cap, testbed::StartCapture(n0.netns, "eth0", pcap, filter));
  WEFT_ASSIGN_OR_RETURN(
      Child load,
      StartQuietly({"exec", "legacy/client", "--", "weft-teashop", "--role", "load", "--target",
                    kFrontendUrl, "--duration", absl::StrCat(FormatValue(o_.load_seconds), "s"),
                    "--concurrency", "4", "--upstream-conn", "per-request"}));
  if (!Sleep(1500ms)) return absl::CancelledError("interrupted");
  ChildResult stat = Run({"stat", "shop", "--window", "3s"}, 30s);
  ChildResult lr = load.Finish(
      std::chrono::milliseconds(static_cast<int>(o_.load_seconds * 1000)) + 60s, nullptr, true);
  WEFT_RETURN_IF_ERROR(cap.Stop());
  if (stat.interrupted || lr.interrupted) return absl::CancelledError("interrupted");
  Info("the load driver's report:");
  for (const std::string& l : std::vector<std::string>(absl::StrSplit(Trim(lr.output), '\n')))
    Info("  " + l);
  Record("the load driver's requests succeeded (weft-teashop --role load exit 0)", lr.code == 0,
         absl::StrCat("exit ", lr.code));
  Info("(The shop's Services are declared HTTP (appProtocol: http): the front end's own ztunnel");
  Info(" terminates its calls to the back ends and sends every request to the endpoint it");
  Info(" chooses, so stat shows the back ends' requests: RPS, success rate, latency. The front");
  Info(" end's callers are the legacy client, outside the mesh: MESHED 0%.)");
  std::optional<double> rate = StatRate(stat.output, "shop", "frontend");
  if (!rate) rate = StatRate(stat.output, "shop", "frontend", "RPS");
  Record("weftctl stat shows shop/frontend serving traffic", rate && *rate > 0,
         rate ? absl::StrCat("rate ", *rate, "/s") : "no shop/frontend row");
  double backend_rps = 0;
  for (const char* wl : {"catalogue-0", "catalogue-1", "cart", "recommendation"})
    backend_rps += StatRate(stat.output, "shop", wl, "RPS").value_or(0);
  Record("weftctl stat shows the back ends' requests (balanced per request at the source)",
         backend_rps > 0, absl::StrCat("RPS of the back ends: ", backend_rps));

  Step(6, "mTLS between the nodes, with the workloads' SPIFFE identities");
  WEFT_ASSIGN_OR_RETURN(auto stats, testbed::PcapSummary(pcap, {15008}));
  const std::string tshark = *InPath("tshark");
  WireSummary wire =
      SummarizeWire(ReadCommand({tshark, "-r", pcap, "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0",
                                 "-T", "fields", "-e", "tcp.stream", "-e", "tcp.dstport"}),
                    ReadCommand({tshark, "-r", pcap, "-Y", "http.request", "-T", "fields", "-e",
                                 "tcp.stream", "-e", "ip.src", "-e", "ip.dst", "-e",
                                 "http.request.method", "-e", "http.request.uri"}));
  Info(absl::StrCat("the capture: ", stats.frames, " frames, ", stats.tcp_payload_bytes,
                    " bytes of TCP payload, ", stats.tls_records, " TLS records (",
                    stats.tls_app_data_records, " application data) on HBONE port 15008"));
  std::vector<std::string> ports;
  for (const auto& [port, n] : wire.new_by_port)
    ports.push_back(absl::StrCat(n, " to port ", port,
                                 port == 15008   ? " (HBONE: mTLS between ztunnels)"
                                 : port == 15012 ? " (weftd: TLS)"
                                                 : ""));
  Info(absl::StrCat("connections opened between the nodes during the load: ", wire.new_connections,
                    wire.new_connections ? ": " + absl::StrJoin(ports, ", ") : ""));
  Info(absl::StrCat("clear-text HTTP requests on them: ", wire.http_on_new));
  for (const auto& e : wire.new_http_examples) Info("  " + e);
  if (wire.http_on_old > 0)
    Info(absl::StrCat("(", wire.http_on_old, " clear-text requests rode on ",
                      wire.old_http_streams.size(),
                      " kept-alive connection(s) the front end opened before enrolment: as in "
                      "Istio's ambient mode, enrolment captures new connections and leaves open "
                      "ones alone until they close)"));
  Record("the link between the nodes carries TLS (HBONE)",
         stats.tls_app_data_records > 0 && wire.new_by_port.count(15008) > 0,
         absl::StrCat(stats.tls_records, " TLS records, ", wire.new_by_port.count(15008),
                      " new HBONE connections in ", pcap));
  Record("no clear-text HTTP on connections opened between the nodes once the shop is enrolled",
         wire.http_on_new == 0, absl::StrCat(wire.http_on_new, " requests in ", pcap));
  return absl::OkStatus();
}

absl::Status Demo::Identities() {
  const std::vector<std::string> keys = {"reporter",
                                         "source_workload",
                                         "source_principal",
                                         "destination_workload",
                                         "destination_principal",
                                         "connection_security_policy"};
  const std::string fe = Spiffe("shop", "frontend");
  // Cross-node calls of the front end (node0) to the back ends on node1.
  auto want = [&](const MetricSample& s, const std::string& reporter) {
    std::string dst = Label(s, "destination_principal");
    return s.name == "istio_tcp_connections_opened_total" && Label(s, "reporter") == reporter &&
           Label(s, "source_principal") == fe && dst.rfind(Spiffe("shop", ""), 0) == 0 &&
           dst != fe && Label(s, "connection_security_policy") == "mutual_tls" && s.value > 0;
  };
  std::map<std::string, std::vector<MetricSample>> by_node;
  for (int i = 0; i < 2; i++) {
    const up::NodeState& n = state_.nodes[i];
    out_ << "  $ ip netns exec " << n.netns << " curl -s http://" << n.metrics
         << "/metrics | grep 'istio_tcp_connections_opened_total.*shop'" << std::endl;
    WEFT_ASSIGN_OR_RETURN(std::string text, Metrics(n));
    std::vector<MetricSample> samples;
    for (auto& s : ParseSamples(text, "istio_tcp_connections_opened_total"))
      if (Label(s, "destination_workload_namespace") == "shop" ||
          Label(s, "source_principal").rfind(Spiffe("shop", ""), 0) == 0)
        samples.push_back(std::move(s));
    std::sort(samples.begin(), samples.end(), [](const auto& a, const auto& b) {
      return std::tie(a.name, a.labels) < std::tie(b.name, b.labels);
    });
    for (const auto& s : samples) Info(Render(s, keys));
    if (samples.empty()) Info("(no istio_tcp_connections_opened_total series for the shop)");
    by_node[n.name] = std::move(samples);
  }
  auto any = [&](const std::string& node, const std::string& reporter) {
    const auto& v = by_node[node];
    return std::any_of(v.begin(), v.end(), [&](const auto& s) { return want(s, reporter); });
  };
  Record(
      "node0's ztunnel reports the front end's outbound calls as mutual_tls with both SPIFFE "
      "principals",
      any(state_.nodes[0].name, "source"),
      "no istio_tcp_connections_opened_total{reporter=\"source\",source_principal=\"" + fe +
          "\",connection_security_policy=\"mutual_tls\"} on node0");
  Record("node1's ztunnel reports them inbound as mutual_tls with both SPIFFE principals",
         any(state_.nodes[1].name, "destination"),
         "no istio_tcp_connections_opened_total{reporter=\"destination\",source_principal=\"" + fe +
             "\",connection_security_policy=\"mutual_tls\"} on node1");
  return absl::OkStatus();
}

absl::Status Demo::Policy() {
  Step(7, "an AuthorizationPolicy: the store accepts only the front end's identity");
  auto store_call = [&](const std::string& from) {
    return Run({"exec", from, "--", "curl", "-sS", "-m", "3", std::string(kStoreUrl) + "/healthz"},
               30s);
  };
  Info("before the policy, the cart (another shop workload, on node1) can call the store:");
  ChildResult before = store_call("shop/cart");
  if (before.interrupted) return absl::CancelledError("interrupted");
  Record("shop/cart -> store works without the policy",
         before.code == 0 && Trim(before.output) == "ok", Trim(before.output));

  std::string policy = PolicyFile(o_.manifests);
  Info("the policy (" + policy + "):");
  {
    std::ifstream in(policy);
    for (std::string l; std::getline(in, l);)
      if (!l.empty() && l[0] != '#') Info("  " + l);
  }
  ChildResult ap = Run({"apply", "-f", policy, "--wait"}, 120s);
  if (ap.interrupted) return absl::CancelledError("interrupted");
  Record("weftctl apply installs the policy", ap.code == 0, absl::StrCat("exit ", ap.code));

  ChildResult cart = store_call("shop/cart");
  if (cart.interrupted) return absl::CancelledError("interrupted");
  // The store's Service port is HTTP: the cart's own ztunnel terminates its request and answers
  // the refused connection as Istio's sidecars do, 503 "upstream connect error ...".
  const bool cart_503 =
      absl::StartsWith(Trim(cart.output), "upstream connect error or disconnect/reset");
  if (cart_503) {
    Info("(the store's port is declared HTTP: the cart's ztunnel answers the refused connection");
    Info(" with Envoy's 503, as an Istio sidecar would)");
  }
  Record("shop/cart -> store is denied (its principal is not the front end's)",
         cart_503 || (cart.code != 0 && Trim(cart.output) != "ok"),
         "the call answered: " + Trim(cart.output));
  ChildResult legacy = store_call("legacy/client");
  if (legacy.interrupted) return absl::CancelledError("interrupted");
  Record("legacy/client -> store is denied (no identity at all)",
         legacy.code != 0 && Trim(legacy.output) != "ok",
         "the call answered: " + Trim(legacy.output));

  Info("the front end (principal " + Spiffe("shop", "frontend") + ") still reaches the store:");
  ChildResult add =
      Run({"exec", "legacy/client", "--", "curl", "-sS", "-m", "10", "-o", "/dev/null", "-w",
           "add to cart -> HTTP %{http_code}\\n", "-H", "X-User: demo", "-d", "id=42&qty=2",
           std::string(kFrontendUrl) + "/cart/add"},
          30s);
  ChildResult co = Run(
      {"exec", "legacy/client", "--", "curl", "-sS", "-m", "10", "-X", "POST", "-H", "X-User: demo",
       "-w", "\\ncheckout -> HTTP %{http_code}\\n", std::string(kFrontendUrl) + "/checkout"},
      30s, /*echo=*/false);
  if (add.interrupted || co.interrupted) return absl::CancelledError("interrupted");
  std::string order;
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(co.output, '\n'))) {
    if (line.find("Order ") == std::string::npos && line.find("checkout ->") == std::string::npos)
      continue;
    // The page's line without its HTML tags.
    std::string text;
    bool tag = false;
    for (char c : line) {
      if (c == '<') tag = true;
      if (!tag) text += c;
      if (c == '>') tag = false;
    }
    Info(Trim(text));
    if (line.find("Order ") != std::string::npos) order = Trim(text);
  }
  Record("checkout through the front end still works (its call to the store is allowed)",
         co.code == 0 && co.output.find("HTTP 200") != std::string::npos && !order.empty(),
         absl::StrCat("exit ", co.code, ", ", Trim(co.output).substr(0, 300)));

  // The store's ztunnel (the store's node) enforces and counts.
  const up::NodeState* store_node = nullptr;
  for (const auto& p : state_.pods)
    if (p.ns == "shop" && p.name == "store" && p.node < static_cast<int>(state_.nodes.size()))
      store_node = &state_.nodes[static_cast<size_t>(p.node)];
  if (!store_node) return absl::NotFoundError("the manifests have no pod shop/store");
  out_ << "  $ ip netns exec " << store_node->netns << " curl -s http://" << store_node->metrics
       << "/metrics | grep weft_policy_denials_total" << std::endl;
  double ours = 0;
  std::vector<MetricSample> denials;
  auto deadline = Clock::now() + 5s;
  while (true) {
    WEFT_ASSIGN_OR_RETURN(std::string text, Metrics(*store_node));
    denials = ParseSamples(text, "weft_policy_denials_total");
    ours = MetricSum(text, "weft_policy_denials_total",
                     {{"policy", absl::StrCat("shop/", kPolicyName)}});
    if (ours >= 2 || Clock::now() > deadline) break;
    if (!Sleep(200ms)) return absl::CancelledError("interrupted");
  }
  for (const auto& s : denials) Info(Render(s, {"direction", "policy", "reason"}));
  if (denials.empty()) Info("(no weft_policy_denials_total samples)");
  Record("weft_policy_denials_total counts both denials on the store's ztunnel", ours >= 2,
         absl::StrCat("weft_policy_denials_total{policy=\"shop/", kPolicyName, "\"} = ", ours));
  return absl::OkStatus();
}

absl::Status Demo::L7Policy() {
  Step(8, "an L7 policy: only the front end may POST /orders on the store");
  // The L4 policy of step 7 goes; the L7 one replaces it.
  ChildResult del = Run({"delete", "-f", PolicyFile(o_.manifests), "--wait"}, 120s);
  if (del.interrupted) return absl::CancelledError("interrupted");
  Record("weftctl delete removes the L4 policy", del.code == 0, absl::StrCat("exit ", del.code));
  std::string policy = PolicyFile(o_.manifests, kL7PolicyName);
  Info("the policy (" + policy + "), enforced per request by the store's own ztunnel:");
  {
    std::ifstream in(policy);
    for (std::string l; std::getline(in, l);)
      if (!l.empty() && l[0] != '#') Info("  " + l);
  }
  ChildResult ap = Run({"apply", "-f", policy, "--wait"}, 120s);
  if (ap.interrupted) return absl::CancelledError("interrupted");
  Record("weftctl apply installs the L7 policy", ap.code == 0, absl::StrCat("exit ", ap.code));

  ChildResult get =
      Run({"exec", "shop/cart", "--", "curl", "-sS", "-m", "5", "-w",
           "\\nGET /healthz -> HTTP %{http_code}\\n", std::string(kStoreUrl) + "/healthz"},
          30s);
  if (get.interrupted) return absl::CancelledError("interrupted");
  Record("shop/cart GET /healthz on the store is allowed (any shop workload may read)",
         get.code == 0 && get.output.find("HTTP 200") != std::string::npos, Trim(get.output));
  ChildResult post =
      Run({"exec", "shop/cart", "--", "curl", "-sS", "-m", "5", "-X", "POST", "-H", "X-User: demo",
           "-d", "items=42:1", "-w", "\\nPOST /orders -> HTTP %{http_code}\\n",
           std::string(kStoreUrl) + "/orders"},
          30s);
  if (post.interrupted) return absl::CancelledError("interrupted");
  Record("shop/cart POST /orders on the store gets ztunnel's 403 \"RBAC: access denied\"",
         post.output.find("RBAC: access denied") != std::string::npos &&
             post.output.find("HTTP 403") != std::string::npos,
         Trim(post.output));
  Info("the front end may place orders: checkout through it still works:");
  (void)Run({"exec", "legacy/client", "--", "curl", "-sS", "-m", "10", "-o", "/dev/null", "-H",
             "X-User: demo", "-d", "id=42&qty=1", std::string(kFrontendUrl) + "/cart/add"},
            30s, /*echo=*/false);
  ChildResult co =
      Run({"exec", "legacy/client", "--", "curl", "-sS", "-m", "10", "-o", "/dev/null", "-X",
           "POST", "-H", "X-User: demo", "-w", "checkout -> HTTP %{http_code}\\n",
           std::string(kFrontendUrl) + "/checkout"},
          30s);
  if (co.interrupted) return absl::CancelledError("interrupted");
  Record("checkout through the front end still works (its POST /orders is allowed)",
         co.code == 0 && co.output.find("HTTP 200") != std::string::npos, Trim(co.output));

  Info("the requests the store's ztunnel sees, live, while the cart calls the store:");
  WEFT_ASSIGN_OR_RETURN(Child tap,
                        StartQuietly({"tap", "shop/store", "--max", "2", "--duration", "20s"}));
  ChildResult calls = Run({"exec", "shop/cart", "--", "sh", "-c",
                           absl::StrCat("for i in 1 2 3 4 5 6 7 8 9 10; do curl -s -o /dev/null ",
                                        kStoreUrl, "/healthz; curl -s -o /dev/null -X POST ",
                                        kStoreUrl, "/orders; sleep 0.5; done")},
                          60s, /*echo=*/false);
  ChildResult tapped = tap.Finish(30s, nullptr, true);
  if (calls.interrupted || tapped.interrupted) return absl::CancelledError("interrupted");
  for (const std::string& l : std::vector<std::string>(absl::StrSplit(Trim(tapped.output), '\n')))
    Info("  " + l);
  Record("weftctl tap shows the cart's requests to the store with their status",
         tapped.code == 0 && tapped.output.find("shop/cart -> shop/store") != std::string::npos,
         Trim(tapped.output));

  const up::NodeState* store_node = nullptr;
  for (const auto& p : state_.pods)
    if (p.ns == "shop" && p.name == "store" && p.node < static_cast<int>(state_.nodes.size()))
      store_node = &state_.nodes[static_cast<size_t>(p.node)];
  if (!store_node) return absl::NotFoundError("the manifests have no pod shop/store");
  double denied = 0;
  auto deadline = Clock::now() + 5s;
  std::vector<MetricSample> samples;
  while (true) {
    WEFT_ASSIGN_OR_RETURN(std::string text, Metrics(*store_node));
    samples = ParseSamples(text, "weft_policy_denials_total");
    denied = MetricSum(text, "weft_policy_denials_total", {{"reason", "no_allow_match"}});
    if (denied >= 1 || Clock::now() > deadline) break;
    if (!Sleep(200ms)) return absl::CancelledError("interrupted");
  }
  for (const auto& smp : samples) Info(Render(smp, {"direction", "policy", "reason"}));
  Record("the store's ztunnel counts the 403 in weft_policy_denials_total", denied >= 1,
         absl::StrCat("weft_policy_denials_total{reason=\"no_allow_match\"} = ", denied));
  return absl::OkStatus();
}

}  // namespace

std::string FormatCommand(const std::vector<std::string>& argv) {
  std::vector<std::string> parts;
  for (const auto& a : argv) {
    bool plain = !a.empty() && std::all_of(a.begin(), a.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("-_./:=,@%+", c);
    });
    if (plain) {
      parts.push_back(a);
      continue;
    }
    std::string q = "'";
    for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    parts.push_back(q + "'");
  }
  return absl::StrJoin(parts, " ");
}

std::vector<std::string> MeshFlags(const DemoOptions& o) {
  std::vector<std::string> f;
  if (o.name != "weft") f.insert(f.end(), {"--name", o.name});
  if (!o.state_root.empty()) f.insert(f.end(), {"--state-root", o.state_root});
  return f;
}

WireSummary SummarizeWire(const std::string& syns, const std::string& https) {
  WireSummary w;
  std::set<int> fresh;
  for (const std::string& line :
       std::vector<std::string>(absl::StrSplit(syns, '\n', absl::SkipEmpty()))) {
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    int stream = 0, port = 0;
    if (f.size() < 2 || !absl::SimpleAtoi(f[0], &stream) || !absl::SimpleAtoi(f[1], &port))
      continue;
    if (fresh.insert(stream).second) {
      w.new_connections++;
      w.new_by_port[port]++;
    }
  }
  for (const std::string& line :
       std::vector<std::string>(absl::StrSplit(https, '\n', absl::SkipEmpty()))) {
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    int stream = 0;
    if (f.size() < 5 || !absl::SimpleAtoi(f[0], &stream)) continue;
    if (fresh.count(stream)) {
      w.http_on_new++;
      if (w.new_http_examples.size() < 5)
        w.new_http_examples.push_back(absl::StrCat(f[1], " -> ", f[2], " ", f[3], " ", f[4]));
    } else {
      w.http_on_old++;
      w.old_http_streams.insert(stream);
    }
  }
  return w;
}

std::optional<double> StatRate(const std::string& table, const std::string& ns,
                               const std::string& workload, const std::string& column) {
  std::vector<std::string> header;
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(table, '\n'))) {
    std::vector<std::string> cols = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (cols.size() >= 5 && cols[0] == "NAMESPACE") {
      header = cols;
      continue;
    }
    if (header.size() < 5 || header[4] != column || cols.size() < 5) continue;
    std::string wl = cols[1];
    if (!wl.empty() && wl.back() == '*') wl.pop_back();
    double v = 0;
    if (cols[0] == ns && wl == workload && absl::SimpleAtod(cols[4], &v)) return v;
  }
  return std::nullopt;
}

absl::StatusOr<std::string> FindManifests(const std::string& flag, const std::string& cwd,
                                          const std::string& source_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!flag.empty()) {
    if (!fs::is_directory(flag, ec))
      return absl::NotFoundError("--manifests " + flag + " is not a directory");
    return flag;
  }
  const std::string rel = "examples/teashop/manifests";
  if (!cwd.empty() && fs::is_directory(fs::path(cwd) / rel, ec)) return rel;
  if (!source_dir.empty() && fs::is_directory(fs::path(source_dir) / rel, ec))
    return (fs::path(source_dir) / rel).string();
  return absl::NotFoundError(
      "the tea shop's manifests (examples/teashop/manifests) are not in this directory nor in "
      "the source tree weftctl was built from; run from the repository root or pass "
      "--manifests DIR");
}

std::string PolicyFile(const std::string& manifests, std::string_view name) {
  std::string m = manifests;
  while (m.size() > 1 && m.back() == '/') m.pop_back();
  std::filesystem::path parent = std::filesystem::path(m).parent_path();
  return (parent / "policies" / absl::StrCat(Av(name.empty() ? kPolicyName : name), ".yaml"))
      .string();
}

absl::StatusOr<DemoOptions> ParseDemoArgs(const std::vector<std::string>& args) {
  DemoOptions o;
  DemoFlags f;
  auto app = DemoApp(f);
  if (absl::Status st = ParseArgs(*app, args); !st.ok()) {
    if (!absl::IsCancelled(st)) return st;
    o.help = true;
    return o;
  }
  o.keep = f.keep;
  if (!f.part.empty() && f.part != "traffic")
    return absl::InvalidArgumentError(
        absl::StrCat("unknown part \"", f.part, "\": give none (the tour) or traffic"));
  o.part = f.part;
  if (app->count("--nodes") > 0 &&
      (!absl::SimpleAtoi(f.nodes, &o.nodes) || o.nodes < 2 || o.nodes > 8))
    return absl::InvalidArgumentError(
        absl::StrCat("--nodes \"", f.nodes, "\" must be a number from 2 to 8"));
  if (app->count("--capture") > 0) {
    if (f.capture != "auto" && f.capture != "ebpf" && f.capture != "iptables")
      return absl::InvalidArgumentError(
          absl::StrCat("--capture \"", f.capture, "\" must be auto, ebpf or iptables"));
    o.capture = f.capture;
  }
  if (app->count("--load-duration") > 0) {
    std::string_view v = f.load_duration;
    if (!v.empty() && v.back() == 's') v.remove_suffix(1);
    if (!absl::SimpleAtod(Av(v), &o.load_seconds) || o.load_seconds < 3 || o.load_seconds > 60)
      return absl::InvalidArgumentError(absl::StrCat(
          "--load-duration \"", f.load_duration, "\" must be a number of seconds from 3 to 60"));
  }
  const std::pair<const char*, std::string*> dirs[] = {{"--name", &f.name},
                                                       {"--state-root", &f.state_root},
                                                       {"--manifests", &f.manifests},
                                                       {"--work-dir", &f.work_dir}};
  for (const auto& [flag, value] : dirs) {
    if (app->count(flag) > 0 && value->empty())
      return absl::InvalidArgumentError(absl::StrCat(flag, " must not be empty"));
  }
  if (app->count("--name") > 0) {
    if (auto st = up::ValidateMeshName(f.name); !st.ok())
      return absl::InvalidArgumentError(absl::StrCat("--name: ", st.message()));
    o.name = f.name;
  }
  o.state_root = f.state_root;
  o.manifests = f.manifests;
  o.work_dir = f.work_dir;
  return o;
}

int RunDemo(const DemoOptions& opts, std::ostream& out, std::ostream& err) {
  if (opts.part == "traffic") return RunTrafficDemo(opts, out, err);
  Demo d(opts, out, err);
  return d.Main(absl::StrCat("weftctl demo: Weft's tea shop on a ", opts.nodes,
                             "-node mesh on this host (network namespaces; nothing outside them "
                             "is touched)"));
}

int DemoMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  auto opts = ParseDemoArgs(args);
  if (!opts.ok()) {
    err << "weftctl demo: " << opts.status().message() << "\n"
        << "Run 'weftctl demo --help'.\n";
    return kExitUsage;
  }
  if (opts->help) {
    DemoFlags unused;
    out << DemoApp(unused)->help();
    return kExitOk;
  }
  return RunDemo(*opts, out, err);
}

}  // namespace weft::cli::demo
