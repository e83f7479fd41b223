// libFuzzer target for HTTP routes (issue 15): route compilation and the route matcher.
// Input: records (records.h). The first is a ConfigSnapshot as binary protobuf (its http_routes
// and traffic_policies go through HttpRouteFromProto/TrafficPolicyFromProto, compiling every
// regex); each following record is one request: lines "method", "path?query", "authority",
// "client namespace", then "name: value" headers, with the record's flags choosing the port.
// Every request is routed for every parent Service of the snapshot and, when a rule matches, its
// filters, backend choice, retry and fault logic run. Checked: the winning match really matches
// the request, belongs to a route of that Service that applies to the port and client, and the
// filters produce well-formed paths.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "google/protobuf/stubs/logging.h"
#include "tests/fuzz/records.h"
#include "ztunnel/traffic/fault.h"
#include "ztunnel/traffic/filters.h"
#include "ztunnel/traffic/retry.h"
#include "ztunnel/traffic/router.h"

namespace {

using namespace weft::ztunnel;           // NOLINT
using namespace weft::ztunnel::traffic;  // NOLINT

struct FuzzRequest {
  std::string method, path, authority, client_ns;
  Headers headers;
  uint16_t port = 80;
};

FuzzRequest ParseRequest(const weft::fuzz::Record& r) {
  FuzzRequest q;
  std::vector<std::string> lines =
      absl::StrSplit(absl::string_view(r.payload.data(), r.payload.size()), '\n');
  lines.resize(std::max<size_t>(lines.size(), 4));
  q.method = lines[0];
  q.path = lines[1];
  q.authority = lines[2];
  q.client_ns = lines[3];
  for (size_t i = 4; i < lines.size() && i < 64; ++i) {
    size_t colon = lines[i].find(':');
    std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
    std::string value = colon == std::string::npos ? "" : lines[i].substr(colon + 1);
    q.headers.emplace_back(std::move(name), std::string(absl::StripLeadingAsciiWhitespace(value)));
  }
  static constexpr uint16_t kPorts[] = {80, 8080, 9080, 443};
  q.port = kPorts[r.flags % 4];
  return q;
}

// The selection must be one a route of `service` can make for this request.
void CheckSelection(const RouteSelection& s, std::string_view service, const FuzzRequest& q) {
  if (s.kind != RouteSelection::Kind::kMatched) return;
  WEFT_CHECK(s.route != nullptr && s.rule != nullptr && s.match != nullptr);
  WEFT_CHECK(s.route->parent_service == service);
  WEFT_CHECK(s.route->parent_port == 0 || s.route->parent_port == q.port);
  WEFT_CHECK(!s.route->is_consumer() || s.route->ns == q.client_ns);
  WEFT_CHECK(s.rule_index < s.route->rules.size() && &s.route->rules[s.rule_index] == s.rule);
  std::string_view path = std::string_view(q.path).substr(0, q.path.find('?'));
  WEFT_CHECK(s.match->path.Matches(path));
  WEFT_CHECK(s.match->method.empty() || s.match->method == q.method);
}

void RunFilters(const RouteSelection& s, const FuzzRequest& q, const SnapshotPtr& snap,
                uint64_t draw) {
  if (s.kind != RouteSelection::Kind::kMatched) return;
  Headers h = q.headers;
  if (s.rule->request_headers) ApplyHeaderModifier(*s.rule->request_headers, &h);
  std::string authority = q.authority, path = q.path;
  if (s.rule->rewrite) {
    ApplyUrlRewrite(*s.rule->rewrite, *s.match, &authority, &path);
    WEFT_CHECK(s.rule->rewrite->path.kind == weft::config::HttpPathModifier::Kind::kNone ||
               path.starts_with('/'));
  }
  if (s.rule->redirect) {
    Redirect r = BuildRedirect(*s.rule->redirect, *s.match, "http", q.authority, q.path, q.port);
    WEFT_CHECK(r.location.starts_with("http"));
  }
  BackendChoice b = ChooseBackend(s.rule->backends, draw);
  WEFT_CHECK(b.kind == BackendChoice::Kind::kNoBackend || b.backend->weight > 0);
  for (const auto& m : s.rule->mirrors) (void)ShouldMirror(m, draw);
  const weft::config::TrafficPolicy* policy =
      snap->TrafficPolicyFor(s.route->parent_service, q.port);
  RetrySpec spec = EffectiveRetry(s.rule, policy);
  (void)IsRetriable(spec, AttemptResult{AttemptResult::Kind::kResponse, 503, 14});
  WEFT_CHECK(BackoffMs(spec, 1 + draw % 40, draw) <= spec.backoff_max_ms);
  if (policy != nullptr) {
    if (const auto* f = FaultFor(*policy, s.route->key(), s.rule->name)) {
      (void)DecideFault(*f, draw, ~draw);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // "invalid UTF-8" parse errors are expected here
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<weft::fuzz::Record> records = weft::fuzz::SplitRecords(data, size, 32);
  if (records.empty()) return 0;
  weft::config::v1::ConfigSnapshot pb;
  if (!pb.ParseFromArray(records[0].payload.data(), static_cast<int>(records[0].payload.size()))) {
    return 0;
  }
  auto snap = ConfigSnapshot::FromProto(pb);
  if (!snap.ok()) {
    WEFT_CHECK(snap.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  auto router = Router::Build(*snap);
  std::vector<std::string> services;
  for (const auto& r : (*snap)->http_routes()) {
    if (services.size() < 4 &&
        std::find(services.begin(), services.end(), r.parent_service) == services.end()) {
      services.push_back(r.parent_service);
    }
  }
  for (size_t i = 1; i < records.size(); ++i) {
    FuzzRequest q = ParseRequest(records[i]);
    RouteRequest req{q.client_ns, q.method, q.path, q.authority, &q.headers};
    for (const std::string& svc : services) {
      RouteSelection s = router->Select(svc, q.port, req);
      CheckSelection(s, svc, q);
      RunFilters(s, q, *snap, i * 0x9e3779b97f4a7c15ull + size);
    }
  }
  return 0;
}
