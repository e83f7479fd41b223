#include "ztunnel/l7/http1_server.h"

#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/status.hpp>

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status.h"

namespace weft::ztunnel::l7 {
namespace http = boost::beast::http;
using boost::beast::error_code;
using Clock = std::chrono::steady_clock;

namespace {

std::string_view Sv(boost::beast::string_view s) {
  return {s.data(), s.size()};
}

// Connection/Upgrade style comma-separated tokens, trimmed and lower-cased.
std::vector<std::string> Tokens(std::string_view v) {
  std::vector<std::string> out;
  for (absl::string_view t : absl::StrSplit(Av(v), ',')) {
    t = absl::StripAsciiWhitespace(t);
    if (!t.empty()) out.push_back(absl::AsciiStrToLower(t));
  }
  return out;
}

std::string Reason(int status) {
  std::string_view r = Sv(http::obsolete_reason(static_cast<http::status>(status)));
  return std::string(r.empty() ? "Unknown" : r);
}

std::string Serialize(int status, std::string_view body,
                      const std::vector<std::pair<std::string, std::string>>& extra = {}) {
  std::string fields;
  for (const auto& [n, v] : extra) absl::StrAppend(&fields, n, ": ", v, "\r\n");
  return absl::StrCat("HTTP/1.1 ", status, " ", Reason(status), "\r\ncontent-length: ", body.size(),
                      "\r\ncontent-type: text/plain\r\n", fields, "connection: close\r\n\r\n",
                      Av(body));
}

// Fields a rebuilt head keeps as received: the message's framing and the connection's own.
bool KeptAsReceived(std::string_view name) {
  return name == "content-length" || name == "transfer-encoding" || name == "connection" ||
         name == "keep-alive" || name == "upgrade" || name == "te";
}

using Fields = std::vector<std::pair<std::string, std::string>>;

// A request head rebuilt because the h2c offer is removed (see the header comment) or a gate
// rewrote it: the request line, Host from the authority, the fields kept as received (`kept`,
// less the h2c offer), the gate's other fields in order, then `added`.
std::string RebuildHead(const HttpRequestAttributes& a, int version, const Fields& kept,
                        bool strip_h2c, std::string_view added) {
  std::string head = absl::StrCat(a.method, " ", a.path, " HTTP/1.", version % 10, "\r\n");
  if (!a.authority.empty()) absl::StrAppend(&head, "host: ", a.authority, "\r\n");
  for (const auto& [name, value] : kept) {
    std::string v = value;
    if (strip_h2c && name == "upgrade") continue;
    if (strip_h2c && name == "connection") {
      std::vector<std::string> keep;
      for (auto& t : Tokens(value))
        if (t != "upgrade" && t != "http2-settings") keep.push_back(std::move(t));
      if (keep.empty()) continue;
      v = absl::StrJoin(keep, ", ");
    }
    absl::StrAppend(&head, name, ": ", v, "\r\n");
  }
  for (const auto& [name, value] : a.headers) {
    if (name == "host" || name == "http2-settings" || KeptAsReceived(name)) continue;
    absl::StrAppend(&head, name, ": ", value, "\r\n");
  }
  return absl::StrCat(head, Av(added), "\r\n");
}

}  // namespace

namespace {

// Beast 1.74 parses a chunk header together with the CRLF ending the chunk before it, and
// asserts (reads past the buffer without assertions) when handed fewer than 5 bytes there, e.g.
// the start of a trailer after "0\r\n" (found by fuzz.http1_server). A chunked message that is
// not done always has at least 5 more bytes to come ("\r\n0\r\n\r\n" at the least), so a
// shorter remainder waits for more.
template <bool isRequest>
bool TooShortForChunkParser(const http::basic_parser<isRequest>& p, std::string_view data) {
  return p.is_header_done() && p.chunked() && !p.is_done() && data.size() < 5;
}

// What both parsers share: bodies are framed, never kept (the proxy forwards the raw bytes).
template <bool isRequest>
class Framer : public http::basic_parser<isRequest> {
 protected:
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
  std::size_t on_body_impl(boost::beast::string_view body, error_code&) override {
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t, boost::beast::string_view, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view body,
                                 error_code&) override {
    return body.size();
  }
  void on_finish_impl(error_code&) override {}
};

}  // namespace

// A request head's parts as the parser saw them, plus the framing facts the checks need.
class Http1ServerConnection::RequestParser : public Framer<true> {
 public:
  explicit RequestParser(const Http1Limits& limits) : max_fields_(limits.max_fields) {
    header_limit(limits.max_head_bytes);
    // Bodies stream through; nothing is buffered. (Not boost::none: Beast 1.74 compares the
    // Content-Length with the optional itself, and any length is "greater" than none.)
    body_limit(std::numeric_limits<std::uint64_t>::max());
    eager(false);  // stop after the head: the gate runs before any body byte moves
  }
  HttpRequestAttributes attrs;
  int version = 0;
  int hosts = 0;
  bool transfer_encoding = false;
  bool upgrade_h2c = false;
  bool too_many_fields = false;

