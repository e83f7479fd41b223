#include "bench/procfs.h"

#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace weft::bench {

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot read ", path, " (process gone?)"));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The value after "<key>:" on the first line starting with key, stripped.
std::string Field(const std::string& text, const std::string& key) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, key)) continue;
    line = absl::StripLeadingAsciiWhitespace(line);
    if (!absl::ConsumePrefix(&line, ":")) continue;
    return std::string(absl::StripAsciiWhitespace(line));
  }
  return "";
}

}  // namespace

absl::StatusOr<int64_t> VmRssBytes(pid_t pid) {
  auto text = ReadFile(absl::StrCat("/proc/", pid, "/status"));
  if (!text.ok()) return text.status();
  std::string v = Field(*text, "VmRSS");  // "1234 kB"
  int64_t kib = 0;
  if (!absl::SimpleAtoi(absl::StripSuffix(v, " kB"), &kib))
    return absl::InternalError(absl::StrCat("no VmRSS in /proc/", pid, "/status"));
  return kib * 1024;
}

absl::StatusOr<double> CpuSeconds(pid_t pid) {
  auto text = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!text.ok()) return text.status();
  // The command name (field 2) may contain spaces and parentheses: fields are counted from
  // after its last ')'. utime and stime are fields 14 and 15, i.e. the 12th and 13th after it.
  size_t close = text->rfind(')');
  if (close == std::string::npos)
    return absl::InternalError(absl::StrCat("malformed /proc/", pid, "/stat"));
  std::vector<absl::string_view> f =
      absl::StrSplit(absl::string_view(*text).substr(close + 2), ' ', absl::SkipEmpty());
  int64_t utime = 0, stime = 0;
  if (f.size() < 13 || !absl::SimpleAtoi(f[11], &utime) || !absl::SimpleAtoi(f[12], &stime))
    return absl::InternalError(absl::StrCat("malformed /proc/", pid, "/stat"));
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

MachineInfo ReadMachineInfo() {
  MachineInfo m;
  m.nproc = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  utsname u{};
  if (uname(&u) == 0) m.kernel = absl::StrCat(u.sysname, " ", u.release, " ", u.version);
  if (auto c = ReadFile("/proc/cpuinfo"); c.ok()) m.cpu_model = Field(*c, "model name");
  if (m.cpu_model.empty()) m.cpu_model = "unknown";
  if (auto mi = ReadFile("/proc/meminfo"); mi.ok())
    (void)absl::SimpleAtoi(absl::StripSuffix(Field(*mi, "MemTotal"), " kB"), &m.mem_total_kib);
  if (auto la = ReadFile("/proc/loadavg"); la.ok()) {
    std::vector<absl::string_view> f = absl::StrSplit(*la, ' ');
    if (f.size() >= 3) m.loadavg = absl::StrCat(f[0], " ", f[1], " ", f[2]);
  }
  return m;
}

absl::StatusOr<int64_t> RaiseFdLimit(int64_t want) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return absl::InternalError(absl::StrCat("getrlimit: ", std::strerror(errno)));
  if (rl.rlim_cur != RLIM_INFINITY && static_cast<int64_t>(rl.rlim_cur) >= want)
    return static_cast<int64_t>(rl.rlim_cur);
  rlimit next = rl;
  next.rlim_cur = static_cast<rlim_t>(want);
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < next.rlim_cur) next.rlim_max = next.rlim_cur;
  if (setrlimit(RLIMIT_NOFILE, &next) != 0) {
    // Not allowed to raise the hard limit: take what the hard limit allows.
    next = rl;
    next.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &next) != 0)
      return absl::InternalError(absl::StrCat("setrlimit(RLIMIT_NOFILE): ", std::strerror(errno)));
  }
  return static_cast<int64_t>(next.rlim_cur);
}

}  // namespace weft::bench
