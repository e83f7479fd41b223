#include "ztunnel/proxy/worker.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

#include "common/log.h"
#include "common/status.h"
#include "ztunnel/proxy/io.h"

namespace weft::ztunnel {

// The registry follows the newest snapshot only (a request still running under an older one
// must not take it back).
std::shared_ptr<const traffic::ServiceTraffic> Proxy::Shared::TrafficFor(
    std::string_view service_key, uint16_t port) {
  SnapshotPtr latest = config->Get();
  {
    std::lock_guard<std::mutex> lock(traffic_mu);
    if (traffic_snapshot != latest.get()) {
      traffic.Update(latest, std::chrono::steady_clock::now());
      traffic_snapshot = latest.get();
    }
  }
  return traffic.For(service_key, port);
}

absl::Status Worker::Init() {
  WEFT_RETURN_IF_ERROR(loop_.Init());
  if (shared_->sockmap_relay) {
    WEFT_ASSIGN_OR_RETURN(fast_relay_, FastPathRelay::Create(*this));
  }
  ScheduleTrim();
  if (index_ == 0 && shared_->traffic_metrics) ScheduleTrafficMetrics();
  return absl::OkStatus();
}

void Worker::ScheduleTrafficMetrics() {
  loop_.AddTimer(std::chrono::seconds(1), [this] {
    shared_->traffic_metrics->Refresh(shared_->traffic.All());
    ScheduleTrafficMetrics();
  });
}

void Worker::ScheduleTrim() {
  loop_.AddTimer(std::chrono::seconds(5), [this] {
    TrimBufferCache();
    outbound().balancer().Prune(Balancer::Clock::now(), std::chrono::minutes(5));
    ScheduleTrim();
  });
}

void Worker::ShutdownFlows() {
  std::vector<Flow*> flows;  // OnShutdown may release flows
  for (const auto& [f, owned] : flows_) flows.push_back(f);
  for (Flow* f : flows)
    if (flows_.count(f)) f->OnShutdown();
}

void Worker::StopAccepting() {
  draining_ = true;
  for (auto& [uid, st] : pods_) {
    for (auto& h : st.listeners) loop_.Remove(h->fd);
    st.listeners.clear();
  }
  for (auto& [c, owned] : conns_)
    if (!c->closed()) c->NotifyShutdown();
}

// ---- Pods and their listeners -------------------------------------------------------------

void Worker::ListenerHandler::OnEvents(uint32_t) {
  for (int i = 0; i < 64; i++) {
    int c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
        LOG_WARN("proxy", "accept failed", {{"pod", pod->uid}, {"error", std::strerror(errno)}});
      return;
    }
    w->OnAccept(pod, kind, UniqueFd(c));
  }
}

void Worker::OnAccept(const std::shared_ptr<Pod>& pod, Pod::Kind kind, UniqueFd fd) {
  switch (kind) {
    case Pod::Kind::kOutbound:
      outbound_.OnAccept(pod, std::move(fd));
      break;
    case Pod::Kind::kInboundPlain:
      inbound_.OnPlaintext(pod, std::move(fd));
      break;
    case Pod::Kind::kHbone:
      inbound_.OnHbone(pod, std::move(fd));
      break;
  }
}

void Worker::AddPod(std::shared_ptr<Pod> pod) {
  if (draining_) return;  // a successor accepts now
  PodState st;
  st.pod = pod;
  for (auto& l : pod->listeners) {
    auto h = std::make_unique<ListenerHandler>();
    h->w = this;
    h->pod = pod;
    h->kind = l.kind;
    h->fd = l.fd.get();
    auto s = loop_.Add(l.fd.get(), EPOLLIN | EPOLLEXCLUSIVE, h.get());
    if (!s.ok()) LOG_ERROR("proxy", "cannot watch listener", {{"error", s.ToString()}});
    st.listeners.push_back(std::move(h));
  }
  RemovePod(pod->uid);
  pods_[pod->uid] = std::move(st);
}

void Worker::RemovePod(const std::string& uid) {
  auto it = pods_.find(uid);
  if (it == pods_.end()) return;
  for (auto& h : it->second.listeners) loop_.Remove(h->fd);
  pods_.erase(it);
}

std::shared_ptr<Pod> Worker::FindPod(const std::string& uid) const {
  auto it = pods_.find(uid);
  return it == pods_.end() ? nullptr : it->second.pod;
}

// ---- Ownership ----------------------------------------------------------------------------

void Worker::ReleaseFlow(Flow* f) {
  auto it = flows_.find(f);
  if (it == flows_.end()) return;
  inbound_.Untrack(f);
  loop_.DeferDelete(std::move(it->second));
  flows_.erase(it);
}

HboneConn* Worker::NewConn(HboneConn::Role role, std::shared_ptr<Pod> pod, UniqueFd fd,
                           std::shared_ptr<SSL_CTX> ctx, SockAddr peer) {
  auto c =
      std::make_unique<HboneConn>(this, role, std::move(pod), std::move(fd), std::move(ctx), peer);
  HboneConn* p = c.get();
  conns_[p] = std::move(c);
  return p;
}

