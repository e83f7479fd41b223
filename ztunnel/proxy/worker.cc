#include "ztunnel/proxy/worker.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/status.h"

namespace weft::ztunnel {

absl::Status Worker::Init() {
  WEFT_RETURN_IF_ERROR(loop_.Init());
  ScheduleTrim();
  return absl::OkStatus();
}

void Worker::ScheduleTrim() {
  loop_.AddTimer(std::chrono::seconds(5), [this] {
    TrimBufferCache();
    ScheduleTrim();
  });
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

void Worker::ReleaseConn(HboneConn* c) {
  auto it = conns_.find(c);
  if (it == conns_.end()) return;
  loop_.DeferDelete(std::move(it->second));
  conns_.erase(it);
}

}  // namespace weft::ztunnel
