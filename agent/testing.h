// Test helpers for the agent's tests: a stand-in ztunnel that records what the agent hands it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "weft/inpod/v1/handoff.pb.h"
#include "ztunnel/inpod/handoff_server.h"

namespace weft::agent::testing {

// A real HandoffServer on `path` that records every AddWorkload (with the netns cookie of the
// fd it carried) and DelWorkload. `refused_uid` (if set) is NACKed while refusing() is true.
class FakeZtunnel {
 public:
  explicit FakeZtunnel(std::string path, std::string refused_uid = "");
  struct Add {
    weft::inpod::v1::AddWorkload msg;
    uint64_t cookie;
  };
  std::vector<Add> adds();
  std::vector<std::string> dels();
  std::set<std::string> pods() const { return server_->known_pods(); }
  bool connected() const { return server_->agent_connected(); }
  void set_refuse(bool r) { refuse_ = r; }
  // AddWorkloads NACKed so far.
  int refusals() const { return refusals_.load(); }

 private:
  const std::string refused_uid_;
  std::atomic<bool> refuse_{true};
  std::atomic<int> refusals_{0};
  std::mutex mu_;
  std::vector<Add> adds_;
  std::vector<std::string> dels_;
  std::unique_ptr<ztunnel::HandoffServer> server_;
};

}  // namespace weft::agent::testing
