#include "common/testing/stderr_capture.h"

#include <cstdio>
#include <thread>

#include "gtest/gtest.h"

namespace weft::testing {
namespace {

TEST(StderrCaptureTest, SeesWhatIsWrittenAndCountsRepeats) {
  StderrCapture cap;
  std::fprintf(stderr, "{\"msg\":\"one\"}\n");
  std::thread([] { std::fprintf(stderr, "{\"msg\":\"one\"}\n"); }).join();
  EXPECT_TRUE(cap.WaitFor("\"one\"", 2));
  EXPECT_FALSE(cap.WaitFor("\"one\"", 3, std::chrono::milliseconds(50)));
  EXPECT_FALSE(cap.WaitFor("two", 1, std::chrono::milliseconds(50)));
  EXPECT_EQ(cap.Text(), "{\"msg\":\"one\"}\n{\"msg\":\"one\"}\n");
}

}  // namespace
}  // namespace weft::testing
