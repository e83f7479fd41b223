#include "cni/protocol.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "nlohmann/json.hpp"

namespace weft::cni {
namespace {

using nlohmann::json;

// Parses an object; "" or the error.
std::string ParseObject(std::string_view text, const std::string& what, json* out) {
  if (text.size() > kMaxMessage)
    return what + ": " + std::to_string(text.size()) + " bytes exceeds the limit of " +
           std::to_string(kMaxMessage);
  *out = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (out->is_discarded() || !out->is_object()) return what + ": not a JSON object";
  return "";
}

// `j[key]` as a string (unchanged when absent or null); error when present with another type.
std::string GetString(const json& j, const char* key, const std::string& what, std::string* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  if (!it->is_string()) return what + ": \"" + key + "\" must be a string";
  *out = it->get<std::string>();
  return "";
}

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::string EncodeRequest(const Request& r) {
  return json{{"op", r.op},
              {"containerId", r.container_id},
              {"netns", r.netns},
              {"ifname", r.ifname},
              {"podNamespace", r.pod_namespace},
              {"podName", r.pod_name},
              {"podUid", r.pod_uid},
              {"ips", r.ips}}
      .dump();
}

std::string DecodeRequest(std::string_view text, Request* out) {
  const std::string what = "weft-cni request";
  json j;
  if (std::string e = ParseObject(text, what, &j); !e.empty()) return e;
  Request r;
  for (auto [key, field] : {std::pair<const char*, std::string*>{"op", &r.op},
                            {"containerId", &r.container_id},
                            {"netns", &r.netns},
                            {"ifname", &r.ifname},
                            {"podNamespace", &r.pod_namespace},
                            {"podName", &r.pod_name},
                            {"podUid", &r.pod_uid}})
    if (std::string e = GetString(j, key, what, field); !e.empty()) return e;
  if (r.op != "add" && r.op != "del" && r.op != "check")
    return what + ": unknown op \"" + r.op + "\" (add, del or check)";
  if (auto it = j.find("ips"); it != j.end() && !it->is_null()) {
    const std::string bad = what + ": \"ips\" must be an array of strings";
    if (!it->is_array()) return bad;
    for (const json& ip : *it) {
      if (!ip.is_string()) return bad;
      r.ips.push_back(ip.get<std::string>());
    }
  }
  *out = std::move(r);
  return "";
}

std::string EncodeReply(const Reply& r) {
  if (r.ok) return json{{"ok", true}, {"enrolled", r.enrolled}}.dump();
  return json{{"ok", false}, {"code", r.code}, {"error", r.error}}.dump();
}

std::string DecodeReply(std::string_view text, Reply* out) {
  const std::string what = "weft-agent reply";
  json j;
  if (std::string e = ParseObject(text, what, &j); !e.empty()) return e;
  auto ok = j.find("ok");
  if (ok == j.end() || !ok->is_boolean()) return what + ": \"ok\" must be true or false";
  Reply r;
  r.ok = ok->get<bool>();
  if (r.ok) {
    auto e = j.find("enrolled");
    r.enrolled = e != j.end() && e->is_boolean() && e->get<bool>();
  } else {
    auto code = j.find("code");
    if (code == j.end() || !code->is_number_integer())
      return what + ": an error needs an integer \"code\"";
    r.code = code->get<int>();
    if (std::string e = GetString(j, "error", what, &r.error); !e.empty()) return e;
  }
  *out = std::move(r);
  return "";
}

CallResult CallAgent(const std::string& socket_path, const Request& req,
                     std::chrono::milliseconds timeout) {
  using Kind = CallResult::Kind;
  CallResult res;
  auto fail = [&](Kind k, std::string msg) {
    res.kind = k;
    res.error = std::move(msg);
    return res;
  };
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path))
    return fail(Kind::kUnavailable, "agent socket path \"" + socket_path +
                                        "\" is empty or longer than " +
                                        std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  Fd s{::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)};
  if (s.fd < 0) return fail(Kind::kUnavailable, std::string("socket: ") + std::strerror(errno));
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return fail(Kind::kUnavailable, "cannot reach weft-agent at " + socket_path + ": " +
                                        std::strerror(errno) +
                                        " (is the weft-node pod running on this node?)");
  std::string bytes = EncodeRequest(req);
  if (::send(s.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) < 0)
    return fail(Kind::kUnavailable,
                "sending to weft-agent at " + socket_path + ": " + std::strerror(errno));
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string buf(kMaxMessage, '\0');
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return fail(Kind::kTimeout, "weft-agent at " + socket_path + " did not answer within " +
                                      std::to_string(timeout.count()) + " ms");
    pollfd p{s.fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR)
      return fail(Kind::kUnavailable, std::string("poll: ") + std::strerror(errno));
    if (n <= 0) continue;
    ssize_t got = ::recv(s.fd, buf.data(), buf.size(), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0)
      return fail(Kind::kUnavailable,
                  "reading from weft-agent at " + socket_path + ": " + std::strerror(errno));
    if (got == 0)
      return fail(Kind::kUnavailable,
                  "weft-agent at " + socket_path + " closed the connection without answering");
    std::string e = DecodeReply(std::string_view(buf.data(), static_cast<size_t>(got)), &res.reply);
    if (!e.empty()) return fail(Kind::kBadReply, e);
    res.kind = Kind::kOk;
    return res;
  }
}

}  // namespace weft::cni
