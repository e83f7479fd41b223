#include "bench/procfs.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file.h"

namespace weft::bench {

namespace {

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
