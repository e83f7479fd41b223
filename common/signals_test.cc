#include "common/signals.h"

#include <pthread.h>
#include <signal.h>

#include <thread>

#include "gtest/gtest.h"

namespace weft {
namespace {

TEST(Signals, BlockedTerminationSignalIsTakenBySigwaitInAnotherThread) {
  BlockTerminationSignals();
  // A thread started after the call inherits the mask; the signal stays pending until the
  // waiting thread takes it, so no handler ever runs (the default action would kill the test).
  int got = 0;
  std::thread waiter([&] { got = WaitForTerminationSignal(); });
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  waiter.join();
  EXPECT_EQ(got, SIGTERM);
  ASSERT_EQ(kill(getpid(), SIGINT), 0);
  EXPECT_EQ(WaitForTerminationSignal(), SIGINT);
}

TEST(Signals, TimedWaitReturnsNothingWithoutASignalAndTheSignalWhenOneIsPending) {
  BlockTerminationSignals();
  EXPECT_EQ(WaitForTerminationSignal(std::chrono::milliseconds(1)), std::nullopt);
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);  // pending (blocked) until taken
  EXPECT_EQ(WaitForTerminationSignal(std::chrono::milliseconds(60000)), SIGTERM);
}

TEST(Signals, SigpipeIsIgnored) {
  BlockTerminationSignals();
  struct sigaction sa {};
  ASSERT_EQ(sigaction(SIGPIPE, nullptr, &sa), 0);
  EXPECT_EQ(sa.sa_handler, SIG_IGN);
}

}  // namespace
}  // namespace weft
