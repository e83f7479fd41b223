// The outbound path (ztunnel's proxy/outbound.rs): connections a pod's application opened,
// captured on 15001. Each is resolved once against the config snapshot (a Service VIP to one of
// its ready endpoints, else a known workload, else passthrough) and sent down one path: to a
// meshed workload over HBONE (or the same-node fast path, fastpath.h), to anything else as
// plain TCP, or refused. One per worker; loop thread only.
#pragma once

#include <memory>
#include <random>
#include <string>

#include "absl/status/statusor.h"
#include "common/net.h"
#include "common/unique_fd.h"
#include "ztunnel/proxy/balancer.h"
#include "ztunnel/proxy/mirror.h"
#include "ztunnel/proxy/upstream_pool.h"
#include "ztunnel/state/snapshot.h"
#include "ztunnel/traffic/router.h"

namespace weft::ztunnel {

class Worker;
struct FlowInfo;
struct Pod;

class Outbound {
 public:
  explicit Outbound(Worker* w);

  void OnAccept(const std::shared_ptr<Pod>& pod, UniqueFd fd);  // accepted on 15001
  // The path of a connection to `orig`. `http`: a Service port declared HTTP is terminated
  // here (HttpOutbound, http_outbound.h); false keeps it L4 (HttpOutbound's fallback).
  void Dispatch(const std::shared_ptr<Pod>& pod, UniqueFd fd, const SockAddr& orig, bool http);

  // HttpOutbound's upstream connections: a socketpair whose other end becomes the client socket
  // of an ordinary flow from `src` to endpoint `dst` (HBONE, same-node fast path, or plain TCP
  // outside the mesh) described by `info` (the source record, info.dst the endpoint).
  // *same_node (if given): the same-node fast path took it, so no destination ztunnel parses its
  // requests and the caller reports them for the destination too.
  absl::StatusOr<UniqueFd> OpenUpstream(const std::shared_ptr<Pod>& pod, const ConfigSnapshot& snap,
                                        const Workload& src, const Workload& dst, FlowInfo&& info,
                                        bool* same_node = nullptr);
  Balancer& balancer() { return balancer_; }                // this worker's view of endpoint costs
  UpstreamPool& upstream_pool() { return upstream_pool_; }  // idle HTTP/1.1 upstreams
  H2UpstreamPool& h2_pool() { return h2_pool_; }            // shared HTTP/2 upstreams
  std::string RandomHex(size_t digits);                     // trace and span ids (never all zero)
  std::string NewUuid();                                    // x-request-id: a version 4 UUID
  uint64_t Draw() { return rng_(); }                        // a random number (traffic plans)
  // RequestMirror's copies of HTTP/2 requests in flight (mirror.h).
  MirrorSender& mirrors() { return mirrors_; }
  // The route tables of `snap` (issue 15), compiled once per snapshot on this worker.
  const traffic::Router& RouterFor(const SnapshotPtr& snap);

 private:
  // Where a connection goes: the per-connection protocol decision. L7 (HTTP to a waypoint or
  // an HTTP-aware destination) adds its path here and a case in OnAccept.
  enum class Path {
    kMesh,         // a meshed workload: same-node fast path, else HBONE
    kPassthrough,  // not meshed, or unknown: plain TCP from the pod's netns
    kRefuse,       // counted and reset (why: Route::refusal)
  };
  struct Route {
    Path path = Path::kPassthrough;
    const Workload* dst = nullptr;  // the chosen workload, if known
    SockAddr target;                // where to connect: the endpoint for a Service VIP
    std::string refusal;
  };
  Route Resolve(const ConfigSnapshot& snap, const Pod& pod, const SockAddr& orig, FlowInfo& info);
  Route ResolveService(const ConfigSnapshot& snap, const Service& svc, const SockAddr& orig,
                       FlowInfo& info);
  // True if the same-node fast path took it (else HBONE).
  bool ToMesh(const std::shared_ptr<Pod>& pod, const ConfigSnapshot& snap, const Workload& src,
              const Workload& dst, FlowInfo&& info, UniqueFd fd);
  // `joined`: fd is in weft_local_legs (JoinLocalLeg): the tunnel reads it to EAGAIN.
  void ToHbone(const std::shared_ptr<Pod>& pod, const Workload& src, const Workload& dst,
               FlowInfo&& info, UniqueFd fd, bool joined = false);
  void Passthrough(const Pod& pod, const Workload& src, const Workload* dst, FlowInfo&& info,
                   UniqueFd fd);

  Worker* w_;
  Balancer balancer_;
  UpstreamPool upstream_pool_;
  H2UpstreamPool h2_pool_;
  MirrorSender mirrors_;
  std::mt19937_64 rng_{std::random_device{}()};
  SnapshotPtr router_snap_;  // the snapshot router_ was built from
  std::shared_ptr<const traffic::Router> router_;
};

// The address of `w` in the same family as `like`, else its first (`w` has an address).
IpAddr AddressLike(const Workload& w, const IpAddr& like);

}  // namespace weft::ztunnel
