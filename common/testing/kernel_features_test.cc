// WEFT_SKIP_UNLESS_KERNEL_FEATURE: a present feature lets the test run; with
// WEFT_REQUIRE_KERNEL_FEATURES set a missing one fails with the reason (the skip path without
// the variable is what every kernel-feature site does on an older kernel).
#include "common/testing/kernel_features.h"

#include <cstdlib>
#include <string>

#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"

namespace weft::testing {
namespace {

// Restores WEFT_REQUIRE_KERNEL_FEATURES as it was.
class ScopedRequire {
 public:
  explicit ScopedRequire(const char* value) {
    const char* old = std::getenv(kVar);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value)
      ::setenv(kVar, value, 1);
    else
      ::unsetenv(kVar);
  }
  ~ScopedRequire() {
    if (had_)
      ::setenv(kVar, old_.c_str(), 1);
    else
      ::unsetenv(kVar);
  }

 private:
  static constexpr const char* kVar = "WEFT_REQUIRE_KERNEL_FEATURES";
  bool had_ = false;
  std::string old_;
};

void NeedsMissingFeature() {
  WEFT_SKIP_UNLESS_KERNEL_FEATURE(false, "no frobnicator in "
                                             << "this kernel");
}

bool RanPast(bool ok) {
  bool ran = false;
  [&] {
    WEFT_SKIP_UNLESS_KERNEL_FEATURE(ok, "unused");
    ran = true;
  }();
  return ran;
}

TEST(KernelFeaturesTest, TheVariableIsOnUnlessEmptyOrZero) {
  {
    ScopedRequire r(nullptr);
    EXPECT_FALSE(KernelFeaturesRequired());
  }
  {
    ScopedRequire r("");
    EXPECT_FALSE(KernelFeaturesRequired());
  }
  {
    ScopedRequire r("0");
    EXPECT_FALSE(KernelFeaturesRequired());
  }
  {
    ScopedRequire r("1");
    EXPECT_TRUE(KernelFeaturesRequired());
  }
}

TEST(KernelFeaturesTest, RequiredAndMissingIsAFailureWithTheReason) {
  ScopedRequire r("1");
  EXPECT_FATAL_FAILURE(NeedsMissingFeature(), "no frobnicator in this kernel");
  EXPECT_TRUE(RanPast(true)) << "a present feature does not stop the test";
}

TEST(KernelFeaturesTest, KernelReleaseComparison) {
  EXPECT_TRUE(KernelAtLeast(2, 6));
  EXPECT_TRUE(KernelAtLeast(0, 0));
  EXPECT_FALSE(KernelAtLeast(1000, 0));
}

}  // namespace
}  // namespace weft::testing
