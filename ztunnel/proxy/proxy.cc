#include "ztunnel/proxy/proxy.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#include "ztunnel/proxy/internal.h"

namespace weft::ztunnel {

PodListenAddrs DefaultListenAddrs() {
  auto a = [](const char* s) { return *SockAddr::Parse(s); };
  return PodListenAddrs{{a("127.0.0.1:15001"), a("[::1]:15001")},
                        {a("0.0.0.0:15006"), a("[::]:15006")},
                        {a("0.0.0.0:15008"), a("[::]:15008")}};
}

// ---- Worker -------------------------------------------------------------------------------

absl::Status Worker::Init() {
  WEFT_RETURN_IF_ERROR(loop_.Init());
  ScheduleTrim();
  return absl::OkStatus();
}

void Worker::ScheduleTrim() {
  loop_.AddTimer(std::chrono::seconds(5), [this] {
    TrimBufferCache();
    ScheduleTrim();
  });
}

void Worker::ListenerHandler::OnEvents(uint32_t) {
  for (int i = 0; i < 64; i++) {
    int c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
        LOG_WARN("proxy", "accept failed", {{"pod", pod->uid}, {"error", std::strerror(errno)}});
      return;
    }
    w->OnAccept(pod, kind, UniqueFd(c));
  }
}

void Worker::AddPod(std::shared_ptr<Pod> pod) {
  PodState st;
  st.pod = pod;
  for (auto& l : pod->listeners) {
    auto h = std::make_unique<ListenerHandler>();
    h->w = this;
    h->pod = pod;
    h->kind = l.kind;
    h->fd = l.fd.get();
    auto s = loop_.Add(l.fd.get(), EPOLLIN | EPOLLEXCLUSIVE, h.get());
    if (!s.ok()) LOG_ERROR("proxy", "cannot watch listener", {{"error", s.ToString()}});
    st.listeners.push_back(std::move(h));
  }
  RemovePod(pod->uid);
  pods_[pod->uid] = std::move(st);
}

void Worker::RemovePod(const std::string& uid) {
  auto it = pods_.find(uid);
  if (it == pods_.end()) return;
  for (auto& h : it->second.listeners) loop_.Remove(h->fd);
  pods_.erase(it);
}

Tunnel* Worker::NewTunnel(FlowInfo info, UniqueFd app, bool outbound) {
  auto t = std::make_unique<Tunnel>(this, std::move(info), std::move(app), outbound);
  Tunnel* p = t.get();
  flows_[p] = std::move(t);
  return p;
}

void Worker::ReleaseFlow(Flow* f) {
  auto it = flows_.find(f);
  if (it == flows_.end()) return;
  inbound_.erase(f);
  loop_.DeferDelete(std::move(it->second));
  flows_.erase(it);
}

HboneConn* Worker::NewConn(HboneConn::Role role, std::shared_ptr<Pod> pod, UniqueFd fd,
                           std::shared_ptr<SSL_CTX> ctx, SockAddr peer) {
  auto c =
      std::make_unique<HboneConn>(this, role, std::move(pod), std::move(fd), std::move(ctx), peer);
  HboneConn* p = c.get();
  conns_[p] = std::move(c);
  return p;
}

void Worker::ReleaseConn(HboneConn* c) {
  auto it = conns_.find(c);
  if (it == conns_.end()) return;
  loop_.DeferDelete(std::move(it->second));
  conns_.erase(it);
}

void Worker::PoolRemove(HboneConn* c) {
  for (auto& [uid, pool] : pools_) {
    auto it = pool.find(c->key);
    if (it == pool.end()) continue;
    auto& v = it->second;
    v.erase(std::remove(v.begin(), v.end(), c), v.end());
    if (v.empty()) pool.erase(it);
  }
}

