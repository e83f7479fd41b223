#include "cni/plugin.h"

#include <algorithm>
#include <chrono>

#include "cni/protocol.h"
#include "nlohmann/json.hpp"

namespace weft::cni {
namespace {

using nlohmann::json;

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

struct Conf {
  std::string version;
  std::string agent_socket = kDefaultAgentSocket;
  int timeout_seconds = kDefaultTimeoutSeconds;
  json prev_result;  // null when absent
};

struct Failure {
  int code;
  std::string msg;
  std::string details;
};

PluginOutput ErrorOutput(const std::string& version, const Failure& f) {
  PluginOutput o;
  o.exit_code = 1;
  json e = {{"cniVersion", version.empty() ? SupportedVersions().back() : version},
            {"code", f.code},
            {"msg", f.msg}};
  if (!f.details.empty()) e["details"] = f.details;
  o.out = e.dump(2) + "\n";
  o.log = "weft-cni: " + f.msg + (f.details.empty() ? "" : ": ") + f.details + "\n";
  return o;
}

std::string Env(const std::map<std::string, std::string>& env, const char* key) {
  auto it = env.find(key);
  return it == env.end() ? "" : it->second;
}

// Parses and checks the network configuration; `*version` gets cniVersion even when a later
// field is bad (the error object then carries it).
bool ParseConf(std::string_view text, Conf* c, Failure* f) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    *f = {kErrDecode, "the network configuration on stdin is not a JSON object", ""};
    return false;
  }
  auto v = j.find("cniVersion");
  if (v == j.end() || !v->is_string()) {
    *f = {kErrInvalidConfig, "the network configuration has no cniVersion", ""};
    return false;
  }
  c->version = v->get<std::string>();
  const auto& supported = SupportedVersions();
  if (std::find(supported.begin(), supported.end(), c->version) == supported.end()) {
    *f = {kErrIncompatibleVersion, "cniVersion " + c->version + " is not supported",
          "supported: " + Join(supported)};
    c->version.clear();
    return false;
  }
  if (auto s = j.find("agentSocket"); s != j.end()) {
    if (!s->is_string() || s->get<std::string>().empty()) {
      *f = {kErrInvalidConfig, "agentSocket must be a non-empty string (the agent's Unix socket)",
            ""};
      return false;
    }
    c->agent_socket = s->get<std::string>();
  }
  if (auto t = j.find("timeoutSeconds"); t != j.end()) {
    if (!t->is_number_integer() || t->get<int64_t>() < 1 || t->get<int64_t>() > 600) {
      *f = {kErrInvalidConfig, "timeoutSeconds must be an integer from 1 to 600", ""};
      return false;
    }
    c->timeout_seconds = t->get<int>();
  }
  if (auto p = j.find("prevResult"); p != j.end() && !p->is_null()) {
    if (!p->is_object()) {
      *f = {kErrInvalidConfig, "prevResult must be an object", ""};
      return false;
    }
    c->prev_result = *p;
  }
  return true;
}

// The pod's addresses from prevResult.ips[].address ("10.1.0.5/24" -> "10.1.0.5").
std::vector<std::string> ResultIps(const json& prev) {
  std::vector<std::string> ips;
  auto it = prev.find("ips");
  if (it == prev.end() || !it->is_array()) return ips;
  for (const json& ip : *it) {
    if (!ip.is_object()) continue;
    auto a = ip.find("address");
    if (a == ip.end() || !a->is_string()) continue;
    std::string s = a->get<std::string>();
    ips.push_back(s.substr(0, s.find('/')));
  }
  return ips;
}

// The agent's answer, with transport failures as CNI errors. `*reply` is set on success.
bool Ask(const Conf& c, const Request& req, Reply* reply, Failure* f) {
  CallResult r = CallAgent(c.agent_socket, req, std::chrono::seconds(c.timeout_seconds));
  if (r.kind != CallResult::Kind::kOk) {
    *f = {r.kind == CallResult::Kind::kBadReply ? kErrDecode : kErrTryAgainLater,
          "weft-agent is not reachable or not ready; the pod cannot be enrolled in the mesh yet",
          r.error};
    return false;
  }
  *reply = r.reply;
  if (!reply->ok) {
    *f = {reply->code,
          "weft-agent refused " + req.op + " for pod " + req.pod_namespace + "/" + req.pod_name,
          reply->error};
    return false;
  }
  return true;
}

