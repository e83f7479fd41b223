// One HTTP/2 cleartext connection (prior knowledge, "h2c") from a client, proxied request by
// request to HTTP/2 upstreams, without I/O. Two uses in ztunnel:
//  - destination side (the 3-argument constructor): one upstream, the app (index 0, driven by
//    FromApp/AppEof); what L7 authorization needs for gRPC and HTTP/2 clients of a policed
//    workload;
//  - source side (with a Router): any number of upstreams (connections to endpoints, numbered
//    by the caller), each request routed to one of them, so one long-lived client connection
//    (gRPC) spreads over all endpoints.
//
// nghttp2 sessions (no hand-written framing): a server session terminates the client's HTTP/2,
// a client session per upstream originates HTTP/2 towards it, and every client stream is mapped
// to one stream on one upstream. Per stream:
//  - the request's header block is complete before anything of it goes upstream: its
//    HttpRequestAttributes (:method, :authority or Host, :path, the regular fields) go through
//    the gate (same signature as Http1ServerConnection's); the gate may change the path (the
//    upstream then sees the changed :path) and may fill `add_headers`, appended to the header
//    block sent upstream. A denied stream gets a local reply on that stream only (Envoy's: 403
//    "RBAC: access denied"; for gRPC, content-type application/grpc*, HTTP 200 trailers-only
//    with grpc-status 7 PERMISSION_DENIED and grpc-message "RBAC: access denied"), its DATA is
//    dropped, and the other streams continue;
//  - source side: after the gate allowed it, the router names the upstream (an index; the
//    codec creates the upstream's session on first use and emits its preface and SETTINGS
//    through `to_up`) or answers with a local reply; an index that is not UpstreamUsable()
//    gets 503 "no healthy upstream". Exchange::upstream is the index that carried the request
//    (the last one, after re-routing; kept for the 503 of an upstream that ended; -1 when none
//    did: answered by the gate or the router, or refused). The codec keeps a few dozen bytes
//    per upstream index for the connection's life (UpstreamUsable stays false for ended ones);
//  - DATA, trailers (gRPC's grpc-status) and interim 1xx are forwarded both ways; RST_STREAM is
//    propagated both ways with its error code; an upstream stream that ends without a complete
//    response resets the client's stream;
//  - flow control is end to end: every session runs without automatic WINDOW_UPDATE, and bytes
//    a peer sent are given back to it (nghttp2_session_consume) only as the other session takes
//    them into its frames (once: a body sent again after a refusal is not given back twice). A
//    slow upstream (its window closed) therefore stops the client's stream once the client's
//    window is spent. Buffered in the codec (buffered()), since a peer may never send beyond
//    the window advertised to it: client -> upstreams at most the stream window per stream
//    (Http2Limits: 64 KiB) and the connection window in all (1 MiB), plus, on the source side,
//    the request body already sent but kept until the upstream answers in case it refuses the
//    request (again at most a stream window per stream and a connection window in all; a body
//    over that is not kept and its request not re-routed); upstreams -> client at most the
//    stream window per stream and the connection window per upstream (each upstream session
//    advertises its own), so with U upstreams at most min(U x connection window,
//    max_concurrent_streams x stream window).
// Connection: SETTINGS_MAX_CONCURRENT_STREAMS and SETTINGS_MAX_HEADER_LIST_SIZE towards the
// client (a request over the header limits gets 431), SETTINGS_ENABLE_PUSH 0 towards every
// upstream (a PUSH_PROMISE is a connection error; nothing is ever pushed to the client); a
// client's GOAWAY drains the connection. A protocol error from the client (bad preface, bad
// frames) breaks the connection (kBroken).
// Upstream GOAWAY, RST_STREAM REFUSED_STREAM, end, and protocol errors:
//  - destination side: the app's GOAWAY is forwarded to the client (streams the app refused are
//    reset with REFUSED_STREAM); the app's end (AppEof) answers its streams without a response
//    head with 503 (kResetBeforeHeadersTermination), resets the others and sends the client a
//    GOAWAY; a protocol error from the app breaks the connection (kBroken);
//  - source side, per upstream, the others and their streams never affected: a GOAWAY makes
//    the upstream unusable (UpstreamUsable() false: the router must not pick it again) and its
//    streams the upstream did not process (above its last-stream-id, not yet started, or reset
//    with REFUSED_STREAM) are routed again (the router is called again, up to kMaxReroutes
//    times per request; the new upstream gets the whole request, its body kept as said below;
//    a request whose body was not kept is reset with REFUSED_STREAM, which gRPC clients retry);
//    streams it already took complete on it. Its end (UpstreamEof) answers its streams without
//    a response head with a local 503 (kResetBeforeHeadersTermination, or
//    kResetBeforeHeadersFailure when the upstream never sent a byte: Envoy's UC / UF) and
//    resets the others; a protocol error from it (or bytes that are not HTTP/2) does the same
//    with kResetBeforeHeadersProtocolError (Envoy's UPE). Nothing is sent to the client
//    connection as a whole (no GOAWAY). UpstreamFinished() tells the caller when to close an
//    upstream's transport.
//
// Shared upstreams (source side, Http2Upstream below): instead of an upstream of its own, an
// index may name an Http2Upstream that the caller attached (AttachUpstream), which carries the
// streams of many connections (a worker's pool: many client connections multiplexed over one
// upstream HTTP/2 connection). Everything above holds per stream; what differs:
//  - a connection with shared upstreams has persistent sinks (SetShared): work on one
//    connection can make frames for another's client (a shared upstream's response, WINDOW_UPDATE
//    as request bytes are taken) and for any shared upstream, so both sides' frames go out
//    through an Http2Hub that the calls here flush before they return;
//  - a shared upstream's connection window is given back as its bytes arrive and its streams'
//    windows as the client takes them, so a client that stops reading stops only its own
//    streams (each holds at most the stream window) and never the upstream connection;
//  - its GOAWAY, end or protocol error affects every connection's streams on it as above
//    (unprocessed ones re-routed by their own connection's router); a connection that ends
//    (Finish) cancels only its own streams on it (RST_STREAM CANCEL, or a queued request never
//    sent); the caller (the pool) closes its transport when Finished().
//
// Not thread-safe: one connection, one thread (shared upstreams: every connection and upstream
// of a hub on one thread). Callbacks (gate, router, done) run inside the calls below (and, with
// shared upstreams, inside another connection's or upstream's calls); they must not call back
// into the connection except the const Upstream*() queries and AttachUpstream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/functional/function_ref.h"
#include "ztunnel/l7/exchange.h"
#include "ztunnel/l7/http1_server.h"
#include "ztunnel/rbac/request.h"

