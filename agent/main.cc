// weft-agent: thin main over weft_agent_lib (agent/agent.h).
#include <signal.h>
#include <time.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <thread>

#include "agent/agent.h"
#include "common/log.h"

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(weft::agent::Usage().c_str(), stdout);
      return 0;
    }
  }
  auto cl = weft::agent::ParseCommandLine(argc, argv);
  if (!cl.ok()) {
    std::fprintf(stderr, "weft-agent: %s\n\n%s", std::string(cl.status().message()).c_str(),
                 weft::agent::Usage().c_str());
    return 2;
  }
  weft::log::Level level;
  if (weft::log::ParseLevel(cl->log_level, &level)) weft::log::SetLevel(level);

  // Signals are taken synchronously by one thread; they are blocked before any other thread
  // exists so that every thread inherits the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  weft::agent::Agent agent(cl->options);
  if (cl->once) {
    absl::Status st = agent.RunOnce();
    if (!st.ok()) {
      LOG_ERROR("agent", "sync failed", {{"error", std::string(st.message())}});
      return 1;
    }
    LOG_INFO("agent", "sync done", {{"pods", agent.Pods().size()}});
    return 0;
  }

  std::atomic<bool> done{false};
  std::thread signal_thread([&] {
    while (!done.load()) {
      timespec tick{0, 200 * 1000 * 1000};
      int sig = sigtimedwait(&sigs, nullptr, &tick);
      if (sig > 0) {
        LOG_INFO("agent", "signal received; stopping", {{"signal", strsignal(sig)}});
        agent.Stop();
        return;
      }
    }
  });
  absl::Status st = agent.Run();
  done = true;
  signal_thread.join();
  if (!st.ok()) {
    LOG_ERROR("agent", "agent failed", {{"error", std::string(st.message())}});
    return 1;
  }
  return 0;
}
