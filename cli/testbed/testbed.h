// A multi-node mesh on one host, built from network namespaces, for integration tests, the demo
// and the benchmark.
//
// Topology (a closed world: nothing is ever connected to the host's netns, and no interface,
// route, iptables rule or cgroup of the host is touched):
//
//   <prefix>-fab        fabric: bridge br0, one port n<i> per node. No IP addresses.
//   <prefix>-n<i>       node i (0-based): eth0 (veth into br0) with 10.249.0.<i+1>/24 and
//                       fd00:249::<i+1>/64; ip_forward=1, IPv6 forwarding=1, rp_filter=0;
//                       169.254.1.1/32 on lo (the pods' gateway, see below);
//                       for every pod k on this node: vp<k> (veth to the pod) with proxy_arp=1,
//                       fe80::1/64, and the routes 10.248.<i>.<k>/32 and
//                       fd00:248:0:<i>::<k>/128 dev vp<k>;
//                       for every other node j: 10.248.<j>.0/24 via 10.249.0.<j+1> and
//                       fd00:248:0:<j>::/64 via fd00:249::<j+1>.
//   <prefix>-<pod>      pod (name sanitized, see SanitizePodName): lo up, eth0 with
//                       10.248.<node>.<k>/32 and fd00:248:0:<node>::<k>/128 (k = 1, 2, ... in
//                       the order pods of that node are listed), routes (Calico style)
//                       169.254.1.1 dev eth0 scope link, default via 169.254.1.1 dev eth0,
//                       default via fe80::1 dev eth0.
//
// Node and pod numbers appear in addresses in hexadecimal for IPv6 and decimal for IPv4. With
// Options::ipv6 = false, IPv6 is disabled in every namespace and only the IPv4 part exists.
// The node owns 169.254.1.1 on lo so that it answers the pods' ARP for their gateway (a
// testbed node has no default route, so proxy_arp alone would not answer). IPv6 DAD is off in
// every namespace, so all addresses are usable as soon as Create() returns.
//
// Naming scheme. Every object is a netns named "<prefix>-<suffix>", and a prefix has the form
//   weft-<role><pid>-<n>     e.g. weft-t4711-0, weft-bench4711-2
//   weft-<role>-<pid>-<n>    e.g. weft-demo-4711-0
// where <role> is lowercase letters, <pid> is the process that owns the testbed and <n>
// distinguishes testbeds of one process. CleanupStale() deletes the namespaces of owners that
// are no longer alive. Interface names are generic (eth0, br0, n<i>, vp<k>): they only need to
// be unique inside their namespace. veth pairs are created directly inside their two target
// namespaces, so no interface ever appears in the host netns, even briefly.
//
// Requires root (CAP_SYS_ADMIN + CAP_NET_ADMIN) and iproute2's `ip`. Captures need dumpcap
// (wireshark-common), tshark or tcpdump; PcapSummary needs tshark.
//
// Thread-safety: a Testbed is immutable after Create(); its const methods may be called from
// any thread. Process and Capture objects are not thread-safe. The free functions are
// thread-safe (they switch only the calling thread's netns, or a forked child's).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net.h"
#include "common/unique_fd.h"

