// The agent's end of the weft-cni protocol (cni/protocol.h): a Unix SOCK_SEQPACKET socket
// (mode 0600: only root on the node, as the container runtime runs the plugin) served by one
// thread. Connections are answered one at a time: each reads one request, calls the handler
// (which may block until the pod is enrolled) and sends its reply.
#pragma once

#include <functional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "cni/protocol.h"
#include "common/unique_fd.h"

namespace weft::agent {

class CniServer {
 public:
  using Handler = std::function<cni::Reply(const cni::Request&)>;
  // `on_bad` is told about every malformed request (it gets a kErrDecode reply).
  CniServer(std::string path, Handler handler, std::function<void()> on_bad);
  ~CniServer();
  CniServer(const CniServer&) = delete;
  CniServer& operator=(const CniServer&) = delete;

  // Binds (replacing a stale socket file; creating the parent directory) and starts serving.
  absl::Status Start();
  void Stop();  // idempotent; waits for the request being answered

 private:
  void Serve();
  void Answer(int fd);
  std::string path_;
  Handler handler_;
  std::function<void()> on_bad_;
  UniqueFd listen_, wake_;
  std::thread thread_;
};

}  // namespace weft::agent
