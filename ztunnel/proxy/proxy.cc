#include "ztunnel/proxy/proxy.h"

#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#include "ztunnel/proxy/worker.h"

namespace weft::ztunnel {

PodListenAddrs DefaultListenAddrs() {
  auto a = [](const char* s) { return *SockAddr::Parse(s); };
  return PodListenAddrs{{a("127.0.0.1:15001"), a("[::1]:15001")},
                        {a("0.0.0.0:15006"), a("[::]:15006")},
                        {a("0.0.0.0:15008"), a("[::]:15008")}};
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
  shared_->limits = std::make_unique<HboneLimits>(shared_->opts.hbone_limits, metrics);
  shared_->traffic_metrics = std::make_unique<TrafficMetrics>(*metrics->registry());
}

Proxy::~Proxy() {
  Stop();
}

absl::Status Proxy::Start() {
  std::lock_guard<std::mutex> lock(shared_->mu);
  if (shared_->started) return absl::OkStatus();
  WEFT_ASSIGN_OR_RETURN(shared_->sockmap_relay, UseSockmapRelay(shared_->opts));
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

std::string_view Proxy::same_node_relay() const {
  return shared_->sockmap_relay ? "sockmap" : "splice";
}

void Proxy::Stop() {
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    if (!shared_->started) return;
    shared_->started = false;
  }
  // Goodbyes first (HTTP/2 clients get a GOAWAY naming the last stream taken, so they know what
  // to retry), each worker's on its own thread, waited for at most 1 s in all.
  std::vector<std::future<void>> said;
  for (auto& w : shared_->workers) {
    auto done = std::make_shared<std::promise<void>>();
    said.push_back(done->get_future());
    Worker* wp = w.get();
    wp->loop().Post([wp, done] {
      wp->ShutdownFlows();
      done->set_value();
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  for (auto& f : said) f.wait_until(deadline);
  for (auto& w : shared_->workers) w->loop().Stop();
  for (auto& t : shared_->threads) t.join();
  std::vector<std::unique_ptr<Worker>> gone;
  {
    std::lock_guard<std::mutex> lock(shared_->mu);  // Reevaluate may still post from elsewhere
    shared_->threads.clear();
    gone.swap(shared_->workers);
  }
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

// Creates `pod`'s listeners of one kind inside its netns (then opts.on_listener), filing them
// in pod.listeners and their bound addresses in *bound.
absl::Status BindListeners(Pod& pod, Pod::Kind kind, const std::vector<SockAddr>& list,
                           uint32_t mark, const PodOptions& opts, std::vector<SockAddr>* bound) {
  for (const auto& a : list) {
    ListenerSpec spec{pod.netns_fd(), a, mark, false};
    errno = 0;
    auto fd = Listen(spec);
    int errno_of_listen = errno;
    if (!fd.ok()) {
      // A pod without IPv6 cannot bind [::]: skip that family, never the whole pod.
      if (!a.ip.IsV4() && (errno_of_listen == EAFNOSUPPORT || errno_of_listen == EADDRNOTAVAIL))
        continue;
      return absl::Status(
          fd.status().code(),
          absl::StrCat("pod ", pod.uid, ": listener ", a.ToString(), ": ", fd.status().message()));
    }
    auto la = LocalAddress(fd->get());
    if (opts.on_listener) {
      absl::Status st = opts.on_listener(kind, la.ok() ? *la : a, fd->get());
      if (!st.ok()) {
        return absl::Status(st.code(), absl::StrCat("pod ", pod.uid, ": listener ", a.ToString(),
                                                    ": ", st.message()));
      }
    }
    bound->push_back(la.ok() ? *la : a);
    pod.listeners.push_back(Pod::Listener{kind, std::move(*fd), la.ok() ? *la : a});
  }
  return absl::OkStatus();
}

// The netns of the socket `fd` is `netns_fd`'s (-1: this thread's).
absl::Status CheckSocketNetns(int fd, int netns_fd) {
  int ns = ::ioctl(fd, SIOCGSKNS);
  if (ns < 0) return ErrnoError(errno, "ioctl(SIOCGSKNS) on a taken-over listener");
  UniqueFd sk(ns);
  UniqueFd self;
  if (netns_fd < 0) {
    int f = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (f < 0) return ErrnoError(errno, "open /proc/thread-self/ns/net");
    self.reset(f);
    netns_fd = f;
  }
  if (!SameNetns(sk.get(), netns_fd))
    return absl::InvalidArgumentError("the taken-over listener is not in the pod's netns");
  return absl::OkStatus();
}

// Files a predecessor's listening sockets (PodOptions::adopt) as the pod's listeners, after
// checking each is a listening TCP socket in the pod's netns; then opts.on_listener.
absl::Status AdoptListeners(Pod& pod, const PodOptions& opts) {
  for (const auto& a : opts.adopt) {
    int accepting = 0, proto = 0;
    socklen_t len = sizeof accepting;
    if (::getsockopt(a.fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || !accepting ||
        ::getsockopt(a.fd, SOL_SOCKET, SO_PROTOCOL, &proto, &(len = sizeof proto)) != 0 ||
        proto != IPPROTO_TCP)
      return absl::InvalidArgumentError(
          absl::StrCat("pod ", pod.uid, ": a taken-over descriptor is not a listening TCP socket"));
    WEFT_RETURN_IF_ERROR(CheckSocketNetns(a.fd, pod.netns_fd()));
    int dup = ::fcntl(a.fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) return ErrnoError(errno, "dup a taken-over listener");
    UniqueFd fd(dup);
    WEFT_RETURN_IF_ERROR(SetNonBlocking(fd.get()));
    SetListenerOptions(fd.get());  // a predecessor of another version may not have set them
    WEFT_ASSIGN_OR_RETURN(SockAddr la, LocalAddress(fd.get()));
    if (opts.on_listener) {
      absl::Status st = opts.on_listener(a.kind, la, fd.get());
      if (!st.ok())
        return absl::Status(st.code(), absl::StrCat("pod ", pod.uid, ": listener ", la.ToString(),
                                                    ": ", st.message()));
    }
    auto& bound = a.kind == ListenerKind::kOutbound       ? pod.bound.outbound
                  : a.kind == ListenerKind::kInboundPlain ? pod.bound.inbound_plain
                                                          : pod.bound.hbone;
    bound.push_back(la);
    pod.listeners.push_back(Pod::Listener{a.kind, std::move(fd), la});
  }
  return absl::OkStatus();
}
}  // namespace

absl::Status Proxy::AddPod(const std::string& uid, UniqueFd netns, const PodOptions& opts) {
  const PodListenAddrs& addrs = opts.addrs;
  const uint32_t mark = shared_->opts.mark;
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
  if (!opts.adopt.empty()) {
    WEFT_RETURN_IF_ERROR(AdoptListeners(*pod, opts));
  } else {
    WEFT_RETURN_IF_ERROR(BindListeners(*pod, Pod::Kind::kOutbound, addrs.outbound, mark, opts,
                                       &pod->bound.outbound));
    WEFT_RETURN_IF_ERROR(BindListeners(*pod, Pod::Kind::kInboundPlain, addrs.inbound_plain, mark,
                                       opts, &pod->bound.inbound_plain));
    WEFT_RETURN_IF_ERROR(
        BindListeners(*pod, Pod::Kind::kHbone, addrs.hbone, mark, opts, &pod->bound.hbone));
  }
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

std::vector<HeldPod> Proxy::HeldPods() const {
  std::lock_guard<std::mutex> lock(shared_->mu);
  std::vector<HeldPod> out;
  for (const auto& [uid, pod] : shared_->pods) {
    HeldPod h;
    h.uid = uid;
    h.netns = pod->netns_fd();
    for (const auto& l : pod->listeners)
      if (l.fd.valid()) h.listeners.push_back({l.kind, l.fd.get()});
    h.keep = pod;
    out.push_back(std::move(h));
  }
  return out;
}

namespace {
// Runs `fn` on every worker's loop and waits until all did.
void OnEveryWorker(Proxy::Shared& shared, const std::function<void(Worker&)>& fn) {
  std::vector<std::future<void>> done;
  {
    std::lock_guard<std::mutex> lock(shared.mu);
    for (auto& w : shared.workers) {
      auto p = std::make_shared<std::promise<void>>();
      done.push_back(p->get_future());
      Worker* wp = w.get();
      wp->loop().Post([wp, p, fn] {
        fn(*wp);
        p->set_value();
      });
    }
  }
  for (auto& f : done) f.wait();
}
}  // namespace

void Proxy::StopAccepting() {
  OnEveryWorker(*shared_, [](Worker& w) { w.StopAccepting(); });
  // No worker watches a listener any more: close this process's descriptors only. shutdown(2)
  // would act on the socket, which the successor serves.
  std::lock_guard<std::mutex> lock(shared_->mu);
  for (auto& [uid, pod] : shared_->pods)
    for (auto& l : pod->listeners) l.fd.reset();
  LOG_INFO("proxy", "stopped accepting; a successor serves the listeners",
           {{"pods", shared_->pods.size()}});
}

size_t Proxy::OpenConnections() {
  std::atomic<size_t> n{0};
  OnEveryWorker(*shared_, [&n](Worker& w) { n += w.flow_count(); });
  return n.load();
}

void Proxy::Reevaluate(const SnapshotPtr& snap) {
  std::lock_guard<std::mutex> lock(shared_->mu);
  for (auto& w : shared_->workers) {
    Worker* wp = w.get();
    wp->loop().Post([wp, snap] { wp->inbound().Reevaluate(snap); });
  }
}

}  // namespace weft::ztunnel
