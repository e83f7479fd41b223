// Flow bookkeeping (metrics, access log) and the plain TCP relay.
#include "ztunnel/proxy/flow.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "ztunnel/proxy/worker.h"

namespace weft::ztunnel {

namespace {
std::string LabelOr(const Labels& l, const char* a, const char* b, const std::string& def) {
  if (auto it = l.find(a); it != l.end()) return it->second;
  if (auto it = l.find(b); it != l.end()) return it->second;
  return def;
}
}  // namespace

void FillSourceLabels(TcpLabels& l, const Workload* w, const std::optional<SpiffeId>& id) {
  if (id) l.source_principal = id->ToString();
  if (!w) return;
  l.source_workload = w->workload_name;
  l.source_workload_namespace = w->ns;
  if (!id && w->in_mesh()) l.source_principal = w->identity().ToString();
  l.source_app = LabelOr(w->labels, "app.kubernetes.io/name", "app", w->workload_name);
  l.source_version = LabelOr(w->labels, "app.kubernetes.io/version", "version", "latest");
}

void FillDestinationLabels(TcpLabels& l, const Workload* w, const std::optional<SpiffeId>& id) {
  if (id) l.destination_principal = id->ToString();
  if (!w) return;
  l.destination_workload = w->workload_name;
  l.destination_workload_namespace = w->ns;
  l.destination_app = LabelOr(w->labels, "app.kubernetes.io/name", "app", w->workload_name);
  l.destination_version = LabelOr(w->labels, "app.kubernetes.io/version", "version", "latest");
}

void FillServiceLabels(TcpLabels& l, const Service* s) {
  if (!s) return;
  l.destination_service = s->hostname.empty() ? s->name + "." + s->ns : s->hostname;
  l.destination_service_name = s->name;
  l.destination_service_namespace = s->ns;
}

FlowInfo DestinationFlowInfo(const ConfigSnapshot& snap, const std::string& pod_uid,
                             const Workload& dst, const Workload* src,
                             const std::optional<SpiffeId>& src_id, const SockAddr& from,
                             const SockAddr& target, const char* security_policy) {
  FlowInfo info;
  info.direction = "inbound";
  info.pod_uid = pod_uid;
  info.src = from;
  info.dst = target;
  info.labels.mut().reporter = "destination";
  info.labels.mut().connection_security_policy = security_policy;
  FillSourceLabels(info.labels.mut(), src, src_id);
  FillDestinationLabels(info.labels.mut(), &dst, dst.identity());
  FillServiceLabels(info.labels.mut(), snap.ServiceForEndpoint(dst, target.port));
  return info;
}

Flow::~Flow() = default;

void Flow::Begin() {
  if (begun_) return;
  begun_ = true;
  info_.counters = w_->metrics().ForConnection(info_.labels);
  info_.counters->opened->Increment();
  w_->metrics().active_connections(info_.direction).Increment();
}

void Flow::AddSent(uint64_t n) {
  info_.sent += n;
  if (begun_) info_.counters->sent->Increment(static_cast<double>(n));
}

void Flow::AddReceived(uint64_t n) {
  info_.received += n;
  if (begun_) info_.counters->received->Increment(static_cast<double>(n));
}

void Flow::Finish() {
  if (finished_) return;
  finished_ = true;
  auto dur = std::chrono::duration_cast<std::chrono::microseconds>(
                 std::chrono::steady_clock::now() - info_.start)
                 .count();
  if (begun_) {
    info_.counters->closed->Increment();
    w_->metrics().active_connections(info_.direction).Decrement();
    w_->metrics().ConnectionClosed(*info_.labels, static_cast<double>(dur) / 1e6);
  }
  if (info_.authz) w_->inbound().Untrack(this);
  if (w_->opts().access_log) {
    nlohmann::json rec = {
        {"level", "info"},
        {"scope", "access"},
        {"msg", "connection complete"},
        {"direction", info_.direction},
        {"src.addr", info_.src.ToString()},
        {"src.workload", info_.labels->source_workload},
        {"src.namespace", info_.labels->source_workload_namespace},
        {"src.identity", info_.labels->source_principal},
        {"dst.addr", info_.dst.ToString()},
        {"dst.workload", info_.labels->destination_workload},
        {"dst.namespace", info_.labels->destination_workload_namespace},
        {"dst.identity", info_.labels->destination_principal},
        {"dst.service", info_.labels->destination_service},
        {"security", info_.labels->connection_security_policy},
        {"response_flags", info_.labels->response_flags},
        {"bytes_sent", info_.sent},
        {"bytes_recv", info_.received},
        {"duration_ms", static_cast<double>(dur) / 1000.0},
    };
    if (info_.hbone_target) rec["dst.hbone_addr"] = info_.hbone_target->ToString();
    if (!info_.error.empty()) rec["error"] = info_.error;
    log::WriteRecord(std::move(rec));
  }
  w_->ReleaseFlow(this);
}

void ResetConnection(UniqueFd& fd) {
  SetResetOnClose(fd.get());
  fd.reset();
}

void RefuseFlow(Worker& w, FlowInfo info, UniqueFd client, const std::string& reason) {
  // Counted like Istio counts refused connections (opened + closed, with response_flags),
  // then reset.
  Tunnel* t = w.NewFlow<Tunnel>(std::move(info), std::move(client), true);
  t->Begin();
  t->Abort(reason);
}

void StartRelay(Worker& w, const Pod& pod, FlowInfo info, UniqueFd client, const IpAddr* src_ip,
                std::unique_ptr<HttpInbound> http) {
  auto up = StartConnect(pod.netns_fd(), info.dst, w.opts().mark, src_ip);
  if (!up.ok()) {
    w.metrics().ConnectionFailure(info.direction, "connect_failed");
    LOG_WARN(info.direction, "cannot connect to the destination",
             {{"dst", info.dst.ToString()}, {"error", up.status().ToString()}});
    info.labels.mut().response_flags = "UF";
    RefuseFlow(w, std::move(info), std::move(client), up.status().ToString());
    return;
  }
  PlainRelay* r = w.NewFlow<PlainRelay>(std::move(info), std::move(client), std::move(*up));
  if (http) r->SetHttp(std::move(http));
  r->Start();
}

// ---- PlainRelay ---------------------------------------------------------------------------

namespace {
constexpr size_t kRelayChunk = 64 * 1024;
constexpr size_t kRelayHighWater = 256 * 1024;
}  // namespace

PlainRelay::PlainRelay(Worker* w, FlowInfo info, UniqueFd client, UniqueFd server)
    : Flow(w, std::move(info)) {
  fd_[0] = std::move(client);
  fd_[1] = std::move(server);
  for (int i = 0; i < 2; i++) {
    side_[i].r = this;
    side_[i].idx = i;
  }
}

void PlainRelay::OnEvents(uint32_t) {}

void PlainRelay::SetHttp(std::unique_ptr<HttpInbound> http) {
  http_ = std::move(http);
  http_->WatchTimeouts([this] { HttpTimedOut(); });
}

// L7: the header-read or idle timeout expired. The client gets the codec's 408 if it made one,
// then both sides are closed (FIN); a connection with bytes still queued either way, a broken
// codec or an unconnected server is reset instead.
void PlainRelay::HttpTimedOut() {
  if (finished_) return;
  if (connecting_ || http_->broken() || !q_[0].empty() || !q_[1].empty()) {
    Abort(http_->broken() ? "HTTP: " + http_->error() : "HTTP: timed out");
    return;
  }
  info_.error = http_->done() ? "HTTP: " + http_->error() : "HTTP: idle";
  std::string reply = http_->TakeLocalReply();
  q_[1].Append(reply.data(), reply.size());
  eof_[0] = eof_[1] = true;  // read neither side again
  shutdown(fd_[1].get(), SHUT_WR);
  shut_[1] = true;
  OnSide(0, EPOLLOUT);  // the reply out, then FIN to the client and the relay ends
}

void PlainRelay::Start() {
  Begin();
  if (info_.authz) w_->inbound().Track(this);
  // Both sockets once, edge-triggered: the server's first EPOLLOUT says it is connected; the
  // client's bytes wait in its socket (ready_[0] remembers them) until then. Back-pressure
  // (a queue at kRelayHighWater) stops reading without touching epoll; the side that drains
  // the queue reads on for it (OnSide).
  (void)w_->loop().Add(fd_[0].get(), EventLoop::kEdgeTriggered, &side_[0]);
  (void)w_->loop().Add(fd_[1].get(), EventLoop::kEdgeTriggered, &side_[1]);
  connect_timer_ = w_->loop().AddTimer(w_->opts().connect_timeout, [this] {
    connect_timer_ = 0;
    if (connecting_) {
      w_->metrics().ConnectionFailure(info_.direction, "connect_timeout");
      info_.labels.mut().response_flags = "UF";
      Abort("upstream connect timed out to " + info_.dst.ToString());
    }
  });
}

void PlainRelay::Abort(const std::string& reason) {
  if (finished_) return;
  if (info_.error.empty()) info_.error = reason;
  for (int i = 0; i < 2; i++) {
    if (fd_[i]) {
      w_->loop().Remove(fd_[i].get());
      SetResetOnClose(fd_[i].get());
      fd_[i].reset();
    }
  }
  if (connect_timer_) w_->loop().CancelTimer(connect_timer_);
  Finish();
}

void PlainRelay::OnSide(int i, uint32_t events) {
  if (finished_) return;
  ready_[i].OnEvents(events);
  if (connecting_ && i == 1) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = ConnectResult(fd_[1].get());
    if (err != 0) {
      w_->metrics().ConnectionFailure(info_.direction, "connect_failed");
      info_.labels.mut().response_flags = "UF";
      Abort("upstream connect to " + info_.dst.ToString() + " failed: " + std::strerror(err));
      return;
    }
    connecting_ = false;
    if (connect_timer_) w_->loop().CancelTimer(connect_timer_);
    connect_timer_ = 0;
    SetNoDelay(fd_[1].get());
    for (int k = 0; k < 2 && !finished_; k++) Pump(k);  // what came while connecting
    MaybeDone();
    return;
  }
  if (connecting_) return;
  if (ready_[i].readable) Pump(i);
  if (finished_) return;
  if ((events & EPOLLOUT) && !q_[1 - i].empty()) {
    if (!FlushTo(fd_[i].get(), q_[1 - i], &ready_[i])) {
      Abort(std::string("write failed: ") + std::strerror(errno));
      return;
    }
    if (q_[1 - i].empty() && eof_[1 - i] && !shut_[i]) {
      shutdown(fd_[i].get(), SHUT_WR);
      shut_[i] = true;
    }
  }
  // A side that stopped at the high-water mark keeps its readiness (no edge comes again for
  // bytes already waiting in its socket): read on once its queue has room.
  for (int k = 0; k < 2 && !finished_; k++)
    if (ready_[k].readable && !eof_[k] && q_[k].size() < kRelayHighWater) Pump(k);
  MaybeDone();
}

