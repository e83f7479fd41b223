// TrafficPolicy (networking.weft.dev/v1): field names from Istio's DestinationRule /
// VirtualService where they exist (docs/traffic.md), defaults filled as config.proto says.
#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status.h"
#include "config/model/convert.h"
#include "controlplane/model/json_fields.h"
#include "controlplane/model/routes.h"

namespace weft::cp::internal {
namespace {

namespace pb = ::weft::config::v1;
using nlohmann::json;

// Linkerd's retry budget defaults (config.proto RetryBudget).
constexpr double kBudgetRatio = 0.2;
constexpr uint32_t kBudgetMinPerSecond = 10;
constexpr uint64_t kBudgetTtlMs = 10000;
// Istio's outlierDetection defaults.
constexpr uint32_t kOutlierConsecutive5xx = 5;
constexpr uint64_t kOutlierIntervalMs = 10000, kOutlierBaseEjectionMs = 30000;
constexpr uint32_t kOutlierMaxEjectionPercent = 10;

absl::StatusOr<std::optional<uint64_t>> Duration(const json& parent, std::string_view key,
                                                 std::string_view path) {
  const json* v = Get(parent, key);
  if (v == nullptr) return std::optional<uint64_t>();
  WEFT_ASSIGN_OR_RETURN(uint64_t ms, ParseDurationMs(*v, Join(path, key)));
  return std::optional<uint64_t>(ms);
}

absl::StatusOr<uint32_t> Count(const json& parent, std::string_view key, std::string_view path,
                               int64_t max = UINT32_MAX) {
  WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> n, Int(parent, key, path, 0, max));
  return static_cast<uint32_t>(n.value_or(0));
}

// A percentage 0-100: a number, or Istio's {value: n}; absent: 100.
absl::StatusOr<double> Percentage(const json& parent, std::string_view path) {
  const json* v = Get(parent, "percentage");
  const std::string p = Join(path, "percentage");
  if (v == nullptr) return 100.0;
  const json* n = v;
  if (v->is_object()) {
    WEFT_RETURN_IF_ERROR(OnlyKnownFields(*v, p, {"value"}));
    n = Get(*v, "value");
    if (n == nullptr) return Bad(Join(p, "value"), "is required");
  }
  if (!n->is_number()) return WrongType(p, "a number 0-100", *n);
  const double d = n->get<double>();
  if (!(d >= 0 && d <= 100)) return Bad(p, absl::StrCat(n->dump(), " is out of range 0-100"));
  return d;
}

// gRPC status codes by their canonical names (Istio's grpcStatus is a name).
const std::map<std::string, int>& GrpcCodes() {
  static const auto* codes = new std::map<std::string, int>{
      {"OK", 0},
      {"CANCELLED", 1},
      {"UNKNOWN", 2},
      {"INVALID_ARGUMENT", 3},
      {"DEADLINE_EXCEEDED", 4},
      {"NOT_FOUND", 5},
      {"ALREADY_EXISTS", 6},
      {"PERMISSION_DENIED", 7},
      {"RESOURCE_EXHAUSTED", 8},
      {"FAILED_PRECONDITION", 9},
      {"ABORTED", 10},
      {"OUT_OF_RANGE", 11},
      {"UNIMPLEMENTED", 12},
      {"INTERNAL", 13},
      {"UNAVAILABLE", 14},
      {"DATA_LOSS", 15},
      {"UNAUTHENTICATED", 16},
  };
  return *codes;
}

absl::StatusOr<pb::FaultInjection> ParseFault(const json& f, const std::string& path,
                                              bool allow_routes) {
  if (allow_routes) {
    WEFT_RETURN_IF_ERROR(OnlyKnownFields(f, path, {"delay", "abort", "routes"}));
  } else {
    WEFT_RETURN_IF_ERROR(
        OnlyKnownFields(f, path, {"name", "namespace", "sectionName", "delay", "abort"}));
  }
  pb::FaultInjection out;
  WEFT_ASSIGN_OR_RETURN(const json* delay, Obj(f, "delay", path));
  if (delay != nullptr) {
    const std::string dp = Join(path, "delay");
    WEFT_RETURN_IF_ERROR(OnlyKnownFields(*delay, dp, {"fixedDelay", "percentage"}));
    WEFT_ASSIGN_OR_RETURN(std::optional<uint64_t> ms, Duration(*delay, "fixedDelay", dp));
    if (!ms) return Bad(Join(dp, "fixedDelay"), "is required");
    if (*ms == 0) return Bad(Join(dp, "fixedDelay"), "must be longer than 0");
    out.mutable_delay()->set_fixed_delay_ms(*ms);
    WEFT_ASSIGN_OR_RETURN(double pct, Percentage(*delay, dp));
    out.mutable_delay()->set_percentage(pct);
  }
  WEFT_ASSIGN_OR_RETURN(const json* abort, Obj(f, "abort", path));
  if (abort != nullptr) {
    const std::string ap = Join(path, "abort");
    WEFT_RETURN_IF_ERROR(OnlyKnownFields(*abort, ap, {"httpStatus", "grpcStatus", "percentage"}));
    pb::FaultInjection::Abort* a = out.mutable_abort();
    a->set_grpc_status(-1);
    WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> http, Int(*abort, "httpStatus", ap, 200, 599));
    const json* grpc = Get(*abort, "grpcStatus");
    if (http.has_value() == (grpc != nullptr)) {
      return Bad(ap, "needs exactly one of httpStatus (200-599) and grpcStatus");
    }
    a->set_http_status(static_cast<uint32_t>(http.value_or(0)));
    if (grpc != nullptr) {
      const std::string gp = Join(ap, "grpcStatus");
      if (grpc->is_string()) {
        auto it = GrpcCodes().find(absl::AsciiStrToUpper(grpc->get<std::string>()));
        if (it == GrpcCodes().end() || it->second == 0) {
          return Bad(gp, absl::StrCat(grpc->dump(),
                                      " is not a gRPC status name (e.g. "
                                      "UNAVAILABLE)"));
        }
        a->set_grpc_status(it->second);
      } else {
        WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> code, Int(*abort, "grpcStatus", ap, 1, 16));
        a->set_grpc_status(static_cast<int32_t>(*code));
      }
    }
    WEFT_ASSIGN_OR_RETURN(double pct, Percentage(*abort, ap));
    a->set_percentage(pct);
  }
  if (delay == nullptr && abort == nullptr) return Bad(path, "needs delay or abort");
  return out;
}

