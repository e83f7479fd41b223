// RequestMirror's copies of HTTP/2 requests in flight (issue 15), one sender per worker: each
// copy rides an upstream connection of its own (Outbound::OpenUpstream: an HBONE stream, the
// same-node fast path or plain TCP, as any upstream), where an l7::Http2MirrorRequest sends it
// and reads its response only to drop it. The connection closes once the response ended, at the
// copy's timeout, or when the upstream ends first (then counted as
// weft_http_mirrors_total{result="failed"}). Fire and forget: nothing here reaches the request
// it copies, which never waits for it.
//
// Bounded per worker: at most kMaxInFlight copies and kMaxBytes of their request bytes at once;
// Admit says whether one more fits (the caller counts it "dropped" when not). Loop thread only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string_view>

#include "common/unique_fd.h"
#include "ztunnel/l7/http2_mirror.h"
#include "ztunnel/proxy/event_loop.h"
#include "ztunnel/proxy/io.h"

namespace weft::ztunnel {

class MirrorSender {
 public:
  static constexpr size_t kMaxInFlight = 128;
  static constexpr size_t kMaxBytes = 4 * 1024 * 1024;
  // Without the route's timeouts.request: Envoy's default route timeout, which its shadow
  // requests take too.
  static constexpr std::chrono::milliseconds kDefaultTimeout{15000};
  // Counts a copy's end that was no response ("failed").
  using Count = std::function<void(std::string_view result)>;

  MirrorSender(EventLoop* loop, Count count) : loop_(loop), count_(std::move(count)) {}
  ~MirrorSender();
  MirrorSender(const MirrorSender&) = delete;
  MirrorSender& operator=(const MirrorSender&) = delete;

  // Whether a copy of `bytes` request bytes fits now.
  bool Admit(size_t bytes) const {
    return live_.size() < kMaxInFlight && bytes_ + bytes <= kMaxBytes;
  }
  // Sends `req` over `fd` (connected, non-blocking; `bytes` its size as admitted), closing it
  // after `timeout` at the latest (0: kDefaultTimeout). False when `fd` cannot be watched: it is
  // closed and nothing kept.
  bool Send(UniqueFd fd, std::unique_ptr<l7::Http2MirrorRequest> req, size_t bytes,
            std::chrono::milliseconds timeout);
  size_t size() const { return live_.size(); }

 private:
  struct Copy : EventLoop::Handler {
    MirrorSender* m = nullptr;
    UniqueFd fd;
    std::unique_ptr<l7::Http2MirrorRequest> req;
    ByteQueue out;
    size_t bytes = 0;
    uint64_t timer = 0;
    uint32_t interest = 0;
    void OnEvents(uint32_t e) override { m->OnEvents(*this, e); }
  };
  void OnEvents(Copy& c, uint32_t events);
  void Pump(Copy& c);
  void End(Copy& c, bool failed);

  EventLoop* loop_;
  Count count_;
  std::map<Copy*, std::unique_ptr<Copy>> live_;
  size_t bytes_ = 0;
};

}  // namespace weft::ztunnel
