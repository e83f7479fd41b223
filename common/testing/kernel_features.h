// Test tiers, continued: a test that needs a kernel feature (a BPF program type, a test-run
// mode, a cgroup v2 mount) skips with a printed reason on a kernel without it. Where the
// kernel is known to have everything — CI, which runs scripts/test.sh as root, and that sets
// WEFT_REQUIRE_KERNEL_FEATURES=1 — the same check fails instead, so a regression in a probe
// (or in the code deciding "unsupported") cannot turn a test into a silent skip.
#pragma once

#include <sys/utsname.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "gtest/gtest.h"

namespace weft::testing {

// True when WEFT_REQUIRE_KERNEL_FEATURES is set to anything but "" or "0".
inline bool KernelFeaturesRequired() {
  const char* v = std::getenv("WEFT_REQUIRE_KERNEL_FEATURES");
  return v != nullptr && std::string_view(v) != "" && std::string_view(v) != "0";
}

// True when the running kernel's release (uname -r) is at least major.minor.
inline bool KernelAtLeast(int major, int minor) {
  utsname u{};
  int got_major = 0, got_minor = 0;
  if (::uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &got_major, &got_minor) != 2)
    return false;
  return got_major > major || (got_major == major && got_minor >= minor);
}

}  // namespace weft::testing

// Skips the current test (or fixture SetUp) unless `ok`, printing `reason`: what is missing, as
// the right-hand side of a gtest message stream (`"no cgroup v2: " << status` works). With
// WEFT_REQUIRE_KERNEL_FEATURES set, a missing feature is a failure with the same reason.
// Decide `ok` by a check of the kernel (libbpf's probes, the release, /proc/self/mounts), never
// from an error the code under test returned.
#define WEFT_SKIP_UNLESS_KERNEL_FEATURE(ok, reason)                                            \
  do {                                                                                         \
    if (!(ok)) {                                                                               \
      if (::weft::testing::KernelFeaturesRequired()) {                                         \
        GTEST_FAIL() << "WEFT_REQUIRE_KERNEL_FEATURES is set, so a missing kernel feature is " \
                        "a failure: "                                                          \
                     << reason;                                                                \
      } else {                                                                                 \
        GTEST_SKIP() << reason;                                                                \
      }                                                                                        \
    }                                                                                          \
  } while (0)
