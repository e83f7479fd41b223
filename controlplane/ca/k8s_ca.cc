#include "controlplane/ca/k8s_ca.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "controlplane/k8s/token_review.h"
#include "nlohmann/json.hpp"

namespace weft::cp {
namespace {

constexpr std::chrono::seconds kTimeout{10};

absl::Status HttpError(const k8s::HttpResponse& r, std::string_view what, std::string_view verb,
                       std::string_view resource = "secrets") {
  std::string message = r.body.substr(0, 300);
  if (auto j = nlohmann::json::parse(r.body, nullptr, false);
      j.is_object() && j.contains("message") && j["message"].is_string()) {
    message = j["message"].get<std::string>();
  }
  if (r.status == 401) {
    return absl::UnauthenticatedError(
        absl::StrCat(Av(what), ": the API server rejected weftd's credentials: ", message));
  }
  if (r.status == 403) {
    return absl::PermissionDeniedError(absl::StrCat(Av(what), ": ", message, "; grant weftd '",
                                                    Av(verb), "' on ", Av(resource),
                                                    " in its namespace"));
  }
  return absl::UnavailableError(absl::StrCat(Av(what), ": HTTP ", r.status, ": ", message));
}

// A request that got no HTTP answer at all.
absl::Status Unreachable(const absl::Status& s, std::string_view what) {
  return absl::Status(s.code(),
                      absl::StrCat(Av(what), ": cannot reach the API server: ", s.message(),
                                   " (check --api-server / --kubeconfig, or the "
                                   "in-cluster KUBERNETES_SERVICE_HOST)"));
}

// Get/Post/Put with transport failures described as such.
template <typename Call>
absl::StatusOr<k8s::HttpResponse> Request(Call call, std::string_view what) {
  absl::StatusOr<k8s::HttpResponse> r = call();
  if (!r.ok()) return Unreachable(r.status(), what);
  return r;
}

}  // namespace

KubernetesSecretRootStore::KubernetesSecretRootStore(k8s::RestClient* client, std::string ns,
                                                     std::string name)
    : client_(client), ns_(std::move(ns)), name_(std::move(name)) {}

std::string KubernetesSecretRootStore::Describe() const {
  return absl::StrCat("Secret ", ns_, "/", name_);
}

absl::StatusOr<std::optional<StoredRoot>> KubernetesSecretRootStore::Load() {
  std::string path =
      absl::StrCat("/api/v1/namespaces/", k8s::UrlEncode(ns_), "/secrets/", k8s::UrlEncode(name_));
  WEFT_ASSIGN_OR_RETURN(k8s::HttpResponse r, Request([&] { return client_->Get(path, kTimeout); },
                                                     absl::StrCat("reading ", Describe())));
  if (r.status == 404) return std::optional<StoredRoot>();
  if (r.status != 200) return HttpError(r, absl::StrCat("reading ", Describe()), "get");
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (!j.is_object() || !j.contains("data") || !j["data"].is_object()) {
    return absl::FailedPreconditionError(
        absl::StrCat(Describe(), " has no data; delete it to generate a new root"));
  }
  StoredRoot out;
  for (auto [key, field] : {std::pair{kCertKey, &out.cert_pem}, std::pair{kKeyKey, &out.key_pem}}) {
    const auto& d = j["data"];
    if (!d.contains(key) || !d[key].is_string() ||
        !absl::Base64Unescape(d[key].get<std::string>(), field)) {
      return absl::FailedPreconditionError(absl::StrCat(
          Describe(), " lacks a valid base64 \"", key,
          "\"; restore it, or delete the Secret to generate a new root (every workload "
          "certificate must then be reissued)"));
    }
  }
  return std::optional<StoredRoot>(std::move(out));
}

absl::Status KubernetesSecretRootStore::Create(const StoredRoot& root) {
  nlohmann::json body = {
      {"apiVersion", "v1"},
      {"kind", "Secret"},
      {"type", "Opaque"},
      {"metadata",
       {{"name", name_},
        {"namespace", ns_},
        {"labels", {{"app.kubernetes.io/managed-by", "weftd"}}}}},
      {"data",
       {{kCertKey, absl::Base64Escape(root.cert_pem)},
        {kKeyKey, absl::Base64Escape(root.key_pem)}}},
  };
  std::string path = absl::StrCat("/api/v1/namespaces/", k8s::UrlEncode(ns_), "/secrets");
  WEFT_ASSIGN_OR_RETURN(k8s::HttpResponse r,
                        Request([&] { return client_->Post(path, body.dump(), kTimeout); },
                                absl::StrCat("creating ", Describe())));
  if (r.status == 200 || r.status == 201) return absl::OkStatus();
  if (r.status == 409) return absl::AlreadyExistsError(absl::StrCat(Describe(), " exists"));
  return HttpError(r, absl::StrCat("creating ", Describe()), "create");
}

absl::StatusOr<PublishResult> PublishRootCertConfigMap(k8s::RestClient* client,
                                                       const std::string& ns,
                                                       const std::string& root_pem,
                                                       const std::string& name) {
  const std::string collection =
      absl::StrCat("/api/v1/namespaces/", k8s::UrlEncode(ns), "/configmaps");
  const std::string path = absl::StrCat(collection, "/", k8s::UrlEncode(name));
  const std::string describe = absl::StrCat("ConfigMap ", ns, "/", name);
  for (int round = 0; round < 3; ++round) {
    WEFT_ASSIGN_OR_RETURN(
        k8s::HttpResponse got,
        Request([&] { return client->Get(path, kTimeout); }, absl::StrCat("reading ", describe)));
    if (got.status == 404) {
      nlohmann::json body = {
          {"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata",
           {{"name", name},
            {"namespace", ns},
            {"labels", {{"app.kubernetes.io/managed-by", "weftd"}}}}},
          {"data", {{kRootCertConfigMapKey, root_pem}}},
      };
      WEFT_ASSIGN_OR_RETURN(k8s::HttpResponse r,
                            Request([&] { return client->Post(collection, body.dump(), kTimeout); },
                                    absl::StrCat("creating ", describe)));
      if (r.status == 200 || r.status == 201) return PublishResult::kCreated;
      if (r.status == 409) continue;  // created meanwhile (another replica): compare it
      return HttpError(r, absl::StrCat("creating ", describe), "create", "configmaps");
    }
    if (got.status != 200) {
      return HttpError(got, absl::StrCat("reading ", describe), "get", "configmaps");
    }
    auto obj = nlohmann::json::parse(got.body, nullptr, false);
    if (!obj.is_object()) {
      return absl::UnavailableError(
          absl::StrCat("reading ", describe, ": the API server's reply is not a JSON object"));
    }
    if (obj.contains("data") && obj["data"].is_object() &&
        obj["data"].value(kRootCertConfigMapKey, "") == root_pem) {
      return PublishResult::kUnchanged;
    }
    if (!obj.contains("data") || !obj["data"].is_object()) obj["data"] = nlohmann::json::object();
    obj["data"][kRootCertConfigMapKey] = root_pem;
    obj["apiVersion"] = "v1";
    obj["kind"] = "ConfigMap";
    WEFT_ASSIGN_OR_RETURN(k8s::HttpResponse r,
                          Request([&] { return client->Put(path, obj.dump(), kTimeout); },
                                  absl::StrCat("updating ", describe)));
    if (r.status == 200 || r.status == 201) return PublishResult::kUpdated;
    if (r.status == 409) continue;  // resourceVersion moved on: read again
    return HttpError(r, absl::StrCat("updating ", describe), "update", "configmaps");
  }
  return absl::AbortedError(
      absl::StrCat("publishing ", describe,
                   ": it kept changing while weftd wrote it (409 Conflict three "
                   "times); is another program writing it?"));
}

TokenReviewer KubernetesTokenReviewer(k8s::RestClient* client, std::vector<std::string> audiences) {
  if (audiences.empty()) audiences = {kDefaultCaAudience};
  return [client, audiences = std::move(audiences)](
             std::string_view token) -> absl::StatusOr<ReviewedToken> {
    auto r = k8s::ReviewToken(*client, token, audiences);
    if (!r.ok()) {
      return absl::UnavailableError(absl::StrCat("TokenReview: ", r.status().message()));
    }
    if (!r->authenticated) {
      return absl::UnauthenticatedError(r->error.empty() ? "token not authenticated" : r->error);
    }
    ReviewedToken out{r->username, std::nullopt, std::nullopt, std::nullopt, r->audiences};
    auto first = [&](const char* key) -> std::optional<std::string> {
      auto it = r->extra.find(key);
      if (it == r->extra.end() || it->second.empty() || it->second.front().empty()) {
        return std::nullopt;
      }
      return it->second.front();
    };
    out.node_name = first("authentication.kubernetes.io/node-name");
    out.pod_name = first("authentication.kubernetes.io/pod-name");
    out.pod_uid = first("authentication.kubernetes.io/pod-uid");
    return out;
  };
}

}  // namespace weft::cp
