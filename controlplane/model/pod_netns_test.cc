// The Pod annotation weft.dev/netns-path (issue 13, hole 1): the agent and ztunnel enter the
// namespace it names, so weftd honours it only for the pods weftctl up created, under the
// prefix weftctl up gave it, and never in a cluster.
#include <gtest/gtest.h>

#include "controlplane/model/model.h"
#include "nlohmann/json.hpp"

namespace weft::cp {
namespace {

using json = nlohmann::json;

json PodWithNetns(const std::string& path) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata",
           {{"name", "evil"},
            {"namespace", "tenant"},
            {"uid", "0b7e6f5c-1111-2222-3333-444455556666"},
            {"annotations", {{"weft.dev/netns-path", path}}}}},
          {"spec", {{"nodeName", "node-a"}, {"serviceAccountName", "default"}}},
          {"status", {{"phase", "Running"}, {"podIP", "10.0.0.9"}}}};
}

absl::Status ApplyPod(Model& m, const std::string& path) {
  return m.Apply(ObjectEvent{ObjectEvent::Type::kUpsert, "test", "", PodWithNetns(path)});
}

// Whether node-a's view carries a workload with this netns path.
bool ViewHasNetns(const Model& m, const std::string& path) {
  const auto view = m.NodeView("node-a");
  for (const auto& w : view.workloads())
    if (w.netns_path() == path) return true;
  return false;
}

TEST(PodNetnsPath, RefusedInAClusterWithAReasonAndNeverStreamed) {
  Model m;  // no prefix: weftd --kubernetes
  for (const char* path : {"/proc/1/ns/net", "/run/netns/other-pod", "/tmp/fifo"}) {
    absl::Status st = ApplyPod(m, path);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << path;
    EXPECT_NE(st.message().find("metadata.annotations[weft.dev/netns-path]"), std::string::npos)
        << st;
    EXPECT_FALSE(ViewHasNetns(m, path)) << path;
  }
  ASSERT_EQ(m.Rejected().size(), 1u);
  EXPECT_EQ(m.Rejected()[0].kind, "Pod");
  EXPECT_NE(m.Rejected()[0].reason.find("only weftctl up's own pods"), std::string::npos)
      << m.Rejected()[0].reason;
}

TEST(PodNetnsPath, LocalModeAcceptsOnlyOneNameUnderItsPrefix) {
  Model m(ModelOptions{.pod_netns_prefix = "/run/netns/weft-t1-"});
  EXPECT_TRUE(ApplyPod(m, "/run/netns/weft-t1-tenant-evil").ok());
  EXPECT_TRUE(ViewHasNetns(m, "/run/netns/weft-t1-tenant-evil"));
  for (const char* path :
       {"/proc/1/ns/net", "/run/netns/weft-t2-x", "/run/netns/weft-t1-", "/run/netns/weft-t1-a/b",
        "/run/netns/weft-t1-../../proc/1/ns/net", "/run/netns/weft-t1"}) {
    absl::Status st = ApplyPod(m, path);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << path;
    EXPECT_NE(st.message().find("is not a pod namespace of this mesh"), std::string::npos) << st;
    EXPECT_FALSE(ViewHasNetns(m, path)) << path;
  }
}

}  // namespace
}  // namespace weft::cp
