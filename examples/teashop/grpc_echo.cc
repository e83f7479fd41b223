#include "examples/teashop/grpc_echo.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <stdlib.h>

#include <future>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace weft::teashop {

class GrpcEcho::Service : public grpc::CallbackGenericService {
 public:
  Service(std::string pod, std::string ns) : pod_(std::move(pod)), ns_(std::move(ns)) {}

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    nlohmann::json headers = nlohmann::json::object();
    for (const auto& [k, v] : ctx->client_metadata())
      headers[absl::AsciiStrToLower(std::string(k.data(), k.size()))].push_back(
          std::string(v.data(), v.size()));
    nlohmann::json j = {{"pod", pod_},
                        {"namespace", ns_},
                        {"method", ctx->method()},
                        {"authority", ctx->host()},
                        {"headers", headers}};
    return new Reactor(j.dump());
  }

 private:
  // Reads the one request message, answers with the JSON, ends OK.
  class Reactor : public grpc::ServerGenericBidiReactor {
   public:
    explicit Reactor(std::string answer) : answer_(std::move(answer)) { StartRead(&req_); }
    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request message"));
        return;
      }
      grpc::Slice s(answer_);
      resp_ = grpc::ByteBuffer(&s, 1);
      StartWriteAndFinish(&resp_, grpc::WriteOptions(), grpc::Status::OK);
    }
    void OnDone() override { delete this; }

   private:
    std::string answer_;
    grpc::ByteBuffer req_, resp_;
  };

  std::string pod_, ns_;
};

absl::StatusOr<std::unique_ptr<GrpcEcho>> GrpcEcho::Start(const std::string& listen,
                                                          std::string pod, std::string ns) {
  std::unique_ptr<GrpcEcho> e(new GrpcEcho);
  e->service_ = std::make_unique<Service>(std::move(pod), std::move(ns));
  grpc::ServerBuilder b;
  b.AddListeningPort(listen, grpc::InsecureServerCredentials(), &e->port_);
  b.RegisterCallbackGenericService(e->service_.get());
  e->server_ = b.BuildAndStart();
  if (!e->server_ || e->port_ == 0)
    return absl::UnavailableError(
        absl::StrCat("gRPC: cannot listen on ", listen, " (in use, or not an address here?)"));
  return e;
}

GrpcEcho::~GrpcEcho() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

absl::StatusOr<std::vector<std::string>> GrpcCalls(const GrpcCallOptions& o) {
  if (o.target.empty() || o.target.find(':') == std::string::npos)
    return absl::InvalidArgumentError("--target: give HOST:PORT");
  if (o.method.size() < 4 || o.method[0] != '/' || o.method.find('/', 1) == std::string::npos)
    return absl::InvalidArgumentError(
        absl::StrCat("--method ", o.method, ": give /package.Service/Method"));
  if (o.count < 1) return absl::InvalidArgumentError("--count must be >= 1");
  // Names resolve as the rest of the shop resolves them (getaddrinfo: /etc/hosts, then DNS).
  // gRPC's default c-ares resolver skips /etc/hosts, which is all `weftctl up` pods have.
  // Before gRPC starts (the first channel), and only if the user chose nothing.
  setenv("GRPC_DNS_RESOLVER", "native", /*overwrite=*/0);
  auto channel = grpc::CreateChannel(o.target, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  std::vector<std::string> out;
  for (int i = 0; i < o.count; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + o.timeout);
    for (const auto& [k, v] : o.metadata) ctx.AddMetadata(k, v);
    grpc::Slice s(std::string("call-") + std::to_string(i));
    grpc::ByteBuffer req(&s, 1), resp;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&ctx, o.method, grpc::StubOptions(), &req, &resp,
                   [&done](grpc::Status st) { done.set_value(std::move(st)); });
    grpc::Status st = done.get_future().get();
    nlohmann::json line = {{"code", static_cast<int>(st.error_code())},
                           {"message", st.error_message()},
                           {"reply", nullptr}};
    if (st.ok()) {
      std::vector<grpc::Slice> slices;
      std::string body;
      if (resp.Dump(&slices).ok())
        for (const auto& sl : slices)
          body.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
      line["reply"] = nlohmann::json::parse(body, nullptr, false);
      if (line["reply"].is_discarded()) line["reply"] = body;
    }
    out.push_back(line.dump());
  }
  return out;
}

}  // namespace weft::teashop
