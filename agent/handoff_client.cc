#include "agent/handoff_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fd_passing.h"
#include "common/status.h"

namespace weft::agent {
namespace {

using weft::inpod::v1::WorkloadRequest;
using weft::inpod::v1::WorkloadResponse;

// Must match ztunnel's limit (kMaxHandoffMessage in ztunnel/inpod/handoff_server.h); the
// agent does not link ztunnel, so the number is repeated here.
constexpr size_t kMaxMessage = 64 * 1024;

std::string Describe(const WorkloadRequest& req) {
  switch (req.payload_case()) {
    case WorkloadRequest::kAdd:
      return absl::StrCat("AddWorkload ", req.add().uid());
    case WorkloadRequest::kKeep:
      return absl::StrCat("KeepWorkload ", req.keep().uid());
    case WorkloadRequest::kDel:
      return absl::StrCat("DelWorkload ", req.del().uid());
    case WorkloadRequest::kSnapshotSent:
      return "SnapshotSent";
    case WorkloadRequest::PAYLOAD_NOT_SET:
      break;
  }
  return "empty request";
}

}  // namespace

HandoffClient::HandoffClient(std::string socket_path, std::chrono::milliseconds ack_timeout)
    : path_(std::move(socket_path)), timeout_(ack_timeout) {}

absl::Status HandoffClient::Connect() {
  fd_.reset();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.empty() || path_.size() >= sizeof(addr.sun_path))
    return absl::InvalidArgumentError(absl::StrCat("ztunnel socket path \"", path_,
                                                   "\" is empty or longer than ",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  std::memcpy(addr.sun_path, path_.data(), path_.size());
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  UniqueFd s(fd);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    return absl::UnavailableError(absl::StrCat("cannot connect to ztunnel: ", std::strerror(err),
                                               "; is ztunnel running? socket ", path_));
  }
  fd_ = std::move(s);
  return absl::OkStatus();
}

absl::Status HandoffClient::AddWorkload(const std::string& uid,
                                        const weft::inpod::v1::WorkloadInfo& info, int netns_fd,
                                        const std::optional<weft::inpod::v1::EbpfCapture>& ebpf) {
  WorkloadRequest req;
  req.mutable_add()->set_uid(uid);
  *req.mutable_add()->mutable_info() = info;
  if (ebpf) *req.mutable_add()->mutable_ebpf() = *ebpf;
  return SendAndWait(req, netns_fd);
}

absl::Status HandoffClient::KeepWorkload(const std::string& uid, int netns_fd) {
  WorkloadRequest req;
  req.mutable_keep()->set_uid(uid);
  return SendAndWait(req, netns_fd);
}

absl::Status HandoffClient::DelWorkload(const std::string& uid) {
  WorkloadRequest req;
  req.mutable_del()->set_uid(uid);
  return SendAndWait(req, -1);
}

absl::Status HandoffClient::SnapshotSent() {
  WorkloadRequest req;
  req.mutable_snapshot_sent();
  return SendAndWait(req, -1);
}

absl::Status HandoffClient::SendAndWait(const WorkloadRequest& req, int fd_to_pass) {
  const std::string what = Describe(req);
  if (!fd_.valid())
    return absl::UnavailableError(
        absl::StrCat(what, ": not connected to ztunnel (socket ", path_, ")"));
  std::string bytes = req.SerializeAsString();
  if (bytes.size() > kMaxMessage)
    return absl::InvalidArgumentError(absl::StrCat(what, ": message of ", bytes.size(),
                                                   " bytes exceeds the ", kMaxMessage,
                                                   "-byte handoff limit"));

  ssize_t n;
  do {
    n = SendWithFd(fd_.get(), bytes.data(), bytes.size(), fd_to_pass, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    int err = errno;
    fd_.reset();
    if (err == EBADF)
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": the netns fd ", fd_to_pass, " is not an open descriptor"));
    return absl::UnavailableError(absl::StrCat(what, ": send to ztunnel failed (",
                                               std::strerror(err),
                                               "); ztunnel closed the connection? socket ", path_));
  }

  auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    pollfd p{fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int err = errno;
      fd_.reset();
      return ErrnoError(err, "poll on ztunnel socket");
    }
    if (r == 0) {
      fd_.reset();
      return absl::DeadlineExceededError(
          absl::StrCat(what, ": no ack from ztunnel within ", timeout_.count(),
                       " ms; disconnected (is ztunnel stuck? socket ", path_, ")"));
    }
    break;
  }

  std::vector<char> buf(kMaxMessage);
  do {
    n = ::recv(fd_.get(), buf.data(), buf.size(), MSG_TRUNC);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    int err = n < 0 ? errno : 0;
    fd_.reset();
    return absl::UnavailableError(absl::StrCat(
        what, ": ztunnel closed the connection before acking",
        err ? absl::StrCat(" (", std::strerror(err), ")") : std::string(), "; socket ", path_));
  }
  WorkloadResponse resp;
  if (static_cast<size_t>(n) > buf.size() ||
      !resp.ParseFromArray(buf.data(), static_cast<int>(n))) {
    fd_.reset();
    return absl::DataLossError(absl::StrCat(what,
                                            ": ztunnel's reply is not a valid "
                                            "WorkloadResponse; disconnected"));
  }
  if (!resp.ack().error().empty())
    return absl::FailedPreconditionError(
        absl::StrCat("ztunnel rejected ", what, ": ", resp.ack().error()));
  return absl::OkStatus();
}

}  // namespace weft::agent
