// HandoffServer and HandoffClient against each other, in one process, over a real
// SOCK_SEQPACKET socket in a private temp dir.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/handoff_client.h"
#include "common/netns.h"
#include "common/testing/netns_fixture.h"
#include "common/testing/root.h"
#include "gtest/gtest.h"
#include "ztunnel/inpod/handoff_server.h"

namespace weft::ztunnel {
namespace {

using namespace std::chrono_literals;
using weft::agent::HandoffClient;
using weft::inpod::v1::WorkloadInfo;
using weft::inpod::v1::WorkloadRequest;
using weft::inpod::v1::WorkloadResponse;

struct Recorded {
  struct Add {
    std::string uid;
    WorkloadInfo info;
    uint64_t cookie = 0;
  };
  std::mutex mu;
  std::vector<Add> adds;
  std::vector<std::string> dels;
  std::vector<std::string> bad;
};

// Polls `pred` for up to 5 s: for state that changes on the server thread without a signal.
template <typename Pred>
bool Eventually(Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// The pods' namespaces are "weft-hoff-<pid>-<n>".
constexpr char kNetnsPrefix[] = "weft-hoff-";

class HandoffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/weft-handoff-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/zt.sock";
    // ztunnel refuses its own namespace (and the host's) as a pod's: the pod is a namespace of
    // its own, as in a cluster.
    WEFT_SKIP_UNLESS_ROOT("a network namespace for the pod");
    weft::testing::DeleteStaleNamespaces(kNetnsPrefix);
    pod_ns_ = std::make_unique<weft::testing::ScopedNetns>(kNetnsPrefix);
    auto ns = OpenNetns(pod_ns_->path());
    ASSERT_TRUE(ns.ok()) << ns.status();
    netns_ = std::move(*ns);
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  HandoffServer::Callbacks MakeCallbacks() {
    HandoffServer::Callbacks cb;
    cb.add = [this](const weft::inpod::v1::AddWorkload& add, UniqueFd netns) -> absl::Status {
      const std::string& uid = add.uid();
      const WorkloadInfo& info = add.info();
      if (uid == "ns/refused") return absl::FailedPreconditionError("pod ns/refused is refused");
      Recorded::Add a{uid, info, 0};
      auto c = NetnsCookie(netns.get());
      if (!c.ok()) return c.status();
      a.cookie = *c;
      std::lock_guard<std::mutex> lock(rec_.mu);
      rec_.adds.push_back(a);
      return absl::OkStatus();
    };
    cb.del = [this](const std::string& uid) {
      std::lock_guard<std::mutex> lock(rec_.mu);
      rec_.dels.push_back(uid);
    };
    cb.on_bad_input = [this](std::string_view kind) {
      std::lock_guard<std::mutex> lock(rec_.mu);
      rec_.bad.emplace_back(kind);
    };
    return cb;
  }

  void StartServer() {
    server_ = std::make_unique<HandoffServer>(path_, MakeCallbacks());
    ASSERT_TRUE(server_->Start().ok());
  }

  static WorkloadInfo Info(std::string name) {
    WorkloadInfo i;
    i.set_name(std::move(name));
    i.set_namespace_("ns");
    i.set_service_account("sa");
    return i;
  }

  // A raw SEQPACKET connection, for bytes a well-behaved client never sends.
  UniqueFd RawConnect() {
    int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << strerror(errno);
    return UniqueFd(fd);
  }
  static void RawSend(int fd, const std::string& bytes, const std::vector<int>& fds = {}) {
    iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * std::max<size_t>(fds.size(), 1)));
    if (!fds.empty()) {
      msg.msg_control = control.data();
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ASSERT_EQ(::sendmsg(fd, &msg, MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()))
        << strerror(errno);
  }
  static std::string RawAckError(int fd) {
    pollfd p{fd, POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 5000), 1) << "no ack";
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    EXPECT_GT(n, 0);
    WorkloadResponse resp;
    EXPECT_TRUE(resp.ParseFromArray(buf, static_cast<int>(std::max<ssize_t>(n, 0))));
    return resp.ack().error();
  }

