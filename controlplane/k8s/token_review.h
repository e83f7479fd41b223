// TokenReview (authentication.k8s.io/v1): asks the API server whether a bearer token (a node's
// service-account token) is valid and whom it identifies. The caller's own credentials (the
// RestClient's endpoint) need `create` on `tokenreviews` (see docs/kubernetes.md).
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/k8s/rest_client.h"
#include "nlohmann/json.hpp"

namespace weft::cp::k8s {

struct TokenReviewResult {
  bool authenticated = false;
  std::string username;  // "system:serviceaccount:weft-system:weft-node"
  std::string uid;
  std::vector<std::string> groups;
  std::map<std::string, std::vector<std::string>> extra;  // e.g. authentication.kubernetes.io/
                                                          // node-name for bound tokens
  std::vector<std::string> audiences;                     // status.audiences
  std::string error;                                      // status.error when not authenticated
};

// The request body POSTed for `token` (exposed for tests and docs).
nlohmann::json TokenReviewRequest(std::string_view token,
                                  const std::vector<std::string>& audiences);

// Parses a TokenReview response body.
absl::StatusOr<TokenReviewResult> ParseTokenReviewResponse(std::string_view body);

// POSTs a TokenReview. An unauthenticated token is an OK result with authenticated=false and
// `error`; the Status is an error only when the review itself failed: transport failure
// (Unavailable), weftd's own credentials rejected (401 -> Unauthenticated, 403 ->
// PermissionDenied, with what RBAC to grant), other HTTP errors or an unparsable reply.
absl::StatusOr<TokenReviewResult> ReviewToken(
    RestClient& client, std::string_view token, const std::vector<std::string>& audiences = {},
    std::chrono::seconds timeout = std::chrono::seconds(10));

}  // namespace weft::cp::k8s
