// L7 on the source side (issue 14): a connection a pod's application opened to an HTTP port of a
// Service VIP (l7::IsHttpPort), terminated in the client's own ztunnel so that every request, not
// every connection, chooses its endpoint.
//
// The client's bytes go through the same sans-I/O codec the destination uses
// (l7::Http1ServerConnection: Beast's parser, RFC 9112 framing checks, limits, pipelining,
// Upgrade/CONNECT). Its gate is the router: for each request it adds trace context when missing
// (W3C `traceparent`, taking the trace id of B3 headers when those are present, and
// `x-request-id`), applies the Service's Gateway API routes (issue 15, ztunnel/traffic/plan.h:
// a redirect, 404 "NR" or fault abort answered locally; header modifiers and URL rewrites applied
// to the head; the weighted backend Service chosen), chooses one of the backend Service's ready
// endpoints with the Balancer (power of two choices over outstanding requests with failure
// backoff, balancer.h) and hands the request to an upstream connection for that endpoint: an
// idle one of this connection's, else a new one.
//
// An upstream connection is a socketpair whose other end is the client socket of an ordinary
// outbound flow to that endpoint (Outbound::OpenUpstream): an HBONE stream to a meshed endpoint
// (riding the pooled HBONE connection to its node, so a new upstream costs one CONNECT stream and
// no handshake), the same-node fast path, or plain TCP to an endpoint outside the mesh; these
// flows keep their L4 records (istio_tcp_*, reporter "source"). HTTP/1.1 upstreams carry one
// request at a time (no pipelining towards servers, as Envoy); they stay open for the next
// request of the connection while the server keeps them alive. HTTP/2 upstreams are the
// worker's (H2UpstreamPool, upstream_pool.h), shared by the pod's HTTP/2 client connections.
//
// Responses reach the client in request order: only the upstream of the oldest outstanding
// request is read, the others wait in their socket buffers (back-pressure, no copies held here).
// Client bytes are not read while an upstream's queue holds bytes it did not take, and upstreams
// are not read while the client's does, so memory per connection is bounded by what one read
// brings (64 KiB) plus the socket buffers.
//
// Local replies carry Envoy's semantics: 503 `no healthy upstream` ("UH") when the Service has
// no ready endpoint; 503 `upstream connect error or disconnect/reset before headers. reset
// reason: connection failure` ("UF") when the upstream ended before answering anything, `...
// connection termination` ("UC") when it ended a response after having answered before; a
// request the codec refuses gets its 400/431 ("DPE"). After a local reply the connection closes.
//
// Every finished request is recorded as Istio's request metrics with reporter "source" and the
// endpoint's destination labels, one access-log line, and a `weftctl tap` event.
//
// A connection whose first bytes are not an HTTP/1.1 request line falls back to L4 for that
// connection (counted as weft_bad_input_total{port="http",kind="not_http_l4_fallback"}):
// Service ports declared HTTP only for metrics and routing must not break a client that speaks
// something else (the destination still enforces any L7 policy, failing closed). A client that
// sends nothing for kDetectTimeout (1 s) falls back too (kind "no_client_bytes_l4_fallback"):
// it may be waiting for a server-first protocol behind a port declared HTTP by mistake. The
// HTTP/2 preface selects the HTTP/2 codec's router mode (l7/http2_server.h); so does an HTTP/1.1
// h2c upgrade offer (RFC 7540 3.2; what `curl --http2` sends to an http:// URL): ztunnel answers
// the 101 itself and the upgrade request becomes the HTTP/2 connection's stream 1. Servers are
// never offered the upgrade: upstreams speak what ztunnel chose for them.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/net.h"
#include "common/unique_fd.h"
#include "ztunnel/l7/http1_server.h"
#include "ztunnel/l7/http2_server.h"
#include "ztunnel/proxy/flow.h"
#include "ztunnel/proxy/request_record.h"
#include "ztunnel/proxy/upstream_pool.h"
#include "ztunnel/traffic/registry.h"
#include "ztunnel/traffic/retry.h"

