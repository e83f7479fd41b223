// Which Service ports ztunnel treats as HTTP (issue 14, "When a connection is L7"), with
// Kubernetes' and Istio's rules so users' existing Services declare it unchanged.
#pragma once

#include <string_view>

namespace weft::ztunnel::l7 {

// True when a Service port declares HTTP: its `appProtocol` is http, http2, h2c, grpc,
// grpc-web, kubernetes.io/h2c or kubernetes.io/ws (case-insensitive); or, when it has no
// appProtocol, its name is Istio's `<protocol>[-<suffix>]` with protocol http, http2, grpc or
// grpc-web (case-insensitive). Any other appProtocol (tcp, https, tls, mongo, ...) wins over the
// name, as in Istio.
bool IsHttpPort(std::string_view app_protocol, std::string_view name);

// True when the port's servers speak HTTP/2 (cleartext): appProtocol http2, h2c, grpc or
// kubernetes.io/h2c; without appProtocol, Istio's name prefixes http2 and grpc. What upstream
// connections to such a port speak, and so whether the source side may take a client's
// HTTP/1.1 h2c upgrade (it has no HTTP/2-to-HTTP/1.1 translation).
bool IsHttp2Port(std::string_view app_protocol, std::string_view name);

}  // namespace weft::ztunnel::l7
