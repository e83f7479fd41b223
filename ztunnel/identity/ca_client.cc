#include "ztunnel/identity/ca_client.h"

#include <openssl/err.h>
#include <prometheus/family.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#include "weft/ca/v1/ca.pb.h"

namespace weft::ztunnel {
namespace {

using std::chrono::system_clock;

int64_t UnixSeconds(system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

constexpr const char* kCreateCertificate = "/weft.ca.v1.CertificateService/CreateCertificate";

}  // namespace

std::function<absl::StatusOr<std::string>()> TokenFromFile(std::string path) {
  return [path = std::move(path)]() -> absl::StatusOr<std::string> {
    auto t = tls::ReadFile(path);
    if (!t.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("reading the node token ", path, ": ", t.status().message()));
    }
    return std::string(absl::StripAsciiWhitespace(*t));
  };
}

CaCertificateProvider::CaCertificateProvider(CaClientOptions opts) : opts_(std::move(opts)) {}

absl::StatusOr<std::unique_ptr<CaCertificateProvider>> CaCertificateProvider::Create(
    CaClientOptions opts) {
  if (opts.address.empty()) {
    return absl::InvalidArgumentError("CA client: no CA address (host:port of weftd)");
  }
  if (opts.node.empty()) return absl::InvalidArgumentError("CA client: no node name");
  if (opts.initial_backoff.count() <= 0 || opts.max_backoff < opts.initial_backoff) {
    return absl::InvalidArgumentError(
        "CA client: backoff must satisfy 0 < initial_backoff <= max_backoff");
  }
  std::unique_ptr<CaCertificateProvider> p(new CaCertificateProvider(std::move(opts)));
  const CaClientOptions& o = p->opts_;
  p->channel_.target = o.address;
  WEFT_RETURN_IF_ERROR(
      WithContext(grpc_client::ParseTarget(o.address).status(), "CA client: CA address"));
  if (!o.root_pem.empty()) {
    auto roots = tls::CertsFromPem(o.root_pem);
    if (!roots.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("CA client: mesh root PEM: ", roots.status().message()));
    }
    p->roots_ = std::move(*roots);
    p->channel_.root_pem = o.root_pem;
    p->channel_.tls_server_name = o.tls_server_name;
  }
  if (o.jitter_seed != 0) {
    p->rng_.seed(o.jitter_seed);
  } else {
    p->rng_.seed(std::random_device{}());
  }
  if (o.metrics != nullptr) {
    p->requests_ = &prometheus::BuildCounter()
                        .Name("weft_ca_client_requests_total")
                        .Help("Certificate requests this node sent to weftd's CA, by result")
                        .Register(*o.metrics->registry());
  }
  return p;
}

CaCertificateProvider::~CaCertificateProvider() {
  Stop();
}

system_clock::time_point CaCertificateProvider::Now() const {
  return opts_.clock ? opts_.clock() : system_clock::now();
}