struct nghttp2_session;
struct nghttp2_session_callbacks;
struct nghttp2_option;

namespace weft::ztunnel::l7 {

class Http2ServerConnection;
class Http2Upstream;

// The HTTP/2 sessions of one thread (connections with shared upstreams, and those upstreams)
// that have frames to send: sending them (Flush) may give window back to, or end streams of,
// another session, so it goes on until none is left. The connections and upstreams keep it
// alive (shared_ptr). Loop thread only.
class Http2Hub {
 public:
  // Drains every marked session to its persistent output. A nested call (from inside a flush)
  // returns at once: the outer one finishes the work.
  void Flush();

 private:
  friend class Http2ServerConnection;
  friend class Http2Upstream;
  void Mark(Http2ServerConnection* c);
  void Mark(Http2Upstream* u);
  void Forget(Http2ServerConnection* c);
  void Forget(Http2Upstream* u);
  std::vector<Http2ServerConnection*> conns_;
  std::vector<Http2Upstream*> ups_;
  bool flushing_ = false;
};

// The client connection preface (RFC 9113 3.4): what prior-knowledge HTTP/2 starts with.
inline constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Envoy's local reply bodies (and Exchange::reason) for a request whose upstream went away
// before the response head: the connection ended after the upstream had sent something (Envoy's
// response flag UC), it ended without the upstream ever sending a byte (UF), or the upstream
// broke HTTP/2 (UPE).
inline constexpr std::string_view kResetBeforeHeadersTermination =
    "upstream connect error or disconnect/reset before headers. reset reason: connection "
    "termination";
inline constexpr std::string_view kResetBeforeHeadersFailure =
    "upstream connect error or disconnect/reset before headers. reset reason: connection "
    "failure";
inline constexpr std::string_view kResetBeforeHeadersProtocolError =
    "upstream connect error or disconnect/reset before headers. reset reason: protocol error";
// The local reply to a request routed to an upstream that is not usable (Envoy's UH body).
inline constexpr std::string_view kNoHealthyUpstream = "no healthy upstream";

struct Http2Limits {
  uint32_t max_concurrent_streams = 100;       // towards the client (Envoy's default is higher)
  uint32_t max_header_list_bytes = 60 * 1024;  // per request header block (Envoy's 60 KiB): 431
  size_t max_fields = 100;                     // header fields per request (Envoy's default): 431
  int32_t stream_window = 64 * 1024;           // receive window per stream, each side
  int32_t connection_window = 1024 * 1024;     // receive window per connection, each side
};

class Http2ServerConnection {
 public:
  using Gate = Http1ServerConnection::Gate;
  using Done = Http1ServerConnection::Done;
  using Sink = absl::FunctionRef<void(std::string_view)>;
  // Bytes for upstream `upstream` (the router's index; 0 on the destination side).
  using UpstreamSink = absl::FunctionRef<void(size_t upstream, std::string_view)>;
  // Source side: which upstream carries an allowed request (the caller's index, any size_t; an
  // upstream session is created on first use, its preface and SETTINGS emitted to that
  // upstream), or a local reply for it (e.g. 503 kNoHealthyUpstream when the balancer has no
  // endpoint). Called after the gate allowed the request, and again for a request an upstream
  // did not process (see above). The caller connects an index when `to_up` first gets bytes
  // for it. An index whose upstream ended stays unusable: a fresh connection to the same
  // endpoint needs a new index.
  // The router may also answer kDefer: the request waits (its body held within HTTP/2 flow
  // control) until the caller calls RouteNow for it (a fault delay, a retry's back-off).
  using Router = std::function<std::variant<size_t, LocalReply>(const HttpRequestAttributes&)>;
  static constexpr size_t kDefer = static_cast<size_t>(-1);
  // kHttp: running; kClosing: the connection is over (GOAWAY exchanged and no stream left, or
  // the app closed): flush what was emitted and close; kBroken: a protocol error, abort both.
  using State = Http1ServerConnection::State;

