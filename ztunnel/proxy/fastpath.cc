// Same-node fast path: see fastpath.h and docs/fastpath.md.
#include "ztunnel/proxy/fastpath.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
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
  dinfo.labels.response_flags = flags;
  info.labels.response_flags = flags;
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
  Pipes pipes;
  if (!MakePipes(w.opts().fast_path_pipe_size, info.dst, pipes)) return false;
  BlockSigpipeOnThisThread();

  const SockAddr target = info.dst;
  // The source address the HBONE client would have bound: the pod's address in the target's
  // family (what the destination's policy sees as the source IP on the HBONE path).
  const IpAddr src_ip = src.addresses.empty() ? info.src.ip : AddressLike(src, target.ip);
  info.labels.connection_security_policy = kSameNode;
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
      info_.labels.response_flags = "UF";
      Abort("connect to the application " + info_.dst.ToString() + " timed out");
    }
  });
}

void SameNodeFlow::Abort(const std::string& reason) {
  if (finished_) return;
  if (info_.error.empty()) info_.error = reason;
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
  if (s.labels.response_flags == "-") s.labels.response_flags = info_.labels.response_flags;
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
      info_.labels.response_flags = "UF";
      Abort("connect to the application " + info_.dst.ToString() +
            " failed: " + std::strerror(err));
      return;
    }
    OnConnected();
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
  UpdateInterest(0);
  UpdateInterest(1);
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
  for (int i = 0; i < 2; i++) {
    if (registered_[i]) w_->loop().Remove(fd_[i].get());
    registered_[i] = false;
    fd_[i].reset();
  }
  FinishBoth();
}

}  // namespace weft::ztunnel
