// Map operations on raw map fds, shared by the skeleton owners (bpf/capture.h, which hold the
// maps they loaded) and PinnedMaps (bpf/pinned_maps.h, which opens the agent's pinned maps by
// path): one implementation of every key encoding and lookup, whichever way the fd was got.
// Internal to bpf/ (target weft_bpf_pinned); not a public interface.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/net.h"
#include "common/unique_fd.h"
#include "shared/capture.h"

namespace weft::bpf {

// Reason code (enum weft_reason) -> count summed over CPUs; codes never hit are absent.
using ReasonCounts = std::map<int, uint64_t>;

namespace internal {

// errno (either sign) of a BPF syscall -> Status with a hint: PermissionDenied (needs root /
// CAP_BPF), Unavailable (the kernel lacks a feature), Internal otherwise.
absl::Status ErrnoStatus(int err, std::string_view what);

// Opens <dir>/maps/<name> (bpf_obj_get) and checks its type and key size, so a stale or
// foreign pin fails here with a clear error. NotFound names the path and what to check.
absl::StatusOr<UniqueFd> OpenPinnedMap(const std::string& dir, std::string_view name, uint32_t type,
                                       uint32_t key_size);

// Addresses are kept as IPv4-mapped IPv6 in every map (shared/capture.h).
void ToMapped(const IpAddr& ip, uint8_t out[16]);
SockAddr FromRecord(const weft_orig_dst& value);

// bpf_map_update_elem(BPF_ANY) / delete (a missing key is not an error). `name` is the map's
// name for error messages.
absl::Status UpdateMap(int map_fd, std::string_view name, const void* key, const void* value);
absl::Status DeleteFromMap(int map_fd, std::string_view name, const void* key);

// weft_listeners: (slot, kind) -> listening TCP socket `listen_fd`.
absl::Status SetListener(int listeners_fd, uint32_t slot, weft_listener_kind kind, int listen_fd);

// The inner map a hash of maps (weft_orig_dst, weft_orig_dst_by_peer) holds for `netns_cookie`,
// opened by its id (needs CAP_SYS_ADMIN, as every other map operation here). NotFound when
// that pod has none.
absl::StatusOr<UniqueFd> PodMap(int outer_fd, std::string_view name, uint64_t netns_cookie);

// Gives the pod with netns `netns_cookie` its own inner maps in both outer maps (shared/
// capture.h, WEFT_ORIG_DST_PER_POD). Keeps the ones it already has (re-enrolment keeps its
// records).
absl::Status CreatePodMaps(int orig_dst_fd, int by_peer_fd, uint64_t netns_cookie);

// weft_orig_dst_by_peer lookup for a connection accepted on ztunnel's outbound listener: the
// accepted socket's netns cookie picks the pod's inner map, its peer address the record.
absl::StatusOr<SockAddr> OriginalDestinationOfAccepted(int by_peer_fd, int accepted_fd);

// A per-CPU counter array (WEFT_REASON_SLOTS entries) summed over CPUs.
absl::StatusOr<ReasonCounts> ReadCounters(int map_fd, std::string_view name);

// weft_local_legs (PinnedMaps::JoinLocalLeg, ReleaseLocalLeg): joins ztunnel's socket `fd` when
// the app's end (the reversed tuple) is in the map (NotFound otherwise); takes the app's end out.
absl::Status JoinLocalLeg(int local_legs_fd, int fd);
absl::Status ReleaseLocalLeg(int local_legs_fd, int fd);

}  // namespace internal
}  // namespace weft::bpf
