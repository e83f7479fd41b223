// Naming, topology construction and teardown.

#include "cli/testbed/testbed.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/testbed/internal.h"
#include "common/log.h"
#include "common/netns.h"
#include "common/status.h"

namespace weft::testbed {
namespace {

constexpr const char* kNetnsDir = "/run/netns";
constexpr int kMaxNodes = 250;
constexpr int kMaxPodsPerNode = 250;

bool PidAlive(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

bool NetnsExists(const std::string& name) {
  struct stat st;
  return ::lstat(NetnsPath(name).c_str(), &st) == 0;
}

// Serializes `ip netns add/del` between our processes: when /run/netns is not yet a mount point,
// concurrent `ip netns add` calls each bind-mount it onto itself and stack mounts.
class NetnsLock {
 public:
  NetnsLock() {
    fd_.reset(::open("/run/weft-testbed.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (fd_) {
      while (::flock(fd_.get(), LOCK_EX) != 0 && errno == EINTR) {
      }
    }
  }

 private:
  UniqueFd fd_;
};

absl::Status WriteSysctl(const std::string& path, std::string_view value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return ErrnoError(errno, absl::StrCat("open ", path));
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
    return ErrnoError(errno, absl::StrCat("write ", path));
  return absl::OkStatus();
}

// Writes sysctls from inside `netns`: /proc/sys/net shows the netns of the calling thread, so
// nothing is written in the host netns and no process is forked.
absl::Status SysctlsInNetns(const std::string& netns,
                            const std::vector<std::pair<std::string, std::string>>& kv) {
  WEFT_ASSIGN_OR_RETURN(UniqueFd fd, OpenNetns(NetnsPath(netns)));
  return RunInNetns(fd.get(), [&]() -> absl::Status {
    for (const auto& [k, v] : kv) {
      absl::Status s = WriteSysctl(absl::StrCat("/proc/sys/", k), v);
      if (!s.ok()) {
        return absl::Status(s.code(), absl::StrCat("netns ", netns, ": ", s.message()));
      }
    }
    return absl::OkStatus();
  });
}

absl::Status IpBatch(const std::string& netns, const std::string& script) {
  auto r = Exec("", {"ip", "-n", netns, "-batch", "-"}, script);
  if (!r.ok()) {
    return absl::Status(r.status().code(),
                        absl::StrCat("configuring netns ", netns, ": ", r.status().message()));
  }
  return absl::OkStatus();
}

// Deletes named netns. A name already gone (e.g. removed by a concurrent CleanupStale) is fine.
absl::Status DeleteNetns(const std::vector<std::string>& names) {
  if (names.empty()) return absl::OkStatus();
  std::string script;
  for (const auto& n : names) absl::StrAppend(&script, "netns del ", n, "\n");
  absl::Status st;
  {
    NetnsLock lock;
    st = Exec("", {"ip", "-force", "-batch", "-"}, script).status();
  }
  std::vector<std::string> left;
  for (const auto& n : names)
    if (NetnsExists(n)) left.push_back(n);
  if (!left.empty()) {
    return absl::InternalError(
        absl::StrCat("could not delete netns ", absl::StrJoin(left, ", "), ": ", st.message()));
  }
  return absl::OkStatus();
}

std::string V6(std::string_view fmt_prefix, int a, int b = -1) {
  return b < 0 ? absl::StrFormat("%s%x", Av(fmt_prefix), a)
               : absl::StrFormat("%s%x::%x", Av(fmt_prefix), a, b);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Names.

std::string UniquePrefix(std::string_view role) {
  static std::atomic<int> counter{0};
  return absl::StrCat("weft-", Av(role), ::getpid(), "-", counter.fetch_add(1));
}

std::optional<pid_t> OwnerPid(std::string_view name) {
  constexpr std::string_view kHead = "weft-";
  if (name.substr(0, kHead.size()) != kHead) return std::nullopt;
  size_t i = kHead.size();
  while (i < name.size() && name[i] >= 'a' && name[i] <= 'z') ++i;
  if (i == kHead.size()) return std::nullopt;
  if (i < name.size() && name[i] == '-') ++i;
  size_t j = i;
  while (j < name.size() && std::isdigit(static_cast<unsigned char>(name[j]))) ++j;
  if (j == i || j - i > 9) return std::nullopt;
  if (j < name.size() && name[j] != '-') return std::nullopt;
  int pid = 0;
  if (!absl::SimpleAtoi(Av(name.substr(i, j - i)), &pid) || pid <= 0) return std::nullopt;
  return static_cast<pid_t>(pid);
}

std::string NetnsPath(std::string_view name) {
  return absl::StrCat(kNetnsDir, "/", Av(name));
}

std::string SanitizePodName(std::string_view pod_name) {
  std::string out;
  out.reserve(pod_name.size());
  for (char ch : pod_name) {
    unsigned char c = static_cast<unsigned char>(std::tolower(static_cast<unsigned char>(ch)));
    out.push_back((std::isalnum(c) && c < 0x80) || c == '-' ? static_cast<char>(c) : '-');
  }
  return out;
}

absl::StatusOr<int> KillProcessesInNetns(const std::vector<std::string>& netns_names,
                                         std::chrono::milliseconds grace) {
  // A name under /run/netns can be bound to any namespace (`ip netns attach NAME 1` binds the
  // host's): never treat the host's or our own netns as a testbed namespace.
  std::set<std::pair<dev_t, ino_t>> protected_ns;
  for (const char* p : {"/proc/1/ns/net", "/proc/self/ns/net", "/proc/thread-self/ns/net"}) {
    struct stat st;
    if (::stat(p, &st) == 0) protected_ns.insert({st.st_dev, st.st_ino});
  }
  std::set<std::pair<dev_t, ino_t>> targets;
  for (const auto& n : netns_names) {
    struct stat st;
    if (::stat(NetnsPath(n).c_str(), &st) != 0) continue;
    if (protected_ns.count({st.st_dev, st.st_ino})) {
      LOG_WARN("testbed", "netns name refers to the host's or our own namespace; not killing",
               {{"netns", n}});
      continue;
    }
    targets.insert({st.st_dev, st.st_ino});
  }
  if (targets.empty()) return 0;
  auto scan = [&]() {
    std::vector<pid_t> found;
    DIR* d = ::opendir("/proc");
    if (!d) return found;
    pid_t self = ::getpid();
    while (dirent* e = ::readdir(d)) {
      int pid = 0;
      if (!absl::SimpleAtoi(e->d_name, &pid) || pid <= 0 || pid == self) continue;
      struct stat st;
      // Fails for zombies (no namespaces any more) and for processes that just exited.
      if (::stat(absl::StrCat("/proc/", pid, "/ns/net").c_str(), &st) != 0) continue;
      if (targets.count({st.st_dev, st.st_ino})) found.push_back(pid);
    }
    ::closedir(d);
    return found;
  };
  std::vector<pid_t> victims = scan();
  if (victims.empty()) return 0;
  for (pid_t p : victims) ::kill(p, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  std::vector<pid_t> left;
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    left = scan();
  } while (!left.empty() && std::chrono::steady_clock::now() < deadline);
  for (pid_t p : left) ::kill(p, SIGKILL);
  return static_cast<int>(victims.size());
}

absl::StatusOr<std::vector<std::string>> CleanupStale() {
  std::vector<std::string> stale;
  DIR* d = ::opendir(kNetnsDir);
  if (!d) {
    if (errno == ENOENT) return stale;
    return ErrnoError(errno, absl::StrCat("opendir ", kNetnsDir));
  }
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    auto pid = OwnerPid(name);
    if (pid && !PidAlive(*pid)) stale.push_back(name);
  }
  ::closedir(d);
  CleanupStaleKernelObjects();
  if (stale.empty()) return stale;
  WEFT_RETURN_IF_ERROR(KillProcessesInNetns(stale, std::chrono::milliseconds(500)).status());
  WEFT_RETURN_IF_ERROR(DeleteNetns(stale));
  LOG_INFO("testbed", "removed stale namespaces", {{"netns", absl::StrJoin(stale, " ")}});
  return stale;
}

absl::StatusOr<std::vector<std::string>> RemoveTestbed(std::string_view prefix) {
  std::vector<std::string> mine;
  const std::string head = absl::StrCat(Av(prefix), "-");
  if (prefix.empty() || !OwnerPid(prefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", Av(prefix), "' is not a testbed prefix (weft-<role><pid>-<n>)"));
  }
  if (DIR* d = ::opendir(kNetnsDir)) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.rfind(head, 0) == 0) mine.push_back(name);
    }
    ::closedir(d);
  }
  if (!mine.empty()) {
    WEFT_RETURN_IF_ERROR(KillProcessesInNetns(mine, std::chrono::milliseconds(1000)).status());
  }
  RemoveTestbedKernelObjects(std::string(prefix));
  WEFT_RETURN_IF_ERROR(DeleteNetns(mine));
  return mine;
}

std::vector<std::string> TestbedLeftovers(std::string_view prefix) {
  std::vector<std::string> left;
  const std::string head = absl::StrCat(Av(prefix), "-");
  if (DIR* d = ::opendir(kNetnsDir)) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.rfind(head, 0) == 0) left.push_back(NetnsPath(name));
    }
    ::closedir(d);
  }
  for (std::string& o : internal::KernelObjectsOf(std::string(prefix))) left.push_back(o);
  std::sort(left.begin(), left.end());
  return left;
}

