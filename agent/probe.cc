#include "agent/probe.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bpf/bpffs.h"
#include "bpf/capture.h"
#include "bpf/relay.h"
#include "common/file.h"
#include "common/loopback.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace weft::agent {
namespace {

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

// Effective capabilities from /proc/self/status (CapEff, hex).
uint64_t EffectiveCaps() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("CapEff:", 0) == 0) return std::strtoull(line.c_str() + 7, nullptr, 16);
  }
  return 0;
}

// Unprivileged, every BPF load fails with EPERM and libbpf's probes can then report either
// way (the helper probe says "available"): their results are not used.
constexpr char kNotProbed[] = "not probed: loading BPF needs root or CAP_BPF";

std::string ProbeError(int rc) {
  if (rc == 0) return "not supported by this kernel";
  int err = rc < 0 ? -rc : rc;
  if (err == EPERM || err == EACCES) return "could not probe: not permitted (run as root)";
  return absl::StrCat("could not probe: ", std::strerror(err));
}

ProbeItem ProgType(bpf_prog_type type, std::string_view name, bool required, std::string_view why) {
  ProbeItem it{absl::StrCat("program type ", Av(name)), false, required, "", std::string(why)};
  int rc = libbpf_probe_bpf_prog_type(type, nullptr);
  it.ok = rc == 1;
  it.detail = it.ok ? "loads" : ProbeError(rc);
  return it;
}

ProbeItem Helper(bpf_prog_type type, std::string_view prog, bpf_func_id id, std::string_view helper,
                 bool required, std::string_view why) {
  ProbeItem it{absl::StrCat("helper ", Av(helper), " in ", Av(prog)), false, required, "",
               std::string(why)};
  int rc = libbpf_probe_bpf_helper(type, id, nullptr);
  it.ok = rc == 1;
  it.detail = it.ok ? "available" : ProbeError(rc);
  return it;
}

ProbeItem MapType(bpf_map_type type, std::string_view name, std::string_view why) {
  ProbeItem it{absl::StrCat("map type ", Av(name)), false, true, "", std::string(why)};
  int rc = libbpf_probe_bpf_map_type(type, nullptr);
  it.ok = rc == 1;
  it.detail = it.ok ? "available" : ProbeError(rc);
  return it;
}

ProbeItem Privileges() {
  ProbeItem it{"privileges", false, true, "",
               "loading programs, pinning and attaching need root or CAP_BPF + CAP_NET_ADMIN + "
               "CAP_SYS_ADMIN"};
  uint64_t caps = EffectiveCaps();
  bool sys_admin = caps & (1ull << CAP_SYS_ADMIN);
  bool bpf = caps & (1ull << CAP_BPF);
  bool net_admin = caps & (1ull << CAP_NET_ADMIN);
  it.ok = sys_admin || (bpf && net_admin);
  it.detail =
      absl::StrCat("uid ", ::geteuid(), ", CAP_SYS_ADMIN ", sys_admin ? "yes" : "no", ", CAP_BPF ",
                   bpf ? "yes" : "no", ", CAP_NET_ADMIN ", net_admin ? "yes" : "no");
  return it;
}

