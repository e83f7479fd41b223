#include "cli/up/kube_proxy.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace weft::up {
namespace {

using json = nlohmann::json;

std::string Str(const json& j, const char* key, std::string dflt = "") {
  if (!j.is_object()) return dflt;
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : dflt;
}

std::string Ns(const json& o) {
  return Str(o["metadata"], "namespace", "default");
}

std::map<std::string, std::string> StrMap(const json& j, const char* key) {
  std::map<std::string, std::string> out;
  if (!j.is_object() || !j.contains(key) || !j[key].is_object()) return out;
  for (auto& [k, v] : j[key].items())
    if (v.is_string()) out[k] = v.get<std::string>();
  return out;
}

// The container port of `pod` named `name`, or 0.
uint16_t NamedPort(const json& pod, const std::string& name) {
  const json& spec = pod["spec"];
  if (!spec.is_object() || !spec.contains("containers") || !spec["containers"].is_array()) return 0;
  for (const json& c : spec["containers"]) {
    if (!c.is_object() || !c.contains("ports") || !c["ports"].is_array()) continue;
    for (const json& p : c["ports"])
      if (Str(p, "name") == name && p.contains("containerPort") &&
          p["containerPort"].is_number_integer())
        return static_cast<uint16_t>(p["containerPort"].get<int>());
  }
  return 0;
}

}  // namespace

std::vector<ServiceRule> ComputeServiceRules(const std::vector<json>& objects,
                                             const PodReady& ready) {
  std::vector<const json*> pods, services, slices;
  for (const json& o : objects) {
    const std::string kind = o.value("kind", "");
    if (kind == "Pod") pods.push_back(&o);
    if (kind == "Service") services.push_back(&o);
    if (kind == "EndpointSlice") slices.push_back(&o);
  }
  std::vector<ServiceRule> rules;
  for (const json* s : services) {
    const std::string ns = Ns(*s), name = Str((*s)["metadata"], "name");
    const json& spec = (*s)["spec"];
    auto vip = IpAddr::Parse(Str(spec, "clusterIP"));
    if (!vip.ok() || !vip->IsV4() || !spec.contains("ports") || !spec["ports"].is_array()) continue;
    std::vector<const json*> mine;
    for (const json* e : slices)
      if (Ns(*e) == ns && StrMap((*e)["metadata"], "labels")["kubernetes.io/service-name"] == name)
        mine.push_back(e);
    auto selector = StrMap(spec, "selector");
    for (const json& sp : spec["ports"]) {
      if (!sp.is_object() || !sp.contains("port") || !sp["port"].is_number_integer()) continue;
      ServiceRule r;
      r.ns = ns;
      r.name = name;
      r.vip = *vip;
      r.port = static_cast<uint16_t>(sp["port"].get<int>());
      r.protocol = Str(sp, "protocol", "TCP");
      if (r.protocol != "TCP" && r.protocol != "UDP") continue;
      const std::string port_name = Str(sp, "name");
      if (!mine.empty()) {
        for (const json* e : mine) {
          uint16_t port = 0;
          if ((*e).contains("ports") && (*e)["ports"].is_array()) {
            for (const json& ep : (*e)["ports"]) {
              if (Str(ep, "name") == port_name && ep.contains("port") &&
                  ep["port"].is_number_integer())
                port = static_cast<uint16_t>(ep["port"].get<int>());
            }
          }
          if (port == 0) port = r.port;
          if (!(*e).contains("endpoints") || !(*e)["endpoints"].is_array()) continue;
          for (const json& ep : (*e)["endpoints"]) {
            bool is_ready = true;
            if (ep.contains("conditions") && ep["conditions"].is_object() &&
                ep["conditions"].contains("ready") && ep["conditions"]["ready"].is_boolean())
              is_ready = ep["conditions"]["ready"].get<bool>();
            if (!is_ready || !ep.contains("addresses") || !ep["addresses"].is_array()) continue;
            for (const json& a : ep["addresses"]) {
              auto ip = a.is_string() ? IpAddr::Parse(a.get<std::string>())
                                      : absl::StatusOr<IpAddr>(absl::InvalidArgumentError(""));
              if (ip.ok() && ip->IsV4()) r.endpoints.push_back({*ip, port});
            }
          }
        }
      } else if (!selector.empty()) {
        for (const json* p : pods) {
          if (Ns(*p) != ns || Str((*p)["status"], "phase") != "Running") continue;
          auto labels = StrMap((*p)["metadata"], "labels");
          bool match = std::all_of(selector.begin(), selector.end(), [&](const auto& kv) {
            auto it = labels.find(kv.first);
            return it != labels.end() && it->second == kv.second;
          });
          if (!match || !ready(ns, Str((*p)["metadata"], "name"))) continue;
          auto ip = IpAddr::Parse(Str((*p)["status"], "podIP"));
          if (!ip.ok() || !ip->IsV4()) continue;
          uint16_t port = r.port;
          if (sp.contains("targetPort")) {
            const json& tp = sp["targetPort"];
            if (tp.is_number_integer()) port = static_cast<uint16_t>(tp.get<int>());
            if (tp.is_string()) port = NamedPort(*p, tp.get<std::string>());
          }
          if (port != 0) r.endpoints.push_back({*ip, port});
        }
      }
      std::sort(r.endpoints.begin(), r.endpoints.end(), [](const auto& a, const auto& b) {
        return a.ip == b.ip ? a.port < b.port : a.ip < b.ip;
      });
      r.endpoints.erase(std::unique(r.endpoints.begin(), r.endpoints.end()), r.endpoints.end());
      rules.push_back(std::move(r));
    }
  }
  std::sort(rules.begin(), rules.end(), [](const ServiceRule& a, const ServiceRule& b) {
    return std::tie(a.ns, a.name, a.port, a.protocol) < std::tie(b.ns, b.name, b.port, b.protocol);
  });
  return rules;
}

