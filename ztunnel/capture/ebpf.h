// eBPF capture mode (bpf/, set up by weft-agent): how ztunnel finds a captured connection's
// original destination and registers its in-pod inbound listeners with the kernel.
//
// Outbound: cgroup/connect4/6 rewrote the app's connect() to ztunnel's loopback listener and
// filed the original destination under the app socket's address; ztunnel looks it up from the
// accepted socket (its netns cookie + peer) in the agent's pinned map. Inbound: sk_lookup
// assigned the SYN to ztunnel's listener without rewriting it, so the accepted socket's own
// local address is the original destination.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "bpf/pinned_maps.h"
#include "ztunnel/capture/capture.h"

namespace weft::ztunnel {

class EbpfOrigDstProvider : public OrigDstProvider {
 public:
  // Opens the maps the agent pinned under `pin_dir` (bpf/pins.h). Errors name the path.
  static absl::StatusOr<std::unique_ptr<EbpfOrigDstProvider>> Open(const std::string& pin_dir);
  explicit EbpfOrigDstProvider(std::unique_ptr<bpf::PinnedMaps> maps);

  absl::StatusOr<SockAddr> OriginalDst(int fd) override;
  bool JoinLocalLeg(int fd) override;
  void ReleaseLocalLeg(int fd) override;
  std::optional<LocalLegTicket> ExpectLocalLeg(int fd, const SockAddr& app) override;
  bool JoinInboundLeg(int fd, const LocalLegTicket& t) override;
  void ForgetLocalLeg(const LocalLegTicket& t) override;

  // Puts ztunnel's in-pod listener `fd` (bound to `bound`) into the steering map for pod
  // `slot`: the HBONE or plaintext kind of its family. Outbound listeners are not steered to.
  absl::Status RegisterListener(uint32_t slot, bool hbone, const SockAddr& bound, int fd);

 private:
  std::unique_ptr<bpf::PinnedMaps> maps_;
};

}  // namespace weft::ztunnel