  // Routing a request again after an upstream refused it: at most this many times per request.
  static constexpr int kMaxReroutes = 3;

  // Destination side: one upstream (the app, index 0), whose preface goes out on the first
  // flush.
  Http2ServerConnection(Http2Limits limits, Gate gate, Done done);
  // Source side: upstreams chosen by `router` per request.
  Http2ServerConnection(Http2Limits limits, Gate gate, Done done, Router router);
  ~Http2ServerConnection();
  Http2ServerConnection(const Http2ServerConnection&) = delete;
  Http2ServerConnection& operator=(const Http2ServerConnection&) = delete;

  // Client bytes in. Frames for upstreams go to `to_up`, frames for the client (SETTINGS,
  // WINDOW_UPDATE, local replies, resets) to `to_client`, in order per peer.
  void FromClient(std::string_view in, UpstreamSink to_up, Sink to_client);
  // Source side, HTTP/1.1's h2c upgrade (Http1ServerConnection::TakeH2cUpgrade): call once,
  // before any FromClient, after the caller queued its 101 for the client. `settings` is the
  // decoded HTTP2-Settings payload; `request` (its hop-by-hop fields are dropped) becomes stream
  // 1, half-closed by the client, and goes through the gate and the router as any request. False
  // when nghttp2 refuses the settings: nothing happened, the caller answers 400.
  bool AcceptUpgrade(std::string_view settings, const HttpRequestAttributes& request,
                     uint64_t head_bytes, UpstreamSink to_up, Sink to_client);
  // Bytes from upstream `upstream` in; same sinks. Ignored for an upstream that ended.
  void FromUpstream(size_t upstream, std::string_view in, UpstreamSink to_up, Sink to_client);
  // That upstream closed or reset its transport (or could not connect): see above. Without a
  // router this is AppEof. Also to be called after closing an UpstreamFinished() one (it then
  // only forgets the session).
  void UpstreamEof(size_t upstream, UpstreamSink to_up, Sink to_client);
  // False once an upstream sent GOAWAY, ended or broke HTTP/2: the router must not pick it again
  // (the caller then uses a new index for a fresh upstream to the same endpoint). True for an
  // index not used yet. False for every index once the connection is broken.
  bool UpstreamUsable(size_t upstream) const;
  // Streams currently open on an upstream (the balancer's "outstanding requests").
  size_t UpstreamStreams(size_t upstream) const;
  // True when the caller should close that upstream's transport (after flushing what was
  // emitted to it) and then call UpstreamEof: it sent GOAWAY and none of its streams is left, or
  // it broke HTTP/2 (its streams were already answered).
  bool UpstreamFinished(size_t upstream) const;