  std::string dir_, path_;
  std::unique_ptr<weft::testing::ScopedNetns> pod_ns_;
  UniqueFd netns_;
  Recorded rec_;
  std::unique_ptr<HandoffServer> server_;
};

TEST_F(HandoffTest, SocketFileIsPrivate) {
  StartServer();
  struct stat st;
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(HandoffTest, AddKeepDelWithRealNetnsFd) {
  StartServer();
  HandoffClient client(path_);
  ASSERT_TRUE(client.Connect().ok());
  ASSERT_TRUE(Eventually([&] { return server_->agent_connected(); }));

  absl::Status st = client.AddWorkload("ns/a", Info("a"), netns_.get());
  ASSERT_TRUE(st.ok()) << st;
  {
    std::lock_guard<std::mutex> lock(rec_.mu);
    ASSERT_EQ(rec_.adds.size(), 1u);
    EXPECT_EQ(rec_.adds[0].uid, "ns/a");
    EXPECT_EQ(rec_.adds[0].info.name(), "a");
    EXPECT_EQ(rec_.adds[0].info.service_account(), "sa");
    EXPECT_EQ(rec_.adds[0].cookie, pod_ns_->cookie());  // the fd really is the pod's netns
  }
  EXPECT_EQ(server_->known_pods(), std::set<std::string>{"ns/a"});

  // Keep re-invokes add with the info remembered from the AddWorkload.
  st = client.KeepWorkload("ns/a", netns_.get());
  ASSERT_TRUE(st.ok()) << st;
  {
    std::lock_guard<std::mutex> lock(rec_.mu);
    ASSERT_EQ(rec_.adds.size(), 2u);
    EXPECT_EQ(rec_.adds[1].info.name(), "a");
  }
  st = client.KeepWorkload("ns/unknown", netns_.get());
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("unknown pod"), std::string_view::npos) << st;

  st = client.DelWorkload("ns/a");
  ASSERT_TRUE(st.ok()) << st;
  {
    std::lock_guard<std::mutex> lock(rec_.mu);
    EXPECT_EQ(rec_.dels, std::vector<std::string>{"ns/a"});
  }
  EXPECT_TRUE(server_->known_pods().empty());
  // Deleting an unknown pod is idempotent and does not call back.
  EXPECT_TRUE(client.DelWorkload("ns/a").ok());
  std::lock_guard<std::mutex> lock(rec_.mu);
  EXPECT_EQ(rec_.dels.size(), 1u);
  EXPECT_TRUE(rec_.bad.empty());
}

// A pod's namespace must not be ztunnel's own or the host's: listeners there would take the
// node's traffic (issue 13, hole 1). Refused before the add callback runs, and counted.
TEST_F(HandoffTest, OwnOrHostNamespaceIsRefusedAsAPods) {
  StartServer();
  HandoffClient client(path_);
  ASSERT_TRUE(client.Connect().ok());
  // PID 1's namespace can only be opened where PID 1 is within reach (not in every sandbox).
  for (const char* path : {"/proc/self/ns/net", "/proc/1/ns/net"}) {
    auto ns = OpenNetns(path);
    if (!ns.ok() && std::string_view(path) == "/proc/1/ns/net") continue;
    ASSERT_TRUE(ns.ok()) << ns.status();
    absl::Status st = client.AddWorkload("ns/evil", Info("evil"), ns->get());
    EXPECT_FALSE(st.ok()) << path;
    EXPECT_NE(st.message().find("not a pod's"), std::string_view::npos) << st;
  }
  EXPECT_TRUE(server_->known_pods().empty());
  std::lock_guard<std::mutex> lock(rec_.mu);
  EXPECT_TRUE(rec_.adds.empty());
  // This test runs in the host's namespace, so the host's is "own" to the server too.
  ASSERT_FALSE(rec_.bad.empty());
  for (const std::string& kind : rec_.bad) EXPECT_EQ(kind, "own_netns");
}

