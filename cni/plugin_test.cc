// weft-cni's plugin logic without a real agent: configuration and environment checks, the
// spec's error object, pass-through, and the protocol against a stand-in agent socket.
#include "cni/plugin.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <thread>

#include "cni/protocol.h"
#include "common/testing/netns_fixture.h"
#include "common/testing/temp_dir.h"
#include "common/unique_fd.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace weft::cni {
namespace {

using nlohmann::json;

const json kPrev = {{"cniVersion", "1.0.0"},
                    {"interfaces", {{{"name", "eth0"}, {"sandbox", "/run/netns/x"}}}},
                    {"ips", {{{"address", "10.99.0.5/24"}, {"interface", 0}}}}};

std::map<std::string, std::string> Env(const std::string& cmd, const std::string& args =
                                                                   "K8S_POD_NAMESPACE=shop;"
                                                                   "K8S_POD_NAME=web-1") {
  return {{"CNI_COMMAND", cmd},
          {"CNI_CONTAINERID", "c0ffee"},
          {"CNI_NETNS", "/run/netns/x"},
          {"CNI_IFNAME", "eth0"},
          {"CNI_ARGS", "IgnoreUnknown=1;" + args},
          {"CNI_PATH", "/usr/lib/cni"}};
}

std::string Conf(const std::string& socket, bool prev = true,
                 const std::string& version = "1.0.0") {
  json c = {{"cniVersion", version},
            {"name", "t"},
            {"type", "weft-cni"},
            {"agentSocket", socket},
            {"timeoutSeconds", 5}};
  if (prev) c["prevResult"] = kPrev;
  return c.dump();
}

json ErrorOf(const PluginOutput& o) {
  EXPECT_EQ(o.exit_code, 1) << o.out;
  json e = json::parse(o.out, nullptr, false);
  EXPECT_TRUE(e.is_object()) << o.out;
  return e;
}

// A stand-in agent: answers each connection's request with `reply` and records it.
class FakeAgent {
 public:
  FakeAgent(const std::string& path, Reply reply) : reply_(std::move(reply)) {
    fd_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << path;
    EXPECT_EQ(::listen(fd_.get(), 4), 0);
    thread_ = std::thread([this] {
      UniqueFd c(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) return;
      char buf[kMaxMessage];
      ssize_t n = ::recv(c.get(), buf, sizeof buf, 0);
      if (n > 0) got_ = std::string(buf, static_cast<size_t>(n));
      std::string r = EncodeReply(reply_);
      (void)!::send(c.get(), r.data(), r.size(), MSG_NOSIGNAL);
    });
  }
  ~FakeAgent() {
    ::shutdown(fd_.get(), SHUT_RDWR);
    thread_.join();
  }
  Request Got() {
    thread_.join();
    thread_ = std::thread([] {});
    Request r;
    std::string err = DecodeRequest(got_, &r);
    EXPECT_EQ(err, "");
    return r;
  }

