// Hitless ztunnel upgrades (docs/upgrades.md): a new ztunnel (the successor) takes the running
// one's (the predecessor's) listening sockets over, so no connection is refused and none queued
// in an accept queue is lost. Protocol: proto/weft/inpod/v1/takeover.proto, over a Unix
// SOCK_SEQPACKET socket next to the handoff socket (TakeoverSocketPath), mode 0600, bound under
// a temporary name and renamed over the path like the handoff socket.
//
// Predecessor: TakeoverServer, one successor at a time (a second one is refused while the first
// is between Hello and Commit). Successor: TakeoverClient::Connect (NotFound when nothing
// listens: there is no predecessor), Take, then Commit once it serves what it took.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "weft/inpod/v1/handoff.pb.h"
#include "weft/inpod/v1/takeover.pb.h"

namespace weft::ztunnel {

// "<handoff socket>.takeover".
std::string TakeoverSocketPath(const std::string& handoff_socket);

// What a predecessor hands over. Descriptors stay the predecessor's (`keep` holds them open).
struct TakeoverSnapshot {
  struct Pod {
    weft::inpod::v1::AddWorkload add;
    int netns = -1;
    std::vector<std::pair<weft::inpod::v1::ListenerRole, int>> listeners;
  };
  std::vector<Pod> pods;
  std::vector<std::pair<weft::inpod::v1::ListenerRole, int>> admin;
  std::vector<std::shared_ptr<const void>> keep;
};

// What a successor received; it owns the descriptors.
struct TakenState {
  struct Pod {
    weft::inpod::v1::AddWorkload add;
    UniqueFd netns;
    std::vector<std::pair<weft::inpod::v1::ListenerRole, UniqueFd>> listeners;
  };
  std::vector<Pod> pods;
  std::vector<std::pair<weft::inpod::v1::ListenerRole, UniqueFd>> admin;
};

class TakeoverServer {
 public:
  struct Callbacks {
    // A successor said hello (e.g. pause the handoff server: no pod changes until it commits or
    // leaves).
    std::function<void(int64_t successor_pid)> on_hello;
    // Take: the state to hand over.
    std::function<TakeoverSnapshot()> snapshot;
    // Commit: the successor serves everything; stop accepting. Gets the drain deadline the
    // successor asked for (0: none) and returns the one that applies.
    std::function<std::chrono::milliseconds(std::chrono::milliseconds asked)> commit;
    // The successor hung up (or broke the protocol) before Commit: carry on as before.
    std::function<void()> on_abort;
  };
  TakeoverServer(std::string socket_path, Callbacks cb);
  ~TakeoverServer();  // Stop()
  absl::Status Start();
  void Stop();  // removes the socket file while it is still this server's
  // A successor is between Hello and Commit.
  bool pending() const;
  bool committed() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class TakeoverClient {
 public:
  // Connects to a predecessor at `path` and says hello. NotFound: no predecessor listens there
  // (no socket file, or a stale one); other errors: it is there but refused.
  static absl::StatusOr<std::unique_ptr<TakeoverClient>> Connect(
      const std::string& path, std::chrono::milliseconds drain_deadline,
      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  int64_t predecessor_pid() const { return pid_; }
  absl::StatusOr<TakenState> Take();
  // The predecessor stopped accepting; returns how long it drains.
  absl::StatusOr<std::chrono::milliseconds> Commit();

 private:
  TakeoverClient(UniqueFd fd, std::chrono::milliseconds timeout)
      : fd_(std::move(fd)), timeout_(timeout) {}
  absl::Status Send(const weft::inpod::v1::TakeoverRequest& req);
  absl::StatusOr<weft::inpod::v1::TakeoverResponse> Receive(std::vector<UniqueFd>* fds);
  UniqueFd fd_;
  std::chrono::milliseconds timeout_;
  int64_t pid_ = 0;
};

}  // namespace weft::ztunnel