TEST_F(HandoffTest, AddCallbackErrorIsSentBack) {
  StartServer();
  HandoffClient client(path_);
  ASSERT_TRUE(client.Connect().ok());
  absl::Status st = client.AddWorkload("ns/refused", Info("refused"), netns_.get());
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("pod ns/refused is refused"), std::string_view::npos) << st;
  EXPECT_TRUE(server_->known_pods().empty());
  EXPECT_TRUE(client.connected());
}

TEST_F(HandoffTest, SnapshotReconcileDropsPodsNotReplayed) {
  StartServer();
  {
    HandoffClient first(path_);
    ASSERT_TRUE(first.Connect().ok());
    ASSERT_TRUE(first.AddWorkload("ns/a", Info("a"), netns_.get()).ok());
    ASSERT_TRUE(first.AddWorkload("ns/b", Info("b"), netns_.get()).ok());
    ASSERT_TRUE(first.SnapshotSent().ok());
  }  // agent restarts
  EXPECT_EQ(server_->known_pods(), (std::set<std::string>{"ns/a", "ns/b"}));

  HandoffClient second(path_);
  ASSERT_TRUE(second.Connect().ok());
  ASSERT_TRUE(second.AddWorkload("ns/a", Info("a"), netns_.get()).ok());
  ASSERT_TRUE(second.AddWorkload("ns/c", Info("c"), netns_.get()).ok());
  {
    std::lock_guard<std::mutex> lock(rec_.mu);
    EXPECT_TRUE(rec_.dels.empty()) << "nothing is removed before SnapshotSent";
  }
  ASSERT_TRUE(second.SnapshotSent().ok());
  std::lock_guard<std::mutex> lock(rec_.mu);
  EXPECT_EQ(rec_.dels, std::vector<std::string>{"ns/b"});
  EXPECT_EQ(server_->known_pods(), (std::set<std::string>{"ns/a", "ns/c"}));
}

TEST_F(HandoffTest, NewConnectionReplacesOld) {
  StartServer();
  HandoffClient first(path_);
  ASSERT_TRUE(first.Connect().ok());
  ASSERT_TRUE(first.AddWorkload("ns/a", Info("a"), netns_.get()).ok());

  HandoffClient second(path_);
  ASSERT_TRUE(second.Connect().ok());
  ASSERT_TRUE(second.KeepWorkload("ns/a", netns_.get()).ok());  // served: second is current

  // The server closed the first connection when it accepted the second.
  pollfd p{first.fd(), POLLRDHUP, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  absl::Status st = first.DelWorkload("ns/a");
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_FALSE(first.connected());
  EXPECT_EQ(server_->known_pods(), std::set<std::string>{"ns/a"});

  ASSERT_TRUE(second.SnapshotSent().ok());
  EXPECT_EQ(server_->known_pods(), std::set<std::string>{"ns/a"});
  EXPECT_TRUE(server_->agent_connected());
  second.Close();
  EXPECT_TRUE(Eventually([&] { return !server_->agent_connected(); }));
}

TEST_F(HandoffTest, MalformedDatagramsGetErrorAcksAndServerKeepsServing) {
  StartServer();
  UniqueFd raw = RawConnect();

  RawSend(raw.get(), std::string("\xff\xff\xff", 3));  // truncated varint
  EXPECT_NE(RawAckError(raw.get()).find("not a valid"), std::string::npos);

  RawSend(raw.get(), std::string("\x28\x01", 2));  // parses (unknown field 5), no payload
  EXPECT_NE(RawAckError(raw.get()).find("no payload"), std::string::npos);

  RawSend(raw.get(), std::string());  // zero-length datagram is not end-of-stream
  EXPECT_NE(RawAckError(raw.get()).find("no payload"), std::string::npos);

  RawSend(raw.get(), std::string(kMaxHandoffMessage + 100, 'x'));
  EXPECT_NE(RawAckError(raw.get()).find("larger than"), std::string::npos);

  WorkloadRequest add;
  add.mutable_add()->set_uid("ns/a");
  RawSend(raw.get(), add.SerializeAsString());  // add without fd
  EXPECT_NE(RawAckError(raw.get()).find("needs exactly one netns fd"), std::string::npos);

  int pipefd[2];
  ASSERT_EQ(::pipe2(pipefd, O_CLOEXEC), 0);
  UniqueFd pr(pipefd[0]), pw(pipefd[1]);
  RawSend(raw.get(), add.SerializeAsString(), {pr.get()});  // fd that is not a netns
  EXPECT_NE(RawAckError(raw.get()).find("not a network namespace"), std::string::npos);

  RawSend(raw.get(), add.SerializeAsString(), {netns_.get(), netns_.get()});
  EXPECT_NE(RawAckError(raw.get()).find("got 2"), std::string::npos);

  WorkloadRequest del;
  del.mutable_del()->set_uid("ns/a");
  RawSend(raw.get(), del.SerializeAsString(), {netns_.get()});
  EXPECT_NE(RawAckError(raw.get()).find("only add/keep"), std::string::npos);

  WorkloadRequest empty_uid;
  empty_uid.mutable_add();
  RawSend(raw.get(), empty_uid.SerializeAsString(), {netns_.get()});
  EXPECT_NE(RawAckError(raw.get()).find("empty uid"), std::string::npos);

  // The same connection still works for a well-formed add.
  RawSend(raw.get(), add.SerializeAsString(), {netns_.get()});
  EXPECT_EQ(RawAckError(raw.get()), "");
  EXPECT_EQ(server_->known_pods(), std::set<std::string>{"ns/a"});

  {
    std::lock_guard<std::mutex> lock(rec_.mu);
    EXPECT_EQ(rec_.bad,
              (std::vector<std::string>{"malformed", "empty", "empty", "oversized", "missing_fd",
                                        "not_netns", "extra_fd", "unexpected_fd", "empty_uid"}));
  }

  // The typed client gets the ack text as its error.
  HandoffClient client(path_);
  ASSERT_TRUE(client.Connect().ok());
  absl::Status st = client.AddWorkload("ns/b", Info("b"), -1);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("needs exactly one netns fd"), std::string_view::npos) << st;
  EXPECT_TRUE(client.AddWorkload("ns/b", Info("b"), netns_.get()).ok());
}

