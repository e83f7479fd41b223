// Captures what this process writes to stderr (fd 2: Weft's structured logs) so a test can wait
// for a log record that marks an event it cannot otherwise observe, e.g. an input that was
// ignored. Output still reaches a file; the original stderr is restored (and sees what was
// captured) on destruction. One at a time per process.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace weft::testing {

class StderrCapture {
 public:
  StderrCapture();   // redirects fd 2 to a temp file (aborts the test binary if it cannot)
  ~StderrCapture();  // restores fd 2 and copies what was captured to it
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;

  // Everything written to stderr since construction.
  std::string Text() const;
  // Waits until Text() contains `needle` `count` times (or more); false after `limit`.
  bool WaitFor(std::string_view needle, int count = 1,
               std::chrono::milliseconds limit = std::chrono::seconds(20)) const;

 private:
  int saved_ = -1;
  std::string path_;
};

}  // namespace weft::testing
