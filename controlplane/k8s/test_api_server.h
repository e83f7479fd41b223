// Test-only: a small HTTP/1.1 server (Boost.Beast, 127.0.0.1 port 0) that replays recorded
// Kubernetes API-server replies. Replies are queued per request path (without the query) and
// served in order; when a path's queue is empty the request waits until a reply is queued or
// the server stops (like a quiet watch), unless a handler answers that path (SetHandler).
// Every request is recorded.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace weft::cp::k8s::testing {

struct ScriptedReply {
  int status = 200;
  std::string body;     // plain reply body (stream == false)
  bool stream = false;  // chunked reply: `chunks` written one HTTP chunk each
  std::vector<std::string> chunks;
  bool drop = false;  // stream: close the connection without the final chunk
};

// Serve HTTPS instead of HTTP. With client_ca_pem set, clients must present a certificate
// issued by it (RecordedRequest::client_cn records its subject CN).
struct TlsConfig {
  std::string cert_pem, key_pem;
  std::string client_ca_pem;
};

struct RecordedRequest {
  std::string method;
  std::string target;  // raw, as sent
  std::string path;
  std::map<std::string, std::string> query;  // raw (still percent-encoded) values
  std::string authorization;
  std::string content_type;
  std::string body;
  std::string client_cn;  // TLS client certificate subject CN, if any
  std::chrono::steady_clock::time_point at;
};

class TestApiServer {
 public:
  TestApiServer();
  explicit TestApiServer(TlsConfig tls);
  ~TestApiServer();
  std::string url() const;  // "http(s)://127.0.0.1:<port>"
  void Enqueue(const std::string& path, ScriptedReply reply);
  // Answers requests for `path` with handler(request) whenever the path's queue is empty
  // (queued replies still go first), e.g. a TokenReview reply that depends on the token in the
  // request body. Called on the connection's thread, without the server's lock held.
  using Handler = std::function<ScriptedReply(const RecordedRequest&)>;
  void SetHandler(const std::string& path, Handler handler);
  std::vector<RecordedRequest> Requests(const std::string& path = "") const;
  // Waits until `n` requests for `path` arrived.
  bool WaitForRequests(const std::string& path, size_t n, std::chrono::milliseconds timeout);
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads testdata/<name>.
std::string Fixture(const std::string& name);
// A fixture's lines (watch streams are one JSON event per line), each with its '\n'.
std::vector<std::string> FixtureLines(const std::string& name);

}  // namespace weft::cp::k8s::testing
