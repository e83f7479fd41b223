// Opening a pod's network namespace by path (issue 13, hole 1): only a network namespace that is
// neither the caller's own nor the host's, and never blocking on what the path names.
#include "common/netns.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <sys/socket.h>

#include <filesystem>
#include <thread>

#include "common/file.h"
#include "common/testing/netns_fixture.h"
#include "common/testing/root.h"
#include "common/testing/temp_dir.h"

namespace weft {
namespace {

constexpr char kPrefix[] = "weft-nsck-";

TEST(PodNetns, APodsNamespaceOpens) {
  WEFT_SKIP_UNLESS_ROOT("creating a network namespace");
  testing::DeleteStaleNamespaces(kPrefix);
  testing::ScopedNetns pod(kPrefix);
  auto fd = OpenPodNetns(pod.path());
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(NetnsCookie(fd->get()).value_or(0), pod.cookie());
}

TEST(PodNetns, OwnAndHostNamespacesAreRefused) {
  WEFT_SKIP_UNLESS_ROOT("opening namespaces of /proc");
  for (const char* path : {"/proc/self/ns/net", "/proc/thread-self/ns/net"}) {
    auto fd = OpenPodNetns(path);
    ASSERT_FALSE(fd.ok()) << path;
    EXPECT_EQ(fd.status().code(), absl::StatusCode::kPermissionDenied) << fd.status();
    EXPECT_NE(fd.status().message().find("not a pod's"), std::string::npos) << fd.status();
  }
  // PID 1's: refused as the host's, or not even opened where PID 1 is out of reach (a sandbox's
  // init refuses ptrace access even to root).
  EXPECT_FALSE(OpenPodNetns("/proc/1/ns/net").ok());
}

// The host's namespace when the caller is elsewhere (ztunnel and the agent in local mode run in
// a node's namespace): a fake /proc whose self/ns/net is one namespace and 1/ns/net another.
TEST(PodNetns, HostNamespaceIsRefusedFromAnotherNamespace) {
  WEFT_SKIP_UNLESS_ROOT("creating a network namespace");
  testing::DeleteStaleNamespaces(kPrefix);
  testing::ScopedNetns node(kPrefix), host(kPrefix), pod(kPrefix);
  testing::TempDir proc;
  std::filesystem::create_directories(proc.path() + "/self/ns");
  std::filesystem::create_directories(proc.path() + "/1/ns");
  std::filesystem::create_symlink(node.path(), proc.path() + "/self/ns/net");
  std::filesystem::create_symlink(host.path(), proc.path() + "/1/ns/net");
  auto refused = CheckPodNetns(host.fd(), proc.path());
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->kind, "host_netns");
  auto own = CheckPodNetns(node.fd(), proc.path());
  ASSERT_TRUE(own.has_value());
  EXPECT_EQ(own->kind, "own_netns");
  EXPECT_FALSE(CheckPodNetns(pod.fd(), proc.path()).has_value());
}

// A FIFO (or anything else) in the namespace's place is refused at once: a blocking open would
// stall the agent's enrolment of every pod on the node.
TEST(PodNetns, FifoOrFileIsRefusedWithoutBlocking) {
  testing::TempDir dir;
  const std::string fifo = dir.path() + "/fifo", file = dir.path() + "/file";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ASSERT_TRUE(WriteFileAtomic(file, "x", 0600).ok());
  for (const std::string& path : {fifo, file}) {
    auto fd = OpenPodNetns(path);
    ASSERT_FALSE(fd.ok()) << path;
    EXPECT_NE(fd.status().message().find("not a network namespace"), std::string::npos)
        << fd.status();
  }
  EXPECT_FALSE(OpenPodNetns(dir.path() + "/missing").ok());
}

// ScopedNetns keeps the thread's own netns open after the first switch: sockets still land in the
// namespace asked for, a nested switch comes back to the outer pod's netns, and the thread ends
// each switch where it started.
TEST(ScopedNetns, SocketsLandWhereAskedAndTheThreadComesBack) {
  WEFT_SKIP_UNLESS_ROOT("creating a network namespace");
  testing::DeleteStaleNamespaces(kPrefix);
  testing::ScopedNetns a(kPrefix), b(kPrefix);
  auto own = NetnsCookie(-1);
  ASSERT_TRUE(own.ok()) << own.status();
  auto cookie_of = [](const UniqueFd& s) {
    uint64_t c = 0;
    socklen_t len = sizeof c;
    EXPECT_EQ(getsockopt(s.get(), SOL_SOCKET, SO_NETNS_COOKIE, &c, &len), 0);
    return c;
  };
  for (int i = 0; i < 3; ++i) {
    auto sa = SocketInNetns(a.fd(), AF_INET, SOCK_STREAM, 0);
    auto sb = SocketInNetns(b.fd(), AF_INET, SOCK_STREAM, 0);
    ASSERT_TRUE(sa.ok() && sb.ok());
    EXPECT_EQ(cookie_of(*sa), a.cookie());
    EXPECT_EQ(cookie_of(*sb), b.cookie());
    EXPECT_EQ(NetnsCookie(-1).value_or(0), *own);
  }
  absl::Status st = RunInNetns(a.fd(), [&]() -> absl::Status {
    auto inner = SocketInNetns(b.fd(), AF_INET, SOCK_STREAM, 0);
    if (!inner.ok()) return inner.status();
    EXPECT_EQ(cookie_of(*inner), b.cookie());
    EXPECT_EQ(NetnsCookie(-1).value_or(0), a.cookie());  // back in a, not in the thread's own
    return absl::OkStatus();
  });
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(NetnsCookie(-1).value_or(0), *own);
  // A new thread keeps its own descriptor.
  std::thread([&] {
    auto s = SocketInNetns(a.fd(), AF_INET, SOCK_STREAM, 0);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(cookie_of(*s), a.cookie());
    EXPECT_EQ(NetnsCookie(-1).value_or(0), *own);
  }).join();
}

}  // namespace
}  // namespace weft
