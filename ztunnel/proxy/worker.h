// One data-path worker: an epoll loop, this thread's view of the pod table, and the dispatch of
// each accepted connection to its path (outbound.h, inbound.h; HBONE client connections come
// from pool.h). Everything here lives on the worker's thread (see proxy.h); nothing is
// thread-safe unless stated.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "ztunnel/proxy/event_loop.h"
#include "ztunnel/proxy/fastpath.h"
#include "ztunnel/proxy/flow.h"
#include "ztunnel/proxy/hbone_conn.h"
#include "ztunnel/proxy/inbound.h"
#include "ztunnel/proxy/outbound.h"
#include "ztunnel/proxy/pool.h"
#include "ztunnel/proxy/proxy.h"
#include "ztunnel/proxy/traffic_metrics.h"
#include "ztunnel/traffic/registry.h"

namespace weft::ztunnel {

// A pod known to the proxy: its netns and listeners. Shared (read-only) by all workers.
struct Pod {
  std::string uid;
  UniqueFd netns;  // invalid: current netns (direct mode)
  using Kind = ListenerKind;
  struct Listener {
    Kind kind;
    UniqueFd fd;
    SockAddr addr;
  };
  std::vector<Listener> listeners;
  PodListenAddrs bound;
  std::string requested;                // the addresses asked for (re-add detection)
  OrigDstProvider* orig_dst = nullptr;  // never null once added
  int netns_fd() const { return netns.valid() ? netns.get() : -1; }
};

struct Proxy::Shared {
  ProxyOptions opts;
  ConfigStore* config;
  TlsContextCache* tls;
  Metrics* metrics;
  OrigDstProvider* orig_dst;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::thread> threads;
  mutable std::mutex mu;
  std::map<std::string, std::shared_ptr<Pod>> pods;
  std::atomic<uint64_t> rr{0};  // service endpoint round robin
  std::unique_ptr<HboneLimits> limits;
  bool started = false;
  bool sockmap_relay = false;  // the fast path's relay (fastpath.h), decided by Start
  // Per-Service traffic state (issue 15: circuit breakers, outlier detectors, retry budgets),
  // shared by the workers; brought up to the newest snapshot on use (TrafficFor).
  std::mutex traffic_mu;
  const ConfigSnapshot* traffic_snapshot = nullptr;  // what `traffic` last took (kept alive by it)
  traffic::TrafficRegistry traffic;
  std::unique_ptr<TrafficMetrics> traffic_metrics;  // refreshed every second by worker 0
  std::shared_ptr<const traffic::ServiceTraffic> TrafficFor(std::string_view service_key,
                                                            uint16_t port);
};

class Worker {
 public:
  Worker(Proxy::Shared* shared, int index) : shared_(shared), index_(index) {}
  absl::Status Init();
  EventLoop& loop() { return loop_; }
  Proxy::Shared& shared() { return *shared_; }
  Metrics& metrics() { return *shared_->metrics; }
  const ProxyOptions& opts() const { return shared_->opts; }
  char* scratch() { return scratch_.get(); }
  // Decrypted bytes of one read batch; tunnels point into it until the batch is flushed.
  static constexpr size_t kScratch = 1 << 20;

  // The three paths of a connection on this worker.
  Inbound& inbound() { return inbound_; }
  Outbound& outbound() { return outbound_; }
  Pool& pool() { return pool_; }
  // The same-node fast path's sockmap relay (fastpath.h); null when it uses splice.
  FastPathRelay* fast_relay() { return fast_relay_.get(); }

  // Loop thread only.
  void AddPod(std::shared_ptr<Pod> pod);
  void RemovePod(const std::string& uid);
  // The pod `uid` if this proxy holds it, else null. pods_ mirrors Shared::pods on this
  // worker's thread (AddPod/RemovePod are posted to every worker), so no lock is taken.
  std::shared_ptr<Pod> FindPod(const std::string& uid) const;

  // Ownership of flows and connections (deleted via the loop's graveyard).
  template <typename F, typename... Args>
  F* NewFlow(Args&&... args) {
    auto f = std::make_unique<F>(this, std::forward<Args>(args)...);
    F* p = f.get();
    flows_[p] = std::move(f);
    return p;
  }
  void ReleaseFlow(Flow* f);
  // ztunnel is stopping: every flow's OnShutdown (loop thread).
  void ShutdownFlows();
  // A successor took the listeners over (Proxy::StopAccepting): stop watching them, ask every
  // inbound HBONE peer to open new streams elsewhere (loop thread).
  void StopAccepting();
  bool draining() const { return draining_; }
  size_t flow_count() const { return flows_.size(); }
  HboneConn* NewConn(HboneConn::Role role, std::shared_ptr<Pod> pod, UniqueFd fd,
                     std::shared_ptr<SSL_CTX> ctx, SockAddr peer);
  void ReleaseConn(HboneConn* c);

  // HBONE server limits (limits.h). AdmitHbone: empty if a new connection from `src` may be
  // served (it is then counted as handshaking until TrackHandshaking's connection finishes or
  // closes), else the refusal reason. Over this worker's share of the handshaking total, it
  // closes the oldest handshake of the source with the most here, if `src` has fewer, else
  // the oldest handshake if it is older than HboneLimitOptions::stale_handshake.
  std::string_view AdmitHbone(const IpAddr& src);
  void TrackHandshaking(HboneConn* c);
  bool HboneEstablished(HboneConn* c);  // false: over an established limit, c closed
  void HboneGone(HboneConn* c);         // from HboneConn::Close
  HboneLimits& limits() { return *shared_->limits; }
  // A connection that stopped reading over the unread-bytes budget; resumed when it may read.
  void PauseRead(HboneConn* c);

 private:
  void ScheduleTrim();            // every 5 s: TrimBufferCache, forget endpoints idle for 5 min
  void ScheduleTrafficMetrics();  // worker 0, every second: TrafficMetrics::Refresh
  void ResumePaused();
  HboneConn* HandshakeVictim(const IpAddr& src) const;  // see AdmitHbone
  // Dispatch: each listener kind has its path.
  void OnAccept(const std::shared_ptr<Pod>& pod, Pod::Kind kind, UniqueFd fd);

  struct ListenerHandler : EventLoop::Handler {
    Worker* w;
    std::shared_ptr<Pod> pod;
    Pod::Kind kind;
    int fd;
    void OnEvents(uint32_t e) override;
  };
  struct PodState {
    std::shared_ptr<Pod> pod;
    std::vector<std::unique_ptr<ListenerHandler>> listeners;
  };

  Proxy::Shared* shared_;
  int index_;
  EventLoop loop_;
  std::map<std::string, PodState> pods_;
  std::unique_ptr<FastPathRelay> fast_relay_;                // before flows_: outlives them
  absl::flat_hash_map<Flow*, std::unique_ptr<Flow>> flows_;  // ~20 B a flow; std::map 48
  std::map<HboneConn*, std::unique_ptr<HboneConn>> conns_;
  std::vector<HboneConn*> handshaking_;  // server connections in the handshake, oldest first
  std::vector<HboneConn*> paused_;       // connections not read over the budget
  uint64_t resume_timer_ = 0;
  bool draining_ = false;
  Inbound inbound_{this};
  Outbound outbound_{this};
  Pool pool_{this};
  std::unique_ptr<char[]> scratch_{new char[kScratch]};
};

}  // namespace weft::ztunnel
