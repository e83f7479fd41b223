// weft-agent side of the pod handoff (see ztunnel/inpod/handoff_server.h). Not thread-safe:
// one owner thread. Every call waits for ztunnel's ack (timeout) and reports its error.
//
// Errors: kUnavailable when ztunnel is not listening or the connection dropped (the client is
// then disconnected; Connect() again and replay), kDeadlineExceeded when no ack arrives in
// time (also disconnects: a late ack would be taken for the next request's),
// kFailedPrecondition carrying ztunnel's ack error text when ztunnel rejected the request.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "common/unique_fd.h"
#include "weft/inpod/v1/handoff.pb.h"

namespace weft::agent {

class HandoffClient {
 public:
  explicit HandoffClient(std::string socket_path,
                         std::chrono::milliseconds ack_timeout = std::chrono::seconds(5));
  absl::Status Connect();  // error with a hint if ztunnel is not listening
  bool connected() const { return fd_.valid(); }
  // The connected socket (-1 if none), for polling POLLRDHUP to notice ztunnel going away.
  int fd() const { return fd_.get(); }
  void Close() { fd_.reset(); }
  const std::string& socket_path() const { return path_; }
  // netns_fd is passed with SCM_RIGHTS (the caller keeps its own copy); -1 sends none, which
  // ztunnel rejects. `ebpf` set: the pod is captured by eBPF (its slot and the agent's pin
  // dir); unset: in-pod iptables rules or no capture.
  absl::Status AddWorkload(const std::string& uid, const weft::inpod::v1::WorkloadInfo& info,
                           int netns_fd,
                           const std::optional<weft::inpod::v1::EbpfCapture>& ebpf = std::nullopt);
  absl::Status KeepWorkload(const std::string& uid, int netns_fd);
  absl::Status DelWorkload(const std::string& uid);
  absl::Status SnapshotSent();

 private:
  absl::Status SendAndWait(const weft::inpod::v1::WorkloadRequest& req, int fd_to_pass);
  std::string path_;
  std::chrono::milliseconds timeout_;
  UniqueFd fd_;
};

}  // namespace weft::agent
