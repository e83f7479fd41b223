#include "bpf/bpffs.h"

#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace weft::bpf {

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

bool IsBpffs(std::string_view path) {
  struct statfs st {};
  if (::statfs(std::string(path).c_str(), &st) != 0) return false;
  return static_cast<unsigned long>(st.f_type) == static_cast<unsigned long>(BPF_FS_MAGIC);
}

absl::Status MakeDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir -p ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status EnsureBpffsMounted(std::string_view root) {
  std::string r(root);
  if (IsBpffs(r)) return absl::OkStatus();
  WEFT_RETURN_IF_ERROR(MakeDirs(r));
  if (::mount("bpf", r.c_str(), "bpf", 0, "mode=0700") != 0) {
    int err = errno;
    // A concurrent starter may have won the race.
    if (IsBpffs(r)) return absl::OkStatus();
    return absl::Status(
        err == EPERM ? absl::StatusCode::kPermissionDenied : absl::StatusCode::kUnavailable,
        absl::StrCat("mounting bpffs at ", r, ": ", std::strerror(err),
                     " (run as root with CAP_SYS_ADMIN, or mount it yourself: mount -t bpf bpf ", r,
                     ")"));
  }
  return absl::OkStatus();
}

}  // namespace weft::bpf

namespace weft::bpf {}  // namespace weft::bpf
