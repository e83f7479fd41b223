// The small gRPC client against gRPC's own C++ server (a generic callback service on loopback):
// streaming and unary calls, status and metadata, deadline, cancel, message limit, keepalive,
// refused connections. Its use against weftd's servers: tests/integration/config_stream_test.cc
// and ca_grpc_test.cc.
#include "common/grpc_client/grpc_call.h"

#include <google/protobuf/wrappers.pb.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <thread>

#include "common/unique_fd.h"

namespace weft::grpc_client {
namespace {

using google::protobuf::StringValue;
using std::chrono::milliseconds;

StringValue Str(std::string s) {
  StringValue v;
  v.set_value(std::move(s));
  return v;
}

// Methods: /t.T/Echo echoes every message; /t.T/Fail ends with PERMISSION_DENIED and a message
// that needs percent-encoding; /t.T/Hang never answers; /t.T/Big sends one 64 KiB message;
// /t.T/Auth answers with the request's authorization metadata.
class Reactor : public grpc::ServerGenericBidiReactor {
 public:
  explicit Reactor(grpc::GenericCallbackServerContext* ctx) : ctx_(ctx) {
    const std::string& m = ctx->method();
    if (m == "/t.T/Fail") {
      Done(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "node \"x\" may not: 100% sure"));
    } else if (m == "/t.T/Big") {
      Send(Str(std::string(64 << 10, 'b')));
    } else if (m == "/t.T/Auth") {
      auto it = ctx->client_metadata().find("authorization");
      Send(Str(it == ctx->client_metadata().end()
                   ? ""
                   : std::string(it->second.data(), it->second.size())));
    } else if (m == "/t.T/Echo") {
      StartRead(&in_);
    } else if (m != "/t.T/Hang") {
      Done(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no method " + m));
    }
  }
  void OnReadDone(bool ok) override {
    if (!ok) return Done(grpc::Status::OK);
    out_ = in_;
    echo_ = true;
    StartWrite(&out_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return Done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
    if (echo_) return StartRead(&in_);
    Done(grpc::Status::OK);
  }
  void OnCancel() override { Done(grpc::Status::CANCELLED); }
  void OnDone() override { delete this; }

 private:
  void Send(const StringValue& v) {
    std::string bytes = v.SerializeAsString();
    grpc::Slice slice(bytes);
    out_ = grpc::ByteBuffer(&slice, 1);
    StartWrite(&out_);
  }
  void Done(const grpc::Status& s) {
    if (finished_.exchange(true)) return;
    Finish(s);
  }
  grpc::GenericCallbackServerContext* ctx_;
  grpc::ByteBuffer in_, out_;
  bool echo_ = false;
  std::atomic<bool> finished_{false};
};

class Service : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    return new Reactor(ctx);
  }
};

class GrpcCallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterCallbackGenericService(&service_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now() + milliseconds(200));
    server_->Wait();
  }
  ChannelOptions Opts() const {
    ChannelOptions o;
    o.target = "127.0.0.1:" + std::to_string(port_);
    return o;
  }
  Service service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(GrpcCallTest, StreamEchoesMessagesThenEndsOk) {
  Call c;
  ASSERT_TRUE(c.Start(Opts(), "/t.T/Echo", {}, std::nullopt).ok());
  for (std::string s : {std::string("one"), std::string("two"), std::string(200000, 'x')}) {
    ASSERT_TRUE(c.Write(Str(s)));
    StringValue got;
    size_t bytes = 0;
    ASSERT_TRUE(c.Read(&got, &bytes));
    EXPECT_EQ(got.value(), s);
    EXPECT_EQ(bytes, Str(s).ByteSizeLong());
  }
  c.WritesDone();
  StringValue none;
  EXPECT_FALSE(c.Read(&none));
  EXPECT_TRUE(c.Finish().ok());
}

