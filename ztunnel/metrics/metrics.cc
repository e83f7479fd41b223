#include "ztunnel/metrics/metrics.h"

#include <dirent.h>
#include <netinet/in.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <functional>
#include <optional>
#include <utility>

#include "common/admin/scrape_time_registry.h"

#ifndef WEFT_VERSION
#error "WEFT_VERSION must be defined by the build (CMake passes PROJECT_VERSION)"
#endif

namespace weft::ztunnel {
namespace {

using prometheus::Labels;

// prometheus-cpp 1.0.1 exposes a family under exactly the name it was registered with (it adds
// no _total suffix), so the Istio names are spelled out in full here.
constexpr const char* kOpened = "istio_tcp_connections_opened_total";
constexpr const char* kClosed = "istio_tcp_connections_closed_total";
constexpr const char* kSent = "istio_tcp_sent_bytes_total";
constexpr const char* kReceived = "istio_tcp_received_bytes_total";

prometheus::Family<prometheus::Counter>* Counter(prometheus::Registry& r, const std::string& name,
                                                 const std::string& help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(r);
}

prometheus::Family<prometheus::Gauge>* Gauge(prometheus::Registry& r, const std::string& name,
                                             const std::string& help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(r);
}

// Field order here is also the cache key order; keep the two in one place.
template <typename F>
void ForEachLabel(const TcpLabels& l, F&& f) {
  f("reporter", l.reporter);
  f("source_workload", l.source_workload);
  f("source_workload_namespace", l.source_workload_namespace);
  f("source_principal", l.source_principal);
  f("source_app", l.source_app);
  f("source_version", l.source_version);
  f("source_cluster", l.source_cluster);
  f("destination_workload", l.destination_workload);
  f("destination_workload_namespace", l.destination_workload_namespace);
  f("destination_principal", l.destination_principal);
  f("destination_app", l.destination_app);
  f("destination_version", l.destination_version);
  f("destination_service", l.destination_service);
  f("destination_service_name", l.destination_service_name);
  f("destination_service_namespace", l.destination_service_namespace);
  f("destination_cluster", l.destination_cluster);
  f("request_protocol", l.request_protocol);
  f("response_flags", l.response_flags);
  f("connection_security_policy", l.connection_security_policy);
}

// The duration histogram's labels: enough for per-workload golden signals, few enough that the
// bucket series stay affordable (principals, apps and versions follow from the workload).
template <typename F>
void ForEachDurationLabel(const TcpLabels& l, F&& f) {
  f("reporter", l.reporter);
  f("source_workload", l.source_workload);
  f("source_workload_namespace", l.source_workload_namespace);
  f("destination_workload", l.destination_workload);
  f("destination_workload_namespace", l.destination_workload_namespace);
  f("destination_service", l.destination_service);
  f("connection_security_policy", l.connection_security_policy);
  f("response_flags", l.response_flags);
}

// Connection lifetimes: from sub-millisecond request/response connections to long streams.
const prometheus::Histogram::BucketBoundaries& DurationBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.25,   0.5,     1,      2.5,   5,      10,    30,   60,    300,  1800};
  return kBuckets;
}

// Istio's request histograms (duration in milliseconds, request and response sizes in bytes)
// use Envoy's default buckets: Istio's proxy bootstrap sets histogram_bucket_settings only when
// the sidecar.istio.io/statsHistogramBuckets annotation asks for it
// (istio/istio tools/packaging/common/envoy_bootstrap.json), and Envoy's defaults are
// HistogramSettingsImpl::defaultBuckets() in envoy source/common/stats/histogram_impl.cc.
const std::vector<double> kRequestBuckets = {0.5,   1,      5,      10,      25,     50,    100,
                                             250,   500,    1000,   2500,    5000,   10000, 30000,
                                             60000, 300000, 600000, 1800000, 3600000};