HboneConn* Worker::PoolGet(const std::shared_ptr<Pod>& pod, const PoolKey& key,
                           const SockAddr& dial, const IpAddr* src_ip) {
  auto& v = pools_[pod->uid][key];
  for (HboneConn* c : v)
    if (c->CanTakeStream()) return c;
  auto ctx = shared_->tls->ClientContext(key.src);
  if (!ctx.ok()) {
    LOG_ERROR("outbound", "no certificate for the source identity",
              {{"identity", key.src.ToString()}, {"error", ctx.status().ToString()}});
    return nullptr;
  }
  auto fd = StartConnect(pod->netns_fd(), dial, opts().mark, src_ip);
  if (!fd.ok()) {
    LOG_WARN("outbound", "cannot open HBONE connection",
             {{"dst", dial.ToString()}, {"error", fd.status().ToString()}});
    return nullptr;
  }
  HboneConn* c = NewConn(HboneConn::Role::kClient, pod, std::move(*fd), *ctx, dial);
  c->key = key;
  if (!c->Start(true).ok()) {
    c->Close("cannot register socket");
    return nullptr;
  }
  v.push_back(c);
  return c;
}

void Worker::OnAccept(const std::shared_ptr<Pod>& pod, Pod::Kind kind, UniqueFd fd) {
  switch (kind) {
    case Pod::Kind::kOutbound:
      HandleOutbound(pod, std::move(fd));
      break;
    case Pod::Kind::kInboundPlain:
      HandleInboundPlain(pod, std::move(fd));
      break;
    case Pod::Kind::kHbone:
      HandleHbone(pod, std::move(fd));
      break;
  }
}

namespace {
// Picks the address of `w` in the same family as `like`, else its first.
IpAddr AddressLike(const Workload& w, const IpAddr& like) {
  for (const auto& a : w.addresses)
    if (a.IsV4() == like.IsV4()) return a;
  return w.addresses.front();
}

void Reset(UniqueFd& fd) {
  SetResetOnClose(fd.get());
  fd.reset();
}
}  // namespace

