// Outlier detection: the ejection state machine (consecutive errors, max ejection percent,
// ejection time growing with each ejection, un-ejection in the interval sweep).
#include "ztunnel/traffic/outlier.h"

#include <gtest/gtest.h>

namespace weft::ztunnel::traffic {
namespace {

using O = OutlierDetector::Outcome;

TimePoint At(int64_t ms) {
  return TimePoint{} + Millis(ms);
}

config::OutlierDetection Config(uint32_t c5xx, uint32_t cgw, uint32_t max_percent) {
  return config::OutlierDetection{c5xx, cgw, 1000, 10000, max_percent};
}

TEST(OutlierTest, ConsecutiveErrorsEjectAndSuccessResets) {
  OutlierDetector d(Config(3, 0, 100), At(0));
  d.SetEndpoints({"a", "b"});
  d.Report("a", O::kError5xx, At(1));
  d.Report("a", O::kError5xx, At(2));
  d.Report("a", O::kSuccess, At(3));  // resets
  d.Report("a", O::kError5xx, At(4));
  d.Report("a", O::kError5xx, At(5));
  EXPECT_FALSE(d.IsEjected("a"));
  d.Report("a", OutlierDetector::Classify(500), At(6));
  EXPECT_TRUE(d.IsEjected("a"));
  EXPECT_FALSE(d.IsEjected("b"));
  EXPECT_EQ(d.EjectedEndpoints(), (std::vector<std::string>{"a"}));
  OutlierDetector::Stats s = d.stats();
  EXPECT_EQ(s.ejections_enforced_total, 1u);
  EXPECT_EQ(s.ejections_enforced_consecutive_5xx, 1u);
  EXPECT_EQ(s.ejections_active, 1u);
  d.Report("unknown", O::kError5xx, At(7));  // not an endpoint: ignored
}

TEST(OutlierTest, GatewayErrorsCountForBothDetectors) {
  OutlierDetector d(Config(0, 2, 100), At(0));
  d.SetEndpoints({"a", "b"});
  EXPECT_EQ(OutlierDetector::Classify(503), O::kGatewayError);
  EXPECT_EQ(OutlierDetector::Classify(404), O::kSuccess);
  d.Report("a", O::kGatewayError, At(1));
  d.Report("a", O::kError5xx, At(2));  // a non-gateway 5xx resets the gateway counter
  d.Report("a", O::kLocalFailure, At(3));
  EXPECT_FALSE(d.IsEjected("a"));
  d.Report("a", O::kGatewayError, At(4));
  EXPECT_TRUE(d.IsEjected("a"));
  EXPECT_EQ(d.stats().ejections_enforced_consecutive_gateway_failure, 1u);

  OutlierDetector five(Config(2, 0, 100), At(0));  // gateway errors are 5xx too
  five.SetEndpoints({"a"});
  five.Report("a", O::kGatewayError, At(1));
  five.Report("a", O::kLocalFailure, At(2));
  EXPECT_TRUE(five.IsEjected("a"));
}

TEST(OutlierTest, MaxEjectionPercentCapsEjections) {
  OutlierDetector d(Config(1, 0, 10), At(0));
  d.SetEndpoints({"a", "b", "c"});
  d.Report("a", O::kError5xx, At(1));  // 0 % ejected < 10 %: ejected
  d.Report("b", O::kError5xx, At(1));  // 33 % >= 10 %: refused
  EXPECT_TRUE(d.IsEjected("a"));
  EXPECT_FALSE(d.IsEjected("b"));
  EXPECT_EQ(d.stats().ejections_overflow, 1u);

  OutlierDetector none(Config(1, 0, 100), At(0));
  none.SetEndpoints({"a", "b"});
  none.Report("a", O::kError5xx, At(1));
  none.Report("b", O::kError5xx, At(1));
  EXPECT_EQ(none.stats().ejections_active, 2u);  // 100 % allows all
}

TEST(OutlierTest, EjectionTimeGrowsAndSweepsUneject) {
  OutlierDetector d(Config(1, 0, 100), At(0));  // interval 1 s, base 10 s
  d.SetEndpoints({"a", "b"});
  d.Report("a", O::kError5xx, At(0));
  ASSERT_TRUE(d.IsEjected("a"));
  d.Tick(At(5000));
  EXPECT_TRUE(d.IsEjected("a"));
  d.Tick(At(9999));
  EXPECT_TRUE(d.IsEjected("a"));
  d.Tick(At(10000));  // base x 1
  EXPECT_FALSE(d.IsEjected("a"));
  EXPECT_EQ(d.stats().unejections_total, 1u);
  EXPECT_EQ(d.stats().ejections_active, 0u);
  // Ejected again right away: base x 2.
  d.Report("a", O::kError5xx, At(10001));
  ASSERT_TRUE(d.IsEjected("a"));
  d.Tick(At(20001 + 1000));
  EXPECT_TRUE(d.IsEjected("a"));
  d.Tick(At(30001));
  EXPECT_FALSE(d.IsEjected("a"));
  // Healthy sweeps lower the multiplier back: after two, an ejection lasts the base again.
  d.Tick(At(31001));
  d.Tick(At(32001));
  d.Report("a", O::kError5xx, At(32002));
  d.Tick(At(42002));
  EXPECT_FALSE(d.IsEjected("a"));
}

TEST(OutlierTest, TickRunsOncePerInterval) {
  OutlierDetector d(Config(1, 0, 100), At(0));
  d.SetEndpoints({"a"});
  d.Report("a", O::kError5xx, At(0));
  d.Tick(At(1000));   // sweep, too early to un-eject; next sweep at 2000
  d.Tick(At(10000));  // sweep: un-ejects
  EXPECT_FALSE(d.IsEjected("a"));
  d.Report("a", O::kError5xx, At(10500));
  d.Tick(At(10900));  // not due (next at 11000)
  EXPECT_TRUE(d.IsEjected("a"));
}

TEST(OutlierTest, EndpointsLeavingAreForgotten) {
  OutlierDetector d(Config(1, 0, 100), At(0));
  d.SetEndpoints({"a", "b"});
  d.Report("a", O::kError5xx, At(0));
  d.SetEndpoints({"b", "c"});
  EXPECT_FALSE(d.IsEjected("a"));
  EXPECT_EQ(d.stats().ejections_active, 0u);
  d.Report("c", O::kError5xx, At(1));
  EXPECT_TRUE(d.IsEjected("c"));
}

}  // namespace
}  // namespace weft::ztunnel::traffic
