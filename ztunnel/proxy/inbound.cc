#include "ztunnel/proxy/inbound.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "ztunnel/capture/capture.h"
#include "ztunnel/l7/app_protocol.h"
#include "ztunnel/proxy/http_inbound.h"
#include "ztunnel/proxy/worker.h"
#include "ztunnel/rbac/request.h"

namespace weft::ztunnel {

AuthzDecision AuthorizeAsDestination(Metrics& metrics, const ConfigSnapshot& snap,
                                     const Workload& dst, const ConnectionInfo& ci,
                                     const SockAddr& src, const char* security) {
  AuthzDecision d = Authorize(snap, dst, ci);
  if (!d.allowed) {
    metrics.PolicyDenial(d.policy, d.policy.empty() ? "no_allow_match" : "deny");
    if (log::Enabled(log::Level::kInfo)) {
      nlohmann::json fields = {{"src", src.ToString()},
                               {"src.identity", ci.src_identity->ToString()},
                               {"dst", ci.dst.ToString()},
                               {"reason", d.reason}};
      if (security) fields["security"] = security;
      log::Write(log::Level::kInfo, "inbound", "connection denied by policy", fields);
    }
    return d;
  }
  for (auto& a : d.audited)
    LOG_INFO("audit", "AUDIT policy matched", {{"policy", a}, {"dst", ci.dst.ToString()}});
  for (auto& r : d.dry_run)
    LOG_INFO("audit", "dry-run policy result", {{"result", r}, {"dst", ci.dst.ToString()}});
  return d;
}

bool IsZtunnelPort(const Pod& pod, uint16_t port) {
  if (port == kOutboundPort || port == kInboundPlaintextPort || port == kInboundHbonePort)
    return true;
  for (const auto* v : {&pod.bound.outbound, &pod.bound.inbound_plain, &pod.bound.hbone}) {
    for (const SockAddr& a : *v)
      if (a.port == port) return true;
  }
  return false;
}

// ---- 15006: plaintext ---------------------------------------------------------------------

namespace {
// Whether a Service selecting `dst` declares `target_port` HTTP (l7::IsHttpPort): such a
// connection is parsed for the destination's request metrics even when no L7 policy applies
// (HttpInbound::Mode::kObserve: bytes that are not HTTP fall back to L4).
bool IsHttpTargetPort(const ConfigSnapshot& snap, const Workload& dst, uint16_t target_port) {
  const Service* svc = snap.ServiceForEndpoint(dst, target_port);
  if (!svc) return false;
  for (const ServicePort& p : svc->ports)
    if (p.target_port == target_port && l7::IsHttpPort(p.app_protocol, p.name)) return true;
  return false;
}

// The destination-side record of a plaintext connection from `peer` to `orig`.
FlowInfo PlaintextRecord(const ConfigSnapshot& snap, const Pod& pod, const Workload& dst,
                         const SockAddr& peer, const SockAddr& orig) {
  return DestinationFlowInfo(snap, pod.uid, dst, snap.FindWorkloadByAddress(peer.ip), std::nullopt,
                             peer, orig, "none");
}

// Why a plaintext connection is refused (PeerAuthentication STRICT, then L4 policy with the
// peer's address only); empty: allowed, and info.authz is set for re-evaluation.
std::string PlaintextDenial(Metrics& metrics, const ConfigSnapshot& snap, const Workload& dst,
                            FlowInfo& info) {
  if (!PlaintextAllowed(snap, dst, info.dst.port)) {
    metrics.PolicyDenial("", "strict_mtls");
    return "plaintext refused: PeerAuthentication STRICT applies to " + dst.ns + "/" + dst.name +
           " port " + std::to_string(info.dst.port);
  }
  ConnectionInfo ci{std::nullopt, info.src.ip, info.dst};
  AuthzDecision d = Authorize(snap, dst, ci);
  info.authz = ci;
  if (d.allowed) return "";
  metrics.PolicyDenial(d.policy, d.policy.empty() ? "no_allow_match" : "deny");
  return d.reason;
}
}  // namespace

void Inbound::OnPlaintext(const std::shared_ptr<Pod>& pod, UniqueFd fd) {
  auto orig = pod->orig_dst->OriginalDst(fd.get());
  if (!orig.ok()) {
    w_->metrics().BadInput("15006", "no_original_dst");
    LOG_WARN("inbound", "plaintext connection without an original destination dropped",
             {{"pod", pod->uid}, {"error", orig.status().ToString()}});
    ResetConnection(fd);
    return;
  }
  auto peer = PeerAddress(fd.get());
  if (IsZtunnelPort(*pod, orig->port)) {
    w_->metrics().BadInput("15006", "connect_to_ztunnel_port");
    LOG_WARN("inbound", "plaintext connection to one of ztunnel's own ports refused",
             {{"pod", pod->uid},
              {"src", peer.ok() ? peer->ToString() : "?"},
              {"dst", orig->ToString()}});
    ResetConnection(fd);
    return;
  }
  auto snap = w_->shared().config->Get();
  const Workload* dst = snap->FindWorkloadByUid(pod->uid);
  if (!dst || !peer.ok()) {
    w_->metrics().ConnectionFailure("inbound", "unknown_destination_pod");
    ResetConnection(fd);
    return;
  }
  FlowInfo info = PlaintextRecord(*snap, *pod, *dst, *peer, *orig);
  if (NeedsHttpAuthorization(*snap, *dst) && PlaintextAllowed(*snap, *dst, orig->port)) {
    // L7: every request is authorized as it arrives (http_inbound.h).
    ConnectionInfo ci{std::nullopt, peer->ip, *orig};
    auto http =
        std::make_unique<HttpInbound>(w_, pod->uid, ci, *info.labels, HttpInbound::Mode::kEnforce);
    StartRelay(*w_, *pod, std::move(info), std::move(fd), nullptr, std::move(http));
    return;
  }
  std::string deny = PlaintextDenial(w_->metrics(), *snap, *dst, info);
  if (!deny.empty()) {
    LOG_INFO("inbound", "plaintext connection denied",
             {{"src", peer->ToString()}, {"dst", orig->ToString()}, {"reason", deny}});
    info.labels.mut().response_flags = "DENY";
    RefuseFlow(*w_, std::move(info), std::move(fd), deny);
    return;
  }
  std::unique_ptr<HttpInbound> http;
  if (IsHttpTargetPort(*snap, *dst, orig->port)) {
    http =
        std::make_unique<HttpInbound>(w_, pod->uid, ConnectionInfo{std::nullopt, peer->ip, *orig},
                                      *info.labels, HttpInbound::Mode::kObserve);
  }
  StartRelay(*w_, *pod, std::move(info), std::move(fd), nullptr, std::move(http));
}

// ---- 15008: HBONE -------------------------------------------------------------------------

void Inbound::OnHbone(const std::shared_ptr<Pod>& pod, UniqueFd fd) {
  auto snap = w_->shared().config->Get();
  const Workload* self = snap->FindWorkloadByUid(pod->uid);
  auto peer = PeerAddress(fd.get());
  if (!self || !peer.ok()) {
    w_->metrics().ConnectionFailure("inbound", "unknown_destination_pod");
    LOG_WARN("inbound", "HBONE connection for a pod not in the config refused",
             {{"pod", pod->uid}});
    ResetConnection(fd);
    return;
  }
  auto ctx = w_->shared().tls->ServerContext(self->identity());
  if (!ctx.ok()) {
    LOG_ERROR("inbound", "no certificate for the pod's identity",
              {{"identity", self->identity().ToString()}, {"error", ctx.status().ToString()}});
    ResetConnection(fd);
    return;
  }
  // Counted before any TLS work: over a limit the connection costs nothing but this reset.
  std::string_view refused = w_->AdmitHbone(peer->ip);
  if (!refused.empty()) {
    w_->metrics().HboneRefused(refused);
    LOG_DEBUG("inbound", "HBONE connection refused by a connection limit",
              {{"peer", peer->ToString()}, {"reason", refused}});
    ResetConnection(fd);
    return;
  }
  HboneConn* c = w_->NewConn(HboneConn::Role::kServer, pod, std::move(fd), *ctx, *peer);
  w_->TrackHandshaking(c);
  if (!c->Start(false).ok()) c->Close("cannot register socket");
}

void Inbound::OnConnect(HboneConn& c, int32_t sid, const HeaderList& headers) {
  const Pod& pod = *c.pod();
  auto reject = [&](int status, std::string_view kind, const std::string& why) {
    w_->metrics().BadInput("15008", kind);
    LOG_WARN("inbound", "HBONE CONNECT rejected",
             {{"peer", c.peer().ToString()}, {"status", status}, {"reason", why}});
    c.SubmitResponse(sid, status, false);
  };
  auto target = ParseConnectRequest(headers);
  if (!target.ok()) {
    reject(StatusForRejection(target.status()), "bad_connect",
           std::string(target.status().message()));
    return;
  }
  if (IsZtunnelPort(pod, target->port)) {
    // Istio's ztunnel refuses these too (its "illegal ports"); 400, not its 503: the request
    // is invalid whatever the state, a retry cannot succeed.
    reject(400, "connect_to_ztunnel_port",
           absl::StrCat("CONNECT target ", target->ToString(),
                        " is one of ztunnel's own ports; a tunnel into ztunnel is refused"));
    return;
  }
  auto snap = w_->shared().config->Get();
  const Workload* dst = snap->FindWorkloadByUid(pod.uid);
  if (!dst) {
    reject(503, "unknown_pod", "pod " + pod.uid + " is not in the config (yet)");
    return;
  }
  bool ours =
      std::find(dst->addresses.begin(), dst->addresses.end(), target->ip) != dst->addresses.end();
  if (!ours) {
    reject(
        400, "connect_foreign_address",
        absl::StrCat("CONNECT target ", target->ToString(), " is not an address of pod ", pod.uid));
    return;
  }
  FlowInfo info =
      DestinationFlowInfo(*snap, pod.uid, *dst, snap->FindWorkloadByAddress(c.peer().ip),
                          c.peer_id(), c.peer(), *target, "mutual_tls");
  ConnectionInfo ci{c.peer_id(), c.peer().ip, *target};
  if (NeedsHttpAuthorization(*snap, *dst)) {
    // L7: every request is authorized as it arrives (http_inbound.h); the flow is not
    // re-authorized as a connection (info.authz stays unset).
    auto http =
        std::make_unique<HttpInbound>(w_, pod.uid, ci, *info.labels, HttpInbound::Mode::kEnforce);
    ConnectApp(c, sid, std::move(info), std::move(http));
    return;
  }
  AuthzDecision d = AuthorizeAsDestination(w_->metrics(), *snap, *dst, ci, c.peer());
  if (!d.allowed) {
    info.labels.mut().response_flags = "DENY";
    c.SubmitResponse(sid, 403, false);
    RefuseFlow(*w_, std::move(info), UniqueFd(), d.reason);
    return;
  }
  info.authz = ci;
  std::unique_ptr<HttpInbound> http;
  if (IsHttpTargetPort(*snap, *dst, target->port)) {
    http =
        std::make_unique<HttpInbound>(w_, pod.uid, ci, *info.labels, HttpInbound::Mode::kObserve);
  }
  ConnectApp(c, sid, std::move(info), std::move(http));
}

void Inbound::ConnectApp(HboneConn& c, int32_t sid, FlowInfo info,
                         std::unique_ptr<HttpInbound> http) {
  // The local legs (docs/fastpath.md): announced before the connect so the app's accepted
  // socket joins at the handshake; ztunnel's joins once connected.
  const std::shared_ptr<Pod>& pod = c.pod();
  std::optional<LocalLegTicket> leg;
  auto fd = ConnectSocket(pod->netns_fd(), info.dst, w_->opts().mark);
  // No capture provider (ztunnel without in-pod capture): no local legs.
  if (fd.ok() && w_->opts().local_legs && pod->orig_dst)
    leg = pod->orig_dst->ExpectLocalLeg(fd->get(), info.dst);
  if (fd.ok()) {
    absl::Status st = BeginConnect(fd->get(), info.dst);
    if (!st.ok()) fd = st;
  }
  if (!fd.ok()) {
    if (leg) pod->orig_dst->ForgetLocalLeg(*leg);
    w_->metrics().ConnectionFailure("inbound", "connect_failed");
    LOG_WARN("inbound", "cannot connect to the application",
             {{"dst", info.dst.ToString()}, {"error", fd.status().ToString()}});
    c.SubmitResponse(sid, 503, false);
    return;
  }
  Tunnel* t = w_->NewFlow<Tunnel>(std::move(info), std::move(*fd), false);
  if (http) t->SetHttp(std::move(http));
  c.AcceptStream(sid, t);
  HboneConn* conn = &c;
  t->on_app_connected = [this, conn, t, sid, pod, leg](int err) {
    if (err != 0) {
      if (leg) pod->orig_dst->ForgetLocalLeg(*leg);
      w_->metrics().ConnectionFailure("inbound", "connect_failed");
      t->info().labels.mut().response_flags = "UF";
      conn->SubmitResponse(sid, 503, false);
      t->Abort(absl::StrCat("connect to application ", t->info().dst.ToString(),
                            " failed: ", std::strerror(err)));
      return;
    }
    if (leg && pod->orig_dst->JoinInboundLeg(t->app_fd(), *leg)) t->AppInLocalLegs();
    t->Begin();
    Track(t);
    conn->SubmitResponse(sid, 200, true);
    t->OnEstablished();
  };
  t->WatchApp();
}

// ---- Policy changes -----------------------------------------------------------------------

void Inbound::Reevaluate(const SnapshotPtr& snap) {
  std::vector<Flow*> flows(open_.begin(), open_.end());
  for (Flow* f : flows) {
    if (!open_.count(f)) continue;  // closed by an earlier Abort in this loop
    auto& info = f->info();
    if (!info.authz) continue;
    const Workload* dst = snap->FindWorkloadByUid(info.pod_uid);
    std::string why;
    if (!dst) {
      why = "destination pod left the config";
    } else if (!info.authz->src_identity && !PlaintextAllowed(*snap, *dst, info.dst.port)) {
      why = "PeerAuthentication is now STRICT";
    } else {
      AuthzDecision d = Authorize(*snap, *dst, *info.authz);
      if (!d.allowed) why = d.reason;
    }
    if (why.empty()) continue;
    w_->metrics().ReevaluationClosed();
    LOG_INFO("inbound", "open connection closed after a policy change",
             {{"src", info.src.ToString()}, {"dst", info.dst.ToString()}, {"reason", why}});
    info.labels.mut().response_flags = "DENY";
    f->Abort("policy changed: " + why);
  }
}

}  // namespace weft::ztunnel