namespace weft::ztunnel {

class HttpOutbound : public Flow, public H2UpstreamPool::Client {
 public:
  // `info`: the source record of the client's connection (source and Service labels filled);
  // `orig`: its original destination, the Service VIP and port (looked up again per request, so
  // endpoint changes apply to the next request).
  HttpOutbound(Worker* w, FlowInfo info, UniqueFd client, std::shared_ptr<Pod> pod, SockAddr orig);
  ~HttpOutbound() override;
  void Start();
  void Abort(const std::string& reason) override;
  void OnShutdown() override;               // HTTP/2 clients get a GOAWAY
  void OnEvents(uint32_t events) override;  // the client socket
  void OnH2Wake() override;                 // a shared HTTP/2 upstream's work touched it

 private:
  struct Upstream : EventLoop::Handler {
    HttpOutbound* o = nullptr;
    size_t idx = 0;
    UniqueFd fd;
    std::string endpoint;     // workload uid: the balancer's key
    std::string key;          // endpoint, port and Service: what may reuse it (pool key)
    std::string addr;         // ip:port of the endpoint (access log)
    ByteQueue out;            // bytes for it its socket did not take yet
    bool busy = false;        // a request is outstanding on it
    bool ended = false;       // it closed or failed: never used again
    bool answered = false;    // it ever sent a byte
    uint64_t resp_bytes = 0;  // bytes of the response to its current request
    bool hup = false;         // HUP/ERR seen while it was not to be read
    bool registered = false;
    uint32_t interest = 0;
    bool held = false;        // its bytes wait (fault delay, retry back-off): not written yet
    uint64_t hold_timer = 0;  // releases `held`
    uint32_t requests = 0;    // requests it carried (maxRequestsPerConnection)
    std::optional<traffic::CircuitBreaker::Slot> conn_slot;  // maxConnections, while open
    std::shared_ptr<RequestSeriesCache> series;
    // Same-node endpoint (the fast path relays its bytes, so no destination ztunnel parses
    // them): its requests reported for the destination as well, as the fast path reports a
    // connection twice.
    std::shared_ptr<RequestSeriesCache> dst_series;
    // HTTP/2: the worker's shared connection this index names (no socket of its own here).
    std::shared_ptr<H2UpstreamPool::Conn> h2conn;
    void OnEvents(uint32_t e) override { o->OnUpstream(*this, e); }
  };
  // A routed request, oldest first, until its exchange is reported.
  struct Routed {
    uint64_t id = 0;
    size_t up = 0;
    std::string trace_id;
    // ztunnel answered it (the upstream failed before responding, or it timed out): with this
    // status and body.
    bool failed = false;
    uint16_t fail_status = 0;
    std::string_view fail_body;
    std::string flags;  // Envoy's response flags ztunnel set ("UF", "UT", "URX", "DI"...)
    // Issue 15: what its TrafficPolicies and route asked for (see http_outbound_traffic.cc).
    SnapshotPtr snap;  // keeps the route's pointers below alive
    const Service* backend = nullptr;
    const ServicePort* backend_port = nullptr;
    std::shared_ptr<const traffic::ServiceTraffic> called_traffic, backend_traffic;
    std::optional<traffic::CircuitBreaker::Slot> request_slot;  // http2MaxRequests
    std::unique_ptr<traffic::RetryState> retry;                 // null: no retries
    std::string replay;     // the request's bytes as sent, for a retry
    bool replay_ok = true;  // every byte is in `replay` (false: over kMaxReplay, or a switch)
    const config::HttpHeaderModifier* response_mods[2] = {nullptr, nullptr};
    std::vector<const config::HttpRequestMirror*> mirrors;  // copies to send once it is done
    bool hold = false;       // the response head is held until complete (retry, response modifiers)
    std::string head;        // response bytes held
    bool committed = false;  // response bytes went to the client
    std::chrono::steady_clock::time_point deadline{}, try_deadline{};  // {}: none
    uint64_t timer = 0;
    bool timed_out = false;  // its request timeout fired while it waited behind another
  };

