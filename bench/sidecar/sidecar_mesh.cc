#include "bench/sidecar/sidecar_mesh.h"

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/spiffe.h"
#include "common/status.h"
#include "common/tls.h"
#include "common/unique_fd.h"

namespace weft::bench::sidecar {
namespace {

using namespace std::chrono_literals;

// One outbound destination: what the app dials, and where its sidecar sends it.
struct Destination {
  SockAddr dialed;
  std::vector<IpAddr> backends;            // pod IPs, reached on their sidecar's inbound port
  std::vector<std::string> backend_names;  // their certificates' DNS SAN (verified)
  std::vector<uint16_t> target_ports;      // the backends' app ports, sent as SNI "port-<N>"
  uint16_t local_port = 0;                 // the outbound listener on 127.0.0.1
  AppProtocol protocol = AppProtocol::kTcp;
};

// A DNS label is at most 63 characters; a longer sanitized name keeps its start and is made
// unique again by the caller's suffix.
std::string Label(std::string_view s) {
  std::string l = testbed::SanitizePodName(s).substr(0, 40);
  while (!l.empty() && l.back() == '-') l.pop_back();
  while (!l.empty() && l.front() == '-') l.erase(l.begin());
  return l.empty() ? "x" : l;
}

// `file_name` is unique within the mesh, so the name is too.
std::string DnsName(const SidecarPod& p, const std::string& file_name) {
  return absl::StrCat(Label(p.service_account.empty() ? p.name : p.service_account), ".",
                      Label(p.ns), ".", file_name, ".sidecar.weft");
}

// HAProxy checks the server certificate against the SNI whenever one is sent (verifyhost only
// applies without SNI), so the SNI both names the destination workload (its certificate carries
// "*.<dns name>") and, in its first label, the app port the inbound sidecar forwards to.
std::string SniPrefix(uint16_t port) {
  return absl::StrCat("port-", port, ".");
}
std::string Sni(uint16_t port, const std::string& dns) {
  return absl::StrCat(SniPrefix(port), dns);
}

// HTTP settings of HTTP-mode frontends and backends: keep-alive both ways (HAProxy's default,
// said explicitly), idle client connections kept as long as TCP ones, server connections
// shared between clients when safe (`http-reuse safe`, HAProxy's default policy, the setting an
// operator would keep) and kept in the idle pool.
constexpr char kHttpFrontend[] =
    "  mode http\n"
    "  option http-keep-alive\n"
    "  timeout http-request 10s\n"
    "  timeout http-keep-alive 1h\n";
constexpr char kHttpBackend[] =
    "  mode http\n"
    "  option http-keep-alive\n"
    "  http-reuse safe\n";

std::string InboundBackend(const SidecarOptions& o, uint16_t port, AppProtocol proto) {
  std::string c = absl::StrCat("backend app_", port, "\n");
  if (o.http && proto != AppProtocol::kTcp) c += kHttpBackend;
  absl::StrAppend(&c, "  server app 127.0.0.1:", port,
                  o.http && proto == AppProtocol::kHttp2 ? " proto h2" : "", "\n");
  return c;
}

std::string OutboundProxies(const SidecarOptions& o, size_t i, const Destination& d,
                            const std::string& crt, const std::string& ca) {
  const bool http = o.http && d.protocol != AppProtocol::kTcp;
  const bool h2 = http && d.protocol == AppProtocol::kHttp2;
  std::string c = absl::StrCat("frontend out_", i, "\n", http ? kHttpFrontend : "",
                               "  bind 127.0.0.1:", d.local_port, h2 ? " proto h2" : "",
                               "\n  default_backend out_", i, "\n", "backend out_", i, "\n",
                               http ? kHttpBackend : "", "  balance roundrobin\n");
  for (size_t j = 0; j < d.backends.size(); ++j) {
    absl::StrAppend(&c, "  server s", j, " ", d.backends[j].ToString(), ":", o.inbound_port,
                    " ssl crt ", crt, " ca-file ", ca, " verify required sni str(",
                    Sni(d.target_ports[j], d.backend_names[j]), ")",
                    !http ? ""
                    : h2  ? " alpn h2"
                          : " alpn http/1.1",
                    "\n");
  }
  return c;
}

std::string HaproxyConfig(const SidecarOptions& o, const std::string& stats_socket,
                          const IpAddr& pod_ip, const SidecarPod& pod,
                          const std::vector<Destination>& dests, const std::string& crt,
                          const std::string& ca) {
  const std::vector<uint16_t>& app_ports = pod.ports;
  std::string c = absl::StrCat("global\n  user ", o.proxy_user, "\n  group ", o.proxy_user,
                               "\n  nbthread ", o.threads, "\n  maxconn ", o.maxconn,
                               "\n  stats socket ", stats_socket, " mode 600 level user\n");
  absl::StrAppend(&c,
                  "  ssl-server-verify required\n"
                  "  ssl-default-bind-options ssl-min-ver TLSv1.2\n"
                  "  ssl-default-server-options ssl-min-ver TLSv1.2\n"
                  "defaults\n"
                  "  mode tcp\n"
                  "  timeout connect 5s\n"
                  "  timeout client 1h\n"
                  "  timeout server 1h\n");
  if (o.log_connections) {
    absl::StrAppend(&c, "  log stderr format raw local0\n  option tcplog\n");
  }
  // Inbound: strict mTLS, then to the app port named by the SNI; an unknown SNI has no backend
  // and is closed.
  // In the HTTP mesh the TCP frontend hands HTTP ports to HTTP backends (HAProxy upgrades the
  // stream; for ALPN h2 it runs the HTTP/2 mux), so one TLS port serves both kinds.
  absl::StrAppend(&c, "frontend inbound\n  bind ", pod_ip.ToString(), ":", o.inbound_port,
                  " ssl crt ", crt, " ca-file ", ca, " verify required",
                  o.http ? " alpn h2,http/1.1" : "", "\n");
  for (uint16_t p : app_ports) {
    absl::StrAppend(&c, "  use_backend app_", p, " if { ssl_fc_sni -m beg ", SniPrefix(p), " }\n");
  }
  for (uint16_t p : app_ports) {
    auto it = pod.port_protocols.find(p);
    c += InboundBackend(o, p, it == pod.port_protocols.end() ? AppProtocol::kTcp : it->second);
  }
  // Outbound: HAProxy cannot read SO_ORIGINAL_DST portably, so each destination has its own
  // listener, selected by a per-destination REDIRECT.
  for (size_t i = 0; i < dests.size(); ++i) c += OutboundProxies(o, i, dests[i], crt, ca);
  return c;
}

absl::Status RunIptables(const std::string& netns, std::vector<std::string> args) {
  args.insert(args.begin(), {"iptables", "-w", "5", "-t", "nat"});
  return testbed::Exec(netns, args, {}, 10s).status();
}

}  // namespace

std::string_view AppProtocolName(AppProtocol p) {
  switch (p) {
    case AppProtocol::kTcp:
      return "tcp";
    case AppProtocol::kHttp:
      return "http";
    case AppProtocol::kHttp2:
      return "http2";
  }
  return "tcp";
}

std::string UniqueChainPrefix() {
  static std::atomic<int> n{0};
  return absl::StrCat("WEFTSC", getpid(), "_", n++);
}

absl::StatusOr<std::unique_ptr<SidecarMesh>> SidecarMesh::Start(
    const testbed::Testbed& tb, const std::vector<SidecarPod>& pods,
    const std::vector<SidecarService>& services, const SidecarOptions& opts) {
  std::vector<PodPlacement> placements;
  for (const SidecarPod& p : pods) {
    WEFT_ASSIGN_OR_RETURN(IpAddr ip, tb.PodIp(p.name));
    WEFT_ASSIGN_OR_RETURN(std::string netns, tb.PodNetns(p.name));
    placements.push_back({p.name, ip, std::move(netns)});
  }
  return Start(placements, pods, services, opts);
}

// Who is where and every destination an app may dial, checked.
struct SidecarMesh::Topology {
  std::map<std::string, IpAddr> pod_ip;
  std::map<std::string, std::string> pod_dns, pod_netns, pod_file;
  std::vector<Destination> dests;
  std::set<std::string> dialed;

