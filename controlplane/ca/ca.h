// weftd's certificate authority: the mesh root (generated once and persisted, or supplied by
// the user as a root or an intermediate), SVID issuance from node CSRs, node authentication
// (per-node bootstrap tokens in local mode, Kubernetes TokenReview in cluster mode) and node
// authorization (a node gets certificates only for identities of pods scheduled on it).
//
// The gRPC face of this (weft.ca.v1.CertificateService) is in ca_server.h.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/registry.h>
#include "absl/status/statusor.h"
#include "common/spiffe.h"
#include "common/tls.h"

namespace weft::cp {

using Clock = std::function<std::chrono::system_clock::time_point()>;

// ---------------------------------------------------------------------------------------------
// Root persistence.

struct StoredRoot {
  std::string cert_pem;
  std::string key_pem;
};

// Where a generated root lives between restarts. Local mode: FileRootStore. Cluster mode: a
// Kubernetes Secret (not implemented yet: implement this interface with a GET/POST of
// /api/v1/namespaces/<ns>/secrets/<name> and pass it to LoadOrCreateRoot).
class RootStore {
 public:
  virtual ~RootStore() = default;
  // nullopt if nothing is stored yet; an error if something is stored but unreadable.
  virtual absl::StatusOr<std::optional<StoredRoot>> Load() = 0;
  // Stores a new root. Must fail (AlreadyExists) rather than overwrite an existing one, so two
  // weftd replicas racing at first start cannot end up with different roots.
  virtual absl::Status Create(const StoredRoot& root) = 0;
  virtual std::string Describe() const = 0;  // for logs: "directory /var/lib/weft/ca"
};

// <dir>/root-cert.pem (0644) and <dir>/root-key.pem (0600). The directory is created (0700)
// if missing.
class FileRootStore : public RootStore {
 public:
  explicit FileRootStore(std::string dir) : dir_(std::move(dir)) {}
  absl::StatusOr<std::optional<StoredRoot>> Load() override;
  absl::Status Create(const StoredRoot& root) override;
  std::string Describe() const override { return "directory " + dir_; }

  std::string cert_path() const { return dir_ + "/root-cert.pem"; }
  std::string key_path() const { return dir_ + "/root-key.pem"; }

 private:
  std::string dir_;
};

// Loads the stored root, or generates one (ECDSA P-256 self-signed, `lifetime`) and stores it.
// If Create reports AlreadyExists (another replica won the race) the stored one is loaded.
absl::StatusOr<tls::CertificateAuthority> LoadOrCreateRoot(RootStore& store, std::string_view org,
                                                           std::chrono::seconds lifetime);

// A user-provided signing CA: `cert_file` holds the CA certificate (optionally followed by its
// issuers), `key_file` its private key, `chain_file` (optional, "" = none) the issuers up to
// and including the root. A root alone is fine; an intermediate must come with its chain up to
// a self-signed root so that clients can be given the root and leaves carry the intermediates.
absl::StatusOr<tls::CertificateAuthority> LoadUserCa(const std::string& cert_file,
                                                     const std::string& key_file,
                                                     const std::string& chain_file = "");

// ---------------------------------------------------------------------------------------------
// Node authentication: the bearer token a node presents -> the node's name.

class NodeAuthenticator {
 public:
  virtual ~NodeAuthenticator() = default;
  // `claimed_node` is the node the request says it comes from; `client` the caller's address
  // without its port (gRPC peer, "ipv4:10.0.0.7"; "" when unknown), for per-client limits.
  // Returns the authenticated node name (which the caller then uses for authorization).
  // Unauthenticated on a bad token, ResourceExhausted when the client is over its rate.
  virtual absl::StatusOr<std::string> Authenticate(std::string_view token,
                                                   std::string_view claimed_node,
                                                   std::string_view client = "") = 0;
};

// The rate-limit key of a gRPC peer string: "ipv4:10.0.0.7:5123" -> "ipv4:10.0.0.7",
// "ipv6:[fd00::7]:5123" -> "ipv6:[fd00::7]"; anything else unchanged.
std::string ClientAddress(std::string_view grpc_peer);

// Local mode: one random token per node, in <dir>/<node>.token (0600). The token's format is
// "<node>.<64 hex chars>" so the node is known without scanning the directory; the file is
// read on every request, so deleting it revokes the node at once.
class BootstrapTokenAuthenticator : public NodeAuthenticator {
 public:
  explicit BootstrapTokenAuthenticator(std::string dir) : dir_(std::move(dir)) {}
  absl::StatusOr<std::string> Authenticate(std::string_view token, std::string_view claimed_node,
                                           std::string_view client = "") override;

