// ztunnel's Prometheus metrics. Traffic metrics use Istio's standard names and labels so
// existing dashboards and Kiali work; operational metrics are prefixed weft_.
// All methods are thread-safe. Handles returned by ForConnection are valid for the Metrics
// object's lifetime (TCP children are never removed).
// Also exported: weft_build_info{version} = 1 (the project version weft was built from), and
// Istio's istio_build{component="ztunnel",tag=<that version>} = 1, which Istio's ztunnel
// dashboard reads. weft_config_version_info{version} = 1 exists only for the last successfully
// loaded version.
// Computed at each scrape (registry() renders them): istio_tcp_sockets_open, the TCP connection
// sockets this process holds open now (listeners not counted), and
// workload_manager_active_proxy_count, the pods whose proxy is running (= weft_enrolled_pods).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace weft::ztunnel {

// Istio's TCP metric labels. Unknown values are "unknown" (Istio's convention).
struct TcpLabels {
  std::string reporter;  // "source" | "destination"
  std::string source_workload = "unknown";
  std::string source_workload_namespace = "unknown";
  std::string source_principal = "unknown";
  std::string source_app = "unknown";
  std::string source_version = "unknown";
  std::string source_cluster = "Kubernetes";
  std::string destination_workload = "unknown";
  std::string destination_workload_namespace = "unknown";
  std::string destination_principal = "unknown";
  std::string destination_app = "unknown";
  std::string destination_version = "unknown";
  std::string destination_service = "unknown";  // FQDN
  std::string destination_service_name = "unknown";
  std::string destination_service_namespace = "unknown";
  std::string destination_cluster = "Kubernetes";
  std::string request_protocol = "tcp";
  std::string response_flags = "-";                    // Envoy flags: "-", "UF" (upstream
                                                       // connect failure), "NR" (no route/
                                                       // endpoint), "DENY"? see docs
  std::string connection_security_policy = "unknown";  // "mutual_tls" | "none" | "unknown"
};

// A TcpLabels held by pointer and copied on write. A connection's labels are shared with every
// other connection of the same series once it is counted (Metrics::ForConnection interns them):
// an open connection carries 16 bytes of labels instead of ~600 bytes of strings plus their heap
// (docs/performance.md, memory per idle connection).
class SharedLabels {
 public:
  SharedLabels() : p_(std::make_shared<TcpLabels>()) {}
  const TcpLabels& operator*() const { return *p_; }
  const TcpLabels* operator->() const { return p_.get(); }
  // For writing: a private copy first while shared.
  TcpLabels& mut() {
    if (p_.use_count() != 1) p_ = std::make_shared<TcpLabels>(*p_);
    return const_cast<TcpLabels&>(*p_);  // made non-const by make_shared<TcpLabels> above
  }
  // The same labels, held elsewhere (Metrics::ForConnection's copy).
  void Share(std::shared_ptr<const TcpLabels> same) { p_ = std::move(same); }

 private:
  std::shared_ptr<const TcpLabels> p_;
};

struct TcpCounters {
  prometheus::Counter* opened;
  prometheus::Counter* closed;
  prometheus::Counter* sent;      // bytes sent by the source workload (client -> server)
  prometheus::Counter* received;  // bytes received by the source workload (server -> client)
};

// Istio's request metrics for one series (istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes, istio_response_bytes); valid for the
// Metrics object's lifetime.
struct RequestSeries {
  prometheus::Counter* requests;
  prometheus::Histogram* duration_ms;
  prometheus::Histogram* request_bytes;
  prometheus::Histogram* response_bytes;
};

class Metrics {
 public:
  Metrics();
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // istio_tcp_connections_opened_total / _closed_total / istio_tcp_sent_bytes_total /
  // istio_tcp_received_bytes_total children for this label set (cached lookup).
  TcpCounters ForConnection(const TcpLabels& labels);
  // The same, and `labels` then shares this series' one copy of its labels. The counters stay
  // where they are for the Metrics object's lifetime.
  const TcpCounters* ForConnection(SharedLabels& labels);

  // Istio's request metrics (reporter as in `connection`): istio_requests_total,
  // istio_request_duration_milliseconds, istio_request_bytes, istio_response_bytes, labelled
  // with every TcpLabels label of the connection (request_protocol and response_flags replaced
  // by the arguments) plus response_code and grpc_response_status. The histograms use Istio's
  // buckets (Envoy's defaults). A cached lookup that builds its key: call it once per distinct
  // (code, flags) on a connection and keep the handles.
  RequestSeries ForRequest(const TcpLabels& connection, std::string_view request_protocol,
                           int response_code, std::string_view grpc_response_status,
                           std::string_view response_flags);
  // The bucket bounds of the request histograms (milliseconds and bytes alike).
  static const std::vector<double>& RequestBuckets();

