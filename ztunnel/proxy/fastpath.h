// Same-node fast path (docs/fastpath.md): a connection from one of this proxy's pods to a
// meshed workload whose pod this proxy also holds skips HBONE and TLS. Loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "ztunnel/proxy/event_loop.h"
#include "ztunnel/proxy/flow.h"
#include "ztunnel/state/snapshot.h"

namespace prometheus {
class Counter;
}
namespace weft::bpf {
class SameNodeRelay;
}

namespace weft::ztunnel {

class SameNodeFlow;
class Worker;
struct ProxyOptions;

// Whether the fast path uses the sockmap relay (true) or splice (false) for these options:
// kAuto runs bpf::SelfTestRelay once and logs the choice; kSockmap fails when the kernel (or a
// build without the BPF toolchain) cannot run it.
absl::StatusOr<bool> UseSockmapRelay(const ProxyOptions& opts);

// A worker's sockmap relay (bpf/relay.h) and the flows joined to it. Its ring buffer is in the
// worker's loop: a socket whose peer's reader fell behind is handed to its flow (OnOverCap).
class FastPathRelay : public EventLoop::Handler {
 public:
  static absl::StatusOr<std::unique_ptr<FastPathRelay>> Create(Worker& w);
  ~FastPathRelay() override;
  bpf::SameNodeRelay& relay() { return *relay_; }
  void Watch(uint64_t cookie, SameNodeFlow* f) { flows_[cookie] = f; }
  void Unwatch(uint64_t cookie) { flows_.erase(cookie); }
  void OnEvents(uint32_t events) override;

 private:
  explicit FastPathRelay(Worker& w);
  Worker& w_;
  std::shared_ptr<bpf::SameNodeRelay> relay_;  // (shared_ptr: a build without it links too)
  absl::flat_hash_map<uint64_t, SameNodeFlow*> flows_;
};

// The outbound path's first choice for a meshed destination (outbound.cc). When `dst`'s pod is
// held by this proxy, takes `info` (the source-side record) and `client`, authorizes as the
// destination's ztunnel would and starts a SameNodeFlow (or refuses), and returns true;
// otherwise (not ours, or no pipes) returns false with both untouched.
bool TrySameNode(Worker& w, const ConfigSnapshot& snap, const Workload& src, const Workload& dst,
                 FlowInfo& info, UniqueFd& client);

// The fast path's flow: the client socket accepted on the source pod's outbound listener and a
// socket connected from inside the destination pod's netns to the application, joined either by
// the worker's sockmap relay (the kernel moves the bytes; ztunnel watches only for EOF and
// errors, passes a FIN on once the redirected bytes are drained, and pauses a direction whose
// reader is slow; a paused direction is copied by ztunnel until the kernel redirects again, and
// under `auto` a bulk direction is copied for good) or by splice(2) through one pipe per
// direction. With splice, payload bytes never reach user space. Semantics are PlainRelay's:
// back-pressure, half-close, RST propagation, connect timeout. The flow itself is the
// destination-side record (reporter="destination", authz set, pod_uid = the destination pod,
// tracked by Inbound so Reevaluate closes it); it also carries the source-side record
// (reporter="source"). Both are begun together (when the application answers; on failure just
// before finishing, so the metrics carry the response flags) and finished together, exactly once.
class SameNodeFlow : public Flow {
 public:
  // `client` is connected; `server` is connecting; pipe_r/pipe_w: [0] client->server, [1]
  // server->client, non-blocking.
  SameNodeFlow(Worker* w, FlowInfo dst_info, FlowInfo src_info, UniqueFd client, UniqueFd server,
               UniqueFd pipe_r[2], UniqueFd pipe_w[2], size_t pipe_size);
  ~SameNodeFlow() override;
  void Start();
  void Abort(const std::string& reason) override;
  void OnEvents(uint32_t events) override;  // unused: each socket has its own handler
  FlowInfo& source_info();
  // Sockmap relay: the socket with `cookie` has a slow reader behind its peer.
  void OnOverCap(uint64_t cookie);

 private:
  class SourceRecord;
  struct Side : EventLoop::Handler {
    SameNodeFlow* f;
    int idx;
    void OnEvents(uint32_t e) override { f->OnSide(idx, e); }
  };
  void OnSide(int idx, uint32_t events);
  void OnConnected();
  bool MakePipesNow();
  bool Pump(int from);  // false: aborted
  // Sockmap relay (docs/fastpath.md).
  bool JoinRelay();
  void OnRelaySide(int idx, uint32_t events);
  void PollRelay();           // drain before a FIN, resume a paused direction; re-arms itself
  bool PollPaused(int from);  // false: aborted
  void UpdateRelayInterest(int idx);
  void SchedulePoll();
  // Forwards what the program left on `from` (recv/send): a resumed direction until the program
  // redirects again, a copied one (auto) to its end. False: aborted.
  bool CopyTail(int from);
  void ScheduleStats();    // CountRelayBytes every kRelayStatsInterval
  void CountRelayBytes();  // the BPF counters into both records
  void LeaveRelay();
  void Wakeup();
  void UpdateInterest(int idx);
  void MaybeDone();
  void FinishBoth();
  std::unique_ptr<SourceRecord> src_;
  UniqueFd fd_[2];  // [0] client (source pod), [1] server (destination app)
  UniqueFd pipe_r_[2], pipe_w_[2];
  size_t pipe_size_;
  size_t in_pipe_[2] = {0, 0};  // bytes spliced into pipe i and not yet out of it
  Side side_[2];
  bool eof_[2] = {false, false}, shut_[2] = {false, false};
  bool hup_[2] = {false, false};         // EPOLLHUP seen: unregister when idle (it never stops)
  bool registered_[2] = {false, false};  // fd_[i] is in the loop's epoll set
  bool connecting_ = true;
  uint32_t interest_[2] = {0, 0};
  uint64_t connect_timer_ = 0;
  prometheus::Counter* wakeups_ = nullptr;
  FastPathRelay* relay_ = nullptr;  // joined: the kernel moves the bytes
  uint64_t cookie_[2] = {0, 0}, base_[2] = {0, 0};
  uint64_t counted_[2] = {0, 0};  // redirected bytes already in the metrics
  // Direction i (bytes arriving on fd_[i]) in the sockmap relay. paused_: the program leaves its
  // bytes on fd_[i] (weft_relay_ctl), waiting for the peer to take every redirected byte.
  // tailing_: ztunnel forwards them (CopyTail); with copy_ (auto, a bulk direction) for good,
  // else until the program redirects again. fin_wait_: fd_[i] read EOF while the program still
  // has passed bytes on their way to its queue (a timer, not EPOLLIN, brings CopyTail back).
  bool paused_[2] = {false, false};
  bool tailing_[2] = {false, false};
  bool copy_[2] = {false, false};
  bool fin_wait_[2] = {false, false};
  uint64_t forwarded_[2] = {0, 0};  // bytes CopyTail wrote from fd_[i] to fd_[1-i]
  std::string tail_[2];             // CopyTail: bytes read from i, not yet written to 1-i
  uint64_t poll_timer_ = 0, stats_timer_ = 0;
  int poll_ms_ = 1;
};

}  // namespace weft::ztunnel
