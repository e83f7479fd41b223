// ztunnel's names for the config model (config/model/types.h): the data path reads these types,
// built once per snapshot by the per-object conversions of config/model/convert.h.
#pragma once

#include "config/model/types.h"

namespace weft::ztunnel {

using config::AuthorizationPolicy;
using config::AuthzAction;
using config::AuthzCondition;
using config::AuthzOperation;
using config::AuthzRule;
using config::AuthzSource;
using config::HttpRoute;
using config::HttpRouteRule;
using config::Labels;
using config::MtlsMode;
using config::NetworkPeer;
using config::NetworkPolicy;
using config::NetworkPortRange;
using config::NetworkRule;
using config::PeerAuthentication;
using config::SelectorMatches;
using config::Service;
using config::ServicePort;
using config::StringMatch;
using config::TrafficPolicy;
using config::Workload;
using config::WorkloadProtocol;

}  // namespace weft::ztunnel