ProbeItem NetnsCookies() {
  ProbeItem it{"netns cookies (SO_NETNS_COOKIE)", false, true, "",
               "the agent enrols pods by netns cookie; ztunnel looks up original destinations "
               "by the accepted socket's netns cookie (Linux 5.14+)"};
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (!s) {
    it.detail = absl::StrCat("socket: ", std::strerror(errno));
  } else if (::getsockopt(s.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) {
    it.detail = absl::StrCat("getsockopt: ", std::strerror(errno));
  } else {
    it.ok = cookie != 0;
    it.detail = absl::StrCat("this netns: ", cookie);
  }
  return it;
}

// kTLS: listed in tcp_available_ulp once the tls module is loaded; otherwise try to enable
// it on a connected loopback socket (which loads the module where it exists).
ProbeItem Ktls(const std::string& ulp_path) {
  ProbeItem it{"kTLS (TCP_ULP \"tls\")", false, false, "",
               "optional: lets ztunnel hand TLS record crypto to the kernel (and sockmap "
               "redirect of TLS streams); without it ztunnel does TLS in user space"};
  std::string ulps = ReadFile(ulp_path).value_or("");
  std::vector<std::string> names = absl::StrSplit(ulps, absl::ByAnyChar(" \n"), absl::SkipEmpty());
  for (const std::string& u : names) {
    if (u == "tls") {
      it.ok = true;
      it.detail = absl::StrCat("listed in ", ulp_path);
      return it;
    }
  }
  UniqueFd pair[2];
  if (absl::Status st = LoopbackTcpPair(pair); !st.ok()) {
    it.detail = absl::StrCat("not listed in ", ulp_path, " (\"", absl::StripAsciiWhitespace(ulps),
                             "\"); could not set up a loopback test connection: ", st.message());
    return it;
  }
  if (::setsockopt(pair[0].get(), IPPROTO_TCP, TCP_ULP, "tls", 3) == 0) {
    it.ok = true;
    it.detail = "TCP_ULP tls accepted on a loopback connection";
  } else {
    it.detail = absl::StrCat("not listed in ", ulp_path, " (\"", absl::StripAsciiWhitespace(ulps),
                             "\") and setsockopt(TCP_ULP, \"tls\") failed: ", std::strerror(errno));
  }
  return it;
}

}  // namespace

const ProbeItem* ProbeReport::Find(std::string_view feature) const {
  for (const ProbeItem& i : items)
    if (i.feature == feature) return &i;
  return nullptr;
}

std::string ProbeReport::Format() const {
  std::string out = absl::StrCat("Weft kernel check (Linux ", kernel, ")\n");
  for (const ProbeItem& i : items) {
    std::string status = i.ok ? "ok" : (i.required ? "MISSING" : "missing (optional)");
    std::string name = i.feature;
    if (name.size() < 52) name.resize(52, ' ');
    absl::StrAppend(&out, "  ", status,
                    std::string(status.size() < 20 ? 20 - status.size() : 1, ' '), name, " ",
                    i.detail, "\n", std::string(24, ' '), "why: ", i.why, "\n");
  }
  absl::StrAppend(&out, "Decision: ", decision, "\n");
  if (!relay_decision.empty()) absl::StrAppend(&out, "Same-node relay: ", relay_decision, "\n");
  return out;
}

namespace {

// The cgroup v2 mount (`*mount`: where; empty if none).
ProbeItem Cgroup2Mount(const std::string& mounts_path, std::string* mount) {
  ProbeItem it{"cgroup v2 mount", false, true, "",
               "connect4/connect6/sockops attach to a cgroup v2 directory (the mount root or "
               "the kubepods slice); --cgroup defaults to the mount root"};
  std::string mounts = ReadFile(mounts_path).value_or("");
  std::string found;
  std::vector<std::string> lines = absl::StrSplit(mounts, '\n');
  for (const std::string& line : lines) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() < 3 || f[2] != "cgroup2") continue;
    found = std::string(f[1]);
    if (found == "/sys/fs/cgroup") break;
  }
  it.ok = !found.empty();
  it.detail = it.ok ? absl::StrCat("mounted at ", found)
                    : absl::StrCat("no cgroup2 entry in ", mounts_path);
  *mount = found;
  return it;
}

ProbeItem Bpffs(const std::string& bpffs_root) {
  ProbeItem it{"bpffs", false, true, "",
               "maps and links are pinned there so pods keep their capture while the agent "
               "restarts, and ztunnel opens the maps by path"};
  bool mounted = bpf::IsBpffs(bpffs_root);
  bool fs_known = ReadFile("/proc/filesystems").value_or("").find("\tbpf\n") != std::string::npos;
  it.ok = mounted || fs_known;
  it.detail = mounted ? absl::StrCat("mounted at ", bpffs_root)
              : fs_known
                  ? absl::StrCat("not mounted at ", bpffs_root, "; weft-agent mounts it at start")
                  : "the kernel has no bpf filesystem (CONFIG_BPF_SYSCALL)";
  return it;
}