  void Sniff();
  void StartH2();
  bool UpgradeToH2();
  void FallBackToL4(std::string_view kind);  // counted in weft_bad_input_total{kind}
  void CancelDetectTimer();
  static constexpr std::chrono::milliseconds kDetectTimeout{1000};
  void ReadClient();
  void OnUpstream(Upstream& u, uint32_t events);
  void ReadUpstream(Upstream& u);
  void UpstreamEnded(Upstream& u);
  std::string AddTraceContext(HttpRequestAttributes& req);
  // Where a request goes after its route (issue 15): the backend Service and its port (null:
  // the called address is no Service of the snapshot).
  struct Target {
    const Service* svc = nullptr;
    const ServicePort* port = nullptr;
    // Issue 15 (kForward plans): what the request's Routed record carries out.
    uint64_t delay_ms = 0;    // injected delay ("DI")
    uint64_t timeout_ms = 0;  // timeouts.request
    traffic::RetrySpec retry;
    const config::HttpHeaderModifier* response_mods[2] = {nullptr, nullptr};
    std::vector<const config::HttpRequestMirror*> mirrors;  // drawn for this request
  };
  std::variant<Target, l7::LocalReply> PlanRoute(const SnapshotPtr& snap,
                                                 HttpRequestAttributes& req, std::string* flags);
  // The balancer's pick among the ready endpoints of `svc` not ejected by `outlier` (all of
  // them when every one is), preferring one other than `avoid` (a retry's previous endpoint).
  const Workload* ChooseEndpoint(const ConfigSnapshot& snap, const Service& svc,
                                 traffic::OutlierDetector* outlier = nullptr,
                                 std::string_view avoid = {});
  std::optional<l7::LocalReply> Route(HttpRequestAttributes& req);
  std::optional<l7::LocalReply> GateH2(HttpRequestAttributes& req);
  std::variant<size_t, l7::LocalReply> RouteH2(const HttpRequestAttributes& req);
  void DoneH2(const l7::Exchange& ex);
  bool AfterH2();
  // The HTTP/2 codec's sinks: bytes for upstream i, bytes for the client.
  auto ToUp() {
    return [this](size_t i, std::string_view b) {
      if (i < ups_.size() && !ups_[i]->ended) ups_[i]->out.Append(b.data(), b.size());
    };
  }
  // (HTTP/2's upstreams are shared, so the client's bytes are counted as they go to it.)
  auto ToClient() {
    return [this](std::string_view b) {
      AddReceived(b.size());
      client_out_.Append(b.data(), b.size());
    };
  }
  // Null with *overflow set when the backend's circuit breaker refused a new connection.
  Upstream* UpstreamFor(const ConfigSnapshot& snap, const Workload& dst, const Target& t,
                        traffic::CircuitBreaker* breaker = nullptr, bool* overflow = nullptr);
  // HTTP/2: this connection's index for a shared connection to `dst` with room (else a new one).
  Upstream* SharedH2For(const ConfigSnapshot& snap, const Workload& dst, const Target& t,
                        const std::shared_ptr<const traffic::ServiceTraffic>& traffic,
                        bool* overflow);
  // A new upstream flow to `dst` (HttpOutbound's socketpair end), with its request labels and
  // address.
  absl::StatusOr<UniqueFd> OpenFlow(const ConfigSnapshot& snap, const Workload& dst,
                                    const Target& t, TcpLabels* labels, std::string* addr);
  // Issue 15 on HTTP/1.1 upstreams (http_outbound_traffic.cc).
  std::optional<l7::LocalReply> Admit(Routed& r, const SnapshotPtr& snap, const Target& t,
                                      const HttpRequestAttributes& req);
  std::shared_ptr<const traffic::ServiceTraffic> CalledTraffic(
      const ConfigSnapshot& snap, const Target& t,
      const std::shared_ptr<const traffic::ServiceTraffic>& backend);
  void ArmTimer(Routed& r);
  void OnRequestTimer(uint64_t id);
  void TimeOut(Routed& r);
  bool MaybeRetry(Routed& r, const traffic::AttemptResult& result);
  void FailFront(uint16_t status, std::string_view body, std::string flags);
  bool HoldHead(Routed& r, std::string* out);
  void Hold(Upstream& u, uint64_t ms);
  void DropUpstream(Upstream& u);
  void ReportAttempt(const Routed& r, std::string_view endpoint, uint16_t status);
  void SendMirrors(const Routed& r);
  // RequestMirror's upstream: a new connection to an endpoint of the mirror Service, as a
  // request's own upstream would be opened (invalid when it has no ready endpoint or cannot be
  // reached).
  UniqueFd OpenMirror(const ConfigSnapshot& snap, const config::HttpRequestMirror& m);
  // HTTP/2: the codec's copy of a mirrored stream's request (null: not mirrorable).
  void SendMirrorsH2(const HttpRequestAttributes& req,
                     const l7::Http2ServerConnection::MirrorCopy* copy);
  void Done(const l7::Exchange& ex);
  // Reports `ex` in `series` (and `dst_series`, a same-node upstream's destination record),
  // the access log and tap.
  void Record(const l7::Exchange& ex, RequestSeriesCache* series, std::string_view flags,
              const std::string& upstream, const std::string& trace_id,
              RequestSeriesCache* dst_series = nullptr);
  void ToUpstream(std::string_view bytes);
  void Flush();
  void UpdateInterest();
  void SetInterest(Upstream& u, uint32_t ev);
  void MaybeClose();
  void Close(bool reset);

