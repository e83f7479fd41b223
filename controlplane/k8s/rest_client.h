// weftd's names for the Kubernetes REST client, which lives in common/k8s so that the node
// agent (which may not depend on controlplane/) uses the same one: see common/k8s/rest_client.h.
#pragma once

#include "common/k8s/rest_client.h"
#include "controlplane/k8s/endpoint.h"

namespace weft::cp::k8s {
using ::weft::k8s::HttpResponse;
using ::weft::k8s::RestClient;
using ::weft::k8s::RestOptions;
using ::weft::k8s::UrlEncode;
}  // namespace weft::cp::k8s
