// weft-agent: thin main over weft_agent_lib (agent/agent.h).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

#include "agent/agent.h"
#include "agent/node_taint.h"
#include "common/flags.h"
#include "common/k8s/endpoint.h"
#include "common/log.h"
#include "common/signals.h"

int main(int argc, char** argv) {
  weft::agent::CommandLine cl;
  CLI::App app("weft-agent: enrolls this node's mesh pods with ztunnel", "weft-agent");
  weft::agent::AddFlags(app, &cl);
  if (auto code = weft::ParseFlags(app, argc, argv)) return *code;
  if (absl::Status st = weft::agent::CheckCommandLine(cl); !st.ok()) {
    std::fprintf(stderr, "weft-agent: %s\nRun 'weft-agent --help'.\n",
                 std::string(st.message()).c_str());
    return 2;
  }
  weft::log::Level level;
  if (weft::log::ParseLevel(cl.log_level, &level)) weft::log::SetLevel(level);
  if (cl.uninstall_cni) {
    absl::Status st = weft::cni::UninstallPlugin(cl.options.cni_install);
    if (!st.ok()) {
      LOG_ERROR("agent", "weft-cni uninstall failed", {{"error", std::string(st.message())}});
      return 1;
    }
    LOG_INFO("agent", "weft-cni uninstalled", {{"conf_dir", cl.options.cni_install.conf_dir}});
    return 0;
  }

  // Signals are taken synchronously by one thread; they are blocked before any other thread
  // exists so that every thread inherits the mask.
  weft::BlockTerminationSignals();

  weft::agent::Agent agent(cl.options);
  if (cl.once) {
    absl::Status st = agent.RunOnce();
    if (!st.ok()) {
      LOG_ERROR("agent", "sync failed", {{"error", std::string(st.message())}});
      return 1;
    }
    LOG_INFO("agent", "sync done", {{"pods", agent.Pods().size()}});
    return 0;
  }

  // The node taint (--kubernetes): removed by its own thread once the agent is ready.
  std::unique_ptr<weft::agent::NodeTaintRemover> untaint;
  if (cl.kubernetes) {
    auto ep = weft::k8s::ResolveEndpoint("", cl.kubeconfig);
    if (!ep.ok()) {
      LOG_ERROR("agent", "--kubernetes: no API server",
                {{"error", std::string(ep.status().message())}});
      return 1;
    }
    auto client = std::make_shared<weft::k8s::RestClient>(
        *ep, weft::k8s::RestOptions{.user_agent = "weft-agent/0.1"});
    untaint = std::make_unique<weft::agent::NodeTaintRemover>(
        weft::agent::NodeTaint(client, cl.options.node), [&agent] { return agent.ready(); });
    untaint->Start();
  }

  std::atomic<bool> done{false};
  std::thread signal_thread([&] {
    while (!done.load()) {
      if (auto sig = weft::WaitForTerminationSignal(std::chrono::milliseconds(200))) {
        LOG_INFO("agent", "signal received; stopping", {{"signal", strsignal(*sig)}});
        agent.Stop();
        return;
      }
    }
  });
  absl::Status st = agent.Run();
  if (untaint) untaint->Stop();
  done = true;
  signal_thread.join();
  if (!st.ok()) {
    LOG_ERROR("agent", "agent failed", {{"error", std::string(st.message())}});
    return 1;
  }
  return 0;
}
