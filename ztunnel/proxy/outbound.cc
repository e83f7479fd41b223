#include "ztunnel/proxy/outbound.h"

#include <sys/socket.h>

#include <cerrno>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "ztunnel/l7/app_protocol.h"
#include "ztunnel/proxy/fastpath.h"
#include "ztunnel/proxy/http_outbound.h"
#include "ztunnel/proxy/worker.h"

namespace weft::ztunnel {

IpAddr AddressLike(const Workload& w, const IpAddr& like) {
  for (const auto& a : w.addresses)
    if (a.IsV4() == like.IsV4()) return a;
  return w.addresses.front();
}

namespace {
// A Service VIP whose port is declared HTTP, with at least one endpoint to send to (a Service
// without one is refused at L4 as before, with "UH").
bool IsHttpService(const ConfigSnapshot& snap, const SockAddr& orig) {
  const Service* svc = snap.FindServiceByAddress(orig.ip);
  if (!svc) return false;
  const ServicePort* sp = svc->FindPort(orig.port);
  return sp && l7::IsHttpPort(sp->app_protocol, sp->name) && !svc->ready_endpoint_uids.empty();
}

// The source-side record of a connection `src`'s application opened to `orig`.
FlowInfo SourceRecord(const Pod& pod, const Workload& src, int fd, const SockAddr& orig) {
  FlowInfo info;
  info.direction = "outbound";
  info.pod_uid = pod.uid;
  auto peer = PeerAddress(fd);
  info.src = peer.ok() ? *peer : SockAddr{};
  if (info.src.ip.IsLoopback() && !src.addresses.empty()) info.src.ip = src.addresses.front();
  info.dst = orig;
  info.labels.mut().reporter = "source";
  FillSourceLabels(info.labels.mut(), &src, src.identity());
  return info;
}
}  // namespace

Outbound::Outbound(Worker* w)
    : w_(w),
      upstream_pool_(&w->loop()),
      h2_pool_(w, &w->loop()),
      mirrors_(&w->loop(), [w](std::string_view result) { w->metrics().Mirror(result); }) {}

void Outbound::OnAccept(const std::shared_ptr<Pod>& pod, UniqueFd fd) {
  auto orig = pod->orig_dst->OriginalDst(fd.get());
  if (!orig.ok()) {
    w_->metrics().BadInput("15001", "no_original_dst");
    LOG_WARN("outbound", "connection without an original destination dropped",
             {{"pod", pod->uid}, {"error", orig.status().ToString()}});
    ResetConnection(fd);
    return;
  }
  Dispatch(pod, std::move(fd), *orig, /*http=*/true);
}

void Outbound::Dispatch(const std::shared_ptr<Pod>& pod, UniqueFd fd, const SockAddr& orig,
                        bool http) {
  auto snap = w_->shared().config->Get();
  const Workload* src = snap->FindWorkloadByUid(pod->uid);
  if (!src) {
    w_->metrics().ConnectionFailure("outbound", "unknown_source_pod");
    LOG_WARN("outbound", "pod is not in the config; refusing its traffic (fail closed)",
             {{"pod", pod->uid}, {"dst", orig.ToString()}});
    ResetConnection(fd);
    return;
  }
  FlowInfo info = SourceRecord(*pod, *src, fd.get(), orig);
  const bool legs = w_->opts().local_legs;  // the captured app socket may be in the map
  if (http && IsHttpService(*snap, orig)) {
    if (legs) pod->orig_dst->ReleaseLocalLeg(fd.get());  // read level-triggered, may relay L4
    FillServiceLabels(info.labels.mut(), snap->FindServiceByAddress(orig.ip));
    HttpOutbound* h = w_->NewFlow<HttpOutbound>(std::move(info), std::move(fd), pod, orig);
    h->Start();
    return;
  }
  Route route = Resolve(*snap, *pod, orig, info);
  switch (route.path) {
    case Path::kMesh:
      // Leaving the node over HBONE: the app's socket and ours move messages socket to socket
      // (the tunnel reads ours with recv). A same-node destination takes the fast path, which
      // relays or splices our socket: the app's end leaves the map.
      if (legs && !(w_->opts().same_node_fast_path && w_->FindPod(route.dst->uid))) {
        FillDestinationLabels(info.labels.mut(), route.dst, route.dst->identity());
        const bool joined = pod->orig_dst->JoinLocalLeg(fd.get());
        ToHbone(pod, *src, *route.dst, std::move(info), std::move(fd), joined);
        return;
      }
      if (legs) pod->orig_dst->ReleaseLocalLeg(fd.get());
      ToMesh(pod, *snap, *src, *route.dst, std::move(info), std::move(fd));
      return;
    case Path::kPassthrough:
      if (legs) pod->orig_dst->ReleaseLocalLeg(fd.get());
      Passthrough(*pod, *src, route.dst, std::move(info), std::move(fd));
      return;
    case Path::kRefuse:
      RefuseFlow(*w_, std::move(info), std::move(fd), route.refusal);
      return;
  }
}

absl::StatusOr<UniqueFd> Outbound::OpenUpstream(const std::shared_ptr<Pod>& pod,
                                                const ConfigSnapshot& snap, const Workload& src,
                                                const Workload& dst, FlowInfo&& info,
                                                bool* same_node) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
    return absl::ErrnoToStatus(errno, "socketpair");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  if (dst.in_mesh()) {
    const bool local = ToMesh(pod, snap, src, dst, std::move(info), std::move(theirs));
    if (same_node) *same_node = local;
  } else {
    Passthrough(*pod, src, &dst, std::move(info), std::move(theirs));
  }
  return ours;
}