// Length-prefixed so that no two distinct label tuples share a key (values may contain any
// byte, including whatever separator we would pick).
template <typename ForEach>
std::string CacheKey(const TcpLabels& l, ForEach&& for_each) {
  std::string key;
  key.reserve(512);
  for_each(l, [&key](const char*, const std::string& v) {
    key += std::to_string(v.size());
    key += ':';
    key += v;
  });
  return key;
}

std::string CacheKey(const TcpLabels& l) {
  return CacheKey(l, [](const TcpLabels& x, auto&& f) { ForEachLabel(x, f); });
}

prometheus::MetricFamily GaugeFamily(std::string name, std::string help, double value) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = prometheus::MetricType::Gauge;
  prometheus::ClientMetric m;
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
  return f;
}

// TCP connection sockets (IPv4 and IPv6, not listening) among this process's descriptors. A
// descriptor closed (or reused) while we look is counted or not; the next scrape is right.
std::optional<double> OpenTcpSockets() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return std::nullopt;
  const int self = ::dirfd(d);
  int n = 0;
  while (const dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long fd = ::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == self) continue;
    int domain = 0, protocol = 0, listening = 0;
    socklen_t len = sizeof(int);
    if (::getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) continue;
    if (domain != AF_INET && domain != AF_INET6) continue;
    len = sizeof(int);
    if (::getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_PROTOCOL, &protocol, &len) != 0 ||
        protocol != IPPROTO_TCP)
      continue;
    len = sizeof(int);
    if (::getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
        listening != 0)
      continue;
    ++n;
  }
  ::closedir(d);
  return n;
}

}  // namespace

std::string_view Metrics::BuildVersion() {
  return WEFT_VERSION;
}