  // weft_tcp_connection_duration_seconds: a histogram of connection lifetimes observed at close,
  // labelled {reporter, source_workload, source_workload_namespace, destination_workload,
  // destination_workload_namespace, destination_service, connection_security_policy,
  // response_flags} with the flags as they are at close (a refusal or an upstream failure set
  // after the connection was counted as opened shows here). The golden signals of `weftctl
  // stat` (rate, success rate, latency percentiles per workload) come from it.
  void ConnectionClosed(const TcpLabels& labels, double seconds);

  // weft_hbone_handshake_failures_total{direction="inbound|outbound",reason=...}
  void HandshakeFailure(std::string_view direction, std::string_view reason);
  // weft_policy_denials_total{policy="ns/name"|"",direction="inbound",reason="deny|no_allow_match|strict_mtls|registry_only"}
  void PolicyDenial(std::string_view policy, std::string_view reason);
  // The same family with direction="outbound": `n` connects the source node denied at connect()
  // (deny at connect, docs/security.md), with the label the destination would have counted.
  // A denied connect never reaches the destination, so summing over directions counts each
  // attempt once.
  void SourcePolicyDenials(std::string_view policy, std::string_view reason, uint64_t n);
  // weft_connect_deny_entries: entries in the deny-at-connect map now.
  prometheus::Gauge& connect_deny_entries();
  // weft_connect_deny_errors_total{reason="full|sync|labels"}: full: entries left out (map
  // size reached); sync: the map could not be written (every entry removed); labels: more
  // distinct policy labels than the counter map holds (those entries left out).
  void ConnectDenyError(std::string_view reason, uint64_t n = 1);
  // Runs at each scrape before the registry is collected (nullptr: nothing). The caller keeps
  // what `fn` uses alive until it is reset.
  void SetBeforeScrape(std::function<void()> fn);
  // weft_bad_input_total{port="15001|15006|15008|config|handoff",kind=...}: garbage, h2
  // violations, bad CONNECT, foreign address, malformed config...
  void BadInput(std::string_view port, std::string_view kind);
  // weft_http_retries_total{result="retried|limit_exceeded|budget_exhausted|overflow|
  // no_upstream"}: retriable attempts of the source-side HTTP proxy and what became of them
  void Retry(std::string_view result);
  // weft_http_mirrors_total{result="sent|dropped|failed"}: RequestMirror copies sent or not;
  // "failed": HTTP/2 copies sent that got no answer (a subset of "sent")
  void Mirror(std::string_view result);
  // weft_connection_failures_total{direction,reason}: upstream connect failures, no endpoint..
  void ConnectionFailure(std::string_view direction, std::string_view reason);
  // weft_config_loads_total{result="ok|error"}, weft_config_version_info{version}
  void ConfigLoad(bool ok, std::string_view version);
  // weft_policy_reevaluation_closed_total: open connections closed after a policy change
  void ReevaluationClosed();

  // weft_hbone_connections_refused_total{reason}: HBONE server connections turned away by a
  // limit (ztunnel/proxy/limits.h): "handshaking_per_source", "handshaking_global" (refused at
  // accept), "handshaking_global_evicted" (an older handshake of the busiest source closed to
  // make room), "established_per_source", "established_global", "buffer_budget_stalled" (not
  // read over the unread-bytes budget, and its unread bytes did not shrink for a while).
  void HboneRefused(std::string_view reason);
  // weft_hbone_read_paused_total: times an HBONE connection stopped being read because the
  // ztunnel's unread-bytes budget was spent.
  void HboneReadPaused();
  // weft_same_node_relay_events_total{relay="sockmap|splice",event}: what ztunnel does for
  // connected same-node fast-path flows (docs/fastpath.md): "wakeup" (a socket event or timer
  // handled for a flow), "paused" (sockmap: a slow reader made ztunnel stop the kernel reading),
  // "join_failed" (sockmap: the pair could not enter the maps; that connection used splice),
  // "overlap_cut" (sockmap: skbs whose head repeated bytes already relayed, cut off by the
  // program), "broken" (sockmap: such an skb could not be cut; the flow was reset).
  prometheus::Counter& same_node_relay_event(std::string_view relay, std::string_view event);
  // weft_hbone_server_connections{state="handshaking|established"}
  prometheus::Gauge& hbone_server_connections(std::string_view state);
  // weft_hbone_buffered_bytes: bytes received over HBONE that applications have not read yet
  prometheus::Gauge& hbone_buffered_bytes();

