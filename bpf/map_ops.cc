#include "bpf/map_ops.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bpf/pins.h"
#include "common/status.h"

namespace weft::bpf::internal {
namespace {

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // Linux 5.14; older libc headers lack it
#endif

// ENOTSUPP (kernel-internal, not in userspace errno.h): what BPF returns for missing features.
constexpr int kKernelEnotsupp = 524;

}  // namespace

absl::Status ErrnoStatus(int err, std::string_view what) {
  err = err < 0 ? -err : err;
  std::string msg = absl::StrCat(Av(what), ": ", std::strerror(err));
  if (err == EPERM || err == EACCES) {
    return absl::PermissionDeniedError(
        absl::StrCat(msg, " (run as root or grant CAP_BPF + CAP_NET_ADMIN)"));
  }
  if (err == EINVAL || err == EOPNOTSUPP || err == kKernelEnotsupp) {
    return absl::UnavailableError(absl::StrCat(
        msg, " (the kernel lacks a needed BPF feature; Weft needs Linux 5.15+ with BTF)"));
  }
  return absl::InternalError(msg);
}

void ToMapped(const IpAddr& ip, uint8_t out[16]) {
  if (ip.IsV4()) {
    std::memset(out, 0, 10);
    out[10] = 0xff;
    out[11] = 0xff;
    std::memcpy(out + 12, ip.bytes().data(), 4);
  } else {
    std::memcpy(out, ip.bytes().data(), 16);
  }
}

SockAddr FromRecord(const weft_orig_dst& value) {
  in6_addr a;
  std::memcpy(&a, value.addr, sizeof(a));
  return SockAddr{IpAddr::FromIn6(a), ntohs(value.port)};
}

absl::StatusOr<UniqueFd> OpenPinnedMap(const std::string& dir, std::string_view name, uint32_t type,
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
    return ErrnoStatus(err, absl::StrCat("opening pinned BPF map ", path));
  }
  UniqueFd map(fd);
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(map.get(), &info, &len) != 0) {
    return ErrnoStatus(errno, absl::StrCat("reading the info of BPF map ", path));
  }
  if (info.type != type || info.key_size != key_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not Weft's ", Av(name), " map (type ", info.type, ", key size ",
                     info.key_size, "; expected type ", type, ", key size ", key_size,
                     "): a stale pin of another version? restart weft-agent to re-pin"));
  }
  return map;
}

// Map updates fail on bad input or a full map, not on missing kernel features (those fail at
// load), so they get their own mapping.
absl::Status UpdateMap(int map_fd, std::string_view name, const void* key, const void* value) {
  if (bpf_map_update_elem(map_fd, key, value, BPF_ANY) != 0) {
    int err = errno;
    std::string msg = absl::StrCat("updating BPF map ", Av(name), ": ", std::strerror(err));
    if (err == E2BIG || err == ENOSPC || err == ENOMEM) {
      return absl::ResourceExhaustedError(
          absl::StrCat(msg, " (the map is full: unenrol stale pods or raise max_entries)"));
    }
    if (err == EINVAL || err == EOPNOTSUPP || err == kKernelEnotsupp || err == EBADF) {
      return absl::InvalidArgumentError(msg);
    }
    return ErrnoStatus(err, msg);
  }
  return absl::OkStatus();
}

// Deleting a missing entry is not an error: the caller's intent (absent) holds.
absl::Status DeleteFromMap(int map_fd, std::string_view name, const void* key) {
  if (bpf_map_delete_elem(map_fd, key) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, absl::StrCat("deleting from BPF map ", Av(name)));
  }
  return absl::OkStatus();
}

absl::Status SetListener(int listeners_fd, uint32_t slot, weft_listener_kind kind, int listen_fd) {
  if (listen_fd < 0) return absl::InvalidArgumentError("SetListener: listen_fd is not open");
  weft_listener_key key{.slot = slot, .kind = static_cast<uint32_t>(kind)};
  uint64_t fd = static_cast<uint64_t>(listen_fd);
  absl::Status st = UpdateMap(listeners_fd, "weft_listeners", &key, &fd);
  if (absl::IsInvalidArgument(st)) {
    return absl::InvalidArgumentError(
        absl::StrCat(st.message(),
                     " (SetListener needs a bound, listening TCP socket: bind() and listen() "
                     "it before handing it over)"));
  }
  return st;
}

