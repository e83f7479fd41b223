#include "common/k8s/rest_client.h"

#include <curl/curl.h>

#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/file.h"
#include "common/log.h"
#include "common/status.h"

namespace weft::k8s {
namespace {

constexpr size_t kErrorBodyCap = 64 * 1024;

void GlobalInit() {
  static const bool done = [] {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return true;
  }();
  (void)done;
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// Transfer state shared with curl's callbacks.
struct Transfer {
  CURL* curl = nullptr;
  const std::atomic<bool>* cancel = nullptr;
  bool streaming = false;
  const std::function<bool(std::string_view)>* on_line = nullptr;
  size_t max_line = 0;
  std::string buffer;      // streaming: partial line; otherwise the body
  std::string error_body;  // streaming: body of a non-200 reply
  bool stopped_by_caller = false;
  bool line_too_long = false;
  std::string content_type;  // of the request body; empty: application/json
};

size_t WriteCb(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = size * n;
  if (!t->streaming) {
    t->buffer.append(data, len);
    return len;
  }
  long code = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
  if (code != 200) {
    if (t->error_body.size() < kErrorBodyCap) {
      t->error_body.append(data, std::min(len, kErrorBodyCap - t->error_body.size()));
    }
    return len;
  }
  t->buffer.append(data, len);
  size_t start = 0;
  for (;;) {
    size_t nl = t->buffer.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view line(t->buffer.data() + start, nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    start = nl + 1;
    if (line.empty()) continue;
    if (!(*t->on_line)(line)) {
      t->stopped_by_caller = true;
      return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
    }
  }
  t->buffer.erase(0, start);
  if (t->buffer.size() > t->max_line) {
    t->line_too_long = true;
    return 0;
  }
  return len;
}

int ProgressCb(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  return (t->cancel != nullptr && t->cancel->load()) ? 1 : 0;
}

void SetBlob(CURL* c, CURLoption opt, const std::string& pem) {
  curl_blob blob;
  blob.data = const_cast<char*>(pem.data());
  blob.len = pem.size();
  blob.flags = CURL_BLOB_COPY;
  curl_easy_setopt(c, opt, &blob);
}

}  // namespace

std::string UrlEncode(std::string_view s) {
  GlobalInit();
  char* out = curl_easy_escape(nullptr, s.data(), static_cast<int>(s.size()));
  if (out == nullptr) return "";
  std::string r(out);
  curl_free(out);
  return r;
}

RestClient::RestClient(Endpoint endpoint, RestOptions options)
    : endpoint_(std::move(endpoint)), options_(std::move(options)) {
  GlobalInit();
}

std::string RestClient::BearerToken() {
  if (endpoint_.token_file.empty()) return endpoint_.token;
  std::lock_guard<std::mutex> lock(token_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (!token_loaded_ || now - token_read_at_ >= options_.token_reread) {
    auto text = ReadFile(endpoint_.token_file);
    if (text.ok()) {
      std::string t = *std::move(text);
      while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
      token_ = std::move(t);
      token_loaded_ = true;
    } else {
      LOG_ERROR("k8s", "cannot re-read the bearer token file; keeping the previous token",
                {{"file", endpoint_.token_file}, {"error", std::string(text.status().message())}});
    }
    token_read_at_ = now;
  }
  return token_;
}

namespace {

enum class Method { kGet, kPost, kPut, kPatch };

const char* MethodName(Method m) {
  switch (m) {
    case Method::kGet:
      return "GET";
    case Method::kPost:
      return "POST";
    case Method::kPut:
      return "PUT";
    case Method::kPatch:
      return "PATCH";
  }
  return "GET";
}

}  // namespace

static absl::StatusOr<HttpResponse> Perform(RestClient& rc, const Endpoint& ep,
                                            const RestOptions& opts, Method method,
                                            std::string_view path, std::string_view body,
                                            std::chrono::seconds timeout, Transfer& t) {
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return absl::InternalError("curl_easy_init failed");
  CURL* c = curl.get();
  t.curl = c;
  const std::string url = absl::StrCat(ep.server, Av(path));
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, opts.user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(opts.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &WriteCb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &ProgressCb);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  // A watch is long-lived; requests never follow redirects (the API server does not send them).
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);

  if (!ep.ca_pem.empty()) {
    SetBlob(c, CURLOPT_CAINFO_BLOB, ep.ca_pem);
  } else if (!ep.ca_file.empty()) {
    curl_easy_setopt(c, CURLOPT_CAINFO, ep.ca_file.c_str());
  }
  if (ep.insecure_skip_tls_verify) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (!ep.client_cert_pem.empty()) {
    SetBlob(c, CURLOPT_SSLCERT_BLOB, ep.client_cert_pem);
    curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
  } else if (!ep.client_cert_file.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLCERT, ep.client_cert_file.c_str());
  }
  if (!ep.client_key_pem.empty()) {
    SetBlob(c, CURLOPT_SSLKEY_BLOB, ep.client_key_pem);
    curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
  } else if (!ep.client_key_file.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLKEY, ep.client_key_file.c_str());
  }

