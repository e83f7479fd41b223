#include "controlplane/ca/ca.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status.h"

namespace weft::cp {
namespace {

using std::chrono::system_clock;

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::Status EnsureDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create directory ", dir, ": ", ec.message(),
                     "; create it or point the CA directory elsewhere"));
  }
  ::chmod(dir.c_str(), 0700);
  return absl::OkStatus();
}

bool ValidNodeName(std::string_view n) {
  if (n.empty() || n.size() > 253) return false;
  if (n.front() == '.' || n.front() == '-' || n.back() == '.' || n.back() == '-') return false;
  for (char c : n) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-')) return false;
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

absl::StatusOr<std::optional<StoredRoot>> FileRootStore::Load() {
  bool have_cert = Exists(cert_path()), have_key = Exists(key_path());
  if (!have_cert && !have_key) return std::optional<StoredRoot>();
  if (have_cert != have_key) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CA directory ", dir_,
        " holds only one of root-cert.pem and root-key.pem; restore the "
        "missing file, or remove both to generate a new root (every workload certificate "
        "must then be reissued)"));
  }
  StoredRoot r;
  WEFT_ASSIGN_OR_RETURN(r.cert_pem, tls::ReadFile(cert_path()));
  WEFT_ASSIGN_OR_RETURN(r.key_pem, tls::ReadFile(key_path()));
  return std::optional<StoredRoot>(std::move(r));
}

absl::Status FileRootStore::Create(const StoredRoot& root) {
  WEFT_RETURN_IF_ERROR(EnsureDir(dir_));
  if (Exists(cert_path()) || Exists(key_path())) {
    return absl::AlreadyExistsError(absl::StrCat("a root already exists in ", dir_));
  }
  // Key first: a crash in between leaves a key without a cert, which Load reports instead of
  // silently generating a second root.
  WEFT_RETURN_IF_ERROR(tls::WriteFileAtomic(key_path(), root.key_pem, 0600));
  return tls::WriteFileAtomic(cert_path(), root.cert_pem, 0644);
}

absl::StatusOr<tls::CertificateAuthority> LoadOrCreateRoot(RootStore& store, std::string_view org,
                                                           std::chrono::seconds lifetime) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    WEFT_ASSIGN_OR_RETURN(std::optional<StoredRoot> stored, store.Load());
    if (stored) {
      auto ca = tls::CertificateAuthority::FromPem(stored->cert_pem, stored->key_pem);
      if (!ca.ok()) {
        return absl::FailedPreconditionError(absl::StrCat("stored CA root in ", store.Describe(),
                                                          " is unusable: ", ca.status().message()));
      }
      LOG_INFO("ca", "loaded CA root", {{"store", store.Describe()}});
      return ca;
    }
    WEFT_ASSIGN_OR_RETURN(tls::CertificateAuthority ca,
                          tls::CertificateAuthority::CreateRoot(org, lifetime));
    StoredRoot r;
    r.cert_pem = ca.root_pem();
    WEFT_ASSIGN_OR_RETURN(r.key_pem, ca.KeyPem());
    absl::Status st = store.Create(r);
    if (st.ok()) {
      LOG_INFO("ca", "generated a new CA root", {{"store", store.Describe()}});
      return ca;
    }
    if (!absl::IsAlreadyExists(st)) {
      return absl::Status(st.code(), absl::StrCat("storing the new CA root in ", store.Describe(),
                                                  ": ", st.message()));
    }
  }
  return absl::AbortedError(
      absl::StrCat("CA root in ", store.Describe(), " keeps changing; is another weftd writing?"));
}

absl::StatusOr<tls::CertificateAuthority> LoadUserCa(const std::string& cert_file,
                                                     const std::string& key_file,
                                                     const std::string& chain_file) {
  WEFT_ASSIGN_OR_RETURN(std::string cert, tls::ReadFile(cert_file));
  WEFT_ASSIGN_OR_RETURN(std::string key, tls::ReadFile(key_file));
  std::string chain;
  if (!chain_file.empty()) {
    WEFT_ASSIGN_OR_RETURN(chain, tls::ReadFile(chain_file));
  }
  auto ca = tls::CertificateAuthority::FromPem(cert, key, chain);
  if (!ca.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("user-provided CA (", cert_file, ", ", key_file,
                                                   chain_file.empty() ? "" : ", ", chain_file,
                                                   "): ", ca.status().message()));
  }
  return ca;
}

// ---------------------------------------------------------------------------------------------

