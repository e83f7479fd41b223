// weft-agent side of the pod handoff (see ztunnel/inpod/handoff_server.h). Not thread-safe:
// one owner thread. Every call waits for ztunnel's ack (timeout) and reports its error.
#pragma once

#include <chrono>
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
  absl::Status AddWorkload(const std::string& uid, const weft::inpod::v1::WorkloadInfo& info,
                           int netns_fd);
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
