#include "common/k8s/endpoint.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <exception>
#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/file.h"
#include "common/status.h"

namespace weft::k8s {
namespace {

std::string Resolve(const std::string& base_dir, const std::string& p) {
  if (p.empty() || p.front() == '/' || base_dir.empty()) return p;
  return (std::filesystem::path(base_dir) / p).string();
}

std::string Scalar(const YAML::Node& n, const char* key) {
  if (!n || !n.IsMap() || !n[key] || !n[key].IsScalar()) return "";
  return n[key].as<std::string>();
}

absl::StatusOr<std::string> DecodeData(const std::string& b64, std::string_view field,
                                       std::string_view origin) {
  std::string out;
  if (!absl::Base64Unescape(b64, &out)) {
    return absl::InvalidArgumentError(
        absl::StrCat(Av(origin), ": ", Av(field), " is not valid base64"));
  }
  return out;
}

// kubeconfig lists are [{name: x, <entry>: {...}}]; returns the <entry> map of `name`.
absl::StatusOr<YAML::Node> FindNamed(const YAML::Node& root, const char* list, const char* entry,
                                     const std::string& name, std::string_view origin) {
  const YAML::Node items = root[list];
  if (items && items.IsSequence()) {
    for (const auto& item : items) {
      if (item.IsMap() && Scalar(item, "name") == name) {
        YAML::Node e = item[entry];
        if (!e || !e.IsMap()) {
          return absl::InvalidArgumentError(
              absl::StrCat(Av(origin), ": ", list, " entry '", name, "' has no '", entry, "' map"));
        }
        return e;
      }
    }
  }
  return absl::NotFoundError(absl::StrCat(Av(origin), ": no ", list, " entry named '", name, "'"));
}

}  // namespace

absl::StatusOr<Endpoint> InClusterEndpoint(std::string_view sa_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    return absl::FailedPreconditionError(
        "not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are "
        "not set; pass --kubeconfig or run in the cluster");
  }
  Endpoint ep;
  std::string h = host;
  if (h.find(':') != std::string::npos) h = absl::StrCat("[", h, "]");  // IPv6 literal
  ep.server = absl::StrCat("https://", h, ":", port);
  std::string dir(sa_dir);
  ep.token_file = dir + "/token";
  ep.ca_file = dir + "/ca.crt";
  ep.origin = "in-cluster";
  // Fail early with a clear message rather than at the first request.
  WEFT_RETURN_IF_ERROR(
      WithContext(ReadFile(ep.token_file).status(), "reading the service account token"));
  WEFT_RETURN_IF_ERROR(
      WithContext(ReadFile(ep.ca_file).status(), "reading the service account CA bundle"));
  return ep;
}

