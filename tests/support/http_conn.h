// A blocking HTTP/1.1 client on an already connected socket (a captured connection through the
// mesh), for the L7 tests: raw request bytes out, one response parsed by Boost.Beast back.
// Keeps bytes read past a response for the next one (keep-alive, pipelining).
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace weft::testing {

struct HttpResult {
  int status = 0;  // 0: no complete response (see error)
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-case (a repeated one: the last)
  bool closed = false;  // the peer closed the connection (after the response, if any)
  std::string error;
};

class HttpConn {
 public:
  explicit HttpConn(int fd) : fd_(fd) {}
  // Sends `raw` (may be empty: only read) and reads one response.
  HttpResult Exchange(const std::string& raw,
                      std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // A GET/POST... with Host `host` and `extra` header lines ("Name: value\r\n" each).
  HttpResult Request(const std::string& method, const std::string& target,
                     const std::string& host = "server", const std::string& extra = "");

 private:
  int fd_;
  std::string buf_;
};

}  // namespace weft::testing
