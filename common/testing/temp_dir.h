// A per-test temporary directory: tests run in parallel under ctest, so each one gets its own.
#pragma once

#include <string>

namespace weft::testing {

// mkdtemp under $TMPDIR (or /tmp), named weft-test-XXXXXX; the destructor removes it
// recursively unless WEFT_KEEP_TMP is set in the environment (then it prints the path and keeps
// it, for debugging logs, configs and captures). Aborts with a message if mkdtemp fails.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // Writes `content` to path()/name through a temp file and rename (atomic replace, as
  // kubectl and editors do). Returns the full path.
  std::string Write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

}  // namespace weft::testing