 private:
  void on_request_impl(http::verb, boost::beast::string_view method,
                       boost::beast::string_view target, int version, error_code&) override {
    attrs.method = std::string(Sv(method));
    attrs.path = std::string(Sv(target));
    this->version = version;
  }
  void on_response_impl(int, boost::beast::string_view, int, error_code&) override {}
  void on_field_impl(http::field f, boost::beast::string_view name, boost::beast::string_view value,
                     error_code& ec) override {
    if (attrs.headers.size() >= max_fields_) {
      too_many_fields = true;
      ec = http::error::header_limit;
      return;
    }
    std::string lname = absl::AsciiStrToLower(Av(Sv(name)));
    if (f == http::field::host) {
      ++hosts;
      attrs.authority = std::string(Sv(value));
    } else if (f == http::field::transfer_encoding) {
      transfer_encoding = true;
    } else if (f == http::field::upgrade) {
      for (const auto& t : Tokens(Sv(value))) upgrade_h2c |= t == "h2c";
    }
    attrs.headers.emplace_back(std::move(lname), std::string(Sv(value)));
  }
  size_t max_fields_;
};

class Http1ServerConnection::ResponseParser : public Framer<false> {
 public:
  ResponseParser() {
    header_limit(1 << 20);  // the server's own headers: generous, but bounded
    body_limit(std::numeric_limits<std::uint64_t>::max());  // see RequestParser
    eager(false);  // stop after the head: a switch must be seen before any body byte
  }
  int status = 0;