// retryOn: Istio's comma-separated string (or a list); numbers are retriable status codes.
absl::Status ParseRetryOn(const json& r, const std::string& path, pb::RetryPolicy* out) {
  const json* v = Get(r, "retryOn");
  if (v == nullptr) return absl::OkStatus();
  const std::string rp = Join(path, "retryOn");
  std::vector<std::string> items;
  if (v->is_string()) {
    for (absl::string_view s : absl::StrSplit(v->get<std::string>(), ',', absl::SkipEmpty())) {
      items.emplace_back(absl::StripAsciiWhitespace(s));
    }
  } else if (v->is_array()) {
    for (size_t i = 0; i < v->size(); ++i) {
      if (!(*v)[i].is_string()) return WrongType(At(rp, i), "a string", (*v)[i]);
      items.push_back((*v)[i].get<std::string>());
    }
  } else {
    return WrongType(rp, "a comma-separated string", *v);
  }
  static const std::set<std::string> kKnown = {
      "5xx",       "gateway-error",     "reset",    "connect-failure",    "retriable-status-codes",
      "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"};
  for (const std::string& item : items) {
    uint32_t code = 0;
    if (absl::SimpleAtoi(item, &code)) {
      if (code < 100 || code > 599) return Bad(rp, absl::StrCat(item, " is not an HTTP status"));
      out->add_retriable_status_codes(code);
      continue;
    }
    if (!kKnown.contains(item)) {
      return Bad(rp, absl::StrCat("\"", item,
                                  "\" is not a retry condition (want 5xx, gateway-error, reset, "
                                  "connect-failure, retriable-status-codes, a status code, or a "
                                  "gRPC status: cancelled, deadline-exceeded, internal, "
                                  "resource-exhausted, unavailable)"));
    }
    out->add_retry_on(item);
  }
  if (out->retriable_status_codes_size() > 0 &&
      std::find(out->retry_on().begin(), out->retry_on().end(), "retriable-status-codes") ==
          out->retry_on().end()) {
    out->add_retry_on("retriable-status-codes");
  }
  return absl::OkStatus();
}

