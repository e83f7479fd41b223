// Same-node fast path (docs/fastpath.md): a connection from one of this proxy's pods to a
// meshed workload whose pod this proxy also holds skips HBONE and TLS. Loop thread only.
#pragma once

#include <cstddef>
#include <memory>

#include "common/unique_fd.h"
#include "ztunnel/proxy/event_loop.h"
#include "ztunnel/proxy/flow.h"
#include "ztunnel/state/snapshot.h"

namespace weft::ztunnel {

class Worker;

// The outbound path's first choice for a meshed destination (outbound.cc). When `dst`'s pod is
// held by this proxy, takes `info` (the source-side record) and `client`, authorizes as the
// destination's ztunnel would and starts a SameNodeFlow (or refuses), and returns true;
// otherwise (not ours, or no pipes) returns false with both untouched.
bool TrySameNode(Worker& w, const ConfigSnapshot& snap, const Workload& src, const Workload& dst,
                 FlowInfo& info, UniqueFd& client);

// The fast path's flow: the client socket accepted on the source pod's outbound listener and a
// socket connected from inside the destination pod's netns to the application, joined by
// splice(2) through one pipe per direction, so payload bytes never reach user space. Semantics are
// PlainRelay's: back-pressure (a direction reads only when its pipe is empty), half-close, RST
// propagation, connect timeout. The flow itself is the destination-side record
// (reporter="destination", authz set, pod_uid = the destination pod, tracked by Inbound so
// Reevaluate closes it); it also carries the source-side record (reporter="source"). Both are begun
// together (when the application answers; on failure just before finishing, so the metrics carry
// the response flags) and finished together, exactly once.
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

 private:
  class SourceRecord;
  struct Side : EventLoop::Handler {
    SameNodeFlow* f;
    int idx;
    void OnEvents(uint32_t e) override { f->OnSide(idx, e); }
  };
  void OnSide(int idx, uint32_t events);
  void OnConnected();
  bool Pump(int from);  // false: aborted
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
};

}  // namespace weft::ztunnel
