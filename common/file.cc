#include "common/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace weft {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoError(errno, absl::StrCat("opening ", path));
  std::string out;
  struct stat st {};
  if (::fstat(fd.get(), &st) == 0 && st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, absl::StrCat("reading ", path));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

absl::Status WriteFileAtomic(const std::string& path, std::string_view data, unsigned mode) {
  std::string tmp = path + ".tmpXXXXXX";
  // O_CLOEXEC: a child forked meanwhile by another thread must not hold the file open for
  // writing (exec of the renamed file, e.g. an installed binary, would fail with ETXTBSY).
  int fd = mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("creating temp file next to ", path));
  auto fail = [&](std::string_view what) {
    int err = errno;
    close(fd);
    unlink(tmp.c_str());
    return ErrnoError(err, absl::StrCat(Av(what), " ", path));
  };
  if (fchmod(fd, mode) != 0) return fail("chmod");
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("writing");
    off += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) return fail("fsync");
  if (close(fd) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return ErrnoError(err, absl::StrCat("closing ", path));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return ErrnoError(err, absl::StrCat("renaming temp file to ", path));
  }
  return absl::OkStatus();
}

}  // namespace weft