absl::StatusOr<std::shared_ptr<const CertBundle>> CaCertificateProvider::Fetch(const SpiffeId& id) {
  WEFT_ASSIGN_OR_RETURN(tls::EvpPkeyPtr key, tls::GenerateKey());
  WEFT_ASSIGN_OR_RETURN(tls::X509ReqPtr csr, tls::MakeCsr(key.get(), id));
  weft::ca::v1::CertificateRequest req;
  WEFT_ASSIGN_OR_RETURN(*req.mutable_csr_pem(), tls::CsrToPem(csr.get()));
  req.set_identity(id.ToString());
  req.set_validity_seconds(opts_.ttl.count());
  req.set_node(opts_.node);

  grpc_client::Metadata md;
  if (opts_.token) {
    WEFT_ASSIGN_OR_RETURN(std::string token, opts_.token());
    md.emplace_back("authorization", absl::StrCat("Bearer ", token));
  }
  weft::ca::v1::CertificateResponse resp;
  grpc_client::UnaryOptions uo;
  uo.timeout = opts_.rpc_timeout;
  uo.wait_for_ready = true;
  uo.max_reconnect_backoff = opts_.max_reconnect_backoff;
  absl::Status st = grpc_client::UnaryCall(channel_, kCreateCertificate, md, req, &resp, uo);
  if (!st.ok()) {
    return absl::Status(st.code(),
                        absl::StrCat("CA ", opts_.address, " refused or failed: ", st.message()));
  }
  if (resp.cert_chain_pem_size() < 2) {
    return absl::InternalError("CA returned fewer than two certificates (expected leaf ... root)");
  }

  auto bundle = std::make_shared<CertBundle>();
  bundle->identity = id;
  bundle->key = std::move(key);
  std::vector<tls::X509Ptr> certs;
  for (const auto& pem : resp.cert_chain_pem()) {
    auto c = tls::CertFromPem(pem);
    if (!c.ok()) {
      return absl::InternalError(
          absl::StrCat("CA returned a bad certificate: ", c.status().message()));
    }
    certs.push_back(std::move(*c));
  }
  bundle->leaf = std::move(certs.front());
  for (size_t i = 1; i + 1 < certs.size(); ++i)
    bundle->intermediates.push_back(std::move(certs[i]));
  if (roots_.empty()) {
    bundle->roots.push_back(std::move(certs.back()));
  } else {
    for (const auto& r : roots_) bundle->roots.emplace_back(X509_dup(r.get()));
  }

  auto leaf_id = tls::CertSpiffeId(bundle->leaf.get());
  if (!leaf_id.ok() || !(*leaf_id == id)) {
    return absl::InternalError(absl::StrCat("CA issued a certificate for ",
                                            leaf_id.ok() ? leaf_id->ToString() : "no identity",
                                            " instead of ", id.ToString()));
  }
  if (X509_check_private_key(bundle->leaf.get(), bundle->key.get()) != 1) {
    ERR_clear_error();
    return absl::InternalError("CA returned a certificate for a different key");
  }
  // Validity is checked against our (possibly injected) clock below, not OpenSSL's.
  absl::Status vs =
      tls::VerifyChain(bundle->leaf.get(), bundle->intermediates, bundle->roots, false);
  if (!vs.ok()) {
    return absl::InternalError(
        absl::StrCat("issued chain does not verify against the mesh roots: ", vs.message()));
  }
  tls::Validity v = tls::CertValidity(bundle->leaf.get());
  bundle->not_after = v.not_after;
  if (v.not_after <= Now()) return absl::InternalError("CA issued an already expired certificate");
  return std::shared_ptr<const CertBundle>(std::move(bundle));
}

void CaCertificateProvider::Record(const std::string& key,
                                   absl::StatusOr<std::shared_ptr<const CertBundle>>& r) {
  State& e = entries_[key];
  auto now = Now();
  if (requests_ != nullptr) requests_->Add({{"result", r.ok() ? "ok" : "error"}}).Increment();
  if (r.ok()) {
    e.bundle = *r;
    tls::Validity v = tls::CertValidity((*r)->leaf.get());
    e.refresh_at = v.not_before + (v.not_after - v.not_before) / 2;
    e.failures = 0;
    e.next_attempt = {};
    e.last_error = absl::OkStatus();
    if (opts_.metrics != nullptr) {
      opts_.metrics->cert_expiry(key).Set(static_cast<double>(UnixSeconds(v.not_after)));
    }
    LOG_INFO("identity", "certificate issued by CA",
             {{"identity", key}, {"not_after", UnixSeconds(v.not_after)}});
    return;
  }
  e.failures++;
  e.last_error = r.status();
  auto base = opts_.initial_backoff;
  for (int i = 1; i < e.failures && base < opts_.max_backoff; ++i) base *= 2;
  base = std::min(base, opts_.max_backoff);
  // Jitter in [base/2, base]: nodes that lost the CA together do not come back in lockstep.
  std::uniform_int_distribution<int64_t> dist(base.count() / 2, base.count());
  auto delay = std::chrono::milliseconds(dist(rng_));
  e.next_attempt = now + delay;
  LOG_WARN("identity", "certificate request failed",
           {{"identity", key},
            {"failures", e.failures},
            {"retry_in_ms", delay.count()},
            {"serving_old_cert", e.bundle != nullptr && e.bundle->not_after > now},
            {"error", std::string(r.status().message())}});
}

