// What every part of `weftctl demo` shares (internal to cli/demo): running weftctl's own
// subcommands as a user would type them (printed, echoed, kept), Ctrl-C handling, the checks and
// the verdict, and the steps every part starts and ends with: check the machine, `weftctl up`,
// enrol namespace shop, `weftctl down` and check that nothing is left.
//
// A part derives from Runner and implements Steps() (everything between up and down) and
// TryNext() (the commands --keep suggests).
#pragma once

#include <chrono>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cli/demo/demo.h"
#include "cli/up/state.h"
#include "common/scrape/scrape.h"
#include "common/unique_fd.h"

namespace weft::cli::demo {

using Clock = std::chrono::steady_clock;

// Ctrl-C: the handler only sets a flag (see runner.cc).
bool Interrupted();
// Sleeps `d`; false if Ctrl-C came first.
bool Sleep(std::chrono::milliseconds d);
std::optional<std::string> InPath(const std::string& name);

std::string Spiffe(const std::string& ns, const std::string& sa);
std::string Label(const MetricSample& s, const std::string& key);
std::string FormatValue(double v);
// NAME{k="v",...} VALUE with only `keys` (empty and "unknown" values left out).
std::string Render(const MetricSample& s, const std::vector<std::string>& keys);
std::string Trim(std::string s);

struct ChildResult {
  int code = -1;  // exit status; 128+signal when killed
  std::string output;
  bool timed_out = false;
  bool interrupted = false;
};

// A child process (weftctl's own subcommands, tshark), in its own process group, stdout+stderr
// through a pipe that the demo echoes (indented) and keeps. Killed (group) if dropped running.
class Child {
 public:
  static absl::StatusOr<Child> Start(const std::vector<std::string>& argv);
  Child() = default;
  Child(Child&& o) noexcept;
  Child& operator=(Child&& o) noexcept;
  ~Child();

  // Reads the output until it contains `needle`; returns the line that does (the child keeps
  // running). DeadlineExceeded after `timeout`, or when the child closes its output first.
  absl::StatusOr<std::string> LineWith(const std::string& needle,
                                       std::chrono::milliseconds timeout);
  // Reads the output until the child exits (echoing complete lines to `echo` if given), the
  // timeout passes or, if `interruptible`, Ctrl-C: then SIGTERM to its group (SIGKILL 3 s later).
  ChildResult Finish(std::chrono::milliseconds timeout, std::ostream* echo, bool interruptible);

 private:
  pid_t pid_ = -1;
  UniqueFd fd_;
};

// The output of a program run for the demo's own analysis (tshark), not one of the steps.
std::string ReadCommand(const std::vector<std::string>& argv);

struct Check {
  std::string what;
  bool ok;
  std::string detail;
};

class Runner {
 public:
  // `steps`: how many numbered steps the part prints (the last is the teardown).
  Runner(const DemoOptions& o, std::ostream& out, std::ostream& err, int steps)
      : o_(o), out_(out), err_(err), steps_(steps) {}
  virtual ~Runner() = default;

  // Prints `banner`, runs Steps(), keeps the mesh up with --keep, tears it down, prints the
  // verdict. Exit 0 only if every check held.
  int Main(const std::string& banner);

 protected:
  virtual absl::Status Steps() = 0;
  // The commands --keep prints for the user to try.
  virtual std::vector<std::vector<std::string>> TryNext() const = 0;

  // Step 1: root, the tools, the manifests (o_.manifests), the state root, the work dir.
  absl::Status Preflight();
  // `weftctl up` of `manifests`; loads the mesh's state.
  absl::Status Up(int step, const std::string& manifests, const std::string& title);
  // `weftctl label namespace shop weft.dev/mesh=enabled --wait`.
  absl::Status Enrol(int step);

  void Step(int n, const std::string& title);
  void Info(const std::string& s);
  void Record(const std::string& what, bool ok, std::string detail = "");

  // `weftctl ARGS...` as the user would type it, with the mesh flags after the subcommand.
  std::vector<std::string> Weftctl(std::vector<std::string> args) const;
  // Prints "$ weftctl ...", runs it, echoes its output.
  ChildResult Run(const std::vector<std::string>& args, std::chrono::milliseconds timeout,
                  bool echo = true, bool interruptible = true);
  // Prints "$ weftctl ... &" and starts it.
  absl::StatusOr<Child> StartQuietly(const std::vector<std::string>& args);
  // A node's ztunnel's /metrics.
  absl::StatusOr<std::string> Metrics(const up::NodeState& node);
  std::string PodName(const std::string& ip) const;
  absl::Status LoadState();

  DemoOptions o_;
  std::ostream& out_;
  std::ostream& err_;
  up::MeshState state_;

 private:
  void WaitForCtrlC();
  void Down();

  const int steps_;
  Clock::time_point start_ = Clock::now();
  std::string self_;
  std::string state_root_;
  bool temp_dir_ = false;
  bool up_started_ = false;
  std::vector<Check> checks_;
};

}  // namespace weft::cli::demo
