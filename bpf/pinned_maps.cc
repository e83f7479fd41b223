#include "bpf/pinned_maps.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sys/mman.h>
#include <unistd.h>

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
  auto local_legs = internal::OpenPinnedMap(pin_dir, "weft_local_legs", BPF_MAP_TYPE_SOCKHASH,
                                            sizeof(weft_sock_tuple));
  if (!local_legs.ok() && !absl::IsNotFound(local_legs.status())) return local_legs.status();
  // The agent's switch, mapped read-only once (the map is BPF_F_MMAPABLE).
  const volatile uint32_t* legs_config = nullptr;
  size_t legs_config_len = 0;
  UniqueFd legs_expect;
  if (local_legs.ok()) {
    // Optional too: an agent from before the inbound (delivery) leg pins none.
    auto expect = internal::OpenPinnedMap(pin_dir, "weft_local_legs_expect", BPF_MAP_TYPE_LRU_HASH,
                                          sizeof(weft_sock_tuple));
    if (!expect.ok() && !absl::IsNotFound(expect.status())) return expect.status();
    if (expect.ok()) legs_expect = std::move(*expect);
    WEFT_ASSIGN_OR_RETURN(UniqueFd config,
                          internal::OpenPinnedMap(pin_dir, "weft_local_legs_config",
                                                  BPF_MAP_TYPE_ARRAY, sizeof(uint32_t)));
    legs_config_len = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    void* p = ::mmap(nullptr, legs_config_len, PROT_READ, MAP_SHARED, config.get(), 0);
    if (p == MAP_FAILED)
      return internal::ErrnoStatus(errno, "mapping weft_local_legs_config (BPF_F_MMAPABLE)");
    legs_config = static_cast<const volatile uint32_t*>(p);
  }
  return std::unique_ptr<PinnedMaps>(
      new PinnedMaps(std::move(pin_dir), std::move(listeners), std::move(by_peer),
                     local_legs.ok() ? std::move(*local_legs) : UniqueFd(), std::move(legs_expect),
                     legs_config, legs_config_len));
}

PinnedMaps::~PinnedMaps() {
  if (legs_config_) ::munmap(const_cast<uint32_t*>(legs_config_), legs_config_len_);
}

absl::Status PinnedMaps::SetListener(uint32_t slot, weft_listener_kind kind, int listen_fd) {
  return internal::SetListener(listeners_.get(), slot, kind, listen_fd);
}

absl::Status PinnedMaps::RemoveListener(uint32_t slot, weft_listener_kind kind) {
  weft_listener_key key{.slot = slot, .kind = static_cast<uint32_t>(kind)};
  return internal::DeleteFromMap(listeners_.get(), "weft_listeners", &key);
}

absl::StatusOr<SockAddr> PinnedMaps::OriginalDestinationOfAccepted(int accepted_fd) const {
  return internal::OriginalDestinationOfAccepted(by_peer_.get(), accepted_fd, &pod_maps_);
}

size_t PinnedMaps::CachedPodMaps() const {
  return pod_maps_.size();
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

absl::StatusOr<weft_sock_tuple> PinnedMaps::ExpectInboundLeg(int fd, const SockAddr& app) {
  if (!local_legs_.valid() || !legs_expect_.valid())
    return absl::NotFoundError(
        "weft_local_legs_expect is not pinned (agent without the inbound leg)");
  return internal::ExpectInboundLeg(legs_expect_.get(), fd, app);
}

absl::Status PinnedMaps::JoinInboundLeg(int fd, const weft_sock_tuple& own) {
  if (!local_legs_.valid())
    return absl::NotFoundError("weft_local_legs is not pinned (agent without local legs)");
  return internal::JoinInboundLeg(local_legs_.get(), fd, own);
}

absl::Status PinnedMaps::ForgetInboundLeg(const weft_sock_tuple& own) {
  if (!legs_expect_.valid()) return absl::OkStatus();
  return internal::ForgetInboundLeg(legs_expect_.get(), own);
}

}  // namespace weft::bpf
