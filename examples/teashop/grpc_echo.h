// gRPC for the mesh conformance suite's GRPCRoute cases (as upstream's echo server also speaks
// gRPC): `--role echo-request --grpc-listen ADDR:PORT` answers every unary call, whatever its
// method, with a message whose bytes are JSON naming this pod and what arrived:
//   {"pod", "namespace", "method" (the call's :path), "authority", "headers": {name: [values]}}
// and `--role grpc-call` makes such calls and prints each answer (a real gRPC client: gRPC's
// own HTTP/2, so a mesh sees what an application's stub sends).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace grpc {
class Server;
}

namespace weft::teashop {

class GrpcEcho {
 public:
  // Serves on `listen` ("ADDR:PORT", port 0 picks one) until destroyed.
  static absl::StatusOr<std::unique_ptr<GrpcEcho>> Start(const std::string& listen, std::string pod,
                                                         std::string ns);
  ~GrpcEcho();
  int port() const { return port_; }

 private:
  class Service;
  GrpcEcho() = default;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

struct GrpcCallOptions {
  std::string target;  // HOST:PORT (a Service name resolves as any other)
  std::string method;  // "/package.Service/Method"
  int count = 1;       // calls, one after the other on one channel (one HTTP/2 connection)
  std::vector<std::pair<std::string, std::string>> metadata;  // sent with every call
  std::chrono::milliseconds timeout{5000};                    // per call
};

// One JSON line per call: {"code": gRPC status code, "message": ..., "reply": the echo's JSON
// (or null)}. Error only for bad options.
absl::StatusOr<std::vector<std::string>> GrpcCalls(const GrpcCallOptions& o);

}  // namespace weft::teashop