  // Shared upstreams (see above). SetShared once, before anything else: `to_client` gets the
  // client's frames whatever call made them, `wake` is told whenever the hub flushed this
  // connection for another's work (the caller then writes, checks state() and so on, outside the
  // hub's flush). The per-call sinks still get the frames of the connection's own upstreams.
  void SetShared(std::shared_ptr<Http2Hub> hub, std::function<void(std::string_view)> to_client,
                 std::function<void()> wake);
  // Index `upstream` names `u` (shared, same hub) from now on; the router may then return it.
  // Not for an index already in use.
  void AttachUpstream(size_t upstream, std::shared_ptr<Http2Upstream> u);

  // The one-upstream (destination side) forms: upstream 0 is the app.
  void FromClient(std::string_view in, Sink to_app, Sink to_client);
  void FromApp(std::string_view in, Sink to_app, Sink to_client);
  // The app closed its side: streams without a response get 503 (Envoy's "upstream reset"), the
  // others are reset; without a router the client gets a GOAWAY.
  void AppEof(Sink to_client);
  // The connection is torn down: streams still open are reported, and cancelled on shared
  // upstreams (only this connection's; nothing is driven afterwards).
  void Finish();
  // ztunnel is shutting down: the client gets a GOAWAY (NO_ERROR, the last stream processed), so
  // it knows which of its requests were not taken and may retry them elsewhere; new streams are
  // refused. Sinks as for FromClient.
  void GoAway(UpstreamSink to_up, Sink to_client);

  // Source side, retries (issue 15). `check` is asked for a request that can still be sent
  // again (its whole request received, its body kept or none sent, no response to the client
  // yet, fewer than kMaxRetries retries) whenever an attempt ends: at the final response head
  // (`status`, and `grpc_status` of a trailers-only response, else -1) and when its upstream
  // ends before one (status 0). True: the attempt is cancelled on its upstream (RST_STREAM
  // CANCEL, its response dropped) and the router is called again for the request.
  using RetryCheck = std::function<bool(const HttpRequestAttributes& request, int upstream,
                                        int status, int grpc_status)>;
  void SetRetryCheck(RetryCheck check) { retry_check_ = std::move(check); }
  // Source side, a route's ResponseHeaderModifier (issue 15): `edit` may change the final
  // response head's fields of `request` (lower-case names, pseudo-headers first) before it goes
  // to the client. Pseudo-headers, content-length and HTTP/1.1's connection-specific fields are
  // kept as the upstream sent them whatever `edit` does (HTTP/2 forbids the latter).
  using ResponseEdit =
      std::function<void(const HttpRequestAttributes& request,
                         std::vector<std::pair<std::string, std::string>>* fields)>;
  void SetResponseEdit(ResponseEdit edit) { response_edit_ = std::move(edit); }
  static constexpr int kMaxRetries = 10;
  // Source side, RequestMirror (issue 15). `wanted` is asked once per request the gate allowed
  // (after the gate ran). For a request it wants, the codec keeps a copy of what goes upstream
  // (the header block as sent, the body, the trailers) beside the stream, outside HTTP/2 flow
  // control, so the copy never waits for anything nor slows the stream; and calls `sink` once:
  //  - with the copy, when the whole request was received and it was handed to an upstream
  //    (after a deferral: once routed), whatever its response turns out to be;
  //  - with null as soon as the body goes over `max_body`, or the copies of all the
  //    connection's streams over the connection window (Http2Limits): not mirrored.
  // Never called for a request answered locally (the gate's or the router's reply, a refusal)
  // or reset before it was complete: as for HTTP/1.1, there is nothing to mirror.
  struct MirrorCopy {
    const std::vector<std::pair<std::string, std::string>>& head;
    std::string_view body;
    const std::vector<std::pair<std::string, std::string>>& trailers;
  };
  using MirrorWanted = std::function<bool(const HttpRequestAttributes& request)>;
  using MirrorSink =
      std::function<void(const HttpRequestAttributes& request, const MirrorCopy* copy)>;
  void SetMirror(MirrorWanted wanted, MirrorSink sink, size_t max_body) {
    mirror_wanted_ = std::move(wanted);
    mirror_sink_ = std::move(sink);
    mirror_max_body_ = max_body;
  }
  // The per-try timeout of the stream of `request` fired: retried as above when `check` agrees
  // (asked with status 0); false when it was not.
  bool RetryStream(const HttpRequestAttributes& request, UpstreamSink to_up, Sink to_client);
  // A request the router deferred (kDefer) is routed now (the router is asked again). False when
  // there is no such request waiting (it ended meanwhile).
  bool RouteNow(const HttpRequestAttributes& request, UpstreamSink to_up, Sink to_client);
  // True once a response head (or a local reply) for `request` went to the client.
  bool ResponseStarted(const HttpRequestAttributes& request) const;
  // The request timeout of the stream of `request` fired: cancelled upstream and answered with
  // `reply` when no response head reached the client yet, else reset (CANCEL) both ways.
  void TimeOutStream(const HttpRequestAttributes& request, const LocalReply& reply,
                     UpstreamSink to_up, Sink to_client);

