// weft-loadgen's HTTP/2 client connection (h2c, prior knowledge), on nghttp2: one request at a
// time per connection (a weft-loadgen user sends in order on its own connection, over HTTP/2 as
// over HTTP/1.1), driven by the engine's single-threaded io_context.
#pragma once

#include <utility>  // Boost 1.74's asio/awaitable.hpp uses std::exchange without including it

#include <nghttp2/nghttp2.h>

#include <array>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace weft::bench::loadgen {

struct H2Request {
  std::string method = "GET", path = "/", authority;
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names
  std::string body;
};

struct H2Reply {
  bool transport_ok = false;  // a complete response arrived
  bool got_response = false;  // its HEADERS arrived (a failure after that is not retried)
  int status = 0;             // :status
  int grpc_status = -1;       // the "grpc-status" header or trailer, -1 when absent
  std::chrono::steady_clock::time_point first_byte, done;
};

// The gRPC length-prefixed message (uncompressed) that carries `message`.
std::string GrpcFrame(const std::string& message);

class H2Conn {
 public:
  // Takes a connected stream; the client preface and SETTINGS go with the first request.
  explicit H2Conn(std::unique_ptr<boost::beast::tcp_stream> stream);
  ~H2Conn();
  H2Conn(const H2Conn&) = delete;
  H2Conn& operator=(const H2Conn&) = delete;

  // Sends `req` and reads until its stream closes or `deadline` passes.
  boost::asio::awaitable<H2Reply> Exchange(const H2Request& req,
                                           std::chrono::steady_clock::time_point deadline);
  // False once the connection failed or the server ended the session (GOAWAY).
  bool usable() const;

 private:
  struct Current {
    int32_t id = -1;
    bool closed = false, reset = false;
    H2Reply reply;
    const std::string* body = nullptr;
    size_t body_off = 0;
  };
  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame*, void*);
  static int OnHeader(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t,
                      const uint8_t*, size_t, uint8_t, void*);
  static int OnClose(nghttp2_session*, int32_t, uint32_t, void*);
  static ssize_t ReadBody(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*,
                          nghttp2_data_source*, void*);
  boost::asio::awaitable<bool> Flush();

  std::unique_ptr<boost::beast::tcp_stream> stream_;
  nghttp2_session* session_ = nullptr;
  bool failed_ = false;
  Current cur_;
  std::chrono::steady_clock::time_point read_at_;
  std::array<char, 16384> buf_{};
};

}  // namespace weft::bench::loadgen
