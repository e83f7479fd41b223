// weftd's names for the API server endpoint, which lives in common/k8s (shared with the node
// agent): see common/k8s/endpoint.h.
#pragma once

#include "common/k8s/endpoint.h"

namespace weft::cp::k8s {
using ::weft::k8s::Endpoint;
using ::weft::k8s::EndpointFromKubeconfig;
using ::weft::k8s::EndpointFromKubeconfigText;
using ::weft::k8s::InClusterEndpoint;
using ::weft::k8s::kServiceAccountDir;
using ::weft::k8s::PlainEndpoint;
using ::weft::k8s::ResolveEndpoint;
}  // namespace weft::cp::k8s