void Worker::HandleOutbound(const std::shared_ptr<Pod>& pod, UniqueFd fd) {
  auto orig = pod->orig_dst->OriginalDst(fd.get());
  if (!orig.ok()) {
    metrics().BadInput("15001", "no_original_dst");
    LOG_WARN("outbound", "connection without an original destination dropped",
             {{"pod", pod->uid}, {"error", orig.status().ToString()}});
    Reset(fd);
    return;
  }
  auto snap = shared_->config->Get();
  const Workload* src = snap->FindWorkloadByUid(pod->uid);
  if (!src) {
    metrics().ConnectionFailure("outbound", "unknown_source_pod");
    LOG_WARN("outbound", "pod is not in the config; refusing its traffic (fail closed)",
             {{"pod", pod->uid}, {"dst", orig->ToString()}});
    Reset(fd);
    return;
  }
  FlowInfo info;
  info.direction = "outbound";
  info.pod_uid = pod->uid;
  auto peer = PeerAddress(fd.get());
  info.src = peer.ok() ? *peer : SockAddr{};
  if (info.src.ip.IsLoopback() && !src->addresses.empty()) info.src.ip = src->addresses.front();
  info.dst = *orig;
  info.labels.reporter = "source";
  FillSourceLabels(info.labels, src, src->identity());

  // Resolve: a Service VIP goes to one of its ready endpoints; otherwise a known workload; else
  // passthrough.
  SockAddr target = *orig;
  const Workload* dst = nullptr;
  if (const Service* svc = snap->FindServiceByAddress(orig->ip)) {
    FillServiceLabels(info.labels, svc);
    const ServicePort* sp = svc->FindPort(orig->port);
    std::vector<const Workload*> eps;
    for (const auto& uid : svc->ready_endpoint_uids) {
      const Workload* w = snap->FindWorkloadByUid(uid);
      if (w && w->running && !w->addresses.empty()) eps.push_back(w);
    }
    if (!sp || eps.empty()) {
      const char* why = !sp ? "no_service_port" : "no_ready_endpoint";
      metrics().ConnectionFailure("outbound", why);
      info.labels.response_flags = !sp ? "NR" : "UH";
      Refuse(std::move(info), std::move(fd),
             !sp ? absl::StrCat("service ", svc->name, ".", svc->ns, " has no port ", orig->port)
                 : absl::StrCat("service ", svc->name, ".", svc->ns, " has no ready endpoint"));
      return;
    }
    dst = eps[shared_->rr.fetch_add(1, std::memory_order_relaxed) % eps.size()];
    target = SockAddr{AddressLike(*dst, orig->ip), sp->target_port};
  } else {
    dst = snap->FindWorkloadByAddress(orig->ip);
    if (dst) FillServiceLabels(info.labels, snap->ServiceForEndpoint(*dst, orig->port));
  }
  info.dst = target;

  if (dst && dst->in_mesh()) {
    FillDestinationLabels(info.labels, dst, dst->identity());
    if (opts().same_node_fast_path && TrySameNode(*snap, *src, *dst, info, fd)) return;
    info.labels.connection_security_policy = "mutual_tls";
    PoolKey key{src->identity(), dst->identity(), SockAddr{target.ip, opts().hbone_port}};
    SockAddr dial = opts().dial_override ? opts().dial_override(key.dst_addr) : key.dst_addr;
    info.hbone_target = key.dst_addr.ToString();
    Tunnel* t = NewTunnel(std::move(info), std::move(fd), true);
    t->Begin();
    IpAddr src_ip = AddressLike(*src, target.ip);
    HboneConn* c = PoolGet(pod, key, dial, src->addresses.empty() ? nullptr : &src_ip);
    if (!c) {
      t->info().labels.response_flags = "UF";
      metrics().ConnectionFailure("outbound", "hbone_connect_failed");
      t->Abort("cannot open an HBONE connection to " + key.dst_addr.ToString());
      return;
    }
    t->WatchApp();
    c->AddTunnel(t);
    return;
  }

  if (!dst && snap->outbound_registry_only()) {
    metrics().PolicyDenial("", "registry_only");
    LOG_INFO("outbound", "destination outside the registry refused (REGISTRY_ONLY)",
             {{"pod", pod->uid}, {"dst", orig->ToString()}});
    info.labels.response_flags = "NR";
    Refuse(std::move(info), std::move(fd),
           "REGISTRY_ONLY: " + orig->ToString() + " is not a known workload or service");
    return;
  }
  // Passthrough: plain TCP from the pod's own netns, marked so capture lets it out.
  FillDestinationLabels(info.labels, dst, std::nullopt);
  info.labels.connection_security_policy = "unknown";
  std::optional<IpAddr> src_ip;
  if (!src->addresses.empty()) src_ip = AddressLike(*src, target.ip);
  Relay(pod, std::move(info), std::move(fd), src_ip ? &*src_ip : nullptr);
}

void Worker::Relay(const std::shared_ptr<Pod>& pod, FlowInfo info, UniqueFd client,
                   const IpAddr* src_ip) {
  auto up = StartConnect(pod->netns_fd(), info.dst, opts().mark, src_ip);
  if (!up.ok()) {
    metrics().ConnectionFailure(info.direction, "connect_failed");
    LOG_WARN(info.direction, "cannot connect to the destination",
             {{"dst", info.dst.ToString()}, {"error", up.status().ToString()}});
    info.labels.response_flags = "UF";
    Refuse(std::move(info), std::move(client), up.status().ToString());
    return;
  }
  auto r = std::make_unique<PlainRelay>(this, std::move(info), std::move(client), std::move(*up));
  PlainRelay* p = r.get();
  flows_[p] = std::move(r);
  p->Start();
}

void Worker::Refuse(FlowInfo info, UniqueFd client, const std::string& reason) {
  // Counted like Istio counts refused connections (opened + closed, with response_flags),
  // then reset.
  Tunnel* t = NewTunnel(std::move(info), std::move(client), true);
  t->Begin();
  t->Abort(reason);
}