absl::StatusOr<pb::RetryPolicy> ParseRetries(const json& r, const std::string& path) {
  WEFT_RETURN_IF_ERROR(
      OnlyKnownFields(r, path, {"attempts", "perTryTimeout", "retryOn", "budget"}));
  pb::RetryPolicy out;
  WEFT_ASSIGN_OR_RETURN(uint32_t attempts, Count(r, "attempts", path, 100));
  out.set_attempts(attempts);
  WEFT_ASSIGN_OR_RETURN(std::optional<uint64_t> per_try, Duration(r, "perTryTimeout", path));
  out.set_per_try_timeout_ms(per_try.value_or(0));
  WEFT_RETURN_IF_ERROR(ParseRetryOn(r, path, &out));
  pb::RetryBudget* b = out.mutable_budget();
  b->set_retry_ratio(kBudgetRatio);
  b->set_min_retries_per_second(kBudgetMinPerSecond);
  b->set_ttl_ms(kBudgetTtlMs);
  WEFT_ASSIGN_OR_RETURN(const json* budget, Obj(r, "budget", path));
  if (budget != nullptr) {
    const std::string bp = Join(path, "budget");
    WEFT_RETURN_IF_ERROR(
        OnlyKnownFields(*budget, bp, {"retryRatio", "minRetriesPerSecond", "ttl"}));
    if (const json* ratio = Get(*budget, "retryRatio"); ratio != nullptr) {
      if (!ratio->is_number()) return WrongType(Join(bp, "retryRatio"), "a number", *ratio);
      const double d = ratio->get<double>();
      if (!(d >= 0 && d <= 1000)) {
        return Bad(Join(bp, "retryRatio"), absl::StrCat(ratio->dump(), " is out of range 0-1000"));
      }
      b->set_retry_ratio(d);
    }
    WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> min,
                          Int(*budget, "minRetriesPerSecond", bp, 0, UINT32_MAX));
    if (min) b->set_min_retries_per_second(static_cast<uint32_t>(*min));
    WEFT_ASSIGN_OR_RETURN(std::optional<uint64_t> ttl, Duration(*budget, "ttl", bp));
    if (ttl) {
      if (*ttl == 0 || *ttl > 60000) return Bad(Join(bp, "ttl"), "must be 1ms to 60s");
      b->set_ttl_ms(*ttl);
    }
  }
  return out;
}

absl::StatusOr<pb::ConnectionPool> ParseConnectionPool(const json& c, const std::string& path) {
  WEFT_RETURN_IF_ERROR(
      OnlyKnownFields(c, path,
                      {"maxConnections", "http1MaxPendingRequests", "http2MaxRequests",
                       "maxRequestsPerConnection", "maxRetries"}));
  pb::ConnectionPool out;
  WEFT_ASSIGN_OR_RETURN(uint32_t v, Count(c, "maxConnections", path));
  out.set_max_connections(v);
  WEFT_ASSIGN_OR_RETURN(v, Count(c, "http1MaxPendingRequests", path));
  out.set_http1_max_pending_requests(v);
  WEFT_ASSIGN_OR_RETURN(v, Count(c, "http2MaxRequests", path));
  out.set_http2_max_requests(v);
  WEFT_ASSIGN_OR_RETURN(v, Count(c, "maxRequestsPerConnection", path));
  out.set_max_requests_per_connection(v);
  WEFT_ASSIGN_OR_RETURN(v, Count(c, "maxRetries", path));
  out.set_max_retries(v);
  return out;
}

