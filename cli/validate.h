// `weftctl validate FILE|DIR...`: the control plane's validation, offline, for CI pipelines.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace weft::cli {

// Parses every manifest (files, or the *.yaml/*.yml/*.json files of a directory) exactly as
// weftd's local source does and validates every object exactly as weftd's model does. Prints
// each unreadable file and each rejected object with its reason on `out`, then a summary.
// Exit: 0 all valid, 1 any file or object rejected, 2 usage error.
int ValidateMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace weft::cli
