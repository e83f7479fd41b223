// The destination side of one HTTP/1.1 connection in ztunnel, without I/O: what L7
// authorization needs on every connection to a policed workload, whatever path the bytes took
// (HBONE stream, plaintext 15006, same-node fast path).
//
// Client bytes go through FromClient. Each request head is parsed (Boost.Beast's parser: no
// hand-written HTTP), checked against RFC 9112's framing rules (one Host; Transfer-Encoding only
// as chunked and never with Content-Length; HTTP/1.0 and 1.1 only; head size and field count
// limits), and handed to the gate, which may answer it with a local reply (403 for an
// authorization denial). What passes goes to the server byte for byte as received: the server
// parses exactly what was authorized, and nothing is re-serialized (except the request line when
// the gate normalised the target, and the h2c rewrite below). Bodies stream through as they arrive;
// only an incomplete head is held (bounded by max_head_bytes).
//
// Server bytes are forwarded by the caller unchanged and only watched through FromServer: which
// request each response answers (pipelining), its status, interim 1xx, HEAD and bodiless
// responses, and protocol switches. A local reply is released once every earlier response is
// complete (so pipelined responses stay in order), and the connection then closes.
//
// Switching protocols: after a request with `Upgrade` (WebSocket) or a CONNECT, client bytes are
// held until the response: 101 (or 2xx to CONNECT) turns the connection into a byte relay
// (kPassthrough), anything else resumes HTTP parsing. An `Upgrade: h2c` request is forwarded
// without its h2c upgrade (fields Upgrade and HTTP2-Settings dropped, their Connection tokens
// removed): HTTP/2 after a 101 would carry requests this parser cannot see, so the server is
// never offered the switch (the client simply stays on HTTP/1.1, as RFC 9113 allows). The
// source side, which terminates HTTP/2 itself, opts in with AcceptH2cUpgrade(): a valid offer
// (RFC 7540 3.2: `Connection: Upgrade, HTTP2-Settings`, one HTTP2-Settings field that decodes as
// base64url to whole SETTINGS entries, no request body, no request outstanding) is then taken
// instead of forwarded: the state becomes kH2cUpgrade and TakeH2cUpgrade() hands the request
// over, for the caller to answer 101 and continue with HTTP/2 (the request becomes stream 1).
// An offer that does not qualify is stripped as above.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "ztunnel/l7/exchange.h"
#include "ztunnel/rbac/request.h"

namespace weft::ztunnel::l7 {

struct Http1Limits {
  uint32_t max_head_bytes = 60 * 1024;  // request line + fields (Envoy's default); over: 431
  size_t max_fields = 100;              // header fields per request (Envoy's default); over: 431
};

class Http1ServerConnection {
 public:
  // nullopt: the request goes to the server; otherwise it is answered with the reply. The gate
  // may change `path` (the request-target): the request line is then rewritten with it (the
  // proxy forwards the normalised path it authorized, as Envoy does).
  using Gate = std::function<std::optional<LocalReply>(HttpRequestAttributes&)>;
  using Done = std::function<void(const Exchange&)>;
  using Sink = absl::FunctionRef<void(std::string_view)>;

  enum class State {
    kHttp,         // parsing requests
    kAwaitSwitch,  // an Upgrade/CONNECT request went out: client bytes wait for its response
    kPassthrough,  // protocols switched (101, CONNECT 2xx): bytes move unparsed both ways
    kClosing,      // a local reply is queued or taken: nothing more reaches the server
    kBroken,       // bytes that cannot be framed (mid-body error, a bad response): abort both
    kH2cUpgrade,   // an h2c upgrade offer was taken (AcceptH2cUpgrade): see TakeH2cUpgrade
  };

  // The request of a taken h2c upgrade offer, for the HTTP/2 codec (stream 1).
  struct H2cUpgrade {
    HttpRequestAttributes request;  // fields as received, hop-by-hop ones included
    std::string settings;           // the HTTP2-Settings payload, decoded
    std::string rest;               // client bytes after the request (the HTTP/2 preface)
    uint64_t head_bytes = 0;        // the request head's size
  };