const traffic::Router& Outbound::RouterFor(const SnapshotPtr& snap) {
  if (snap != router_snap_ || !router_) {
    router_ = traffic::Router::Build(snap);
    router_snap_ = snap;
  }
  return *router_;
}

std::string Outbound::RandomHex(size_t digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(digits, '0');
  do {
    for (size_t i = 0; i < digits; i += 16) {
      uint64_t r = rng_();
      for (size_t j = i; j < digits && j < i + 16; ++j, r >>= 4) out[j] = kHex[r & 0xf];
    }
  } while (out.find_first_not_of('0') == std::string::npos);
  return out;
}

std::string Outbound::NewUuid() {
  std::string h = RandomHex(32);
  h[12] = '4';                                                           // version 4
  h[16] = "89ab"[std::string_view("0123456789abcdef").find(h[16]) & 3];  // RFC 4122 variant
  // 8-4-4-4-12, in place (one allocation per request, not a dozen temporaries).
  h.reserve(36);
  for (size_t at : {20, 16, 12, 8}) h.insert(h.begin() + static_cast<long>(at), '-');
  return h;
}

Outbound::Route Outbound::Resolve(const ConfigSnapshot& snap, const Pod& pod, const SockAddr& orig,
                                  FlowInfo& info) {
  Route r;
  r.target = orig;
  if (const Service* svc = snap.FindServiceByAddress(orig.ip)) {
    FillServiceLabels(info.labels.mut(), svc);
    r = ResolveService(snap, *svc, orig, info);
    if (r.path == Path::kRefuse) return r;
  } else {
    r.dst = snap.FindWorkloadByAddress(orig.ip);
    if (r.dst) FillServiceLabels(info.labels.mut(), snap.ServiceForEndpoint(*r.dst, orig.port));
  }
  info.dst = r.target;
  if (r.dst && r.dst->in_mesh()) {
    r.path = Path::kMesh;
    return r;
  }
  if (!r.dst && snap.outbound_registry_only()) {
    w_->metrics().PolicyDenial("", "registry_only");
    LOG_INFO("outbound", "destination outside the registry refused (REGISTRY_ONLY)",
             {{"pod", pod.uid}, {"dst", orig.ToString()}});
    info.labels.mut().response_flags = "NR";
    r.path = Path::kRefuse;
    r.refusal = "REGISTRY_ONLY: " + orig.ToString() + " is not a known workload or service";
    return r;
  }
  r.path = Path::kPassthrough;
  return r;
}