 private:
  void on_request_impl(http::verb, boost::beast::string_view, boost::beast::string_view, int,
                       error_code&) override {}
  void on_response_impl(int code, boost::beast::string_view, int, error_code&) override {
    status = code;
  }
  void on_field_impl(http::field, boost::beast::string_view, boost::beast::string_view,
                     error_code&) override {}
};

struct Http1ServerConnection::Pending {
  Exchange ex;
  bool head_request = false;  // HEAD: the response has no body whatever it says
  bool connect = false;       // CONNECT: a 2xx switches to a byte relay
  bool upgrade = false;       // Upgrade: a 101 switches to a byte relay
  bool reported = false;
};

Http1ServerConnection::Http1ServerConnection(Http1Limits limits, Gate gate, Done done)
    : limits_(limits), gate_(std::move(gate)), done_(std::move(done)) {}

Http1ServerConnection::~Http1ServerConnection() = default;

bool Http1ServerConnection::InHead() const {
  return state_ == State::kHttp && (!head_.empty() || (req_ && !req_->is_header_done()));
}

bool Http1ServerConnection::InRequest() const {
  return state_ == State::kHttp && (req_ != nullptr || !head_.empty());
}

bool Http1ServerConnection::Idle() const {
  return state_ == State::kHttp && outstanding_.empty() && !req_ && head_.empty();
}

void Http1ServerConnection::HeadTimedOut() {
  if (!InHead()) return;
  if (!outstanding_.empty()) {
    Broken("request header timeout while a response was in progress");
    return;
  }
  RefuseHead(408, "request timeout", "request timeout");  // Envoy's body for its 408s
}

std::string Http1ServerConnection::TakeLocalReply() {
  return std::exchange(reply_ready_, {});
}

void Http1ServerConnection::FromClient(std::string_view in, Sink to_server) {
  switch (state_) {
    case State::kClosing:
    case State::kBroken:
      return;  // nothing more reaches the server
    case State::kH2cUpgrade:
      if (h2c_) h2c_->rest.append(in);
      return;
    case State::kPassthrough:
      to_server(in);
      return;
    case State::kAwaitSwitch:
      held_.append(in);
      if (held_.size() > limits_.max_head_bytes) {
        Broken("the client sent more than max_head_bytes before its protocol switch was answered");
      }
      return;
    case State::kHttp:
      break;
  }
  if (head_.empty()) {
    ParseClient(in, to_server);
    return;
  }
  std::string data = std::exchange(head_, {});
  data.append(in);
  ParseClient(data, to_server);
}

// Runs the request parser over `data` (the unparsed client bytes, in order).
void Http1ServerConnection::ParseClient(std::string_view data, Sink to_server) {
  while (!data.empty() && state_ == State::kHttp) {
    if (!req_) req_ = std::make_unique<RequestParser>(limits_);
    bool had_head = req_->is_header_done();
    if (TooShortForChunkParser(*req_, data)) {
      head_.assign(data);
      return;
    }
    error_code ec;
    size_t used = req_->put(boost::asio::const_buffer(data.data(), data.size()), ec);
    if (ec == http::error::need_more && used == 0) {
      // An incomplete head or chunk header: wait for the rest (a head is bounded by the
      // parser's header limit, a chunk header by ours).
      if (req_->is_header_done() && data.size() > limits_.max_head_bytes) {
        Broken("chunk header longer than max_head_bytes");
        return;
      }
      head_.assign(data);
      return;
    }
    if (ec && ec != http::error::need_more) {
      if (had_head || req_->is_header_done()) {
        Broken(absl::StrCat("malformed request body: ", ec.message()));
      } else if (ec == http::error::bad_version) {
        // HTTP/2 prior knowledge ("PRI * HTTP/2.0") or anything else: no HTTP/1 reply helps.
        Broken(absl::StrCat("not HTTP/1.x: ", ec.message()));
      } else if (ec == http::error::header_limit) {
        RefuseHead(431,
                   req_->too_many_fields ? "too many header fields" : "request header too large");
      } else {
        RefuseHead(400, absl::StrCat("malformed request: ", ec.message()));
      }
      return;
    }
    std::string_view part = data.substr(0, used);
    data.remove_prefix(used);
    if (!had_head && req_->is_header_done()) {
      if (!OnRequestHead(part, to_server)) {
        if (state_ == State::kH2cUpgrade) h2c_->rest.assign(data);
        return;
      }
    } else {
      to_server(part);
      // An early response (e.g. 413) may already have reported this request.
      if (!outstanding_.empty()) outstanding_.back().ex.request_bytes += part.size();
    }
    if (req_->is_done()) {
      req_.reset();
      if (cur_switch_) {
        state_ = State::kAwaitSwitch;
        held_.assign(data);
        return;
      }
    }
  }
}

bool Http1ServerConnection::OnRequestHead(std::string_view raw, Sink to_server) {
  RequestParser& r = *req_;
  if (r.version != 10 && r.version != 11) {
    // HTTP/2 prior knowledge ("PRI * HTTP/2.0") or anything else: not HTTP/1.x.
    Broken(absl::StrCat("not HTTP/1.x (version ", r.version / 10, ".", r.version % 10, ")"));
    return false;
  }
  if (r.hosts > 1 || (r.version == 11 && r.hosts == 0)) {
    RefuseHead(400, r.hosts == 0 ? "HTTP/1.1 request without Host" : "more than one Host");
    return false;
  }
  if (r.transfer_encoding && (!r.chunked() || r.version == 10)) {
    // RFC 9112 6.3: the body length cannot be determined; answer 400 and close.
    RefuseHead(400, "Transfer-Encoding other than a final chunked");
    return false;
  }
  if (TakeH2cOffer(raw)) return false;
  Pending p;
  p.ex.request = std::move(r.attrs);
  p.ex.start = Clock::now();
  p.ex.request_bytes = raw.size();
  p.head_request = p.ex.request.method == "HEAD";
  p.connect = p.ex.request.method == "CONNECT";
  p.upgrade = r.upgrade() && !r.upgrade_h2c;
  cur_switch_ = p.connect || p.upgrade;
  const std::string original_target = p.ex.request.path;
  Fields kept;  // what a rebuilt head keeps as received
  for (const auto& [name, value] : p.ex.request.headers)
    if (KeptAsReceived(name)) kept.emplace_back(name, value);
  std::optional<LocalReply> reply = gate_(p.ex.request);
  if (reply) {
    p.ex.local_reply = true;
    p.ex.status = reply->status;
    p.ex.reason = reply->body;
    p.ex.end = Clock::now();
    std::string bytes = Serialize(reply->status, reply->body, reply->headers);
    p.ex.response_bytes = bytes.size();
    done_(p.ex);
    if (outstanding_.empty()) {
      reply_ready_ = std::move(bytes);
    } else {
      reply_ = std::move(bytes);
    }
    error_ = reply->body;
    state_ = State::kClosing;
    return false;
  }
  bool retarget = p.ex.request.path != original_target;
  if (retarget && std::any_of(p.ex.request.path.begin(), p.ex.request.path.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
      })) {
    RefuseHead(400, "the rewritten request-target is not a valid request-target");
    return false;
  }
  std::string added;  // fields the gate asked to add (source side: trace context)
  for (const auto& [name, value] : p.ex.request.add_headers)
    absl::StrAppend(&added, name, ": ", value, "\r\n");
  if (r.upgrade_h2c || p.ex.request.rewrite_head) {
    to_server(RebuildHead(p.ex.request, r.version, kept, r.upgrade_h2c, added));
  } else {
    // The head as received, but for the request line when the target changed ("METHOD SP
    // target SP HTTP/1.x CRLF") and the fields a source-side gate adds before its end.
    std::string_view rest = raw;
    if (retarget) {
      to_server(
          absl::StrCat(p.ex.request.method, " ", p.ex.request.path, " HTTP/1.", r.version % 10));
      rest = raw.substr(raw.find("\r\n"));
    }
    if (added.empty()) {
      to_server(rest);
    } else {
      // The head ends with an empty line (CRLF, or a bare LF Beast tolerates): insert before it.
      const size_t end = rest.size() - (rest.substr(rest.size() - 2) == "\r\n" ? 2 : 1);
      to_server(rest.substr(0, end));
      to_server(added);
      to_server(rest.substr(end));
    }
  }
  outstanding_.push_back(std::move(p));
  return true;
}

