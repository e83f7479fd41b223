// `weftctl tap [NS|NS/WORKLOAD]`: the HTTP requests the ztunnels see, live, like `linkerd viz
// tap`: time, source and destination workload and identity, method, authority, path, status,
// latency. Read from each ztunnel's loopback admin endpoint (GET /tap, ztunnel/proxy/tap.h), so
// it can never slow the data path: a ztunnel fills its ring only while someone taps, drops
// rather than waits, and says how many requests it dropped or the tap missed (shown at the end).
// Only requests on connections ztunnel parses as HTTP are seen (L7: a workload with L7 policy).
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace weft::cli {

// True when the event's source or destination workload is in `filter` ("" all, "NS",
// "NS/WORKLOAD").
bool TapMatches(const nlohmann::json& event, const std::string& filter);
// One line per request, e.g.
//   03:51:02.123 shop/frontend -> shop/store POST store.shop:80 /orders 200 1.2ms
//       src=spiffe://cluster.local/ns/shop/sa/frontend (node1)
// ("(ztunnel)" after the status when ztunnel answered itself, e.g. an RBAC 403).
std::string FormatTapEvent(const nlohmann::json& event, const std::string& node);

int TapMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace weft::cli
