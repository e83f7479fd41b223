#include "cli/dev_certs.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <ostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "common/file.h"
#include "common/flags.h"
#include "common/status.h"
#include "common/tls.h"
#include "ztunnel/identity/identity.h"

namespace weft::cli {
namespace {

constexpr char kDescription[] =
    "Creates a development root CA in DIR (or reuses DIR/ca-key.pem + DIR/ca-cert.pem when\n"
    "both exist), writes DIR/root-cert.pem, and issues one workload certificate per IDENTITY\n"
    "in the layout ztunnel's file certificate provider reads:\n"
    "  DIR/<namespace>/<serviceaccount>/cert-chain.pem\n"
    "  DIR/<namespace>/<serviceaccount>/key.pem";

// The parser: flags into `opts`, the identities and --ttl as given (checked after parsing).
std::unique_ptr<CLI::App> DevCertsApp(DevCertsOptions& opts, std::vector<std::string>& ids,
                                      std::string& ttl) {
  auto app = std::make_unique<CLI::App>(kDescription, "weftctl dev-certs");
  app->add_option("IDENTITY", ids,
                  "namespace/serviceaccount, e.g. default/web (SPIFFE ID\n"
                  "spiffe://DOMAIN/ns/default/sa/web)");
  app->add_option("--dir", opts.dir, "output directory (created if missing); required")
      ->type_name("DIR");
  app->add_option("--trust-domain", opts.trust_domain, "SPIFFE trust domain")
      ->type_name("DOMAIN")
      ->capture_default_str();
  app->add_option("--ttl", ttl, "workload certificate lifetime: 30m, 24h, 1h30m, 7d (default 24h)")
      ->type_name("DURATION");
  app->footer("Not for production: the CA key is stored unencrypted next to the certificates.");
  return app;
}

bool IsLowerAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

// Kubernetes names: a namespace is a DNS-1123 label, a service account a DNS-1123 subdomain.
absl::Status CheckDnsName(std::string_view what, std::string_view v, bool allow_dots,
                          size_t max_len) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(Av(what), " \"", Av(v), "\" ", Av(why)));
  };
  if (v.empty()) return bad("is empty");
  if (v.size() > max_len) return bad(absl::StrCat("is longer than ", max_len, " characters"));
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    bool edge = i == 0 || i + 1 == v.size() || v[i - 1] == '.' || v[i + 1] == '.';
    if (IsLowerAlnum(c)) continue;
    if (c == '-' && !edge) continue;
    if (c == '.' && allow_dots && !edge) continue;
    return bad(allow_dots ? "must be lowercase letters, digits, '-' and '.', starting and "
                            "ending with a letter or digit"
                          : "must be lowercase letters, digits and '-', starting and ending "
                            "with a letter or digit");
  }
  return absl::OkStatus();
}

absl::Status CheckTrustDomain(std::string_view td) {
  if (td.empty()) return absl::InvalidArgumentError("--trust-domain must not be empty");
  for (char c : td) {
    if (!IsLowerAlnum(c) && c != '.' && c != '-' && c != '_') {
      return absl::InvalidArgumentError(absl::StrCat(
          "--trust-domain \"", Av(td),
          "\" may contain only lowercase letters, digits, '.', '-' and '_' (e.g. cluster.local)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SpiffeId> ParseIdentity(std::string_view arg, const std::string& td) {
  size_t slash = arg.find('/');
  if (slash == std::string_view::npos || arg.find('/', slash + 1) != std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "identity \"", Av(arg), "\" must be namespace/serviceaccount, e.g. default/web"));
  }
  std::string_view ns = arg.substr(0, slash), sa = arg.substr(slash + 1);
  WEFT_RETURN_IF_ERROR(CheckDnsName("namespace", ns, /*allow_dots=*/false, 63));
  WEFT_RETURN_IF_ERROR(CheckDnsName("service account", sa, /*allow_dots=*/true, 253));
  SpiffeId id{td, std::string(ns), std::string(sa)};
  WEFT_RETURN_IF_ERROR(SpiffeId::Parse(id.ToString()).status());
  return id;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

absl::StatusOr<tls::CertificateAuthority> LoadOrCreateCa(const std::string& dir,
                                                         std::ostream& out) {
  const std::string key_path = dir + "/ca-key.pem";
  const std::string cert_path = dir + "/ca-cert.pem";
  bool have_key = Exists(key_path), have_cert = Exists(cert_path);
  if (have_key && have_cert) {
    WEFT_ASSIGN_OR_RETURN(std::string cert_pem, ReadFile(cert_path));
    WEFT_ASSIGN_OR_RETURN(std::string key_pem, ReadFile(key_path));
    auto ca = tls::CertificateAuthority::FromPem(cert_pem, key_pem);
    if (!ca.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot use the existing CA in ", dir, ": ", ca.status().message(),
          "; fix the files or delete ca-key.pem and ca-cert.pem to generate a new CA"));
    }
    if (tls::CertValidity(ca->cert()).not_after <= std::chrono::system_clock::now()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the CA in ", cert_path,
                       " has expired; delete ca-key.pem and ca-cert.pem to generate a new one"));
    }
    out << "reusing CA " << cert_path << "\n";
    return ca;
  }
  if (have_key != have_cert) {
    return absl::FailedPreconditionError(absl::StrCat(
        have_key ? key_path : cert_path, " exists but ", have_key ? cert_path : key_path,
        " is missing; restore it, or delete the other one to generate a new CA"));
  }
  WEFT_ASSIGN_OR_RETURN(auto ca, tls::CertificateAuthority::CreateRoot("weft-dev", kDevCaLifetime));
  WEFT_ASSIGN_OR_RETURN(std::string key_pem, ca.KeyPem());
  // Key before cert: a crash in between leaves "key without cert", which the next run reports.
  WEFT_RETURN_IF_ERROR(WriteFileAtomic(key_path, key_pem, 0600));
  WEFT_RETURN_IF_ERROR(WriteFileAtomic(cert_path, ca.root_pem(), 0644));
  out << "created CA " << cert_path << " (key " << key_path << ")\n";
  return ca;
}

}  // namespace

