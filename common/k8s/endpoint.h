// Where the Kubernetes API server is and how a Weft component (weftd, weft-agent) authenticates
// to it.
//
// Three ways to get an Endpoint:
//   - InClusterEndpoint(): KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT and the pod's
//     service account (token, ca.crt) under /var/run/secrets/kubernetes.io/serviceaccount.
//     The token is projected and rotated by the kubelet, so it is kept as a file path and
//     re-read by RestClient (see RestOptions::token_reread).
//   - EndpointFromKubeconfig(): a kubeconfig file's current context (or a named one): cluster
//     server, certificate-authority(-data), insecure-skip-tls-verify; user token / tokenFile,
//     client-certificate(-data) + client-key(-data). exec and auth-provider plugins are not
//     supported (clear error). Relative file paths are relative to the kubeconfig's directory.
//   - PlainEndpoint(): a base URL used as-is with no credentials (tests, kubectl proxy).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace weft::k8s {

struct Endpoint {
  std::string server;  // "https://10.96.0.1:443" or "http://127.0.0.1:8001"; no trailing '/'
  // Trust: PEM bundle content, or a file path (content wins when both are set). Neither: the
  // system trust store.
  std::string ca_pem;
  std::string ca_file;
  bool insecure_skip_tls_verify = false;
  // Bearer token: literal, or a file re-read periodically (file wins when both are set).
  std::string token;
  std::string token_file;
  // TLS client certificate: PEM content or file paths.
  std::string client_cert_pem;
  std::string client_cert_file;
  std::string client_key_pem;
  std::string client_key_file;
  // Human-readable origin for logs and errors: "in-cluster", "kubeconfig <path> context <c>".
  std::string origin;
};

inline constexpr std::string_view kServiceAccountDir =
    "/var/run/secrets/kubernetes.io/serviceaccount";

// In-cluster configuration. `sa_dir` holds `token` and `ca.crt`.
absl::StatusOr<Endpoint> InClusterEndpoint(std::string_view sa_dir = kServiceAccountDir);

// Parses a kubeconfig file. `context` empty means current-context.
absl::StatusOr<Endpoint> EndpointFromKubeconfig(const std::string& path,
                                                std::string_view context = "");

// Parses kubeconfig YAML text; `base_dir` resolves relative file paths.
absl::StatusOr<Endpoint> EndpointFromKubeconfigText(std::string_view yaml,
                                                    const std::string& base_dir,
                                                    std::string_view context = "",
                                                    std::string_view origin = "kubeconfig");

// A base URL used verbatim, no credentials (tests, `kubectl proxy`).
Endpoint PlainEndpoint(std::string base_url);

// The usual choice (weftd, weft-agent): `server_override` if set, else `kubeconfig` (or
// $KUBECONFIG) if set, else in-cluster.
absl::StatusOr<Endpoint> ResolveEndpoint(std::string_view server_override,
                                         const std::string& kubeconfig);

}  // namespace weft::k8s