TEST_F(GrpcCallTest, ServerStatusAndMessageArrive) {
  StringValue resp;
  UnaryOptions uo;
  absl::Status st = UnaryCall(Opts(), "/t.T/Fail", {}, Str("x"), &resp, uo);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(st.message(), "node \"x\" may not: 100% sure");
  st = UnaryCall(Opts(), "/t.T/Nope", {}, Str("x"), &resp, uo);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented) << st;
}

TEST_F(GrpcCallTest, UnaryCallSendsMetadata) {
  StringValue resp;
  absl::Status st = UnaryCall(Opts(), "/t.T/Auth", {{"authorization", "Bearer abc"}}, Str("x"),
                              &resp, UnaryOptions{});
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(resp.value(), "Bearer abc");
}

TEST_F(GrpcCallTest, DeadlineEndsAHangingCall) {
  StringValue resp;
  UnaryOptions uo;
  uo.timeout = milliseconds(300);
  auto t0 = Clock::now();
  absl::Status st = UnaryCall(Opts(), "/t.T/Hang", {}, Str("x"), &resp, uo);
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
}

TEST_F(GrpcCallTest, CancelFromAnotherThreadWakesARead) {
  Call c;
  ASSERT_TRUE(c.Start(Opts(), "/t.T/Hang", {}, std::nullopt).ok());
  std::thread t([&] {
    std::this_thread::sleep_for(milliseconds(100));
    c.Cancel();
  });
  StringValue got;
  EXPECT_FALSE(c.Read(&got));
  t.join();
  EXPECT_EQ(c.Finish().code(), absl::StatusCode::kCancelled);
}

TEST_F(GrpcCallTest, OversizedMessageFailsTheCall) {
  ChannelOptions o = Opts();
  o.max_message_bytes = 1000;
  StringValue resp;
  absl::Status st = UnaryCall(o, "/t.T/Big", {}, Str("x"), &resp, UnaryOptions{});
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
}

TEST_F(GrpcCallTest, RefusedConnectionIsUnavailableAndWaitForReadyRetriesUntilTheDeadline) {
  // A port with nothing listening: bind, take the port, close.
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  s.reset();
  ChannelOptions o;
  o.target = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  StringValue resp;
  UnaryOptions uo;
  absl::Status st = UnaryCall(o, "/t.T/Echo", {}, Str("x"), &resp, uo);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  uo.wait_for_ready = true;
  uo.timeout = milliseconds(700);
  uo.max_reconnect_backoff = milliseconds(100);
  auto t0 = Clock::now();
  st = UnaryCall(o, "/t.T/Echo", {}, Str("x"), &resp, uo);
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  EXPECT_GE(Clock::now() - t0, milliseconds(500));
}

TEST(GrpcCallKeepalive, UnansweredPingEndsTheCall) {
  // A TCP listener that accepts (the kernel does) and never speaks HTTP/2.
  UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(l.get(), 4), 0);
  ASSERT_EQ(::getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  ChannelOptions o;
  o.target = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  o.keepalive_time = milliseconds(100);
  o.keepalive_timeout = milliseconds(200);
  Call c;
  ASSERT_TRUE(c.Start(o, "/t.T/Echo", {}, std::nullopt).ok());
  auto t0 = Clock::now();
  StringValue got;
  EXPECT_FALSE(c.Read(&got));
  absl::Status st = c.Finish();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_NE(st.message().find("keepalive"), std::string::npos) << st;
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
}

TEST(GrpcCallTarget, ParsesTheSpellingsAndRejectsTheRest) {
  auto t = ParseTarget("weftd.weft-system.svc:15012");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->host, "weftd.weft-system.svc");
  EXPECT_EQ(t->port, "15012");
  t = ParseTarget("dns:///10.0.0.1:80");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->host, "10.0.0.1");
  t = ParseTarget("[::1]:443");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->host, "::1");
  EXPECT_EQ(t->port, "443");
  for (const char* bad : {"", "host", "host:", ":80", "host:0", "host:70000", "::1:80", "[::1]",
                          "[::1]80", "unix:/run/x.sock"}) {
    EXPECT_FALSE(ParseTarget(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace weft::grpc_client
