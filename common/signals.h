// Process-wide signal set-up for Weft's daemons and tools: termination signals are blocked in
// every thread and taken synchronously by one thread with sigwait, so no handler runs on a
// data-path thread and shutdown happens at one well-defined place.
#pragma once

#include <chrono>
#include <optional>

namespace weft {

// Blocks SIGINT and SIGTERM in the calling thread (threads started afterwards inherit the mask)
// and ignores SIGPIPE (writes to a closed peer return EPIPE instead). Call it in main() before
// any thread starts.
void BlockTerminationSignals();

// Waits for SIGINT or SIGTERM (blocked by BlockTerminationSignals) and returns which one came.
int WaitForTerminationSignal();

// The same, giving up after `timeout` (nullopt), for a thread that must also notice that it is
// no longer needed.
std::optional<int> WaitForTerminationSignal(std::chrono::milliseconds timeout);

}  // namespace weft
