#include "ztunnel/inpod/handoff_server.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fd_passing.h"
#include "common/log.h"
#include "common/netns.h"
#include "common/status.h"

namespace weft::ztunnel {
namespace {

using weft::inpod::v1::AddWorkload;
using weft::inpod::v1::WorkloadInfo;
using weft::inpod::v1::WorkloadRequest;
using weft::inpod::v1::WorkloadResponse;

constexpr char kScope[] = "inpod";
// Room for a few descriptors: a peer that sends more than one gets them closed and an error,
// instead of a truncated control message that silently drops fds.
constexpr size_t kMaxFds = 8;

// A request rejected before it reaches the callbacks: `kind` is the counter label.
struct BadInput {
  std::string kind;
  std::string error;
};

}  // namespace

struct HandoffServer::Impl {
  std::string path;
  Callbacks cb;
  UnixListener listener;  // Stop unlinks only the socket file this server created
  UniqueFd stop_fd;
  UniqueFd conn;
  std::thread thread;
  std::atomic<bool> connected{false};
  std::mutex handle_mu;   // held while a request is read and handled
  bool paused = false;    // guarded by handle_mu
  bool stopping = false;  // guarded by handle_mu

  mutable std::mutex mu;                    // guards `pods` for known_pods()
  std::map<std::string, AddWorkload> pods;  // held pods and their AddWorkload
  std::set<std::string> seen;               // added/kept on the current connection

  void Run();
  void Accept();
  // Returns false when the connection is gone.
  bool ReadOne(bool hup);
  void DropConnection(std::string_view why);
  std::string Handle(const WorkloadRequest& req, std::vector<UniqueFd>& fds);
  void SendAck(const std::string& error);
  void Reconcile();
};

HandoffServer::HandoffServer(std::string socket_path, Callbacks cb)
    : impl_(std::make_unique<Impl>()) {
  impl_->path = std::move(socket_path);
  impl_->cb = std::move(cb);
}

HandoffServer::~HandoffServer() {
  Stop();
}

const std::string& HandoffServer::socket_path() const {
  return impl_->path;
}

bool HandoffServer::agent_connected() const {
  return impl_->connected.load();
}

void HandoffServer::Adopt(const AddWorkload& add) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->pods[add.uid()] = add;
}

std::vector<AddWorkload> HandoffServer::pods() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<AddWorkload> out;
  for (const auto& [uid, add] : impl_->pods) out.push_back(add);
  return out;
}

void HandoffServer::Pause() {
  std::lock_guard<std::mutex> lock(impl_->handle_mu);
  impl_->paused = true;
}

void HandoffServer::Resume() {
  {
    std::lock_guard<std::mutex> lock(impl_->handle_mu);
    impl_->paused = false;
  }
  if (impl_->stop_fd.valid()) {
    uint64_t one = 1;
    (void)!::write(impl_->stop_fd.get(), &one, sizeof one);  // re-poll (see Run)
  }
}

std::set<std::string> HandoffServer::known_pods() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::set<std::string> out;
  for (const auto& [uid, info] : impl_->pods) out.insert(uid);
  return out;
}

absl::Status HandoffServer::Start() {
  Impl& s = *impl_;
  if (s.thread.joinable()) return absl::FailedPreconditionError("handoff server already started");
  absl::StatusOr<UnixListener> l = ListenUnixReplacing(s.path, 4, "handoff socket");
  if (!l.ok()) return l.status();

  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return ErrnoError(errno, "eventfd");
  s.stop_fd.reset(efd);
  s.listener = *std::move(l);
  {
    std::lock_guard<std::mutex> lock(s.handle_mu);
    s.stopping = false;
  }
  s.thread = std::thread([this] { impl_->Run(); });
  LOG_INFO(kScope, "handoff server listening", {{"socket", s.path}});
  return absl::OkStatus();
}

void HandoffServer::Stop() {
  Impl& s = *impl_;
  if (!s.thread.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(s.handle_mu);
    s.stopping = true;
  }
  uint64_t one = 1;
  // The eventfd counter cannot overflow from a handful of writes, so this never fails.
  (void)!::write(s.stop_fd.get(), &one, sizeof one);
  s.thread.join();
  s.conn.reset();
  s.connected = false;
  s.listener.fd.reset();
  s.stop_fd.reset();
  // A successor's socket at the path stays.
  UnlinkUnixListener(s.path, s.listener);
  LOG_INFO(kScope, "handoff server stopped", {{"socket", s.path}});
}

