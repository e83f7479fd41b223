// The same-node relay's owner: see relay.h and docs/fastpath.md.
#include "bpf/relay.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bpf/kernel_btf.h"
#include "bpf/map_ops.h"
#include "common/log.h"
#include "common/loopback.h"
#include "common/unique_fd.h"
#include "relay.skel.h"
#include "shared/relay.h"

namespace weft::bpf {

using internal::DeleteFromMap;
using internal::ErrnoStatus;
using internal::UpdateMap;

namespace {

absl::StatusOr<uint64_t> Cookie(int fd) {
  uint64_t c = 0;
  socklen_t len = sizeof c;
  if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &len) != 0) return ErrnoStatus(errno, "SO_COOKIE");
  return c;
}

// Linux 6.0 on hands the verdict whole skbs (tcp_read_skb), repeated bytes included; older
// kernels read through tcp_read_sock, which skips them (docs/fastpath.md).
bool KernelVerdictReadsWholeSkbs() {
  utsname u{};
  int major = 0, minor = 0;
  if (uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return true;
  return major >= 6;
}

int OnEvent(void* ctx, void* data, size_t size) {
  auto* fn = static_cast<std::function<void(uint64_t)>*>(ctx);
  if (size >= sizeof(weft_relay_event) && fn && *fn)
    (*fn)(static_cast<const weft_relay_event*>(data)->cookie);
  return 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SameNodeRelay>> SameNodeRelay::Load() {
  std::unique_ptr<SameNodeRelay> r(new SameNodeRelay());
  // The one kernel field the program reads (CO-RE), cut from the kernel's BTF so libbpf does
  // not read and index all of it (bpf/kernel_btf.h); failing that, libbpf reads it all.
  static const std::vector<KernelField> kFields = {{"tcp_sock", "bytes_acked"}};
  auto btf = KernelBtfSubsetPath(kFields);
  if (!btf.ok()) {
    static std::once_flag warned;
    std::call_once(warned, [&] {
      LOG_WARN("relay", "kernel BTF subset unavailable; libbpf reads the whole kernel BTF",
               {{"error", btf.status().ToString()}});
    });
  }
  LIBBPF_OPTS(bpf_object_open_opts, oo, .btf_custom_path = btf.ok() ? btf->c_str() : nullptr);
  r->skel_ = weft_relay__open_opts(&oo);
  if (!r->skel_) return ErrnoStatus(errno, "open the relay object");
  r->skel_->rodata->weft_cut_repeats = KernelVerdictReadsWholeSkbs() ? 1 : 0;
  if (int err = weft_relay__load(r->skel_); err != 0)
    return ErrnoStatus(err, "load the relay program (sk_skb stream verdict, BTF)");
  int prog = bpf_program__fd(r->skel_->progs.weft_relay_verdict);
  int srcs = bpf_map__fd(r->skel_->maps.weft_relay_srcs);
  if (bpf_prog_attach(prog, srcs, BPF_SK_SKB_STREAM_VERDICT, 0) != 0)
    return ErrnoStatus(errno, "attach the stream verdict to weft_relay_srcs");
  r->sink_ = new std::function<void(uint64_t)>();
  r->rb_ =
      ring_buffer__new(bpf_map__fd(r->skel_->maps.weft_relay_evts), OnEvent, r->sink_, nullptr);
  if (!r->rb_) return ErrnoStatus(errno, "ring buffer weft_relay_evts");
  return r;
}

SameNodeRelay::~SameNodeRelay() {
  if (rb_) ring_buffer__free(rb_);
  if (skel_) weft_relay__destroy(skel_);  // the maps go, and every socket leaves them
  delete sink_;
}

absl::StatusOr<SameNodeRelay::Pair> SameNodeRelay::Join(int a, int b, uint64_t cap) {
  Pair p;
  int fds[2] = {a, b};
  for (int i = 0; i < 2; i++) {
    auto c = Cookie(fds[i]);
    if (!c.ok()) return c.status();
    p.cookie[i] = *c;
    auto w = BytesWritten(fds[i]);  // the connecting side counts its SYN: 1
    if (!w.ok()) return w.status();
    p.base[i] = *w;
  }
  int side = bpf_map__fd(skel_->maps.weft_relay_side);
  int tgts = bpf_map__fd(skel_->maps.weft_relay_tgts);
  absl::Status st;
  // Sides first (the program needs them), then the targets, then the sources: the first byte
  // redirected finds its peer.
  for (int i = 0; i < 2 && st.ok(); i++) {
    weft_relay_side v{};
    v.peer = p.cookie[1 - i];
    v.cap = cap;
    st = UpdateMap(side, "weft_relay_side", &p.cookie[i], &v);
  }
  for (int i = 0; i < 2 && st.ok(); i++) {
    uint64_t fd = static_cast<uint64_t>(fds[i]);
    st = UpdateMap(tgts, "weft_relay_tgts", &p.cookie[i], &fd);
  }
  for (int i = 0; i < 2 && st.ok(); i++) st = Enter(fds[i], p.cookie[i]);
  if (!st.ok()) {
    Leave(p);
    return st;
  }
  return p;
}

void SameNodeRelay::Leave(const Pair& p) {
  for (uint64_t c : p.cookie) {
    if (c == 0) continue;
    (void)DeleteFromMap(bpf_map__fd(skel_->maps.weft_relay_srcs), "weft_relay_srcs", &c);
    (void)DeleteFromMap(bpf_map__fd(skel_->maps.weft_relay_tgts), "weft_relay_tgts", &c);
    (void)DeleteFromMap(bpf_map__fd(skel_->maps.weft_relay_side), "weft_relay_side", &c);
    // (only a socket that was paused has one)
    (void)DeleteFromMap(bpf_map__fd(skel_->maps.weft_relay_ctl), "weft_relay_ctl", &c);
  }
}

absl::Status SameNodeRelay::WriteCtl(uint64_t cookie, int paused, int bump_gen,
                                     uint64_t forwarded) {
  int ctl = bpf_map__fd(skel_->maps.weft_relay_ctl);
  weft_relay_ctl v{};  // (ztunnel is its only writer: read, change, write back)
  if (bpf_map_lookup_elem(ctl, &cookie, &v) != 0 && errno != ENOENT)
    return ErrnoStatus(errno, "weft_relay_ctl lookup");
  if (paused >= 0) v.paused = static_cast<__u32>(paused);
  v.gen += static_cast<__u32>(bump_gen);
  v.forwarded = forwarded;
  return UpdateMap(ctl, "weft_relay_ctl", &cookie, &v);
}

absl::Status SameNodeRelay::Pause(uint64_t cookie, uint64_t forwarded) {
  return WriteCtl(cookie, 1, 0, forwarded);
}

absl::Status SameNodeRelay::Unpause(uint64_t cookie, uint64_t forwarded) {
  return WriteCtl(cookie, 0, 1, forwarded);
}

absl::Status SameNodeRelay::SetForwarded(uint64_t cookie, uint64_t forwarded) {
  return WriteCtl(cookie, -1, 0, forwarded);
}

absl::Status SameNodeRelay::Enter(int fd, uint64_t cookie) {
  uint64_t val = static_cast<uint64_t>(fd);
  if (auto st =
          UpdateMap(bpf_map__fd(skel_->maps.weft_relay_srcs), "weft_relay_srcs", &cookie, &val);
      !st.ok())
    return st;
  // Bytes that arrived before the socket entered the map wait in its receive queue, and the
  // verdict runs only on the next arrival. A receive on a sockmap socket first hands its queue
  // to the verdict (tcp_bpf_recvmsg_parser); MSG_PEEK so it never takes a byte itself.
  char b;
  (void)recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return absl::OkStatus();
}

absl::StatusOr<SameNodeRelay::SideStats> SameNodeRelay::Stats(uint64_t cookie) const {
  weft_relay_side v{};
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.weft_relay_side), &cookie, &v) != 0)
    return ErrnoStatus(errno, "weft_relay_side lookup");
  SideStats out{v.redirected, v.passed, false, v.no_peer, v.overlaps, v.overlap_len, v.broken != 0};
  weft_relay_ctl c{};
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.weft_relay_ctl), &cookie, &c) != 0) c.gen = 0;
  out.over = v.over == c.gen + 1;
  return out;
}

