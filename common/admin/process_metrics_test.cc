#include "common/admin/process_metrics.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace weft {
namespace {

std::map<std::string, double> Values() {
  std::map<std::string, double> out;
  for (const auto& f : CollectProcessMetrics()) {
    EXPECT_EQ(f.metric.size(), 1u) << f.name;
    if (f.metric.empty()) continue;
    out[f.name] = f.type == prometheus::MetricType::Counter ? f.metric[0].counter.value
                                                            : f.metric[0].gauge.value;
  }
  return out;
}

TEST(ProcessMetrics, ReportsThisProcess) {
  auto v = Values();
  for (const char* name : {"process_cpu_seconds_total", "process_open_fds", "process_max_fds",
                           "process_resident_memory_bytes", "process_virtual_memory_bytes",
                           "process_start_time_seconds"}) {
    EXPECT_EQ(v.count(name), 1u) << name;
  }
  rlimit lim{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &lim), 0);
  EXPECT_EQ(v["process_max_fds"], static_cast<double>(lim.rlim_cur));
  EXPECT_GT(v["process_resident_memory_bytes"], 1 << 20);  // a gtest binary is over 1 MiB
  EXPECT_GE(v["process_virtual_memory_bytes"], v["process_resident_memory_bytes"]);
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LE(v["process_start_time_seconds"], now + 1);
  EXPECT_GT(v["process_start_time_seconds"], now - 3600) << "this test started over an hour ago?";
}

TEST(ProcessMetrics, OpenFdsFollowsDescriptors) {
  const double before = Values()["process_open_fds"];
  std::vector<UniqueFd> fds;
  for (int i = 0; i < 5; ++i) fds.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(Values()["process_open_fds"], before + 5);
  fds.clear();
  EXPECT_EQ(Values()["process_open_fds"], before);
}

TEST(ProcessMetrics, CpuSecondsGrowWithWork) {
  const double before = Values()["process_cpu_seconds_total"];
  const auto start = std::chrono::steady_clock::now();
  volatile uint64_t x = 0;
  // Spin until the counter moves (its resolution is one clock tick, 10 ms).
  while (Values()["process_cpu_seconds_total"] <= before) {
    for (int i = 0; i < 1000000; ++i) x = x + static_cast<uint64_t>(i);
    ASSERT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  }
}

}  // namespace
}  // namespace weft
