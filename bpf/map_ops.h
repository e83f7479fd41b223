// Map operations on raw map fds, shared by the skeleton owners (bpf/capture.h, which hold the
// maps they loaded) and PinnedMaps (bpf/pinned_maps.h, which opens the agent's pinned maps by
// path): one implementation of every key encoding and lookup, whichever way the fd was got.
// Internal to bpf/ (target weft_bpf_pinned); not a public interface.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
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

// Descriptors of a hash of maps' inner maps, by netns cookie, so a lookup in a pod's inner map
// costs one lookup of the outer map (the inner map's id) instead of that plus
// bpf_map_get_fd_by_id and close. The id is compared on every call: a pod unenrolled and
// enrolled again (a new inner map under the same cookie) is never read through the old
// descriptor. Descriptors of departed pods (their cookie gone from the outer map) are closed
// when they are next asked for, and swept once the cache holds more than kSweepAbove entries,
// so the cache pins no inner map the outer map let go of for long. Thread-safe (one mutex).
class PodMapCache {
 public:
  static constexpr size_t kSweepAbove = 32;
  // bpf_map_lookup_elem(inner map of `netns_cookie` in `outer_fd`, key, value). NotFound (with
  // a message) when the pod has no inner map; ENOENT of the inner lookup is returned as
  // `*missing = true` with OkStatus.
  absl::Status Lookup(int outer_fd, std::string_view name, uint64_t netns_cookie, const void* key,
                      void* value, bool* missing);
  size_t size() const;

 private:
  struct Entry {
    uint32_t id = 0;
    UniqueFd fd;
  };
  void SweepLocked(int outer_fd);
  mutable std::mutex mu_;
  absl::flat_hash_map<uint64_t, Entry> entries_;
};

// weft_orig_dst_by_peer lookup for a connection accepted on ztunnel's outbound listener: the
// accepted socket's netns cookie picks the pod's inner map, its peer address the record.
// `cache` (optional) keeps the inner maps' descriptors between calls.
absl::StatusOr<SockAddr> OriginalDestinationOfAccepted(int by_peer_fd, int accepted_fd,
                                                       PodMapCache* cache = nullptr);

// A per-CPU counter array (WEFT_REASON_SLOTS entries) summed over CPUs.
absl::StatusOr<ReasonCounts> ReadCounters(int map_fd, std::string_view name);

// weft_local_legs (PinnedMaps::JoinLocalLeg, ReleaseLocalLeg): joins ztunnel's socket `fd` when
// the app's end (the reversed tuple) is in the map (NotFound otherwise); takes the app's end out.
absl::Status JoinLocalLeg(int local_legs_fd, int fd);
absl::Status ReleaseLocalLeg(int local_legs_fd, int fd);
// The inbound (delivery) leg: ztunnel connects to the app. ExpectInboundLeg binds ztunnel's
// unconnected socket `fd` (created in the pod's netns) to `app`'s address, port 0, and announces
// the app's end of the coming connection in weft_local_legs_expect; returns ztunnel's own tuple.
// JoinInboundLeg adds ztunnel's connected socket under it (whether or not the app's end has
// joined yet: a redirect needs both). ForgetInboundLeg withdraws the announcement (the connect
// failed; absent is not an error).
absl::StatusOr<weft_sock_tuple> ExpectInboundLeg(int expect_fd, int fd, const SockAddr& app);
absl::Status JoinInboundLeg(int local_legs_fd, int fd, const weft_sock_tuple& own);
absl::Status ForgetInboundLeg(int expect_fd, const weft_sock_tuple& own);

}  // namespace internal
}  // namespace weft::bpf
