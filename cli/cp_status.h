// `weftctl status` and `weftctl config-dump NODE`: weftd's view of the mesh, read from its admin
// endpoint (/status, /config_dump?node=).
#pragma once

#include <chrono>
#include <iosfwd>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace weft::cli {

int StatusMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int ConfigDumpMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// The terminal rendering of weftd's /status document (tested on recorded documents).
std::string RenderStatus(const nlohmann::json& status);
// The same at time `now`: certificate expiries show the time left then, flag certificates
// already expired ("EXPIRED") and those past 80% of their lifetime ("RENEW OVERDUE": nodes
// renew at half-life, so such a node has failed to renew for a while).
std::string RenderStatus(const nlohmann::json& status, std::chrono::system_clock::time_point now);

}  // namespace weft::cli
