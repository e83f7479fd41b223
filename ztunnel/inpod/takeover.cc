#include "ztunnel/inpod/takeover.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/fd_passing.h"
#include "common/log.h"
#include "common/status.h"

namespace weft::ztunnel {
namespace {

using weft::inpod::v1::ListenerRole;
using weft::inpod::v1::TakeoverRequest;
using weft::inpod::v1::TakeoverResponse;

constexpr char kScope[] = "takeover";
constexpr size_t kMaxMessage = 64 * 1024;
constexpr size_t kMaxFds = 16;  // a pod: its netns and at most 6 listeners
// A successor that said hello must commit within this (it waits for its config first), or the
// predecessor carries on: its handoff server is paused meanwhile.
constexpr std::chrono::minutes kPendingLimit{2};

bool FillAddr(const std::string& path, sockaddr_un* addr) {
  *addr = {};
  addr->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr->sun_path)) return false;
  std::memcpy(addr->sun_path, path.data(), path.size());
  return true;
}

// One datagram with `fds` attached (SCM_RIGHTS).
absl::Status SendMessage(int sock, const google::protobuf::Message& m,
                         const std::vector<int>& fds) {
  std::string bytes = m.SerializeAsString();
  if (bytes.size() > kMaxMessage || fds.size() > kMaxFds)
    return absl::InvalidArgumentError("takeover message too large");
  iovec iov{bytes.data(), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoError(errno, "send on the takeover socket");
  return absl::OkStatus();
}

// One datagram (waiting at most `timeout`); its descriptors go to *fds. NotFound on EOF.
absl::Status ReceiveMessage(int sock, google::protobuf::Message* m, std::vector<UniqueFd>* fds,
                            std::chrono::milliseconds timeout) {
  pollfd p{sock, POLLIN, 0};
  int r;
  do {
    r = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (r < 0 && errno == EINTR);
  if (r < 0) return ErrnoError(errno, "poll on the takeover socket");
  if (r == 0)
    return absl::DeadlineExceededError(
        absl::StrCat("no answer on the takeover socket within ", timeout.count(), " ms"));
  std::vector<char> buf(kMaxMessage);
  int flags = 0;
  ssize_t n = RecvWithFds(sock, buf.data(), buf.size(), 0, kMaxFds, fds, &flags);
  if (n < 0) return ErrnoError(errno, "receive on the takeover socket");
  if (n == 0 && fds->empty()) return absl::NotFoundError("the peer closed the takeover socket");
  if (flags & (MSG_TRUNC | MSG_CTRUNC)) return absl::DataLossError("truncated takeover message");
  if (!m->ParseFromArray(buf.data(), static_cast<int>(n)))
    return absl::DataLossError("malformed takeover message");
  return absl::OkStatus();
}

}  // namespace

std::string TakeoverSocketPath(const std::string& handoff_socket) {
  return handoff_socket + ".takeover";
}

// ---- TakeoverServer (the predecessor) -------------------------------------------------------

struct TakeoverServer::Impl {
  std::string path;
  Callbacks cb;
  UnixListener listener;  // Stop unlinks only the socket file this server created
  UniqueFd stop_fd, conn;
  std::thread thread;
  std::atomic<bool> pending{false}, committed{false};
  std::chrono::milliseconds asked{0};
  std::chrono::steady_clock::time_point pending_since;

  void Run();
  void Accept();
  // False: the connection is done (closed).
  bool Serve();
  absl::Status SendState();
  void EndConnection(bool abort);
};

TakeoverServer::TakeoverServer(std::string socket_path, Callbacks cb)
    : impl_(std::make_unique<Impl>()) {
  impl_->path = std::move(socket_path);
  impl_->cb = std::move(cb);
}

TakeoverServer::~TakeoverServer() {
  Stop();
}

bool TakeoverServer::pending() const {
  return impl_->pending.load();
}

bool TakeoverServer::committed() const {
  return impl_->committed.load();
}

absl::Status TakeoverServer::Start() {
  Impl& s = *impl_;
  if (s.thread.joinable()) return absl::FailedPreconditionError("takeover server already started");
  absl::StatusOr<UnixListener> l = ListenUnixReplacing(s.path, 2, "takeover socket");
  if (!l.ok()) return l.status();
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return ErrnoError(errno, "eventfd");
  s.stop_fd.reset(efd);
  s.listener = *std::move(l);
  s.thread = std::thread([this] { impl_->Run(); });
  LOG_INFO(kScope, "takeover server listening", {{"socket", s.path}});
  return absl::OkStatus();
}

void TakeoverServer::Stop() {
  Impl& s = *impl_;
  if (!s.thread.joinable()) return;
  uint64_t one = 1;
  (void)!::write(s.stop_fd.get(), &one, sizeof one);
  s.thread.join();
  if (s.conn.valid()) s.EndConnection(/*abort=*/true);
  s.listener.fd.reset();
  s.stop_fd.reset();
  UnlinkUnixListener(s.path, s.listener);
}

void TakeoverServer::Impl::Run() {
  for (;;) {
    pollfd fds[3] = {{stop_fd.get(), POLLIN, 0},
                     {listener.fd.get(), POLLIN, 0},
                     {conn.get(), POLLIN | POLLRDHUP, 0}};
    int n = ::poll(fds, conn.valid() ? 3 : 2, pending ? 1000 : -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      LOG_ERROR(kScope, "poll failed; takeover server stops", {{"error", std::strerror(errno)}});
      return;
    }
    if (fds[0].revents) return;
    if (pending && std::chrono::steady_clock::now() - pending_since > kPendingLimit) {
      LOG_WARN(kScope, "the successor did not commit in time; hanging up", {});
      EndConnection(/*abort=*/true);
      continue;
    }
    if (conn.valid() && fds[2].revents) {
      while (conn.valid() && Serve()) {
      }
    }
    if (fds[1].revents & POLLIN) Accept();
  }
}

void TakeoverServer::Impl::Accept() {
  int fd = ::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return;
  UniqueFd c(fd);
  timeval tv{5, 0};  // a successor that stops reading must not hold this thread
  ::setsockopt(c.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (conn.valid() || committed) {
    // Its Hello is read first: closing a socket with unread bytes resets it, and the refusal
    // would be lost.
    TakeoverRequest hello;
    std::vector<UniqueFd> ignored;
    (void)ReceiveMessage(c.get(), &hello, &ignored, std::chrono::milliseconds(1000));
    TakeoverResponse r;
    r.mutable_welcome()->set_error(committed ? "this ztunnel already handed over to a successor"
                                             : "another takeover is in progress");
    (void)SendMessage(c.get(), r, {});
    return;
  }
  conn = std::move(c);
}

void TakeoverServer::Impl::EndConnection(bool abort) {
  conn.reset();
  if (pending.exchange(false) && abort) {
    LOG_WARN(kScope, "the successor left before committing; serving on as before", {});
    if (cb.on_abort) cb.on_abort();
  }
}

bool TakeoverServer::Impl::Serve() {
  TakeoverRequest req;
  std::vector<UniqueFd> fds;
  pollfd p{conn.get(), POLLIN, 0};
  if (::poll(&p, 1, 0) != 1) return false;
  absl::Status st = ReceiveMessage(conn.get(), &req, &fds, std::chrono::milliseconds(0));
  if (st.ok() && !fds.empty()) st = absl::InvalidArgumentError("a successor sent descriptors");
  if (!st.ok()) {
    if (!absl::IsNotFound(st)) LOG_WARN(kScope, "bad takeover request", {{"error", st.ToString()}});
    EndConnection(/*abort=*/true);
    return false;
  }
  TakeoverResponse resp;
  switch (req.payload_case()) {
    case TakeoverRequest::kHello:
      pending = true;
      pending_since = std::chrono::steady_clock::now();
      asked = std::chrono::milliseconds(std::max<int64_t>(0, req.hello().drain_deadline_ms()));
      LOG_INFO(kScope, "a successor ztunnel is taking over", {{"pid", req.hello().pid()}});
      if (cb.on_hello) cb.on_hello(req.hello().pid());
      resp.mutable_welcome()->set_pid(::getpid());
      break;
    case TakeoverRequest::kTake:
      if (!pending) break;
      st = SendState();
      if (!st.ok()) {
        LOG_WARN(kScope, "handing the listeners over failed", {{"error", st.ToString()}});
        EndConnection(/*abort=*/true);
        return false;
      }
      return true;
    case TakeoverRequest::kCommit: {
      if (!pending) break;
      auto d = cb.commit ? cb.commit(asked) : asked;
      committed = true;
      pending = false;
      resp.mutable_committed()->set_drain_deadline_ms(d.count());
      (void)SendMessage(conn.get(), resp, {});
      EndConnection(/*abort=*/false);
      return false;
    }
    case TakeoverRequest::PAYLOAD_NOT_SET:
      break;
  }
  if (resp.payload_case() == TakeoverResponse::PAYLOAD_NOT_SET) {
    LOG_WARN(kScope, "takeover request out of order; hanging up", {});
    EndConnection(/*abort=*/true);
    return false;
  }
  if (!SendMessage(conn.get(), resp, {}).ok()) {
    EndConnection(/*abort=*/true);
    return false;
  }
  return true;
}

absl::Status TakeoverServer::Impl::SendState() {
  TakeoverSnapshot snap = cb.snapshot ? cb.snapshot() : TakeoverSnapshot{};
  for (const auto& pod : snap.pods) {
    TakeoverResponse r;
    auto* p = r.mutable_state()->mutable_pod();
    *p->mutable_add() = pod.add;
    std::vector<int> fds = {pod.netns};
    for (const auto& [role, fd] : pod.listeners) {
      p->add_listeners(role);
      fds.push_back(fd);
    }
    WEFT_RETURN_IF_ERROR(SendMessage(conn.get(), r, fds));
  }
  if (!snap.admin.empty()) {
    TakeoverResponse r;
    auto* a = r.mutable_state()->mutable_admin();
    std::vector<int> fds;
    for (const auto& [role, fd] : snap.admin) {
      a->add_listeners(role);
      fds.push_back(fd);
    }
    WEFT_RETURN_IF_ERROR(SendMessage(conn.get(), r, fds));
  }
  TakeoverResponse done;
  done.mutable_state()->set_done(true);
  WEFT_RETURN_IF_ERROR(SendMessage(conn.get(), done, {}));
  LOG_INFO(kScope, "listeners handed to the successor",
           {{"pods", snap.pods.size()}, {"admin", snap.admin.size()}});
  return absl::OkStatus();
}

// ---- TakeoverClient (the successor) ---------------------------------------------------------

absl::StatusOr<std::unique_ptr<TakeoverClient>> TakeoverClient::Connect(
    const std::string& path, std::chrono::milliseconds drain_deadline,
    std::chrono::milliseconds timeout) {
  sockaddr_un addr;
  if (!FillAddr(path, &addr))
    return absl::InvalidArgumentError(absl::StrCat("takeover socket path ", path, " too long"));
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  UniqueFd s(fd);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    if (err == ENOENT || err == ECONNREFUSED)
      return absl::NotFoundError(absl::StrCat("no ztunnel to take over from at ", path));
    return ErrnoError(err, absl::StrCat("connect to ", path));
  }
  std::unique_ptr<TakeoverClient> c(new TakeoverClient(std::move(s), timeout));
  TakeoverRequest hello;
  hello.mutable_hello()->set_pid(::getpid());
  hello.mutable_hello()->set_drain_deadline_ms(drain_deadline.count());
  WEFT_RETURN_IF_ERROR(c->Send(hello));
  std::vector<UniqueFd> fds;
  WEFT_ASSIGN_OR_RETURN(TakeoverResponse r, c->Receive(&fds));
  if (!r.has_welcome()) return absl::DataLossError("the predecessor did not answer Hello");
  if (!r.welcome().error().empty())
    return absl::FailedPreconditionError(
        absl::StrCat("the running ztunnel refused the takeover: ", r.welcome().error()));
  c->pid_ = r.welcome().pid();
  return c;
}

absl::Status TakeoverClient::Send(const TakeoverRequest& req) {
  return SendMessage(fd_.get(), req, {});
}

absl::StatusOr<TakeoverResponse> TakeoverClient::Receive(std::vector<UniqueFd>* fds) {
  TakeoverResponse r;
  absl::Status st = ReceiveMessage(fd_.get(), &r, fds, timeout_);
  if (absl::IsNotFound(st))
    return absl::UnavailableError("the predecessor closed the takeover connection");
  if (!st.ok()) return st;
  return r;
}

absl::StatusOr<TakenState> TakeoverClient::Take() {
  TakeoverRequest take;
  take.mutable_take();
  WEFT_RETURN_IF_ERROR(Send(take));
  TakenState out;
  for (;;) {
    std::vector<UniqueFd> fds;
    WEFT_ASSIGN_OR_RETURN(TakeoverResponse r, Receive(&fds));
    if (!r.has_state()) return absl::DataLossError("unexpected answer to Take");
    const auto& s = r.state();
    if (s.has_pod()) {
      if (fds.size() != static_cast<size_t>(s.pod().listeners_size()) + 1)
        return absl::DataLossError(absl::StrCat("pod ", s.pod().add().uid(), ": ", fds.size(),
                                                " descriptors for ", s.pod().listeners_size(),
                                                " listeners and a netns"));
      TakenState::Pod p;
      p.add = s.pod().add();
      p.netns = std::move(fds[0]);
      for (int i = 0; i < s.pod().listeners_size(); ++i)
        p.listeners.emplace_back(s.pod().listeners(i), std::move(fds[i + 1]));
      out.pods.push_back(std::move(p));
    } else if (s.has_admin()) {
      if (fds.size() != static_cast<size_t>(s.admin().listeners_size()))
        return absl::DataLossError("admin listeners and descriptors do not match");
      for (int i = 0; i < s.admin().listeners_size(); ++i)
        out.admin.emplace_back(s.admin().listeners(i), std::move(fds[i]));
    } else if (s.done()) {
      return out;
    } else {
      return absl::DataLossError("empty takeover state");
    }
  }
}

absl::StatusOr<std::chrono::milliseconds> TakeoverClient::Commit() {
  TakeoverRequest commit;
  commit.mutable_commit();
  WEFT_RETURN_IF_ERROR(Send(commit));
  std::vector<UniqueFd> fds;
  WEFT_ASSIGN_OR_RETURN(TakeoverResponse r, Receive(&fds));
  if (!r.has_committed()) return absl::DataLossError("unexpected answer to Commit");
  return std::chrono::milliseconds(r.committed().drain_deadline_ms());
}

}  // namespace weft::ztunnel
