#include "bench/accounting.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "gtest/gtest.h"

namespace weft::bench {
namespace {

double ProcessCpu() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

void Burn(double seconds) {
  double start = ProcessCpu();
  volatile uint64_t x = 0;
  while (ProcessCpu() - start < seconds) {
    for (int i = 0; i < 10000; ++i) x = x + i;
  }
}

// A forked child that waits for "go" on a pipe, runs `body` and reports each step by writing a
// byte. Forked before any sampler thread exists; the bodies use no malloc.
class Child {
 public:
  template <typename F>
  explicit Child(F body) {
    EXPECT_EQ(pipe(go_), 0);
    EXPECT_EQ(pipe(done_), 0);
    pid_ = fork();
    if (pid_ == 0) {
      char c;
      if (read(go_[0], &c, 1) != 1) _exit(1);
      body(done_[1]);
      for (;;) pause();
    }
    close(go_[0]);
    close(done_[1]);
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(go_[1]);
    close(done_[0]);
  }
  pid_t pid() const { return pid_; }
  void Go() { ASSERT_EQ(write(go_[1], "g", 1), 1); }
  // Waits (at most 20 s) for the child's next step byte.
  bool WaitStep() {
    for (int i = 0; i < 2000; ++i) {
      char c;
      ssize_t n = read(done_[0], &c, 1);
      if (n == 1) return true;
      if (n == 0) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  void Reap() {
    waitpid(pid_, nullptr, 0);
    reaped_ = true;
  }

 private:
  int go_[2] = {-1, -1};
  int done_[2] = {-1, -1};
  pid_t pid_ = -1;
  bool reaped_ = false;
};

void Step(int fd) {
  (void)!write(fd, "s", 1);
}

const GroupUsage* FindGroup(const RunUsage& u, const std::string& name) {
  for (const auto& g : u.groups)
    if (g.name == name) return &g;
  return nullptr;
}

TEST(AccountingTest, BurnerCpuAndHostCpu) {
  Child burner([](int fd) {
    Burn(1.0);
    Step(fd);
  });
  Child idle([](int fd) { Step(fd); });
  ResourceSampler sampler({{"mesh", {burner.pid()}, "", false}, {"apps", {idle.pid()}, "", false}});
  ASSERT_TRUE(sampler.Start().ok());
  burner.Go();
  idle.Go();
  ASSERT_TRUE(burner.WaitStep());
  ASSERT_TRUE(idle.WaitStep());
  auto u = sampler.Stop();
  ASSERT_TRUE(u.ok()) << u.status();
  const GroupUsage* mesh = FindGroup(*u, "mesh");
  ASSERT_NE(mesh, nullptr);
  EXPECT_NEAR(mesh->cpu_seconds, 1.0, 0.3);
  ASSERT_EQ(mesh->processes.size(), 1u);
  EXPECT_EQ(mesh->processes[0].pid, burner.pid());
  EXPECT_FALSE(mesh->processes[0].exited);
  const GroupUsage* apps = FindGroup(*u, "apps");
  ASSERT_NE(apps, nullptr);
  EXPECT_LT(apps->cpu_seconds, 0.2);
  EXPECT_GT(u->samples, 2);
  EXPECT_TRUE(u->errors.empty());

  // The host's CPU deltas cover every CPU for the whole run (tick granularity aside).
  double expect = u->elapsed_seconds * u->nproc;
  EXPECT_NEAR(u->host.Total(), expect, 0.25 * expect + 0.05 * u->nproc);
  EXPECT_GE(u->host.user + u->host.system, 0.7);  // at least the burner
  EXPECT_GE(u->host.softirq, 0.0);
  double frac = u->host_fraction.user + u->host_fraction.system + u->host_fraction.idle +
                u->host_fraction.iowait + u->host_fraction.irq + u->host_fraction.softirq +
                u->host_fraction.steal;
  EXPECT_NEAR(frac, 1.0, 1e-6);

  nlohmann::json j = ToJson(*u);
  EXPECT_TRUE(j["host_cpu_seconds"].contains("softirq"));
  EXPECT_EQ(j["groups"][0]["name"], "mesh");
  EXPECT_NEAR(j["groups"][0]["cpu_seconds"].get<double>(), mesh->cpu_seconds, 1e-9);
}

TEST(AccountingTest, PeakAndMeanRss) {
  constexpr size_t kSize = 64 << 20;
  Child mem([](int fd) {
    void* p = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) _exit(2);
    memset(p, 1, kSize);
    Step(fd);
    usleep(500 * 1000);
    munmap(p, kSize);
    Step(fd);
  });
  ResourceSampler sampler({{"apps", {mem.pid()}, "", true}}, std::chrono::milliseconds(50));
  ASSERT_TRUE(sampler.Start().ok());
  mem.Go();
  ASSERT_TRUE(mem.WaitStep());
  ASSERT_TRUE(mem.WaitStep());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto u = sampler.Stop();
  ASSERT_TRUE(u.ok()) << u.status();
  const GroupUsage* apps = FindGroup(*u, "apps");
  ASSERT_NE(apps, nullptr);
  ASSERT_EQ(apps->processes.size(), 1u);
  const ProcessUsage& p = apps->processes[0];
  EXPECT_GE(p.peak_rss_bytes, int64_t{60} << 20);
  EXPECT_LT(p.mean_rss_bytes, static_cast<double>(p.peak_rss_bytes));
  EXPECT_GT(p.mean_rss_bytes, 0);
  EXPECT_GE(apps->peak_rss_bytes, int64_t{60} << 20);
  EXPECT_LT(apps->mean_rss_bytes, static_cast<double>(apps->peak_rss_bytes));
  // The 64 MiB are private anonymous pages: all of them in PSS and in the anonymous part.
  EXPECT_GE(p.peak_pss_bytes, int64_t{60} << 20);
  EXPECT_GE(p.peak_anon_bytes, int64_t{60} << 20);
  EXPECT_GT(p.mean_pss_bytes, 0);
  EXPECT_GE(apps->peak_pss_bytes, int64_t{60} << 20);
  EXPECT_LE(apps->mean_pss_bytes, apps->mean_rss_bytes);
}

TEST(AccountingTest, ExitedProcessKeepsCpuAndDescendantsCount) {
  // The group names only `parent`; its child burns and exits mid-run.
  Child parent([](int fd) {
    pid_t kid = fork();
    if (kid == 0) {
      Burn(0.6);
      _exit(0);
    }
    waitpid(kid, nullptr, 0);
    Step(fd);
  });
  ResourceSampler sampler({{"mesh", {parent.pid()}, "", true}}, std::chrono::milliseconds(20));
  ASSERT_TRUE(sampler.Start().ok());
  parent.Go();
  ASSERT_TRUE(parent.WaitStep());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto u = sampler.Stop();
  ASSERT_TRUE(u.ok()) << u.status();
  const GroupUsage* mesh = FindGroup(*u, "mesh");
  ASSERT_NE(mesh, nullptr);
  ASSERT_EQ(mesh->processes.size(), 2u);
  const ProcessUsage* kid = nullptr;
  for (const auto& p : mesh->processes)
    if (p.pid != parent.pid()) kid = &p;
  ASSERT_NE(kid, nullptr);
  EXPECT_TRUE(kid->exited);
  EXPECT_GE(kid->cpu_seconds, 0.4);
  EXPECT_GE(mesh->cpu_seconds, 0.4);
}

TEST(AccountingTest, BadPidsAndCgroupsAreReportedNotFatal) {
  Child ok([](int fd) { Step(fd); });
  ResourceSampler sampler({{"mesh", {0, 999999999, ok.pid()}, "/nonexistent-weft-cgroup", true}});
  ASSERT_TRUE(sampler.Start().ok());
  ok.Go();
  ASSERT_TRUE(ok.WaitStep());
  auto u = sampler.Stop();
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->errors.size(), 3u);
  std::string all;
  for (const auto& e : u->errors) all += e + "\n";
  EXPECT_NE(all.find("999999999"), std::string::npos) << all;
  EXPECT_NE(all.find("cgroup.procs"), std::string::npos) << all;
  const GroupUsage* mesh = FindGroup(*u, "mesh");
  ASSERT_NE(mesh, nullptr);
  EXPECT_EQ(mesh->processes.size(), 1u);
  EXPECT_FALSE(sampler.Stop().ok());  // not running any more
}

// The sampler reads only <dir>/cgroup.procs, so a directory holding that file stands in for a
// cgroup v2 directory (creating a real one needs root and a cgroup2 mount).
TEST(AccountingTest, CgroupProcsMembersAreSampled) {
  char tmpl[] = "/tmp/weft-acct-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  Child burner([](int fd) {
    Burn(0.5);
    Step(fd);
  });
  {
    std::ofstream f(dir + "/cgroup.procs");
    f << burner.pid() << "\n";
  }
  ResourceSampler sampler({{"apps", {}, dir, false}});
  ASSERT_TRUE(sampler.Start().ok());
  burner.Go();
  ASSERT_TRUE(burner.WaitStep());
  auto u = sampler.Stop();
  unlink((dir + "/cgroup.procs").c_str());
  rmdir(dir.c_str());
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_TRUE(u->errors.empty());
  const GroupUsage* apps = FindGroup(*u, "apps");
  ASSERT_NE(apps, nullptr);
  ASSERT_EQ(apps->processes.size(), 1u);
  EXPECT_EQ(apps->processes[0].pid, burner.pid());
  EXPECT_NEAR(apps->cpu_seconds, 0.5, 0.15);
}

TEST(AccountingTest, StartTwiceAndStopWithoutStartFail) {
  ResourceSampler a({});
  EXPECT_EQ(a.Stop().status().code(), absl::StatusCode::kFailedPrecondition);
  auto st = a.Start();
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(a.Start().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace weft::bench
