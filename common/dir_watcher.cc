#include "common/dir_watcher.h"

#include <limits.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace weft {

DirWatcher::DirWatcher(std::string dir, uint32_t mask, std::chrono::milliseconds debounce,
                       std::function<bool(std::string_view)> relevant, OnChange on_change,
                       OnError on_error)
    : dir_(std::move(dir)),
      mask_(mask),
      debounce_(debounce),
      relevant_(std::move(relevant)),
      on_change_(std::move(on_change)),
      on_error_(std::move(on_error)) {}

DirWatcher::~DirWatcher() {
  Stop();
}

absl::Status DirWatcher::Watch() {
  if (inotify_) return absl::FailedPreconditionError("DirWatcher: already watching " + dir_);
  UniqueFd in(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!in) return ErrnoError(errno, "inotify_init1");
  if (inotify_add_watch(in.get(), dir_.c_str(), mask_) < 0) {
    return ErrnoError(errno, absl::StrCat("inotify_add_watch ", dir_));
  }
  UniqueFd ev(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!ev) return ErrnoError(errno, "eventfd");
  inotify_ = std::move(in);
  stop_event_ = std::move(ev);
  return absl::OkStatus();
}

absl::Status DirWatcher::Start() {
  if (!inotify_) return absl::FailedPreconditionError("DirWatcher: Start before Watch");
  if (thread_.joinable()) return absl::FailedPreconditionError("DirWatcher: already started");
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void DirWatcher::Stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    // The eventfd counter cannot overflow from one write; a failure would only mean a bad fd.
    ssize_t n = write(stop_event_.get(), &one, sizeof one);
    (void)n;
    thread_.join();
  }
  inotify_.reset();
  stop_event_.reset();
}

void DirWatcher::Run() {
  using Clock = std::chrono::steady_clock;
  bool pending = false;  // a relevant event arrived; report at report_at
  bool overflow = false;
  std::set<std::string> names;
  Clock::time_point report_at{};
  alignas(inotify_event) char buf[16 * (sizeof(inotify_event) + NAME_MAX + 1)];
  for (;;) {
    int timeout = -1;
    if (pending) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(report_at - Clock::now());
      timeout = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    pollfd fds[2] = {{inotify_.get(), POLLIN, 0}, {stop_event_.get(), POLLIN, 0}};
    int r = poll(fds, 2, timeout);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (on_error_) on_error_(ErrnoError(errno, absl::StrCat("watching ", dir_, ": poll")));
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents & POLLIN) {
      for (;;) {
        ssize_t len = read(inotify_.get(), buf, sizeof buf);
        if (len <= 0) break;
        for (ssize_t off = 0; off < len;) {
          const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
          off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
          bool relevant = false;
          if (ev->mask & IN_Q_OVERFLOW) {
            overflow = relevant = true;  // events were lost: which entries changed is unknown
          } else if (ev->len > 0 && (!relevant_ || relevant_(ev->name))) {
            names.insert(ev->name);  // NUL-terminated (and padded)
            relevant = true;
          }
          if (relevant) {
            pending = true;
            report_at = Clock::now() + debounce_;
          }
        }
      }
    }
    if (pending && Clock::now() >= report_at) {
      pending = false;
      on_change_(names, overflow);
      names.clear();
      overflow = false;
    }
  }
}

}  // namespace weft