// L7: reads side i into scratch_ and puts it through the codec: client bytes go to q_[0] as the
// codec lets them, server bytes go to q_[1] unchanged (and may release held client bytes into
// q_[0]). A local reply is queued for the client after the server bytes, and both sides stop
// reading: the connection closes once it is out.
ssize_t PlainRelay::ReadHttp(int i) {
  ssize_t n = ReadInto(fd_[i].get(), scratch_, kRelayChunk, &ready_[i]);
  if (n <= 0) {
    if (n == 0 && i == 1) http_->AppEof();
    return n;
  }
  iovec v[8];
  while (!scratch_.empty()) {
    int k = scratch_.Peek(v, 8);
    size_t took = 0;
    for (int j = 0; j < k; ++j) {
      const char* p = static_cast<const char*>(v[j].iov_base);
      if (i == 0) {
        http_->FromClient(p, v[j].iov_len, q_[0], q_[1]);
      } else {
        // Undecided or HTTP/2: the codec holds or re-frames them into q_[1] itself.
        const bool owned = http_->owns_app_bytes();
        http_->FromApp(p, v[j].iov_len, q_[0], q_[1]);
        if (!owned) q_[1].Append(p, v[j].iov_len);
      }
      took += v[j].iov_len;
    }
    scratch_.Consume(took);
  }
  std::string reply = http_->TakeLocalReply();
  if (!reply.empty()) {
    q_[1].Append(reply.data(), reply.size());
    eof_[0] = eof_[1] = true;
  }
  return n;
}

