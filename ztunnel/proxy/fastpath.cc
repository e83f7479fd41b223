// Same-node fast path: see fastpath.h and docs/fastpath.md.
#include "ztunnel/proxy/fastpath.h"

#include <fcntl.h>
#include <prometheus/counter.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#ifdef WEFT_HAVE_SAME_NODE_RELAY
#include "bpf/relay.h"
#endif
#include "ztunnel/proxy/inbound.h"
#include "ztunnel/proxy/outbound.h"
#include "ztunnel/proxy/worker.h"
#include "ztunnel/rbac/request.h"

namespace weft::ztunnel {

namespace {

constexpr const char* kSameNode = "same_node";
constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
// Pipe-fulls moved per direction per event: one busy connection must not starve the others on
// its worker. The loop is level-triggered, so it comes back for the rest.
constexpr int kMaxRounds = 16;
// Sockmap relay: how often the BPF byte counters reach the metrics of a long connection, and the
// longest wait between two checks of a drain or a paused direction (they start at 1 ms).
constexpr std::chrono::seconds kRelayStatsInterval{5};
constexpr int kRelayPollMaxMs = 64;
// CopyTail's read size (a resumed or copied direction of the sockmap relay).
constexpr size_t kCopyChunk = 256 * 1024;

absl::Status MakePipe(UniqueFd& r, UniqueFd& w, size_t want, size_t* got) {
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
    return ErrnoError(errno, "pipe2 (raise the open-files limit?)");
  r.reset(p[0]);
  w.reset(p[1]);
  // Best effort: above /proc/sys/fs/pipe-max-size (unprivileged) or the per-user pipe page
  // limits this fails and the pipe keeps its default size (16 pages), which still works.
  int sz = fcntl(w.get(), F_SETPIPE_SZ, static_cast<int>(want));
  if (sz < 0) sz = fcntl(w.get(), F_GETPIPE_SZ);
  *got = sz > 0 ? static_cast<size_t>(sz) : 64 * 1024;
  return absl::OkStatus();
}

// splice(2) into a socket whose peer is gone raises SIGPIPE (the kernel's splice-to-socket path
// has no MSG_NOSIGNAL). Worker threads that splice block it, and consume the pending signal
// after a failed splice, so an embedding process that left SIGPIPE at its default action (a
// test binary, say) is not killed.
void BlockSigpipeOnThisThread() {
  thread_local bool blocked = false;
  if (blocked) return;
  blocked = true;
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &s, nullptr);
}

void ConsumeSigpipe() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGPIPE);
  timespec zero{0, 0};
  while (sigtimedwait(&s, nullptr, &zero) > 0) {
  }
}

}  // namespace

// ---- Outbound hook ------------------------------------------------------------------------

namespace {

// One pipe per direction: [0] client->server, [1] server->client.
struct Pipes {
  UniqueFd r[2], w[2];
  size_t size = 0;
};

// False (logged) when the pipes cannot be made: the caller degrades to HBONE, never fails.
bool MakePipes(size_t want, const SockAddr& dst, Pipes& p) {
  for (int i = 0; i < 2; i++) {
    auto st = MakePipe(p.r[i], p.w[i], want, &p.size);
    if (!st.ok()) {
      LOG_WARN("outbound", "same-node fast path unavailable, using HBONE",
               {{"dst", dst.ToString()}, {"error", st.ToString()}});
      return false;
    }
  }
  return true;
}

// The destination-side record: what the destination's HBONE server would have recorded for a
// connection from `from` (the source pod's address) to `target`.
FlowInfo DestinationRecord(const ConfigSnapshot& snap, const Workload& src, const Workload& dst,
                           const SockAddr& from, const SockAddr& target) {
  return DestinationFlowInfo(snap, dst.uid, dst, &src, src.identity(), from, target, kSameNode);
}

// Counts the connection refused on both sides (same flags) and resets the client.
void RefuseBoth(Worker& w, FlowInfo&& dinfo, FlowInfo&& info, UniqueFd& client, const char* flags,
                const std::string& dst_reason, const std::string& src_reason) {
  dinfo.labels.mut().response_flags = flags;
  info.labels.mut().response_flags = flags;
  RefuseFlow(w, std::move(dinfo), UniqueFd(), dst_reason);
  RefuseFlow(w, std::move(info), std::move(client), src_reason);
}

}  // namespace

