#include "common/admin/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file.h"

namespace weft {
namespace {

prometheus::MetricFamily One(std::string name, std::string help, prometheus::MetricType type,
                             double value) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
  return f;
}

// Entries of /proc/self/fd, without the descriptor that lists them.
std::optional<double> OpenFds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return std::nullopt;
  int n = 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n - 1;
}

// The boot time (btime of /proc/stat), seconds since the epoch.
std::optional<double> BootTime() {
  auto stat = ReadFile("/proc/stat");
  if (!stat.ok()) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*stat, '\n')) {
    if (absl::ConsumePrefix(&line, "btime ")) {
      double v = 0;
      if (absl::SimpleAtod(line, &v)) return v;
    }
  }
  return std::nullopt;
}

// /proc/self/stat (proc(5)): the fields after the command name, which is in parentheses and may
// itself contain spaces and parentheses; fields[0] is field 3 (state).
void AddStatFamilies(std::vector<prometheus::MetricFamily>* out) {
  auto stat = ReadFile("/proc/self/stat");
  if (!stat.ok()) return;
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return;
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(*stat).substr(close + 1), ' ', absl::SkipWhitespace());
  auto field = [&](size_t proc_index, double* v) {  // proc(5) numbers fields from 1
    return proc_index - 3 < fields.size() &&
           absl::SimpleAtod(absl::StripAsciiWhitespace(fields[proc_index - 3]), v);
  };
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  double utime = 0, stime = 0, start = 0, vsize = 0, rss = 0;
  if (ticks > 0 && field(14, &utime) && field(15, &stime)) {
    out->push_back(One("process_cpu_seconds_total",
                       "Total user and system CPU time spent in seconds.",
                       prometheus::MetricType::Counter, (utime + stime) / ticks));
  }
  if (field(23, &vsize)) {
    out->push_back(One("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                       prometheus::MetricType::Gauge, vsize));
  }
  if (field(24, &rss)) {
    out->push_back(One("process_resident_memory_bytes", "Resident memory size in bytes.",
                       prometheus::MetricType::Gauge,
                       rss * static_cast<double>(::sysconf(_SC_PAGESIZE))));
  }
  std::optional<double> boot = BootTime();
  if (ticks > 0 && boot && field(22, &start)) {
    out->push_back(One("process_start_time_seconds",
                       "Start time of the process since unix epoch in seconds.",
                       prometheus::MetricType::Gauge, *boot + start / ticks));
  }
}

}  // namespace

std::vector<prometheus::MetricFamily> CollectProcessMetrics() {
  std::vector<prometheus::MetricFamily> out;
  AddStatFamilies(&out);
  if (std::optional<double> fds = OpenFds()) {
    out.push_back(One("process_open_fds", "Number of open file descriptors.",
                      prometheus::MetricType::Gauge, *fds));
  }
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    out.push_back(One("process_max_fds", "Maximum number of open file descriptors.",
                      prometheus::MetricType::Gauge, static_cast<double>(lim.rlim_cur)));
  }
  return out;
}

}  // namespace weft
