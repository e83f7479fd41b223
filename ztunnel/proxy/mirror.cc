#include "ztunnel/proxy/mirror.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace weft::ztunnel {

MirrorSender::~MirrorSender() {
  for (auto& [raw, c] : live_) {
    if (c->timer) loop_->CancelTimer(c->timer);
    loop_->Remove(c->fd.get());
  }
}

bool MirrorSender::Send(UniqueFd fd, std::unique_ptr<l7::Http2MirrorRequest> req, size_t bytes,
                        std::chrono::milliseconds timeout) {
  auto c = std::make_unique<Copy>();
  c->m = this;
  c->fd = std::move(fd);
  c->req = std::move(req);
  c->bytes = bytes;
  c->interest = EPOLLIN;
  if (!loop_->Add(c->fd.get(), c->interest, c.get()).ok()) return false;
  Copy* raw = c.get();
  c->timer = loop_->AddTimer(timeout.count() > 0 ? timeout : kDefaultTimeout, [this, raw] {
    raw->timer = 0;
    End(*raw, /*failed=*/true);  // no whole answer in time
  });
  bytes_ += bytes;
  live_[raw] = std::move(c);
  Pump(*raw);
  return true;
}

void MirrorSender::OnEvents(Copy& c, uint32_t events) {
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    char buf[16 * 1024];
    for (int reads = 0; reads < 64 && !c.req->done(); ++reads) {
      ssize_t n = recv(c.fd.get(), buf, sizeof buf, 0);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      if (n <= 0) {  // the upstream ended (connect failure, reset, close) before the answer did
        End(c, /*failed=*/!c.req->done() || c.req->failed());
        return;
      }
      c.req->FromServer(std::string_view(buf, static_cast<size_t>(n)));
    }
  }
  Pump(c);
}

// Writes what the request has to say; ends the copy once its exchange is over and written.
void MirrorSender::Pump(Copy& c) {
  std::string more = c.req->TakeOutput();
  if (!more.empty()) c.out.Append(more.data(), more.size());
  if (!c.out.empty() && !FlushTo(c.fd.get(), c.out) && errno != EAGAIN) {
    End(c, /*failed=*/!c.req->done() || c.req->failed());
    return;
  }
  if (c.req->done() && c.out.empty()) {
    End(c, c.req->failed());
    return;
  }
  const uint32_t want = EPOLLIN | (c.out.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT));
  if (want != c.interest) {
    c.interest = want;
    loop_->Modify(c.fd.get(), want, &c);
  }
}

void MirrorSender::End(Copy& c, bool failed) {
  auto it = live_.find(&c);
  if (it == live_.end()) return;
  if (failed) count_("failed");
  std::unique_ptr<Copy> gone = std::move(it->second);
  live_.erase(it);
  bytes_ -= std::min(bytes_, gone->bytes);
  if (gone->timer) loop_->CancelTimer(gone->timer);
  gone->timer = 0;
  loop_->Remove(gone->fd.get());
  gone->fd.reset();                     // its flow sees EOF and ends its upstream stream
  loop_->DeferDelete(std::move(gone));  // may be running its own OnEvents
}

}  // namespace weft::ztunnel