bool TrySameNode(Worker& w, const ConfigSnapshot& snap, const Workload& src, const Workload& dst,
                 FlowInfo& info, UniqueFd& client) {
  std::shared_ptr<Pod> dpod = w.FindPod(dst.uid);
  if (!dpod) return false;
  // Per-request (L7) authorization needs the bytes in user space: such a destination takes the
  // HBONE path through its own inbound listener, where every request is parsed and authorized.
  // A port a Service declares HTTP only for metrics stays here (no destination-reporter request
  // metrics: this process's HttpOutbound already records the source's; docs/architecture.md).
  if (NeedsHttpAuthorization(snap, dst)) return false;
  Pipes pipes;  // the sockmap relay needs none (unless its join fails: SameNodeFlow makes them)
  if (!w.fast_relay() && !MakePipes(w.opts().fast_path_pipe_size, info.dst, pipes)) return false;
  BlockSigpipeOnThisThread();

  const SockAddr target = info.dst;
  // The source address the HBONE client would have bound: the pod's address in the target's
  // family (what the destination's policy sees as the source IP on the HBONE path).
  const IpAddr src_ip = src.addresses.empty() ? info.src.ip : AddressLike(src, target.ip);
  info.labels.mut().connection_security_policy = kSameNode;
  FlowInfo dinfo = DestinationRecord(snap, src, dst, SockAddr{src_ip, info.src.port}, target);
  if (IsZtunnelPort(*dpod, target.port)) {  // as the HBONE server refuses such a CONNECT
    w.metrics().BadInput("15001", "connect_to_ztunnel_port");
    std::string why = "destination " + target.ToString() + " is one of ztunnel's own ports";
    LOG_WARN("outbound", "connection to one of ztunnel's own ports refused",
             {{"src", info.src.ToString()}, {"dst", target.ToString()}});
    RefuseBoth(w, std::move(dinfo), std::move(info), client, "DENY", why, why);
    return true;
  }

  // The source's identity is known first-hand (its pod is ours), so the destination's policy
  // is evaluated exactly as for an authenticated HBONE peer; PeerAuthentication STRICT is
  // satisfied for the same reason.
  ConnectionInfo ci{src.identity(), src_ip, target};
  AuthzDecision d = AuthorizeAsDestination(w.metrics(), snap, dst, ci, dinfo.src, kSameNode);
  if (!d.allowed) {
    RefuseBoth(w, std::move(dinfo), std::move(info), client, "DENY", d.reason,
               "denied by the destination's policy: " + d.reason);
    return true;
  }
  dinfo.authz = ci;

  // Like the inbound path reaching the application: from inside the destination pod's netns,
  // marked so capture leaves it alone.
  auto up = StartConnect(dpod->netns_fd(), target, w.opts().mark);
  if (!up.ok()) {
    w.metrics().ConnectionFailure("inbound", "connect_failed");
    LOG_WARN("inbound", "cannot connect to the application",
             {{"dst", target.ToString()}, {"error", up.status().ToString()}});
    RefuseBoth(w, std::move(dinfo), std::move(info), client, "UF", up.status().ToString(),
               up.status().ToString());
    return true;
  }
  SameNodeFlow* f = w.NewFlow<SameNodeFlow>(std::move(dinfo), std::move(info), std::move(client),
                                            std::move(*up), pipes.r, pipes.w, pipes.size);
  f->Start();
  return true;
}

// ---- SameNodeFlow -------------------------------------------------------------------------

// The source-side record: counted and logged by Flow, owned by its SameNodeFlow (not by the
// worker's flow table, so Flow::Finish's ReleaseFlow leaves it alone).
class SameNodeFlow::SourceRecord : public Flow {
 public:
  SourceRecord(Worker* w, FlowInfo info) : Flow(w, std::move(info)) {}
  void Begin() { Flow::Begin(); }
  void Finish() { Flow::Finish(); }
  void Abort(const std::string& reason) override {
    if (info_.error.empty()) info_.error = reason;
    Finish();
  }
  void OnEvents(uint32_t) override {}
};

