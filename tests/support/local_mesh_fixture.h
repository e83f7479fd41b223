// A gtest fixture over a local mesh (cli/localmesh): nodes and pods as network namespaces with
// real ztunnel and weft-agent processes, and echo servers in chosen pods. For test targets that
// define WEFT_ZTUNNEL_BIN and WEFT_AGENT_BIN (and WEFT_WEFTD_BIN for a control-plane mesh).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cli/localmesh/local_mesh.h"
#include "common/scrape/scrape.h"
#include "tests/support/test_util.h"

namespace weft::testing {

// The port the fixtures' echo servers listen on in their pods.
inline constexpr uint16_t kAppPort = 8080;

template <typename Base = ::testing::Test>
class LocalMeshFixture : public Base {
 protected:
  // Starts the mesh `o` (binaries and work directory filled in) and an echo server on kAppPort
  // in each pod of `echo_pods`. Fails the test (fatally) when either does not start.
  void StartMesh(localmesh::Options o, const std::vector<std::string>& echo_pods) {
    o.ztunnel_bin = WEFT_ZTUNNEL_BIN;
    o.agent_bin = WEFT_AGENT_BIN;
#ifdef WEFT_WEFTD_BIN
    if (o.control_plane) o.weftd_bin = WEFT_WEFTD_BIN;
#endif
    o.work_dir = dir_.path();
    auto m = localmesh::LocalMesh::Start(o);
    ASSERT_TRUE(m.ok()) << m.status();
    mesh_ = std::move(*m);
    for (const std::string& pod : echo_pods) {
      auto ns = mesh_->PodNetns(pod);
      ASSERT_TRUE(ns.ok()) << ns.status();
      servers_.push_back(
          std::make_unique<EchoServer>(SockAddr{*IpAddr::Parse("0.0.0.0"), kAppPort}, ns->get()));
    }
  }

  // A connection made the way the pod's own process would make it: in eBPF mode the connect
  // hooks only see sockets created by a task in the pod's cgroup.
  UniqueFd DialFrom(const std::string& pod, const SockAddr& to,
                    std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto fd = mesh_->Dial(pod, to, timeout);
    EXPECT_TRUE(fd.ok()) << pod << " -> " << to.ToString() << ": " << fd.status();
    return fd.ok() ? std::move(*fd) : UniqueFd();
  }
  // The echo server of `pod`.
  SockAddr App(const std::string& pod) {
    return SockAddr{*mesh_->PodIp(pod), kAppPort};
  }
  // The sum of metric `name` over the series with `labels` on node `node`'s ztunnel; -1 (and a
  // test failure) when the metrics cannot be read.
  double Metric(int node, const std::string& name,
                const std::map<std::string, std::string>& labels = {}) {
    auto m = mesh_->Metrics(node);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? MetricSum(*m, name, labels) : -1;
  }

  TempDir dir_;
  std::unique_ptr<localmesh::LocalMesh> mesh_;
  std::vector<std::unique_ptr<EchoServer>> servers_;
};

}  // namespace weft::testing