namespace {
absl::Status NoPodMap(std::string_view name, uint64_t netns_cookie) {
  return absl::NotFoundError(
      absl::StrCat(Av(name), " has no map for the pod with netns cookie ", netns_cookie));
}
}  // namespace

absl::StatusOr<UniqueFd> PodMap(int outer_fd, std::string_view name, uint64_t netns_cookie) {
  uint32_t id = 0;
  if (bpf_map_lookup_elem(outer_fd, &netns_cookie, &id) != 0) {
    if (errno == ENOENT) return NoPodMap(name, netns_cookie);
    return ErrnoStatus(errno, absl::StrCat("reading ", Av(name)));
  }
  int fd = bpf_map_get_fd_by_id(id);
  if (fd < 0) {
    // The pod was unenrolled between the two calls: its map is gone.
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat(Av(name), ": the map of the pod with netns cookie ",
                                              netns_cookie, " was just removed"));
    }
    return ErrnoStatus(errno,
                       absl::StrCat("opening ", Av(name), "'s map for netns ", netns_cookie));
  }
  return UniqueFd(fd);
}

namespace {

// Inserts a new inner LRU map for `netns_cookie` unless one is there already.
absl::Status CreatePodMap(int outer_fd, std::string_view name, uint32_t key_size,
                          uint64_t netns_cookie) {
  uint32_t id = 0;
  if (bpf_map_lookup_elem(outer_fd, &netns_cookie, &id) == 0) return absl::OkStatus();
  int fd = bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "weft_pod_od", key_size, sizeof(weft_orig_dst),
                          WEFT_ORIG_DST_PER_POD, nullptr);
  if (fd < 0) {
    return ErrnoStatus(errno, absl::StrCat("creating the pod's ", Av(name), " map"));
  }
  UniqueFd inner(fd);
  uint32_t value = static_cast<uint32_t>(inner.get());
  if (bpf_map_update_elem(outer_fd, &netns_cookie, &value, BPF_NOEXIST) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, absl::StrCat("adding the pod's map to ", Av(name)));
  }
  return absl::OkStatus();  // the outer map holds the inner one; our fd can go
}

}  // namespace

absl::Status CreatePodMaps(int orig_dst_fd, int by_peer_fd, uint64_t netns_cookie) {
  // By-peer first: connect() starts recording as soon as weft_orig_dst has the pod's map.
  WEFT_RETURN_IF_ERROR(
      CreatePodMap(by_peer_fd, "weft_orig_dst_by_peer", sizeof(weft_peer_key), netns_cookie));
  return CreatePodMap(orig_dst_fd, "weft_orig_dst", sizeof(uint64_t), netns_cookie);
}

absl::Status PodMapCache::Lookup(int outer_fd, std::string_view name, uint64_t netns_cookie,
                                 const void* key, void* value, bool* missing) {
  *missing = false;
  uint32_t id = 0;
  std::lock_guard<std::mutex> lock(mu_);
  if (bpf_map_lookup_elem(outer_fd, &netns_cookie, &id) != 0) {
    if (errno != ENOENT) return ErrnoStatus(errno, absl::StrCat("reading ", Av(name)));
    entries_.erase(netns_cookie);  // unenrolled: its map goes with it
    return NoPodMap(name, netns_cookie);
  }
  auto it = entries_.find(netns_cookie);
  if (it == entries_.end() || it->second.id != id) {
    int fd = bpf_map_get_fd_by_id(id);
    if (fd < 0) {
      if (errno == ENOENT) {  // removed between the two calls
        entries_.erase(netns_cookie);
        return absl::NotFoundError(absl::StrCat(Av(name), ": the map of the pod with netns cookie ",
                                                netns_cookie, " was just removed"));
      }
      return ErrnoStatus(errno,
                         absl::StrCat("opening ", Av(name), "'s map for netns ", netns_cookie));
    }
    if (it == entries_.end() && entries_.size() >= kSweepAbove) SweepLocked(outer_fd);
    Entry& e = entries_[netns_cookie];
    e.id = id;
    e.fd.reset(fd);
    it = entries_.find(netns_cookie);
  }
  if (bpf_map_lookup_elem(it->second.fd.get(), key, value) != 0) {
    if (errno != ENOENT) return ErrnoStatus(errno, absl::StrCat("reading ", Av(name)));
    *missing = true;
  }
  return absl::OkStatus();
}

