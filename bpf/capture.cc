#include "bpf/capture.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bpf/bpffs.h"
#include "bpf/kernel_btf.h"
#include "bpf/map_ops.h"
#include "common/status.h"
#include "inbound.skel.h"
#include "outbound.skel.h"

namespace weft::bpf {
namespace {

using InboundSkel = BpfSkeleton<weft_inbound, weft_inbound__destroy>;
using OutboundSkel = BpfSkeleton<weft_outbound, weft_outbound__destroy>;
using internal::ErrnoStatus;
using internal::FromRecord;
using internal::ToMapped;

absl::StatusOr<ReasonCounts> ReadCounters(const struct bpf_map* map) {
  return internal::ReadCounters(bpf_map__fd(map), bpf_map__name(map));
}

absl::Status Update(const struct bpf_map* map, const void* key, const void* value) {
  return internal::UpdateMap(bpf_map__fd(map), bpf_map__name(map), key, value);
}

absl::Status Delete(const struct bpf_map* map, const void* key) {
  return internal::DeleteFromMap(bpf_map__fd(map), bpf_map__name(map), key);
}

// `maps_dir` non-empty: every map of the object is pinned there (libbpf reuses a pinned map
// of the same name and layout at load, and pins the ones it creates).
// `prepare` runs between open and load (program autoload choices).
template <typename Skel, typename OpenFn, typename LoadFn>
absl::StatusOr<Skel> OpenAndLoad(OpenFn open, LoadFn load, std::string_view name,
                                 std::string_view maps_dir = {},
                                 const std::function<void(Skel&)>& prepare = {}) {
  Skel skel(open());
  if (!skel) return ErrnoStatus(errno, absl::StrCat("opening BPF object ", Av(name)));
  if (prepare) prepare(skel);
  bool reused = false;
  if (!maps_dir.empty()) {
    WEFT_RETURN_IF_ERROR(MakeDirs(std::string(maps_dir)));
    struct bpf_map* map;
    bpf_object__for_each_map(map, skel->obj) {
      std::string path = absl::StrCat(Av(maps_dir), "/", bpf_map__name(map));
      if (::access(path.c_str(), F_OK) == 0) reused = true;
      int err = bpf_map__set_pin_path(map, path.c_str());
      if (err != 0) return ErrnoStatus(err, absl::StrCat("setting the pin path ", path));
    }
  }
  int err = load(skel.get());
  if (err != 0) {
    absl::Status st = ErrnoStatus(err, absl::StrCat("loading BPF object ", Av(name)));
    if (reused && (err == -EINVAL || err == EINVAL)) {
      return absl::FailedPreconditionError(absl::StrCat(
          st.message(), "; maps pinned under ", Av(maps_dir),
          " could not be reused: probably pinned by another Weft version with other map "
          "layouts. Remove the pin dir (weft-agent --uninstall-on-exit, or rm -r its parent) "
          "and start again"));
    }
    return st;
  }
  return skel;
}

// Every key of a hash-like map. Collected before any deletion: deleting while walking with
// get_next_key restarts the walk.
template <typename K>
std::vector<K> Keys(const struct bpf_map* map) {
  std::vector<K> keys;
  K k{}, cursor{};
  bool first = true;
  while (bpf_map_get_next_key(bpf_map__fd(map), first ? nullptr : &cursor, &k) == 0) {
    first = false;
    cursor = k;
    keys.push_back(k);
  }
  return keys;
}

IpAddr FromMapped(const uint8_t addr[16]) {
  in6_addr a;
  std::memcpy(&a, addr, sizeof(a));
  return IpAddr::FromIn6(a);
}

weft_exclude_cidr_key CidrKey(uint64_t netns_cookie, const Cidr& cidr) {
  weft_exclude_cidr_key key{};
  int len = cidr.prefix_len();
  key.prefixlen =
      WEFT_CIDR_PREFIX_BASE + static_cast<uint32_t>(cidr.base().IsV4() ? 96 + len : len);
  key.netns_cookie = netns_cookie;
  ToMapped(cidr.base(), key.addr);
  return key;
}

constexpr weft_listener_kind kAllKinds[] = {WEFT_LISTENER_HBONE, WEFT_LISTENER_INBOUND,
                                            WEFT_LISTENER_HBONE6, WEFT_LISTENER_INBOUND6};

}  // namespace

BpfLink& BpfLink::operator=(BpfLink&& o) noexcept {
  if (this != &o) {
    if (link_) bpf_link__destroy(link_);
    link_ = std::exchange(o.link_, nullptr);
  }
  return *this;
}

BpfLink::~BpfLink() {
  if (link_) bpf_link__destroy(link_);
}

std::string_view ReasonName(int reason) {
  switch (static_cast<weft_reason>(reason)) {
    case WEFT_DROP_NO_HBONE_SOCKET:
      return "drop_no_hbone_socket";
    case WEFT_DROP_NO_INBOUND_SOCKET:
      return "drop_no_inbound_socket";
    case WEFT_DROP_ASSIGN_FAILED:
      return "drop_assign_failed";
    case WEFT_DROP_PEER_RECORD_FAILED:
      return "drop_peer_record_failed";
    case WEFT_RECORD_PEER:
      return "record_peer";
    case WEFT_PASS_SELF:
      return "pass_self";
    case WEFT_LOCAL_LEG_JOINED:
      return "local_leg_joined";
    case WEFT_LOCAL_LEG_FULL:
      return "local_leg_full";
    case WEFT_LOCAL_LEG_INBOUND:
      return "local_leg_inbound_joined";
    case WEFT_DROP_ORIG_DST_FULL:
      return "drop_orig_dst_full";
    case WEFT_PASS_NOT_TCP:
      return "pass_not_tcp";
    case WEFT_PASS_LOOPBACK:
      return "pass_loopback";
    case WEFT_DROP_NOT_POD_ADDR:
      return "drop_not_pod_addr";
    case WEFT_DROP_POLICY_DENY:
      return "drop_policy_deny";
    case WEFT_DROP_NO_POD_MAP:
      return "drop_no_pod_map";
    case WEFT_PASS_NOT_ENROLLED:
      return "pass_not_enrolled";
    case WEFT_PASS_ZTUNNEL_MARK:
      return "pass_ztunnel_mark";
    case WEFT_PASS_EXCLUDED_PORT:
      return "pass_excluded_port";
    case WEFT_PASS_EXCLUDED_CIDR:
      return "pass_excluded_cidr";
    case WEFT_REDIRECT_HBONE:
      return "redirect_hbone";
    case WEFT_REDIRECT_INBOUND:
      return "redirect_inbound";
    case WEFT_REDIRECT_OUTBOUND:
      return "redirect_outbound";
  }
  return "unknown";
}

// ---- inbound ----------------------------------------------------------------------------

struct InboundCapture::Impl {
  InboundSkel skel;
};

InboundCapture::InboundCapture(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
InboundCapture::~InboundCapture() = default;

absl::StatusOr<std::unique_ptr<InboundCapture>> InboundCapture::Load() {
  auto impl = std::make_unique<Impl>();
  WEFT_ASSIGN_OR_RETURN(
      impl->skel, OpenAndLoad<InboundSkel>(weft_inbound__open, weft_inbound__load, "inbound"));
  return std::unique_ptr<InboundCapture>(new InboundCapture(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<InboundCapture>> InboundCapture::LoadPinned(
    std::string_view maps_dir) {
  if (maps_dir.empty()) return absl::InvalidArgumentError("LoadPinned: maps_dir is empty");
  auto impl = std::make_unique<Impl>();
  WEFT_ASSIGN_OR_RETURN(impl->skel, OpenAndLoad<InboundSkel>(weft_inbound__open, weft_inbound__load,
                                                             "inbound", maps_dir));
  return std::unique_ptr<InboundCapture>(new InboundCapture(std::move(impl)));
}

absl::Status InboundCapture::SetPodAddresses(uint32_t slot, const std::vector<IpAddr>& addrs) {
  std::set<std::array<uint8_t, 16>> want;
  for (const IpAddr& a : addrs) {
    WEFT_RETURN_IF_ERROR(AddPodAddress(a, slot));
    weft_addr_key k{};
    ToMapped(a, k.addr);
    want.insert(std::to_array(k.addr));
  }
  const struct bpf_map* map = impl_->skel->maps.weft_pod_addrs;
  for (const weft_addr_key& k : Keys<weft_addr_key>(map)) {
    weft_pod_slot v{};
    if (bpf_map_lookup_elem(bpf_map__fd(map), &k, &v) != 0 || v.slot != slot) continue;
    if (!want.count(std::to_array(k.addr))) WEFT_RETURN_IF_ERROR(Delete(map, &k));
  }
  return absl::OkStatus();
}

absl::Status InboundCapture::RemovePod(uint32_t slot) {
  WEFT_RETURN_IF_ERROR(SetPodAddresses(slot, {}));
  for (weft_listener_kind kind : kAllKinds) WEFT_RETURN_IF_ERROR(RemoveListener(slot, kind));
  return absl::OkStatus();
}

absl::StatusOr<std::map<uint32_t, std::vector<IpAddr>>> InboundCapture::PodAddresses() const {
  std::map<uint32_t, std::vector<IpAddr>> out;
  const struct bpf_map* map = impl_->skel->maps.weft_pod_addrs;
  for (const weft_addr_key& k : Keys<weft_addr_key>(map)) {
    weft_pod_slot v{};
    if (bpf_map_lookup_elem(bpf_map__fd(map), &k, &v) != 0) {
      if (errno == ENOENT) continue;  // removed since the walk
      return ErrnoStatus(errno, "reading weft_pod_addrs");
    }
    out[v.slot].push_back(FromMapped(k.addr));
  }
  return out;
}

absl::StatusOr<std::set<uint32_t>> InboundCapture::ListenerSlots() const {
  std::set<uint32_t> out;
  for (const weft_listener_key& k : Keys<weft_listener_key>(impl_->skel->maps.weft_listeners))
    out.insert(k.slot);
  return out;
}

absl::Status InboundCapture::AddPodAddress(const IpAddr& addr, uint32_t slot) {
  weft_addr_key key{};
  ToMapped(addr, key.addr);
  weft_pod_slot value{.slot = slot, ._pad = 0};
  return Update(impl_->skel->maps.weft_pod_addrs, &key, &value);
}

absl::Status InboundCapture::RemovePodAddress(const IpAddr& addr) {
  weft_addr_key key{};
  ToMapped(addr, key.addr);
  return Delete(impl_->skel->maps.weft_pod_addrs, &key);
}

absl::Status InboundCapture::SetListener(uint32_t slot, weft_listener_kind kind, int listen_fd) {
  return internal::SetListener(bpf_map__fd(impl_->skel->maps.weft_listeners), slot, kind,
                               listen_fd);
}

absl::Status InboundCapture::RemoveListener(uint32_t slot, weft_listener_kind kind) {
  weft_listener_key key{.slot = slot, .kind = static_cast<uint32_t>(kind)};
  return Delete(impl_->skel->maps.weft_listeners, &key);
}

absl::StatusOr<BpfLink> InboundCapture::AttachToNetns(int netns_fd) {
  struct bpf_link* link = bpf_program__attach_netns(impl_->skel->progs.weft_sk_lookup, netns_fd);
  if (link == nullptr) return ErrnoStatus(errno, "attaching sk_lookup to the pod netns");
  return BpfLink(link);
}

absl::StatusOr<ReasonCounts> InboundCapture::Counters() const {
  return ReadCounters(impl_->skel->maps.weft_inbound_counters);
}

int InboundCapture::prog_fd() const {
  return bpf_program__fd(impl_->skel->progs.weft_sk_lookup);
}

struct bpf_program* InboundCapture::program() const {
  return impl_->skel->progs.weft_sk_lookup;
}

// ---- outbound ---------------------------------------------------------------------------

struct OutboundCapture::Impl {
  OutboundSkel skel;
  bool eacces = false;  // the bpf_set_retval pair is loaded
  std::string local_legs_unsupported;
};

namespace {
// Keeps one connect4/6 pair: with bpf_set_retval (denied connects fail with EACCES) where the
// kernel offers it to cgroup/connect programs, else the EPERM pair.
std::function<void(OutboundSkel&)> ChooseConnectPair(bool* eacces) {
  return [eacces](OutboundSkel& skel) {
    *eacces = ConnectSetsErrno();
    bpf_program__set_autoload(skel->progs.weft_connect4_prog, *eacces);
    bpf_program__set_autoload(skel->progs.weft_connect6_prog, *eacces);
    bpf_program__set_autoload(skel->progs.weft_connect4_eperm_prog, !*eacces);
    bpf_program__set_autoload(skel->progs.weft_connect6_eperm_prog, !*eacces);
  };
}
}  // namespace

bool ConnectSetsErrno() {
  return libbpf_probe_bpf_helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_set_retval, nullptr) == 1;
}

namespace {
// Why this kernel cannot run the local legs although the sk_msg program would load (empty: it
// can). The program bounds the peer's queue of redirected bytes by sk_psock.msg_tot_len; on a
// kernel without that field (Debian 12's 6.1; 6.12 has it) the program loads but can never
// bound the queue, so it never redirects: every message would take TCP, for the cost of the
// program. Unreadable BTF is left to the load (CO-RE fails there with libbpf's own error).
std::string LocalLegsKernelGap() {
  auto field = CutKernelBtf({{"sk_psock", "msg_tot_len"}});
  if (field.ok() || !absl::IsNotFound(field.status())) return "";
  return "this kernel has no sk_psock.msg_tot_len, the bound of the redirected queue (Linux "
         "6.12 has it, 6.1 not): every message would take loopback TCP";
}

// Loads the outbound object; a kernel that rejects the sk_msg program (older than the helpers
// or kernel fields it uses) or could never let it redirect gets the object without it, so
// capture itself still works.
absl::Status LoadOutbound(OutboundSkel* skel, bool* eacces, std::string* unsupported,
                          std::string_view maps_dir) {
  auto connect_pair = ChooseConnectPair(eacces);
  auto without_legs = [&connect_pair](OutboundSkel& skel) {
    connect_pair(skel);
    bpf_program__set_autoload(skel->progs.weft_local_leg_prog, false);
  };
  if (std::string gap = LocalLegsKernelGap(); !gap.empty()) {
    WEFT_ASSIGN_OR_RETURN(*skel, OpenAndLoad<OutboundSkel>(weft_outbound__open, weft_outbound__load,
                                                           "outbound", maps_dir, without_legs));
    *unsupported = std::move(gap);
    return absl::OkStatus();
  }
  auto full = OpenAndLoad<OutboundSkel>(weft_outbound__open, weft_outbound__load, "outbound",
                                        maps_dir, connect_pair);
  if (full.ok()) {
    *skel = std::move(*full);
    return absl::OkStatus();
  }
  auto without = OpenAndLoad<OutboundSkel>(weft_outbound__open, weft_outbound__load, "outbound",
                                           maps_dir, without_legs);
  if (!without.ok()) return full.status();  // not the sk_msg program's fault
  *skel = std::move(*without);
  *unsupported = absl::StrCat("the sk_msg program did not load: ", full.status().message());
  return absl::OkStatus();
}
}  // namespace

OutboundCapture::OutboundCapture(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OutboundCapture::~OutboundCapture() = default;

absl::StatusOr<std::unique_ptr<OutboundCapture>> OutboundCapture::Load() {
  auto impl = std::make_unique<Impl>();
  WEFT_RETURN_IF_ERROR(LoadOutbound(&impl->skel, &impl->eacces, &impl->local_legs_unsupported, {}));
  return std::unique_ptr<OutboundCapture>(new OutboundCapture(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<OutboundCapture>> OutboundCapture::LoadPinned(
    std::string_view maps_dir) {
  if (maps_dir.empty()) return absl::InvalidArgumentError("LoadPinned: maps_dir is empty");
  auto impl = std::make_unique<Impl>();
  WEFT_RETURN_IF_ERROR(
      LoadOutbound(&impl->skel, &impl->eacces, &impl->local_legs_unsupported, maps_dir));
  return std::unique_ptr<OutboundCapture>(new OutboundCapture(std::move(impl)));
}

absl::Status OutboundCapture::SetExclusions(uint64_t netns_cookie,
                                            const std::vector<uint16_t>& ports,
                                            const std::vector<Cidr>& cidrs) {
  std::set<uint16_t> want_ports;  // network order, as in the keys
  for (uint16_t p : ports) {
    WEFT_RETURN_IF_ERROR(ExcludePort(netns_cookie, p));
    want_ports.insert(htons(p));
  }
  std::set<std::pair<uint32_t, std::array<uint8_t, 16>>> want_cidrs;
  for (const Cidr& c : cidrs) {
    WEFT_RETURN_IF_ERROR(ExcludeCidr(netns_cookie, c));
    weft_exclude_cidr_key k = CidrKey(netns_cookie, c);
    want_cidrs.insert({k.prefixlen, std::to_array(k.addr)});
  }
  const struct bpf_map* pmap = impl_->skel->maps.weft_exclude_ports;
  for (const auto& k : Keys<weft_exclude_port_key>(pmap)) {
    if (k.netns_cookie == netns_cookie && !want_ports.count(k.port))
      WEFT_RETURN_IF_ERROR(Delete(pmap, &k));
  }
  const struct bpf_map* cmap = impl_->skel->maps.weft_exclude_cidrs;
  for (const auto& k : Keys<weft_exclude_cidr_key>(cmap)) {
    if (k.netns_cookie == netns_cookie && !want_cidrs.count({k.prefixlen, std::to_array(k.addr)}))
      WEFT_RETURN_IF_ERROR(Delete(cmap, &k));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<uint64_t, uint32_t>> OutboundCapture::Enrolled() const {
  std::map<uint64_t, uint32_t> out;
  const struct bpf_map* map = impl_->skel->maps.weft_enrolled;
  for (uint64_t cookie : Keys<uint64_t>(map)) {
    weft_enrolled_pod v{};
    if (bpf_map_lookup_elem(bpf_map__fd(map), &cookie, &v) != 0) {
      if (errno == ENOENT) continue;
      return ErrnoStatus(errno, "reading weft_enrolled");
    }
    out[cookie] = v.slot;
  }
  return out;
}

absl::StatusOr<std::set<uint64_t>> OutboundCapture::NetnsWithState() const {
  std::set<uint64_t> out;
  for (const auto& k : Keys<weft_exclude_port_key>(impl_->skel->maps.weft_exclude_ports))
    out.insert(k.netns_cookie);
  for (const auto& k : Keys<weft_exclude_cidr_key>(impl_->skel->maps.weft_exclude_cidrs))
    out.insert(k.netns_cookie);
  for (const struct bpf_map* m :
       {impl_->skel->maps.weft_orig_dst, impl_->skel->maps.weft_orig_dst_by_peer}) {
    for (uint64_t k : Keys<uint64_t>(m)) out.insert(k);
  }
  return out;
}

absl::Status OutboundCapture::Enroll(uint64_t netns_cookie, uint32_t slot) {
  // The pod's own record maps first: connect() refuses an enrolled pod that has none.
  WEFT_RETURN_IF_ERROR(internal::CreatePodMaps(bpf_map__fd(impl_->skel->maps.weft_orig_dst),
                                               bpf_map__fd(impl_->skel->maps.weft_orig_dst_by_peer),
                                               netns_cookie));
  weft_enrolled_pod value{.slot = slot, ._pad = 0};
  return Update(impl_->skel->maps.weft_enrolled, &netns_cookie, &value);
}

absl::Status OutboundCapture::Unenroll(uint64_t netns_cookie) {
  WEFT_RETURN_IF_ERROR(Delete(impl_->skel->maps.weft_enrolled, &netns_cookie));
  // Collect first, delete after: deleting while walking with get_next_key restarts the walk.
  const struct bpf_map* ports = impl_->skel->maps.weft_exclude_ports;
  std::vector<weft_exclude_port_key> port_keys;
  weft_exclude_port_key pk{}, pcursor{};
  bool pfirst = true;
  while (bpf_map_get_next_key(bpf_map__fd(ports), pfirst ? nullptr : &pcursor, &pk) == 0) {
    pfirst = false;
    pcursor = pk;
    if (pk.netns_cookie == netns_cookie) port_keys.push_back(pk);
  }
  for (const auto& k : port_keys) WEFT_RETURN_IF_ERROR(Delete(ports, &k));

  const struct bpf_map* cidrs = impl_->skel->maps.weft_exclude_cidrs;
  std::vector<weft_exclude_cidr_key> cidr_keys;
  weft_exclude_cidr_key ck{}, cursor{};
  bool first = true;
  while (bpf_map_get_next_key(bpf_map__fd(cidrs), first ? nullptr : &cursor, &ck) == 0) {
    first = false;
    cursor = ck;
    if (ck.netns_cookie == netns_cookie) cidr_keys.push_back(ck);
  }
  for (const auto& k : cidr_keys) WEFT_RETURN_IF_ERROR(Delete(cidrs, &k));
  // Last: the pod's record maps (the kernel frees them with the outer entries).
  WEFT_RETURN_IF_ERROR(Delete(impl_->skel->maps.weft_orig_dst, &netns_cookie));
  return Delete(impl_->skel->maps.weft_orig_dst_by_peer, &netns_cookie);
}

absl::Status OutboundCapture::ExcludePort(uint64_t netns_cookie, uint16_t port) {
  weft_exclude_port_key key{.netns_cookie = netns_cookie, .port = htons(port)};
  uint8_t one = 1;
  return Update(impl_->skel->maps.weft_exclude_ports, &key, &one);
}

absl::Status OutboundCapture::ExcludeCidr(uint64_t netns_cookie, const Cidr& cidr) {
  weft_exclude_cidr_key key = CidrKey(netns_cookie, cidr);
  uint8_t one = 1;
  return Update(impl_->skel->maps.weft_exclude_cidrs, &key, &one);
}

absl::StatusOr<SockAddr> OutboundCapture::OriginalDestination(uint64_t socket_cookie) const {
  const struct bpf_map* outer = impl_->skel->maps.weft_orig_dst;
  for (uint64_t netns : Keys<uint64_t>(outer)) {
    auto pod = internal::PodMap(bpf_map__fd(outer), "weft_orig_dst", netns);
    if (absl::IsNotFound(pod.status())) continue;
    if (!pod.ok()) return pod.status();
    weft_orig_dst value{};
    if (bpf_map_lookup_elem(pod->get(), &socket_cookie, &value) == 0) return FromRecord(value);
    if (errno != ENOENT) return ErrnoStatus(errno, "reading weft_orig_dst");
  }
  return absl::NotFoundError(absl::StrCat(
      "no original destination recorded for socket cookie ", socket_cookie,
      ": the connection was not redirected by eBPF (not enrolled, excluded or marked)"));
}

absl::StatusOr<SockAddr> OutboundCapture::OriginalDestinationOfAccepted(int accepted_fd) const {
  return internal::OriginalDestinationOfAccepted(
      bpf_map__fd(impl_->skel->maps.weft_orig_dst_by_peer), accepted_fd);
}

absl::Status OutboundCapture::ForgetOriginalDestination(uint64_t socket_cookie) {
  const struct bpf_map* outer = impl_->skel->maps.weft_orig_dst;
  for (uint64_t netns : Keys<uint64_t>(outer)) {
    auto pod = internal::PodMap(bpf_map__fd(outer), "weft_orig_dst", netns);
    if (absl::IsNotFound(pod.status())) continue;
    if (!pod.ok()) return pod.status();
    WEFT_RETURN_IF_ERROR(internal::DeleteFromMap(pod->get(), "weft_orig_dst", &socket_cookie));
  }
  return absl::OkStatus();
}

absl::StatusOr<OutboundCapture::CgroupLinks> OutboundCapture::AttachToCgroup(int cgroup_fd) {
  CgroupLinks links;
  links.connect4 = BpfLink(bpf_program__attach_cgroup(connect4_program(), cgroup_fd));
  if (!links.connect4) return ErrnoStatus(errno, "attaching cgroup/connect4");
  links.connect6 = BpfLink(bpf_program__attach_cgroup(connect6_program(), cgroup_fd));
  if (!links.connect6) return ErrnoStatus(errno, "attaching cgroup/connect6");
  links.sockops =
      BpfLink(bpf_program__attach_cgroup(impl_->skel->progs.weft_sockops_prog, cgroup_fd));
  if (!links.sockops) return ErrnoStatus(errno, "attaching sockops");
  return links;
}

absl::StatusOr<ReasonCounts> OutboundCapture::Counters() const {
  return ReadCounters(impl_->skel->maps.weft_outbound_counters);
}

absl::Status OutboundCapture::SetLocalLegs(bool on) {
  const struct bpf_map* config = impl_->skel->maps.weft_local_legs_config;
  uint32_t zero = 0, value = 0;
  if (on) {
    if (!impl_->local_legs_unsupported.empty())
      return absl::FailedPreconditionError(impl_->local_legs_unsupported);
    int prog = bpf_program__fd(impl_->skel->progs.weft_local_leg_prog);
    int map = bpf_map__fd(impl_->skel->maps.weft_local_legs);
    if (bpf_prog_attach(prog, map, BPF_SK_MSG_VERDICT, 0) != 0)
      return ErrnoStatus(errno, "attaching the sk_msg program to weft_local_legs");
    value = WEFT_LOCAL_LEGS_ON;
  }
  return Update(config, &zero, &value);
}

absl::Status OutboundCapture::JoinLocalLeg(int fd) {
  return internal::JoinLocalLeg(bpf_map__fd(impl_->skel->maps.weft_local_legs), fd);
}

absl::Status OutboundCapture::ReleaseLocalLeg(int fd) {
  return internal::ReleaseLocalLeg(bpf_map__fd(impl_->skel->maps.weft_local_legs), fd);
}

absl::StatusOr<weft_sock_tuple> OutboundCapture::ExpectInboundLeg(int fd, const SockAddr& app) {
  return internal::ExpectInboundLeg(bpf_map__fd(impl_->skel->maps.weft_local_legs_expect), fd, app);
}

absl::Status OutboundCapture::JoinInboundLeg(int fd, const weft_sock_tuple& own) {
  return internal::JoinInboundLeg(bpf_map__fd(impl_->skel->maps.weft_local_legs), fd, own);
}

absl::Status OutboundCapture::ForgetInboundLeg(const weft_sock_tuple& own) {
  return internal::ForgetInboundLeg(bpf_map__fd(impl_->skel->maps.weft_local_legs_expect), own);
}

const std::string& OutboundCapture::local_legs_unsupported() const {
  return impl_->local_legs_unsupported;
}

struct bpf_program* OutboundCapture::connect4_program() const {
  return impl_->eacces ? impl_->skel->progs.weft_connect4_prog
                       : impl_->skel->progs.weft_connect4_eperm_prog;
}
struct bpf_program* OutboundCapture::connect6_program() const {
  return impl_->eacces ? impl_->skel->progs.weft_connect6_prog
                       : impl_->skel->progs.weft_connect6_eperm_prog;
}
bool OutboundCapture::denies_with_eacces() const {
  return impl_->eacces;
}

absl::StatusOr<std::unique_ptr<ConnectDenyMap>> OutboundCapture::ConnectDeny() const {
  UniqueFd deny(::fcntl(bpf_map__fd(impl_->skel->maps.weft_connect_deny), F_DUPFD_CLOEXEC, 0));
  if (!deny) return ErrnoStatus(errno, "duplicating the weft_connect_deny fd");
  UniqueFd counts(::fcntl(bpf_map__fd(impl_->skel->maps.weft_deny_counts), F_DUPFD_CLOEXEC, 0));
  if (!counts) return ErrnoStatus(errno, "duplicating the weft_deny_counts fd");
  return ConnectDenyMap::FromFds(std::move(deny), std::move(counts));
}

struct bpf_program* OutboundCapture::sockops_program() const {
  return impl_->skel->progs.weft_sockops_prog;
}

}  // namespace weft::bpf