int SameNodeRelay::event_fd() const {
  return ring_buffer__epoll_fd(rb_);
}

void SameNodeRelay::DrainEvents(const std::function<void(uint64_t)>& fn) {
  *sink_ = fn;
  ring_buffer__consume(rb_);
  *sink_ = nullptr;
}

absl::StatusOr<uint64_t> BytesWritten(int fd) {
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return ErrnoStatus(errno, "TCP_INFO");
  int outq = 0;
  if (ioctl(fd, SIOCOUTQ, &outq) != 0) return ErrnoStatus(errno, "SIOCOUTQ");
  return ti.tcpi_bytes_acked + static_cast<uint64_t>(outq);
}

absl::StatusOr<uint64_t> BytesUnread(int fd) {
  int inq = 0;
  if (ioctl(fd, SIOCINQ, &inq) != 0) return ErrnoStatus(errno, "SIOCINQ");
  return static_cast<uint64_t>(inq);
}

absl::StatusOr<bool> Drained(int from, int to, const SameNodeRelay& relay, uint64_t from_cookie,
                             uint64_t to_base, uint64_t forwarded) {
  auto unread = BytesUnread(from);
  if (!unread.ok()) return unread.status();
  if (*unread > 0) return false;
  auto s = relay.Stats(from_cookie);
  if (!s.ok()) return s.status();
  if (s->passed != forwarded) return false;
  auto written = BytesWritten(to);
  if (!written.ok()) return written.status();
  return *written == to_base + s->redirected + forwarded;
}