absl::StatusOr<pb::OutlierDetection> ParseOutlierDetection(const json& o, const std::string& path) {
  WEFT_RETURN_IF_ERROR(OnlyKnownFields(o, path,
                                       {"consecutive5xxErrors", "consecutiveGatewayErrors",
                                        "interval", "baseEjectionTime", "maxEjectionPercent"}));
  pb::OutlierDetection out;
  WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> c5xx,
                        Int(o, "consecutive5xxErrors", path, 0, UINT32_MAX));
  out.set_consecutive_5xx_errors(static_cast<uint32_t>(c5xx.value_or(kOutlierConsecutive5xx)));
  WEFT_ASSIGN_OR_RETURN(uint32_t gw, Count(o, "consecutiveGatewayErrors", path));
  out.set_consecutive_gateway_errors(gw);
  WEFT_ASSIGN_OR_RETURN(std::optional<uint64_t> interval, Duration(o, "interval", path));
  out.set_interval_ms(interval.value_or(kOutlierIntervalMs));
  if (out.interval_ms() == 0) return Bad(Join(path, "interval"), "must be longer than 0");
  WEFT_ASSIGN_OR_RETURN(std::optional<uint64_t> base, Duration(o, "baseEjectionTime", path));
  out.set_base_ejection_time_ms(base.value_or(kOutlierBaseEjectionMs));
  WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> pct, Int(o, "maxEjectionPercent", path, 0, 100));
  out.set_max_ejection_percent(static_cast<uint32_t>(pct.value_or(kOutlierMaxEjectionPercent)));
  return out;
}

// targetRefs: exactly one, a Service of the policy's own namespace (no namespace field, as in
// Gateway API's LocalPolicyTargetReference), optionally one port by sectionName or port.
absl::Status ParseTarget(const json& spec, std::string_view ns, TrafficPolicyObj* out) {
  WEFT_ASSIGN_OR_RETURN(const json* refs, Arr(spec, "targetRefs", "spec"));
  if (refs == nullptr || refs->size() != 1) {
    return Bad("spec.targetRefs",
               "needs exactly one Service (write one TrafficPolicy per Service)");
  }
  const std::string tp = "spec.targetRefs[0]";
  const json& t = (*refs)[0];
  if (!t.is_object()) return WrongType(tp, "a mapping", t);
  WEFT_RETURN_IF_ERROR(OnlyKnownFields(t, tp, {"group", "kind", "name", "sectionName", "port"}));
  WEFT_ASSIGN_OR_RETURN(std::string group, Str(t, "group", tp));
  WEFT_ASSIGN_OR_RETURN(std::string kind, Str(t, "kind", tp));
  if (!group.empty() || (kind != "Service" && !kind.empty())) {
    return Bad(tp, absl::StrCat("targets ", group.empty() ? "core" : group, " kind ",
                                kind.empty() ? "\"\"" : kind,
                                "; a TrafficPolicy targets a Service (group \"\", kind Service)"));
  }
  WEFT_ASSIGN_OR_RETURN(std::string name, Str(t, "name", tp, true));
  if (!IsDnsLabel(name)) return Bad(Join(tp, "name"), "is not a valid Service name");
  out->policy.set_target_service(absl::StrCat(Av(ns), "/", name));
  WEFT_ASSIGN_OR_RETURN(out->section_name, Str(t, "sectionName", tp));
  WEFT_ASSIGN_OR_RETURN(std::optional<int64_t> port, Int(t, "port", tp, 1, 65535));
  if (port && !out->section_name.empty()) {
    return Bad(tp, "set sectionName (a port name) or port, not both");
  }
  out->policy.set_target_port(static_cast<uint32_t>(port.value_or(0)));
  return absl::OkStatus();
}

