#include "common/testing/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "common/file.h"

namespace weft::testing {
ChildProcess::ChildProcess(const std::string& dir, const std::string& name,
                           std::vector<std::string> argv,
                           std::optional<std::vector<std::string>> env)
    : out_(dir + "/" + name + ".out"), err_(dir + "/" + name + ".err") {
  // Everything the child needs is prepared before fork: only async-signal-safe calls after.
  std::vector<char*> args, envp;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  if (env) {
    for (auto& v : *env) envp.push_back(v.data());
    envp.push_back(nullptr);
  }
  pid_ = fork();
  if (pid_ == 0) {
    int o = open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1);
    dup2(e, 2);
    if (env) {
      execve(args[0], args.data(), envp.data());
    } else {
      execv(args[0], args.data());
    }
    _exit(127);
  }
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

int ChildProcess::Wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!exited_ && pid_ > 0) {
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      exited_ = true;
      code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return code_;
}

uint16_t ChildProcess::WaitPortFile(const std::string& port_file,
                                    std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string s = ReadFile(port_file).value_or("");
    int port = 0;
    if (!s.empty() && (port = std::atoi(s.c_str())) > 0 && port < 65536) {
      return static_cast<uint16_t>(port);
    }
    if (Wait(std::chrono::milliseconds(0)) >= 0) return 0;  // exited without listening
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return 0;
}

void ChildProcess::Signal(int sig) {
  if (pid_ > 0 && !exited_) kill(pid_, sig);
}

std::string ChildProcess::Out() const {
  return ReadFile(out_).value_or("");
}

std::string ChildProcess::Err() const {
  return ReadFile(err_).value_or("");
}

}  // namespace weft::testing