  // Each pod's address, netns, unique file name and DNS name.
  absl::Status PlacePods(const std::vector<PodPlacement>& placements,
                         const std::vector<SidecarPod>& pods) {
    std::map<std::string, const PodPlacement*> placed;
    for (const PodPlacement& pl : placements) {
      if (!placed.emplace(pl.name, &pl).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("sidecar mesh: two placements for pod '", pl.name, "'"));
      }
    }
    std::set<std::string> names, files;
    for (size_t i = 0; i < pods.size(); ++i) {
      const SidecarPod& p = pods[i];
      if (!names.insert(p.name).second) {
        return absl::InvalidArgumentError(absl::StrCat("sidecar mesh: pod '", p.name, "' twice"));
      }
      auto pl = placed.find(p.name);
      if (pl == placed.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("sidecar mesh: no placement (address, netns) for pod '", p.name, "'"));
      }
      if (!pl->second->ip.IsV4() || pl->second->netns.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("sidecar mesh: pod '", p.name,
                                                       "' needs an IPv4 address and a netns name"));
      }
      std::string file = Label(p.name);
      if (!files.insert(file).second) {
        file = absl::StrCat(file, "-", i);
        if (!files.insert(file).second) {
          return absl::InvalidArgumentError(
              absl::StrCat("sidecar mesh: cannot give pod '", p.name, "' a unique file name"));
        }
      }
      pod_ip.emplace(p.name, pl->second->ip);
      pod_netns.emplace(p.name, pl->second->netns);
      pod_file.emplace(p.name, file);
      pod_dns.emplace(p.name, DnsName(p, file));
    }
    return absl::OkStatus();
  }

  // A destination gets the next outbound port; the first one for an address wins.
  absl::Status Add(Destination d, uint32_t& next_port, const SidecarOptions& opts) {
    if (!d.dialed.ip.IsV4()) {
      return absl::InvalidArgumentError(absl::StrCat("sidecar mesh: ", d.dialed.ToString(),
                                                     " is IPv6; the sidecar mesh is IPv4 only"));
    }
    if (!dialed.insert(d.dialed.ToString()).second) return absl::OkStatus();
    if (next_port > 65535 || next_port == opts.inbound_port) {
      return absl::InvalidArgumentError(
          "sidecar mesh: too many destinations for the outbound port range");
    }
    d.local_port = static_cast<uint16_t>(next_port++);
    dests.push_back(std::move(d));
    return absl::OkStatus();
  }

  absl::Status AddService(const SidecarService& s, uint32_t& next_port,
                          const SidecarOptions& opts) {
    if (s.port == 0 || s.pods.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sidecar mesh: service '", s.name, "' needs a port and at least one pod"));
    }
    if (!s.target_ports.empty() && s.target_ports.size() != s.pods.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sidecar mesh: service '", s.name, "' has ", s.target_ports.size(),
                       " target ports for ", s.pods.size(), " pods (give one per pod, or none)"));
    }
    Destination d{SockAddr{s.address, s.port}, {}, {}, {}, 0, s.protocol};
    for (size_t j = 0; j < s.pods.size(); ++j) {
      const std::string& b = s.pods[j];
      uint16_t target =
          s.target_ports.empty() ? (s.target_port ? s.target_port : s.port) : s.target_ports[j];
      if (target == 0) {
        return absl::InvalidArgumentError(absl::StrCat("sidecar mesh: service '", s.name,
                                                       "' has target port 0 for pod '", b, "'"));
      }
      d.target_ports.push_back(target);
      auto it = pod_ip.find(b);
      if (it == pod_ip.end()) {
        return absl::InvalidArgumentError(absl::StrCat("sidecar mesh: service '", s.name,
                                                       "' names pod '", b,
                                                       "', which is not a pod of the mesh"));
      }
      d.backends.push_back(it->second);
      d.backend_names.push_back(pod_dns[b]);
    }
    return Add(std::move(d), next_port, opts);
  }

  absl::Status AddDestinations(const std::vector<SidecarPod>& pods,
                               const std::vector<SidecarService>& services,
                               const SidecarOptions& opts) {
    uint32_t next_port = opts.first_outbound_port;
    for (const SidecarService& s : services) WEFT_RETURN_IF_ERROR(AddService(s, next_port, opts));
    for (const SidecarPod& p : pods) {
      for (uint16_t port : p.ports) {
        if (port == 0 || port == opts.inbound_port) {
          return absl::InvalidArgumentError(absl::StrCat(
              "sidecar mesh: pod '", p.name, "' has app port ", port, ", which is reserved"));
        }
        auto proto = p.port_protocols.find(port);
        WEFT_RETURN_IF_ERROR(
            Add(Destination{SockAddr{pod_ip[p.name], port},
                            {pod_ip[p.name]},
                            {pod_dns[p.name]},
                            {port},
                            0,
                            proto == p.port_protocols.end() ? AppProtocol::kTcp : proto->second},
                next_port, opts));
      }
    }
    for (const Destination& d : dests) {
      if (d.local_port == opts.inbound_port) {
        return absl::InvalidArgumentError("sidecar mesh: outbound ports overlap the inbound port");
      }
    }
    return absl::OkStatus();
  }
};