absl::StatusOr<Endpoint> EndpointFromKubeconfigText(std::string_view yaml,
                                                    const std::string& base_dir,
                                                    std::string_view context,
                                                    std::string_view origin_sv) {
  std::string origin(origin_sv);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": not valid YAML: ", e.what()));
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": not a kubeconfig (expected a map)"));
  }
  try {
    std::string ctx_name(context);
    if (ctx_name.empty()) ctx_name = Scalar(root, "current-context");
    if (ctx_name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ": no current-context; set one (kubectl config use-context) or name a context"));
    }
    WEFT_ASSIGN_OR_RETURN(YAML::Node ctx, FindNamed(root, "contexts", "context", ctx_name, origin));
    const std::string cluster_name = Scalar(ctx, "cluster");
    const std::string user_name = Scalar(ctx, "user");
    if (cluster_name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": context '", ctx_name, "' names no cluster"));
    }
    WEFT_ASSIGN_OR_RETURN(YAML::Node cluster,
                          FindNamed(root, "clusters", "cluster", cluster_name, origin));
    Endpoint ep;
    ep.origin = absl::StrCat(origin, " context ", ctx_name);
    ep.server = Scalar(cluster, "server");
    if (ep.server.rfind("https://", 0) != 0 && ep.server.rfind("http://", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ": cluster '", cluster_name, "' server '", ep.server, "' is not an http(s) URL"));
    }
    while (!ep.server.empty() && ep.server.back() == '/') ep.server.pop_back();
    if (std::string d = Scalar(cluster, "certificate-authority-data"); !d.empty()) {
      WEFT_ASSIGN_OR_RETURN(ep.ca_pem, DecodeData(d, "certificate-authority-data", origin));
    } else if (std::string f = Scalar(cluster, "certificate-authority"); !f.empty()) {
      ep.ca_file = Resolve(base_dir, f);
    }
    ep.insecure_skip_tls_verify = Scalar(cluster, "insecure-skip-tls-verify") == "true";

    if (!user_name.empty()) {
      WEFT_ASSIGN_OR_RETURN(YAML::Node user, FindNamed(root, "users", "user", user_name, origin));
      if (user["exec"] || user["auth-provider"]) {
        return absl::UnimplementedError(absl::StrCat(
            origin, ": user '", user_name,
            "' uses an exec/auth-provider plugin, which Weft does not run; use a user with a "
            "token, tokenFile or client certificate (e.g. a ServiceAccount token)"));
      }
      ep.token = Scalar(user, "token");
      if (std::string f = Scalar(user, "tokenFile"); !f.empty()) {
        ep.token_file = Resolve(base_dir, f);
      }
      if (std::string d = Scalar(user, "client-certificate-data"); !d.empty()) {
        WEFT_ASSIGN_OR_RETURN(ep.client_cert_pem, DecodeData(d, "client-certificate-data", origin));
      } else if (std::string f = Scalar(user, "client-certificate"); !f.empty()) {
        ep.client_cert_file = Resolve(base_dir, f);
      }
      if (std::string d = Scalar(user, "client-key-data"); !d.empty()) {
        WEFT_ASSIGN_OR_RETURN(ep.client_key_pem, DecodeData(d, "client-key-data", origin));
      } else if (std::string f = Scalar(user, "client-key"); !f.empty()) {
        ep.client_key_file = Resolve(base_dir, f);
      }
      const bool has_cert = !ep.client_cert_pem.empty() || !ep.client_cert_file.empty();
      const bool has_key = !ep.client_key_pem.empty() || !ep.client_key_file.empty();
      if (has_cert != has_key) {
        return absl::InvalidArgumentError(absl::StrCat(
            origin, ": user '", user_name,
            "' has a client certificate without a key or a key without a certificate"));
      }
    }
    return ep;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": malformed kubeconfig: ", e.what()));
  }
}

absl::StatusOr<Endpoint> EndpointFromKubeconfig(const std::string& path, std::string_view context) {
  auto text = ReadFile(path);
  if (!text.ok()) return WithContext(text.status(), "reading the kubeconfig");
  std::string dir = std::filesystem::path(path).parent_path().string();
  return EndpointFromKubeconfigText(*text, dir, context, absl::StrCat("kubeconfig ", path));
}

Endpoint PlainEndpoint(std::string base_url) {
  Endpoint ep;
  while (!base_url.empty() && base_url.back() == '/') base_url.pop_back();
  ep.server = std::move(base_url);
  ep.origin = absl::StrCat("plain ", ep.server);
  return ep;
}

absl::StatusOr<Endpoint> ResolveEndpoint(std::string_view server_override,
                                         const std::string& kubeconfig) {
  if (!server_override.empty()) return PlainEndpoint(std::string(server_override));
  std::string path = kubeconfig;
  if (path.empty()) {
    if (const char* env = std::getenv("KUBECONFIG"); env != nullptr && *env != '\0') {
      path = env;
      // $KUBECONFIG may list several files; Weft uses the first (no merging).
      if (auto colon = path.find(':'); colon != std::string::npos) path.resize(colon);
    }
  }
  if (!path.empty()) return EndpointFromKubeconfig(path);
  return InClusterEndpoint();
}

}  // namespace weft::k8s