void PlainRelay::Pump(int i) {
  int o = 1 - i;
  while (!eof_[i] && q_[i].size() < kRelayHighWater) {
    ssize_t n = http_ ? ReadHttp(i) : ReadInto(fd_[i].get(), q_[i], kRelayChunk, &ready_[i]);
    if (http_ && http_->broken()) {
      if (info_.labels->response_flags == "-") info_.labels.mut().response_flags = "DENY";
      Abort("HTTP: " + http_->error());
      return;
    }
    if (http_ && http_->not_http()) http_.reset();  // its bytes are queued: L4 from here on
    if (n > 0) {
      if (i == 0)
        AddSent(static_cast<uint64_t>(n));
      else
        AddReceived(static_cast<uint64_t>(n));
      if (!FlushTo(fd_[o].get(), q_[i], &ready_[o]) ||
          (http_ && !FlushTo(fd_[i].get(), q_[o], &ready_[i]))) {
        Abort(std::string("write failed: ") + std::strerror(errno));
        return;
      }
      continue;
    }
    if (n == 0) {
      eof_[i] = true;
      break;
    }
    if (errno == EAGAIN || errno == EINTR) break;
    if (http_ && i == 1) http_->AppReset();
    Abort(std::string("read failed: ") + std::strerror(errno));
    return;
  }
  if (eof_[i] && q_[i].empty() && !shut_[o]) {
    shutdown(fd_[o].get(), SHUT_WR);
    shut_[o] = true;
  }
}

void PlainRelay::MaybeDone() {
  if (finished_) return;
  if (eof_[0] && eof_[1] && q_[0].empty() && q_[1].empty()) {
    for (int i = 0; i < 2; i++) {
      w_->loop().Remove(fd_[i].get());
      fd_[i].reset();
    }
    Finish();
  }
}

}  // namespace weft::ztunnel
