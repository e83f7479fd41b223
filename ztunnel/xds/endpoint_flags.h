// The flags ztunnel and weft-agent share to reach weftd, added by one function so that both
// binaries spell and explain them the same way.
#pragma once

#include "common/flags.h"
#include "ztunnel/xds/client.h"

namespace weft::ztunnel {

// --control-plane ADDR, --cp-root FILE, --cp-token FILE, --cp-server-name NAME into `ep`.
inline void AddControlPlaneFlags(CLI::App& app, ControlPlaneEndpoint* ep) {
  app.add_option("--control-plane", ep->address,
                 "weftd's gRPC address (host:port): config stream and CA")
      ->type_name("ADDR")
      ->check(kNonEmpty);
  app.add_option("--cp-root", ep->root_file,
                 "mesh root certificate (PEM): TLS to weftd, checks issued chains")
      ->type_name("FILE")
      ->check(kNonEmpty);
  app.add_option("--cp-token", ep->token_file,
                 "this node's credential for weftd (bootstrap or SA token)")
      ->type_name("FILE")
      ->check(kNonEmpty);
  app.add_option("--cp-server-name", ep->server_name, "name in weftd's certificate")
      ->type_name("NAME")
      ->capture_default_str()
      ->check(kNonEmpty);
}

}  // namespace weft::ztunnel
