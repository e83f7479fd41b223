// Whole-file reads and atomic writes: the one copy every component and tool uses.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace weft {

// Reads a whole file. NotFound if it does not exist; other errors carry errno's text and the
// path ("reading /x: Permission denied").
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `data` to `path` atomically (temp file in the same directory + fsync + rename), with
// `mode` permissions. Readers never see a partially written file.
absl::Status WriteFileAtomic(const std::string& path, std::string_view data, unsigned mode = 0644);

}  // namespace weft