void HandoffServer::Impl::Run() {
  for (;;) {
    bool is_paused;
    {
      std::lock_guard<std::mutex> lock(handle_mu);
      is_paused = paused;
    }
    pollfd fds[3] = {{stop_fd.get(), POLLIN, 0},
                     {listener.fd.get(), POLLIN, 0},
                     {conn.get(), POLLIN | POLLRDHUP, 0}};
    int n = ::poll(fds, is_paused ? 1 : conn.valid() ? 3 : 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      LOG_ERROR(kScope, "poll failed; handoff server stops", {{"error", std::strerror(errno)}});
      return;
    }
    if (fds[0].revents) {
      // Stop, or Resume asking for a new poll.
      uint64_t v;
      (void)!::read(stop_fd.get(), &v, sizeof v);
      std::lock_guard<std::mutex> lock(handle_mu);
      if (!stopping) continue;
      return;
    }
    std::lock_guard<std::mutex> lock(handle_mu);
    if (paused) continue;
    // Drain the current connection before a replacement is accepted, so an agent's last
    // messages are not lost to a race with its own reconnect.
    if (conn.valid() && fds[2].revents) {
      bool hup = fds[2].revents & (POLLHUP | POLLRDHUP | POLLERR);
      while (conn.valid() && ReadOne(hup)) {
      }
    }
    if (fds[1].revents & POLLIN) Accept();
  }
}

void HandoffServer::Impl::Accept() {
  int fd = ::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      LOG_WARN(kScope, "accept on handoff socket failed", {{"error", std::strerror(errno)}});
    return;
  }
  if (conn.valid()) {
    LOG_INFO(kScope, "new agent connection replaces the old one", {});
    DropConnection("replaced by a new agent connection");
  }
  conn.reset(fd);
  seen.clear();
  connected = true;
  LOG_INFO(kScope, "agent connected", {{"socket", path}});
}

void HandoffServer::Impl::DropConnection(std::string_view why) {
  conn.reset();
  connected = false;
  LOG_INFO(kScope, "agent connection closed", {{"reason", why}});
}

bool HandoffServer::Impl::ReadOne(bool hup) {
  // One extra byte past the limit would also work, but MSG_TRUNC tells us directly.
  std::vector<char> buf(kMaxHandoffMessage);
  // Every passed descriptor is owned by `fds` at once, so each one is closed on every path.
  std::vector<UniqueFd> fds;
  int msg_flags = 0;
  ssize_t n =
      RecvWithFds(conn.get(), buf.data(), buf.size(), MSG_DONTWAIT, kMaxFds, &fds, &msg_flags);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (hup) DropConnection("agent hung up");
      return false;
    }
    DropConnection(absl::StrCat("recvmsg: ", std::strerror(errno)));
    return false;
  }

  // SEQPACKET reports a zero-length datagram and end-of-stream the same way; the socket's
  // shutdown state, read now (not the earlier poll's, which may predate the hangup), tells
  // them apart.
  if (n == 0 && fds.empty() && !(msg_flags & MSG_TRUNC)) {
    pollfd p{conn.get(), POLLRDHUP, 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP))) {
      DropConnection("agent hung up");
      return false;
    }
  }

  std::optional<BadInput> bad;
  WorkloadRequest req;
  if (msg_flags & MSG_TRUNC) {
    bad = BadInput{"oversized", absl::StrCat("handoff message larger than ", kMaxHandoffMessage,
                                             " bytes; rejected")};
  } else if (msg_flags & MSG_CTRUNC) {
    bad = BadInput{"control_truncated",
                   absl::StrCat("too many file descriptors attached (more than ", kMaxFds,
                                "); send exactly one netns fd with add/keep")};
  } else if (!req.ParseFromArray(buf.data(), static_cast<int>(n))) {
    bad = BadInput{"malformed", "handoff message is not a valid weft.inpod.v1.WorkloadRequest"};
  } else if (req.payload_case() == WorkloadRequest::PAYLOAD_NOT_SET) {
    bad = BadInput{"empty",
                   "WorkloadRequest has no payload (expected add, keep, del or snapshot_sent)"};
  }

  std::string error;
  if (bad) {
    error = bad->error;
    LOG_WARN(kScope, "rejected handoff message", {{"kind", bad->kind}, {"error", error}});
    if (cb.on_bad_input) cb.on_bad_input(bad->kind);
  } else {
    error = Handle(req, fds);
  }
  SendAck(error);
  return conn.valid();
}