Metrics::Metrics() : registry_(std::make_shared<ScrapeTimeRegistry>()) {
  auto& r = *registry_;
  tcp_opened_ = Counter(r, kOpened, "The total number of TCP connections opened");
  tcp_closed_ = Counter(r, kClosed, "The total number of TCP connections closed");
  tcp_sent_ =
      Counter(r, kSent, "The size of total bytes sent during request in case of a TCP connection");
  tcp_received_ = Counter(
      r, kReceived, "The size of total bytes received during request in case of a TCP connection");
  duration_ = &prometheus::BuildHistogram()
                   .Name("weft_tcp_connection_duration_seconds")
                   .Help("Lifetime of proxied TCP connections, observed when they close")
                   .Register(r);
  requests_ = Counter(r, "istio_requests_total", "The total number of requests");
  request_duration_ = &prometheus::BuildHistogram()
                           .Name("istio_request_duration_milliseconds")
                           .Help("The duration of requests in milliseconds")
                           .Register(r);
  request_bytes_ = &prometheus::BuildHistogram()
                        .Name("istio_request_bytes")
                        .Help("The size of requests (head and body) in bytes")
                        .Register(r);
  response_bytes_ = &prometheus::BuildHistogram()
                         .Name("istio_response_bytes")
                         .Help("The size of responses (head and body) in bytes")
                         .Register(r);
  handshake_failures_ = Counter(r, "weft_hbone_handshake_failures_total",
                                "HBONE mTLS handshakes that failed, by direction and reason");
  policy_denials_ = Counter(r, "weft_policy_denials_total",
                            "Connections denied by authorization policy, by policy and reason");
  connect_deny_entries_ = &prometheus::BuildGauge()
                               .Name("weft_connect_deny_entries")
                               .Help(
                                   "Entries in the deny-at-connect map (connects this node's "
                                   "pods make that the destination's policy certainly denies)")
                               .Register(r);
  connect_deny_errors_ =
      Counter(r, "weft_connect_deny_errors_total",
              "Deny-at-connect entries left out (full, labels) or map writes that failed (sync)");
  bad_input_ = Counter(r, "weft_bad_input_total",
                       "Malformed or unexpected input rejected, by port/source and kind");
  mirrors_ =
      Counter(r, "weft_http_mirrors_total",
              "Request copies a RequestMirror filter sent, or dropped (counted, not sent); failed: "
              "HTTP/2 copies sent that got no answer (among the sent)");
  retries_ = Counter(r, "weft_http_retries_total",
                     "Retriable attempts of source-side HTTP requests, by what became of them");
  conn_failures_ = Counter(r, "weft_connection_failures_total",
                           "Connections that could not be established, by direction and reason");
  config_loads_ =
      Counter(r, "weft_config_loads_total", "Configuration loads, by result (ok or error)");
  config_version_ =
      Gauge(r, "weft_config_version_info", "The configuration version in use (value is always 1)");
  reevaluation_closed_ = Counter(r, "weft_policy_reevaluation_closed_total",
                                 "Open connections closed because a policy change denied them");
  hbone_refused_ = Counter(r, "weft_hbone_connections_refused_total",
                           "HBONE server connections turned away by a connection limit, by reason");
  hbone_read_paused_ =
      Counter(r, "weft_hbone_read_paused_total",
              "Times an HBONE connection stopped being read: the unread-bytes budget was spent");
  same_node_relay_events_ =
      Counter(r, "weft_same_node_relay_events_total",
              "Work ztunnel does for connected same-node fast-path connections, by relay "
              "(sockmap, splice) and event (wakeup, paused, join_failed)");
  hbone_server_conns_ = Gauge(r, "weft_hbone_server_connections",
                              "Inbound HBONE connections open now, by state (handshaking or "
                              "established)");
  hbone_buffered_ = Gauge(r, "weft_hbone_buffered_bytes",
                          "Bytes received over HBONE that applications have not read yet");
  active_ = Gauge(r, "weft_active_connections", "Proxied connections open now, by direction");
  pool_conns_ = Gauge(r, "weft_hbone_pool_connections", "Open pooled HBONE connections");
  pool_streams_ = Gauge(r, "weft_hbone_pool_streams", "Streams open on pooled HBONE connections");
  enrolled_ = Gauge(r, "weft_enrolled_pods", "Pods whose traffic this ztunnel handles");
  cert_expiry_ = Gauge(r, "weft_cert_expiry_seconds",
                       "Unix time at which each workload certificate expires, by identity");
  build_info_ = Gauge(r, "weft_build_info", "Weft build information (value is always 1)");
  build_info_->Add({{"version", std::string(BuildVersion())}}).Set(1);
  // Istio's name for the same: its ztunnel dashboard shows the versions running by `tag`.
  Gauge(r, "istio_build", "Istio component build info")
      ->Add({{"component", "ztunnel"}, {"tag", std::string(BuildVersion())}})
      .Set(1);
  proxies_pending_ = &Gauge(r, "workload_manager_pending_proxy_count",
                            "Pods handed over to this ztunnel whose proxy is being set up")
                          ->Add({});
  proxies_started_ = &Counter(r, "workload_manager_proxies_started_total",
                              "Pod proxies set up (listeners in the pod's network namespace)")
                          ->Add({});
  proxies_stopped_ =
      &Counter(r, "workload_manager_proxies_stopped_total", "Pod proxies removed")->Add({});
  // The families below are computed at each scrape. `enrolled` belongs to the registry, which
  // is what calls the function: no dangling pointer even if the registry outlives us.
  static_cast<ScrapeTimeRegistry&>(r).extra = [enrolled = &enrolled_->Add({})](
                                                  std::vector<prometheus::MetricFamily>* out) {
    out->push_back(GaugeFamily("workload_manager_active_proxy_count",
                               "Pods whose proxy is running on this ztunnel", enrolled->Value()));
    if (std::optional<double> n = OpenTcpSockets()) {
      out->push_back(GaugeFamily("istio_tcp_sockets_open",
                                 "TCP connection sockets this ztunnel holds open (both sides "
                                 "of proxied connections and HBONE; listeners not counted)",
                                 *n));
    }
  };

  // Unlabelled gauges and counters exist from the start so dashboards show 0, not "no data".
  pool_conns_->Add({});
  pool_streams_->Add({});
  enrolled_->Add({});
  connect_deny_entries_->Add({});
  reevaluation_closed_->Add({});
  hbone_read_paused_->Add({});
  hbone_server_conns_->Add({{"state", "handshaking"}});
  hbone_server_conns_->Add({{"state", "established"}});
  hbone_buffered_->Add({});
  config_loads_->Add({{"result", "ok"}});
  config_loads_->Add({{"result", "error"}});
}

