// A single-threaded epoll event loop: one per worker thread. Everything registered on a loop is
// touched only from that loop's thread; other threads talk to it with Post().
#pragma once

#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "common/unique_fd.h"

namespace weft::ztunnel {

class EventLoop {
 public:
  using Clock = std::chrono::steady_clock;
  class Handler {
   public:
    virtual ~Handler() = default;
    virtual void OnEvents(uint32_t events) = 0;  // EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP bits
  };

  EventLoop();
  ~EventLoop();
  absl::Status Init();

  // fd registration (level-triggered unless `events` has EPOLLET).
  absl::Status Add(int fd, uint32_t events, Handler* h);
  // A socket registered once for everything, edge-triggered: its handler is told when it
  // becomes readable or writable (or hangs up) and remembers that until a read or write shows
  // it used up (io.h's Readiness), so switching interest on and off costs no epoll_ctl.
  static constexpr uint32_t kEdgeTriggered = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;
  void Modify(int fd, uint32_t events, Handler* h);
  void Remove(int fd);

  // Timers fire on the loop thread. Returns an id for Cancel (0 is never an id).
  uint64_t AddTimer(std::chrono::milliseconds after, std::function<void()> fn);
  void CancelTimer(uint64_t id);

  // Thread-safe: run fn on the loop thread soon.
  void Post(std::function<void()> fn);
  // Loop thread only: run fn after the current event batch, before the loop sleeps again and
  // before DeferDelete'd handlers are destroyed (a handler may queue a call on itself). The
  // edge-triggered counterpart of "switch EPOLLOUT on and let the loop call back": no syscall.
  void RunSoon(std::function<void()> fn) { soon_.push_back(std::move(fn)); }
  // Loop thread only: destroy `p` after the current event batch (safe self-deletion).
  void DeferDelete(std::unique_ptr<Handler> p) { graveyard_.push_back(std::move(p)); }

  void Run();   // until Stop()
  void Stop();  // thread-safe
  bool InLoopThread() const;

 private:
  void RunPosted();
  int NextTimeoutMs();
  void FireTimers();
  void RunSoonQueue();

  UniqueFd epfd_, wakefd_;
  std::mutex mu_;
  std::vector<std::function<void()>> posted_;
  std::multimap<Clock::time_point, uint64_t> timer_order_;
  std::map<uint64_t, std::pair<Clock::time_point, std::function<void()>>> timers_;
  uint64_t next_timer_id_ = 1;
  std::vector<std::function<void()>> soon_;
  std::vector<std::unique_ptr<Handler>> graveyard_;
  bool stop_ = false;
  std::atomic<uint64_t> thread_id_{0};
};

}  // namespace weft::ztunnel
