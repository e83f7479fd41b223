// ztunnel side of the agent -> ztunnel pod handoff (proto/weft/inpod/v1/handoff.proto).
// A Unix SOCK_SEQPACKET listener; one agent connection at a time (a new one replaces the old).
// Each datagram is one WorkloadRequest; AddWorkload/KeepWorkload carry the pod's netns fd via
// SCM_RIGHTS. Every request gets a WorkloadResponse{ack}. After SnapshotSent, pods that were
// not added/kept since the connection started are removed (reconcile on agent reconnect).
// Malformed datagrams are acked with an error, counted by the caller via on_bad_input, and
// never stop the server.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "common/unique_fd.h"
#include "weft/inpod/v1/handoff.pb.h"

namespace weft::ztunnel {

class HandoffServer {
 public:
  struct Callbacks {
    // Pod added (or re-sent on reconnect). Owns the netns fd. Returning an error NACKs.
    std::function<absl::Status(const std::string& uid,
                               const weft::inpod::v1::WorkloadInfo& info, UniqueFd netns)>
        add;
    std::function<void(const std::string& uid)> del;
    std::function<void(std::string_view kind)> on_bad_input;
  };
  HandoffServer(std::string socket_path, Callbacks cb);
  ~HandoffServer();                 // Stop()
  absl::Status Start();             // unlinks a stale socket file, binds, serves on a thread
  void Stop();
  bool agent_connected() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::ztunnel
