#include "tests/soak/analysis.h"

#include <gtest/gtest.h>

namespace weft::soak {
namespace {

TEST(LeastSquaresTest, RecoversALineAndRefusesDegenerateInput) {
  auto f = LeastSquares({{0, 10}, {1, 12}, {2, 14}, {3, 16}});
  ASSERT_TRUE(f);
  EXPECT_DOUBLE_EQ(f->slope, 2);
  EXPECT_DOUBLE_EQ(f->intercept, 10);
  EXPECT_EQ(f->n, 4);
  // Noise around a flat line fits a slope near 0.
  auto flat = LeastSquares({{0, 5}, {1, 6}, {2, 4}, {3, 5}, {4, 6}, {5, 4}});
  ASSERT_TRUE(flat);
  EXPECT_NEAR(flat->slope, -2 / 17.5, 1e-9);  // sum (t-2.5)(v-5) over sum (t-2.5)^2
  EXPECT_FALSE(LeastSquares({{0, 1}, {1, 2}}));
  EXPECT_FALSE(LeastSquares({{2, 1}, {2, 2}, {2, 3}}));
}

TEST(TrendTest, FitsOnlyAfterWarmupAndOnlyTheLastIncarnation) {
  std::vector<ProcSample> s;
  // Warm-up: fast growth (ignored). Then pid 7: +60 KiB and +1 fd per 60 s.
  for (int t = 0; t < 10; ++t) s.push_back({double(t), 7, 1000.0 + 100 * t, 10.0 + t});
  for (int t = 10; t <= 70; ++t)
    s.push_back({double(t), 7, 2000.0 + (t - 10), 20.0 + (t - 10) / 60.0});
  Trend tr = TrendOf("ztunnel", s, 10, 70);
  EXPECT_TRUE(tr.fitted);
  EXPECT_EQ(tr.pids_after_warmup, 1);
  EXPECT_EQ(tr.samples, 61);
  EXPECT_NEAR(tr.rss_kib_per_min, 60, 1e-6);
  EXPECT_NEAR(tr.fds_per_min, 1, 1e-6);
  EXPECT_EQ(tr.rss_kib_first, 2000);
  EXPECT_EQ(tr.rss_kib_last, 2060);
  // Samples after `to` (the load stopped) are not part of the fit.
  s.push_back({80, 7, 99999, 999});
  EXPECT_NEAR(TrendOf("ztunnel", s, 10, 70).rss_kib_per_min, 60, 1e-6);
  // A restart after warm-up: reported, and the fit uses the new incarnation only.
  std::vector<ProcSample> r;
  for (int t = 0; t < 20; ++t) r.push_back({double(t), 7, 5000.0 - 10 * t, 30});
  for (int t = 20; t < 40; ++t) r.push_back({double(t), 9, 1000, 12});
  Trend restarted = TrendOf("agent", r, 0, 40);
  EXPECT_EQ(restarted.pids_after_warmup, 2);
  EXPECT_EQ(restarted.samples, 20);
  EXPECT_NEAR(restarted.rss_kib_per_min, 0, 1e-9);
  EXPECT_FALSE(TrendOf("weftd", {}, 0, 10).fitted);
}

TEST(TallyErrorsTest, OnlyExplainingWindowsOverAffectedStreamsExplainErrors) {
  std::vector<Segment> segs = {
      {"denied", 0, 1, 20, 20, 0},      // clean
      {"denied", 10, 11, 20, 5, 15},    // in the DENY window: explained
      {"client-a", 10, 11, 20, 18, 2},  // same time, another stream: the DENY does not explain it
      {"client-a", 30, 31, 20, 0, 20},  // in the ztunnel window (every stream): explained
      {"client-b", 50, 51, 20, 19, 1},  // in the endpoint window, which explains nothing
  };
  std::vector<Window> windows = {
      {"DENY", 9.5, 12, {"denied"}, true},
      {"ztunnel restart", 29, 32, {}, true},
      {"endpoints moved", 50.5, 52, {"client-b"}, false},
  };
  ErrorTally t = TallyErrors(segs, windows);
  EXPECT_EQ(t.requests, 100u);
  EXPECT_EQ(t.errors, 38u);
  EXPECT_EQ(t.explained, 35u);
  EXPECT_EQ(t.unexplained, 3u);
  ASSERT_EQ(t.unexplained_segments.size(), 2u);
  EXPECT_EQ(t.unexplained_segments[0].stream, "client-a");
  EXPECT_EQ(t.errors_by_window["DENY"], 15u);
  EXPECT_EQ(t.errors_by_window["ztunnel restart"], 20u);
  EXPECT_EQ(t.errors_by_window["endpoints moved"], 1u);
  EXPECT_EQ(t.errors_by_stream["client-a"], 22u);
  // A segment that only touches a window's edge is outside it.
  EXPECT_EQ(TallyErrors({{"denied", 12, 13, 10, 9, 1}}, windows).unexplained, 1u);
}

TEST(SegmentLineTest, ParsesTheLoadOutput) {
  auto s = ParseSegmentLine(
      R"(SEGMENT {"t0_ms":101000,"t1_ms":102500,"requests":20,"ok":19,"errors":1})", "x", 100000);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->stream, "x");
  EXPECT_DOUBLE_EQ(s->t0, 1);
  EXPECT_DOUBLE_EQ(s->t1, 2.5);
  EXPECT_EQ(s->requests, 20u);
  EXPECT_EQ(s->ok, 19u);
  EXPECT_EQ(s->errors, 1u);
  EXPECT_FALSE(ParseSegmentLine("weft-soak load: resolve failed", "x", 0));
  EXPECT_FALSE(ParseSegmentLine("SEGMENT {broken", "x", 0));
}

}  // namespace
}  // namespace weft::soak