  curl_slist* raw_headers = nullptr;
  raw_headers = curl_slist_append(raw_headers, "Accept: application/json");
  const std::string token = rc.BearerToken();
  std::string auth;
  if (!token.empty()) {
    auth = absl::StrCat("Authorization: Bearer ", token);
    raw_headers = curl_slist_append(raw_headers, auth.c_str());
  }
  std::string body_copy;
  std::string content_type;
  if (method != Method::kGet) {
    content_type = absl::StrCat("Content-Type: ",
                                t.content_type.empty() ? "application/json" : t.content_type);
    raw_headers = curl_slist_append(raw_headers, content_type.c_str());
    body_copy.assign(body);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    // A POST with the method replaced: curl still sends the body as given.
    if (method != Method::kPost) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, MethodName(method));
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body_copy.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body_copy.size()));
  }
  std::unique_ptr<curl_slist, SlistDeleter> headers(raw_headers);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());

  const CURLcode rc_code = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  HttpResponse resp;
  resp.status = status;
  if (rc_code == CURLE_OK) {
    resp.body = t.streaming ? std::move(t.error_body) : std::move(t.buffer);
    return resp;
  }
  if (t.stopped_by_caller) {
    resp.status = 200;
    return resp;
  }
  if (t.line_too_long) {
    return absl::ResourceExhaustedError(
        absl::StrCat("GET ", Av(path), ": a watch event line exceeds ", t.max_line, " bytes"));
  }
  const std::string what = absl::StrCat(MethodName(method), " ", ep.server, Av(path), ": ",
                                        errbuf[0] ? errbuf : curl_easy_strerror(rc_code));
  if (rc_code == CURLE_ABORTED_BY_CALLBACK) return absl::CancelledError(what);
  if (rc_code == CURLE_OPERATION_TIMEDOUT) return absl::DeadlineExceededError(what);
  return absl::UnavailableError(what);
}

// A request whose whole reply body is returned.
static absl::StatusOr<HttpResponse> PerformWhole(RestClient& rc, const Endpoint& ep,
                                                 const RestOptions& opts, Method method,
                                                 std::string_view path, std::string_view body,
                                                 std::chrono::seconds timeout,
                                                 const std::atomic<bool>* cancel) {
  Transfer t;
  t.cancel = cancel;
  return Perform(rc, ep, opts, method, path, body, timeout, t);
}

absl::StatusOr<HttpResponse> RestClient::Get(std::string_view path_and_query,
                                             std::chrono::seconds timeout,
                                             const std::atomic<bool>* cancel) {
  return PerformWhole(*this, endpoint_, options_, Method::kGet, path_and_query, "", timeout,
                      cancel);
}

absl::StatusOr<HttpResponse> RestClient::Post(std::string_view path, std::string_view json_body,
                                              std::chrono::seconds timeout,
                                              const std::atomic<bool>* cancel) {
  return PerformWhole(*this, endpoint_, options_, Method::kPost, path, json_body, timeout, cancel);
}

absl::StatusOr<HttpResponse> RestClient::Put(std::string_view path, std::string_view json_body,
                                             std::chrono::seconds timeout,
                                             const std::atomic<bool>* cancel) {
  return PerformWhole(*this, endpoint_, options_, Method::kPut, path, json_body, timeout, cancel);
}

absl::StatusOr<HttpResponse> RestClient::Patch(std::string_view path, std::string_view body,
                                               std::string_view content_type,
                                               std::chrono::seconds timeout,
                                               const std::atomic<bool>* cancel) {
  Transfer t;
  t.cancel = cancel;
  t.content_type = std::string(content_type);
  return Perform(*this, endpoint_, options_, Method::kPatch, path, body, timeout, t);
}

absl::StatusOr<HttpResponse> RestClient::StreamLines(
    std::string_view path_and_query, std::chrono::seconds timeout,
    const std::function<bool(std::string_view)>& on_line, const std::atomic<bool>* cancel,
    size_t max_line) {
  Transfer t;
  t.cancel = cancel;
  t.streaming = true;
  t.on_line = &on_line;
  t.max_line = max_line;
  return Perform(*this, endpoint_, options_, Method::kGet, path_and_query, "", timeout, t);
}

}  // namespace weft::k8s
