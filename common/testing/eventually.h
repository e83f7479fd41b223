// Waits for a condition instead of a time: polls `pred` every 10 ms until it holds or `limit`
// passes. True when it held.
#pragma once

#include <chrono>
#include <thread>

namespace weft::testing {

template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace weft::testing