std::string BootstrapTokenAuthenticator::TokenPath(const std::string& dir, std::string_view node) {
  return absl::StrCat(dir, "/", Av(node), ".token");
}

absl::StatusOr<std::string> BootstrapTokenAuthenticator::EnsureNodeToken(const std::string& dir,
                                                                         std::string_view node) {
  if (!ValidNodeName(node)) {
    return absl::InvalidArgumentError(
        absl::StrCat("node name \"", Av(node),
                     "\" is not a DNS subdomain (lower-case letters, digits, '.', '-')"));
  }
  std::string path = TokenPath(dir, node);
  if (auto existing = tls::ReadFile(path); existing.ok()) {
    std::string t(absl::StripAsciiWhitespace(*existing));
    if (absl::StartsWith(t, absl::StrCat(Av(node), "."))) return t;
  }
  WEFT_RETURN_IF_ERROR(EnsureDir(dir));
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) return tls::OpenSslError("RAND_bytes");
  std::string token = absl::StrCat(
      Av(node), ".",
      absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(raw), sizeof raw)));
  WEFT_RETURN_IF_ERROR(tls::WriteFileAtomic(path, token, 0600));
  return token;
}

absl::StatusOr<std::string> BootstrapTokenAuthenticator::Authenticate(std::string_view token,
                                                                      std::string_view claimed_node,
                                                                      std::string_view /*client*/) {
  if (token.empty()) {
    return absl::UnauthenticatedError(
        "no bootstrap token: send 'authorization: Bearer <token>' with the contents of the "
        "node's token file");
  }
  size_t dot = token.rfind('.');
  if (dot == std::string_view::npos || dot == 0) {
    return absl::UnauthenticatedError("malformed bootstrap token (expected <node>.<hex>)");
  }
  std::string_view node = token.substr(0, dot);
  if (!ValidNodeName(node)) return absl::UnauthenticatedError("malformed bootstrap token");
  if (!claimed_node.empty() && claimed_node != node) {
    return absl::UnauthenticatedError(
        absl::StrCat("bootstrap token belongs to node ", Av(node), ", not to ", Av(claimed_node)));
  }
  auto expected = tls::ReadFile(TokenPath(dir_, node));
  if (!expected.ok()) {
    return absl::UnauthenticatedError(absl::StrCat("no bootstrap token is registered for node ",
                                                   Av(node), " (revoked or never created)"));
  }
  std::string want(absl::StripAsciiWhitespace(*expected));
  if (want.size() != token.size() || CRYPTO_memcmp(want.data(), token.data(), token.size()) != 0) {
    return absl::UnauthenticatedError(absl::StrCat("wrong bootstrap token for node ", Av(node)));
  }
  return std::string(node);
}

std::string ClientAddress(std::string_view peer) {
  if (!absl::StartsWith(Av(peer), "ipv4:") && !absl::StartsWith(Av(peer), "ipv6:")) {
    return std::string(peer);
  }
  size_t colon = peer.rfind(':');
  if (colon <= 4) return std::string(peer);
  if (absl::StartsWith(Av(peer), "ipv6:") && peer[colon - 1] != ']') return std::string(peer);
  return std::string(peer.substr(0, colon));
}

struct TokenReviewAuthenticator::State {
  struct Entry {
    absl::StatusOr<ReviewedToken> result;
    std::chrono::steady_clock::time_point expires;
    uint64_t seq = 0;
  };
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point last;
  };
  std::mutex mu;
  std::map<std::string, Entry> cache;                  // SHA-256 of the token -> review result
  std::deque<std::pair<uint64_t, std::string>> order;  // insertion order (seq, key)
  uint64_t next_seq = 0;
  std::map<std::string, Bucket> buckets;  // client address -> its bucket
  TokenReviewStats stats;
  prometheus::Family<prometheus::Counter>* counter = nullptr;

  void Count(uint64_t TokenReviewStats::*field, const char* label) {
    ++(stats.*field);
    if (counter) counter->Add({{"result", label}}).Increment();
  }
};

namespace {
std::string TokenHash(std::string_view token) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), md);
  return std::string(reinterpret_cast<const char*>(md), sizeof md);
}
}  // namespace