// RFC 7540 3.2's upgrade, when the caller accepts it and the offer qualifies (header comment).
bool Http1ServerConnection::TakeH2cOffer(std::string_view raw) {
  RequestParser& r = *req_;
  if (!accept_h2c_ || !r.upgrade_h2c || !outstanding_.empty() || r.chunked() ||
      r.content_length().value_or(0) != 0 || r.attrs.method == "CONNECT") {
    return false;
  }
  const std::string* settings = nullptr;
  bool conn_upgrade = false, conn_settings = false;
  for (const auto& [name, value] : r.attrs.headers) {
    if (name == "http2-settings") {
      if (settings) return false;  // exactly one (RFC 7540 3.2.1)
      settings = &value;
    } else if (name == "connection") {
      for (const auto& t : Tokens(value)) {
        conn_upgrade |= t == "upgrade";
        conn_settings |= t == "http2-settings";
      }
    }
  }
  std::string decoded;
  if (!settings || !conn_upgrade || !conn_settings ||
      !absl::WebSafeBase64Unescape(absl::StripAsciiWhitespace(Av(*settings)), &decoded) ||
      decoded.size() % 6 != 0) {
    return false;
  }
  h2c_ = H2cUpgrade{std::move(r.attrs), std::move(decoded), {}, raw.size()};
  state_ = State::kH2cUpgrade;
  req_.reset();
  return true;
}

void Http1ServerConnection::RefuseHead(int status, std::string reason, std::string_view body) {
  Exchange ex;
  if (req_) ex.request = std::move(req_->attrs);
  ex.start = ex.end = Clock::now();
  ex.status = status;
  ex.local_reply = true;
  ex.refused_by_codec = true;
  ex.reason = reason;
  std::string bytes = Serialize(status, body.empty() ? Reason(status) : std::string(body));
  ex.response_bytes = bytes.size();
  done_(ex);
  if (outstanding_.empty()) {
    reply_ready_ = std::move(bytes);
  } else {
    reply_ = std::move(bytes);
  }
  error_ = std::move(reason);
  state_ = State::kClosing;
  req_.reset();
  head_.clear();
}

void Http1ServerConnection::Broken(std::string reason) {
  error_ = std::move(reason);
  state_ = State::kBroken;
  req_.reset();
  head_.clear();
  held_.clear();
}