  // Always empty: HTTP/2 local replies go out on their own stream through `to_client`.
  std::string TakeLocalReply() { return {}; }
  State state() const { return state_; }
  const std::string& error() const { return error_; }
  bool InHead() const { return false; }
  size_t open_streams() const { return streams_.size(); }
  // Bytes received from any peer that the codec holds for another (the buffering figure).
  size_t buffered() const;

 private:
  friend class Http2Upstream;
  friend class Http2Hub;
  struct Stream;
  using Upstream = Http2Upstream;
  struct Side;
  struct Callbacks;
  void Bind(Stream& s, Upstream* u);  // s.up = u, kept in u's stream list
  void Touch();                       // marked in the hub (its client session has work)
  static void TouchUp(Upstream* u);   // a shared upstream's session has work
  void FlushFromHub();
  static nghttp2_session_callbacks* NewCallbacks();
  static nghttp2_option* NewOptions();
  static void EndUpstream(Upstream& u, std::string_view reason);
  static void OnUpstreamGoaway(Upstream& u);
  Upstream* FindUpstream(size_t index) const;
  Upstream* NewUpstream(size_t index);
  void ConsumeDown(Stream& s, size_t n);  // request bytes taken: window back to the client
  void Flush(UpstreamSink to_up, Sink to_client);
  bool Drain(nghttp2_session* session, Sink sink);
  bool EndBrokenUpstreams();
  void OnRequest(Stream& s);
  void Route(Stream& s);
  bool Reroutable(const Stream& s) const;
  void Reroute(Stream& s);
  bool Retriable(const Stream& s) const;
  bool AskRetry(Stream& s, int status, int grpc_status);  // true: retried
  Stream* FindStream(const HttpRequestAttributes& request) const;
  void Reply(Stream& s, const LocalReply& r);
  void Refuse(Stream& s);
  void OnResponseHeaders(Stream& s, bool end_stream);
  void EditResponse(Stream& s);
  void UpstreamRefused(Stream& s, bool start_not_allowed);
  void AppStreamClosed(Stream& s, uint32_t code);
  void ClientStreamClosed(Stream& s, uint32_t code);
  void BreakUpstream(Upstream& u, std::string reason);
  void CopyForMirror(Stream& s, const uint8_t* data, size_t len);
  void MaybeMirror(Stream& s);
  void DropMirror(Stream& s, bool tell);
  void KeepForReplay(Stream& s, size_t fresh);
  void StopKeeping(Stream& s);
  void DropRequestBody(Stream& s);
  void ResumeUp(Stream& s);
  void ConsumeUp(Stream& s, size_t n);
  void MaybeRelease(Stream& s);
  void Report(Stream& s);
  void Fail(std::string reason);