// ---- Self-test -------------------------------------------------------------------------------

namespace {

// LoopbackTcpPair with the self-test's 2 s receive timeout on both ends.
absl::Status LoopbackPair(UniqueFd out[2]) {
  if (auto st = LoopbackTcpPair(out); !st.ok()) return st;
  timeval tv{2, 0};
  for (int i = 0; i < 2; i++) setsockopt(out[i].get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return absl::OkStatus();
}

// Reads exactly `n` bytes (or to EOF when `to_eof`) with the socket's 2 s receive timeout.
absl::StatusOr<std::string> ReadN(int fd, size_t n, bool to_eof) {
  std::string got;
  char buf[16384];
  while (to_eof || got.size() < n) {
    ssize_t k = recv(fd, buf, to_eof ? sizeof buf : std::min(sizeof buf, n - got.size()), 0);
    if (k == 0) break;
    if (k < 0) return ErrnoStatus(errno, absl::StrCat("read after ", got.size(), " bytes"));
    got.append(buf, static_cast<size_t>(k));
  }
  return got;
}

std::string Pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i++) s[i] = static_cast<char>((i * 131 + seed * 7 + i / 4096) & 0xff);
  return s;
}

}  // namespace

absl::Status SelfTestRelay() {
  auto relay = SameNodeRelay::Load();
  if (!relay.ok()) return relay.status();
  // client[0] -> client[1] (ztunnel's accepted socket) ... app[0] (ztunnel's connected
  // socket) -> app[1] (the application).
  UniqueFd client[2], app[2];
  if (auto st = LoopbackPair(client); !st.ok()) return st;
  if (auto st = LoopbackPair(app); !st.ok()) return st;
  const std::string early = "sent before the join";
  if (send(client[0].get(), early.data(), early.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(early.size()))
    return ErrnoStatus(errno, "send");
  // (loopback delivers within send(): the bytes are in client[1]'s receive queue now)
  auto pair = (*relay)->Join(client[1].get(), app[0].get(), 64u << 20);
  if (!pair.ok()) return pair.status();
  auto got = ReadN(app[1].get(), early.size(), false);
  if (!got.ok() || *got != early)
    return absl::FailedPreconditionError(
        "bytes queued before the join were not relayed (kernel without the receive-queue "
        "hand-over of tcp_bpf_recvmsg_parser)");
  // Both directions at once, then a FIN passed on only once Drained says so.
  const std::string up = Pattern(1 << 20, 1), down = Pattern(256 << 10, 2);
  std::thread writer([&] {
    for (size_t off = 0; off < up.size();) {
      ssize_t k = send(client[0].get(), up.data() + off, up.size() - off, MSG_NOSIGNAL);
      if (k <= 0) break;
      off += static_cast<size_t>(k);
    }
    shutdown(client[0].get(), SHUT_WR);
  });
  bool down_ok = false;
  std::thread down_writer([&] {
    down_ok = send(app[1].get(), down.data(), down.size(), MSG_NOSIGNAL) ==
              static_cast<ssize_t>(down.size());
  });
  std::thread passer([&] {  // ztunnel's part: wait for EOF, then for the drain, then SHUT_WR
    pollfd p{client[1].get(), POLLRDHUP, 0};
    if (poll(&p, 1, 3000) != 1) return;
    for (int i = 0; i < 3000; i++) {
      auto d = Drained(client[1].get(), app[0].get(), **relay, pair->cookie[0], pair->base[1], 0);
      if (d.ok() && *d) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    shutdown(app[0].get(), SHUT_WR);
  });
  auto up_got = ReadN(app[1].get(), 0, true);
  auto down_got = ReadN(client[0].get(), down.size(), false);
  writer.join();
  down_writer.join();
  passer.join();
  // The program read each skb's TCP sequence number at WEFT_SKB_CB_OFFSET (shared/relay.h): had
  // that read anything else, its repeat check would have cut or dropped bytes (checked below),
  // or marked a side broken.
  bool broken = false;
  for (uint64_t c : pair->cookie) {
    auto s = (*relay)->Stats(c);
    broken |= !s.ok() || s->broken;
  }
  (*relay)->Leave(*pair);
  if (broken)
    return absl::FailedPreconditionError(
        "the relay program cannot read the TCP sequence numbers of this kernel's skbs");
  if (!up_got.ok()) return up_got.status();
  if (*up_got != up)
    return absl::FailedPreconditionError(absl::StrCat("relayed bytes differ (", up_got->size(),
                                                      " of ", up.size(), " bytes before the FIN)"));
  if (!down_ok || !down_got.ok() || *down_got != down)
    return absl::FailedPreconditionError("the reverse direction lost or reordered bytes");
  return absl::OkStatus();
}

}  // namespace weft::bpf
