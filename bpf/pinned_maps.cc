#include "bpf/pinned_maps.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "bpf/map_ops.h"
#include "bpf/pins.h"
#include "common/status.h"

namespace weft::bpf {
absl::StatusOr<std::unique_ptr<PinnedMaps>> PinnedMaps::Open(std::string pin_dir) {
  if (pin_dir.empty()) return absl::InvalidArgumentError("PinnedMaps::Open: pin_dir is empty");
  WEFT_ASSIGN_OR_RETURN(UniqueFd listeners,
                        internal::OpenPinnedMap(pin_dir, "weft_listeners", BPF_MAP_TYPE_SOCKHASH,
                                                sizeof(weft_listener_key)));
  WEFT_ASSIGN_OR_RETURN(UniqueFd by_peer,
                        internal::OpenPinnedMap(pin_dir, "weft_orig_dst_by_peer",
                                                BPF_MAP_TYPE_HASH_OF_MAPS, sizeof(uint64_t)));
  // Optional: an agent of an earlier version pins no weft_local_legs.
  auto local_legs =
      internal::OpenPinnedMap(pin_dir, "weft_local_legs", BPF_MAP_TYPE_SOCKHASH,
                              sizeof(weft_sock_tuple));
  if (!local_legs.ok() && !absl::IsNotFound(local_legs.status())) return local_legs.status();
  return std::unique_ptr<PinnedMaps>(
      new PinnedMaps(std::move(pin_dir), std::move(listeners), std::move(by_peer),
                     local_legs.ok() ? std::move(*local_legs) : UniqueFd()));
}

absl::Status PinnedMaps::SetListener(uint32_t slot, weft_listener_kind kind, int listen_fd) {
  return internal::SetListener(listeners_.get(), slot, kind, listen_fd);
}

absl::Status PinnedMaps::RemoveListener(uint32_t slot, weft_listener_kind kind) {
  weft_listener_key key{.slot = slot, .kind = static_cast<uint32_t>(kind)};
  return internal::DeleteFromMap(listeners_.get(), "weft_listeners", &key);
}

absl::StatusOr<SockAddr> PinnedMaps::OriginalDestinationOfAccepted(int accepted_fd) const {
  return internal::OriginalDestinationOfAccepted(by_peer_.get(), accepted_fd);
}

absl::Status PinnedMaps::JoinLocalLeg(int fd) {
  if (!local_legs_.valid())
    return absl::NotFoundError("weft_local_legs is not pinned (agent without local legs)");
  return internal::JoinLocalLeg(local_legs_.get(), fd);
}

absl::Status PinnedMaps::ReleaseLocalLeg(int fd) {
  if (!local_legs_.valid()) return absl::OkStatus();
  return internal::ReleaseLocalLeg(local_legs_.get(), fd);
}

}  // namespace weft::bpf
