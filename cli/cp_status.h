// `weftctl status` and `weftctl config-dump NODE`: weftd's view of the mesh, read from its admin
// endpoint (/status, /config_dump?node=).
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace weft::cli {

int StatusMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int ConfigDumpMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// The terminal rendering of weftd's /status document (tested on recorded documents).
std::string RenderStatus(const nlohmann::json& status);

}  // namespace weft::cli