std::string IptablesRestoreScript(const std::vector<ServiceRule>& rules) {
  constexpr char kHairpinMark[] = "0x4000/0x4000";
  std::string chains, body;
  for (size_t i = 0; i < rules.size(); ++i) {
    const ServiceRule& r = rules[i];
    const std::string proto = r.protocol == "UDP" ? "udp" : "tcp";
    const std::string match =
        absl::StrCat("-d ", r.vip.ToString(), "/32 -p ", proto, " -m ", proto, " --dport ", r.port);
    const std::string comment =
        absl::StrCat("-m comment --comment \"", r.ns, "/", r.name, ":", r.port, "\"");
    if (r.endpoints.empty()) continue;
    const std::string svc = absl::StrCat("WEFT-SVC-", i);
    absl::StrAppend(&chains, ":", svc, " - [0:0]\n");
    absl::StrAppend(&body, "-A WEFT-SERVICES ", match, " ", comment, " -j ", svc, "\n");
    const size_t n = r.endpoints.size();
    for (size_t j = 0; j < n; ++j) {
      const std::string sep = absl::StrCat("WEFT-SEP-", i, "-", j);
      const ServiceEndpoint& e = r.endpoints[j];
      absl::StrAppend(&chains, ":", sep, " - [0:0]\n");
      // kube-proxy's even spread: endpoint j of n is taken with probability 1/(n-j).
      if (j + 1 < n) {
        absl::StrAppend(&body, "-A ", svc, " -m statistic --mode random --probability ",
                        absl::StrFormat("%.11f", 1.0 / static_cast<double>(n - j)), " -j ", sep,
                        "\n");
      } else {
        absl::StrAppend(&body, "-A ", svc, " -j ", sep, "\n");
      }
      absl::StrAppend(&body, "-A ", sep, " -s ", e.ip.ToString(), "/32 -j MARK --set-xmark ",
                      kHairpinMark, "\n");
      absl::StrAppend(&body, "-A ", sep, " -p ", proto, " -j DNAT --to-destination ",
                      e.ip.ToString(), ":", e.port, "\n");
    }
  }
  return absl::StrCat(
      "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n",
      ":POSTROUTING ACCEPT [0:0]\n:WEFT-SERVICES - [0:0]\n:WEFT-POSTROUTING - [0:0]\n", chains,
      "-A PREROUTING -j WEFT-SERVICES\n-A OUTPUT -j WEFT-SERVICES\n",
      "-A POSTROUTING -j WEFT-POSTROUTING\n", "-A WEFT-POSTROUTING -m mark --mark ", kHairpinMark,
      " -j SNAT --to-source 169.254.1.1\n", body, "COMMIT\n");
}

}  // namespace weft::up
