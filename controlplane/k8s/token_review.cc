#include "controlplane/k8s/token_review.h"

#include <exception>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace weft::cp::k8s {
namespace {

constexpr std::string_view kPath = "/apis/authentication.k8s.io/v1/tokenreviews";

std::string StatusMessage(const std::string& body) {
  // API errors are metav1.Status objects; fall back to the raw (truncated) body.
  auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) {
    return j["message"].get<std::string>();
  }
  return body.substr(0, 512);
}

std::vector<std::string> StringList(const nlohmann::json& j, std::string_view field) {
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (const auto& v : j) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

}  // namespace

nlohmann::json TokenReviewRequest(std::string_view token,
                                  const std::vector<std::string>& audiences) {
  nlohmann::json spec = {{"token", std::string(token)}};
  if (!audiences.empty()) spec["audiences"] = audiences;
  return {{"apiVersion", "authentication.k8s.io/v1"}, {"kind", "TokenReview"}, {"spec", spec}};
}

absl::StatusOr<TokenReviewResult> ParseTokenReviewResponse(std::string_view body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::InvalidArgumentError("TokenReview response is not a JSON object");
  }
  if (j.value("kind", "") != "TokenReview") {
    return absl::InvalidArgumentError(absl::StrCat(
        "TokenReview response has kind '", j.value("kind", ""), "', expected 'TokenReview'"));
  }
  const auto it = j.find("status");
  if (it == j.end() || !it->is_object()) {
    return absl::InvalidArgumentError("TokenReview response has no status");
  }
  const nlohmann::json& st = *it;
  TokenReviewResult r;
  if (st.contains("authenticated") && !st["authenticated"].is_boolean()) {
    return absl::InvalidArgumentError("TokenReview status.authenticated is not a boolean");
  }
  r.authenticated = st.value("authenticated", false);
  r.error = st.value("error", "");
  r.audiences = StringList(st.value("audiences", nlohmann::json::array()), "audiences");
  if (auto u = st.find("user"); u != st.end() && u->is_object()) {
    r.username = u->value("username", "");
    r.uid = u->value("uid", "");
    r.groups = StringList(u->value("groups", nlohmann::json::array()), "groups");
    if (auto e = u->find("extra"); e != u->end() && e->is_object()) {
      for (const auto& [k, v] : e->items()) r.extra[k] = StringList(v, k);
    }
  }
  if (r.authenticated && r.username.empty()) {
    return absl::InvalidArgumentError(
        "TokenReview says authenticated but names no status.user.username");
  }
  return r;
}

absl::StatusOr<TokenReviewResult> ReviewToken(RestClient& client, std::string_view token,
                                              const std::vector<std::string>& audiences,
                                              std::chrono::seconds timeout) {
  if (token.empty()) return absl::InvalidArgumentError("TokenReview: empty token");
  const std::string body = TokenReviewRequest(token, audiences).dump();
  WEFT_ASSIGN_OR_RETURN(HttpResponse resp, client.Post(kPath, body, timeout));
  const std::string where = absl::StrCat("TokenReview at ", client.endpoint().server);
  switch (resp.status) {
    case 200:
    case 201:
      return ParseTokenReviewResponse(resp.body);
    case 401:
      return absl::UnauthenticatedError(absl::StrCat(
          where, ": weftd's own credentials (", client.endpoint().origin, ") were rejected (401): ",
          StatusMessage(resp.body), "; check weftd's service account token"));
    case 403:
      return absl::PermissionDeniedError(absl::StrCat(
          where, ": forbidden (403): ", StatusMessage(resp.body),
          "; grant weftd's service account 'create' on tokenreviews.authentication.k8s.io "
          "(helm/templates/clusterrole.yaml)"));
    default:
      return absl::UnavailableError(
          absl::StrCat(where, ": HTTP ", resp.status, ": ", StatusMessage(resp.body)));
  }
}

}  // namespace weft::cp::k8s