  std::shared_ptr<Pod> pod_;
  SockAddr orig_;
  UniqueFd client_;
  uint32_t client_interest_ = 0;
  uint64_t detect_timer_ = 0;  // while sniffing: the client's first bytes are due
  bool sniffing_ = true, client_eof_ = false, closing_ = false, closed_ = false;
  ByteQueue client_out_;
  l7::Http1ServerConnection codec_;
  std::unique_ptr<l7::Http2ServerConnection> h2_;  // prior-knowledge h2c: set by Sniff
  std::vector<std::unique_ptr<Upstream>> ups_;
  std::deque<Routed> routed_;
  uint64_t next_routed_id_ = 1;
  Upstream* cur_ = nullptr;     // where the codec's current request bytes go
  Upstream* tunnel_ = nullptr;  // after a protocol switch: the upstream bytes relay to
  RequestSeriesCache local_;    // requests answered without an upstream
  std::string gate_flags_;      // a gate's local reply: its flags ("UH", "UF", a route's)
  // HTTP/2 streams between their gate and their end, by their request: the route's backend
  // ("<namespace>/<name>", service port) or the flags of the route's local reply.
  struct H2Route {
    std::string service;
    uint16_t port = 0;
    std::string flags;
    std::shared_ptr<const traffic::ServiceTraffic> traffic;     // the backend's
    std::optional<traffic::CircuitBreaker::Slot> request_slot;  // http2MaxRequests
    // Retries, back-off, timeouts and fault delays (issue 15), as for HTTP/1.1.
    uint64_t id = 0;
    std::shared_ptr<const traffic::ServiceTraffic> called_traffic;  // its retry budget
    std::unique_ptr<traffic::RetryState> retry;
    std::string avoid;        // the endpoint of the attempt before a retry
    std::string final_flags;  // "URX"
    std::chrono::steady_clock::time_point deadline{}, try_deadline{};
    uint64_t timer = 0;
    // A fault delay or a retry's back-off: the next routing waits `defer_ms` (the codec holds
    // the request, kDefer) on `defer_timer`.
    uint64_t defer_ms = 0;
    uint64_t defer_timer = 0;
    // ResponseHeaderModifier (the rule's, then the backend's), in `snap`.
    SnapshotPtr snap;
    const config::HttpHeaderModifier* response_mods[2] = {nullptr, nullptr};
    // RequestMirror (in `snap`): copies to send once the request is whole (SendMirrorsH2),
    // closed after timeouts.request when the route has one.
    std::vector<const config::HttpRequestMirror*> mirrors;
    uint64_t mirror_timeout_ms = 0;
  };
  uint64_t next_h2_id_ = 1;
  bool h2_try_timeout_ = false;  // RetryStream is asking for a per-try timeout
  bool RetryH2(const HttpRequestAttributes& req, int upstream, int status, int grpc_status);
  void ArmH2Timer(const HttpRequestAttributes* req, H2Route& route);
  void EditH2Response(const HttpRequestAttributes& req,
                      std::vector<std::pair<std::string, std::string>>* fields);
  void OnH2Timer(const HttpRequestAttributes* req, uint64_t id);
  // RouteH2's deferral: the request waits route.defer_ms, then the codec routes it (RouteNow).
  size_t DeferH2(const HttpRequestAttributes* req, H2Route& route);
  absl::flat_hash_map<const HttpRequestAttributes*, H2Route> h2_routes_;
};

}  // namespace weft::ztunnel
