#include "common/scrape/scrape.h"

#include <curl/curl.h>
#include <sys/socket.h>

#include <cstdlib>
#include <mutex>
#include <sstream>

#include "common/netns.h"

namespace weft {

namespace {
struct NetnsCtx {
  int netns_fd;
};

curl_socket_t OpenSocket(void* clientp, curlsocktype, curl_sockaddr* a) {
  auto* ctx = static_cast<NetnsCtx*>(clientp);
  auto fd = SocketInNetns(ctx->netns_fd, a->family, a->socktype, a->protocol);
  return fd.ok() ? fd->release() : CURL_SOCKET_BAD;
}

size_t Append(char* p, size_t sz, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, sz * n);
  return sz * n;
}
}  // namespace

absl::StatusOr<std::string> HttpGet(const SockAddr& addr, const std::string& path, int netns_fd,
                                    int* status, long timeout_ms) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURL* c = curl_easy_init();
  if (!c) return absl::InternalError("curl_easy_init failed");
  std::string url = "http://" + addr.ToString() + path, body;
  NetnsCtx ctx{netns_fd};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  if (netns_fd >= 0) {
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, OpenSocket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &ctx);
  }
  CURLcode rc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK) return absl::UnavailableError("GET " + url + ": " + curl_easy_strerror(rc));
  if (status) {
    *status = static_cast<int>(code);
  } else if (code < 200 || code > 299) {
    return absl::InternalError("GET " + url + ": HTTP " + std::to_string(code) + ": " + body);
  }
  return body;
}

double MetricSum(const std::string& text, const std::string& name,
                 const std::map<std::string, std::string>& labels) {
  double sum = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.compare(0, name.size(), name) != 0) continue;
    char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != '{' && next != ' ') continue;
    bool ok = true;
    for (const auto& [k, v] : labels)
      if (line.find(k + "=\"" + v + "\"") == std::string::npos) ok = false;
    if (!ok) continue;
    sum += std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr);
  }
  return sum;
}

}  // namespace weft