namespace weft::testbed {

// ---------------------------------------------------------------------------------------------
// Names.

// A fresh prefix "weft-<role><pid>-<n>" for this process (n counts up per call, process-wide).
// `role` must be lowercase letters ("t" for tests, "bench", "demo"...).
std::string UniquePrefix(std::string_view role);

// The owner pid encoded in a netns name that follows the naming scheme above, or nullopt.
std::optional<pid_t> OwnerPid(std::string_view netns_name);

// "/run/netns/<name>": where `ip netns` keeps a named namespace.
std::string NetnsPath(std::string_view netns_name);

// The sanitized form of a pod name as used in netns names: lowercase, [a-z0-9-] kept, every
// other character becomes '-'.
std::string SanitizePodName(std::string_view pod_name);

// Deletes every netns that follows the naming scheme and whose owner pid is not alive, after
// killing any process still inside it; likewise the cgroups and bpffs pin directories named
// after such a prefix. Returns the names removed. Namespaces of live owners
// (other tests running in parallel) are never touched; a leftover whose pid has since been
// reused by an unrelated process stays until that process exits.
absl::StatusOr<std::vector<std::string>> CleanupStale();

// Removes everything of the testbed with this exact prefix whether or not its owner is alive:
// kills the processes in its namespaces, deletes the namespaces, its cgroup tree and its bpffs
// pin directories. For a supervisor that knows its testbed crashed (e.g. `weftctl down` after
// the owner died, when the pid may already be reused). Returns the netns names removed.
absl::StatusOr<std::vector<std::string>> RemoveTestbed(std::string_view prefix);

// Whether anything named after `prefix` is left: namespaces "<prefix>-*", the cgroup
// "<cgroup2>/<prefix>", bpffs pin directories BpfPinRoot(prefix)[-*]. Returns what is left.
std::vector<std::string> TestbedLeftovers(std::string_view prefix);

// The addresses Testbed gives the k-th pod (1-based slot) of node `node` (see the topology
// above), so that a planner can compute them before the testbed exists.
IpAddr PodAddress(int node, int slot);
IpAddr PodAddress6(int node, int slot);
// The fabric address of node `node`.
IpAddr NodeAddress(int node);

// Kills (SIGTERM, then SIGKILL after `grace`) every process whose network namespace is one of
// `netns_names`, except the calling process. Returns how many processes were signalled.
absl::StatusOr<int> KillProcessesInNetns(const std::vector<std::string>& netns_names,
                                         std::chrono::milliseconds grace);

// ---------------------------------------------------------------------------------------------
// Processes.

struct SpawnOptions {
  // Added to (or overriding) the parent's environment.
  std::vector<std::pair<std::string, std::string>> env;
  // PR_SET_PDEATHSIG(SIGKILL): the child dies when the *thread* that spawned it exits (Linux
  // semantics), so a crashed test does not leave daemons behind. Turn off when spawning from a
  // short-lived thread.
  bool die_with_parent = true;
  // Append to the log file instead of truncating it.
  bool append_log = false;
  // cgroup v2 directory the child joins before exec ("" = stay in the caller's cgroup).
  std::string cgroup;
  // Start from an empty environment (only `env`) instead of the parent's.
  bool clear_env = false;
  // (source, target) pairs bind-mounted in a private mount namespace of the child (mount
  // propagation to the host is turned off first, so the host's mounts are never touched), e.g.
  // a per-pod hosts file over /etc/hosts.
  std::vector<std::pair<std::string, std::string>> bind_mounts;
  // Non-empty: the child gets its own UTS namespace with this hostname.
  std::string hostname;
  // Non-empty: the child's working directory.
  std::string cwd;
  // Keep the caller's stdin, stdout and stderr (log_path is then ignored) and the caller's
  // process group (so that the child can read a terminal and gets its Ctrl-C).
  bool inherit_stdio = false;
};

class Process;

// Forks, enters the netns named `netns` ("" = stay in the caller's netns), puts the child in its
// own process group (unless SpawnOptions::inherit_stdio), redirects stdin from /dev/null and
// stdout+stderr to `log_path` ("" = /dev/null), and execs argv (argv[0] is looked up in PATH when
// it has no '/'). Only the network namespace changes (plus what SpawnOptions asks for): by
// default the mount namespace is shared, so /sys still shows the host's interfaces (programs
// that need a per-netns /sys can be run via `ip netns exec`). Returns after the exec succeeded;
// a failed exec (or a missing netns) is returned as an error.
absl::StatusOr<Process> Spawn(const std::string& netns, const std::vector<std::string>& argv,
                              const std::string& log_path, const SpawnOptions& opts = {});

// A spawned child process. Move-only; the destructor terminates it (SIGTERM to its process
// group, SIGKILL after 2 s) and reaps it. Exit statuses are encoded as a shell does: the exit
// code (0..255) if it exited, 128 + signal number if a signal killed it.
class Process {
 public:
  Process() = default;
  Process(Process&& o) noexcept;
  Process& operator=(Process&& o) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  bool valid() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }

