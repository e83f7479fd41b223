#include "bench/bpf_stats.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/unique_fd.h"

#ifdef WEFT_BENCH_HAVE_LIBBPF
#include <bpf/bpf.h>
#include <linux/bpf.h>
#endif

namespace weft::bench {

namespace {

constexpr const char* kSysctl = "/proc/sys/kernel/bpf_stats_enabled";

// The value the signal handler writes back ('0'..'9'), 0 when there is nothing to restore.
std::atomic<char> g_restore_value{0};

absl::Status WriteSysctl(int v) {
  std::ofstream f(kSysctl);
  f << v;
  f.close();
  if (!f) return absl::PermissionDeniedError(absl::StrCat("cannot write ", kSysctl));
  return absl::OkStatus();
}

#ifdef WEFT_BENCH_HAVE_LIBBPF
std::string ProgTypeName(uint32_t t) {
  switch (t) {
    case BPF_PROG_TYPE_SK_LOOKUP:
      return "sk_lookup";
    case BPF_PROG_TYPE_CGROUP_SOCK_ADDR:
      return "cgroup_sock_addr";
    case BPF_PROG_TYPE_SOCK_OPS:
      return "sock_ops";
    case BPF_PROG_TYPE_SK_SKB:
      return "sk_skb";
    case BPF_PROG_TYPE_SK_MSG:
      return "sk_msg";
    case BPF_PROG_TYPE_CGROUP_SOCK:
      return "cgroup_sock";
    default:
      return absl::StrCat("type ", t);
  }
}
#endif

}  // namespace

absl::StatusOr<BpfStatsEnabler> BpfStatsEnabler::Enable() {
  std::ifstream in(kSysctl);
  int prev = -1;
  if (!(in >> prev) || prev < 0 || prev > 9)
    return absl::UnavailableError(
        absl::StrCat("cannot read ", kSysctl, " (kernel without BPF run-time statistics?)"));
  g_restore_value.store(static_cast<char>('0' + prev));
  if (auto st = WriteSysctl(1); !st.ok()) {
    g_restore_value.store(0);
    return st;
  }
  return BpfStatsEnabler(prev);
}

BpfStatsEnabler::~BpfStatsEnabler() {
  if (previous_ < 0) return;
  (void)WriteSysctl(previous_);
  g_restore_value.store(0);
}

void RestoreBpfStatsFromSignal() {
  char v = g_restore_value.load();
  if (v == 0) return;
  int fd = open(kSysctl, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)!write(fd, &v, 1);
  close(fd);
}

bool HaveLibbpf() {
#ifdef WEFT_BENCH_HAVE_LIBBPF
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::map<uint32_t, BpfProgStats>> ListBpfPrograms(const std::string& name_prefix) {
#ifdef WEFT_BENCH_HAVE_LIBBPF
  std::map<uint32_t, BpfProgStats> out;
  uint32_t id = 0;
  while (true) {
    if (bpf_prog_get_next_id(id, &id) != 0) {
      if (errno == ENOENT) break;
      return absl::InternalError(absl::StrCat("bpf_prog_get_next_id: ", std::strerror(errno)));
    }
    UniqueFd fd(bpf_prog_get_fd_by_id(id));
    if (!fd) continue;  // unloaded meanwhile
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    // bpf_obj_get_info_by_fd is what libbpf 1.1 (Debian 12) offers; bpf_prog_get_info_by_fd
    // (libbpf >= 1.2) is the same call with a typed pointer.
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) continue;
    std::string name(info.name, strnlen(info.name, sizeof(info.name)));
    if (name.rfind(name_prefix, 0) != 0) continue;
    out[id] = BpfProgStats{id, name, ProgTypeName(info.type), info.run_time_ns, info.run_cnt};
  }
  return out;
#else
  (void)name_prefix;
  return absl::UnimplementedError(
      "weft-bench-suite was built without libbpf (apt-get install "
      "libbpf-dev and rebuild) so it cannot read BPF program stats");
#endif
}

std::set<uint32_t> ProgIdsOfPinnedLinks(const std::string& dir) {
  std::set<uint32_t> ids;
#ifdef WEFT_BENCH_HAVE_LIBBPF
  DIR* d = opendir(dir.c_str());
  if (!d) return ids;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    UniqueFd fd(bpf_obj_get((dir + "/" + e->d_name).c_str()));
    if (!fd) continue;
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) == 0 && info.prog_id)
      ids.insert(info.prog_id);
  }
  closedir(d);
#else
  (void)dir;
#endif
  return ids;
}

}  // namespace weft::bench
