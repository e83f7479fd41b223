// The e2e suite's Prometheus harness against a real Prometheus server scraping a real metrics
// endpoint, both inside namespaces this test created.
#include "tests/e2e/prometheus_server.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include "common/admin/admin_server.h"
#include "common/netns.h"
#include "common/testing/root.h"

namespace weft::e2e {
namespace {

using namespace std::chrono_literals;

TEST(PrometheusServerTest, ScrapesATargetAndAnswersQueries) {
  WEFT_SKIP_UNLESS_ROOT("network namespaces");
  char tmpl[] = "/tmp/weft-prom-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  (void)testbed::CleanupStale();
  testbed::Options bo;
  bo.prefix = testbed::UniquePrefix("t");
  bo.nodes = 2;
  bo.ipv6 = false;
  auto bed = testbed::Testbed::Create(bo);
  ASSERT_TRUE(bed.ok()) << bed.status();

  // A metrics endpoint inside node1, like a ztunnel's.
  auto registry = std::make_shared<prometheus::Registry>();
  auto& fam =
      prometheus::BuildCounter().Name("weft_e2e_probe_total").Help("probe").Register(*registry);
  fam.Add({{"kind", "a"}}).Increment(4);
  fam.Add({{"kind", "b"}}).Increment(3);
  const IpAddr node1 = testbed::NodeAddress(1);
  AdminOptions ao;
  ao.admin_addr = SockAddr{node1, 0};
  ao.metrics_addr = SockAddr{node1, 15020};
  ao.readiness_addr = SockAddr{node1, 0};
  ao.registries = {registry};
  ao.component = "e2e-probe";
  AdminServer admin(ao);
  {
    auto ns = (*bed)->NodeNetns(1);
    ASSERT_TRUE(ns.ok());
    UniqueFd fd(::open(testbed::NetnsPath(*ns).c_str(), O_RDONLY | O_CLOEXEC));
    auto enter = ScopedNetns::Enter(fd.get());
    ASSERT_TRUE(enter.ok()) << enter.status();
    ASSERT_TRUE(admin.Start().ok());
  }

  PrometheusServer::Options po;
  po.netns = *(*bed)->NodeNetns(0);
  po.listen = testbed::NodeAddress(0).ToString() + ":9090";
  po.work_dir = dir;
  po.jobs = {{"probe", {node1.ToString() + ":15020"}, {{"node", "node1"}}}};
  po.scrape_interval = 500ms;
  auto prom = PrometheusServer::Start(po);
  ASSERT_TRUE(prom.ok()) << prom.status();
  ASSERT_TRUE((*prom)->WaitTargetsUp(20s).ok()) << (*prom)->Log();

  auto sum = (*prom)->WaitForValue(
      "sum(weft_e2e_probe_total)", [](double v) { return v == 7; }, 20s);
  ASSERT_TRUE(sum.ok()) << sum.status();
  auto by_kind = (*prom)->Query("weft_e2e_probe_total{kind=\"a\"}");
  ASSERT_TRUE(by_kind.ok()) << by_kind.status();
  ASSERT_EQ(by_kind->size(), 1u);
  EXPECT_EQ((*by_kind)[0].labels.at("node"), "node1");  // the job's extra label
  EXPECT_EQ((*by_kind)[0].labels.at("job"), "probe");
  EXPECT_DOUBLE_EQ((*by_kind)[0].value, 4);

  // A change shows up at the next scrape.
  fam.Add({{"kind", "a"}}).Increment(10);
  auto later = (*prom)->WaitForValue(
      "sum(weft_e2e_probe_total)", [](double v) { return v == 17; }, 20s);
  EXPECT_TRUE(later.ok()) << later.status();

  // Bad PromQL is an error naming Prometheus's complaint, at once (not a timeout).
  auto bad = (*prom)->WaitFor(
      "sum(", [](const auto&) { return true; }, 20s);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  // A condition that never holds: a deadline naming the query and the last answer.
  auto never = (*prom)->WaitForValue(
      "sum(weft_e2e_probe_total)", [](double v) { return v < 0; }, 1s);
  ASSERT_FALSE(never.ok());
  EXPECT_NE(never.status().message().find("weft_e2e_probe_total"), std::string::npos);

  prom->reset();
  admin.Stop();
  std::filesystem::remove_all(dir);
}

TEST(PrometheusServerTest, MissingBinaryIsAClearError) {
  PrometheusServer::Options po;
  po.binary = "/nonexistent/prometheus";
  po.listen = "127.0.0.1:9090";
  po.work_dir = "/tmp";
  auto prom = PrometheusServer::Start(po);
  ASSERT_FALSE(prom.ok());
  EXPECT_EQ(prom.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(prom.status().message().find("prometheus package"), std::string::npos);
}

}  // namespace
}  // namespace weft::e2e