TcpCounters Metrics::ForConnection(const TcpLabels& labels) {
  std::string key = CacheKey(labels);
  std::lock_guard<std::mutex> lock(mu_);
  return TcpSeriesLocked(std::move(key), labels).counters;
}

const TcpCounters* Metrics::ForConnection(SharedLabels& labels) {
  std::string key = CacheKey(*labels);
  std::lock_guard<std::mutex> lock(mu_);
  const TcpSeries& s = TcpSeriesLocked(std::move(key), *labels);
  labels.Share(s.labels);
  return &s.counters;  // a node of tcp_cache_, never erased
}

const Metrics::TcpSeries& Metrics::TcpSeriesLocked(std::string key, const TcpLabels& labels) {
  auto it = tcp_cache_.find(key);
  if (it != tcp_cache_.end()) return it->second;
  Labels l;
  ForEachLabel(labels, [&l](const char* name, const std::string& v) { l.emplace(name, v); });
  TcpCounters c{&tcp_opened_->Add(l), &tcp_closed_->Add(l), &tcp_sent_->Add(l),
                &tcp_received_->Add(l)};
  return tcp_cache_.emplace(std::move(key), TcpSeries{c, std::make_shared<TcpLabels>(labels)})
      .first->second;
}

const std::vector<double>& Metrics::RequestBuckets() {
  return kRequestBuckets;
}

RequestSeries Metrics::ForRequest(const TcpLabels& connection, std::string_view request_protocol,
                                  int response_code, std::string_view grpc_response_status,
                                  std::string_view response_flags) {
  TcpLabels l = connection;
  l.request_protocol = std::string(request_protocol);
  l.response_flags = std::string(response_flags);
  const std::string code = std::to_string(response_code);
  std::string key = CacheKey(l);
  key += code;
  key += ':';
  key += std::to_string(grpc_response_status.size());
  key += ':';
  key.append(grpc_response_status);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = request_cache_.find(key);
  if (it != request_cache_.end()) return it->second;
  Labels labels;
  ForEachLabel(l, [&labels](const char* name, const std::string& v) { labels.emplace(name, v); });
  labels.emplace("response_code", code);
  labels.emplace("grpc_response_status", std::string(grpc_response_status));
  RequestSeries s{&requests_->Add(labels), &request_duration_->Add(labels, kRequestBuckets),
                  &request_bytes_->Add(labels, kRequestBuckets),
                  &response_bytes_->Add(labels, kRequestBuckets)};
  request_cache_.emplace(std::move(key), s);
  return s;
}

void Metrics::ConnectionClosed(const TcpLabels& labels, double seconds) {
  std::string key =
      CacheKey(labels, [](const TcpLabels& x, auto&& f) { ForEachDurationLabel(x, f); });
  prometheus::Histogram* h = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = duration_cache_.find(key);
    if (it == duration_cache_.end()) {
      Labels l;
      ForEachDurationLabel(labels,
                           [&l](const char* name, const std::string& v) { l.emplace(name, v); });
      it = duration_cache_.emplace(std::move(key), &duration_->Add(l, DurationBuckets())).first;
    }
    h = it->second;
  }
  h->Observe(seconds);
}

void Metrics::HandshakeFailure(std::string_view direction, std::string_view reason) {
  handshake_failures_->Add({{"direction", std::string(direction)}, {"reason", std::string(reason)}})
      .Increment();
}