void Worker::HandleInboundPlain(const std::shared_ptr<Pod>& pod, UniqueFd fd) {
  auto orig = pod->orig_dst->OriginalDst(fd.get());
  if (!orig.ok()) {
    metrics().BadInput("15006", "no_original_dst");
    LOG_WARN("inbound", "plaintext connection without an original destination dropped",
             {{"pod", pod->uid}, {"error", orig.status().ToString()}});
    Reset(fd);
    return;
  }
  auto peer = PeerAddress(fd.get());
  auto snap = shared_->config->Get();
  const Workload* dst = snap->FindWorkloadByUid(pod->uid);
  if (!dst || !peer.ok()) {
    metrics().ConnectionFailure("inbound", "unknown_destination_pod");
    Reset(fd);
    return;
  }
  FlowInfo info;
  info.direction = "inbound";
  info.pod_uid = pod->uid;
  info.src = *peer;
  info.dst = *orig;
  info.labels.reporter = "destination";
  info.labels.connection_security_policy = "none";
  FillSourceLabels(info.labels, snap->FindWorkloadByAddress(peer->ip), std::nullopt);
  FillDestinationLabels(info.labels, dst, dst->identity());
  FillServiceLabels(info.labels, snap->ServiceForEndpoint(*dst, orig->port));

  std::string deny;
  std::string policy;
  if (!PlaintextAllowed(*snap, *dst, orig->port)) {
    metrics().PolicyDenial("", "strict_mtls");
    deny = "plaintext refused: PeerAuthentication STRICT applies to " + dst->ns + "/" + dst->name +
           " port " + std::to_string(orig->port);
  } else {
    ConnectionInfo ci{std::nullopt, peer->ip, *orig};
    AuthzDecision d = Authorize(*snap, *dst, ci);
    if (!d.allowed) {
      metrics().PolicyDenial(d.policy, d.policy.empty() ? "no_allow_match" : "deny");
      deny = d.reason;
    }
    info.authz = ci;
  }
  if (!deny.empty()) {
    LOG_INFO("inbound", "plaintext connection denied",
             {{"src", peer->ToString()}, {"dst", orig->ToString()}, {"reason", deny}});
    info.labels.response_flags = "DENY";
    Refuse(std::move(info), std::move(fd), deny);
    return;
  }
  Relay(pod, std::move(info), std::move(fd), nullptr);
}

void Worker::HandleHbone(const std::shared_ptr<Pod>& pod, UniqueFd fd) {
  auto snap = shared_->config->Get();
  const Workload* self = snap->FindWorkloadByUid(pod->uid);
  auto peer = PeerAddress(fd.get());
  if (!self || !peer.ok()) {
    metrics().ConnectionFailure("inbound", "unknown_destination_pod");
    LOG_WARN("inbound", "HBONE connection for a pod not in the config refused",
             {{"pod", pod->uid}});
    Reset(fd);
    return;
  }
  auto ctx = shared_->tls->ServerContext(self->identity());
  if (!ctx.ok()) {
    LOG_ERROR("inbound", "no certificate for the pod's identity",
              {{"identity", self->identity().ToString()}, {"error", ctx.status().ToString()}});
    Reset(fd);
    return;
  }
  HboneConn* c = NewConn(HboneConn::Role::kServer, pod, std::move(fd), *ctx, *peer);
  if (!c->Start(false).ok()) c->Close("cannot register socket");
}

void Worker::Reevaluate(const SnapshotPtr& snap) {
  std::vector<Flow*> flows(inbound_.begin(), inbound_.end());
  for (Flow* f : flows) {
    if (!inbound_.count(f)) continue;  // closed by an earlier Abort in this loop
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
    metrics().ReevaluationClosed();
    LOG_INFO("inbound", "open connection closed after a policy change",
             {{"src", info.src.ToString()}, {"dst", info.dst.ToString()}, {"reason", why}});
    info.labels.response_flags = "DENY";
    f->Abort("policy changed: " + why);
  }
}

// ---- Proxy --------------------------------------------------------------------------------

Proxy::Proxy(ProxyOptions opts, ConfigStore* config, TlsContextCache* tls, Metrics* metrics,
             OrigDstProvider* orig_dst)
    : shared_(std::make_unique<Shared>()) {
  shared_->opts = std::move(opts);
  shared_->config = config;
  shared_->tls = tls;
  shared_->metrics = metrics;
  shared_->orig_dst = orig_dst;
  if (shared_->opts.workers <= 0)
    shared_->opts.workers = std::max(1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)));
}

Proxy::~Proxy() {
  Stop();
}

