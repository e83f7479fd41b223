#include "tests/support/http_conn.h"

#include <poll.h>
#include <sys/socket.h>

#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"

namespace weft::testing {
namespace http = boost::beast::http;

HttpResult HttpConn::Exchange(const std::string& raw, std::chrono::milliseconds timeout) {
  HttpResult out;
  for (size_t off = 0; off < raw.size();) {
    ssize_t n = ::send(fd_, raw.data() + off, raw.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      out.error = std::string("send: ") + std::strerror(errno);
      out.closed = true;
      return out;
    }
    off += static_cast<size_t>(n);
  }
  http::response_parser<http::string_body> p;
  p.body_limit(64 << 20);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (!buf_.empty()) {
      boost::beast::error_code ec;
      size_t used = p.put(boost::asio::buffer(buf_.data(), buf_.size()), ec);
      buf_.erase(0, used);
      if (ec && ec != http::error::need_more) {
        out.error = "bad response: " + ec.message();
        return out;
      }
      if (p.is_done()) {
        out.status = p.get().result_int();
        out.body = p.get().body();
        for (const auto& f : p.get())
          out.headers[absl::AsciiStrToLower(std::string(f.name_string()))] = std::string(f.value());
        return out;
      }
      if (used > 0 && !buf_.empty()) continue;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd pfd{fd_, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
      out.error = "timed out waiting for a response";
      return out;
    }
    char tmp[16384];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n > 0) {
      buf_.append(tmp, static_cast<size_t>(n));
      continue;
    }
    out.closed = true;
    if (p.is_header_done() && !p.is_done()) {
      boost::beast::error_code ec;
      p.put_eof(ec);  // a response delimited by the close
      if (!ec && p.is_done()) {
        out.status = p.get().result_int();
        out.body = p.get().body();
        for (const auto& f : p.get())
          out.headers[absl::AsciiStrToLower(std::string(f.name_string()))] = std::string(f.value());
        return out;
      }
    }
    out.error = n == 0 ? "connection closed before a response" : std::strerror(errno);
    return out;
  }
}

HttpResult HttpConn::Request(const std::string& method, const std::string& target,
                             const std::string& host, const std::string& extra) {
  return Exchange(method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra +
                  (method == "POST" || method == "PUT" ? "Content-Length: 0\r\n" : "") + "\r\n");
}

}  // namespace weft::testing