std::shared_ptr<std::mutex> CaCertificateProvider::FetchLock(const std::string& key) {
  auto& l = fetch_locks_[key];
  if (!l) l = std::make_shared<std::mutex>();
  return l;
}

std::optional<absl::StatusOr<std::shared_ptr<const CertBundle>>> CaCertificateProvider::Cached(
    const std::string& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  auto now = Now();
  const State& e = it->second;
  if (e.bundle && e.bundle->not_after > now) return e.bundle;
  if (e.failures > 0 && now < e.next_attempt) {
    return absl::UnavailableError(absl::StrCat(
        "no valid certificate for ", key, " (CA unreachable, retrying): ", e.last_error.message()));
  }
  return std::nullopt;
}

absl::StatusOr<std::shared_ptr<const CertBundle>> CaCertificateProvider::Get(const SpiffeId& id) {
  std::string key = id.ToString();
  std::shared_ptr<std::mutex> fetch_lock;
  {
    std::lock_guard l(mu_);
    if (auto c = Cached(key)) return *c;
    fetch_lock = FetchLock(key);
  }
  std::lock_guard fl(*fetch_lock);
  {
    // Another caller may have fetched (or failed) while we waited for the fetch lock.
    std::lock_guard l(mu_);
    if (auto c = Cached(key)) return *c;
  }
  auto r = Fetch(id);
  std::lock_guard l(mu_);
  Record(key, r);
  if (!r.ok()) return r.status();
  return *r;
}

int CaCertificateProvider::RenewDue() {
  std::vector<std::string> due;
  {
    std::lock_guard l(mu_);
    auto now = Now();
    for (const auto& [k, e] : entries_) {
      if (now >= e.refresh_at && now >= e.next_attempt) due.push_back(k);
    }
  }
  int ok = 0;
  for (const auto& k : due) {
    auto id = SpiffeId::Parse(k);
    if (!id.ok()) continue;
    std::shared_ptr<std::mutex> fetch_lock;
    {
      std::lock_guard l(mu_);
      fetch_lock = FetchLock(k);
    }
    std::lock_guard fl(*fetch_lock);
    {
      std::lock_guard l(mu_);
      auto it = entries_.find(k);
      auto now = Now();
      // Forgotten, or renewed by a Get, while we waited.
      if (it == entries_.end() || now < it->second.refresh_at || now < it->second.next_attempt) {
        continue;
      }
    }
    auto r = Fetch(*id);
    std::lock_guard l(mu_);
    if (!entries_.count(k)) continue;  // forgotten meanwhile
    Record(k, r);
    if (r.ok()) ++ok;
  }
  return ok;
}

void CaCertificateProvider::Forget(const SpiffeId& id) {
  std::lock_guard l(mu_);
  entries_.erase(id.ToString());
  fetch_locks_.erase(id.ToString());
}

std::optional<CaCertificateProvider::State> CaCertificateProvider::StateOf(const SpiffeId& id) {
  std::lock_guard l(mu_);
  auto it = entries_.find(id.ToString());
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

void CaCertificateProvider::Start() {
  std::lock_guard l(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] {
    std::unique_lock l(mu_);
    while (!stop_) {
      l.unlock();
      RenewDue();
      l.lock();
      cv_.wait_for(l, opts_.poll_interval, [this] { return stop_; });
    }
  });
}

void CaCertificateProvider::Stop() {
  {
    std::lock_guard l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace weft::ztunnel