 private:
  Reply reply_;
  UniqueFd fd_;
  std::string got_;
  std::thread thread_;
};

TEST(CniPluginTest, VersionListsSupportedVersions) {
  PluginOutput o = RunPlugin({{"CNI_COMMAND", "VERSION"}}, "");
  ASSERT_EQ(o.exit_code, 0);
  json v = json::parse(o.out);
  EXPECT_EQ(v["cniVersion"], "1.0.0");
  EXPECT_EQ(v["supportedVersions"], json({"0.3.0", "0.3.1", "0.4.0", "1.0.0"}));
}

TEST(CniPluginTest, BinaryAnswersVersionAsARuntimeCallsIt) {
  int code = -1;
  std::string out = weft::testing::Shell(
      std::string("echo '{\"cniVersion\":\"1.0.0\"}' | env -i CNI_COMMAND=VERSION ") +
          WEFT_CNI_BIN + " 2>/dev/null",
      &code);
  EXPECT_EQ(code, 0) << out;
  json v = json::parse(out, nullptr, false);
  ASSERT_TRUE(v.is_object()) << out;
  EXPECT_EQ(v["supportedVersions"].back(), "1.0.0");
}

TEST(CniPluginTest, BadInputIsTheSpecsErrorObject) {
  json e = ErrorOf(RunPlugin(Env("ADD"), "not json"));
  EXPECT_EQ(e["code"], kErrDecode);
  EXPECT_EQ(e["cniVersion"], "1.0.0");
  EXPECT_FALSE(e["msg"].get<std::string>().empty());

  e = ErrorOf(RunPlugin(Env("ADD"), Conf("/x", true, "9.9.9")));
  EXPECT_EQ(e["code"], kErrIncompatibleVersion);
  EXPECT_NE(e["details"].get<std::string>().find("1.0.0"), std::string::npos) << e;

  e = ErrorOf(RunPlugin(Env("ADD"), Conf("/x", /*prev=*/false)));
  EXPECT_EQ(e["code"], kErrInvalidConfig);
  EXPECT_NE(e["msg"].get<std::string>().find("chained"), std::string::npos) << e;

  auto env = Env("ADD");
  env.erase("CNI_NETNS");
  e = ErrorOf(RunPlugin(env, Conf("/x")));
  EXPECT_EQ(e["code"], kErrInvalidEnv);
  EXPECT_NE(e["msg"].get<std::string>().find("CNI_NETNS"), std::string::npos) << e;

  e = ErrorOf(RunPlugin(Env("GC"), Conf("/x")));
  EXPECT_EQ(e["code"], kErrInvalidEnv);

  e = ErrorOf(RunPlugin(Env("CHECK"), Conf("/x", true, "0.3.1")));
  EXPECT_EQ(e["code"], kErrIncompatibleVersion);
  EXPECT_EQ(e["cniVersion"], "0.3.1");

  json c = json::parse(Conf("/x"));
  c["timeoutSeconds"] = "soon";
  e = ErrorOf(RunPlugin(Env("ADD"), c.dump()));
  EXPECT_EQ(e["code"], kErrInvalidConfig);
}

TEST(CniPluginTest, AgentUnreachableFailsAddAndCheckButNotDel) {
  weft::testing::TempDir dir;
  std::string sock = dir.path() + "/none.sock";
  json e = ErrorOf(RunPlugin(Env("ADD"), Conf(sock)));
  EXPECT_EQ(e["code"], kErrTryAgainLater);
  EXPECT_NE(e["details"].get<std::string>().find(sock), std::string::npos) << e;
  e = ErrorOf(RunPlugin(Env("CHECK"), Conf(sock)));
  EXPECT_EQ(e["code"], kErrTryAgainLater);
  PluginOutput del = RunPlugin(Env("DEL"), Conf(sock, false));
  EXPECT_EQ(del.exit_code, 0) << del.out;
  EXPECT_EQ(del.out, "");
}

TEST(CniPluginTest, NonKubernetesContainerPassesThrough) {
  PluginOutput o = RunPlugin(Env("ADD", ""), Conf("/nonexistent/agent.sock"));
  ASSERT_EQ(o.exit_code, 0) << o.out;
  json r = json::parse(o.out);
  EXPECT_EQ(r["ips"], kPrev["ips"]);
}

TEST(CniPluginTest, AddSendsThePodAndEchoesPrevResult) {
  weft::testing::TempDir dir;
  std::string sock = dir.path() + "/agent.sock";
  FakeAgent agent(sock, Reply::Ok(true));
  PluginOutput o =
      RunPlugin(Env("ADD", "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1;K8S_POD_UID=ab-12"),
                Conf(sock, true, "0.4.0"));
  ASSERT_EQ(o.exit_code, 0) << o.out;
  json r = json::parse(o.out);
  EXPECT_EQ(r["cniVersion"], "0.4.0");
  EXPECT_EQ(r["ips"], kPrev["ips"]);
  EXPECT_EQ(r["interfaces"], kPrev["interfaces"]);
  Request got = agent.Got();
  EXPECT_EQ(got.op, "add");
  EXPECT_EQ(got.pod_namespace, "shop");
  EXPECT_EQ(got.pod_name, "web-1");
  EXPECT_EQ(got.pod_uid, "ab-12");
  EXPECT_EQ(got.netns, "/run/netns/x");
  EXPECT_EQ(got.container_id, "c0ffee");
  EXPECT_EQ(got.ips, std::vector<std::string>{"10.99.0.5"});
}

TEST(CniPluginTest, AgentErrorsKeepTheirCode) {
  weft::testing::TempDir dir;
  std::string sock = dir.path() + "/agent.sock";
  FakeAgent agent(sock, Reply::Error(kErrDrift, "capture missing in /run/netns/x"));
  json e = ErrorOf(RunPlugin(Env("CHECK"), Conf(sock)));
  EXPECT_EQ(e["code"], kErrDrift);
  EXPECT_EQ(e["details"], "capture missing in /run/netns/x");
  EXPECT_NE(e["msg"].get<std::string>().find("shop/web-1"), std::string::npos) << e;
}

TEST(CniPluginTest, ProtocolRejectsBadMessages) {
  Request req;
  Reply rep;
  EXPECT_NE(DecodeRequest("[]", &req), "");
  EXPECT_NE(DecodeRequest(R"({"op":"rm"})", &req).find("unknown op"), std::string::npos);
  EXPECT_NE(DecodeRequest(R"({"op":"add","ips":[1]})", &req).find("ips"), std::string::npos);
  EXPECT_NE(DecodeRequest(R"({"op":"add","netns":7})", &req).find("netns"), std::string::npos);
  EXPECT_NE(DecodeReply(R"({"ok":false})", &rep), "");
  EXPECT_NE(DecodeReply(R"({"enrolled":true})", &rep), "");
  Request r{"del", "c", "/n", "eth0", "ns", "p", "u", {"10.0.0.1", "fd00::1"}};
  Request back;
  ASSERT_EQ(DecodeRequest(EncodeRequest(r), &back), "");
  EXPECT_EQ(back.ips, r.ips);
  EXPECT_EQ(back.pod_uid, "u");
}

TEST(CniPluginTest, CniArgs) {
  auto a = ParseCniArgs("IgnoreUnknown=1;K8S_POD_NAME=a=b;junk;;K8S_POD_NAMESPACE=");
  EXPECT_EQ(a["K8S_POD_NAME"], "a=b");
  EXPECT_EQ(a["K8S_POD_NAMESPACE"], "");
  EXPECT_EQ(a.count("junk"), 0u);
}

}  // namespace
}  // namespace weft::cni
