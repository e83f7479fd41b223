#include "common/testing/stderr_capture.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <thread>

namespace weft::testing {

StderrCapture::StderrCapture() {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/weft-stderr-XXXXXX";
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) {
    std::perror("StderrCapture: mkstemp");
    std::abort();
  }
  path_ = tmpl;
  std::fflush(stderr);
  saved_ = ::dup(2);
  if (saved_ < 0 || ::dup2(fd, 2) < 0) {
    std::perror("StderrCapture: dup");
    std::abort();
  }
  ::close(fd);
}

StderrCapture::~StderrCapture() {
  std::fflush(stderr);
  ::dup2(saved_, 2);
  ::close(saved_);
  const std::string text = Text();
  if (!text.empty()) (void)!::write(2, text.data(), text.size());
  ::unlink(path_.c_str());
}

std::string StderrCapture::Text() const {
  std::fflush(stderr);
  std::ifstream in(path_, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool StderrCapture::WaitFor(std::string_view needle, int count,
                            std::chrono::milliseconds limit) const {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const std::string text = Text();
    int found = 0;
    for (size_t at = text.find(needle); at != std::string::npos;
         at = text.find(needle, at + needle.size()))
      ++found;
    if (found >= count) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace weft::testing
