// CaCertificateProvider: workload certificates from weftd's CA (weft.ca.v1.CertificateService).
//
// Per identity: a fresh P-256 key is generated on the node (it never leaves it), a CSR with the
// SPIFFE ID as URI SAN is sent with the node's bearer token, and the returned chain is checked
// (leaf SAN == identity, key matches, chain verifies against the mesh roots) and cached.
//  - Get() blocks only for an identity it has no valid certificate for (first use, or expired).
//  - RenewDue() renews every cached certificate past its half-life; a failure is retried with
//    exponential backoff and jitter, and the old certificate keeps being served while it is
//    still valid (the CA being down does not break traffic). Start() runs RenewDue() on a
//    background thread; tests with an injected clock call RenewDue() themselves.
//  - Metrics (if given): weft_cert_expiry_seconds{identity} (notAfter, unix seconds) and
//    weft_ca_client_requests_total{result="ok|error"}.
#pragma once

#include <prometheus/counter.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/grpc_client/grpc_call.h"
#include "ztunnel/identity/identity.h"
#include "ztunnel/metrics/metrics.h"

namespace weft::ztunnel {

struct CaClientOptions {
  std::string address;  // weftd's gRPC address, "host:port"
  // Mesh root(s), PEM. Non-empty: TLS to weftd, verified against these roots, and issued chains
  // must verify against them. Empty: plaintext (only for tests on loopback) and the root
  // returned with each chain is trusted.
  std::string root_pem;
  // Name checked against weftd's serving certificate (one of its DNS SANs).
  std::string tls_server_name = "weftd.weft-system.svc";
  std::string node;  // this node's name, sent in each request
  // Source of the bearer token; called for every request (tokens rotate). Empty = no token.
  std::function<absl::StatusOr<std::string>()> token;
  std::chrono::seconds ttl{0};  // requested validity; 0 = the CA's default (24 h)
  // Each request waits up to rpc_timeout for weftd to be reachable (as gRPC's wait_for_ready),
  // so a transient connect failure is retried (1 s doubling up to max_reconnect_backoff) instead
  // of failing the request; with weftd down an attempt therefore takes rpc_timeout before it
  // counts as a failure.
  std::chrono::milliseconds rpc_timeout{10000};
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{std::chrono::minutes(5)};
  std::chrono::milliseconds max_reconnect_backoff{std::chrono::seconds(10)};  // within a request
  std::chrono::milliseconds poll_interval{1000};  // how often Start()'s thread calls RenewDue
  std::function<std::chrono::system_clock::time_point()> clock;  // empty = system_clock::now
  Metrics* metrics = nullptr;                                    // optional
  uint64_t jitter_seed = 0;                                      // 0 = random
};

// Reads a token file on every call (projected service-account tokens and bootstrap tokens can
// be rotated on disk). Surrounding whitespace is stripped.
std::function<absl::StatusOr<std::string>()> TokenFromFile(std::string path);

class CaCertificateProvider : public CertificateProvider {
 public:
  static absl::StatusOr<std::unique_ptr<CaCertificateProvider>> Create(CaClientOptions opts);
  ~CaCertificateProvider() override;

  absl::StatusOr<std::shared_ptr<const CertBundle>> Get(const SpiffeId& id) override;

  // Renews cached certificates whose half-life has passed (and whose backoff has elapsed).
  // Returns how many renewals succeeded.
  int RenewDue();
  void Start();  // background renewal thread (idempotent)
  void Stop();   // joins it (also done by the destructor)

  // Stops tracking an identity (its pod left the node).
  void Forget(const SpiffeId& id);

  struct State {
    std::shared_ptr<const CertBundle> bundle;            // null before the first success
    std::chrono::system_clock::time_point refresh_at;    // half-life of the current cert
    std::chrono::system_clock::time_point next_attempt;  // after a failure: backoff end
    int failures = 0;
    absl::Status last_error;
  };
  std::optional<State> StateOf(const SpiffeId& id);

 private:
  explicit CaCertificateProvider(CaClientOptions opts);
  std::chrono::system_clock::time_point Now() const;
  absl::StatusOr<std::shared_ptr<const CertBundle>> Fetch(const SpiffeId& id);
  std::shared_ptr<std::mutex> FetchLock(const std::string& key);  // mu_ held
  // The cached bundle if still valid, or the backoff error; nullopt = a fetch is needed.
  std::optional<absl::StatusOr<std::shared_ptr<const CertBundle>>> Cached(
      const std::string& key);  // mu_ held
  // Records the outcome of a Fetch into the entry (mu_ held).
  void Record(const std::string& key, absl::StatusOr<std::shared_ptr<const CertBundle>>& r);

  CaClientOptions opts_;
  std::vector<tls::X509Ptr> roots_;      // parsed opts_.root_pem (empty in plaintext mode)
  grpc_client::ChannelOptions channel_;  // one connection per request (a CSR per half-life)
  prometheus::Family<prometheus::Counter>* requests_ = nullptr;

  std::mutex mu_;  // guards entries_, fetch_locks_, rng_, stop_
  std::map<std::string, State> entries_;
  // One CSR round trip per identity at a time (concurrent Gets of a new identity share one);
  // different identities do not wait for each other.
  std::map<std::string, std::shared_ptr<std::mutex>> fetch_locks_;
  std::mt19937_64 rng_;

  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace weft::ztunnel
