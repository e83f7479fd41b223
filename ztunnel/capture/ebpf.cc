#include "ztunnel/capture/ebpf.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"

namespace weft::ztunnel {

absl::StatusOr<std::unique_ptr<EbpfOrigDstProvider>> EbpfOrigDstProvider::Open(
    const std::string& pin_dir) {
  WEFT_ASSIGN_OR_RETURN(auto maps, bpf::PinnedMaps::Open(pin_dir));
  return std::make_unique<EbpfOrigDstProvider>(std::move(maps));
}

EbpfOrigDstProvider::EbpfOrigDstProvider(std::unique_ptr<bpf::PinnedMaps> maps)
    : maps_(std::move(maps)) {}

absl::StatusOr<SockAddr> EbpfOrigDstProvider::OriginalDst(int fd) {
  WEFT_ASSIGN_OR_RETURN(SockAddr local, LocalAddress(fd));
  if (local.ip.IsLoopback()) return maps_->OriginalDestinationOfAccepted(fd);
  // Steered by sk_lookup: the destination is untouched. A connection addressed to the
  // plaintext port itself was not captured and has no other destination.
  if (local.port == kInboundPlaintextPort) {
    return absl::InvalidArgumentError(
        absl::StrCat("connection to ", local.ToString(),
                     " was addressed to ztunnel's inbound port itself, not captured"));
  }
  return local;
}

bool EbpfOrigDstProvider::JoinLocalLeg(int fd) {
  if (!maps_->local_legs_on()) return false;  // no syscall when the agent has them off
  absl::Status st = maps_->JoinLocalLeg(fd);
  // NotFound: the agent did not put the app's end in (--local-legs off, a full map): plain TCP.
  if (!st.ok() && !absl::IsNotFound(st))
    LOG_WARN("capture", "joining the local leg failed; the connection keeps loopback TCP",
             {{"error", std::string(st.message())}});
  return st.ok();
}

void EbpfOrigDstProvider::ReleaseLocalLeg(int fd) {
  if (!maps_->local_legs_on()) return;
  absl::Status st = maps_->ReleaseLocalLeg(fd);
  if (!st.ok())
    LOG_WARN("capture", "releasing the app's end of a local leg failed",
             {{"error", std::string(st.message())}});
}

static_assert(sizeof(LocalLegTicket::key) == sizeof(weft_sock_tuple));

std::optional<LocalLegTicket> EbpfOrigDstProvider::ExpectLocalLeg(int fd, const SockAddr& app) {
  if (!maps_->local_legs_on()) return std::nullopt;  // no syscall when the agent has them off
  auto own = maps_->ExpectInboundLeg(fd, app);
  if (!own.ok()) {
    // NotFound: an agent from before the inbound leg. A failed bind leaves the socket usable.
    if (!absl::IsNotFound(own.status()))
      LOG_WARN("capture", "announcing the inbound local leg failed; it keeps loopback TCP",
               {{"app", app.ToString()}, {"error", std::string(own.status().message())}});
    return std::nullopt;
  }
  LocalLegTicket t;
  std::memcpy(t.key, &*own, sizeof(t.key));
  return t;
}

bool EbpfOrigDstProvider::JoinInboundLeg(int fd, const LocalLegTicket& t) {
  weft_sock_tuple own;
  std::memcpy(&own, t.key, sizeof(own));
  absl::Status st = maps_->JoinInboundLeg(fd, own);
  if (!st.ok())
    LOG_WARN("capture", "joining the inbound local leg failed; it keeps loopback TCP",
             {{"error", std::string(st.message())}});
  return st.ok();
}

void EbpfOrigDstProvider::ForgetLocalLeg(const LocalLegTicket& t) {
  weft_sock_tuple own;
  std::memcpy(&own, t.key, sizeof(own));
  (void)maps_->ForgetInboundLeg(own);  // the LRU map ages it out anyway
}

absl::Status EbpfOrigDstProvider::RegisterListener(uint32_t slot, bool hbone, const SockAddr& bound,
                                                   int fd) {
  int kind = hbone ? WEFT_LISTENER_HBONE : WEFT_LISTENER_INBOUND;
  if (!bound.ip.IsV4()) kind |= WEFT_LISTENER_V6;
  return maps_->SetListener(slot, static_cast<weft_listener_kind>(kind), fd);
}

}  // namespace weft::ztunnel
