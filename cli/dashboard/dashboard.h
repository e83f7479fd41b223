// `weftctl dashboard`: the mesh in a browser, like Linkerd's viz dashboard or Kiali — pods in and
// out of the mesh, a live service graph, golden signals, policies and health, live requests.
// Read-only; serves on 127.0.0.1 unless --address says otherwise. See server.h for the API.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace weft::cli::dashboard {

// The CommandFn registered as "dashboard".
int DashboardMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace weft::cli::dashboard