// ---- HBONE server limits ------------------------------------------------------------------

HboneConn* Worker::HandshakeVictim(const IpAddr& src) const {
  // The oldest handshake of the source with the most here, if `src` has fewer: a few busy
  // sources cannot hold every slot.
  absl::flat_hash_map<IpAddr, size_t> count;
  for (HboneConn* c : handshaking_) count[c->peer().ip]++;
  const IpAddr* busiest = nullptr;
  size_t most = 0;
  for (const auto& [ip, n] : count) {
    if (n > most) {
      most = n;
      busiest = &ip;
    }
  }
  auto mine = count.find(src);
  size_t have = mine == count.end() ? 0 : mine->second;
  if (busiest != nullptr && have + 1 < most) {
    for (HboneConn* c : handshaking_)  // oldest first
      if (c->peer().ip == *busiest) return c;
  }
  // Else the oldest handshake, if it is stale: an honest one takes a round trip, so many
  // sources with one silent connection each cannot hold every slot either.
  HboneConn* oldest = handshaking_.empty() ? nullptr : handshaking_.front();
  if (oldest &&
      EventLoop::Clock::now() - oldest->admitted >= shared_->limits->options().stale_handshake)
    return oldest;
  return nullptr;
}

std::string_view Worker::AdmitHbone(const IpAddr& src) {
  // Each worker holds its share of the handshaking total: connections never move between
  // workers, so a victim is closed here, on its own thread.
  const auto& o = limits().options();
  size_t share = std::max<size_t>(1, o.max_handshaking / static_cast<size_t>(opts().workers));
  HboneConn* victim = nullptr;
  if (handshaking_.size() >= share) {
    victim = HandshakeVictim(src);
    if (victim == nullptr) return "handshaking_global";
  }
  std::string_view refused = limits().AdmitHandshake(src);
  if (!refused.empty()) return refused;
  if (victim) {
    metrics().HboneRefused("handshaking_global_evicted");
    victim->Close("handshake slot given to a newer connection (HBONE handshaking limit)");
  }
  return {};
}

void Worker::TrackHandshaking(HboneConn* c) {
  c->limit_state = HboneConn::LimitState::kHandshaking;
  c->admitted = EventLoop::Clock::now();
  handshaking_.push_back(c);
}

bool Worker::HboneEstablished(HboneConn* c) {
  if (c->limit_state != HboneConn::LimitState::kHandshaking) return true;
  handshaking_.erase(std::remove(handshaking_.begin(), handshaking_.end(), c), handshaking_.end());
  c->limit_state = HboneConn::LimitState::kNone;
  std::string_view refused = limits().Establish(c->peer().ip);
  if (!refused.empty()) {
    metrics().HboneRefused(refused);
    c->Close(
        absl::StrCat("over the HBONE established-connection limit (", std::string(refused), ")"));
    return false;
  }
  c->limit_state = HboneConn::LimitState::kEstablished;
  return true;
}

void Worker::HboneGone(HboneConn* c) {
  paused_.erase(std::remove(paused_.begin(), paused_.end(), c), paused_.end());
  if (c->limit_state == HboneConn::LimitState::kHandshaking) {
    handshaking_.erase(std::remove(handshaking_.begin(), handshaking_.end(), c),
                       handshaking_.end());
    limits().Release(c->peer().ip, false);
  } else if (c->limit_state == HboneConn::LimitState::kEstablished) {
    limits().Release(c->peer().ip, true);
  }
  c->limit_state = HboneConn::LimitState::kNone;
}

void Worker::PauseRead(HboneConn* c) {
  metrics().HboneReadPaused();
  if (std::find(paused_.begin(), paused_.end(), c) == paused_.end()) {
    paused_.push_back(c);
    c->stalled_since = EventLoop::Clock::now();
    c->stalled_bytes = c->BufferedBytes();
  }
  if (resume_timer_ == 0)
    resume_timer_ = loop_.AddTimer(std::chrono::milliseconds(20), [this] { ResumePaused(); });
}

void Worker::ResumePaused() {
  resume_timer_ = 0;
  auto paused = std::move(paused_);
  paused_.clear();
  const auto now = EventLoop::Clock::now();
  for (HboneConn* c : paused) {
    if (c->MayRead()) {
      c->ResumeRead();
      continue;
    }
    size_t held = c->BufferedBytes();
    if (held < c->stalled_bytes) {  // its applications are reading: not stalled
      c->stalled_since = now;
      c->stalled_bytes = held;
    } else if (now - c->stalled_since >= limits().options().stalled_close_after) {
      metrics().HboneRefused("buffer_budget_stalled");
      c->Close("applications do not read and the HBONE buffer budget is spent");
      continue;
    }
    paused_.push_back(c);
  }
  if (!paused_.empty())
    resume_timer_ = loop_.AddTimer(std::chrono::milliseconds(20), [this] { ResumePaused(); });
}

void Worker::ReleaseConn(HboneConn* c) {
  auto it = conns_.find(c);
  if (it == conns_.end()) return;
  loop_.DeferDelete(std::move(it->second));
  conns_.erase(it);
}

}  // namespace weft::ztunnel