void Http1ServerConnection::FromServer(std::string_view in, Sink to_server) {
  if (state_ == State::kPassthrough || state_ == State::kBroken) return;
  if (resp_head_.empty()) {
    ParseServer(in, to_server);
    return;
  }
  std::string data = std::exchange(resp_head_, {});
  data.append(in);
  ParseServer(data, to_server);
}

void Http1ServerConnection::ParseServer(std::string_view data, Sink to_server) {
  while (!data.empty() && state_ != State::kPassthrough && state_ != State::kBroken) {
    if (outstanding_.empty()) {
      Broken("the server sent a response to no request");
      return;
    }
    if (!resp_) {
      resp_ = std::make_unique<ResponseParser>();
      if (outstanding_.front().head_request) resp_->skip(true);
    }
    bool had_head = resp_->is_header_done();
    if (TooShortForChunkParser(*resp_, data)) {
      resp_head_.assign(data);
      return;
    }
    error_code ec;
    size_t used = resp_->put(boost::asio::const_buffer(data.data(), data.size()), ec);
    if (ec == http::error::need_more && used == 0) {
      if (data.size() > (1u << 20)) {
        Broken("response head or chunk header longer than 1 MiB");
        return;
      }
      resp_head_.assign(data);
      return;
    }
    if (ec && ec != http::error::need_more) {
      Broken(absl::StrCat("malformed response from the server: ", ec.message()));
      return;
    }
    outstanding_.front().ex.response_bytes += used;
    data.remove_prefix(used);
    if (!had_head && resp_->is_header_done()) OnResponseHead(to_server);
    if (state_ == State::kPassthrough) return;
    if (resp_->is_done()) OnResponseDone(to_server);
  }
}

void Http1ServerConnection::OnResponseHead(Sink to_server) {
  Pending& p = outstanding_.front();
  int status = resp_->status;
  bool switched = (status == 101 && p.upgrade) || (p.connect && status / 100 == 2);
  if (status / 100 != 1 || status == 101) p.ex.status = status;
  if (!switched) return;
  // The rest of both directions is the new protocol: report the exchange and relay bytes.
  p.ex.end = Clock::now();
  Report(p);
  outstanding_.pop_front();
  resp_.reset();
  state_ = State::kPassthrough;
  if (!held_.empty()) to_server(std::exchange(held_, {}));
}

void Http1ServerConnection::OnResponseDone(Sink to_server) {
  Pending& p = outstanding_.front();
  int status = resp_->status;
  resp_.reset();
  if (status / 100 == 1) return;  // interim (100 Continue, 103): the final response follows
  p.ex.end = Clock::now();
  Report(p);
  bool was_switch = p.connect || p.upgrade;
  outstanding_.pop_front();
  if (reply_ && outstanding_.empty()) reply_ready_ = std::exchange(*reply_, {});
  if (was_switch && state_ == State::kAwaitSwitch) {
    // Not switched (e.g. 426 or 200 to an Upgrade): the held bytes are HTTP again.
    state_ = State::kHttp;
    std::string held = std::exchange(held_, {});
    ParseClient(held, to_server);
  }
}

void Http1ServerConnection::ServerEof() {
  if (resp_ && state_ != State::kBroken) {
    error_code ec;
    resp_->put_eof(ec);  // a response delimited by the close completes here
    if (!ec && resp_->is_done() && !outstanding_.empty()) {
      Pending& p = outstanding_.front();
      p.ex.end = Clock::now();
      Report(p);
      outstanding_.pop_front();
    }
    resp_.reset();
  }
  ReportOutstanding(true);
}

void Http1ServerConnection::ServerReset() {
  resp_.reset();
  ReportOutstanding(true);
}

void Http1ServerConnection::Finish() {
  ReportOutstanding(false);
}

void Http1ServerConnection::ReportOutstanding(bool server_ended) {
  for (Pending& p : outstanding_) {
    p.ex.end = Clock::now();
    p.ex.ended = server_ended ? Exchange::End::kServerEnded : Exchange::End::kClientEnded;
    Report(p);
  }
  outstanding_.clear();
}

void Http1ServerConnection::Report(Pending& p) {
  if (p.reported) return;
  p.reported = true;
  done_(p.ex);
}

}  // namespace weft::ztunnel::l7