absl::Status ParseFaults(const json& spec, TrafficPolicyObj* out) {
  WEFT_ASSIGN_OR_RETURN(const json* fault, Obj(spec, "faultInjection", "spec"));
  if (fault == nullptr) return absl::OkStatus();
  const std::string fp = "spec.faultInjection";
  WEFT_ASSIGN_OR_RETURN(const json* routes, Arr(*fault, "routes", fp));
  if (Get(*fault, "delay") != nullptr || Get(*fault, "abort") != nullptr || routes == nullptr) {
    WEFT_ASSIGN_OR_RETURN(*out->policy.mutable_fault_injection(), ParseFault(*fault, fp, true));
  }
  for (size_t i = 0; routes != nullptr && i < routes->size(); ++i) {
    const std::string rp = At(Join(fp, "routes"), i);
    const json& r = (*routes)[i];
    if (!r.is_object()) return WrongType(rp, "a mapping", r);
    WEFT_ASSIGN_OR_RETURN(pb::FaultInjection f, ParseFault(r, rp, false));
    WEFT_ASSIGN_OR_RETURN(std::string name, Str(r, "name", rp, true));
    WEFT_ASSIGN_OR_RETURN(std::string route_ns, Str(r, "namespace", rp));
    WEFT_ASSIGN_OR_RETURN(std::string section, Str(r, "sectionName", rp));
    std::string key = absl::StrCat(route_ns.empty() ? out->policy.namespace_() : route_ns, "/",
                                   name, section.empty() ? "" : "#", section);
    if (out->policy.route_fault_injection().contains(key)) {
      return Bad(rp, absl::StrCat("route ", key, " is listed twice"));
    }
    (*out->policy.mutable_route_fault_injection())[key] = std::move(f);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TrafficPolicyObj> ParseTrafficPolicy(std::string_view ns, std::string_view name,
                                                    const json& o) {
  TrafficPolicyObj out;
  out.policy.set_name(std::string(name));
  out.policy.set_namespace_(std::string(ns));
  WEFT_ASSIGN_OR_RETURN(const json* spec, Obj(o, "spec", "", true));
  WEFT_RETURN_IF_ERROR(OnlyKnownFields(
      *spec, "spec",
      {"targetRefs", "retries", "faultInjection", "connectionPool", "outlierDetection"}));
  WEFT_RETURN_IF_ERROR(ParseTarget(*spec, ns, &out));
  WEFT_ASSIGN_OR_RETURN(const json* retries, Obj(*spec, "retries", "spec"));
  if (retries != nullptr) {
    WEFT_ASSIGN_OR_RETURN(*out.policy.mutable_retries(), ParseRetries(*retries, "spec.retries"));
  }
  WEFT_RETURN_IF_ERROR(ParseFaults(*spec, &out));
  WEFT_ASSIGN_OR_RETURN(const json* pool, Obj(*spec, "connectionPool", "spec"));
  if (pool != nullptr) {
    WEFT_ASSIGN_OR_RETURN(*out.policy.mutable_connection_pool(),
                          ParseConnectionPool(*pool, "spec.connectionPool"));
  }
  WEFT_ASSIGN_OR_RETURN(const json* outlier, Obj(*spec, "outlierDetection", "spec"));
  if (outlier != nullptr) {
    WEFT_ASSIGN_OR_RETURN(*out.policy.mutable_outlier_detection(),
                          ParseOutlierDetection(*outlier, "spec.outlierDetection"));
  }
  // The data plane's own check (config/model), so that weftd never sends what a node refuses.
  if (auto dp = weft::config::TrafficPolicyFromProto(out.policy); !dp.ok()) {
    return Bad("spec", absl::StrCat("the data plane cannot use it: ", dp.status().message()));
  }
  return out;
}

}  // namespace weft::cp::internal