SameNodeFlow::SameNodeFlow(Worker* w, FlowInfo dst_info, FlowInfo src_info, UniqueFd client,
                           UniqueFd server, UniqueFd pipe_r[2], UniqueFd pipe_w[2],
                           size_t pipe_size)
    : Flow(w, std::move(dst_info)),
      src_(std::make_unique<SourceRecord>(w, std::move(src_info))),
      pipe_size_(pipe_size) {
  wakeups_ = &w->metrics().same_node_relay_event(w->fast_relay() ? "sockmap" : "splice", "wakeup");
  fd_[0] = std::move(client);
  fd_[1] = std::move(server);
  for (int i = 0; i < 2; i++) {
    pipe_r_[i] = std::move(pipe_r[i]);
    pipe_w_[i] = std::move(pipe_w[i]);
    side_[i].f = this;
    side_[i].idx = i;
  }
}

SameNodeFlow::~SameNodeFlow() = default;

FlowInfo& SameNodeFlow::source_info() {
  return src_->info();
}

void SameNodeFlow::OnEvents(uint32_t) {}

void SameNodeFlow::Start() {
  // Counted once the application answers (or in FinishBoth on failure), so a failed connect is
  // counted with its response flags, as a refused connection is.
  w_->inbound().Track(this);
  // Client side: nothing to read until the application is connected.
  for (int i = 0; i < 2; i++) {
    interest_[i] = i == 1 ? static_cast<uint32_t>(EPOLLOUT) : 0u;
    auto st = w_->loop().Add(fd_[i].get(), interest_[i], &side_[i]);
    if (!st.ok()) {
      Abort("cannot watch socket: " + st.ToString());
      return;
    }
    registered_[i] = true;
  }
  connect_timer_ = w_->loop().AddTimer(w_->opts().connect_timeout, [this] {
    connect_timer_ = 0;
    if (connecting_) {
      w_->metrics().ConnectionFailure("inbound", "connect_timeout");
      info_.labels.mut().response_flags = "UF";
      Abort("connect to the application " + info_.dst.ToString() + " timed out");
    }
  });
}

void SameNodeFlow::Abort(const std::string& reason) {
  if (finished_) return;
  if (info_.error.empty()) info_.error = reason;
  LeaveRelay();  // out of the sockhash first: no byte moves once the reset is decided
  for (int i = 0; i < 2; i++) {
    if (!fd_[i]) continue;
    if (registered_[i]) w_->loop().Remove(fd_[i].get());
    registered_[i] = false;
    SetResetOnClose(fd_[i].get());  // both applications see the failure as a reset
    fd_[i].reset();
  }
  FinishBoth();
}

void SameNodeFlow::FinishBoth() {
  if (connect_timer_) w_->loop().CancelTimer(connect_timer_);
  connect_timer_ = 0;
  for (int i = 0; i < 2; i++) {  // give the pipe pages back now, not at deletion
    pipe_r_[i].reset();
    pipe_w_[i].reset();
  }
  // One connection, two views: a failure or denial is the source's outcome too.
  FlowInfo& s = src_->info();
  if (s.labels->response_flags == "-") s.labels.mut().response_flags = info_.labels->response_flags;
  if (s.error.empty()) s.error = info_.error;
  if (!begun_) {
    Begin();
    src_->Begin();
  }
  src_->Finish();
  Finish();
}

void SameNodeFlow::OnSide(int i, uint32_t events) {
  if (finished_) return;
  if (connecting_) {
    if (i == 0) {
      // Only errors are reported for the client while connecting (interest 0).
      if (events & (EPOLLERR | EPOLLHUP)) {
        int err = ConnectResult(fd_[0].get());
        Abort(std::string("client closed before the application answered: ") +
              (err ? std::strerror(err) : "hang-up"));
      }
      return;
    }
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = ConnectResult(fd_[1].get());
    if (err != 0) {
      w_->metrics().ConnectionFailure("inbound", "connect_failed");
      info_.labels.mut().response_flags = "UF";
      Abort("connect to the application " + info_.dst.ToString() +
            " failed: " + std::strerror(err));
      return;
    }
    OnConnected();
    return;
  }
  Wakeup();
  if (relay_) {
    OnRelaySide(i, events);
    return;
  }
  if (events & EPOLLERR) {
    int err = ConnectResult(fd_[i].get());
    if (err != 0) {
      Abort(absl::StrCat(i == 0 ? "client" : "application",
                         " connection failed: ", std::strerror(err)));
      return;
    }
  }
  if (events & EPOLLHUP) hup_[i] = true;
  // Readable: move i -> other. Writable: drain the pipe into i, then read more for it.
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !Pump(i)) return;
  if ((events & EPOLLOUT) && !Pump(1 - i)) return;
  UpdateInterest(0);
  UpdateInterest(1);
  MaybeDone();
}

