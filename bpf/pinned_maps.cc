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
namespace {

// Opens a pinned map and checks it is the map we expect (a stale or foreign pin with the
// same name would otherwise fail later with an obscure EINVAL).
absl::StatusOr<UniqueFd> OpenMap(const std::string& dir, std::string_view name, uint32_t type,
                                 uint32_t key_size) {
  std::string path = MapPin(dir, name);
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat("BPF map ", path,
                       " is not pinned: is weft-agent running in eBPF mode (--capture ebpf) "
                       "with --bpf-pin-dir ",
                       dir, ", and is bpffs mounted at ", Av(kBpffsRoot), "?"));
    }
    return internal::ErrnoStatus(err, absl::StrCat("opening pinned BPF map ", path));
  }
  UniqueFd map(fd);
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(map.get(), &info, &len) != 0) {
    return internal::ErrnoStatus(errno, absl::StrCat("reading the info of BPF map ", path));
  }
  if (info.type != type || info.key_size != key_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not Weft's ", Av(name), " map (type ", info.type, ", key size ",
                     info.key_size, "; expected type ", type, ", key size ", key_size,
                     "): a stale pin of another version? restart weft-agent to re-pin"));
  }
  return map;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PinnedMaps>> PinnedMaps::Open(std::string pin_dir) {
  if (pin_dir.empty()) return absl::InvalidArgumentError("PinnedMaps::Open: pin_dir is empty");
  WEFT_ASSIGN_OR_RETURN(
      UniqueFd listeners,
      OpenMap(pin_dir, "weft_listeners", BPF_MAP_TYPE_SOCKHASH, sizeof(weft_listener_key)));
  WEFT_ASSIGN_OR_RETURN(UniqueFd by_peer, OpenMap(pin_dir, "weft_orig_dst_by_peer",
                                                  BPF_MAP_TYPE_HASH_OF_MAPS, sizeof(uint64_t)));
  return std::unique_ptr<PinnedMaps>(
      new PinnedMaps(std::move(pin_dir), std::move(listeners), std::move(by_peer)));
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

}  // namespace weft::bpf
