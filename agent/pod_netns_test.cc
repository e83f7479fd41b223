#include "agent/pod_netns.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "bpf/testing.h"
#include "common/testing/kernel_features.h"
#include "common/testing/netns_fixture.h"
#include "common/testing/root.h"

namespace weft::agent {
namespace {

constexpr char kUid[] = "5f0c6e2a-7b1d-4c4e-9d2a-0b1e2f3a4b5c";

// /proc/<pid>/cgroup as the kubelet leaves it, per cgroup driver and hierarchy mode.
TEST(PodNetnsTest, RecognisesBothCgroupDriversFromRecordedProcFiles) {
  const std::string cgroupfs_v2 =
      "0::/kubepods/besteffort/pod5f0c6e2a-7b1d-4c4e-9d2a-0b1e2f3a4b5c/"
      "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9\n";
  const std::string systemd_v2 =
      "0::/kubepods.slice/kubepods-burstable.slice/"
      "kubepods-burstable-pod5f0c6e2a_7b1d_4c4e_9d2a_0b1e2f3a4b5c.slice/"
      "cri-containerd-0a1b2c3d.scope\n";
  const std::string guaranteed_systemd =
      "0::/kubepods.slice/kubepods-pod5f0c6e2a_7b1d_4c4e_9d2a_0b1e2f3a4b5c.slice/"
      "cri-containerd-0a1b2c3d.scope\n";
  const std::string hybrid_v1 =
      "12:pids:/kubepods/burstable/pod5f0c6e2a-7b1d-4c4e-9d2a-0b1e2f3a4b5c/abc\n"
      "11:memory:/kubepods/burstable/pod5f0c6e2a-7b1d-4c4e-9d2a-0b1e2f3a4b5c/abc\n"
      "0::/\n";
  for (const auto* t : {&cgroupfs_v2, &systemd_v2, &guaranteed_systemd, &hybrid_v1}) {
    EXPECT_TRUE(CgroupTextMentionsPod(*t, kUid)) << *t;
  }
  // Another pod, a UID that is only a prefix, a non-kubepods slice with the same name, and the
  // UID somewhere in a container id: none of them is this pod.
  EXPECT_FALSE(CgroupTextMentionsPod(cgroupfs_v2, "5f0c6e2a-7b1d-4c4e-9d2a-0b1e2f3a4b5d"));
  EXPECT_FALSE(CgroupTextMentionsPod(
      "0::/kubepods/besteffort/pod5f0c6e2a-7b1d-4c4e-9d2a-0b1e2f3a4b5c0/x\n", kUid));
  EXPECT_FALSE(CgroupTextMentionsPod(
      "0::/user.slice/evil-pod5f0c6e2a_7b1d_4c4e_9d2a_0b1e2f3a4b5c.slice/x\n", kUid));
  EXPECT_FALSE(CgroupTextMentionsPod(
      "0::/system.slice/pod5f0c6e2a-7b1d-4c4e-9d2a-0b1e2f3a4b5c-x.scope\n", kUid));
  EXPECT_FALSE(CgroupTextMentionsPod("garbage without colons\n", kUid));
}

TEST(PodNetnsTest, BadUidIsRefusedWithAReason) {
  auto r = FindPodNetns("../../etc");
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_TRUE(absl::IsInvalidArgument(FindPodNetns("").status()));
}

// A child that joins `cgroup` (and `netns_fd` if >= 0) and sleeps until killed. Returns once
// the child is in place (it reports over a pipe after both steps); -1 if it is not.
pid_t SleepIn(const std::string& cgroup, int netns_fd) {
  int procs = ::open((cgroup + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
  if (procs < 0) return -1;
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) {
    ::close(procs);
    return -1;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ready[0]);
    if (::write(procs, "0", 1) != 1) ::_exit(1);
    if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) ::_exit(1);
    if (::write(ready[1], "r", 1) != 1) ::_exit(1);
    ::pause();
    ::_exit(0);
  }
  ::close(procs);
  ::close(ready[1]);
  char c = 0;
  ssize_t n;
  do {
    n = ::read(ready[0], &c, 1);  // EOF (0) when the child exited before it was ready
  } while (n < 0 && errno == EINTR);
  ::close(ready[0]);
  if (pid > 0 && n != 1) {
    ::waitpid(pid, nullptr, 0);
    return -1;
  }
  return pid;
}

void KillAndReap(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

bool SameInode(int a, int b) {
  struct stat sa, sb;
  return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_ino == sb.st_ino &&
         sa.st_dev == sb.st_dev;
}

TEST(PodNetnsTest, FindsTheNetnsOfARealProcessInAPodCgroupAndRefusesHostNetwork) {
  WEFT_SKIP_UNLESS_ROOT("cgroups, network namespaces");
  bpf::testing::DeleteStaleCgroups();
  bpf::testing::ScopedCgroup root;
  WEFT_SKIP_UNLESS_KERNEL_FEATURE(!root.path().empty(), "no cgroup v2 hierarchy mounted");
  // cgroupfs layout for the meshed pod, systemd layout for a hostNetwork pod.
  const std::string host_uid = "0000aaaa-1111-2222-3333-444455556666";
  std::vector<std::string> dirs = {
      root.path() + "/kubepods", root.path() + "/kubepods/besteffort",
      root.path() + "/kubepods/besteffort/pod" + kUid,
      root.path() + "/kubepods-besteffort-pod0000aaaa_1111_2222_3333_444455556666.slice"};
  for (const auto& d : dirs) ASSERT_EQ(::mkdir(d.c_str(), 0755), 0) << d;
  weft::testing::ScopedNetns ns("weft-podns-");
  ASSERT_GE(ns.fd(), 0);

  pid_t in_pod = SleepIn(dirs[2], ns.fd());
  pid_t host_net = SleepIn(dirs[3], -1);
  ASSERT_GT(in_pod, 0);
  ASSERT_GT(host_net, 0);
  auto found = FindPodNetns(kUid);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_TRUE(SameInode(found->get(), ns.fd())) << "found another netns than the pod's";

  auto host = FindPodNetns(host_uid);
  EXPECT_TRUE(absl::IsFailedPrecondition(host.status())) << host.status();
  auto none = FindPodNetns("deadbeef-0000-0000-0000-000000000000");
  EXPECT_TRUE(absl::IsNotFound(none.status())) << none.status();

  KillAndReap(in_pod);
  KillAndReap(host_net);
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) ::rmdir(it->c_str());
}

}  // namespace
}  // namespace weft::agent
