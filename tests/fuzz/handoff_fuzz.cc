// libFuzzer target for the agent -> ztunnel handoff protocol (ztunnel/inpod/handoff_server.h):
// a real HandoffServer on a Unix SOCK_SEQPACKET socket, fed datagrams by a client that plays a
// (possibly hostile) agent. Each datagram must be answered with exactly one ack, and the server
// must neither crash nor keep any descriptor it was passed.
//
// Input: records (records.h), each one datagram. Flags: bits 0-1 = how many descriptors to
// attach (0..3), bit 2 = attach /dev/null instead of a netns fd, bit 3 = send an oversized
// datagram (payload padded past kMaxHandoffMessage), bit 4 = hang up before this datagram and
// reconnect (a new agent connection: KeepWorkload/reconcile across connections).
// One server per input (it holds pods across connections): inputs are independent.
#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "google/protobuf/stubs/logging.h"
#include "tests/fuzz/records.h"
#include "weft/inpod/v1/handoff.pb.h"
#include "ztunnel/inpod/handoff_server.h"

namespace {

constexpr size_t kMaxInput = 256 * 1024;
constexpr size_t kMaxDatagrams = 24;

std::string SocketPath() {
  static const std::string path = [] {
    char dir[] = "/tmp/weft-fuzz-handoff.XXXXXX";
    WEFT_CHECK(::mkdtemp(dir) != nullptr);
    return std::string(dir) + "/ztunnel.sock";
  }();
  return path;
}

int OpenFds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  WEFT_CHECK(d != nullptr);
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;  // including the directory's own fd, both times
}

weft::UniqueFd Connect(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  WEFT_CHECK(fd >= 0);
  weft::UniqueFd c(fd);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  int rc;
  do {
    rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } while (rc != 0 && errno == EINTR);
  WEFT_CHECK(rc == 0);
  timeval tv{10, 0};  // an ack that does not come in 10 s is a hang: fail loudly below
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return c;
}

// Sends one datagram with `nfds` descriptors attached; false if the server hung up.
bool Send(int sock, const std::string& payload, int nfds, bool devnull) {
  std::vector<weft::UniqueFd> fds;
  for (int i = 0; i < nfds; ++i) {
    int fd = devnull ? ::open("/dev/null", O_RDONLY | O_CLOEXEC)
                     : ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    WEFT_CHECK(fd >= 0);
    fds.emplace_back(fd);
  }
  iovec iov{const_cast<char*>(payload.data()), payload.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 3)];
  if (nfds > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    for (int i = 0; i < nfds; ++i) {
      int f = fds[i].get();
      std::memcpy(CMSG_DATA(c) + i * sizeof(int), &f, sizeof f);
    }
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n >= 0;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  weft::log::SetLevel(weft::log::Level::kError);  // every bad datagram logs a warning
  google::protobuf::SetLogHandler(nullptr);       // and protobuf about non-UTF-8 strings
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return 0;
  const int fds_before = OpenFds();
  {
    weft::ztunnel::HandoffServer::Callbacks cb;
    cb.add = [](const weft::inpod::v1::AddWorkload& add, weft::UniqueFd netns) -> absl::Status {
      WEFT_CHECK(netns.valid());
      if (add.uid().find('!') != std::string::npos)  // the proxy refusing a pod: a NACK
        return absl::FailedPreconditionError("refused");
      return absl::OkStatus();
    };
    cb.del = [](const std::string&) {};
    cb.on_bad_input = [](std::string_view) {};
    weft::ztunnel::HandoffServer server(SocketPath(), cb);
    WEFT_CHECK(server.Start().ok());
    weft::UniqueFd sock = Connect(SocketPath());
    for (const auto& rec : weft::fuzz::SplitRecords(data, size, kMaxDatagrams)) {
      if (rec.flags & 0x10) sock = Connect(SocketPath());
      std::string payload(rec.payload);
      if (rec.flags & 0x08) payload.resize(weft::ztunnel::kMaxHandoffMessage + 1, '\0');
      if (!Send(sock.get(), payload, rec.flags & 0x03, rec.flags & 0x04)) break;
      // Exactly one ack per datagram, and it parses.
      char buf[4096];
      ssize_t n;
      do {  // libFuzzer's -timeout timer interrupts blocking calls with SIGALRM
        n = ::recv(sock.get(), buf, sizeof buf, 0);
      } while (n < 0 && errno == EINTR);
      if (n < 0) {
        std::fprintf(stderr, "handoff: no ack: %s\n", std::strerror(errno));
        std::abort();
      }
      if (n == 0) break;  // the server dropped the connection (allowed: it is a hostile peer)
      weft::inpod::v1::WorkloadResponse resp;
      WEFT_CHECK(resp.ParseFromArray(buf, static_cast<int>(n)) && resp.has_ack());
    }
    sock.reset();
    server.Stop();
  }
  // Every passed descriptor was closed by the server (Stop joined its thread).
  const int fds_after = OpenFds();
  if (fds_after != fds_before) {
    std::fprintf(stderr, "handoff: %d descriptors leaked\n", fds_after - fds_before);
    std::abort();
  }
  return 0;
}
