// Opening a pod's network namespace by path (issue 13, hole 1): only a network namespace that is
// neither the caller's own nor the host's, and never blocking on what the path names.
#include "common/netns.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

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

}  // namespace
}  // namespace weft