void SameNodeFlow::OnConnected() {
  connecting_ = false;
  if (connect_timer_) w_->loop().CancelTimer(connect_timer_);
  connect_timer_ = 0;
  Begin();
  src_->Begin();
  // Bytes are forwarded as they arrive; the applications' own Nagle decisions already happened.
  SetNoDelay(fd_[0].get());
  SetNoDelay(fd_[1].get());
  if (w_->fast_relay() && JoinRelay()) return;
  if (!pipe_r_[0] && !MakePipesNow()) return;
  UpdateInterest(0);
  UpdateInterest(1);
}

// The sockmap join failed (logged): this connection takes splice after all.
bool SameNodeFlow::MakePipesNow() {
  wakeups_ = &w_->metrics().same_node_relay_event("splice", "wakeup");
  for (int i = 0; i < 2; i++) {
    auto st = MakePipe(pipe_r_[i], pipe_w_[i], w_->opts().fast_path_pipe_size, &pipe_size_);
    if (!st.ok()) {
      Abort("same-node relay: " + st.ToString());
      return false;
    }
  }
  return true;
}

void SameNodeFlow::Wakeup() {
  wakeups_->Increment();
}

bool SameNodeFlow::Pump(int i) {
  const int o = 1 - i;
  bool drained = false;  // the last read took less than asked: the socket is likely empty
  for (int round = 0; round < kMaxRounds && !drained; round++) {
    // A direction reads only into an empty pipe: then EAGAIN from the socket means "no data",
    // never "pipe full" (pipe capacity is counted in page slots, not bytes), and back-pressure
    // is the socket's own receive window.
    if (in_pipe_[i] == 0) {
      if (eof_[i]) break;
      ssize_t n =
          splice(fd_[i].get(), nullptr, pipe_w_[i].get(), nullptr, pipe_size_, kSpliceFlags);
      if (n == 0) {
        eof_[i] = true;
        break;
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        Abort(absl::StrCat("read from ", i == 0 ? "client" : "application",
                           " failed: ", std::strerror(errno)));
        return false;
      }
      in_pipe_[i] += static_cast<size_t>(n);
      // Skip the read that would only say EAGAIN (one syscall per message on request/response
      // traffic); level-triggered epoll reports anything that arrives meanwhile.
      drained = static_cast<size_t>(n) < pipe_size_;
      if (i == 0) {
        AddSent(static_cast<uint64_t>(n));
        src_->AddSent(static_cast<uint64_t>(n));
      } else {
        AddReceived(static_cast<uint64_t>(n));
        src_->AddReceived(static_cast<uint64_t>(n));
      }
    }
    ssize_t m = splice(pipe_r_[i].get(), nullptr, fd_[o].get(), nullptr, in_pipe_[i], kSpliceFlags);
    if (m > 0) {
      in_pipe_[i] -= static_cast<size_t>(m);
      continue;
    }
    if (m < 0 && errno == EINTR) continue;
    if (m < 0 && errno == EAGAIN) break;
    int err = m < 0 ? errno : EIO;
    ConsumeSigpipe();
    Abort(absl::StrCat("write to ", o == 0 ? "client" : "application",
                       " failed: ", std::strerror(err)));
    return false;
  }
  if (eof_[i] && in_pipe_[i] == 0 && !shut_[o]) {
    shutdown(fd_[o].get(), SHUT_WR);  // half-close: the other direction keeps flowing
    shut_[o] = true;
  }
  return true;
}

