// Idle HTTP/1.1 upstream connections of the source-side proxy (http_outbound.h), kept per source
// pod and endpoint after the client connection that opened them ended, so the next client
// connection to that endpoint reuses one instead of opening a new HBONE stream (a client that
// opens a connection per request, like curl in a loop, then costs no CONNECT round trip per
// request). At most kMaxPerKey per (pod, endpoint), each closed after kIdleTimeout unused or as
// soon as its server closes it (or sends anything unasked). One per worker; loop thread only.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/unique_fd.h"
#include "ztunnel/metrics/metrics.h"
#include "ztunnel/proxy/event_loop.h"

namespace weft::ztunnel {

class UpstreamPool {
 public:
  static constexpr size_t kMaxPerKey = 16;
  // Long enough for a client that reconnects per request, short enough that a quiet mesh drains
  // (an idle upstream holds an HBONE stream; the soak wants every gauge at 0 within 30 s of the
  // last request, and the 30 s of HBONE's own pool come after it).
  static constexpr std::chrono::seconds kIdleTimeout{10};

  // An idle upstream: its socket (the proxy's end of the socketpair) and what its requests are
  // recorded with.
  struct Idle {
    UniqueFd fd;
    std::string addr;  // ip:port of the endpoint
    TcpLabels labels;  // source-reporter labels of its requests
  };

  explicit UpstreamPool(EventLoop* loop) : loop_(loop) {}
  ~UpstreamPool();
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // Keeps `u` (false: the pool for that key is full or `u` cannot be watched; `u` is closed).
  bool Put(const std::string& pod, const std::string& endpoint, Idle u);
  // The most recently kept idle upstream of `pod` to `endpoint`, if any.
  std::optional<Idle> Take(const std::string& pod, const std::string& endpoint);
  size_t size() const;

 private:
  struct Entry : EventLoop::Handler {
    UpstreamPool* pool = nullptr;
    std::string key;
    Idle u;
    uint64_t timer = 0;
    void OnEvents(uint32_t) override { pool->Drop(this); }  // closed, or bytes nobody asked for
  };
  void Drop(Entry* e);

  EventLoop* loop_;
  std::unordered_map<std::string, std::vector<std::unique_ptr<Entry>>> idle_;
};

}  // namespace weft::ztunnel
