// Fault injection (issue 15, TrafficPolicy.faultInjection): which fault applies to a request and
// whether this request is delayed and/or aborted. Pure functions; randomness comes in as uniform
// 64-bit draws. Response flags: "DI" for an injected delay, "FI" for an injected abort.
#pragma once

#include <cstdint>
#include <string_view>

#include "config/model/types.h"

namespace weft::ztunnel::traffic {

// The fault for a request that took rule `rule_name` of route "<namespace>/<name>" `route_key`
// (both empty when no route applied): routeFaultInjection["<route>#<rule>"], else
// routeFaultInjection["<route>"], else the policy's faultInjection; nullptr for none.
const config::FaultInjection* FaultFor(const config::TrafficPolicy& policy,
                                       std::string_view route_key, std::string_view rule_name);

struct FaultDecision {
  uint64_t delay_ms = 0;           // 0: no delay
  uint16_t abort_http_status = 0;  // 0: no HTTP abort
  int32_t abort_grpc_status = -1;  // -1: no gRPC abort (answer 200 with this grpc-status)
  bool delayed() const { return delay_ms != 0; }
  bool aborted() const { return abort_http_status != 0 || abort_grpc_status != -1; }
};

// Envoy's order: the delay (if drawn) happens first, then the abort (if drawn); both can apply.
FaultDecision DecideFault(const config::FaultInjection& fault, uint64_t delay_draw,
                          uint64_t abort_draw);

}  // namespace weft::ztunnel::traffic