TokenReviewAuthenticator::TokenReviewAuthenticator(
    TokenReviewer reviewer, std::vector<std::string> ztunnel_service_accounts,
    TokenReviewAuthOptions opts, std::shared_ptr<prometheus::Registry> registry)
    : reviewer_(std::move(reviewer)),
      allowed_(std::move(ztunnel_service_accounts)),
      opts_(std::move(opts)),
      state_(std::make_unique<State>()) {
  if (opts_.audience.empty()) opts_.audience = kDefaultCaAudience;
  if (opts_.burst < 1) opts_.burst = 1;
  if (opts_.max_clients == 0) opts_.max_clients = 1;
  if (registry) {
    state_->counter = &prometheus::BuildCounter()
                           .Name("weft_ca_token_reviews_total")
                           .Help(
                               "Node token checks by weftd (CA and config stream): reviewed "
                               "(a TokenReview sent), cache_hit, rate_limited, and refusals "
                               "unbound, wrong_node, audience")
                           .Register(*registry);
    for (const char* r :
         {"reviewed", "cache_hit", "rate_limited", "unbound", "wrong_node", "audience"}) {
      state_->counter->Add({{"result", r}});
    }
  }
}

TokenReviewAuthenticator::~TokenReviewAuthenticator() = default;

TokenReviewStats TokenReviewAuthenticator::stats() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->stats;
}

absl::StatusOr<ReviewedToken> TokenReviewAuthenticator::Review(std::string_view token,
                                                               std::string_view client) {
  const auto now = opts_.clock ? opts_.clock() : std::chrono::steady_clock::now();
  const std::string key = TokenHash(token);
  State& st = *state_;
  {
    std::lock_guard<std::mutex> lock(st.mu);
    if (auto it = st.cache.find(key); it != st.cache.end()) {
      if (it->second.expires > now) {
        st.Count(&TokenReviewStats::cache_hits, "cache_hit");
        return it->second.result;
      }
      st.cache.erase(it);
    }
    // Token bucket of this client (only cache misses cost a TokenReview).
    std::string who = client.empty() ? std::string("(unknown)") : std::string(client);
    auto b = st.buckets.find(who);
    if (b == st.buckets.end()) {
      if (st.buckets.size() >= opts_.max_clients) {
        auto lru = std::min_element(st.buckets.begin(), st.buckets.end(),
                                    [](auto& x, auto& y) { return x.second.last < y.second.last; });
        st.buckets.erase(lru);
      }
      b = st.buckets.emplace(who, State::Bucket{opts_.burst, now}).first;
    }
    State::Bucket& bucket = b->second;
    const double elapsed = std::chrono::duration<double>(now - bucket.last).count();
    bucket.tokens =
        std::min(opts_.burst, bucket.tokens + std::max(0.0, elapsed) * opts_.reviews_per_second);
    bucket.last = now;
    if (bucket.tokens < 1) {
      st.Count(&TokenReviewStats::rate_limited, "rate_limited");
      return absl::ResourceExhaustedError(
          absl::StrCat("too many token reviews from ", who, " (more than ", opts_.burst,
                       " at once or ", opts_.reviews_per_second, "/s); retry later"));
    }
    bucket.tokens -= 1;
    st.Count(&TokenReviewStats::reviews, "reviewed");
  }
  absl::StatusOr<ReviewedToken> result = reviewer_(token);
  const bool rejected = !result.ok() && (absl::IsUnauthenticated(result.status()) ||
                                         absl::IsPermissionDenied(result.status()));
  if (!result.ok() && !rejected) return result;  // review failed: ask again next time
  std::lock_guard<std::mutex> lock(st.mu);
  const auto ttl = result.ok() ? opts_.cache_ttl : opts_.negative_cache_ttl;
  if (ttl.count() <= 0 || opts_.cache_entries == 0) return result;
  while (st.cache.size() >= opts_.cache_entries && !st.order.empty()) {
    auto [seq, old] = st.order.front();
    st.order.pop_front();
    if (auto it = st.cache.find(old); it != st.cache.end() && it->second.seq == seq) {
      st.cache.erase(it);
    }
  }
  const uint64_t seq = st.next_seq++;
  st.cache[key] = State::Entry{result, now + ttl, seq};
  st.order.emplace_back(seq, key);
  // Drop order records of entries that expired and were replaced, so order stays bounded.
  while (st.order.size() > 2 * opts_.cache_entries) {
    auto [s, k] = st.order.front();
    st.order.pop_front();
    if (auto it = st.cache.find(k); it != st.cache.end() && it->second.seq == s) {
      st.cache.erase(it);
    }
  }
  return result;
}

