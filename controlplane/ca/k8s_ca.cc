#include "controlplane/ca/k8s_ca.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "controlplane/k8s/token_review.h"
#include "nlohmann/json.hpp"

namespace weft::cp {
namespace {

constexpr std::chrono::seconds kTimeout{10};

absl::Status HttpError(const k8s::HttpResponse& r, std::string_view what, std::string_view verb) {
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
                                                    Av(verb), "' on secrets in its namespace"));
  }
  return absl::UnavailableError(absl::StrCat(Av(what), ": HTTP ", r.status, ": ", message));
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
  WEFT_ASSIGN_OR_RETURN(k8s::HttpResponse r, client_->Get(path, kTimeout));
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
  WEFT_ASSIGN_OR_RETURN(k8s::HttpResponse r, client_->Post(path, body.dump(), kTimeout));
  if (r.status == 200 || r.status == 201) return absl::OkStatus();
  if (r.status == 409) return absl::AlreadyExistsError(absl::StrCat(Describe(), " exists"));
  return HttpError(r, absl::StrCat("creating ", Describe()), "create");
}

TokenReviewer KubernetesTokenReviewer(k8s::RestClient* client, std::vector<std::string> audiences) {
  return [client, audiences = std::move(audiences)](
             std::string_view token) -> absl::StatusOr<ReviewedToken> {
    auto r = k8s::ReviewToken(*client, token, audiences);
    if (!r.ok()) {
      return absl::UnavailableError(absl::StrCat("TokenReview: ", r.status().message()));
    }
    if (!r->authenticated) {
      return absl::UnauthenticatedError(r->error.empty() ? "token not authenticated" : r->error);
    }
    ReviewedToken out{r->username, std::nullopt};
    if (auto it = r->extra.find("authentication.kubernetes.io/node-name");
        it != r->extra.end() && !it->second.empty()) {
      out.node_name = it->second.front();
    }
    return out;
  };
}

}  // namespace weft::cp