void Metrics::PolicyDenial(std::string_view policy, std::string_view reason) {
  policy_denials_
      ->Add({{"policy", std::string(policy)},
             {"direction", "inbound"},
             {"reason", std::string(reason)}})
      .Increment();
}

void Metrics::SourcePolicyDenials(std::string_view policy, std::string_view reason, uint64_t n) {
  policy_denials_
      ->Add({{"policy", std::string(policy)},
             {"direction", "outbound"},
             {"reason", std::string(reason)}})
      .Increment(static_cast<double>(n));
}

prometheus::Gauge& Metrics::connect_deny_entries() {
  return connect_deny_entries_->Add({});
}

void Metrics::ConnectDenyError(std::string_view reason, uint64_t n) {
  connect_deny_errors_->Add({{"reason", std::string(reason)}}).Increment(static_cast<double>(n));
}

void Metrics::SetBeforeScrape(std::function<void()> fn) {
  static_cast<ScrapeTimeRegistry&>(*registry_).before = std::move(fn);
}

void Metrics::BadInput(std::string_view port, std::string_view kind) {
  bad_input_->Add({{"port", std::string(port)}, {"kind", std::string(kind)}}).Increment();
}

void Metrics::Mirror(std::string_view result) {
  mirrors_->Add({{"result", std::string(result)}}).Increment();
}

void Metrics::Retry(std::string_view result) {
  retries_->Add({{"result", std::string(result)}}).Increment();
}

void Metrics::ConnectionFailure(std::string_view direction, std::string_view reason) {
  conn_failures_->Add({{"direction", std::string(direction)}, {"reason", std::string(reason)}})
      .Increment();
}

void Metrics::ConfigLoad(bool ok, std::string_view version) {
  config_loads_->Add({{"result", ok ? "ok" : "error"}}).Increment();
  if (!ok) return;  // the version in use has not changed
  std::lock_guard<std::mutex> lock(mu_);
  prometheus::Gauge* g = &config_version_->Add({{"version", std::string(version)}});
  g->Set(1);
  // An info metric shows only the current version; the old child would otherwise stay at 1.
  if (config_version_current_ != nullptr && config_version_current_ != g)
    config_version_->Remove(config_version_current_);
  config_version_current_ = g;
}

void Metrics::ReevaluationClosed() {
  reevaluation_closed_->Add({}).Increment();
}

void Metrics::HboneRefused(std::string_view reason) {
  hbone_refused_->Add({{"reason", std::string(reason)}}).Increment();
}

void Metrics::HboneReadPaused() {
  hbone_read_paused_->Add({}).Increment();
}

prometheus::Counter& Metrics::same_node_relay_event(std::string_view relay,
                                                    std::string_view event) {
  return same_node_relay_events_->Add(
      {{"relay", std::string(relay)}, {"event", std::string(event)}});
}

prometheus::Gauge& Metrics::hbone_server_connections(std::string_view state) {
  return hbone_server_conns_->Add({{"state", std::string(state)}});
}

prometheus::Gauge& Metrics::hbone_buffered_bytes() {
  return hbone_buffered_->Add({});
}

prometheus::Gauge& Metrics::active_connections(std::string_view direction) {
  return active_->Add({{"direction", std::string(direction)}});
}

prometheus::Gauge& Metrics::pool_connections() {
  return pool_conns_->Add({});
}
prometheus::Gauge& Metrics::pool_streams() {
  return pool_streams_->Add({});
}
prometheus::Gauge& Metrics::enrolled_pods() {
  return enrolled_->Add({});
}

void Metrics::WorkloadProxyStarting() {
  proxies_pending_->Increment();
}

void Metrics::WorkloadProxyStarted(bool ok) {
  proxies_pending_->Decrement();
  if (ok) proxies_started_->Increment();
}

void Metrics::WorkloadProxyStopped() {
  proxies_stopped_->Increment();
}

prometheus::Gauge& Metrics::cert_expiry(std::string_view identity) {
  return cert_expiry_->Add({{"identity", std::string(identity)}});
}

}  // namespace weft::ztunnel
