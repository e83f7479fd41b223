// ztunnel's side of eBPF capture: the maps weft-agent pinned under its pin dir (bpf/pins.h),
// opened by path. No programs, no skeletons: ztunnel only puts its in-pod listeners into
// weft_listeners and reads original destinations from weft_orig_dst_by_peer. The agent owns
// the maps' lifetime; these fds keep the maps alive while open even if the agent unpins them.
//
// Thread-safety: safe from any thread (syscalls on fds fixed at Open; the inner-map cache of
// OriginalDestinationOfAccepted has its own mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bpf/map_ops.h"
#include "common/net.h"
#include "common/unique_fd.h"
#include "shared/capture.h"

namespace weft::bpf {

class PinnedMaps {
 public:
  // Opens <pin_dir>/maps/weft_listeners and <pin_dir>/maps/weft_orig_dst_by_peer
  // (bpf_obj_get). Errors: NotFound naming the path when the agent has not pinned them (is
  // weft-agent running in eBPF mode with this --bpf-pin-dir?), PermissionDenied without
  // CAP_BPF/root, InvalidArgument when a path is not a map of the expected layout.
  static absl::StatusOr<std::unique_ptr<PinnedMaps>> Open(std::string pin_dir);

  // Puts ztunnel's listening TCP socket `listen_fd` (bound and listening, in the pod's netns)
  // in weft_listeners for (slot, kind). Same semantics as InboundCapture::SetListener.
  absl::Status SetListener(uint32_t slot, weft_listener_kind kind, int listen_fd);
  // Removes it: SYNs for that kind are then dropped (fail closed). Absent is not an error.
  absl::Status RemoveListener(uint32_t slot, weft_listener_kind kind);

  // Where the app tried to connect before connect4/6 redirected it, for a connection accepted
  // on ztunnel's outbound listener (looked up by the accepted socket's netns cookie and peer
  // address). Same semantics as OutboundCapture::OriginalDestinationOfAccepted: NotFound when
  // the connection was not redirected by eBPF. Keeps each pod's inner map open between calls
  // (internal::PodMapCache in map_ops.h: checked against the outer map's id on every call).
  absl::StatusOr<SockAddr> OriginalDestinationOfAccepted(int accepted_fd) const;
  // Pods whose inner map is held open now (for tests).
  size_t CachedPodMaps() const;

  // The local legs (docs/fastpath.md, "The local legs of cross-node traffic"). `fd` is
  // ztunnel's end of a connection with an app in the pod's netns (the accepted outbound
  // socket). Joins it to weft_local_legs when the app's end is there (the agent's sockops
  // program put it in), so the sk_msg program moves the two ends' messages without the
  // loopback TCP stack. NotFound when the app's end is not in the map (the agent runs with
  // --local-legs off, an older agent, a full map) or the map is not pinned; the connection
  // then stays plain TCP. ztunnel must read a joined socket with recv/read (not splice) and
  // to EAGAIN (a short read may come from the redirected queue while TCP still holds bytes).
  absl::Status JoinLocalLeg(int fd);
  // Takes the app's end of `fd`'s connection out of weft_local_legs (its sends then skip the
  // sk_msg program): for a connection ztunnel will not join. Absent is not an error.
  absl::Status ReleaseLocalLeg(int fd);
  // The inbound (delivery) leg, ztunnel's socket connecting to an app in the pod (internal::
  // ExpectInboundLeg and friends in map_ops.h): before the connect, bind `fd` and announce the
  // app's end (the sockops program then adds the app's accepted socket); after it, join `fd`;
  // after a failed connect, withdraw. NotFound when the agent pins no weft_local_legs_expect
  // (an agent from before the inbound leg): the connection stays plain TCP.
  absl::StatusOr<weft_sock_tuple> ExpectInboundLeg(int fd, const SockAddr& app);
  absl::Status JoinInboundLeg(int fd, const weft_sock_tuple& own);
  absl::Status ForgetInboundLeg(const weft_sock_tuple& own);
  // Whether the agent runs with the local legs on (weft_local_legs_config, mapped read-only:
  // no syscall). Off, or an agent without them: ztunnel neither joins nor releases.
  bool local_legs_on() const {
    return local_legs_.valid() && legs_config_ != nullptr && *legs_config_ == WEFT_LOCAL_LEGS_ON;
  }
  ~PinnedMaps();

  const std::string& pin_dir() const { return pin_dir_; }

 private:
  PinnedMaps(std::string pin_dir, UniqueFd listeners, UniqueFd by_peer, UniqueFd local_legs,
             UniqueFd legs_expect, const volatile uint32_t* legs_config, size_t legs_config_len)
      : pin_dir_(std::move(pin_dir)),
        listeners_(std::move(listeners)),
        by_peer_(std::move(by_peer)),
        local_legs_(std::move(local_legs)),
        legs_expect_(std::move(legs_expect)),
        legs_config_(legs_config),
        legs_config_len_(legs_config_len) {}
  std::string pin_dir_;
  UniqueFd listeners_;
  UniqueFd by_peer_;
  UniqueFd local_legs_;   // invalid: not pinned (an agent without local legs)
  UniqueFd legs_expect_;  // invalid: not pinned (an agent without the inbound leg)
  const volatile uint32_t* legs_config_ = nullptr;  // mmap of weft_local_legs_config
  size_t legs_config_len_ = 0;
  mutable internal::PodMapCache pod_maps_;
};

}  // namespace weft::bpf