// A Service VIP: one of its ready endpoints (round robin across the proxy), at the target port
// of the port asked for; refused when the Service has no such port or no ready endpoint.
Outbound::Route Outbound::ResolveService(const ConfigSnapshot& snap, const Service& svc,
                                         const SockAddr& orig, FlowInfo& info) {
  Route r;
  const ServicePort* sp = svc.FindPort(orig.port);
  std::vector<const Workload*> eps;
  for (const auto& uid : svc.ready_endpoint_uids) {
    const Workload* w = snap.FindWorkloadByUid(uid);
    if (w && w->running && !w->addresses.empty()) eps.push_back(w);
  }
  if (!sp || eps.empty()) {
    w_->metrics().ConnectionFailure("outbound", !sp ? "no_service_port" : "no_ready_endpoint");
    info.labels.mut().response_flags = !sp ? "NR" : "UH";
    r.path = Path::kRefuse;
    r.refusal = !sp ? absl::StrCat("service ", svc.name, ".", svc.ns, " has no port ", orig.port)
                    : absl::StrCat("service ", svc.name, ".", svc.ns, " has no ready endpoint");
    return r;
  }
  r.dst = eps[w_->shared().rr.fetch_add(1, std::memory_order_relaxed) % eps.size()];
  r.target = SockAddr{AddressLike(*r.dst, orig.ip), sp->target_port};
  return r;
}

bool Outbound::ToMesh(const std::shared_ptr<Pod>& pod, const ConfigSnapshot& snap,
                      const Workload& src, const Workload& dst, FlowInfo&& info, UniqueFd fd) {
  FillDestinationLabels(info.labels.mut(), &dst, dst.identity());
  if (w_->opts().same_node_fast_path && TrySameNode(*w_, snap, src, dst, info, fd)) return true;
  ToHbone(pod, src, dst, std::move(info), std::move(fd));
  return false;
}

void Outbound::ToHbone(const std::shared_ptr<Pod>& pod, const Workload& src, const Workload& dst,
                       FlowInfo&& info, UniqueFd fd, bool joined) {
  const ProxyOptions& opts = w_->opts();
  const SockAddr target = info.dst;
  info.labels.mut().connection_security_policy = "mutual_tls";
  PoolKey key{src.identity(), dst.identity(), SockAddr{target.ip, opts.hbone_port}};
  SockAddr dial = opts.dial_override ? opts.dial_override(key.dst_addr) : key.dst_addr;
  info.hbone_target = key.dst_addr;
  Tunnel* t = w_->NewFlow<Tunnel>(std::move(info), std::move(fd), true);
  if (joined) t->AppInLocalLegs();
  t->Begin();
  std::optional<IpAddr> src_ip;
  if (!src.addresses.empty()) src_ip = AddressLike(src, target.ip);
  HboneConn* c = w_->pool().Get(pod, key, dial, src_ip ? &*src_ip : nullptr);
  if (!c) {
    t->info().labels.mut().response_flags = "UF";
    w_->metrics().ConnectionFailure("outbound", "hbone_connect_failed");
    t->Abort("cannot open an HBONE connection to " + key.dst_addr.ToString());
    return;
  }
  t->WatchApp();
  c->AddTunnel(t);
}

// Passthrough: plain TCP from the pod's own netns, marked so capture lets it out.
void Outbound::Passthrough(const Pod& pod, const Workload& src, const Workload* dst,
                           FlowInfo&& info, UniqueFd fd) {
  FillDestinationLabels(info.labels.mut(), dst, std::nullopt);
  info.labels.mut().connection_security_policy = "unknown";
  std::optional<IpAddr> src_ip;
  if (!src.addresses.empty()) src_ip = AddressLike(src, info.dst.ip);
  StartRelay(*w_, pod, std::move(info), std::move(fd), src_ip ? &*src_ip : nullptr);
}

}  // namespace weft::ztunnel
