#include "bench/suite/results.h"

namespace weft::bench::suite {
namespace {

using json = nlohmann::json;

void Put(json& j, const char* key, const std::optional<double>& v) {
  if (v) j[key] = *v;
}
void Put(json& j, const char* key, const std::string& v) {
  if (!v.empty()) j[key] = v;
}
void Get(const json& j, const char* key, std::optional<double>& v) {
  auto it = j.find(key);
  if (it != j.end() && it->is_number()) v = it->get<double>();
}
template <typename T>
void Get(const json& j, const char* key, T& v) {
  auto it = j.find(key);
  if (it == j.end()) return;
  if constexpr (std::is_same_v<T, std::string>) {
    if (it->is_string()) v = it->get<std::string>();
  } else if (it->is_number()) {
    v = it->get<T>();
  }
}

template <typename T>
json MapToJson(const std::map<std::string, T>& m) {
  json out = json::object();
  for (const auto& [k, v] : m) out[k] = v.ToJson();
  return out;
}
template <typename T>
std::map<std::string, T> MapFromJson(const json& j, const char* key) {
  std::map<std::string, T> out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_object()) return out;
  for (const auto& [k, v] : it->items())
    if (v.is_object()) out[k] = T::FromJson(v);
  return out;
}
template <typename T>
json VecToJson(const std::vector<T>& v) {
  json out = json::array();
  for (const T& x : v) out.push_back(x.ToJson());
  return out;
}
template <typename T>
std::vector<T> VecFromJson(const json& j, const char* key) {
  std::vector<T> out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return out;
  for (const json& x : *it)
    if (x.is_object()) out.push_back(T::FromJson(x));
  return out;
}

}  // namespace

std::string ModeTitle(std::string_view mode) {
  if (mode == kModeBare) return "bare (no mesh)";
  if (mode == kModeEbpf) return "Weft, eBPF capture";
  if (mode == kModeIptables) return "Weft, iptables capture";
  if (mode == kModeSidecar) return "sidecar mesh (HAProxy per pod, mTLS)";
  return std::string(mode);
}

// DataplaneRun's figures by name: its JSON form, both ways.
const std::pair<const char*, std::optional<double> DataplaneRun::*> kDataplaneRunFields[] = {
    {"round_trips", &DataplaneRun::round_trips},
    {"p50_us", &DataplaneRun::p50_us},
    {"p90_us", &DataplaneRun::p90_us},
    {"p99_us", &DataplaneRun::p99_us},
    {"p999_us", &DataplaneRun::p999_us},
    {"mean_us", &DataplaneRun::mean_us},
    {"max_us", &DataplaneRun::max_us},
    {"connections", &DataplaneRun::connections},
    {"failures", &DataplaneRun::failures},
    {"per_second", &DataplaneRun::per_second},
    {"seconds", &DataplaneRun::seconds},
    {"mesh_connections", &DataplaneRun::mesh_connections}};

json DataplaneRun::ToJson() const {
  json j = json::object();
  for (const auto& [key, field] : kDataplaneRunFields) Put(j, key, this->*field);
  Put(j, "error", error);
  return j;
}

DataplaneRun DataplaneRun::FromJson(const json& j) {
  DataplaneRun r;
  for (const auto& [key, field] : kDataplaneRunFields) Get(j, key, r.*field);
  Get(j, "error", r.error);
  return r;
}

json DataplanePair::ToJson() const {
  return {{"pair", pair},
          {"server", server},
          {"pingpong", MapToJson(pingpong)},
          {"connect", MapToJson(connect)}};
}

DataplanePair DataplanePair::FromJson(const json& j) {
  DataplanePair p;
  Get(j, "pair", p.pair);
  Get(j, "server", p.server);
  p.pingpong = MapFromJson<DataplaneRun>(j, "pingpong");
  p.connect = MapFromJson<DataplaneRun>(j, "connect");
  return p;
}

json BpfProgram::ToJson() const {
  json figs = json::object();
  for (const auto& [f, b] : by_figure)
    figs[f] = {{"runs", b.runs}, {"run_time_ns", b.run_time_ns}, {"ns_per_run", b.ns_per_run()}};
  return {{"name", name}, {"type", type}, {"by_figure", figs}};
}

BpfProgram BpfProgram::FromJson(const json& j) {
  BpfProgram p;
  Get(j, "name", p.name);
  Get(j, "type", p.type);
  auto it = j.find("by_figure");
  if (it != j.end() && it->is_object()) {
    for (const auto& [f, b] : it->items()) {
      if (!b.is_object()) continue;
      Get(b, "runs", p.by_figure[f].runs);
      Get(b, "run_time_ns", p.by_figure[f].run_time_ns);
    }
  }
  return p;
}

json DataplaneResult::ToJson() const {
  json j = {{"round_trips", round_trips},
            {"message_bytes", message_bytes},
            {"connect_seconds", connect_seconds},
            {"pairs", VecToJson(pairs)},
            {"bpf_programs", VecToJson(bpf_programs)}};
  Put(j, "bpf_error", bpf_error);
  return j;
}

DataplaneResult DataplaneResult::FromJson(const json& j) {
  DataplaneResult r;
  if (!j.is_object()) return r;
  Get(j, "round_trips", r.round_trips);
  Get(j, "message_bytes", r.message_bytes);
  Get(j, "connect_seconds", r.connect_seconds);
  r.pairs = VecFromJson<DataplanePair>(j, "pairs");
  r.bpf_programs = VecFromJson<BpfProgram>(j, "bpf_programs");
  Get(j, "bpf_error", r.bpf_error);
  return r;
}

}  // namespace weft::bench::suite