void SameNodeFlow::UpdateInterest(int i) {
  if (!fd_[i]) return;
  uint32_t want = 0;
  if (!eof_[i] && in_pipe_[i] == 0) want |= EPOLLIN;
  if (in_pipe_[1 - i] > 0) want |= EPOLLOUT;
  if (want == 0 && hup_[i]) {
    // EPOLLHUP is reported whatever the mask says: unwatch the socket until it has work again
    // (e.g. its pipe is blocked on a slow reader), or the loop would spin on it.
    if (registered_[i]) {
      w_->loop().Remove(fd_[i].get());
      registered_[i] = false;
      interest_[i] = 0;
    }
    return;
  }
  if (!registered_[i]) {
    auto st = w_->loop().Add(fd_[i].get(), want, &side_[i]);
    if (!st.ok()) {
      Abort("cannot watch socket: " + st.ToString());
      return;
    }
    registered_[i] = true;
    interest_[i] = want;
    return;
  }
  if (want != interest_[i]) {
    interest_[i] = want;
    w_->loop().Modify(fd_[i].get(), want, &side_[i]);
  }
}

void SameNodeFlow::MaybeDone() {
  if (finished_) return;
  if (!(eof_[0] && eof_[1] && in_pipe_[0] == 0 && in_pipe_[1] == 0)) return;
  if (relay_) {
    if (!(shut_[0] && shut_[1])) return;  // a FIN still waits for its drain
    LeaveRelay();
    for (int i = 0; i < 2; i++) {
      linger l{0, 0};  // a clean end: the write queues go out after close
      setsockopt(fd_[i].get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
  }
  for (int i = 0; i < 2; i++) {
    if (registered_[i]) w_->loop().Remove(fd_[i].get());
    registered_[i] = false;
    fd_[i].reset();
  }
  FinishBoth();
}

// ---- Sockmap relay (docs/fastpath.md) --------------------------------------------------------

#ifdef WEFT_HAVE_SAME_NODE_RELAY

absl::StatusOr<bool> UseSockmapRelay(const ProxyOptions& opts) {
  using Mode = ProxyOptions::SameNodeRelay;
  if (!opts.same_node_fast_path) return false;
  if (opts.same_node_relay == Mode::kSplice) {
    LOG_INFO("proxy", "same-node fast path: splice relay", {{"relay", "splice"}});
    return false;
  }
  absl::Status st = bpf::SelfTestRelay();
  if (st.ok()) {
    LOG_INFO("proxy", "same-node fast path: sockmap relay", {{"relay", "sockmap"}});
    return true;
  }
  if (opts.same_node_relay == Mode::kSockmap)
    return WithContext(st, "--same-node-relay=sockmap: this kernel cannot run the relay");
  LOG_INFO("proxy", "same-node fast path: splice relay (the sockmap relay is unavailable)",
           {{"relay", "splice"}, {"reason", st.ToString()}});
  return false;
}

absl::StatusOr<std::unique_ptr<FastPathRelay>> FastPathRelay::Create(Worker& w) {
  std::unique_ptr<FastPathRelay> r(new FastPathRelay(w));
  WEFT_ASSIGN_OR_RETURN(std::unique_ptr<bpf::SameNodeRelay> relay, bpf::SameNodeRelay::Load());
  r->relay_ = std::move(relay);
  WEFT_RETURN_IF_ERROR(w.loop().Add(r->relay_->event_fd(), EPOLLIN, r.get()));
  return r;
}

FastPathRelay::FastPathRelay(Worker& w) : w_(w) {}
FastPathRelay::~FastPathRelay() = default;

void FastPathRelay::OnEvents(uint32_t) {
  relay_->DrainEvents([this](uint64_t cookie) {
    auto it = flows_.find(cookie);
    if (it != flows_.end()) it->second->OnOverCap(cookie);  // else: the flow has ended
  });
}

bool SameNodeFlow::JoinRelay() {
  bpf::SameNodeRelay& relay = w_->fast_relay()->relay();
  // Both applications see a reset, never a truncated stream ending in a clean FIN, if ztunnel
  // dies with bytes in flight: its sockets close with RST. MaybeDone clears it at a clean end.
  SetResetOnClose(fd_[0].get());
  SetResetOnClose(fd_[1].get());
  auto pair = relay.Join(fd_[0].get(), fd_[1].get(), w_->opts().fast_path_relay_cap);
  if (!pair.ok()) {
    // Usually the client has already gone (only established sockets may join), else the maps
    // are full (WEFT_RELAY_MAX_SOCKS per worker).
    w_->metrics().same_node_relay_event("sockmap", "join_failed").Increment();
    LOG_DEBUG("outbound", "same-node sockmap join failed, using splice for this connection",
              {{"dst", info_.dst.ToString()}, {"error", pair.status().ToString()}});
    for (int i = 0; i < 2; i++) {
      linger l{0, 0};
      setsockopt(fd_[i].get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    return false;
  }
  relay_ = w_->fast_relay();
  for (int i = 0; i < 2; i++) {
    cookie_[i] = pair->cookie[i];
    base_[i] = pair->base[i];
    relay_->Watch(cookie_[i], this);
    UpdateRelayInterest(i);
  }
  ScheduleStats();
  return true;
}

void SameNodeFlow::ScheduleStats() {
  stats_timer_ = w_->loop().AddTimer(kRelayStatsInterval, [this] {
    stats_timer_ = 0;
    if (!relay_) return;
    Wakeup();
    CountRelayBytes();
    ScheduleStats();
  });
}

void SameNodeFlow::OnRelaySide(int i, uint32_t events) {
  if (events & EPOLLERR) {
    int err = ConnectResult(fd_[i].get());
    Abort(absl::StrCat(i == 0 ? "client" : "application",
                       " connection failed: ", std::strerror(err ? err : EIO)));
    return;
  }
  if (events & EPOLLHUP) hup_[i] = true;
  if ((events & (EPOLLRDHUP | EPOLLHUP)) && !eof_[i]) {
    eof_[i] = true;
    poll_ms_ = 1;
  }
  if (tailing_[i] && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) && !CopyTail(i)) return;
  if (tailing_[1 - i] && (events & EPOLLOUT) && !CopyTail(1 - i)) return;
  PollRelay();
}

// Sockmap mode: each socket is watched for the end of its direction (EPOLLRDHUP) and errors;
// EPOLLIN/EPOLLOUT only while a direction is copied by ztunnel (CopyTail). The kernel's
// per-message wake-ups carry EPOLLIN and EPOLLOUT, which the epoll callback then filters out.
void SameNodeFlow::UpdateRelayInterest(int i) {
  if (!fd_[i] || finished_) return;
  const int o = 1 - i;
  uint32_t want = 0;
  if (!eof_[i]) want |= EPOLLRDHUP;
  if (tailing_[i] && tail_[i].empty() && !shut_[o] && !fin_wait_[i]) want |= EPOLLIN;
  if (tailing_[o] && !tail_[o].empty()) want |= EPOLLOUT;
  if (want == 0 && hup_[i]) {  // EPOLLHUP is reported whatever the mask: leave the set
    if (registered_[i]) w_->loop().Remove(fd_[i].get());
    registered_[i] = false;
    return;
  }
  if (!registered_[i]) {
    if (auto st = w_->loop().Add(fd_[i].get(), want, &side_[i]); !st.ok()) {
      Abort("cannot watch socket: " + st.ToString());
      return;
    }
    registered_[i] = true;
  } else if (want != interest_[i]) {
    w_->loop().Modify(fd_[i].get(), want, &side_[i]);
  }
  interest_[i] = want;
}

void SameNodeFlow::OnOverCap(uint64_t cookie) {
  if (finished_ || !relay_) return;
  const int i = cookie == cookie_[0] ? 0 : 1;
  // The same event says the program met an skb repeating bytes it could not cut off: it dropped
  // it and moves nothing more. A reset, never a stream with a hole (docs/fastpath.md).
  if (auto s = relay_->relay().Stats(cookie); s.ok() && s->broken) {
    Wakeup();
    w_->metrics().same_node_relay_event("sockmap", "broken").Increment();
    Abort(
        absl::StrCat("same-node relay: the kernel handed over an skb repeating bytes the relay "
                     "could not cut off (",
                     i == 0 ? "client" : "application", " side); the flow is reset"));
    return;
  }
  if (paused_[i] || tailing_[i]) return;
  Wakeup();
  // Never out of weft_relay_srcs (that can drop an skb, docs/fastpath.md): the program leaves
  // the bytes on the socket from now on, behind every byte it redirected before.
  auto st = relay_->relay().Pause(cookie, forwarded_[i]);
  if (!st.ok()) {
    Abort("same-node relay: " + st.ToString());
    return;
  }
  paused_[i] = true;
  // auto: a bulk direction is copied by ztunnel from now on (its thread, the other CPU: one
  // kernel work item cannot carry one stream at full speed, docs/performance.md).
  copy_[i] = w_->opts().same_node_relay == ProxyOptions::SameNodeRelay::kAuto;
  w_->metrics().same_node_relay_event("sockmap", copy_[i] ? "to_copy" : "paused").Increment();
  poll_ms_ = 1;
  SchedulePoll();
}

void SameNodeFlow::PollRelay() {
  if (finished_) return;
  for (int i = 0; i < 2; i++) {
    if (paused_[i] && !tailing_[i] && !PollPaused(i)) return;
    if (fin_wait_[i] && !CopyTail(i)) return;
    const int o = 1 - i;
    if (eof_[i] && !paused_[i] && !tailing_[i] && !shut_[o]) {  // the FIN after the last byte
      auto d = bpf::Drained(fd_[i].get(), fd_[o].get(), relay_->relay(), cookie_[i], base_[o],
                            forwarded_[i]);
      if (!d.ok()) {
        Abort("same-node relay: " + d.status().ToString());
        return;
      }
      if (*d) {
        shutdown(fd_[o].get(), SHUT_WR);
        shut_[o] = true;
      }
    }
  }
  UpdateRelayInterest(0);
  UpdateRelayInterest(1);
  MaybeDone();
  if (!finished_) SchedulePoll();
}

// A paused direction: ztunnel forwards what waits on the socket once the peer has taken every
// byte the kernel redirected (its send path holds them all, so ztunnel's writes go after them).
// That is also when the slow reader has caught up. False: aborted.
bool SameNodeFlow::PollPaused(int i) {
  const int o = 1 - i;
  bpf::SameNodeRelay& relay = relay_->relay();
  auto s = relay.Stats(cookie_[i]);
  auto written = bpf::BytesWritten(fd_[o].get());
  if (!s.ok() || !written.ok()) {
    Abort("same-node relay: " + (s.ok() ? written.status() : s.status()).ToString());
    return false;
  }
  if (*written - base_[o] != s->redirected + forwarded_[i]) return true;
  if (!copy_[i]) {
    // The program redirects again once ztunnel has forwarded every byte it passed.
    if (auto st = relay.Unpause(cookie_[i], forwarded_[i]); !st.ok()) {
      Abort("same-node relay: " + st.ToString());
      return false;
    }
    paused_[i] = false;
  }
  tailing_[i] = true;
  return CopyTail(i);
}

bool SameNodeFlow::CopyTail(int i) {
  const int o = 1 - i;
  std::string& buf = tail_[i];
  bpf::SameNodeRelay& relay = relay_->relay();
  fin_wait_[i] = false;
  while (!shut_[o]) {
    if (buf.empty()) {
      buf.resize(kCopyChunk);
      ssize_t n = recv(fd_[i].get(), buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) n = -2;
      buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
      if (n == 0 || n == -2) {
        // Nothing to read: has every byte the program passed been forwarded? Not yet: more is
        // on its way to the socket's queue (EPOLLIN brings it). Yes: at EOF the FIN goes on;
        // a resumed direction is back on the relay (the program saw forwarded == passed from
        // the SetForwarded before this read, so it redirects whatever comes next).
        auto s = relay.Stats(cookie_[i]);
        if (!s.ok()) {
          Abort("same-node relay: " + s.status().ToString());
          return false;
        }
        const bool all = s->passed == forwarded_[i];
        if (n == 0 && all) {
          eof_[i] = true;
          shutdown(fd_[o].get(), SHUT_WR);
          shut_[o] = true;
        } else if (n == 0) {
          fin_wait_[i] = true;  // EOF with passed bytes still queued: check again on the timer
          eof_[i] = true;
        } else if (all && !copy_[i]) {
          tailing_[i] = false;
        }
        break;
      }
      if (n < 0) {
        Abort(absl::StrCat("read from ", i == 0 ? "client" : "application",
                           " failed: ", std::strerror(errno)));
        return false;
      }
      if (i == 0) {
        AddSent(buf.size());
        src_->AddSent(buf.size());
      } else {
        AddReceived(buf.size());
        src_->AddReceived(buf.size());
      }
    }
    ssize_t m = send(fd_[o].get(), buf.data(), buf.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (m < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (m <= 0) {
      Abort(absl::StrCat("write to ", o == 0 ? "client" : "application",
                         " failed: ", std::strerror(m < 0 ? errno : EIO)));
      return false;
    }
    buf.erase(0, static_cast<size_t>(m));
    forwarded_[i] += static_cast<uint64_t>(m);
    // A copied direction stays paused for good: the program need not know.
    if (!copy_[i]) {
      if (auto st = relay.SetForwarded(cookie_[i], forwarded_[i]); !st.ok()) {
        Abort("same-node relay: " + st.ToString());
        return false;
      }
    }
  }
  UpdateRelayInterest(0);
  UpdateRelayInterest(1);
  return true;
}

void SameNodeFlow::SchedulePoll() {
  bool waiting = false, paused = false;  // (a copied direction is driven by its socket events)
  for (int i = 0; i < 2; i++) {
    paused |= paused_[i] && !tailing_[i];
    waiting |= paused || fin_wait_[i] || (eof_[i] && !paused_[i] && !tailing_[i] && !shut_[1 - i]);
  }
  if (!waiting || poll_timer_ != 0) return;
  // A paused direction is checked every millisecond (its reader drains the cap in a few, and a
  // longer wait would idle the stream); a drain at EOF backs off.
  poll_timer_ = w_->loop().AddTimer(std::chrono::milliseconds(paused ? 1 : poll_ms_), [this] {
    poll_timer_ = 0;
    poll_ms_ = std::min(poll_ms_ * 2, kRelayPollMaxMs);
    Wakeup();
    PollRelay();
  });
}

void SameNodeFlow::CountRelayBytes() {
  if (!relay_) return;
  for (int i = 0; i < 2; i++) {
    auto s = relay_->relay().Stats(cookie_[i]);
    if (!s.ok() || s->redirected <= counted_[i]) continue;
    const uint64_t n = s->redirected - counted_[i];
    counted_[i] = s->redirected;
    if (i == 0) {
      AddSent(n);
      src_->AddSent(n);
    } else {
      AddReceived(n);
      src_->AddReceived(n);
    }
  }
}

void SameNodeFlow::LeaveRelay() {
  if (!relay_) return;
  CountRelayBytes();
  for (uint64_t c : cookie_) {  // skbs whose repeated head the program cut off
    auto s = relay_->relay().Stats(c);
    if (s.ok() && s->overlaps > 0)
      w_->metrics()
          .same_node_relay_event("sockmap", "overlap_cut")
          .Increment(static_cast<double>(s->overlaps));
  }
  relay_->relay().Leave(bpf::SameNodeRelay::Pair{{cookie_[0], cookie_[1]}, {base_[0], base_[1]}});
  for (uint64_t c : cookie_) relay_->Unwatch(c);
  relay_ = nullptr;
  for (uint64_t* t : {&poll_timer_, &stats_timer_}) {
    if (*t) w_->loop().CancelTimer(*t);
    *t = 0;
  }
}

#else  // built without the BPF toolchain: splice only

absl::StatusOr<bool> UseSockmapRelay(const ProxyOptions& opts) {
  if (opts.same_node_fast_path && opts.same_node_relay == ProxyOptions::SameNodeRelay::kSockmap)
    return absl::UnavailableError(
        "--same-node-relay=sockmap: this ztunnel was built without the BPF toolchain (clang, "
        "bpftool)");
  return false;
}

absl::StatusOr<std::unique_ptr<FastPathRelay>> FastPathRelay::Create(Worker&) {
  return absl::UnavailableError("built without the sockmap relay");
}
FastPathRelay::FastPathRelay(Worker& w) : w_(w) {}
FastPathRelay::~FastPathRelay() = default;
void FastPathRelay::OnEvents(uint32_t) {}
bool SameNodeFlow::JoinRelay() {
  return false;
}
void SameNodeFlow::OnRelaySide(int, uint32_t) {}
void SameNodeFlow::OnOverCap(uint64_t) {}
void SameNodeFlow::PollRelay() {}
bool SameNodeFlow::PollPaused(int) {
  return false;
}
void SameNodeFlow::UpdateRelayInterest(int) {}
void SameNodeFlow::SchedulePoll() {}
bool SameNodeFlow::CopyTail(int) {
  return false;
}
void SameNodeFlow::ScheduleStats() {}
void SameNodeFlow::CountRelayBytes() {}
void SameNodeFlow::LeaveRelay() {}

#endif

}  // namespace weft::ztunnel
