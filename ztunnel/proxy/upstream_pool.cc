#include "ztunnel/proxy/upstream_pool.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>

#include <algorithm>

#include "ztunnel/proxy/worker.h"

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

namespace weft::ztunnel {

H2UpstreamPool::H2UpstreamPool(Worker* w, EventLoop* loop) : w_(w), loop_(loop) {}

H2UpstreamPool::~H2UpstreamPool() {
  // Connections still referenced by client connections outlive the pool: cut them loose.
  for (auto& [key, list] : conns_) {
    for (auto& c : list) {
      if (c->idle_timer) loop_->CancelTimer(c->idle_timer);
      c->idle_timer = 0;
      if (c->fd.valid()) loop_->Remove(c->fd.get());
      c->fd.reset();
      c->closed = true;
      c->pool = nullptr;
    }
  }
  for (auto& c : pending_) c->pool = nullptr;
}

std::shared_ptr<H2UpstreamPool::Conn> H2UpstreamPool::Find(const std::string& key,
                                                           bool full_ok) const {
  auto it = conns_.find(key);
  if (it == conns_.end()) return nullptr;
  std::shared_ptr<Conn> best;
  size_t best_streams = 0;
  for (const auto& c : it->second) {
    if (c->closed || !c->h2->Usable()) continue;
    const size_t n = c->h2->OpenStreams();
    if (!full_ok && n >= c->h2->MaxStreams()) continue;
    if (!best || n < best_streams) {
      best = c;
      best_streams = n;
    }
  }
  return best;
}

std::shared_ptr<H2UpstreamPool::Conn> H2UpstreamPool::Add(const std::string& key, UniqueFd fd,
                                                          std::string endpoint, std::string addr,
                                                          const TcpLabels& labels) {
  auto c = std::make_shared<Conn>();
  c->pool = this;
  c->key = key;
  c->fd = std::move(fd);
  c->endpoint = std::move(endpoint);
  c->addr = std::move(addr);
  c->series = std::make_shared<RequestSeriesCache>(labels);
  if (labels.connection_security_policy == "same_node") {
    // The fast path relays its bytes, so no destination ztunnel parses them: reported for the
    // destination here too.
    TcpLabels d = labels;
    d.reporter = "destination";
    c->dst_series = std::make_shared<RequestSeriesCache>(std::move(d));
  }
  std::weak_ptr<Conn> weak = c;
  c->h2 = std::make_shared<l7::Http2Upstream>(
      l7::Http2Limits{}, hub_,
      [weak](std::string_view b) {
        if (auto self = weak.lock(); self && !self->closed) self->out.Append(b.data(), b.size());
      },
      [weak] {
        if (auto self = weak.lock(); self && self->pool) self->pool->MarkPending(self);
      });
  c->interest = EPOLLIN;
  if (!loop_->Add(c->fd.get(), c->interest, c.get()).ok()) {
    c->closed = true;  // its streams get the connect failure when the hub flushes
    c->h2->Eof();
    return c;
  }
  conns_[key].push_back(c);
  MarkPending(c);
  return c;
}

void H2UpstreamPool::Wake(Client* c) {
  if (std::find(woken_.begin(), woken_.end(), c) == woken_.end()) woken_.push_back(c);
}

void H2UpstreamPool::Unwake(Client* c) {
  woken_.erase(std::remove(woken_.begin(), woken_.end(), c), woken_.end());
}

void H2UpstreamPool::MarkPending(const std::shared_ptr<Conn>& c) {
  if (c->pending || c->closed) return;
  c->pending = true;
  pending_.push_back(c);
}

void H2UpstreamPool::Conn::OnEvents(uint32_t events) {
  if (!pool || closed) return;
  H2UpstreamPool* p = pool;
  auto self = shared_from_this();  // Read may end it
  if (events & EPOLLOUT) p->MarkPending(self);
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) p->Read(*this);
  p->Settle();
}

void H2UpstreamPool::Read(Conn& c) {
  // Bounded per wake-up; flow control bounds what each stream may hold (l7/http2_server.h).
  for (int i = 0; i < 16 && !c.closed; ++i) {
    ssize_t n = recv(c.fd.get(), w_->scratch(), Worker::kScratch, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      End(c);
      return;
    }
    c.h2->Feed(std::string_view(w_->scratch(), static_cast<size_t>(n)));
  }
}

void H2UpstreamPool::Update(Conn& c) {
  if (c.closed) return;
  if (!c.out.empty() && !FlushTo(c.fd.get(), c.out) && errno != EAGAIN) {
    End(c);
    return;
  }
  if (c.out.empty() && c.h2->Finished()) {  // drained after a GOAWAY, or broke HTTP/2
    End(c);
    return;
  }
  const uint32_t want = EPOLLIN | (c.out.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT));
  if (want != c.interest) {
    c.interest = want;
    loop_->Modify(c.fd.get(), want, &c);
  }
  const bool idle = c.h2->OpenStreams() == 0;
  if (idle && !c.idle_timer) {
    std::weak_ptr<Conn> weak = c.shared_from_this();
    c.idle_timer = loop_->AddTimer(
        std::chrono::duration_cast<std::chrono::milliseconds>(kIdleTimeout), [this, weak] {
          auto self = weak.lock();
          if (!self || !self->pool) return;
          self->idle_timer = 0;
          if (self->h2->OpenStreams() == 0) End(*self);
          Settle();
        });
  } else if (!idle && c.idle_timer) {
    loop_->CancelTimer(c.idle_timer);
    c.idle_timer = 0;
  }
}

void H2UpstreamPool::End(Conn& c) {
  if (c.closed) return;
  c.closed = true;
  auto self = c.shared_from_this();
  if (auto it = conns_.find(c.key); it != conns_.end()) {
    auto& list = it->second;
    list.erase(std::remove(list.begin(), list.end(), self), list.end());
    if (list.empty()) conns_.erase(it);
  }
  if (c.idle_timer) loop_->CancelTimer(c.idle_timer);
  c.idle_timer = 0;
  loop_->Remove(c.fd.get());
  c.fd.reset();  // its flow sees EOF and ends its HBONE stream
  c.out.Clear();
  c.slot.reset();
  c.h2->Eof();  // every client connection's streams on it: answered, retried or re-routed
}

void H2UpstreamPool::Settle() {
  if (settling_) return;
  settling_ = true;
  for (;;) {
    hub_->Flush();
    if (pending_.empty() && woken_.empty()) break;
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& c : pending) {
      c->pending = false;
      Update(*c);
    }
    auto woken = std::move(woken_);
    woken_.clear();
    for (Client* cl : woken) cl->OnH2Wake();
  }
  settling_ = false;
}

size_t H2UpstreamPool::size() const {
  size_t n = 0;
  for (const auto& [k, v] : conns_) n += v.size();
  return n;
}

}  // namespace weft::ztunnel