absl::StatusOr<std::string> TokenReviewAuthenticator::BoundNode(const ReviewedToken& reviewed,
                                                                std::string_view claimed_node) {
  const std::string& user = reviewed.username;
  if (reviewed.node_name) {
    if (!claimed_node.empty() && claimed_node != *reviewed.node_name) {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->Count(&TokenReviewStats::wrong_node, "wrong_node");
      return absl::UnauthenticatedError(absl::StrCat("token is bound to node ", *reviewed.node_name,
                                                     ", not to ", Av(claimed_node)));
    }
    return *reviewed.node_name;
  }
  if (reviewed.pod_name && reviewed.pod_uid && opts_.pod_node) {
    // "system:serviceaccount:<ns>:<sa>": the pod is in the service account's namespace.
    constexpr std::string_view kSaPrefix = "system:serviceaccount:";
    std::string_view ns;
    if (std::string_view u = user; u.substr(0, kSaPrefix.size()) == kSaPrefix) {
      u.remove_prefix(kSaPrefix.size());
      ns = u.substr(0, u.find(':'));
    }
    std::optional<std::string> node = opts_.pod_node(ns, *reviewed.pod_name, *reviewed.pod_uid);
    if (!node || node->empty() || (!claimed_node.empty() && claimed_node != *node)) {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->Count(&TokenReviewStats::wrong_node, "wrong_node");
      return absl::UnauthenticatedError(
          absl::StrCat("token is bound to pod ", Av(ns), "/", *reviewed.pod_name, " (uid ",
                       *reviewed.pod_uid, "), which ",
                       node && !node->empty()
                           ? absl::StrCat("runs on node ", *node, ", not on ", Av(claimed_node))
                           : std::string("weftd does not know as running on any node")));
    }
    return *node;
  }
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->Count(&TokenReviewStats::unbound, "unbound");
  return absl::UnauthenticatedError(absl::StrCat(
      "token of ", user,
      " is bound to neither a node nor a pod, so it could speak for any node; present a "
      "projected service-account token (serviceAccountToken volume, audience ",
      opts_.audience, ") of the node's weft pod"));
}

absl::StatusOr<std::string> TokenReviewAuthenticator::Authenticate(std::string_view token,
                                                                   std::string_view claimed_node,
                                                                   std::string_view client) {
  if (token.empty()) {
    return absl::UnauthenticatedError(
        "no service-account token: send 'authorization: Bearer <token>'");
  }
  auto reviewed = Review(token, client);
  if (!reviewed.ok()) {
    if (absl::IsResourceExhausted(reviewed.status())) return reviewed.status();
    if (absl::IsUnauthenticated(reviewed.status()) || absl::IsPermissionDenied(reviewed.status())) {
      return absl::UnauthenticatedError(
          absl::StrCat("TokenReview rejected the token: ", reviewed.status().message()));
    }
    return absl::UnavailableError(
        absl::StrCat("TokenReview failed (retry later): ", reviewed.status().message()));
  }
  if (std::find(reviewed->audiences.begin(), reviewed->audiences.end(), opts_.audience) ==
      reviewed->audiences.end()) {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->Count(&TokenReviewStats::audience, "audience");
    return absl::UnauthenticatedError(
        absl::StrCat("token is not valid for audience ", opts_.audience,
                     " (TokenReview audiences: [", absl::StrJoin(reviewed->audiences, ", "),
                     "]); mount a projected service-account token with audience ", opts_.audience));
  }
  const std::string& user = reviewed->username;
  constexpr std::string_view kNodePrefix = "system:node:";
  if (absl::StartsWith(user, Av(kNodePrefix))) {
    std::string node = user.substr(kNodePrefix.size());
    if (!claimed_node.empty() && claimed_node != node) {
      return absl::UnauthenticatedError(
          absl::StrCat("token belongs to node ", node, ", not to ", Av(claimed_node)));
    }
    return node;
  }
  if (std::find(allowed_.begin(), allowed_.end(), user) == allowed_.end()) {
    return absl::UnauthenticatedError(
        absl::StrCat("token of ", user,
                     " may not request certificates (only ztunnel's service account or a "
                     "node credential may)"));
  }
  return BoundNode(*reviewed, claimed_node);
}

// ---------------------------------------------------------------------------------------------