absl::StatusOr<std::chrono::seconds> ParseTtl(std::string_view s) {
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("--ttl \"", Av(s), "\" is not a duration; use e.g. 30m, 24h, 1h30m or 7d"));
  };
  std::chrono::seconds secs;
  int64_t days = 0;
  if (!s.empty() && s.back() == 'd' && absl::SimpleAtoi(Av(s.substr(0, s.size() - 1)), &days)) {
    if (days <= 0 || days > 3650) return bad();
    secs = std::chrono::hours(24) * days;
  } else {
    absl::Duration d;
    if (!absl::ParseDuration(Av(s), &d)) return bad();
    secs = std::chrono::seconds(absl::ToInt64Seconds(d));
  }
  if (secs < std::chrono::seconds(1))
    return absl::InvalidArgumentError(absl::StrCat("--ttl \"", Av(s), "\" must be at least 1s"));
  return secs;
}

absl::StatusOr<DevCertsOptions> ParseDevCertsArgs(const std::vector<std::string>& args) {
  DevCertsOptions opts;
  std::vector<std::string> positional;
  std::string ttl;
  auto app = DevCertsApp(opts, positional, ttl);
  if (absl::Status st = ParseArgs(*app, args); !st.ok()) {
    if (!absl::IsCancelled(st)) return st;
    opts.help = true;
    return opts;
  }
  if (opts.dir.empty()) return absl::InvalidArgumentError("--dir DIR is required");
  WEFT_RETURN_IF_ERROR(CheckTrustDomain(opts.trust_domain));
  if (app->count("--ttl") > 0) {
    WEFT_ASSIGN_OR_RETURN(opts.ttl, ParseTtl(ttl));
  }
  if (positional.empty()) {
    return absl::InvalidArgumentError(
        "at least one IDENTITY (namespace/serviceaccount) is required");
  }
  for (const auto& p : positional) {
    WEFT_ASSIGN_OR_RETURN(SpiffeId id, ParseIdentity(p, opts.trust_domain));
    if (std::find(opts.identities.begin(), opts.identities.end(), id) == opts.identities.end())
      opts.identities.push_back(std::move(id));
  }
  return opts;
}

absl::Status RunDevCerts(const DevCertsOptions& opts, std::ostream& out) {
  std::error_code ec;
  std::filesystem::create_directories(opts.dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create --dir ", opts.dir, ": ", ec.message()));
  }
  WEFT_ASSIGN_OR_RETURN(auto ca, LoadOrCreateCa(opts.dir, out));
  auto ca_not_after = tls::CertValidity(ca.cert()).not_after;
  if (ca_not_after < std::chrono::system_clock::now() + opts.ttl) {
    out << "note: the CA expires before --ttl ends; certificates end with the CA\n";
  }
  WEFT_RETURN_IF_ERROR(ztunnel::WriteRootFile(opts.dir, ca));
  out << "wrote " << opts.dir << "/root-cert.pem\n";
  ztunnel::FileCertificateProvider check(opts.dir);
  for (const auto& id : opts.identities) {
    WEFT_RETURN_IF_ERROR(ztunnel::WriteCertFiles(opts.dir, ca, id, opts.ttl));
    // Read back through the same code ztunnel uses, so a bad layout fails here, not there.
    auto loaded = check.Get(id);
    if (!loaded.ok()) {
      return absl::InternalError(
          absl::StrCat("wrote certificates for ", id.ToString(),
                       " but they do not load: ", loaded.status().message()));
    }
    out << "wrote " << opts.dir << "/" << id.ns << "/" << id.service_account
        << "/{cert-chain.pem,key.pem} for " << id.ToString() << "\n";
  }
  return absl::OkStatus();
}

int DevCertsMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  auto opts = ParseDevCertsArgs(args);
  if (!opts.ok()) {
    err << "weftctl dev-certs: " << opts.status().message() << "\n"
        << "Run 'weftctl dev-certs --help'.\n";
    return kExitUsage;
  }
  if (opts->help) {
    DevCertsOptions unused;
    std::vector<std::string> ids;
    std::string ttl;
    out << DevCertsApp(unused, ids, ttl)->help();
    return kExitOk;
  }
  auto st = RunDevCerts(*opts, out);
  if (!st.ok()) {
    err << "weftctl dev-certs: " << st.message() << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace weft::cli