PluginOutput Version() {
  PluginOutput o;
  o.out =
      json{{"cniVersion", SupportedVersions().back()}, {"supportedVersions", SupportedVersions()}}
          .dump() +
      "\n";
  return o;
}

// Checks the CNI_* variables `command` needs; fills the request.
bool RequestFromEnv(const std::map<std::string, std::string>& env, const std::string& command,
                    Request* req, Failure* f) {
  std::vector<const char*> need = {"CNI_CONTAINERID", "CNI_IFNAME"};
  if (command != "DEL") need.push_back("CNI_NETNS");
  for (const char* k : need) {
    if (Env(env, k).empty()) {
      *f = {kErrInvalidEnv, std::string(k) + " is not set (required for " + command + ")", ""};
      return false;
    }
  }
  req->op = command == "ADD" ? "add" : command == "DEL" ? "del" : "check";
  req->container_id = Env(env, "CNI_CONTAINERID");
  req->netns = Env(env, "CNI_NETNS");
  req->ifname = Env(env, "CNI_IFNAME");
  auto args = ParseCniArgs(Env(env, "CNI_ARGS"));
  req->pod_namespace = args["K8S_POD_NAMESPACE"];
  req->pod_name = args["K8S_POD_NAME"];
  req->pod_uid = args["K8S_POD_UID"];
  return true;
}

}  // namespace

const std::vector<std::string>& SupportedVersions() {
  static const std::vector<std::string> v = {"0.3.0", "0.3.1", "0.4.0", "1.0.0"};
  return v;
}

std::map<std::string, std::string> ParseCniArgs(std::string_view args) {
  std::map<std::string, std::string> out;
  while (!args.empty()) {
    size_t semi = args.find(';');
    std::string_view kv = args.substr(0, semi);
    args = semi == std::string_view::npos ? std::string_view() : args.substr(semi + 1);
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    out[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
  }
  return out;
}

PluginOutput RunPlugin(const std::map<std::string, std::string>& env, std::string_view config) {
  const std::string command = Env(env, "CNI_COMMAND");
  if (command == "VERSION") return Version();
  if (command != "ADD" && command != "DEL" && command != "CHECK")
    return ErrorOutput(
        "", {kErrInvalidEnv,
             "CNI_COMMAND \"" + command + "\" is not supported (ADD, DEL, CHECK, VERSION)", ""});
  Conf c;
  Failure f;
  if (!ParseConf(config, &c, &f)) return ErrorOutput(c.version, f);
  if (command == "CHECK" && (c.version == "0.3.0" || c.version == "0.3.1"))
    return ErrorOutput(c.version, {kErrIncompatibleVersion,
                                   "CHECK needs cniVersion 0.4.0 or later, not " + c.version, ""});
  if (command != "DEL" && c.prev_result.is_null())
    return ErrorOutput(c.version,
                       {kErrInvalidConfig,
                        "weft-cni is a chained plugin: it must follow an interface plugin "
                        "(e.g. bridge) in a conflist, and got no prevResult",
                        ""});
  Request req;
  if (!RequestFromEnv(env, command, &req, &f)) return ErrorOutput(c.version, f);
  req.ips = ResultIps(c.prev_result);

  PluginOutput o;
  if (req.pod_namespace.empty() || req.pod_name.empty()) {
    // Not a Kubernetes pod (no K8S_POD_* in CNI_ARGS): nothing the mesh can enrol.
    o.log = "weft-cni: no K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS; passing through\n";
  } else {
    Reply reply;
    if (!Ask(c, req, &reply, &f)) {
      if (command == "DEL" && f.code == kErrTryAgainLater) {
        // The capture lives in the netns being deleted; the agent drops the pod from ztunnel
        // when it leaves the config.
        o.log = "weft-cni: DEL without the agent: " + f.details + "\n";
        return o;
      }
      return ErrorOutput(c.version, f);
    }
    o.log = "weft-cni: " + command + " " + req.pod_namespace + "/" + req.pod_name + ": " +
            (reply.enrolled ? "enrolled" : "not in the mesh") + "\n";
  }
  if (command == "ADD") {
    json result = c.prev_result;
    result["cniVersion"] = c.version;
    o.out = result.dump(2) + "\n";
  }
  return o;
}

}  // namespace weft::cni