  // True while the process has not exited. Reaps it (and records its status) once it has.
  bool Alive();
  // Sends `sig` to the child's process group (the child is a group leader, so whatever it forked
  // gets the signal too). FailedPrecondition once the child has been reaped.
  absl::Status Kill(int sig);
  // Waits up to `timeout` for the process to exit and returns its exit status;
  // DeadlineExceeded if it is still running. Returns the recorded status if already reaped.
  absl::StatusOr<int> Wait(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to `grace`, then SIGKILL; reaps and returns the exit status.
  int Terminate(std::chrono::milliseconds grace = std::chrono::seconds(2));
  // The exit status if the process has been reaped.
  std::optional<int> exit_status() const { return status_; }

 private:
  friend absl::StatusOr<Process> Spawn(const std::string&, const std::vector<std::string>&,
                                       const std::string&, const SpawnOptions&);
  bool Reap(int options);
  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::optional<int> status_;
  std::string log_path_;
};

// Runs argv to completion inside `netns` ("" = the caller's netns), feeding `stdin_data`, and
// returns its stdout. A non-zero exit is an error whose text carries the command and its stderr;
// running longer than `timeout` kills it and returns DeadlineExceeded.
absl::StatusOr<std::string> Exec(const std::string& netns, const std::vector<std::string>& argv,
                                 std::string_view stdin_data = {},
                                 std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Connects to `addr` from inside `netns` until a TCP handshake succeeds (the connection is
// closed at once, so the server sees one empty connection) or `timeout` passes.
absl::Status WaitTcp(const std::string& netns, const SockAddr& addr,
                     std::chrono::milliseconds timeout);

// ---------------------------------------------------------------------------------------------
// Packet capture.

class Capture;

// Starts capturing on `iface` inside `netns` into `pcap_path` (classic pcap format) with a BPF
// capture filter (`bpf_filter`, "" = everything), using dumpcap, else tshark, else tcpdump.
// Returns once the program reports that the interface is open with the filter attached (packets
// sent after that are captured). Its own output goes to `<pcap_path>.log`. Errors (bad interface,
// bad filter) carry that log.
absl::StatusOr<Capture> StartCapture(const std::string& netns, const std::string& iface,
                                     const std::string& pcap_path, const std::string& bpf_filter,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(10));

// A running capture. Move-only; the destructor stops it.
class Capture {
 public:
  Capture() = default;
  Capture(Capture&&) noexcept = default;
  Capture& operator=(Capture&&) noexcept = default;
  ~Capture();

  const std::string& pcap_path() const { return pcap_path_; }
  // Waits until the capture file has not grown for 400 ms (at most 5 s: libpcap's TPACKET_V3
  // ring hands packets over in blocks up to 250 ms late, and the program drops a block it has not
  // read when stopped), then SIGINT, then waits (up to 10 s) until the program has flushed and
  // exited. So Stop() takes at least ~0.4 s. Idempotent. Error (with the capture's log) if the
  // program did not exit cleanly.
  absl::Status Stop();

 private:
  friend absl::StatusOr<Capture> StartCapture(const std::string&, const std::string&,
                                              const std::string&, const std::string&,
                                              std::chrono::milliseconds);
  Process proc_;
  std::string pcap_path_;
};

inline absl::Status StopCapture(Capture& c) {
  return c.Stop();
}

// Whether the raw bytes of the capture file contain `needle`. Payload split across TCP segments
// is not reassembled: keep needles shorter than one segment.
absl::StatusOr<bool> PcapContains(const std::string& pcap_path, std::string_view needle);

struct PcapStats {
  int frames = 0;
  int tcp_packets = 0;
  int tcp_payload_packets = 0;  // TCP packets carrying at least one payload byte
  int64_t tcp_payload_bytes = 0;
  int tls_records = 0;
  int tls_handshake_records = 0;  // content type 22
  int tls_app_data_records = 0;   // content type 23 (also TLS 1.3's encrypted handshake)
};

// Dissects the capture with `tshark -r`. TLS is recognised on port 443, by tshark's TCP
// heuristic, and on every port in `tls_ports` (decoded as TLS).
absl::StatusOr<PcapStats> PcapSummary(const std::string& pcap_path,
                                      const std::vector<uint16_t>& tls_ports = {});

// ---------------------------------------------------------------------------------------------
// The testbed.

struct PodSpec {
  std::string name;  // unique after sanitizing; must not sanitize to "fab" or "n<digits>"
  int node = 0;      // 0 <= node < Options::nodes
};

struct Options {
  std::string prefix;         // follows the naming scheme; its pid must be alive (usually getpid())
  int nodes = 1;              // 1..250
  std::vector<PodSpec> pods;  // at most 250 per node
  bool ipv6 = true;           // dual-stack nodes and pods
  // Also create cgroup v2 directories: <cgroup2 mount>/<prefix> (the mesh cgroup, where eBPF
  // capture hooks attach) and one per pod below it (PodInfo::cgroup), removed with the testbed.
  bool cgroups = false;
};

struct NodeInfo {
  int index = 0;
  std::string netns;
  IpAddr ip;                  // 10.249.0.<index+1>
  std::optional<IpAddr> ip6;  // fd00:249::<index+1>
  Cidr pod_cidr;              // 10.248.<index>.0/24
  std::optional<Cidr> pod_cidr6;
};

struct PodInfo {
  std::string name;   // as given
  std::string netns;  // <prefix>-<sanitized name>
  int node = 0;
  int slot = 0;               // k: 1-based index among the pods of its node
  IpAddr ip;                  // 10.248.<node>.<k>
  std::optional<IpAddr> ip6;  // fd00:248:0:<node>::<k>
  std::string node_iface;     // the node-side veth: "vp<k>" in the node's netns
  std::string cgroup;         // <mesh cgroup>/<sanitized name> with Options::cgroups, else ""
};

// "/sys/fs/bpf/weft/<prefix>": the testbed's bpffs pin directories are this path or this path
// followed by "-<suffix>" (e.g. one per node); they are removed with the testbed.
std::string BpfPinRoot(std::string_view prefix);

// A socket created inside the pod's netns by a task in the pod's cgroup (a socket belongs to
// its creator's cgroup, which decides which cgroup BPF hooks see its connect()): what a process
// of the pod would get from socket(2). Forks a short-lived child.
absl::StatusOr<UniqueFd> SocketInPod(const PodInfo& pod, int family, int type);

// A blocking TCP connection from the pod to `to` (socket from SocketInPod when the pod has a
// cgroup, else from its netns), with `timeout` on connect, send and receive.
absl::StatusOr<UniqueFd> DialFromPod(const PodInfo& pod, const SockAddr& to,
                                     std::chrono::milliseconds timeout);

class Testbed {
 public:
  static constexpr const char* kFabricIface = "eth0";  // a node's interface into the fabric
  static constexpr const char* kPodIface = "eth0";     // a pod's only interface

  // Builds the whole topology (a 2-node 4-pod testbed takes well under 2 s). On error,
  // everything created so far is removed. AlreadyExists if a netns with the prefix exists.
  static absl::StatusOr<std::unique_ptr<Testbed>> Create(const Options& opts);
  // Kills every process inside the testbed's namespaces (not only the ones spawned through this
  // library; SIGTERM, SIGKILL after 1 s), then deletes the namespaces. Sockets still open in a
  // namespace keep the kernel object alive until they close, but its name is gone.
  ~Testbed();
  Testbed(const Testbed&) = delete;
  Testbed& operator=(const Testbed&) = delete;

  const std::string& prefix() const { return prefix_; }
  const std::string& FabricNetns() const { return fabric_netns_; }
  const std::vector<NodeInfo>& nodes() const { return nodes_; }
  const std::vector<PodInfo>& pods() const { return pods_; }
  // Every netns of this testbed (fabric, nodes, pods).
  std::vector<std::string> AllNetns() const;

  // Lookups; NotFound for an unknown pod name or node index.
  absl::StatusOr<PodInfo> Pod(std::string_view name) const;
  absl::StatusOr<std::string> PodNetns(std::string_view name) const;
  absl::StatusOr<IpAddr> PodIp(std::string_view name) const;
  absl::StatusOr<IpAddr> PodIp6(std::string_view name) const;  // NotFound without ipv6
  absl::StatusOr<std::string> NodeNetns(int node) const;
  absl::StatusOr<IpAddr> NodeIp(int node) const;
  std::string NodeFabricIface(int /*node*/) const { return kFabricIface; }
  // The mesh cgroup ("" without Options::cgroups).
  const std::string& MeshCgroup() const { return mesh_cgroup_; }

 private:
  Testbed() = default;
  // Build's steps, in order.
  absl::Status Build(const Options& opts);
  static absl::Status CheckOptions(const Options& opts);
  absl::Status LayOut(const Options& opts);
  absl::Status CreateNamespaces();
  absl::Status SetSysctls();
  absl::Status WireFabric();
  absl::Status WireNode(const NodeInfo& n);
  absl::Status WirePods();
  absl::Status CreateCgroups();
  void Destroy();

  std::string prefix_;
  std::string fabric_netns_;
  std::vector<NodeInfo> nodes_;
  std::vector<PodInfo> pods_;
  bool ipv6_ = true;
  std::vector<std::string> created_;  // netns this object created and must delete
  std::string mesh_cgroup_;
};

}  // namespace weft::testbed