std::string HandoffServer::Impl::Handle(const WorkloadRequest& req, std::vector<UniqueFd>& fds) {
  auto bad_input = [&](std::string kind, std::string error) {
    LOG_WARN(kScope, "rejected handoff message", {{"kind", kind}, {"error", error}});
    if (cb.on_bad_input) cb.on_bad_input(kind);
    return error;
  };
  bool wants_fd = req.has_add() || req.has_keep();
  if (!wants_fd && !fds.empty())
    return bad_input("unexpected_fd", "only add/keep may carry a file descriptor");
  if (wants_fd) {
    const char* what = req.has_add() ? "AddWorkload" : "KeepWorkload";
    if (fds.size() != 1)
      return bad_input(
          fds.empty() ? "missing_fd" : "extra_fd",
          absl::StrCat(what, " needs exactly one netns fd (SCM_RIGHTS), got ", fds.size()));
    // Not a netns, or ztunnel's own or the host's: listeners there would take the node's
    // traffic, not a pod's.
    if (auto refused = CheckPodNetns(fds[0].get()))
      return bad_input(refused->kind,
                       absl::StrCat(what, ": the attached fd is ", refused->reason,
                                    " (send the pod's /proc/PID/ns/net or /run/netns/NAME)"));
  }

  switch (req.payload_case()) {
    case WorkloadRequest::kAdd: {
      const std::string& uid = req.add().uid();
      if (uid.empty()) return bad_input("empty_uid", "AddWorkload with an empty uid");
      absl::Status st = cb.add ? cb.add(req.add(), std::move(fds[0])) : absl::OkStatus();
      if (!st.ok()) {
        LOG_WARN(kScope, "pod add failed", {{"uid", uid}, {"error", st.ToString()}});
        return std::string(st.message());
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        pods[uid] = req.add();
      }
      seen.insert(uid);
      LOG_INFO(kScope, "pod added", {{"uid", uid}});
      return "";
    }
    case WorkloadRequest::kKeep: {
      const std::string& uid = req.keep().uid();
      AddWorkload add;
      {
        std::lock_guard<std::mutex> lock(mu);
        auto it = pods.find(uid);
        if (it == pods.end())
          return absl::StrCat("KeepWorkload for unknown pod \"", uid,
                              "\"; send AddWorkload with its WorkloadInfo");
        add = it->second;
      }
      absl::Status st = cb.add ? cb.add(add, std::move(fds[0])) : absl::OkStatus();
      if (!st.ok()) return std::string(st.message());
      seen.insert(uid);
      return "";
    }
    case WorkloadRequest::kDel: {
      const std::string& uid = req.del().uid();
      bool known;
      {
        std::lock_guard<std::mutex> lock(mu);
        known = pods.erase(uid) > 0;
      }
      seen.erase(uid);
      if (known) {
        if (cb.del) cb.del(uid);
        LOG_INFO(kScope, "pod removed", {{"uid", uid}});
      }
      return "";
    }
    case WorkloadRequest::kSnapshotSent:
      Reconcile();
      return "";
    case WorkloadRequest::PAYLOAD_NOT_SET:
      break;
  }
  return "unknown request";
}

void HandoffServer::Impl::Reconcile() {
  std::vector<std::string> gone;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto it = pods.begin(); it != pods.end();) {
      if (seen.count(it->first)) {
        ++it;
        continue;
      }
      gone.push_back(it->first);
      it = pods.erase(it);
    }
  }
  for (const std::string& uid : gone) {
    LOG_INFO(kScope, "pod not in the agent's snapshot; removing", {{"uid", uid}});
    if (cb.del) cb.del(uid);
  }
  LOG_INFO(kScope, "agent snapshot reconciled", {{"pods", seen.size()}, {"removed", gone.size()}});
}

void HandoffServer::Impl::SendAck(const std::string& error) {
  if (!conn.valid()) return;
  WorkloadResponse resp;
  resp.mutable_ack()->set_error(error);
  std::string out = resp.SerializeAsString();
  // An ack is tiny; if the agent stopped reading so that even this does not fit, the
  // connection is useless.
  if (::send(conn.get(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
    DropConnection(absl::StrCat("send ack: ", std::strerror(errno)));
}

}  // namespace weft::ztunnel
