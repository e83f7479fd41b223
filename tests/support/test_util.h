// Helpers shared by the integration tests: temp dirs, a real echo server, a tiny HTTP GET,
// Prometheus text lookups, mesh certificates, and a raw HBONE client for bad-input tests.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net.h"
#include "common/scrape/scrape.h"
#include "common/spiffe.h"
#include "common/testing/temp_dir.h"
#include "common/tls.h"
#include "common/unique_fd.h"

namespace weft::testing {

// TempDir (mkdtemp under $TMPDIR or /tmp, WEFT_KEEP_TMP keeps it) comes from
// common/testing/temp_dir.h, which declares it in this same namespace.
using weft::testing::TempDir;

// A threaded TCP echo server on `addr` (port 0 picks one). Optionally in a netns.
class EchoServer {
 public:
  explicit EchoServer(const SockAddr& addr, int netns_fd = -1);
  // On `socket` (unbound TCP; e.g. testbed::SocketInPod's, so its accepted sockets are in the
  // pod's cgroup as a pod's own server's are).
  EchoServer(const SockAddr& addr, UniqueFd socket);
  ~EchoServer();
  SockAddr addr() const { return addr_; }
  int accepted() const { return accepted_.load(); }

 private:
  void Run();
  UniqueFd listen_;
  SockAddr addr_;
  std::atomic<int> accepted_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::thread> conns_;
};

// Relays the first connection accepted on a loopback port to `target` (e.g. a socket the mesh
// captured), both ways with half-closes, so a real client binary (curl, nghttp) can speak
// through a socket the test holds. Bounded: gives up 30 s after it was made.
class LoopbackRelay {
 public:
  explicit LoopbackRelay(UniqueFd target);
  ~LoopbackRelay();
  uint16_t port() const { return port_; }

 private:
  void Run();
  UniqueFd listen_, target_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Blocking TCP connect with a timeout (optionally from inside a netns, optionally bound).
absl::StatusOr<UniqueFd> Dial(const SockAddr& to, int netns_fd = -1,
                              std::chrono::milliseconds timeout = std::chrono::seconds(5),
                              const IpAddr* from = nullptr);
// Writes `msg`, reads until `msg.size()` bytes came back or EOF/timeout. Returns what came back.
std::string EchoRoundTrip(int fd, const std::string& msg,
                          std::chrono::milliseconds timeout = std::chrono::seconds(5));
// True if the peer closes/resets the connection within `timeout` (read returns 0 or error).
bool WaitClosed(int fd, std::chrono::milliseconds timeout = std::chrono::seconds(5));

using weft::HttpGet;    // common/scrape
using weft::MetricSum;  // common/scrape

bool WaitFor(const std::function<bool()>& cond,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Root CA + per-identity files in the FileCertificateProvider layout under `dir`.
absl::StatusOr<tls::CertificateAuthority> MakeMeshCerts(const std::string& dir,
                                                        const std::vector<SpiffeId>& ids);

// A raw HBONE client for tests that need to misbehave: TLS 1.3 with the given client cert,
// then HTTP/2 CONNECT via nghttp2. Blocking.
struct HboneDialResult {
  bool handshake_ok = false;
  std::string error;
  int status = 0;  // :status of the CONNECT response (0 if none)
};
struct ClientCert {
  tls::EvpPkeyPtr key;
  tls::X509Ptr cert;
};
absl::StatusOr<ClientCert> IssueClientCert(
    const tls::CertificateAuthority& ca, const SpiffeId* id, std::chrono::seconds ttl,
    std::chrono::seconds not_before_offset = std::chrono::seconds(-60));
// Connects to `hbone` and sends CONNECT `authority`; `raw_after_handshake` (if set) is sent
// instead of HTTP/2 after the TLS handshake (protocol-violation tests).
HboneDialResult HboneConnect(const SockAddr& hbone, const ClientCert* cert,
                             const std::string& root_pem, const std::string& authority,
                             const std::string* raw_after_handshake = nullptr);

// Names unique across parallel tests: "<prefix><pid>-<counter>".
std::string UniqueName(const std::string& prefix);
bool IsRoot();

}  // namespace weft::testing