TEST_F(HandoffTest, ClientTimesOutWhenServerDoesNotAnswer) {
  // A listener that accepts nothing and never answers.
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  UniqueFd l(fd);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path_.c_str(), sizeof a.sun_path - 1);
  ASSERT_EQ(::bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(l.get(), 4), 0);

  HandoffClient client(path_, 200ms);
  ASSERT_TRUE(client.Connect().ok());
  auto t0 = std::chrono::steady_clock::now();
  absl::Status st = client.SnapshotSent();
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  EXPECT_NE(st.message().find("no ack from ztunnel within 200 ms"), std::string_view::npos);
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 3s);
  EXPECT_FALSE(client.connected());
}

TEST_F(HandoffTest, ConnectWithoutServerHasHint) {
  HandoffClient client(path_);
  absl::Status st = client.Connect();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("is ztunnel running? socket " + path_), std::string_view::npos) << st;
  EXPECT_FALSE(client.connected());
  st = client.SnapshotSent();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
}

TEST_F(HandoffTest, RestartReplacesStaleSocketButNotOtherFiles) {
  StartServer();
  HandoffClient client(path_);
  ASSERT_TRUE(client.Connect().ok());
  ASSERT_TRUE(client.AddWorkload("ns/a", Info("a"), netns_.get()).ok());
  server_->Stop();
  EXPECT_EQ(client.SnapshotSent().code(), absl::StatusCode::kUnavailable);

  // A socket file left behind by a crashed ztunnel is replaced.
  {
    int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    UniqueFd s(fd);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof a.sun_path - 1);
    ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  }
  StartServer();
  ASSERT_TRUE(client.Connect().ok());
  EXPECT_TRUE(client.AddWorkload("ns/a", Info("a"), netns_.get()).ok());
  server_.reset();

  // A regular file at the path is not ours to delete.
  {
    std::FILE* f = std::fopen(path_.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  HandoffServer other(path_, MakeCallbacks());
  absl::Status st = other.Start();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("not a socket"), std::string_view::npos) << st;
  EXPECT_TRUE(std::filesystem::is_regular_file(path_));
}

}  // namespace
}  // namespace weft::ztunnel
