// The listener takeover of hitless upgrades (takeover.h): a predecessor's TakeoverServer and a
// successor's TakeoverClient in one process, over a real SOCK_SEQPACKET socket, handing over
// real listening TCP sockets on loopback.
#include "ztunnel/inpod/takeover.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "common/net.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace weft::ztunnel {
namespace {

using namespace std::chrono_literals;
using weft::inpod::v1::ListenerRole;

// A listening socket on 127.0.0.1 (port 0), as ztunnel's listeners are (SO_REUSEPORT).
UniqueFd Listener() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::listen(fd.get(), 16), 0);
  return fd;
}

// A client connection that the kernel completes into `l`'s accept queue (nobody accepts yet).
UniqueFd Queued(int l) {
  auto addr = LocalAddress(l);
  EXPECT_TRUE(addr.ok());
  UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  socklen_t len = addr->ToSockaddr(&ss);
  EXPECT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
  return c;
}

ino_t Inode(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

// What a client that was queued sees once its listener is gone or someone accepted: a byte
// from the acceptor, or the reset.
std::string ClientSees(int c) {
  timeval tv{5, 0};
  ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char b;
  ssize_t n = ::recv(c, &b, 1, 0);
  if (n == 1) return std::string(1, b);
  if (n == 0) return "eof";
  return errno == ECONNRESET ? "reset" : std::strerror(errno);
}

class TakeoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = TakeoverSocketPath(tmp_.path() + "/zt.sock");
    netns_.reset(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    hbone_ = Listener();
    metrics_ = Listener();
  }

  TakeoverServer::Callbacks Callbacks() {
    TakeoverServer::Callbacks cb;
    cb.on_hello = [this](int64_t) { hellos_++; };
    cb.snapshot = [this] {
      TakeoverSnapshot s;
      TakeoverSnapshot::Pod p;
      p.add.set_uid("ns/pod");
      p.add.mutable_info()->set_name("pod");
      p.netns = netns_.get();
      p.listeners = {{weft::inpod::v1::LISTENER_HBONE, hbone_.get()}};
      s.pods.push_back(p);
      s.admin = {{weft::inpod::v1::LISTENER_METRICS, metrics_.get()}};
      return s;
    };
    cb.commit = [this](std::chrono::milliseconds asked) {
      asked_ = asked;
      commits_++;
      return asked.count() > 0 ? asked : std::chrono::milliseconds(30000);
    };
    cb.on_abort = [this] { aborts_++; };
    return cb;
  }

  weft::testing::TempDir tmp_;
  std::string path_;
  UniqueFd netns_, hbone_, metrics_;
  std::atomic<int> hellos_{0}, commits_{0}, aborts_{0};
  std::chrono::milliseconds asked_{-1};
};

TEST_F(TakeoverTest, NoPredecessorIsNotFound) {
  auto c = TakeoverClient::Connect(path_, 0ms);
  EXPECT_TRUE(absl::IsNotFound(c.status())) << c.status();
}

