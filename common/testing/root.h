// Test tiers: a test that needs root (namespaces, cgroups, BPF, iptables) skips with a printed
// reason where it runs unprivileged; as root (CI) it always runs.
#pragma once

#include <unistd.h>

#include "gtest/gtest.h"

// Skips the current test unless running as root, printing `reason` (what root is needed for).
#define WEFT_SKIP_UNLESS_ROOT(reason)                                        \
  do {                                                                       \
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (" << (reason) << ")"; \
  } while (0)
