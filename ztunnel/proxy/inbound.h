// The inbound paths (ztunnel's proxy/inbound.rs and inbound_passthrough.rs): connections to a
// pod's own workload. 15006 takes plaintext (PeerAuthentication and L4 policy with the peer's
// address only), 15008 takes HBONE connections whose CONNECT streams are authorized with the
// peer's verified identity. Every authorized inbound flow is tracked, so a policy change
// re-authorizes it. One per worker; loop thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "common/net.h"
#include "common/unique_fd.h"
#include "ztunnel/metrics/metrics.h"
#include "ztunnel/proxy/hbone.h"
#include "ztunnel/rbac/authorizer.h"
#include "ztunnel/state/snapshot.h"

namespace weft::ztunnel {

class Worker;
class Flow;
class HboneConn;
class HttpInbound;
struct FlowInfo;
struct Pod;

class Inbound {
 public:
  explicit Inbound(Worker* w) : w_(w) {}

  void OnPlaintext(const std::shared_ptr<Pod>& pod, UniqueFd fd);  // accepted on 15006
  void OnHbone(const std::shared_ptr<Pod>& pod, UniqueFd fd);      // accepted on 15008
  // A CONNECT request on an HBONE server connection: authorize it and connect the application.
  void OnConnect(HboneConn& c, int32_t sid, const HeaderList& headers);

  // Open flows that authorization admitted (FlowInfo::authz set).
  void Track(Flow* f) { open_.insert(f); }
  void Untrack(Flow* f) { open_.erase(f); }
  // Re-authorizes every tracked flow against `snap` and aborts the denied ones.
  void Reevaluate(const SnapshotPtr& snap);

 private:
  // The application leg of an authorized CONNECT stream (`http`: L7, per request).
  void ConnectApp(HboneConn& c, int32_t sid, FlowInfo info, std::unique_ptr<HttpInbound> http);

  Worker* w_;
  absl::flat_hash_set<Flow*> open_;
};

// True if `port` is one of ztunnel's own ports in `pod`'s netns: 15001, 15006, 15008 or a
// port one of the pod's listeners is bound to. Traffic for a pod is never relayed to them:
// a CONNECT (or a captured connection) to podIP:15008 would open a second session from
// inside the pod, whose source is the pod itself (defeats ipBlocks, source.ip, NetworkPolicy).
bool IsZtunnelPort(const Pod& pod, uint16_t port);

// Authorizes `ci` as `dst`'s ztunnel does for an authenticated peer: counts and logs a denial
// (`src`/`dst_addr` for the log; `security` added to it when set), logs AUDIT and dry-run
// results. Shared by the HBONE server and the same-node fast path.
AuthzDecision AuthorizeAsDestination(Metrics& metrics, const ConfigSnapshot& snap,
                                     const Workload& dst, const ConnectionInfo& ci,
                                     const SockAddr& src, const char* security = nullptr);

}  // namespace weft::ztunnel