ProbeItem Btf(const std::string& btf_path) {
  ProbeItem it{"BTF (kernel type info)", false, false, "",
               "optional: the capture programs need no CO-RE relocations (ztunnel's same-node "
               "sockmap relay does: it reads tcp_sock.bytes_acked); with BTF bpftool shows map "
               "layouts by field name"};
  struct stat st {};
  it.ok = ::stat(btf_path.c_str(), &st) == 0;
  it.detail = it.ok ? absl::StrCat(btf_path, " (", st.st_size, " bytes)")
                    : absl::StrCat(btf_path, ": ", std::strerror(errno));
  return it;
}

// The BPF program types, helpers and map types the capture uses (a table).
void ProbeBpfFeatures(std::vector<ProbeItem>* items) {
  items->push_back(ProgType(BPF_PROG_TYPE_SK_LOOKUP, "sk_lookup", true,
                            "inbound: steers SYNs for pod addresses to ztunnel's in-pod "
                            "listeners (Linux 5.9+)"));
  items->push_back(ProgType(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "cgroup_sock_addr", true,
                            "outbound: connect4/connect6 rewrite pod connects to ztunnel's "
                            "outbound listener"));
  items->push_back(ProgType(BPF_PROG_TYPE_SOCK_OPS, "sock_ops", true,
                            "files each redirected connection's original destination under the "
                            "peer address ztunnel sees"));
  items->push_back(ProgType(BPF_PROG_TYPE_SK_SKB, "sk_skb", false,
                            "optional: sockmap stream redirect for the same-node fast path"));
  items->push_back(ProgType(BPF_PROG_TYPE_SK_MSG, "sk_msg", false,
                            "optional: sockmap redirect accelerator for the app<->ztunnel hop"));

  items->push_back(Helper(BPF_PROG_TYPE_SK_LOOKUP, "sk_lookup", BPF_FUNC_sk_assign, "bpf_sk_assign",
                          true, "hands the SYN to ztunnel's listener (or drops it: fail closed)"));
  items->push_back(Helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "cgroup_sock_addr",
                          BPF_FUNC_get_netns_cookie, "bpf_get_netns_cookie", true,
                          "connect hooks act only in enrolled pods' netns (Linux 5.8+)"));
  items->push_back(Helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "cgroup_sock_addr",
                          BPF_FUNC_get_socket_cookie, "bpf_get_socket_cookie", true,
                          "keys the original destination by the app socket"));
  items->push_back(Helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "cgroup_sock_addr", BPF_FUNC_set_retval,
                          "bpf_set_retval", false,
                          "optional: a connect denied at the source (deny at connect) fails with "
                          "EACCES; without it EPERM (Linux 5.18+)"));
  items->push_back(Helper(BPF_PROG_TYPE_SOCK_OPS, "sock_ops", BPF_FUNC_get_socket_cookie,
                          "bpf_get_socket_cookie", true,
                          "finds the connect's record when its source port is known"));
  items->push_back(Helper(BPF_PROG_TYPE_SK_SKB, "sk_skb", BPF_FUNC_sk_redirect_hash,
                          "bpf_sk_redirect_hash", false,
                          "optional: same-node fast path moves bytes between ztunnel's sockets "
                          "in the kernel"));

  items->push_back(MapType(BPF_MAP_TYPE_SOCKHASH, "SOCKHASH",
                           "weft_listeners holds ztunnel's listening sockets per pod"));
  items->push_back(
      MapType(BPF_MAP_TYPE_LPM_TRIE, "LPM_TRIE", "per-pod excluded destination CIDRs"));
  items->push_back(MapType(BPF_MAP_TYPE_LRU_HASH, "LRU_HASH", "original destinations"));
  items->push_back(MapType(BPF_MAP_TYPE_PERCPU_ARRAY, "PERCPU_ARRAY",
                           "per-reason decision counters (weft_bpf_decisions_total)"));
}

// ztunnel's same-node sockmap relay (bpf/relay.h), run for real: the program loads (sk_skb
// stream verdict, BTF), and on loopback TCP pairs in this netns bytes queued before the join,
// both directions and a FIN passed on after the drain all come out right.
ProbeItem SockmapRelay() {
  ProbeItem it{"sockmap same-node relay (self-test)", false, false, "",
               "optional: ztunnel's same-node fast path moves bytes between its two sockets in "
               "the kernel (no wake-up per message); without it, splice(2)"};
  absl::Status st = bpf::SelfTestRelay();
  it.ok = st.ok();
  it.detail = st.ok() ? "loaded, relayed in order both ways, FIN after the last byte"
                      : std::string(st.message());
  return it;
}

