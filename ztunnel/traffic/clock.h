// Time in the traffic state machines: every method that depends on time takes `now` from the
// caller (the proxy passes steady_clock::now(), tests pass a fake), so the machines never read a
// clock themselves and their tests are deterministic.
#pragma once

#include <chrono>

namespace weft::ztunnel::traffic {

using TimePoint = std::chrono::steady_clock::time_point;
using Millis = std::chrono::milliseconds;

}  // namespace weft::ztunnel::traffic
