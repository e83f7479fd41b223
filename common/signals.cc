#include "common/signals.h"

#include <pthread.h>
#include <signal.h>

#include <time.h>

#include <cerrno>

namespace weft {
namespace {

sigset_t TerminationSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int WaitForTerminationSignal() {
  sigset_t set = TerminationSet();
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
    // sigwait returns an error number only for an invalid set; retry is the safe reaction.
  }
  return sig;
}

std::optional<int> WaitForTerminationSignal(std::chrono::milliseconds timeout) {
  sigset_t set = TerminationSet();
  auto s = std::chrono::duration_cast<std::chrono::seconds>(timeout);
  timespec ts{static_cast<time_t>(s.count()),
              static_cast<long>(std::chrono::nanoseconds(timeout - s).count())};
  int sig = sigtimedwait(&set, nullptr, &ts);
  if (sig <= 0) return std::nullopt;  // timed out (or interrupted)
  return sig;
}

}  // namespace weft
