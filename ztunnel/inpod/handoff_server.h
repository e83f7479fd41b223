// ztunnel side of the agent -> ztunnel pod handoff (proto/weft/inpod/v1/handoff.proto).
// A Unix SOCK_SEQPACKET listener; one agent connection at a time (a new one replaces the old).
// Each datagram is one WorkloadRequest; AddWorkload/KeepWorkload carry the pod's netns fd via
// SCM_RIGHTS. Every request gets a WorkloadResponse{ack}. After SnapshotSent, pods that were
// not added/kept since the connection started are removed (reconcile on agent reconnect).
// Malformed datagrams are acked with an error, counted by the caller via on_bad_input, and
// never stop the server.
//
// Wire rules: a datagram is at most kMaxHandoffMessage bytes (larger ones are rejected as
// truncated); AddWorkload/KeepWorkload need exactly one fd and it must be a network-namespace
// fd; other requests must carry none. KeepWorkload is accepted only for a pod this server
// already holds (from an AddWorkload on any earlier connection) and re-invokes `add` with the
// WorkloadInfo remembered from that AddWorkload. DelWorkload of an unknown pod is acked OK.
// The socket file is created with mode 0600, under a temporary name renamed over the path, so
// a successor ztunnel (docs/upgrades.md) replaces its predecessor's socket with no moment at
// which the path names nothing; Stop removes the file only while it is still this server's.
//
// Threading: all callbacks run on the server thread, one at a time. Start/Stop from one owner
// thread; agent_connected()/known_pods() are thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/unique_fd.h"
#include "weft/inpod/v1/handoff.pb.h"

namespace weft::ztunnel {

inline constexpr size_t kMaxHandoffMessage = 64 * 1024;

class HandoffServer {
 public:
  struct Callbacks {
    // Pod added (or re-sent on reconnect: KeepWorkload re-invokes it with the AddWorkload
    // remembered for the uid). Owns the netns fd. Returning an error NACKs.
    std::function<absl::Status(const weft::inpod::v1::AddWorkload& add, UniqueFd netns)> add;
    std::function<void(const std::string& uid)> del;
    std::function<void(std::string_view kind)> on_bad_input;
  };
  HandoffServer(std::string socket_path, Callbacks cb);
  ~HandoffServer();      // Stop()
  absl::Status Start();  // binds, replaces whatever socket file was at the path, serves
  void Stop();
  // Hitless upgrade. Adopt (before Start): a pod a predecessor held, as if added by an earlier
  // connection (KeepWorkload finds it; SnapshotSent removes it unless the agent re-sends it).
  // Pause: returns once no request is being handled, and none is read until Resume (an agent
  // request meanwhile waits in the socket; a successor takes the pods over undisturbed).
  void Adopt(const weft::inpod::v1::AddWorkload& add);
  void Pause();
  void Resume();
  // The AddWorkload of every pod held.
  std::vector<weft::inpod::v1::AddWorkload> pods() const;
  bool agent_connected() const;
  // uids of the pods currently held (added and not deleted/reconciled away).
  std::set<std::string> known_pods() const;
  const std::string& socket_path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::ztunnel
