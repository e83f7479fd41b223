// Test helpers shared by the identity tests.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace weft::ztunnel::testing {

// A unique directory under /tmp, removed on destruction (tests run in parallel under ctest).
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/weft_identity_test_XXXXXX";
    char* p = mkdtemp(tmpl);
    EXPECT_NE(p, nullptr);
    path_ = p ? p : "";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace weft::ztunnel::testing
