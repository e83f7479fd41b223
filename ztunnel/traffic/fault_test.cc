// Fault injection: which fault applies (rule > route > policy) and the delay/abort decisions.
#include "ztunnel/traffic/fault.h"

#include <gtest/gtest.h>

namespace weft::ztunnel::traffic {
namespace {

TEST(FaultTest, RuleBeatsRouteBeatsPolicy) {
  config::TrafficPolicy p;
  EXPECT_EQ(FaultFor(p, "shop/r", "a"), nullptr);
  p.fault_injection = config::FaultInjection{config::FaultDelay{1, 100}, std::nullopt};
  p.route_fault_injection["shop/r"] = config::FaultInjection{config::FaultDelay{2, 100}, {}};
  p.route_fault_injection["shop/r#a"] = config::FaultInjection{config::FaultDelay{3, 100}, {}};
  EXPECT_EQ(FaultFor(p, "shop/r", "a")->delay->fixed_delay_ms, 3u);
  EXPECT_EQ(FaultFor(p, "shop/r", "b")->delay->fixed_delay_ms, 2u);
  EXPECT_EQ(FaultFor(p, "shop/r", "")->delay->fixed_delay_ms, 2u);
  EXPECT_EQ(FaultFor(p, "shop/other", "a")->delay->fixed_delay_ms, 1u);
  EXPECT_EQ(FaultFor(p, "", "")->delay->fixed_delay_ms, 1u);
}

TEST(FaultTest, DecisionsFollowThePercentages) {
  config::FaultInjection f;
  f.delay = config::FaultDelay{150, 50};
  f.abort = config::FaultAbort{503, -1, 10};
  const uint64_t low = 0, high = ~uint64_t{0};
  FaultDecision d = DecideFault(f, low, low);
  EXPECT_TRUE(d.delayed());
  EXPECT_EQ(d.delay_ms, 150u);
  EXPECT_TRUE(d.aborted());
  EXPECT_EQ(d.abort_http_status, 503);
  EXPECT_EQ(d.abort_grpc_status, -1);
  d = DecideFault(f, high, high);
  EXPECT_FALSE(d.delayed());
  EXPECT_FALSE(d.aborted());
  // 10 %: a draw at 0.2 of the range does not abort, one at 0.05 does.
  EXPECT_FALSE(DecideFault(f, high, high / 5).aborted());
  EXPECT_TRUE(DecideFault(f, high, high / 20).aborted());

  config::FaultInjection grpc;
  grpc.abort = config::FaultAbort{0, 14, 100};
  d = DecideFault(grpc, high, high);
  EXPECT_TRUE(d.aborted());
  EXPECT_EQ(d.abort_http_status, 0);
  EXPECT_EQ(d.abort_grpc_status, 14);
  EXPECT_FALSE(DecideFault(config::FaultInjection{}, low, low).aborted());
}

}  // namespace
}  // namespace weft::ztunnel::traffic
