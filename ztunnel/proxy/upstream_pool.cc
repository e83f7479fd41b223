#include "ztunnel/proxy/upstream_pool.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>

#include <algorithm>

namespace weft::ztunnel {

namespace {
std::string Key(const std::string& pod, const std::string& endpoint) {
  return pod + '\n' + endpoint;
}
}  // namespace

UpstreamPool::~UpstreamPool() {
  for (auto& [key, entries] : idle_) {
    for (auto& e : entries) {
      loop_->CancelTimer(e->timer);
      loop_->Remove(e->u.fd.get());
    }
  }
}

bool UpstreamPool::Put(const std::string& pod, const std::string& endpoint, Idle u) {
  const std::string key = Key(pod, endpoint);
  auto& entries = idle_[key];
  if (entries.size() >= kMaxPerKey) return false;
  auto e = std::make_unique<Entry>();
  e->pool = this;
  e->key = key;
  e->u = std::move(u);
  if (!loop_->Add(e->u.fd.get(), EPOLLIN | EPOLLRDHUP, e.get()).ok()) return false;
  Entry* raw = e.get();
  e->timer = loop_->AddTimer(std::chrono::duration_cast<std::chrono::milliseconds>(kIdleTimeout),
                             [this, raw] {
                               raw->timer = 0;
                               Drop(raw);
                             });
  entries.push_back(std::move(e));
  return true;
}

std::optional<UpstreamPool::Idle> UpstreamPool::Take(const std::string& pod,
                                                     const std::string& endpoint) {
  const std::string key = Key(pod, endpoint);
  for (;;) {
    auto it = idle_.find(key);
    if (it == idle_.end() || it->second.empty()) return std::nullopt;
    std::unique_ptr<Entry> e = std::move(it->second.back());
    it->second.pop_back();
    if (it->second.empty()) idle_.erase(it);
    loop_->CancelTimer(e->timer);
    loop_->Remove(e->u.fd.get());
    // A close (or stray bytes) not yet seen by the loop: this one is no good, try the next.
    char c;
    ssize_t n = recv(e->u.fd.get(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return std::move(e->u);
  }
}

void UpstreamPool::Drop(Entry* e) {
  auto it = idle_.find(e->key);
  if (it == idle_.end()) return;
  auto& entries = it->second;
  auto pos = std::find_if(entries.begin(), entries.end(),
                          [e](const std::unique_ptr<Entry>& x) { return x.get() == e; });
  if (pos == entries.end()) return;
  std::unique_ptr<Entry> gone = std::move(*pos);
  entries.erase(pos);
  if (entries.empty()) idle_.erase(it);
  if (gone->timer) loop_->CancelTimer(gone->timer);
  loop_->Remove(gone->u.fd.get());
  gone->u.fd.reset();                   // its flow sees EOF and ends its HBONE stream
  loop_->DeferDelete(std::move(gone));  // may be running its own OnEvents
}

size_t UpstreamPool::size() const {
  size_t n = 0;
  for (const auto& [k, v] : idle_) n += v.size();
  return n;
}

}  // namespace weft::ztunnel
