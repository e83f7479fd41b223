// `weftctl dev-certs`: a development CA plus workload certificates laid out for
// ztunnel's FileCertificateProvider:
//
//   DIR/ca-key.pem, DIR/ca-cert.pem        the CA (created once, reused when both exist)
//   DIR/root-cert.pem                      the mesh root (trust anchor)
//   DIR/<namespace>/<sa>/cert-chain.pem    leaf (+ intermediates), SPIFFE URI SAN
//   DIR/<namespace>/<sa>/key.pem           P-256 private key (mode 0600)
#pragma once

#include <chrono>
#include <iosfwd>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/spiffe.h"

namespace weft::cli {

struct DevCertsOptions {
  std::string dir;
  std::string trust_domain = "cluster.local";
  std::chrono::seconds ttl = std::chrono::hours(24);
  std::vector<SpiffeId> identities;  // deduplicated, in argument order
  bool help = false;
};

// Parses `dev-certs` arguments (without the command name). InvalidArgument = usage error.
absl::StatusOr<DevCertsOptions> ParseDevCertsArgs(const std::vector<std::string>& args);

// Parses "30s", "90m", "24h", "1h30m" (absl duration syntax) or "<N>d" days; must be >= 1s.
absl::StatusOr<std::chrono::seconds> ParseTtl(std::string_view s);

// Creates/reuses the CA and writes the files; reports each written file on `out`.
absl::Status RunDevCerts(const DevCertsOptions& opts, std::ostream& out);

// Lifetime of a CA that dev-certs generates.
inline constexpr std::chrono::hours kDevCaLifetime{24 * 365 * 10};

// The CommandFn registered as "dev-certs".
int DevCertsMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace weft::cli