  Http1ServerConnection(Http1Limits limits, Gate gate, Done done);
  ~Http1ServerConnection();
  Http1ServerConnection(const Http1ServerConnection&) = delete;
  Http1ServerConnection& operator=(const Http1ServerConnection&) = delete;

  // Client -> server: `to_server` receives, in order, every run of bytes the server may see.
  void FromClient(std::string_view in, Sink to_server);
  // Server -> client bytes (forwarded by the caller unchanged). `to_server` receives client
  // bytes held for a protocol switch that the response settles.
  void FromServer(std::string_view in, Sink to_server);
  // The server closed its side: a response delimited by the close ends here; requests still
  // waiting are reported as cut short (End::kServerEnded).
  void ServerEof();
  // The server's side failed (reset, read error): requests still waiting, including one whose
  // close-delimited response was under way, are reported as cut short (End::kServerEnded).
  void ServerReset();
  // The client closed (or the connection is torn down): requests still waiting are reported as
  // cut short (End::kClientEnded).
  void Finish();

  // Source side: take valid h2c upgrade offers instead of stripping them (see above).
  void AcceptH2cUpgrade() { accept_h2c_ = true; }
  // The taken offer, once (state kH2cUpgrade); later client bytes appended to `rest`.
  std::optional<H2cUpgrade> TakeH2cUpgrade() { return std::exchange(h2c_, std::nullopt); }

  // A local reply ready for the client (empty when none). Send it before any further server
  // bytes; after it, end the connection both ways.
  std::string TakeLocalReply();
  State state() const { return state_; }
  const std::string& error() const { return error_; }
  // True while a request head is incomplete (header-read timeout applies).
  bool InHead() const;
  // True while a request's head or body is still being received from the client.
  bool InRequest() const;
  // True while no request is in flight: no head or body being received, no response awaited,
  // no protocol switch under way or done (the idle timeout applies).
  bool Idle() const;
  // The head in progress did not complete within the header-read timeout (slowloris): answered
  // with a 408 "request timeout" local reply (TakeLocalReply; the exchange is reported) when no
  // response is in progress, else the connection is broken (a reply cannot go between response
  // bytes). Nothing when !InHead().
  void HeadTimedOut();

 private:
  struct Pending;
  class RequestParser;
  class ResponseParser;
  void ParseClient(std::string_view data, Sink to_server);
  bool OnRequestHead(std::string_view raw, Sink to_server);  // false: stop parsing
  bool TakeH2cOffer(std::string_view raw);                   // true: taken (kH2cUpgrade)
  void RefuseHead(int status, std::string reason, std::string_view body = {});
  void Broken(std::string reason);
  void ParseServer(std::string_view data, Sink to_server);
  void OnResponseHead(Sink to_server);
  void OnResponseDone(Sink to_server);
  void Report(Pending& p);
  void ReportOutstanding(bool server_ended);

  Http1Limits limits_;
  Gate gate_;
  Done done_;
  State state_ = State::kHttp;
  std::string error_;
  std::unique_ptr<RequestParser> req_;
  std::unique_ptr<ResponseParser> resp_;
  std::string head_;         // client bytes of an incomplete request head
  std::string resp_head_;    // server bytes of an incomplete response head
  std::string held_;         // client bytes waiting for a protocol switch to be settled
  bool cur_switch_ = false;  // the request being received asks for a switch (CONNECT/Upgrade)
  std::deque<Pending> outstanding_;   // forwarded requests, oldest first, awaiting responses
  std::optional<std::string> reply_;  // a local reply waiting for outstanding_ to drain
  std::string reply_ready_;
  bool accept_h2c_ = false;
  std::optional<H2cUpgrade> h2c_;
};

}  // namespace weft::ztunnel::l7
