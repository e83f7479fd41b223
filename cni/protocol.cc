#include "cni/protocol.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "nlohmann/json.hpp"

namespace weft::cni {
namespace {

using nlohmann::json;

absl::StatusOr<json> ParseObject(std::string_view text, std::string_view what) {
  if (text.size() > kMaxMessage)
    return absl::InvalidArgumentError(
        absl::StrCat(Av(what), ": ", text.size(), " bytes exceeds the limit of ", kMaxMessage));
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError(absl::StrCat(Av(what), ": not a JSON object"));
  return j;
}

// `j[key]` as a string ("" when absent); error when present with another type.
absl::Status GetString(const json& j, const char* key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string())
    return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" must be a string"));
  *out = it->get<std::string>();
  return absl::OkStatus();
}

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

absl::StatusOr<Request> DecodeRequest(std::string_view text) {
  WEFT_ASSIGN_OR_RETURN(json j, ParseObject(text, "weft-cni request"));
  Request r;
  for (auto [key, field] : {std::pair<const char*, std::string*>{"op", &r.op},
                            {"containerId", &r.container_id},
                            {"netns", &r.netns},
                            {"ifname", &r.ifname},
                            {"podNamespace", &r.pod_namespace},
                            {"podName", &r.pod_name},
                            {"podUid", &r.pod_uid}})
    WEFT_RETURN_IF_ERROR(WithContext(GetString(j, key, field), "weft-cni request"));
  if (r.op != "add" && r.op != "del" && r.op != "check")
    return absl::InvalidArgumentError(
        absl::StrCat("weft-cni request: unknown op \"", r.op, "\" (add, del or check)"));
  if (auto it = j.find("ips"); it != j.end() && !it->is_null()) {
    if (!it->is_array())
      return absl::InvalidArgumentError("weft-cni request: \"ips\" must be an array of strings");
    for (const json& ip : *it) {
      if (!ip.is_string())
        return absl::InvalidArgumentError("weft-cni request: \"ips\" must be an array of strings");
      r.ips.push_back(ip.get<std::string>());
    }
  }
  return r;
}

std::string EncodeReply(const Reply& r) {
  if (r.ok) return json{{"ok", true}, {"enrolled", r.enrolled}}.dump();
  return json{{"ok", false}, {"code", r.code}, {"error", r.error}}.dump();
}

absl::StatusOr<Reply> DecodeReply(std::string_view text) {
  WEFT_ASSIGN_OR_RETURN(json j, ParseObject(text, "weft-agent reply"));
  auto ok = j.find("ok");
  if (ok == j.end() || !ok->is_boolean())
    return absl::InvalidArgumentError("weft-agent reply: \"ok\" must be true or false");
  Reply r;
  r.ok = ok->get<bool>();
  if (r.ok) {
    auto e = j.find("enrolled");
    r.enrolled = e != j.end() && e->is_boolean() && e->get<bool>();
    return r;
  }
  auto code = j.find("code");
  if (code == j.end() || !code->is_number_integer())
    return absl::InvalidArgumentError("weft-agent reply: an error needs an integer \"code\"");
  r.code = code->get<int>();
  WEFT_RETURN_IF_ERROR(WithContext(GetString(j, "error", &r.error), "weft-agent reply"));
  return r;
}

absl::StatusOr<Reply> CallAgent(const std::string& socket_path, const Request& req,
                                std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path))
    return absl::InvalidArgumentError(absl::StrCat("agent socket path \"", socket_path,
                                                   "\" is empty or longer than ",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!s) return ErrnoError(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    return absl::UnavailableError(absl::StrCat("cannot reach weft-agent at ", socket_path, ": ",
                                               std::strerror(err),
                                               " (is the weft-node pod running on this node?)"));
  }
  std::string bytes = EncodeRequest(req);
  if (::send(s.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) < 0)
    return absl::UnavailableError(
        absl::StrCat("sending to weft-agent at ", socket_path, ": ", std::strerror(errno)));
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string buf(kMaxMessage, '\0');
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return absl::DeadlineExceededError(absl::StrCat(
          "weft-agent at ", socket_path, " did not answer within ", timeout.count(), " ms"));
    pollfd p{s.get(), POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "poll on the weft-agent socket");
    if (n == 0) continue;
    ssize_t got = ::recv(s.get(), buf.data(), buf.size(), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0)
      return absl::UnavailableError(
          absl::StrCat("reading from weft-agent at ", socket_path, ": ", std::strerror(errno)));
    if (got == 0)
      return absl::UnavailableError(
          absl::StrCat("weft-agent at ", socket_path, " closed the connection without answering"));
    return DecodeReply(std::string_view(buf.data(), static_cast<size_t>(got)));
  }
}

}  // namespace weft::cni
