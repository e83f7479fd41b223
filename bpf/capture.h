// C++ owners of Weft's eBPF capture programs (bpf/inbound.bpf.c, bpf/outbound.bpf.c), loaded
// from skeletons embedded in the binary. Map layouts come from bpf/include/shared/capture.h.
//
// Thread-safety: the map operations are single syscalls and may be called from any thread;
// creating/destroying an owner and attaching are not synchronized (the agent's control thread
// does them). Every handle is RAII: destroying an owner unloads its programs and maps, and a
// link detaches when its BpfLink goes away unless it is pinned (bpf/node.h pins them). Maps are
// pinned when loaded with LoadPinned.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "bpf/connect_deny.h"
#include "common/net.h"
#include "shared/capture.h"

struct bpf_link;
struct bpf_program;

namespace weft::bpf {

// Katran's BpfSkeleton<T>: owns a libbpf skeleton, `Destroy` (T__destroy) in the destructor.
template <typename T, void (*Destroy)(T*)>
class BpfSkeleton {
 public:
  BpfSkeleton() = default;
  explicit BpfSkeleton(T* skel) : skel_(skel) {}
  BpfSkeleton(BpfSkeleton&& o) noexcept : skel_(std::exchange(o.skel_, nullptr)) {}
  BpfSkeleton& operator=(BpfSkeleton&& o) noexcept {
    if (this != &o) {
      reset();
      skel_ = std::exchange(o.skel_, nullptr);
    }
    return *this;
  }
  BpfSkeleton(const BpfSkeleton&) = delete;
  BpfSkeleton& operator=(const BpfSkeleton&) = delete;
  ~BpfSkeleton() { reset(); }

  T* get() const { return skel_; }
  T* operator->() const { return skel_; }
  explicit operator bool() const { return skel_ != nullptr; }
  void reset() {
    if (skel_) Destroy(skel_);
    skel_ = nullptr;
  }

 private:
  T* skel_ = nullptr;
};

// An attachment (bpf_link); detaches on destruction.
class BpfLink {
 public:
  BpfLink() = default;
  explicit BpfLink(struct bpf_link* link) : link_(link) {}
  BpfLink(BpfLink&& o) noexcept : link_(std::exchange(o.link_, nullptr)) {}
  BpfLink& operator=(BpfLink&& o) noexcept;
  BpfLink(const BpfLink&) = delete;
  BpfLink& operator=(const BpfLink&) = delete;
  ~BpfLink();

  struct bpf_link* get() const {
    return link_;
  }
  explicit operator bool() const { return link_ != nullptr; }
  // Gives up ownership without detaching (the caller destroys it).
  struct bpf_link* release() {
    return std::exchange(link_, nullptr);
  }

 private:
  struct bpf_link* link_ = nullptr;
};

// Whether this kernel lets cgroup/connect programs call bpf_set_retval (Linux 5.18+): a connect
// denied at the source (weft_connect_deny) then fails with EACCES instead of EPERM. Loads a
// probe program (needs CAP_BPF); false when it cannot.
bool ConnectSetsErrno();

// Reason code (enum weft_reason) -> count summed over CPUs; codes never hit are absent.
using ReasonCounts = std::map<int, uint64_t>;

// Metric label of a reason code ("drop_no_hbone_socket", "redirect_outbound", ...);
// "unknown" for codes this build does not know.
std::string_view ReasonName(int reason);

// The inbound sk_lookup program and its maps (weft_pod_addrs, weft_listeners,
// weft_inbound_counters).
class InboundCapture {
 public:
  // Opens and loads the program. Errors: PermissionDenied without CAP_BPF/CAP_SYS_ADMIN,
  // Unavailable when the kernel lacks sk_lookup/SOCKHASH (needs Linux 5.9+).
  static absl::StatusOr<std::unique_ptr<InboundCapture>> Load();
  // The same, with every map pinned under `maps_dir` (<pin dir>/maps, bpf/pins.h): a map
  // already pinned there is reused with its contents (a restarted agent keeps its state), the
  // others are created and pinned. The directory is created if missing (bpffs must be
  // mounted). A pinned map of another layout is an error saying how to start over.
  static absl::StatusOr<std::unique_ptr<InboundCapture>> LoadPinned(std::string_view maps_dir);
  ~InboundCapture();

  // Steers SYNs to `addr` (any port) to the listeners of pod `slot`.
  absl::Status AddPodAddress(const IpAddr& addr, uint32_t slot);
  absl::Status RemovePodAddress(const IpAddr& addr);
  // Puts ztunnel's listening TCP socket `listen_fd` in the map for (slot, kind).
  absl::Status SetListener(uint32_t slot, weft_listener_kind kind, int listen_fd);
  // After this, SYNs for the pod's addresses of that kind are dropped (fail closed).
  absl::Status RemoveListener(uint32_t slot, weft_listener_kind kind);

  // Makes `addrs` exactly the addresses steered to `slot`: adds the missing ones first, then
  // removes the slot's others (no moment where a kept address is unsteered).
  absl::Status SetPodAddresses(uint32_t slot, const std::vector<IpAddr>& addrs);
  // Removes every address of `slot` and its four listener entries (a reused slot must never
  // reach an earlier pod's listener).
  absl::Status RemovePod(uint32_t slot);
  // slot -> its addresses, read from weft_pod_addrs.
  absl::StatusOr<std::map<uint32_t, std::vector<IpAddr>>> PodAddresses() const;
  // Slots that have at least one listener entry.
  absl::StatusOr<std::set<uint32_t>> ListenerSlots() const;