  Http2Limits limits_;
  Gate gate_;
  Done done_;
  Router router_;  // empty: the destination side (upstream 0 only)
  RetryCheck retry_check_;
  ResponseEdit response_edit_;
  MirrorWanted mirror_wanted_;
  MirrorSink mirror_sink_;
  size_t mirror_max_body_ = 0;
  size_t mirror_bytes_ = 0;  // bodies copied for mirrors, all streams
  State state_ = State::kHttp;
  std::string error_;
  nghttp2_session_callbacks* callbacks_ = nullptr;
  nghttp2_option* options_ = nullptr;
  std::unique_ptr<Side> down_side_;
  nghttp2_session* down_ = nullptr;                        // server session: the client
  std::map<size_t, std::shared_ptr<Upstream>> upstreams_;  // by the caller's index
  std::map<int32_t, std::unique_ptr<Stream>> streams_;     // by client stream id
  uint64_t routed_ = 0;  // requests submitted upstream so far (Flush: more to send)
  size_t kept_ = 0;      // request body bytes kept for replays, all streams
  bool goaway_to_client_ = false;
  // Shared upstreams (SetShared).
  std::shared_ptr<Http2Hub> hub_;
  std::function<void(std::string_view)> shared_to_client_;
  std::function<void()> wake_;
  bool marked_ = false;    // in hub_'s list
  bool finished_ = false;  // Finish() ran: never driven again
};

// One HTTP/2 connection to an upstream (an nghttp2 client session), without I/O. Made by a
// connection for itself (NewUpstream), or by the caller to be shared by many connections of one
// hub (source side: a worker's pool, ztunnel/proxy/upstream_pool.h), the constructor below.
class Http2Upstream {
 public:
  using Output = std::function<void(std::string_view)>;
  // Shared: its frames (the preface and SETTINGS first) go to `out` whenever the hub flushes it;
  // `drained` (may be empty) is told after each such flush (the owner then writes them, and
  // checks Finished()).
  Http2Upstream(const Http2Limits& limits, std::shared_ptr<Http2Hub> hub, Output out,
                std::function<void()> drained);
  ~Http2Upstream();
  Http2Upstream(const Http2Upstream&) = delete;
  Http2Upstream& operator=(const Http2Upstream&) = delete;

  // Bytes from its transport (shared). Its streams' connections see them before this returns.
  void Feed(std::string_view in);
  // Its transport ended or failed (shared): its streams without a response head get 503 (or
  // are retried or re-routed by their connection), the others are reset.
  void Eof();
  // New streams may go to it: not draining (GOAWAY), not broken, not ended.
  bool Usable() const { return s != nullptr && !draining && !broken && !eof; }
  // Streams open on it (queued ones included), every connection's.
  size_t OpenStreams() const;
  // The peer's SETTINGS_MAX_CONCURRENT_STREAMS (nghttp2 assumes 100 until its SETTINGS).
  size_t MaxStreams() const;
  // The owner closes its transport now (and calls Eof): it sent GOAWAY and no stream is left on
  // it, or it broke HTTP/2 or ended (its streams were answered).
  bool Finished() const { return !s || broken || (draining && OpenStreams() == 0); }
  // It sent at least one byte (a failure before that is a connect failure: Envoy's UF).
  bool answered() const { return got_bytes; }

 private:
  friend class Http2ServerConnection;
  friend class Http2Hub;
  using Stream = Http2ServerConnection::Stream;
  Http2Upstream();  // a connection's own (NewUpstream)
  void Open(const Http2Limits& limits, nghttp2_session_callbacks* cbs, nghttp2_option* options);
  void DrainShared();

  size_t index = 0;                        // a connection's own: its index there
  Http2ServerConnection* owner = nullptr;  // a connection's own: that connection
  std::unique_ptr<Http2ServerConnection::Side> side;
  nghttp2_session* s = nullptr;  // null once it ended: never driven again
  std::vector<Stream*> streams;  // every connection's streams routed to it (Stream::up)
  bool got_bytes = false;        // it sent at least one byte
  bool draining = false;         // it sent GOAWAY (or its stream ids are spent): no new stream
  bool broken = false;           // it broke HTTP/2: Flush ends it
  bool eof = false;              // the caller closed it (UpstreamEof)
  // Shared.
  std::shared_ptr<Http2Hub> hub;
  Output out;
  std::function<void()> drained;
  nghttp2_session_callbacks* own_callbacks = nullptr;
  nghttp2_option* own_options = nullptr;
  bool marked = false;  // in hub's list
};

}  // namespace weft::ztunnel::l7
