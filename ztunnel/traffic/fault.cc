#include "ztunnel/traffic/fault.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "ztunnel/traffic/filters.h"

namespace weft::ztunnel::traffic {

const config::FaultInjection* FaultFor(const config::TrafficPolicy& policy,
                                       std::string_view route_key, std::string_view rule_name) {
  const auto& per_route = policy.route_fault_injection;
  if (!route_key.empty() && !per_route.empty()) {
    if (!rule_name.empty()) {
      auto it = per_route.find(absl::StrCat(Av(route_key), "#", Av(rule_name)));
      if (it != per_route.end()) return &it->second;
    }
    auto it = per_route.find(std::string(route_key));
    if (it != per_route.end()) return &it->second;
  }
  return policy.fault_injection ? &*policy.fault_injection : nullptr;
}

FaultDecision DecideFault(const config::FaultInjection& fault, uint64_t delay_draw,
                          uint64_t abort_draw) {
  FaultDecision d;
  if (fault.delay && Chance(fault.delay->percentage, delay_draw)) {
    d.delay_ms = fault.delay->fixed_delay_ms;
  }
  if (fault.abort && Chance(fault.abort->percentage, abort_draw)) {
    d.abort_http_status = fault.abort->http_status;
    d.abort_grpc_status = fault.abort->http_status == 0 ? fault.abort->grpc_status : -1;
  }
  return d;
}

}  // namespace weft::ztunnel::traffic