  // Creates (or returns the existing) token for `node` and writes it to <dir>/<node>.token.
  // Node names must be DNS subdomains (RFC 1123: [a-z0-9.-], 1..253).
  static absl::StatusOr<std::string> EnsureNodeToken(const std::string& dir, std::string_view node);
  static std::string TokenPath(const std::string& dir, std::string_view node);

 private:
  std::string dir_;
};

// What a TokenReview says about a token (status.user.extra keys of a bound service-account
// token, as the API server sets them: authentication.kubernetes.io/pod-name and pod-uid for a
// pod-bound token, node-name from Kubernetes 1.30 on).
struct ReviewedToken {
  std::string username;  // "system:serviceaccount:<ns>:<sa>" or "system:node:<node>"
  std::optional<std::string> node_name;
  std::optional<std::string> pod_name, pod_uid;
  // status.audiences: the audiences of the review (spec.audiences) that the token is valid for.
  std::vector<std::string> audiences;
};
using TokenReviewer = std::function<absl::StatusOr<ReviewedToken>(std::string_view token)>;

// The node a pod <ns>/<name> with uid `uid` is scheduled on, if weftd's model has that pod
// (not terminated, same uid). Fed by Model::PodNode.
using PodNodeLookup = std::function<std::optional<std::string>(
    std::string_view ns, std::string_view name, std::string_view uid)>;

inline constexpr char kDefaultCaAudience[] = "weft-ca";

struct TokenReviewAuthOptions {
  // Every accepted token must be valid for this audience (status.audiences of the review must
  // contain it; the reviewer sends it as spec.audiences). Nodes mount a projected token with
  // this audience, so a token minted for another service (or the API server's default
  // audience) cannot be replayed here. Never empty.
  std::string audience = kDefaultCaAudience;
  // For pod-bound tokens without the node-name extra (Kubernetes < 1.30): where the pod runs.
  PodNodeLookup pod_node;
  // TokenReview results are cached by SHA-256 of the token (the token itself is never kept):
  // accepted ones for cache_ttl, rejected ones for negative_cache_ttl; at most cache_entries
  // (the oldest entry goes first). Review failures (API server down) are not cached.
  std::chrono::seconds cache_ttl{60};
  std::chrono::seconds negative_cache_ttl{30};
  size_t cache_entries = 10000;
  // TokenReviews (cache misses) per client address: a token bucket of `burst`, refilled at
  // `reviews_per_second`. Over it: ResourceExhausted, before the API server is asked. At
  // most `max_clients` buckets are kept (the least recently used goes first).
  double reviews_per_second = 1;
  double burst = 10;
  size_t max_clients = 4096;
  std::function<std::chrono::steady_clock::time_point()> clock;  // empty = steady_clock::now
};

// Counts of what the authenticator did (also weft_ca_token_reviews_total{result}).
struct TokenReviewStats {
  uint64_t reviews = 0;       // TokenReviews sent to the API server
  uint64_t cache_hits = 0;    // answered from the cache
  uint64_t rate_limited = 0;  // refused before a TokenReview: client over its rate
  uint64_t unbound = 0;       // refused: token bound to neither a node nor a pod
  uint64_t wrong_node = 0;    // refused: bound to another node (or its pod runs elsewhere)
  uint64_t audience = 0;      // refused: not valid for the CA's audience
};

// Cluster mode. Accepted callers, each with a token valid for `audience`:
//  - "system:node:<node>" (a kubelet credential): the node is <node>;
//  - a service account listed in `ztunnel_service_accounts` (e.g.
//    "system:serviceaccount:weft-system:ztunnel") whose token is bound to a node
//    (authentication.kubernetes.io/node-name extra) or to a pod (pod-name + pod-uid extras)
//    that weftd's model has running on a node; that node must be the one the request claims
//    (if it claims one) and is the authenticated node. A token bound to neither is refused:
//    it could speak for any node.
// Anything else is Unauthenticated. A reviewer error (API server down) is Unavailable; a
// client over its TokenReview rate is ResourceExhausted.
class TokenReviewAuthenticator : public NodeAuthenticator {
 public:
  TokenReviewAuthenticator(TokenReviewer reviewer,
                           std::vector<std::string> ztunnel_service_accounts,
                           TokenReviewAuthOptions opts = {},
                           std::shared_ptr<prometheus::Registry> registry = nullptr);
  ~TokenReviewAuthenticator() override;
  absl::StatusOr<std::string> Authenticate(std::string_view token, std::string_view claimed_node,
                                           std::string_view client = "") override;
  TokenReviewStats stats() const;