  prometheus::Gauge& active_connections(std::string_view direction);  // weft_active_connections
  prometheus::Gauge& pool_connections();  // weft_hbone_pool_connections (open HBONE conns)
  prometheus::Gauge& pool_streams();      // weft_hbone_pool_streams (streams on them)
  prometheus::Gauge& enrolled_pods();     // weft_enrolled_pods
  // Istio's workload manager metrics, for the pods the agent hands over:
  // workload_manager_pending_proxy_count (handed over, proxy being set up),
  // workload_manager_proxies_started_total (set up), workload_manager_proxies_stopped_total
  // (removed). Starting() before the setup, Started(ok) after it, Stopped() on removal.
  void WorkloadProxyStarting();
  void WorkloadProxyStarted(bool ok);
  void WorkloadProxyStopped();

  // weft_cert_expiry_seconds{identity}: unix time of each cert's notAfter
  prometheus::Gauge& cert_expiry(std::string_view identity);

  // The version weft_build_info reports (CMake's PROJECT_VERSION).
  static std::string_view BuildVersion();

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* tcp_opened_;
  prometheus::Family<prometheus::Counter>* tcp_closed_;
  prometheus::Family<prometheus::Counter>* tcp_sent_;
  prometheus::Family<prometheus::Counter>* tcp_received_;
  prometheus::Family<prometheus::Histogram>* duration_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* request_duration_;
  prometheus::Family<prometheus::Histogram>* request_bytes_;
  prometheus::Family<prometheus::Histogram>* response_bytes_;
  prometheus::Family<prometheus::Counter>* handshake_failures_;
  prometheus::Family<prometheus::Counter>* policy_denials_;
  prometheus::Family<prometheus::Gauge>* connect_deny_entries_;
  prometheus::Family<prometheus::Counter>* connect_deny_errors_;
  prometheus::Family<prometheus::Counter>* bad_input_;
  prometheus::Family<prometheus::Counter>* retries_;
  prometheus::Family<prometheus::Counter>* mirrors_;
  prometheus::Family<prometheus::Counter>* conn_failures_;
  prometheus::Family<prometheus::Counter>* config_loads_;
  prometheus::Family<prometheus::Gauge>* config_version_;
  prometheus::Family<prometheus::Counter>* reevaluation_closed_;
  prometheus::Family<prometheus::Counter>* hbone_refused_;
  prometheus::Family<prometheus::Counter>* hbone_read_paused_;
  prometheus::Family<prometheus::Counter>* same_node_relay_events_;
  prometheus::Family<prometheus::Gauge>* hbone_server_conns_;
  prometheus::Family<prometheus::Gauge>* hbone_buffered_;
  prometheus::Family<prometheus::Gauge>* active_;
  prometheus::Family<prometheus::Gauge>* pool_conns_;
  prometheus::Family<prometheus::Gauge>* pool_streams_;
  prometheus::Family<prometheus::Gauge>* enrolled_;
  prometheus::Family<prometheus::Gauge>* cert_expiry_;
  prometheus::Family<prometheus::Gauge>* build_info_;
  prometheus::Gauge* proxies_pending_;
  prometheus::Counter* proxies_started_;
  prometheus::Counter* proxies_stopped_;

  std::mutex mu_;
  // Length-prefixed concatenation of all TcpLabels fields -> the four children. Saves building
  // four 20-entry label maps and four Family lookups per connection.
  struct TcpSeries {
    TcpCounters counters;
    std::shared_ptr<const TcpLabels> labels;  // shared by the series' open connections
  };
  std::unordered_map<std::string, TcpSeries> tcp_cache_;  // guarded by mu_
  const TcpSeries& TcpSeriesLocked(std::string key, const TcpLabels& labels);
  std::unordered_map<std::string, prometheus::Histogram*> duration_cache_;  // guarded by mu_
  std::unordered_map<std::string, RequestSeries> request_cache_;            // guarded by mu_
  prometheus::Gauge* config_version_current_ = nullptr;                     // guarded by mu_
};

}  // namespace weft::ztunnel
