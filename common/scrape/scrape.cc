#include "common/scrape/scrape.h"

#include <curl/curl.h>
#include <sys/socket.h>

#include <cstdlib>
#include <mutex>
#include <sstream>

#include "absl/strings/numbers.h"
#include "common/netns.h"
#include "common/status.h"

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
  return HttpGetUrl("http://" + addr.ToString() + path, netns_fd, status, timeout_ms);
}

absl::StatusOr<std::string> HttpGetUrl(const std::string& url, int netns_fd, int* status,
                                       long timeout_ms) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURL* c = curl_easy_init();
  if (!c) return absl::InternalError("curl_easy_init failed");
  std::string body;
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

std::vector<MetricSample> ParseSamples(const std::string& text, const std::string& name_prefix) {
  std::vector<MetricSample> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.compare(0, name_prefix.size(), name_prefix) != 0)
      continue;
    MetricSample s;
    size_t i = line.find_first_of("{ ");
    if (i == std::string::npos) continue;
    s.name = line.substr(0, i);
    bool ok = true;
    if (line[i] == '{') {
      ++i;
      // label="value" pairs separated by ','; values escape '\\', '"' and newline.
      while (ok && i < line.size() && line[i] != '}') {
        size_t eq = line.find("=\"", i);
        if (eq == std::string::npos) {
          ok = false;
          break;
        }
        std::string key = line.substr(i, eq - i), value;
        i = eq + 2;
        for (; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\' && i + 1 < line.size()) {
            ++i;
            value += line[i] == 'n' ? '\n' : line[i];
          } else {
            value += line[i];
          }
        }
        if (i >= line.size()) {
          ok = false;
          break;
        }
        ++i;  // closing quote
        if (i < line.size() && line[i] == ',') ++i;
        s.labels[key] = value;
      }
      if (!ok || i >= line.size()) continue;
      ++i;  // '}'
    }
    std::string_view rest = std::string_view(line).substr(i);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    rest = rest.substr(0, rest.find(' '));  // drop an optional timestamp
    if (!absl::SimpleAtod(Av(rest), &s.value)) continue;
    out.push_back(std::move(s));
  }
  return out;
}

double MetricSum(const std::string& text, const std::string& name,
                 const std::map<std::string, std::string>& labels) {
  double sum = 0;
  for (const auto& s : ParseSamples(text, name)) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      auto it = s.labels.find(k);
      if (it == s.labels.end() || it->second != v) match = false;
    }
    if (match) sum += s.value;
  }
  return sum;
}

}  // namespace weft