 private:
  struct State;
  absl::StatusOr<ReviewedToken> Review(std::string_view token, std::string_view client);
  absl::StatusOr<std::string> BoundNode(const ReviewedToken& reviewed,
                                        std::string_view claimed_node);
  TokenReviewer reviewer_;
  std::vector<std::string> allowed_;
  TokenReviewAuthOptions opts_;
  std::unique_ptr<State> state_;
};

// Node authorization: may `node` obtain a certificate for `id`? Fed by the model
// (IdentitiesOnNode): true only for identities of pods scheduled on that node.
using NodeAuthorizer = std::function<bool(std::string_view node, const SpiffeId& id)>;

// ---------------------------------------------------------------------------------------------
// Issuance.

struct IssuerOptions {
  std::string trust_domain = "cluster.local";
  std::chrono::seconds default_ttl = std::chrono::hours(24);
  std::chrono::seconds max_ttl = std::chrono::hours(24 * 7);
  std::chrono::seconds min_ttl = std::chrono::minutes(10);
  Clock clock;  // empty = system_clock::now
};

// Signs SVIDs after checking the request (no authentication/authorization here: CaServer does
// that). Thread-safe (immutable after construction).
class Issuer {
 public:
  Issuer(tls::CertificateAuthority ca, IssuerOptions opts);

  // Checks: `identity` parses as a SPIFFE ID of the configured trust domain; the CSR parses,
  // its self-signature verifies and its single URI SAN equals `identity`; `ttl` (0 = default)
  // is within [min_ttl, max_ttl]. Returns [leaf, intermediates..., root] as PEM. Errors are
  // InvalidArgument with a reason.
  absl::StatusOr<std::vector<std::string>> Issue(std::string_view csr_pem,
                                                 std::string_view identity,
                                                 std::chrono::seconds ttl) const;

  // A TLS serving certificate for weftd's gRPC port (DNS SANs), signed by the same CA.
  struct ServingCert {
    std::string key_pem;
    std::string chain_pem;  // leaf + intermediates (what the server presents)
  };
  absl::StatusOr<ServingCert> IssueServingCert(const std::vector<std::string>& dns_names,
                                               std::chrono::seconds ttl) const;

  std::string root_pem() const { return ca_.root_pem(); }
  const tls::CertificateAuthority& ca() const { return ca_; }
  const IssuerOptions& options() const { return opts_; }

 private:
  std::chrono::system_clock::time_point Now() const;
  tls::CertificateAuthority ca_;
  IssuerOptions opts_;
};

}  // namespace weft::cp
