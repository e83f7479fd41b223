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
#include "ztunnel/l7/http2_server.h"
#include "ztunnel/metrics/metrics.h"
#include "ztunnel/proxy/event_loop.h"
#include "ztunnel/proxy/io.h"
#include "ztunnel/proxy/request_record.h"
#include "ztunnel/traffic/circuit_breaker.h"
#include "ztunnel/traffic/registry.h"

namespace weft::ztunnel {

class Worker;

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

// HTTP/2 upstream connections of the source-side proxy, shared by its client connections
// (HttpOutbound's HTTP/2 ones: prior-knowledge h2c, gRPC, an h2c upgrade), one pool per worker.
// A connection is kept per key (the source pod, the endpoint, its port and the Service it is
// reached as: source identity, L4 record and metrics labels are the pod's, so pods never share)
// and carries the streams of every client connection of that pod routed to that endpoint, up to
// the peer's SETTINGS_MAX_CONCURRENT_STREAMS; Find then offers another one (or none: the caller
// opens one). Each is a socketpair end into an ordinary outbound flow (Outbound::OpenUpstream)
// and an l7::Http2Upstream on the pool's hub. Closed when its server ends it, when it broke
// HTTP/2, when it drained after a GOAWAY, or kIdleTimeout after its last stream. Loop thread
// only.
class H2UpstreamPool {
 public:
  static constexpr std::chrono::seconds kIdleTimeout{10};

  // Who is told (OnH2Wake, from Settle) when work on a shared upstream touched its connection:
  // it then writes its client's bytes and checks its state.
  class Client {
   public:
    virtual ~Client() = default;
    virtual void OnH2Wake() = 0;
  };

  struct Conn : EventLoop::Handler, std::enable_shared_from_this<Conn> {
    H2UpstreamPool* pool = nullptr;  // null once the pool is gone
    std::string key;
    UniqueFd fd;    // the proxy's end of the socketpair
    ByteQueue out;  // frames its socket did not take yet
    std::shared_ptr<l7::Http2Upstream> h2;
    std::string endpoint;  // workload uid (the balancer's key)
    std::string addr;      // ip:port (access log)
    // Its requests' source-reporter series (and a same-node endpoint's destination twin).
    std::shared_ptr<RequestSeriesCache> series, dst_series;
    std::optional<traffic::CircuitBreaker::Slot> slot;       // maxConnections, while open
    std::shared_ptr<const traffic::ServiceTraffic> traffic;  // keeps the slot's breaker alive
    uint32_t interest = 0;
    uint64_t idle_timer = 0;
    bool closed = false;
    bool pending = false;  // in the pool's list for Settle
    void OnEvents(uint32_t events) override;
  };

  H2UpstreamPool(Worker* w, EventLoop* loop);
  ~H2UpstreamPool();
  H2UpstreamPool(const H2UpstreamPool&) = delete;
  H2UpstreamPool& operator=(const H2UpstreamPool&) = delete;

  const std::shared_ptr<l7::Http2Hub>& hub() const { return hub_; }
  // The open, usable connection under `key` with the fewest open streams, if one has room for
  // another (`full_ok`: any usable one, its session queues the stream until one ends).
  std::shared_ptr<Conn> Find(const std::string& key, bool full_ok = false) const;
  // A new connection over `fd` (connected to `addr`, endpoint `endpoint`), its requests
  // recorded with `labels`.
  std::shared_ptr<Conn> Add(const std::string& key, UniqueFd fd, std::string endpoint,
                            std::string addr, const TcpLabels& labels);
  // `c`'s OnH2Wake runs in the next Settle (once however often it is woken); Unwake forgets it.
  void Wake(Client* c);
  void Unwake(Client* c);
  // Sends every session's frames, writes them out, closes the connections that are done and
  // runs the woken clients, until nothing is left. A nested call returns at once.
  void Settle();
  size_t size() const;  // open connections

 private:
  void MarkPending(const std::shared_ptr<Conn>& c);
  void Read(Conn& c);
  void Update(Conn& c);  // writes, closes when finished, interest, idle timer
  void End(Conn& c);     // its transport ends; its streams are answered or re-routed

  Worker* w_;
  EventLoop* loop_;
  std::shared_ptr<l7::Http2Hub> hub_ = std::make_shared<l7::Http2Hub>();
  std::unordered_map<std::string, std::vector<std::shared_ptr<Conn>>> conns_;
  std::vector<std::shared_ptr<Conn>> pending_;
  std::vector<Client*> woken_;
  bool settling_ = false;
};

}  // namespace weft::ztunnel