void PodMapCache::SweepLocked(int outer_fd) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    uint32_t id = 0;
    const bool gone = bpf_map_lookup_elem(outer_fd, &it->first, &id) != 0 || id != it->second.id;
    if (gone) {
      entries_.erase(it++);
    } else {
      ++it;
    }
  }
}

size_t PodMapCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

absl::StatusOr<SockAddr> OriginalDestinationOfAccepted(int by_peer_fd, int accepted_fd,
                                                       PodMapCache* cache) {
  WEFT_ASSIGN_OR_RETURN(SockAddr peer, PeerAddress(accepted_fd));
  weft_peer_key key{};
  socklen_t len = sizeof(key.netns_cookie);
  if (::getsockopt(accepted_fd, SOL_SOCKET, SO_NETNS_COOKIE, &key.netns_cookie, &len) != 0) {
    return ErrnoStatus(errno, "SO_NETNS_COOKIE of the accepted socket (needs Linux 5.14+)");
  }
  ToMapped(peer.ip, key.addr);
  key.port = htons(peer.port);
  auto not_enrolled = [&](const absl::Status& st) {
    return absl::NotFoundError(
        absl::StrCat("no original destination recorded for the connection from ", peer.ToString(),
                     ": ", st.message(), " (not enrolled by the agent?)"));
  };
  weft_orig_dst value{};
  bool missing = false;
  if (cache) {
    absl::Status st = cache->Lookup(by_peer_fd, "weft_orig_dst_by_peer", key.netns_cookie, &key,
                                    &value, &missing);
    if (absl::IsNotFound(st)) return not_enrolled(st);
    if (!st.ok()) return st;
  } else {
    auto pod = PodMap(by_peer_fd, "weft_orig_dst_by_peer", key.netns_cookie);
    if (absl::IsNotFound(pod.status())) return not_enrolled(pod.status());
    if (!pod.ok()) return pod.status();
    if (bpf_map_lookup_elem(pod->get(), &key, &value) != 0) {
      if (errno != ENOENT) return ErrnoStatus(errno, "reading weft_orig_dst_by_peer");
      missing = true;
    }
  }
  if (missing) {
    return absl::NotFoundError(
        absl::StrCat("no original destination recorded for the connection from ", peer.ToString(),
                     ": it was not redirected by eBPF, or the sockops program is not attached"));
  }
  return FromRecord(value);
}

absl::StatusOr<ReasonCounts> ReadCounters(int map_fd, std::string_view name) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return ErrnoStatus(ncpu, "counting possible CPUs");
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpu));
  ReasonCounts out;
  for (uint32_t idx = 0; idx < WEFT_REASON_SLOTS; ++idx) {
    if (bpf_map_lookup_elem(map_fd, &idx, per_cpu.data()) != 0) {
      return ErrnoStatus(errno, absl::StrCat("reading ", Av(name)));
    }
    uint64_t sum = 0;
    for (uint64_t v : per_cpu) sum += v;
    if (sum != 0) out[static_cast<int>(idx) - WEFT_REASON_OFFSET] = sum;
  }
  return out;
}