IpAddr PodAddress(int node, int slot) {
  return IpAddr::V4((10u << 24) | (248u << 16) | (static_cast<uint32_t>(node) << 8) |
                    static_cast<uint32_t>(slot));
}

IpAddr PodAddress6(int node, int slot) {
  return *IpAddr::Parse(V6("fd00:248:0:", node, slot));
}

IpAddr NodeAddress(int node) {
  return IpAddr::V4((10u << 24) | (249u << 16) | static_cast<uint32_t>(node + 1));
}

// ---------------------------------------------------------------------------------------------
// Testbed.

absl::StatusOr<std::unique_ptr<Testbed>> Testbed::Create(const Options& opts) {
  std::unique_ptr<Testbed> tb(new Testbed());
  absl::Status st = tb->Build(opts);
  if (!st.ok()) return st;  // ~Testbed removes whatever was created
  return tb;
}

Testbed::~Testbed() {
  Destroy();
}

void Testbed::Destroy() {
  if (created_.empty()) return;
  auto killed = KillProcessesInNetns(created_, std::chrono::seconds(1));
  if (!killed.ok()) {
    LOG_WARN("testbed", "cannot kill processes in testbed",
             {{"error", killed.status().ToString()}});
  }
  RemoveTestbedKernelObjects(prefix_);
  absl::Status st = DeleteNetns(created_);
  if (!st.ok()) LOG_WARN("testbed", "testbed teardown incomplete", {{"error", st.ToString()}});
  created_.clear();
}

