// Watches one directory with inotify on its own thread and reports bursts of changes once they
// have been quiet for a debounce interval (editors and writers emit create, write, close and
// rename in quick succession). Used by the local manifest source (weftd) and the standalone
// config file watcher (ztunnel, agent).
//
//   DirWatcher w(dir, IN_CLOSE_WRITE | IN_MOVED_TO, 50ms, relevant, on_change, on_error);
//   WEFT_RETURN_IF_ERROR(w.Watch());  // from here on no change is missed...
//   ... load the current state ...
//   WEFT_RETURN_IF_ERROR(w.Start());  // ...and changes are reported from the thread
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/status.h"
#include "common/unique_fd.h"

namespace weft {

class DirWatcher {
 public:
  // `names`: the directory entries named by the events of the burst that passed `relevant`
  // (null: all). `overflow`: the kernel dropped events (IN_Q_OVERFLOW), so `names` may be
  // incomplete and the caller should rescan everything.
  using OnChange = std::function<void(const std::set<std::string>& names, bool overflow)>;
  using OnError = std::function<void(const absl::Status&)>;  // the thread stopped on an error

  DirWatcher(std::string dir, uint32_t mask, std::chrono::milliseconds debounce,
             std::function<bool(std::string_view name)> relevant, OnChange on_change,
             OnError on_error);
  ~DirWatcher();  // Stop()
  DirWatcher(const DirWatcher&) = delete;
  DirWatcher& operator=(const DirWatcher&) = delete;

  // Places the inotify watch: events from now on are kept for the thread. The error names the
  // directory ("inotify_add_watch <dir>: No such file or directory").
  absl::Status Watch();
  // Starts the thread (after Watch). FailedPrecondition if not watching or already started.
  absl::Status Start();
  // Joins the thread; on_change is not called after it returns. Idempotent.
  void Stop();

  const std::string& dir() const { return dir_; }

 private:
  void Run();

  const std::string dir_;
  const uint32_t mask_;
  const std::chrono::milliseconds debounce_;
  const std::function<bool(std::string_view)> relevant_;
  const OnChange on_change_;
  const OnError on_error_;
  UniqueFd inotify_, stop_event_;
  std::thread thread_;
};

}  // namespace weft
