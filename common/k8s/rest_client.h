// A small HTTP client for the Kubernetes API server (libcurl): GET, POST, PUT and streamed GET
// (watch) with the Endpoint's TLS trust, client certificate and bearer token.
//
// Thread-safe: each call uses its own curl handle, so several watches run concurrently on
// one RestClient. A bearer token file is re-read when older than RestOptions::token_reread
// (the kubelet rotates projected service-account tokens); a failed re-read keeps the last
// token and is logged.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/k8s/endpoint.h"

namespace weft::k8s {

struct RestOptions {
  std::chrono::seconds connect_timeout{10};
  std::chrono::seconds token_reread{60};
  std::string user_agent = "weftd/0.1";
};

struct HttpResponse {
  long status = 0;   // HTTP status code
  std::string body;  // full body (for streams: only for non-200 replies, capped at 64 KiB)
};

// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay as-is).
std::string UrlEncode(std::string_view s);

class RestClient {
 public:
  explicit RestClient(Endpoint endpoint, RestOptions options = {});

  const Endpoint& endpoint() const { return endpoint_; }

  // `path_and_query` starts with '/'. A transport failure (connect, TLS, timeout, reset) is
  // an UnavailableError/DeadlineExceededError; any HTTP status is returned in HttpResponse.
  // `cancel` (optional) aborts the request within about a second once it becomes true.
  absl::StatusOr<HttpResponse> Get(std::string_view path_and_query, std::chrono::seconds timeout,
                                   const std::atomic<bool>* cancel = nullptr);
  absl::StatusOr<HttpResponse> Post(std::string_view path, std::string_view json_body,
                                    std::chrono::seconds timeout,
                                    const std::atomic<bool>* cancel = nullptr);
  // PUT (replace) of an object, e.g. a ConfigMap update carrying metadata.resourceVersion.
  absl::StatusOr<HttpResponse> Put(std::string_view path, std::string_view json_body,
                                   std::chrono::seconds timeout,
                                   const std::atomic<bool>* cancel = nullptr);

  // PATCH with `content_type` (application/merge-patch+json, application/json-patch+json, ...),
  // e.g. a status subresource update.
  absl::StatusOr<HttpResponse> Patch(std::string_view path, std::string_view body,
                                     std::string_view content_type, std::chrono::seconds timeout,
                                     const std::atomic<bool>* cancel = nullptr);

  // Streams a 200 reply's body as '\n'-terminated lines (without the '\n'; a trailing
  // unterminated fragment is discarded because a watch event is one complete line).
  // `on_line` returns false to stop the stream early (then the result is OK with status 200).
  // Non-200 replies are not streamed: their body comes back in HttpResponse.body. Lines longer
  // than `max_line` fail the stream with ResourceExhausted. If the connection breaks after the
  // headers, the result is an UnavailableError (lines already delivered stay delivered).
  absl::StatusOr<HttpResponse> StreamLines(std::string_view path_and_query,
                                           std::chrono::seconds timeout,
                                           const std::function<bool(std::string_view)>& on_line,
                                           const std::atomic<bool>* cancel = nullptr,
                                           size_t max_line = 64 << 20);

  // The current bearer token ("" if none), re-reading the token file when due.
  std::string BearerToken();

 private:
  Endpoint endpoint_;
  RestOptions options_;
  std::mutex token_mu_;
  std::string token_;
  std::chrono::steady_clock::time_point token_read_at_{};
  bool token_loaded_ = false;
};

}  // namespace weft::k8s