absl::Status Testbed::Build(const Options& opts) {
  WEFT_RETURN_IF_ERROR(CheckOptions(opts));
  WEFT_RETURN_IF_ERROR(LayOut(opts));
  WEFT_RETURN_IF_ERROR(CreateNamespaces());
  WEFT_RETURN_IF_ERROR(SetSysctls());
  WEFT_RETURN_IF_ERROR(WireFabric());
  for (const NodeInfo& n : nodes_) WEFT_RETURN_IF_ERROR(WireNode(n));
  WEFT_RETURN_IF_ERROR(WirePods());
  if (opts.cgroups) WEFT_RETURN_IF_ERROR(CreateCgroups());
  LOG_DEBUG("testbed", "testbed created",
            {{"prefix", prefix_}, {"nodes", nodes_.size()}, {"pods", pods_.size()}});
  return absl::OkStatus();
}

// The prefix follows the naming scheme and names this live process; the node count fits.
absl::Status Testbed::CheckOptions(const Options& opts) {
  auto owner = OwnerPid(opts.prefix);
  bool charset_ok = !opts.prefix.empty();
  for (char c : opts.prefix)
    charset_ok &= (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  if (!owner || !charset_ok || opts.prefix.back() == '-') {
    return absl::InvalidArgumentError(absl::StrCat(
        "testbed prefix '", opts.prefix,
        "' does not follow the naming scheme weft-<role><pid>-<n> (lowercase, digits, '-'); use "
        "weft::testbed::UniquePrefix(\"t\")"));
  }
  if (!PidAlive(*owner)) {
    return absl::InvalidArgumentError(
        absl::StrCat("testbed prefix '", opts.prefix, "' names pid ", *owner,
                     ", which is not running: CleanupStale() would delete the testbed. Use "
                     "UniquePrefix(), which encodes this process's pid"));
  }
  if (opts.prefix.size() > 180) {
    return absl::InvalidArgumentError(
        absl::StrCat("testbed prefix '", opts.prefix, "' is too long (at most 180 characters)"));
  }
  if (opts.nodes < 1 || opts.nodes > kMaxNodes) {
    return absl::InvalidArgumentError(
        absl::StrCat("testbed needs 1..", kMaxNodes, " nodes, got ", opts.nodes));
  }
  return absl::OkStatus();
}

// Names and addresses of the fabric, the nodes and the pods (nothing is created yet).
absl::Status Testbed::LayOut(const Options& opts) {
  prefix_ = opts.prefix;
  ipv6_ = opts.ipv6;
  fabric_netns_ = prefix_ + "-fab";
  for (int i = 0; i < opts.nodes; ++i) {
    NodeInfo n;
    n.index = i;
    n.netns = absl::StrCat(prefix_, "-n", i);
    n.ip = NodeAddress(i);
    WEFT_ASSIGN_OR_RETURN(n.pod_cidr, Cidr::Parse(absl::StrCat("10.248.", i, ".0/24")));
    if (ipv6_) {
      WEFT_ASSIGN_OR_RETURN(n.ip6, IpAddr::Parse(V6("fd00:249::", i + 1)));
      WEFT_ASSIGN_OR_RETURN(n.pod_cidr6, Cidr::Parse(V6("fd00:248:0:", i) + "::/64"));
    }
    nodes_.push_back(std::move(n));
  }
  std::map<std::string, std::string> seen;  // sanitized -> original
  std::vector<int> per_node(opts.nodes, 0);
  for (const PodSpec& spec : opts.pods) {
    std::string san = SanitizePodName(spec.name);
    bool reserved = san == "fab" || (san.size() > 1 && san[0] == 'n' &&
                                     san.find_first_not_of("0123456789", 1) == std::string::npos);
    if (san.empty() || reserved || san.size() > 60) {
      return absl::InvalidArgumentError(
          absl::StrCat("pod name '", spec.name,
                       "' is not usable: it must be 1..60 characters and must not be "
                       "'fab' or 'n<digits>' (those name the fabric and the nodes)"));
    }
    if (auto [it, fresh] = seen.emplace(san, spec.name); !fresh) {
      return absl::InvalidArgumentError(absl::StrCat("pod names '", it->second, "' and '",
                                                     spec.name, "' both map to netns suffix '", san,
                                                     "': rename one"));
    }
    if (spec.node < 0 || spec.node >= opts.nodes) {
      return absl::InvalidArgumentError(absl::StrCat("pod '", spec.name, "' is on node ", spec.node,
                                                     " but the testbed has nodes 0..",
                                                     opts.nodes - 1));
    }
    if (per_node[spec.node] >= kMaxPodsPerNode) {
      return absl::InvalidArgumentError(
          absl::StrCat("node ", spec.node, " has more than ", kMaxPodsPerNode, " pods"));
    }
    PodInfo p;
    p.name = spec.name;
    p.netns = absl::StrCat(prefix_, "-", san);
    p.node = spec.node;
    p.slot = ++per_node[spec.node];
    p.ip = PodAddress(spec.node, p.slot);
    if (ipv6_) p.ip6 = PodAddress6(spec.node, p.slot);
    p.node_iface = absl::StrCat("vp", p.slot);
    pods_.push_back(std::move(p));
  }
  return absl::OkStatus();
}

// Every network namespace, in one `ip -batch`; those made are recorded for Destroy.
absl::Status Testbed::CreateNamespaces() {
  std::vector<std::string> all = AllNetns();
  for (const auto& n : all) {
    if (NetnsExists(n)) {
      return absl::AlreadyExistsError(
          absl::StrCat("netns ", n, " already exists: another testbed uses prefix '", prefix_,
                       "'; pick another prefix (UniquePrefix) or run CleanupStale()"));
    }
  }
  std::string script;
  for (const auto& n : all) absl::StrAppend(&script, "netns add ", n, "\n");
  absl::Status st;
  {
    NetnsLock lock;
    st = Exec("", {"ip", "-batch", "-"}, script).status();
  }
  // Our prefix carries our live pid, so whatever exists now was created by us.
  for (const auto& n : all)
    if (NetnsExists(n)) created_.push_back(n);
  if (!st.ok()) {
    return absl::Status(st.code(), absl::StrCat("creating network namespaces: ", st.message()));
  }
  return absl::OkStatus();
}

// sysctls, before any interface exists, so new interfaces inherit the defaults.
absl::Status Testbed::SetSysctls() {
  const std::string v6off = ipv6_ ? "0" : "1";
  WEFT_RETURN_IF_ERROR(SysctlsInNetns(
      fabric_netns_,
      {{"net/ipv6/conf/all/disable_ipv6", "1"}, {"net/ipv6/conf/default/disable_ipv6", "1"}}));
  for (const NodeInfo& n : nodes_) {
    std::vector<std::pair<std::string, std::string>> kv = {
        {"net/ipv4/ip_forward", "1"},
        {"net/ipv4/conf/all/rp_filter", "0"},
        {"net/ipv4/conf/default/rp_filter", "0"},
        {"net/ipv6/conf/all/disable_ipv6", v6off},
        {"net/ipv6/conf/default/disable_ipv6", v6off}};
    if (ipv6_) {
      kv.insert(kv.end(), {{"net/ipv6/conf/all/forwarding", "1"},
                           {"net/ipv6/conf/all/accept_dad", "0"},
                           {"net/ipv6/conf/default/accept_dad", "0"}});
    }
    WEFT_RETURN_IF_ERROR(SysctlsInNetns(n.netns, kv));
  }
  for (const PodInfo& p : pods_) {
    std::vector<std::pair<std::string, std::string>> kv = {
        {"net/ipv6/conf/all/disable_ipv6", v6off}, {"net/ipv6/conf/default/disable_ipv6", v6off}};
    if (ipv6_) {
      kv.insert(kv.end(),
                {{"net/ipv6/conf/all/accept_dad", "0"}, {"net/ipv6/conf/default/accept_dad", "0"}});
    }
    WEFT_RETURN_IF_ERROR(SysctlsInNetns(p.netns, kv));
  }
  return absl::OkStatus();
}

// Fabric: a bridge with one veth per node; the node ends are created in the node netns.
absl::Status Testbed::WireFabric() {
  std::string s = "link set lo up\nlink add br0 type bridge\nlink set br0 up\n";
  for (const NodeInfo& n : nodes_) {
    absl::StrAppend(&s, "link add n", n.index, " type veth peer name ", kFabricIface, " netns ",
                    n.netns, "\n", "link set n", n.index, " master br0 up\n");
  }
  return IpBatch(fabric_netns_, s);
}

// A node: fabric address, routes to the other nodes' pods, one veth per local pod.
absl::Status Testbed::WireNode(const NodeInfo& n) {
  std::string s =
      absl::StrCat("link set lo up\n", "addr add 169.254.1.1/32 dev lo\n", "link set eth0 up\n",
                   "addr add ", n.ip.ToString(), "/24 dev eth0\n");
  if (ipv6_) absl::StrAppend(&s, "addr add ", n.ip6->ToString(), "/64 dev eth0 nodad\n");
  for (const NodeInfo& other : nodes_) {
    if (other.index == n.index) continue;
    absl::StrAppend(&s, "route add ", other.pod_cidr.ToString(), " via ", other.ip.ToString(),
                    " dev eth0\n");
    if (ipv6_) {
      absl::StrAppend(&s, "route add ", other.pod_cidr6->ToString(), " via ", other.ip6->ToString(),
                      " dev eth0\n");
    }
  }
  for (const PodInfo& p : pods_) {
    if (p.node != n.index) continue;
    absl::StrAppend(&s, "link add ", p.node_iface, " type veth peer name ", kPodIface, " netns ",
                    p.netns, "\n", "link set ", p.node_iface, " up\n", "route add ",
                    p.ip.ToString(), "/32 dev ", p.node_iface, "\n");
    if (ipv6_) {
      absl::StrAppend(&s, "addr add fe80::1/64 dev ", p.node_iface, " nodad\n", "route add ",
                      p.ip6->ToString(), "/128 dev ", p.node_iface, "\n");
    }
  }
  WEFT_RETURN_IF_ERROR(IpBatch(n.netns, s));
  std::vector<std::pair<std::string, std::string>> kv;
  for (const PodInfo& p : pods_) {
    if (p.node == n.index)
      kv.push_back({absl::StrCat("net/ipv4/conf/", p.node_iface, "/proxy_arp"), "1"});
  }
  if (!kv.empty()) WEFT_RETURN_IF_ERROR(SysctlsInNetns(n.netns, kv));
  return absl::OkStatus();
}

// Pods: Calico-style on-link gateway.
absl::Status Testbed::WirePods() {
  for (const PodInfo& p : pods_) {
    std::string s =
        absl::StrCat("link set lo up\n", "link set eth0 up\n", "addr add ", p.ip.ToString(),
                     "/32 dev eth0\n", "route add 169.254.1.1 dev eth0 scope link\n",
                     "route add default via 169.254.1.1 dev eth0\n");
    if (ipv6_) {
      absl::StrAppend(&s, "addr add ", p.ip6->ToString(), "/128 dev eth0 nodad\n",
                      "route add default via fe80::1 dev eth0\n");
    }
    WEFT_RETURN_IF_ERROR(IpBatch(p.netns, s));
  }
  return absl::OkStatus();
}

std::vector<std::string> Testbed::AllNetns() const {
  std::vector<std::string> all = {fabric_netns_};
  for (const auto& n : nodes_) all.push_back(n.netns);
  for (const auto& p : pods_) all.push_back(p.netns);
  return all;
}

absl::StatusOr<PodInfo> Testbed::Pod(std::string_view name) const {
  for (const auto& p : pods_)
    if (p.name == name) return p;
  return absl::NotFoundError(
      absl::StrCat("testbed ", prefix_, " has no pod named '", Av(name), "'"));
}

absl::StatusOr<std::string> Testbed::PodNetns(std::string_view name) const {
  WEFT_ASSIGN_OR_RETURN(PodInfo p, Pod(name));
  return p.netns;
}

absl::StatusOr<IpAddr> Testbed::PodIp(std::string_view name) const {
  WEFT_ASSIGN_OR_RETURN(PodInfo p, Pod(name));
  return p.ip;
}

absl::StatusOr<IpAddr> Testbed::PodIp6(std::string_view name) const {
  WEFT_ASSIGN_OR_RETURN(PodInfo p, Pod(name));
  if (!p.ip6) {
    return absl::NotFoundError(absl::StrCat("testbed ", prefix_, " was built without IPv6"));
  }
  return *p.ip6;
}

absl::StatusOr<std::string> Testbed::NodeNetns(int node) const {
  if (node < 0 || node >= static_cast<int>(nodes_.size())) {
    return absl::NotFoundError(absl::StrCat("testbed ", prefix_, " has no node ", node,
                                            " (nodes 0..", static_cast<int>(nodes_.size()) - 1,
                                            ")"));
  }
  return nodes_[node].netns;
}

absl::StatusOr<IpAddr> Testbed::NodeIp(int node) const {
  WEFT_ASSIGN_OR_RETURN(std::string ns, NodeNetns(node));
  return nodes_[node].ip;
}

// ---------------------------------------------------------------------------------------------

absl::Status WaitTcp(const std::string& netns, const SockAddr& addr,
                     std::chrono::milliseconds timeout) {
  UniqueFd ns_fd;
  if (!netns.empty()) {
    WEFT_ASSIGN_OR_RETURN(ns_fd, OpenNetns(NetnsPath(netns)));
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  absl::Status last = absl::DeadlineExceededError("no attempt made");
  sockaddr_storage ss;
  socklen_t len = addr.ToSockaddr(&ss);
  while (true) {
    WEFT_ASSIGN_OR_RETURN(UniqueFd s,
                          SocketInNetns(ns_fd.get(), ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0));
    int r = ::connect(s.get(), reinterpret_cast<sockaddr*>(&ss), len);
    if (r == 0) return absl::OkStatus();
    if (errno == EINPROGRESS) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd pfd{s.get(), POLLOUT, 0};
      int wait_ms = static_cast<int>(std::clamp<int64_t>(left.count(), 1, 1000));
      if (::poll(&pfd, 1, wait_ms) > 0) {
        int err = 0;
        socklen_t el = sizeof err;
        ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &el);
        if (err == 0) return absl::OkStatus();
        last = ErrnoError(err, absl::StrCat("connect ", addr.ToString()));
      } else {
        last = absl::DeadlineExceededError(absl::StrCat("connect ", addr.ToString(), " timed out"));
      }
    } else {
      last = ErrnoError(errno, absl::StrCat("connect ", addr.ToString()));
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "nothing accepted TCP connections on ", addr.ToString(), " from netns '", netns, "' within ",
      timeout.count(), " ms (last error: ", last.message(), "); is the server listening?"));
}

}  // namespace weft::testbed