absl::Status Proxy::Start() {
  std::lock_guard<std::mutex> lock(shared_->mu);
  if (shared_->started) return absl::OkStatus();
  for (int i = 0; i < shared_->opts.workers; i++) {
    auto w = std::make_unique<Worker>(shared_.get(), i);
    WEFT_RETURN_IF_ERROR(w->Init());
    shared_->workers.push_back(std::move(w));
  }
  for (auto& w : shared_->workers) {
    Worker* wp = w.get();
    shared_->threads.emplace_back([wp] {
      pthread_setname_np(pthread_self(), "ztunnel-worker");
      wp->loop().Run();
    });
  }
  shared_->started = true;
  return absl::OkStatus();
}

void Proxy::Stop() {
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    if (!shared_->started) return;
    shared_->started = false;
  }
  for (auto& w : shared_->workers) w->loop().Stop();
  for (auto& t : shared_->threads) t.join();
  shared_->threads.clear();
  shared_->workers.clear();
}

namespace {
void RetireListeners(Proxy::Shared& shared, std::shared_ptr<Pod> old) {
  // Open flows and pooled HBONE connections keep the Pod object (and so its listening fds)
  // alive after the workers stop watching them. A listener nobody accepts on must not stay in
  // the pod's netns: with SO_REUSEPORT the kernel would keep handing it new connections (a
  // re-added pod's fresh listeners would get only some of them) that then hang unaccepted.
  // shutdown() stops listening and resets what is queued; the fds close with the Pod. It runs
  // after every worker's earlier posted tasks (each loop runs its posts in order), i.e. after
  // they all dropped the listeners.
  if (!old) return;
  auto shut = [old] {
    for (const auto& l : old->listeners) ::shutdown(l.fd.get(), SHUT_RDWR);
  };
  if (shared.workers.empty()) {
    shut();
    return;
  }
  auto left = std::make_shared<std::atomic<size_t>>(shared.workers.size());
  for (auto& w : shared.workers) {
    w->loop().Post([left, shut] {
      if (left->fetch_sub(1) == 1) shut();
    });
  }
}
}  // namespace

absl::Status Proxy::AddPod(const std::string& uid, UniqueFd netns, const PodListenAddrs& addrs) {
  PodOptions o;
  o.addrs = addrs;
  return AddPod(uid, std::move(netns), o);
}

