// SPIFFE identities: spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace weft {

struct SpiffeId {
  std::string trust_domain;
  std::string ns;
  std::string service_account;

  // Strict parse: scheme, non-empty trust domain, exactly "/ns/X/sa/Y", no query/fragment.
  static absl::StatusOr<SpiffeId> Parse(std::string_view uri);
  std::string ToString() const;  // the URI
  // Istio's principal form used in AuthorizationPolicy: "<td>/ns/<ns>/sa/<sa>".
  std::string Principal() const;

  friend bool operator==(const SpiffeId& a, const SpiffeId& b) = default;
  template <typename H>
  friend H AbslHashValue(H h, const SpiffeId& s) {
    return H::combine(std::move(h), s.trust_domain, s.ns, s.service_account);
  }
};

}  // namespace weft
