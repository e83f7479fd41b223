// The same-node relay (bpf/relay.bpf.c, docs/fastpath.md): an sk_skb stream verdict that sends
// the bytes arriving on one of ztunnel's sockets out of its peer socket inside the kernel, so
// ztunnel is not woken per message. One SameNodeRelay per ztunnel worker thread; its program and
// maps are not pinned: they live exactly as long as the ztunnel process (fail closed: ztunnel
// gone, the sockets and every redirect go with it).
//
// Thread-safety: one owner thread (a worker's loop); the map operations are single syscalls.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct ring_buffer;
struct weft_relay;

namespace weft::bpf {

class SameNodeRelay {
 public:
  // Loads the program and its maps (needs CAP_BPF + CAP_NET_ADMIN, BTF and sk_skb programs).
  static absl::StatusOr<std::unique_ptr<SameNodeRelay>> Load();
  ~SameNodeRelay();
  SameNodeRelay(const SameNodeRelay&) = delete;
  SameNodeRelay& operator=(const SameNodeRelay&) = delete;

  struct Pair {
    uint64_t cookie[2] = {0, 0};  // socket cookies of the two sockets, in Join's order
    uint64_t base[2] = {0, 0};    // BytesWritten of each at the join (1 for a connecting side)
  };
  // Joins two connected TCP sockets: from now on what arrives on one is sent out of the other
  // by the kernel, in order, including what already waits in their receive queues. `cap`: when
  // a socket's peer has more than this many redirected bytes not yet acknowledged by its
  // application's stack (a slow reader), the ring buffer gets the socket's cookie (once until
  // Unpause). Neither socket may have been written to by user space.
  absl::StatusOr<Pair> Join(int a, int b, uint64_t cap);
  // Takes both sockets out of the maps: no byte is moved any more (call before reset/close).
  void Leave(const Pair& p);
  // Pausing never takes a socket out of weft_relay_srcs: a verdict that runs while the socket
  // leaves it finds no program and drops its skb (docs/fastpath.md, "Why a pause never leaves
  // the map"). The program reads weft_relay_ctl instead.
  //
  // Pause: bytes arriving on `cookie`'s socket now stay on it (SK_PASS into its own queue, read
  // by recv), in order behind every byte redirected before; TCP's window pushes back on the
  // sender. `forwarded`: bytes of it user space has forwarded so far (kept as is).
  absl::Status Pause(uint64_t cookie, uint64_t forwarded);
  // Unpause: the program redirects again as soon as user space has forwarded (read, and
  // written to the peer) every byte it passed: until then it keeps passing, so user space must
  // copy them (recv, send, SetForwarded) until Stats().passed == forwarded after an empty recv.
  // Re-arms the cap event. Call only once the peer has taken every redirected byte.
  absl::Status Unpause(uint64_t cookie, uint64_t forwarded);
  // User space has forwarded `forwarded` of the passed bytes in all (written to the peer).
  absl::Status SetForwarded(uint64_t cookie, uint64_t forwarded);

  struct SideStats {
    uint64_t redirected = 0;  // payload bytes sent out of the peer (or queued for it)
    uint64_t passed = 0;      // payload bytes left on the socket (paused, or catching up)
    bool over = false;        // the cap event was posted and not re-armed since (Unpause)
    uint32_t no_peer = 0;     // redirects that found no peer (the pair was being torn down)
    // skbs whose head repeated bytes already taken, and the bytes cut off them (a kernel
    // behaviour: docs/fastpath.md, "An skb that repeats bytes").
    uint64_t overlaps = 0, overlap_len = 0;
    // An skb repeated bytes the program could not cut off: it was dropped and nothing more
    // moves; the owner must reset the flow (its ring buffer event comes like a cap event).
    bool broken = false;
  };
  absl::StatusOr<SideStats> Stats(uint64_t cookie) const;

  // Ring buffer of sockets that passed their cap or broke (SideStats::broken): poll this fd
  // (readable), then DrainEvents.
  int event_fd() const;
  void DrainEvents(const std::function<void(uint64_t cookie)>& fn);

 private:
  SameNodeRelay() = default;
  absl::Status Enter(int fd, uint64_t cookie);  // into weft_relay_srcs, queued bytes first
  absl::Status WriteCtl(uint64_t cookie, int paused, int bump_gen, uint64_t forwarded);
  weft_relay* skel_ = nullptr;
  ring_buffer* rb_ = nullptr;
  std::function<void(uint64_t)>* sink_ = nullptr;  // DrainEvents' callback while it runs
};

// Bytes user space or the relay have put into `fd`'s send path: acknowledged by the peer plus
// still queued (TCP_INFO tcpi_bytes_acked, then SIOCOUTQ: read in that order the sum never
// overstates). Only for a socket whose SYN is acknowledged.
absl::StatusOr<uint64_t> BytesWritten(int fd);
// Bytes received on `fd` and not yet taken by anyone (SIOCINQ; takes the socket lock, so a
// segment the kernel is processing on another CPU has been dealt with when it returns).
absl::StatusOr<uint64_t> BytesUnread(int fd);
// The relay of `from`'s bytes into `to` is complete: nothing is left unread on `from`, every
// byte the program passed has been forwarded by user space (`forwarded`), and `to` has taken
// every redirected and forwarded byte (Stats(from), read after the check of `from`; `to_base`:
// Pair::base of `to`). Only then may user space pass `from`'s EOF on with shutdown(to, SHUT_WR).
absl::StatusOr<bool> Drained(int from, int to, const SameNodeRelay& relay, uint64_t from_cookie,
                             uint64_t to_base, uint64_t forwarded);

// Does this kernel run the relay correctly? Loads it and, on loopback TCP pairs in the caller's
// netns: bytes written before the join arrive, both directions keep order, and a FIN passed on
// after Drained follows every byte. OK, or why not (the feature report's detail).
absl::Status SelfTestRelay();

}  // namespace weft::bpf
