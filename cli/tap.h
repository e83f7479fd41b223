// `weftctl tap [NS|NS/WORKLOAD]`: the HTTP requests the ztunnels see, live, like `linkerd viz
// tap`: time, source and destination workload and identity, method, authority, path, status,
// latency. Read from each ztunnel's loopback admin endpoint (GET /tap, ztunnel/proxy/tap.h), so
// it can never slow the data path: a ztunnel fills its ring only while someone taps, drops
// rather than waits, and says how many requests it dropped or the tap missed (shown at the end).
// Only requests on connections ztunnel parses as HTTP are seen (L7: a workload with L7 policy).
#pragma once

#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/stat.h"
#include "common/net.h"
#include "common/unique_fd.h"
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

// Reads the ztunnels' tap rings (GET /tap?since=) from their admin endpoints. Not thread-safe.
class TapReader {
 public:
  // Opens each target's network namespace; an error names the node.
  static absl::StatusOr<std::unique_ptr<TapReader>> Open(const std::vector<StatTarget>& targets);
  // The requests seen since the previous call (the first call only finds where "now" is, and
  // returns none), each with "node" set; Unavailable naming the node when one cannot be read.
  absl::StatusOr<std::vector<nlohmann::json>> Poll();
  // Per node, requests the tap missed or ztunnel dropped ("" when none).
  std::string LossSummary() const;

 private:
  TapReader() = default;
  struct Source {
    StatTarget target;
    UniqueFd netns;
    SockAddr addr;
    uint64_t since = 0;
    bool primed = false;
    uint64_t missed = 0, dropped = 0;
  };
  std::vector<Source> sources_;
};

int TapMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace weft::cli