namespace {
// `fd`'s own tuple as the programs key it (shared/capture.h, weft_sock_tuple).
absl::StatusOr<weft_sock_tuple> OwnTuple(int fd) {
  weft_sock_tuple key{};
  socklen_t len = sizeof(key.netns_cookie);
  if (::getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &key.netns_cookie, &len) != 0)
    return ErrnoStatus(errno, "SO_NETNS_COOKIE (needs Linux 5.14+)");
  WEFT_ASSIGN_OR_RETURN(SockAddr local, LocalAddress(fd));
  WEFT_ASSIGN_OR_RETURN(SockAddr peer, PeerAddress(fd));
  ToMapped(local.ip, key.local);
  ToMapped(peer.ip, key.remote);
  key.local_port = htons(local.port);
  key.remote_port = htons(peer.port);
  return key;
}

weft_sock_tuple Reversed(const weft_sock_tuple& k) {
  weft_sock_tuple r = k;
  std::memcpy(r.local, k.remote, sizeof(r.local));
  std::memcpy(r.remote, k.local, sizeof(r.remote));
  r.local_port = k.remote_port;
  r.remote_port = k.local_port;
  return r;
}
}  // namespace

absl::Status JoinLocalLeg(int local_legs_fd, int fd) {
  WEFT_ASSIGN_OR_RETURN(weft_sock_tuple own, OwnTuple(fd));
  weft_sock_tuple app = Reversed(own);
  uint64_t cookie = 0;
  if (bpf_map_lookup_elem(local_legs_fd, &app, &cookie) != 0) {
    if (errno == ENOENT) return absl::NotFoundError("the app's end is not in weft_local_legs");
    return ErrnoStatus(errno, "looking up the app's end in weft_local_legs");
  }
  uint64_t value = static_cast<uint64_t>(fd);
  if (bpf_map_update_elem(local_legs_fd, &own, &value, BPF_NOEXIST) != 0)
    return ErrnoStatus(errno, "adding ztunnel's end to weft_local_legs");
  return absl::OkStatus();
}

absl::Status ReleaseLocalLeg(int local_legs_fd, int fd) {
  WEFT_ASSIGN_OR_RETURN(weft_sock_tuple own, OwnTuple(fd));
  weft_sock_tuple app = Reversed(own);
  return DeleteFromMap(local_legs_fd, "weft_local_legs", &app);
}

absl::StatusOr<weft_sock_tuple> ExpectInboundLeg(int expect_fd, int fd, const SockAddr& app) {
  sockaddr_storage ss{};
  socklen_t len = SockAddr{app.ip, 0}.ToSockaddr(&ss);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0)
    return ErrnoStatus(errno, absl::StrCat("binding ztunnel's socket to ", app.ip.ToString()));
  weft_sock_tuple own{};
  socklen_t clen = sizeof(own.netns_cookie);
  if (::getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &own.netns_cookie, &clen) != 0)
    return ErrnoStatus(errno, "SO_NETNS_COOKIE (needs Linux 5.14+)");
  WEFT_ASSIGN_OR_RETURN(SockAddr local, LocalAddress(fd));
  ToMapped(local.ip, own.local);
  ToMapped(app.ip, own.remote);
  own.local_port = htons(local.port);
  own.remote_port = htons(app.port);
  weft_sock_tuple app_end = Reversed(own);
  uint32_t one = 1;
  if (bpf_map_update_elem(expect_fd, &app_end, &one, BPF_ANY) != 0)
    return ErrnoStatus(errno, "announcing the app's end in weft_local_legs_expect");
  return own;
}

absl::Status JoinInboundLeg(int local_legs_fd, int fd, const weft_sock_tuple& own) {
  uint64_t value = static_cast<uint64_t>(fd);
  if (bpf_map_update_elem(local_legs_fd, &own, &value, BPF_NOEXIST) != 0)
    return ErrnoStatus(errno, "adding ztunnel's end to weft_local_legs");
  return absl::OkStatus();
}

absl::Status ForgetInboundLeg(int expect_fd, const weft_sock_tuple& own) {
  weft_sock_tuple app_end = Reversed(own);
  return DeleteFromMap(expect_fd, "weft_local_legs_expect", &app_end);
}

}  // namespace weft::bpf::internal
