// Traffic capture: how connections reach ztunnel's in-pod listeners, and how ztunnel learns a
// captured connection's original destination. One interface, one provider per capture mode,
// so the proxy has no per-mode special cases.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net.h"

namespace weft::ztunnel {

// In-pod ports and the mark every ztunnel socket carries so capture never loops.
inline constexpr uint16_t kOutboundPort = 15001;
inline constexpr uint16_t kInboundPlaintextPort = 15006;
inline constexpr uint16_t kInboundHbonePort = 15008;
inline constexpr uint32_t kZtunnelMark = 0x539;  // Istio ambient uses the same value
inline constexpr uint32_t kZtunnelMarkMask = 0xfff;

// ztunnel's end of an inbound (delivery) local leg, as the capture keys it; opaque here
// (eBPF capture: its weft_sock_tuple).
struct LocalLegTicket {
  alignas(8) unsigned char key[48] = {};
};

class OrigDstProvider {
 public:
  virtual ~OrigDstProvider() = default;
  // Original destination of an accepted, captured connection (`fd`: the accepted socket).
  virtual absl::StatusOr<SockAddr> OriginalDst(int fd) = 0;
  // eBPF capture's local legs (docs/fastpath.md, "The local legs of cross-node traffic"):
  // joins the accepted socket `fd` with the app's end of its connection so the kernel moves
  // their messages socket to socket. True when joined: the caller must then read `fd` only with
  // recv/read, to EAGAIN, and never splice or relay it. Other capture modes: false.
  virtual bool JoinLocalLeg(int fd) { return false; }
  // The connection will not be joined: the app's end leaves the map (its sends skip the sk_msg
  // program). No-op in other capture modes.
  virtual void ReleaseLocalLeg(int fd) {}
  // The inbound (delivery) leg, ztunnel's socket `fd` (unconnected, created in the pod's netns)
  // about to connect to the app at `app`: binds it and announces the connection, so the app's
  // accepted socket joins the map when the handshake completes. nullopt: not announced (other
  // capture modes, the local legs off, an error): connect as usual, plain TCP.
  virtual std::optional<LocalLegTicket> ExpectLocalLeg(int fd, const SockAddr& app) {
    return std::nullopt;
  }
  // After the announced connect succeeded: joins `fd`. True when joined; then, as for
  // JoinLocalLeg, read `fd` only with recv/read, to EAGAIN, and never splice or relay it.
  virtual bool JoinInboundLeg(int fd, const LocalLegTicket& t) { return false; }
  // The announced connect failed: withdraws the announcement.
  virtual void ForgetLocalLeg(const LocalLegTicket& t) {}
};

// iptables REDIRECT mode: getsockopt(SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST).
class SoOriginalDstProvider : public OrigDstProvider {
 public:
  absl::StatusOr<SockAddr> OriginalDst(int fd) override;
};

struct InpodIptablesOptions {
  uint32_t mark = kZtunnelMark;
  uint32_t mark_mask = kZtunnelMarkMask;
  uint16_t outbound_port = kOutboundPort;
  uint16_t inbound_port = kInboundPlaintextPort;
  uint16_t hbone_port = kInboundHbonePort;
  std::vector<uint16_t> exclude_ports;  // neither direction redirected (e.g. kubelet probes)
  std::vector<Cidr> exclude_cidrs;      // outbound destinations left alone
  bool ipv6 = true;                     // also program ip6tables
};

// Installs the in-pod REDIRECT rules inside the netns `netns_fd` (Istio ambient's in-pod
// layout, in chains named WEFT_INPOD_*): OUTPUT TCP not marked and not to loopback ->
// outbound_port; PREROUTING TCP to hbone_port accepted as is, other TCP -> inbound_port.
// Idempotent (re-install replaces). Uses iptables-restore inside the netns; a clear error if
// iptables is missing.
absl::Status InstallInpodIptables(int netns_fd, const InpodIptablesOptions& opts);
// Removes the capture: every REDIRECT rule and chain InstallInpodIptables added (no error if
// absent). It leaves one rule that changes nothing, `-A OUTPUT -p tcp -m conntrack --ctstate
// DNAT -j WEFT_INPOD_DRAIN` (an empty chain), in each family: it keeps conntrack on in the
// netns, without which connections captured before the removal would stop being translated and
// hang (app and ztunnel both waiting); with it they drain through ztunnel. The next install
// takes it out.
absl::Status RemoveInpodIptables(int netns_fd);

// Whether the in-pod capture is in place in `netns_fd`: both IPv4 jumps (OUTPUT and PREROUTING
// into the WEFT_INPOD_* chains). The agent's drift check (CNI CHECK).
absl::StatusOr<bool> InpodIptablesPresent(int netns_fd);

// When ip6tables cannot capture in a pod's netns (`why`: the tool or its nat table is missing):
// OK if the pod has no IPv6 address besides loopback (nothing to capture), otherwise
// FailedPrecondition naming the address: IPv6 traffic would reach the app uncaptured, so
// enrolment fails instead (fail closed).
absl::Status Ipv6Uncapturable(int netns_fd, const absl::Status& why);

// Sets SO_MARK on a socket (needs CAP_NET_ADMIN).
absl::Status MarkSocket(int fd, uint32_t mark = kZtunnelMark);

}  // namespace weft::ztunnel