namespace {
bool SameNetns(int a, int b) {
  if (a < 0 || b < 0) return a < 0 && b < 0;
  struct stat sa, sb;
  return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

std::string AddrsKey(const PodListenAddrs& a) {
  std::string k;
  for (const auto* v : {&a.outbound, &a.inbound_plain, &a.hbone}) {
    for (const auto& x : *v) absl::StrAppend(&k, x.ToString(), ",");
    k += ";";
  }
  return k;
}
}  // namespace

absl::Status Proxy::AddPod(const std::string& uid, UniqueFd netns, const PodOptions& opts) {
  const PodListenAddrs& addrs = opts.addrs;
  auto pod = std::make_shared<Pod>();
  pod->uid = uid;
  pod->netns = std::move(netns);
  pod->orig_dst = opts.orig_dst ? opts.orig_dst : shared_->orig_dst;
  pod->requested = AddrsKey(addrs);
  // The same pod again (an agent replaying after its restart, a KeepWorkload): keep its
  // listeners. Replacing them would reset connections queued on the old ones (SO_REUSEPORT
  // spreads new connections over old and new until the old close).
  std::shared_ptr<Pod> old;
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    auto it = shared_->pods.find(uid);
    if (it != shared_->pods.end()) old = it->second;
  }
  if (old && old->orig_dst == pod->orig_dst && old->requested == pod->requested &&
      SameNetns(old->netns_fd(), pod->netns_fd())) {
    if (opts.on_listener) {
      for (const auto& l : old->listeners)
        WEFT_RETURN_IF_ERROR(opts.on_listener(l.kind, l.addr, l.fd.get()));
    }
    LOG_DEBUG("proxy", "pod re-added unchanged; listeners kept", {{"pod", uid}});
    return absl::OkStatus();
  }
  auto add = [&](Pod::Kind kind, const std::vector<SockAddr>& list,
                 std::vector<SockAddr>* bound) -> absl::Status {
    for (const auto& a : list) {
      ListenerSpec spec{pod->netns_fd(), a, shared_->opts.mark, false};
      errno = 0;
      auto fd = Listen(spec);
      int errno_of_listen = errno;
      if (!fd.ok()) {
        // A pod without IPv6 cannot bind [::]: skip that family, never the whole pod.
        if (!a.ip.IsV4() && (errno_of_listen == EAFNOSUPPORT || errno_of_listen == EADDRNOTAVAIL))
          continue;
        return absl::Status(
            fd.status().code(),
            absl::StrCat("pod ", uid, ": listener ", a.ToString(), ": ", fd.status().message()));
      }
      auto la = LocalAddress(fd->get());
      if (opts.on_listener) {
        absl::Status st = opts.on_listener(kind, la.ok() ? *la : a, fd->get());
        if (!st.ok()) {
          return absl::Status(st.code(), absl::StrCat("pod ", uid, ": listener ", a.ToString(),
                                                      ": ", st.message()));
        }
      }
      bound->push_back(la.ok() ? *la : a);
      pod->listeners.push_back(Pod::Listener{kind, std::move(*fd), la.ok() ? *la : a});
    }
    return absl::OkStatus();
  };
  WEFT_RETURN_IF_ERROR(add(Pod::Kind::kOutbound, addrs.outbound, &pod->bound.outbound));
  WEFT_RETURN_IF_ERROR(
      add(Pod::Kind::kInboundPlain, addrs.inbound_plain, &pod->bound.inbound_plain));
  WEFT_RETURN_IF_ERROR(add(Pod::Kind::kHbone, addrs.hbone, &pod->bound.hbone));
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    std::shared_ptr<Pod>& slot = shared_->pods[uid];
    std::shared_ptr<Pod> replaced = std::move(slot);
    slot = pod;
    shared_->metrics->enrolled_pods().Set(static_cast<double>(shared_->pods.size()));
    for (auto& w : shared_->workers) {
      Worker* wp = w.get();
      wp->loop().Post([wp, pod] { wp->AddPod(pod); });
    }
    // A changed pod (new netns or addresses): its old listeners go once no worker watches them.
    RetireListeners(*shared_, std::move(replaced));
  }
  LOG_INFO("proxy", "pod added", {{"pod", uid}, {"listeners", pod->listeners.size()}});
  return absl::OkStatus();
}

void Proxy::RemovePod(const std::string& uid) {
  std::lock_guard<std::mutex> lock(shared_->mu);
  auto it = shared_->pods.find(uid);
  if (it == shared_->pods.end()) return;
  std::shared_ptr<Pod> old = std::move(it->second);
  shared_->pods.erase(it);
  shared_->metrics->enrolled_pods().Set(static_cast<double>(shared_->pods.size()));
  for (auto& w : shared_->workers) {
    Worker* wp = w.get();
    wp->loop().Post([wp, uid] { wp->RemovePod(uid); });
  }
  RetireListeners(*shared_, std::move(old));
  LOG_INFO("proxy", "pod removed", {{"pod", uid}});
}

std::optional<PodListenAddrs> Proxy::BoundAddrs(const std::string& uid) const {
  std::lock_guard<std::mutex> lock(shared_->mu);
  auto it = shared_->pods.find(uid);
  if (it == shared_->pods.end()) return std::nullopt;
  return it->second->bound;
}

std::vector<std::string> Proxy::PodUids() const {
  std::lock_guard<std::mutex> lock(shared_->mu);
  std::vector<std::string> out;
  for (auto& [uid, p] : shared_->pods) out.push_back(uid);
  return out;
}

void Proxy::Reevaluate(const SnapshotPtr& snap) {
  std::lock_guard<std::mutex> lock(shared_->mu);
  for (auto& w : shared_->workers) {
    Worker* wp = w.get();
    wp->loop().Post([wp, snap] { wp->Reevaluate(snap); });
  }
}

}  // namespace weft::ztunnel
