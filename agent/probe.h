// Kernel probe: can this node run Weft's eBPF capture? Checks every kernel feature the
// programs and the agent use (program types, helpers, map types, cgroup v2, bpffs, netns
// cookies, privileges) plus optional ones (BTF, kTLS, the sockmap program types and ztunnel's
// same-node sockmap relay, run once on loopback sockets),
// prints one report and decides between eBPF and iptables capture. Used by weft-agent at start
// (--capture auto) and by `weftctl check`.
//
// The probe has no lasting side effects: it loads and unloads tiny test programs and maps
// (libbpf_probe_*), opens sockets, reads /proc and /sys. It does not mount bpffs (it reports
// whether the agent would have to, and whether it could).
#pragma once

#include <string>
#include <vector>

namespace weft::agent {

struct ProbeItem {
  std::string feature;  // "program type sk_lookup", "cgroup v2 mount", ...
  bool ok = false;
  bool required = true;  // required for eBPF mode; optional ones only inform
  std::string detail;    // what was found, or why it is missing
  std::string why;       // why it matters to Weft
};

struct ProbeReport {
  std::string kernel;  // uname release
  std::vector<ProbeItem> items;
  std::string cgroup2_mount;  // empty when there is none
  bool ebpf_possible = false;
  // "eBPF capture: ..." or "iptables capture: <the missing required features>".
  std::string decision;
  // ztunnel's same-node fast path (docs/fastpath.md): whether this kernel runs the sockmap
  // relay (its self-test passed), and the line saying which relay `--same-node-relay=auto` takes.
  bool sockmap_relay = false;
  std::string relay_decision;

  // The printed report: one line per feature (status, name, detail, why it matters), then
  // the decision.
  std::string Format() const;
  const ProbeItem* Find(std::string_view feature) const;
};

struct ProbeOptions {
  std::string mounts_path = "/proc/self/mounts";
  std::string btf_path = "/sys/kernel/btf/vmlinux";
  std::string bpffs_root = "/sys/fs/bpf";
  std::string tcp_ulp_path = "/proc/sys/net/ipv4/tcp_available_ulp";
};

ProbeReport ProbeKernel(const ProbeOptions& opts = {});

}  // namespace weft::agent
