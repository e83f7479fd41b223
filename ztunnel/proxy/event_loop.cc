#include "ztunnel/proxy/event_loop.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <cerrno>

#include "common/log.h"
#include "common/status.h"

namespace weft::ztunnel {

namespace {
class WakeHandler : public EventLoop::Handler {
 public:
  void OnEvents(uint32_t) override {}
};
WakeHandler g_wake;  // the wake fd is drained in Run(); this only marks the registration
}  // namespace

EventLoop::EventLoop() = default;
EventLoop::~EventLoop() = default;

absl::Status EventLoop::Init() {
  epfd_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epfd_) return ErrnoError(errno, "epoll_create1");
  wakefd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wakefd_) return ErrnoError(errno, "eventfd");
  return Add(wakefd_.get(), EPOLLIN, &g_wake);
}

absl::Status EventLoop::Add(int fd, uint32_t events, Handler* h) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = h;
  if (epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
    return ErrnoError(errno, "epoll_ctl ADD");
  return absl::OkStatus();
}

void EventLoop::Modify(int fd, uint32_t events, Handler* h) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = h;
  epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, fd, &ev);
}

void EventLoop::Remove(int fd) {
  epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

uint64_t EventLoop::AddTimer(std::chrono::milliseconds after, std::function<void()> fn) {
  uint64_t id = next_timer_id_++;
  auto when = Clock::now() + after;
  timers_[id] = {when, std::move(fn)};
  timer_order_.emplace(when, id);
  return id;
}

void EventLoop::CancelTimer(uint64_t id) {
  timers_.erase(id);
}

void EventLoop::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  ssize_t n = write(wakefd_.get(), &one, sizeof one);
  (void)n;
}

void EventLoop::Stop() {
  Post([this] { stop_ = true; });
}

bool EventLoop::InLoopThread() const {
  return thread_id_.load() == static_cast<uint64_t>(pthread_self());
}

void EventLoop::RunPosted() {
  uint64_t v;
  while (read(wakefd_.get(), &v, sizeof v) > 0) {
  }
  std::vector<std::function<void()>> fns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fns.swap(posted_);
  }
  for (auto& f : fns) f();
}

int EventLoop::NextTimeoutMs() {
  while (!timer_order_.empty()) {
    auto it = timer_order_.begin();
    auto t = timers_.find(it->second);
    if (t == timers_.end() || t->second.first != it->first) {
      timer_order_.erase(it);  // cancelled
      continue;
    }
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(it->first - Clock::now()).count();
    return ms < 0 ? 0 : static_cast<int>(ms) + 1;
  }
  return -1;
}

void EventLoop::FireTimers() {
  auto now = Clock::now();
  while (!timer_order_.empty() && timer_order_.begin()->first <= now) {
    auto [when, id] = *timer_order_.begin();
    timer_order_.erase(timer_order_.begin());
    auto t = timers_.find(id);
    if (t == timers_.end() || t->second.first != when) continue;
    auto fn = std::move(t->second.second);
    timers_.erase(t);
    fn();
  }
}

void EventLoop::RunSoonQueue() {
  // Calls may queue more calls (a flush that frees room for a read): run until none is left.
  while (!soon_.empty()) {
    auto fns = std::move(soon_);
    soon_.clear();
    for (auto& f : fns) f();
  }
}

void EventLoop::Run() {
  thread_id_.store(static_cast<uint64_t>(pthread_self()));
  epoll_event events[128];
  while (!stop_) {
    int n = epoll_wait(epfd_.get(), events, 128, soon_.empty() ? NextTimeoutMs() : 0);
    if (n < 0 && errno != EINTR) {
      LOG_ERROR("loop", "epoll_wait failed", {{"errno", errno}});
      break;
    }
    for (int i = 0; i < n; i++) {
      auto* h = static_cast<Handler*>(events[i].data.ptr);
      if (h == &g_wake) {
        RunPosted();
        continue;
      }
      h->OnEvents(events[i].events);
    }
    RunSoonQueue();
    FireTimers();
    RunSoonQueue();
    graveyard_.clear();
  }
  soon_.clear();
  graveyard_.clear();
}

}  // namespace weft::ztunnel