  // Attaches the program to the netns `netns_fd` refers to.
  absl::StatusOr<BpfLink> AttachToNetns(int netns_fd);
  absl::StatusOr<ReasonCounts> Counters() const;
  int prog_fd() const;
  struct bpf_program* program() const;

 private:
  struct Impl;
  explicit InboundCapture(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The outbound cgroup/connect4 + cgroup/connect6 programs and their maps (weft_enrolled,
// weft_exclude_ports, weft_exclude_cidrs, weft_orig_dst, weft_orig_dst_by_peer,
// weft_outbound_counters) plus the sockops program that fills weft_orig_dst_by_peer.
class OutboundCapture {
 public:
  // Errors as InboundCapture::Load (needs Linux 5.8+ for bpf_get_netns_cookie in connect).
  static absl::StatusOr<std::unique_ptr<OutboundCapture>> Load();
  // As InboundCapture::LoadPinned.
  static absl::StatusOr<std::unique_ptr<OutboundCapture>> LoadPinned(std::string_view maps_dir);
  ~OutboundCapture();

  // Redirects TCP connects made in the netns with cookie `netns_cookie` (NetnsCookie()), after
  // giving the pod its own original-destination maps (kept if it has them already).
  absl::Status Enroll(uint64_t netns_cookie, uint32_t slot);
  // Stops redirecting and removes that netns's port/CIDR exclusions and its
  // original-destination maps.
  absl::Status Unenroll(uint64_t netns_cookie);
  // Connects from that netns to `port` (host order) / into `cidr` are left alone.
  absl::Status ExcludePort(uint64_t netns_cookie, uint16_t port);
  absl::Status ExcludeCidr(uint64_t netns_cookie, const Cidr& cidr);
  // Makes `ports` / `cidrs` exactly that netns's exclusions: adds the missing ones first, then
  // removes the others (an exclusion that stays is never briefly absent).
  absl::Status SetExclusions(uint64_t netns_cookie, const std::vector<uint16_t>& ports,
                             const std::vector<Cidr>& cidrs);
  // Enrolled netns cookie -> slot, read from weft_enrolled.
  absl::StatusOr<std::map<uint64_t, uint32_t>> Enrolled() const;
  // Netns cookies that have a port or CIDR exclusion or original-destination maps (enrolled or
  // left over).
  absl::StatusOr<std::set<uint64_t>> NetnsWithState() const;

  // Where the app socket with cookie `socket_cookie` (SO_COOKIE) tried to connect before it
  // was redirected. NotFound when no redirect was recorded for it.
  absl::StatusOr<SockAddr> OriginalDestination(uint64_t socket_cookie) const;
  absl::Status ForgetOriginalDestination(uint64_t socket_cookie);
  // The same, from ztunnel's side: `accepted_fd` is a connection accepted on the outbound
  // listener; it is found by the accepted socket's netns cookie and peer address (needs the
  // sockops program attached, see AttachToCgroup). NotFound when it was not redirected.
  absl::StatusOr<SockAddr> OriginalDestinationOfAccepted(int accepted_fd) const;

  // Attaches connect4, connect6 and sockops (files records by peer) to the cgroup v2
  // directory `cgroup_fd` refers to. Never pass the machine's root cgroup in tests.
  struct CgroupLinks {
    BpfLink connect4;
    BpfLink connect6;
    BpfLink sockops;
  };
  absl::StatusOr<CgroupLinks> AttachToCgroup(int cgroup_fd);
  absl::StatusOr<ReasonCounts> Counters() const;

  // The local legs (docs/fastpath.md, "The local legs of cross-node traffic"): attaches the
  // sk_msg program to weft_local_legs (again after a restart: the new program replaces the old
  // one for sockets joining from now on) and sets whether the sockops program adds redirected
  // app sockets to it. Off: no app socket joins from now on; joined ones keep the short-cut
  // until they close. FailedPrecondition when this kernel could not load the sk_msg program
  // (local_legs_unsupported() says why); the rest of the capture works without it.
  absl::Status SetLocalLegs(bool on);
  // As PinnedMaps::JoinLocalLeg / ReleaseLocalLeg (tests; ztunnel uses PinnedMaps).
  absl::Status JoinLocalLeg(int fd);
  absl::Status ReleaseLocalLeg(int fd);
  // As PinnedMaps::ExpectInboundLeg / JoinInboundLeg / ForgetInboundLeg (tests).
  absl::StatusOr<weft_sock_tuple> ExpectInboundLeg(int fd, const SockAddr& app);
  absl::Status JoinInboundLeg(int fd, const weft_sock_tuple& own);
  absl::Status ForgetInboundLeg(const weft_sock_tuple& own);
  // Why the sk_msg program was left out at load (empty: it loaded).
  const std::string& local_legs_unsupported() const;
  // The connect4/6 programs loaded: the EACCES pair where ConnectSetsErrno(), else the EPERM one.
  struct bpf_program* connect4_program() const;
  struct bpf_program* connect6_program() const;
  struct bpf_program* sockops_program() const;
  // weft_connect_deny and weft_deny_counts of this object (fds duplicated).
  absl::StatusOr<std::unique_ptr<ConnectDenyMap>> ConnectDeny() const;
  // True when a connect denied by weft_connect_deny fails with EACCES (else EPERM).
  bool denies_with_eacces() const;

 private:
  struct Impl;
  explicit OutboundCapture(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::bpf