namespace {
// The key types the CA signs (issue 13): EC P-256 or P-384, RSA of 2048 bits or more.
absl::Status CheckCsrKey(X509_REQ* csr) {
  EVP_PKEY* key = X509_REQ_get0_pubkey(csr);
  if (key == nullptr) return absl::InvalidArgumentError("CSR key: missing or unreadable");
  const int bits = EVP_PKEY_get_bits(key);
  if (EVP_PKEY_is_a(key, "EC")) {
    char group[64] = {0};
    size_t len = 0;
    if (EVP_PKEY_get_group_name(key, group, sizeof group, &len) != 1) group[0] = 0;
    std::string_view g(group);
    if (g == "prime256v1" || g == "secp384r1") return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("CSR key: EC curve ", Av(g.empty() ? std::string_view("(unknown)") : g),
                     " is not accepted; use P-256 (prime256v1) or P-384 (secp384r1)"));
  }
  if (EVP_PKEY_is_a(key, "RSA")) {
    if (bits >= 2048) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("CSR key: RSA ", bits, " bits is too small; use at least 2048 bits"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("CSR key: type ", OBJ_nid2sn(EVP_PKEY_get_base_id(key)),
                   " is not accepted; use EC P-256/P-384 or RSA >= 2048 bits"));
}
}  // namespace

Issuer::Issuer(tls::CertificateAuthority ca, IssuerOptions opts)
    : ca_(std::move(ca)), opts_(std::move(opts)) {}

system_clock::time_point Issuer::Now() const {
  return opts_.clock ? opts_.clock() : system_clock::now();
}

absl::StatusOr<std::vector<std::string>> Issuer::Issue(std::string_view csr_pem,
                                                       std::string_view identity,
                                                       std::chrono::seconds ttl) const {
  auto id = SpiffeId::Parse(identity);
  if (!id.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("requested identity: ", id.status().message()));
  }
  if (id->trust_domain != opts_.trust_domain) {
    return absl::InvalidArgumentError(absl::StrCat("requested identity ", Av(identity),
                                                   " is not in trust domain ", opts_.trust_domain));
  }
  auto csr = tls::CsrFromPem(csr_pem);
  if (!csr.ok()) return absl::InvalidArgumentError(absl::StrCat("CSR: ", csr.status().message()));
  WEFT_RETURN_IF_ERROR(CheckCsrKey(csr->get()));
  auto csr_id = tls::CsrSpiffeId(csr->get());
  if (!csr_id.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("CSR: ", csr_id.status().message()));
  }
  if (!(*csr_id == *id)) {
    return absl::InvalidArgumentError(absl::StrCat("CSR is for ", csr_id->ToString(),
                                                   " but the request asks for ", Av(identity)));
  }
  if (ttl.count() == 0) ttl = opts_.default_ttl;
  if (ttl < opts_.min_ttl || ttl > opts_.max_ttl) {
    return absl::InvalidArgumentError(absl::StrCat("validity ", ttl.count(), "s is outside [",
                                                   opts_.min_ttl.count(), "s, ",
                                                   opts_.max_ttl.count(), "s]"));
  }
  // Back-date a minute for clock skew between weftd and the nodes, keeping the full ttl ahead.
  auto nb = Now() - std::chrono::minutes(1);
  WEFT_ASSIGN_OR_RETURN(tls::X509Ptr leaf,
                        ca_.Sign(csr->get(), *id, ttl + std::chrono::minutes(1), nb));
  std::vector<std::string> out;
  WEFT_ASSIGN_OR_RETURN(std::string leaf_pem, tls::CertToPem(leaf.get()));
  out.push_back(std::move(leaf_pem));
  // Our own CA cert is an intermediate unless it is the root itself.
  for (const auto& p : ca_.chain_pem()) out.push_back(p);
  return out;
}

absl::StatusOr<Issuer::ServingCert> Issuer::IssueServingCert(
    const std::vector<std::string>& dns_names, std::chrono::seconds ttl) const {
  WEFT_ASSIGN_OR_RETURN(tls::EvpPkeyPtr key, tls::GenerateKey());
  SpiffeId self{opts_.trust_domain, "weft-system", "weftd"};
  WEFT_ASSIGN_OR_RETURN(tls::X509ReqPtr csr, tls::MakeCsr(key.get(), self));
  WEFT_ASSIGN_OR_RETURN(tls::X509Ptr leaf, ca_.SignWithSans(csr.get(), {self.ToString()}, dns_names,
                                                            ttl + std::chrono::minutes(1),
                                                            Now() - std::chrono::minutes(1)));
  ServingCert out;
  WEFT_ASSIGN_OR_RETURN(out.key_pem, tls::KeyToPem(key.get()));
  WEFT_ASSIGN_OR_RETURN(out.chain_pem, tls::CertToPem(leaf.get()));
  const auto& chain = ca_.chain_pem();
  // Present leaf + intermediates; the root is what clients already trust.
  for (size_t i = 0; i + 1 < chain.size(); ++i) out.chain_pem += chain[i];
  return out;
}

}  // namespace weft::cp
