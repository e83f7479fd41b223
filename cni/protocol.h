// The weft-cni plugin <-> weft-agent protocol: one JSON request and one JSON reply per
// connection, each a single message on a Unix SOCK_SEQPACKET socket the agent serves
// (weft-agent --cni-socket). The plugin is the client (CallAgent); the agent's end is
// agent/cni_server.h.
//
// The plugin side is free of abseil and of weft_common: weft-cni is linked statically, since it
// is copied onto the host and runs there, outside the image's libraries.
//
// Request: {"op": "add"|"del"|"check", "containerId", "netns", "ifname",
//           "podNamespace", "podName", "podUid" (K8S_POD_UID, may be empty),
//           "ips": ["10.1.0.5", ...] (from prevResult, ADD/CHECK)}
// Reply:   {"ok": true, "enrolled": bool} or {"ok": false, "code": N, "error": "..."}
//          (`code` is a CNI error code: 11 = try again later, 100+ = weft-cni's own).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace weft::cni {

// CNI error codes (spec 1.0, "Error") and weft-cni's own (100+).
inline constexpr int kErrIncompatibleVersion = 1;
inline constexpr int kErrUnsupportedField = 2;
inline constexpr int kErrInvalidEnv = 4;
inline constexpr int kErrIo = 5;
inline constexpr int kErrDecode = 6;
inline constexpr int kErrInvalidConfig = 7;
inline constexpr int kErrTryAgainLater = 11;
inline constexpr int kErrEnrollFailed = 100;  // the agent could not capture or hand off the pod
inline constexpr int kErrDrift = 101;         // CHECK: an enrolled pod's capture is missing

// The plugin's type (conflist "type", binary name) and the agent's default socket.
inline constexpr char kPluginType[] = "weft-cni";
inline constexpr char kDefaultAgentSocket[] = "/run/weft-cni/agent.sock";

// Messages above this size are refused by both ends.
inline constexpr size_t kMaxMessage = 64 * 1024;

struct Request {
  std::string op;  // "add", "del", "check"
  std::string container_id;
  std::string netns;
  std::string ifname;
  std::string pod_namespace;
  std::string pod_name;
  std::string pod_uid;
  std::vector<std::string> ips;
};

struct Reply {
  bool ok = false;
  bool enrolled = false;
  int code = 0;  // when !ok
  std::string error;

  static Reply Ok(bool enrolled) { return Reply{true, enrolled, 0, ""}; }
  static Reply Error(int code, std::string msg) {
    return Reply{false, false, code, std::move(msg)};
  }
};

std::string EncodeRequest(const Request& r);
// Decoders return "" on success, else the error naming the field (not JSON, unknown op, wrong
// types, too large).
std::string DecodeRequest(std::string_view text, Request* out);
std::string EncodeReply(const Reply& r);
std::string DecodeReply(std::string_view text, Reply* out);

// Sends `req` to the agent on `socket_path` and waits up to `timeout` for the reply.
struct CallResult {
  enum class Kind {
    kOk,           // `reply` is the agent's answer
    kUnavailable,  // the agent is not listening (no socket, refused) or went away
    kTimeout,      // no answer in time
    kBadReply,     // the answer was malformed
  };
  Kind kind = Kind::kUnavailable;
  Reply reply;
  std::string error;  // when not kOk
};
CallResult CallAgent(const std::string& socket_path, const Request& req,
                     std::chrono::milliseconds timeout);

}  // namespace weft::cni