// The local legs (docs/fastpath.md, "The local legs of cross-node traffic"): the outbound object
// loads with its sk_msg program (needs bpf_msg_redirect_hash, CO-RE reads of tcp_sock and
// sk_psock.msg_tot_len, the bound of the redirected queue).
ProbeItem LocalLegs() {
  ProbeItem it{"sk_msg local legs (app <-> ztunnel)", false, false, "",
               "optional: weft-agent --local-legs moves bytes between an app and ztunnel in "
               "the pod without the loopback TCP stack; without it, plain loopback TCP"};
  auto out = bpf::OutboundCapture::Load();
  if (!out.ok()) {
    it.detail = std::string(out.status().message());
    return it;
  }
  it.ok = (*out)->local_legs_unsupported().empty();
  it.detail = it.ok ? "the sk_msg program loads" : (*out)->local_legs_unsupported();
  return it;
}

// The decision line from the items (`privileged`: whether the BPF probes could run).
void Decide(bool privileged, ProbeReport* r) {
  std::vector<std::string> missing, optional_missing;
  for (const ProbeItem& i : r->items) {
    if (i.ok) continue;
    (i.required ? missing : optional_missing).push_back(i.feature);
  }
  r->ebpf_possible = missing.empty();
  if (!privileged) {
    r->decision =
        "iptables capture (in-pod REDIRECT rules): eBPF needs privileges (root, or CAP_BPF + "
        "CAP_NET_ADMIN + CAP_SYS_ADMIN); the BPF program, helper and map probes need them too";
    return;
  }
  if (r->ebpf_possible) {
    r->decision = "eBPF capture: every required feature is present";
    if (!optional_missing.empty())
      absl::StrAppend(&r->decision, " (optional, missing: ", absl::StrJoin(optional_missing, ", "),
                      ")");
  } else {
    r->decision = absl::StrCat("iptables capture (in-pod REDIRECT rules): eBPF needs ",
                               absl::StrJoin(missing, ", "));
  }
}

}  // namespace

ProbeReport ProbeKernel(const ProbeOptions& opts) {
  ProbeReport r;
  utsname u{};
  if (::uname(&u) == 0) r.kernel = u.release;
  // Probe errors are reported per item; libbpf's own stderr chatter would only confuse.
  libbpf_print_fn_t old = libbpf_set_print(nullptr);

  r.items.push_back(Privileges());
  const bool privileged = r.items.back().ok;
  r.items.push_back(Cgroup2Mount(opts.mounts_path, &r.cgroup2_mount));
  r.items.push_back(Bpffs(opts.bpffs_root));
  r.items.push_back(Btf(opts.btf_path));

  const size_t first_bpf_item = r.items.size();  // program, helper and map probes follow
  ProbeBpfFeatures(&r.items);
  r.items.push_back(privileged ? SockmapRelay()
                               : ProbeItem{"sockmap same-node relay (self-test)", false, false, "",
                                           "optional: ztunnel's "
                                           "same-node fast path without splice"});
  r.sockmap_relay = r.items.back().ok;
  r.items.push_back(privileged ? LocalLegs()
                               : ProbeItem{"sk_msg local legs (app <-> ztunnel)", false, false, "",
                                           "optional: weft-agent --local-legs"});
  if (!privileged) {
    for (size_t i = first_bpf_item; i < r.items.size(); ++i) {
      r.items[i].ok = false;
      r.items[i].detail = kNotProbed;
    }
  }
  r.items.push_back(NetnsCookies());
  r.items.push_back(Ktls(opts.tcp_ulp_path));
  libbpf_set_print(old);
  Decide(privileged, &r);
  r.relay_decision = r.sockmap_relay
                         ? "sockmap (ztunnel --same-node-relay=auto moves same-node bytes in the "
                           "kernel)"
                         : "splice (ztunnel --same-node-relay=auto falls back: the sockmap relay "
                           "is unavailable)";
  return r;
}

}  // namespace weft::agent
