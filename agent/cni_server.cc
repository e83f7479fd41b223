#include "agent/cni_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"

namespace weft::agent {
namespace {
constexpr char kScope[] = "agent";
constexpr int kRequestTimeoutMs = 2000;  // the plugin sends its request right after connecting
}  // namespace

CniServer::CniServer(std::string path, Handler handler, std::function<void()> on_bad)
    : path_(std::move(path)), handler_(std::move(handler)), on_bad_(std::move(on_bad)) {}

CniServer::~CniServer() {
  Stop();
}

absl::Status CniServer::Start() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.empty() || path_.size() >= sizeof(addr.sun_path))
    return absl::InvalidArgumentError(absl::StrCat("--cni-socket \"", path_,
                                                   "\" is empty or longer than ",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  std::memcpy(addr.sun_path, path_.data(), path_.size());
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
  ::unlink(path_.c_str());  // a socket file left by an earlier agent
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!s) return ErrnoError(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  // Created 0600 (umask), never reachable by others even between bind and chmod.
  mode_t old = ::umask(0177);
  int rc = ::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::umask(old);
  if (rc != 0) return ErrnoError(err, absl::StrCat("--cni-socket: binding ", path_));
  if (::listen(s.get(), 64) != 0) return ErrnoError(errno, absl::StrCat("listen on ", path_));
  UniqueFd w(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!w) return ErrnoError(errno, "eventfd");
  listen_ = std::move(s);
  wake_ = std::move(w);
  thread_ = std::thread([this] { Serve(); });
  LOG_INFO(kScope, "CNI endpoint listening", {{"socket", path_}});
  return absl::OkStatus();
}

void CniServer::Stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  thread_.join();
  listen_.reset();
  ::unlink(path_.c_str());
}

void CniServer::Serve() {
  for (;;) {
    pollfd fds[2] = {{wake_.get(), POLLIN, 0}, {listen_.get(), POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || fds[0].revents) return;
    UniqueFd c(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (c) Answer(c.get());
  }
}

void CniServer::Answer(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, kRequestTimeoutMs) <= 0) return;  // connected and said nothing
  std::string buf(cni::kMaxMessage, '\0');
  ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_TRUNC);
  if (n <= 0) return;
  cni::Reply reply;
  cni::Request req;
  std::string err =
      static_cast<size_t>(n) > buf.size()
          ? absl::StrCat("weft-cni request of ", n, " bytes exceeds the limit of ",
                         cni::kMaxMessage)
          : cni::DecodeRequest(std::string_view(buf.data(), static_cast<size_t>(n)), &req);
  if (!err.empty()) {
    if (on_bad_) on_bad_();
    LOG_WARN(kScope, "bad CNI request", {{"error", err}});
    reply = cni::Reply::Error(cni::kErrDecode, err);
  } else {
    reply = handler_(req);
  }
  std::string out = cni::EncodeReply(reply);
  if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL) < 0)
    LOG_WARN(kScope, "could not answer the CNI plugin (it went away)",
             {{"error", std::strerror(errno)}});
}

}  // namespace weft::agent