namespace {

absl::Status CheckOptions(const SidecarOptions& opts) {
  if (opts.work_dir.empty() || access(opts.work_dir.c_str(), W_OK) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("sidecar mesh: work_dir '", opts.work_dir,
                                                   "' must be an existing writable directory"));
  }
  if (getpwnam(opts.proxy_user.c_str()) == nullptr ||
      getgrnam(opts.proxy_user.c_str()) == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("sidecar mesh: no user and group '", opts.proxy_user,
                     "' for the proxies (install haproxy, which creates it, or set proxy_user)"));
  }
  if (opts.threads < 1 || opts.maxconn < 1) {
    return absl::InvalidArgumentError("sidecar mesh: threads and maxconn must be >= 1");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SidecarMesh>> SidecarMesh::Start(
    const std::vector<PodPlacement>& placements, const std::vector<SidecarPod>& pods,
    const std::vector<SidecarService>& services, const SidecarOptions& opts) {
  WEFT_RETURN_IF_ERROR(CheckOptions(opts));
  auto mesh = std::unique_ptr<SidecarMesh>(new SidecarMesh());
  mesh->chain_prefix_ = UniqueChainPrefix();
  Topology t;
  WEFT_RETURN_IF_ERROR(t.PlacePods(placements, pods));
  WEFT_RETURN_IF_ERROR(t.AddDestinations(pods, services, opts));

  // A CA made for the run and one SPIFFE workload certificate per pod.
  WEFT_ASSIGN_OR_RETURN(auto ca, tls::CertificateAuthority::CreateRoot("weft-bench-sidecar", 48h));
  mesh->ca_cert_path_ = absl::StrCat(opts.work_dir, "/ca.pem");
  WEFT_RETURN_IF_ERROR(tls::WriteFileAtomic(mesh->ca_cert_path_, ca.root_pem(), 0644));
  for (const SidecarPod& p : pods) WEFT_RETURN_IF_ERROR(mesh->StartPod(p, t, ca, opts));
  for (PodState& ps : mesh->pods_) {
    absl::Status s =
        testbed::WaitTcp(ps.netns, SockAddr{t.pod_ip[ps.name], opts.inbound_port}, 10s);
    if (!s.ok() && !ps.proxy.Alive()) {
      auto log = tls::ReadFile(ps.proxy.log_path());
      return absl::UnavailableError(absl::StrCat("sidecar mesh: the proxy of pod '", ps.name,
                                                 "' exited: ", log.ok() ? *log : ""));
    }
    if (!s.ok()) {
      return absl::UnavailableError(absl::StrCat("sidecar mesh: the proxy of pod '", ps.name,
                                                 "' does not listen (see ", ps.proxy.log_path(),
                                                 "): ", s.message()));
    }
  }
  return mesh;
}

// One pod's sidecar: its certificate, HAProxy config (checked), capture chains and process.
absl::Status SidecarMesh::StartPod(const SidecarPod& p, Topology& t,
                                   const tls::CertificateAuthority& ca,
                                   const SidecarOptions& opts) {
  PodState st;
  st.name = p.name;
  st.file_name = t.pod_file[p.name];
  st.netns = t.pod_netns[p.name];
  SpiffeId id{opts.trust_domain, p.ns, p.service_account.empty() ? p.name : p.service_account};
  if (auto valid = SpiffeId::Parse(id.ToString()); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sidecar mesh: pod '", p.name, "' gets no valid SPIFFE id: ", valid.status().message()));
  }
  WEFT_ASSIGN_OR_RETURN(auto key, tls::GenerateKey());
  WEFT_ASSIGN_OR_RETURN(auto csr, tls::MakeCsr(key.get(), id));
  // The URI SAN is the workload's SPIFFE identity; the DNS SANs are what HAProxy can check
  // (against the SNI), so each outbound sidecar verifies it reached the pod it meant.
  WEFT_ASSIGN_OR_RETURN(auto cert,
                        ca.SignWithSans(csr.get(), {id.ToString()},
                                        {t.pod_dns[p.name], "*." + t.pod_dns[p.name]}, 24h));
  WEFT_ASSIGN_OR_RETURN(std::string cert_pem, tls::CertToPem(cert.get()));
  WEFT_ASSIGN_OR_RETURN(std::string key_pem, tls::KeyToPem(key.get()));
  const std::string base = absl::StrCat(opts.work_dir, "/", st.file_name);
  st.cert_path = base + ".crt.pem";
  // HAProxy reads certificates as root, before it switches to the proxy user.
  WEFT_RETURN_IF_ERROR(tls::WriteFileAtomic(st.cert_path, cert_pem + key_pem, 0600));
  const std::string cfg = base + ".haproxy.cfg";
  st.stats_socket = base + ".stats.sock";
  if (st.stats_socket.size() >= sizeof(sockaddr_un::sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("sidecar mesh: work_dir '", opts.work_dir,
                                                   "' is too long for a unix socket path"));
  }
  WEFT_RETURN_IF_ERROR(tls::WriteFileAtomic(cfg,
                                            HaproxyConfig(opts, st.stats_socket, t.pod_ip[p.name],
                                                          p, t.dests, st.cert_path, ca_cert_path_),
                                            0644));
  // A bad config is reported with HAProxy's own words before anything runs.
  auto check = testbed::Exec("", {opts.haproxy, "-c", "-q", "-f", cfg}, {}, 20s);
  if (!check.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sidecar mesh: haproxy rejects ", cfg, ": ", check.status().message()));
  }

  // Capture: the proxy user's own connections are not captured; loopback stays local.
  const std::string out = chain_prefix_ + "_OUT", in = chain_prefix_ + "_IN";
  std::vector<std::string> rules = {
      absl::StrCat("-A ", out, " -m owner --uid-owner ", opts.proxy_user, " -j RETURN"),
      absl::StrCat("-A ", out, " -d 127.0.0.0/8 -j RETURN")};
  for (const Destination& d : t.dests) {
    rules.push_back(absl::StrCat("-A ", out, " -p tcp -d ", d.dialed.ip.ToString(), "/32 --dport ",
                                 d.dialed.port, " -j REDIRECT --to-ports ", d.local_port));
  }
  for (uint16_t port : p.ports) {
    rules.push_back(absl::StrCat("-A ", in, " -p tcp --dport ", port, " -j REDIRECT --to-ports ",
                                 opts.inbound_port));
  }
  pods_.push_back(std::move(st));
  PodState& ps = pods_.back();
  WEFT_RETURN_IF_ERROR(InstallChains(ps, rules));

  testbed::SpawnOptions so;
  so.die_with_parent = false;  // Start may run on a short-lived thread; Stop() kills it
  WEFT_ASSIGN_OR_RETURN(ps.proxy, testbed::Spawn(ps.netns, {opts.haproxy, "-db", "-f", cfg},
                                                 base + ".haproxy.log", so));
  pids_.push_back(ps.proxy.pid());
  return absl::OkStatus();
}

absl::Status SidecarMesh::InstallChains(PodState& p, const std::vector<std::string>& rules) {
  const std::string out = chain_prefix_ + "_OUT", in = chain_prefix_ + "_IN";
  std::string batch = absl::StrCat("*nat\n:", out, " - [0:0]\n:", in, " - [0:0]\n");
  for (const std::string& r : rules) absl::StrAppend(&batch, r, "\n");
  absl::StrAppend(&batch, "-A OUTPUT -p tcp -j ", out, "\n-A PREROUTING -p tcp -j ", in,
                  "\nCOMMIT\n");
  // One atomic batch: a pod never runs with half its capture.
  auto r = testbed::Exec(p.netns, {"iptables-restore", "-w", "5", "--noflush"}, batch, 10s);
  if (!r.ok()) {
    return absl::InternalError(absl::StrCat("sidecar mesh: installing the capture chains in ",
                                            p.netns, " failed: ", r.status().message()));
  }
  p.chains = true;
  return absl::OkStatus();
}

absl::Status SidecarMesh::Stop() {
  absl::Status first;
  const std::string out = chain_prefix_ + "_OUT", in = chain_prefix_ + "_IN";
  for (PodState& p : pods_) {
    if (p.proxy.valid()) p.proxy.Terminate(2s);
    if (!p.chains) continue;
    // Each step on its own, so that a half-installed state is still removed.
    for (auto args :
         std::vector<std::vector<std::string>>{{"-D", "OUTPUT", "-p", "tcp", "-j", out},
                                               {"-D", "PREROUTING", "-p", "tcp", "-j", in},
                                               {"-F", out},
                                               {"-X", out},
                                               {"-F", in},
                                               {"-X", in}}) {
      absl::Status s = RunIptables(p.netns, args);
      if (!s.ok() && first.ok()) first = s;
    }
    p.chains = false;
  }
  return first;
}

SidecarMesh::~SidecarMesh() {
  Stop().IgnoreError();
}

absl::StatusOr<std::string> SidecarMesh::PodCertPath(std::string_view pod) const {
  for (const PodState& p : pods_) {
    if (p.name == pod) return p.cert_path;
  }
  return absl::NotFoundError(absl::StrCat("sidecar mesh: no pod '", Av(pod), "'"));
}

absl::StatusOr<SidecarMesh::Counts> SidecarMesh::ConnectionCounts(std::string_view pod) const {
  const PodState* ps = nullptr;
  for (const PodState& p : pods_) {
    if (p.name == pod) ps = &p;
  }
  if (ps == nullptr) {
    return absl::NotFoundError(absl::StrCat("sidecar mesh: no pod '", Av(pod), "'"));
  }
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  ps->stats_socket.copy(sa.sun_path, sizeof(sa.sun_path) - 1);
  timeval tv{5, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (!fd.valid() || connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    return absl::UnavailableError(absl::StrCat("sidecar mesh: cannot reach the stats socket ",
                                               ps->stats_socket, " of pod '", Av(pod),
                                               "': ", strerror(errno)));
  }
  const std::string cmd = "show stat\n";
  if (write(fd.get(), cmd.data(), cmd.size()) != static_cast<ssize_t>(cmd.size())) {
    return absl::UnavailableError(
        absl::StrCat("sidecar mesh: writing to ", ps->stats_socket, ": ", strerror(errno)));
  }
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd.get(), buf, sizeof(buf))) > 0;) out.append(buf, n);
  // "show stat" is CSV with a "# pxname,svname,...,stot,..." header; stot is the cumulative
  // session count.
  Counts c;
  int stot = -1, req_tot = -1;
  bool frontends = false;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ',');
    if (absl::StartsWith(line, "# ")) {
      for (size_t i = 0; i < f.size(); ++i) {
        if (f[i] == "stot") stot = static_cast<int>(i);
        if (f[i] == "req_tot") req_tot = static_cast<int>(i);
      }
      continue;
    }
    if (stot < 0 || f.size() <= static_cast<size_t>(stot) || f[1] != "FRONTEND") continue;
    int64_t v = 0;
    if (!absl::SimpleAtoi(f[stot], &v)) continue;
    frontends = true;
    if (f[0] == "inbound") c.inbound += v;
    if (absl::StartsWith(f[0], "out_")) {
      c.outbound += v;
      int64_t reqs = 0;
      if (req_tot >= 0 && f.size() > static_cast<size_t>(req_tot) &&
          absl::SimpleAtoi(f[req_tot], &reqs))
        c.outbound_http_requests += reqs;
    }
  }
  if (!frontends) {
    return absl::DataLossError(absl::StrCat("sidecar mesh: no frontend statistics from ",
                                            ps->stats_socket, ": ", out.substr(0, 200)));
  }
  return c;
}

std::vector<std::string> SidecarMesh::PodNames() const {
  std::vector<std::string> names;
  for (const PodState& p : pods_) names.push_back(p.name);
  return names;
}

std::vector<pid_t> SidecarMesh::ProxyPids() const {
  return pids_;
}

std::vector<std::string> SidecarMesh::Leftovers() const {
  std::vector<std::string> left;
  for (pid_t pid : pids_) {
    if (kill(pid, 0) == 0) left.push_back(absl::StrCat("process ", pid));
  }
  for (const PodState& p : pods_) {
    auto dump = testbed::Exec(p.netns, {"iptables-save", "-t", "nat"}, {}, 10s);
    if (!dump.ok()) continue;  // the netns is gone: nothing of ours can be left in it
    for (absl::string_view line : absl::StrSplit(*dump, '\n')) {
      if (absl::StrContains(line, chain_prefix_)) {
        left.push_back(absl::StrCat(p.netns, ": ", line));
      }
    }
  }
  return left;
}

}  // namespace weft::bench::sidecar
