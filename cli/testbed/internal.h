// Helpers shared by the testbed's .cc files; not part of the public API.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace weft::testbed::internal {

// The whole content of a (small) file.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace weft::testbed::internal