// The successor gets the very sockets (same inode), so a connection queued in the accept queue
// before the handover is accepted by the successor after the predecessor closed its descriptor.
TEST_F(TakeoverTest, SuccessorGetsTheSameSocketsWithTheirAcceptQueues) {
  TakeoverServer server(path_, Callbacks());
  ASSERT_TRUE(server.Start().ok());
  UniqueFd queued = Queued(hbone_.get());

  auto c = TakeoverClient::Connect(path_, 5000ms);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->predecessor_pid(), ::getpid());
  EXPECT_TRUE(server.pending());
  EXPECT_EQ(hellos_, 1);
  auto taken = (*c)->Take();
  ASSERT_TRUE(taken.ok()) << taken.status();
  ASSERT_EQ(taken->pods.size(), 1u);
  const auto& pod = taken->pods[0];
  EXPECT_EQ(pod.add.uid(), "ns/pod");
  EXPECT_EQ(pod.add.info().name(), "pod");
  EXPECT_EQ(Inode(pod.netns.get()), Inode(netns_.get()));
  ASSERT_EQ(pod.listeners.size(), 1u);
  EXPECT_EQ(pod.listeners[0].first, weft::inpod::v1::LISTENER_HBONE);
  EXPECT_EQ(Inode(pod.listeners[0].second.get()), Inode(hbone_.get()));
  ASSERT_EQ(taken->admin.size(), 1u);
  EXPECT_EQ(taken->admin[0].first, weft::inpod::v1::LISTENER_METRICS);
  EXPECT_EQ(Inode(taken->admin[0].second.get()), Inode(metrics_.get()));

  auto drain = (*c)->Commit();
  ASSERT_TRUE(drain.ok()) << drain.status();
  EXPECT_EQ(*drain, 5000ms);
  EXPECT_EQ(asked_, 5000ms);
  EXPECT_EQ(commits_, 1);
  EXPECT_TRUE(server.committed());
  EXPECT_FALSE(server.pending());
  EXPECT_EQ(aborts_, 0);

  // The predecessor lets go of its descriptor; the queued connection is the successor's.
  hbone_.reset();
  int a = ::accept4(pod.listeners[0].second.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  ASSERT_GE(a, 0) << std::strerror(errno);
  UniqueFd accepted(a);
  ASSERT_EQ(::send(accepted.get(), "k", 1, MSG_NOSIGNAL), 1);
  EXPECT_EQ(ClientSees(queued.get()), "k");

  // Once handed over, nobody else takes over from this server.
  auto again = TakeoverClient::Connect(path_, 0ms);
  EXPECT_TRUE(absl::IsFailedPrecondition(again.status())) << again.status();
}

// Why not SO_REUSEPORT alone: a second socket on the same port shares new connections, but the
// ones already queued on the old socket die with it.
TEST_F(TakeoverTest, WithASeparateReusePortSocketTheQueuedConnectionIsLost) {
  auto port = LocalAddress(hbone_.get());
  ASSERT_TRUE(port.ok());
  UniqueFd queued = Queued(hbone_.get());
  hbone_.reset();  // the old process stops: closes its listener
  EXPECT_EQ(ClientSees(queued.get()), "reset");
}

TEST_F(TakeoverTest, ASuccessorThatLeavesBeforeCommitAbortsAndASecondOneWaitsItsTurn) {
  TakeoverServer server(path_, Callbacks());
  ASSERT_TRUE(server.Start().ok());
  {
    auto first = TakeoverClient::Connect(path_, 0ms);
    ASSERT_TRUE(first.ok()) << first.status();
    auto second = TakeoverClient::Connect(path_, 0ms);
    EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
    auto taken = (*first)->Take();
    ASSERT_TRUE(taken.ok()) << taken.status();
  }  // hangs up without Commit
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (aborts_ == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(aborts_, 1);
  EXPECT_EQ(commits_, 0);
  EXPECT_FALSE(server.pending());
  EXPECT_FALSE(server.committed());
  // The predecessor still holds its listener, and a new successor may try again.
  EXPECT_GT(Inode(hbone_.get()), 0u);
  auto retry = TakeoverClient::Connect(path_, 0ms);
  EXPECT_TRUE(retry.ok()) << retry.status();
}

TEST_F(TakeoverTest, StopRemovesOnlyItsOwnSocketFile) {
  auto first = std::make_unique<TakeoverServer>(path_, Callbacks());
  ASSERT_TRUE(first->Start().ok());
  TakeoverServer second(path_, Callbacks());  // a successor's, renamed over the path
  ASSERT_TRUE(second.Start().ok());
  first->Stop();
  EXPECT_TRUE(std::filesystem::exists(path_));
  auto c = TakeoverClient::Connect(path_, 0ms);
  EXPECT_TRUE(c.ok()) << c.status();
  second.Stop();
  EXPECT_FALSE(std::filesystem::exists(path_));
}

}  // namespace
}  // namespace weft::ztunnel
