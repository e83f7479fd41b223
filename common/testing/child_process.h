// A child process for tests that run real binaries on the host (no namespaces): stdout and
// stderr each go to a file in `dir`, the exit status is collected with a timeout, and the child
// is SIGKILLed if it is still running when the object goes away. (For processes inside test
// network namespaces use cli/testbed's Spawn.)
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace weft::testing {

class ChildProcess {
 public:
  // Runs argv (argv[0] a path) with stdout in <dir>/<name>.out and stderr in <dir>/<name>.err.
  // `env` set: exactly that environment ("K=V" entries; empty = none); nullopt: the parent's.
  ChildProcess(const std::string& dir, const std::string& name, std::vector<std::string> argv,
               std::optional<std::vector<std::string>> env = std::nullopt);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Exit code (or 128 + signal), waiting at most `timeout`; -1 if it is still running.
  int Wait(std::chrono::milliseconds timeout);
  void Signal(int sig);
  // The port a server child writes to `port_file` (e.g. its --port-file) once it listens; 0 if
  // the child exits first or `timeout` passes.
  uint16_t WaitPortFile(const std::string& port_file, std::chrono::milliseconds timeout);
  std::string Out() const;
  std::string Err() const;
  pid_t pid() const { return pid_; }

 private:
  std::string out_, err_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int code_ = -1;
};

}  // namespace weft::testing
