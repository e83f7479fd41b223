#include "ztunnel/proxy/tap.h"

#include <thread>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace weft::ztunnel {
namespace {

TapEvent Event(const std::string& path) {
  TapEvent e;
  e.method = "GET";
  e.path = path;
  e.status = 200;
  return e;
}

TEST(TapBufferTest, InactiveUntilAReaderAsks) {
  TapBuffer t;
  EXPECT_FALSE(t.Active());
  t.Read(0, 10);
  EXPECT_TRUE(t.Active());
}

TEST(TapBufferTest, ReadsInOrderFromWhereTheReaderLeftOff) {
  TapBuffer t;
  for (int i = 0; i < 5; ++i) t.Publish(Event("/" + std::to_string(i)));
  auto p = t.Read(0, 3);
  ASSERT_EQ(p.events.size(), 3u);
  EXPECT_EQ(p.events[0].path, "/0");
  EXPECT_EQ(p.events[2].seq, 3u);
  EXPECT_EQ(p.next, 3u);
  p = t.Read(p.next, 10);
  ASSERT_EQ(p.events.size(), 2u);
  EXPECT_EQ(p.events[1].path, "/4");
  p = t.Read(p.next, 10);
  EXPECT_TRUE(p.events.empty());
  EXPECT_EQ(p.next, 5u);
  EXPECT_EQ(p.missed, 0u);
}

TEST(TapBufferTest, BoundedRingTellsASlowReaderWhatItMissed) {
  TapBuffer t(4);
  for (int i = 0; i < 10; ++i) t.Publish(Event("/" + std::to_string(i)));
  auto p = t.Read(0, 100);
  EXPECT_EQ(p.missed, 6u);
  ASSERT_EQ(p.events.size(), 4u);
  EXPECT_EQ(p.events.front().path, "/6");
  // A reader that remembers a sequence from a ztunnel that restarted starts over.
  p = t.Read(1000, 100);
  EXPECT_EQ(p.events.size(), 4u);
}

TEST(TapBufferTest, PublishNeverWaitsAndCountsWhatItDrops) {
  TapBuffer t(1 << 20);
  std::vector<std::thread> ths;
  for (int k = 0; k < 4; ++k) {
    ths.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) t.Publish(Event("/x"));
    });
  }
  for (int i = 0; i < 200; ++i) t.Read(0, 1);  // a reader contending for the ring
  for (auto& th : ths) th.join();
  auto p = t.Read(0, 1 << 20);
  EXPECT_EQ(p.events.size() + p.dropped, 80000u);
}

TEST(TapBufferTest, JsonCarriesEveryFieldAndSurvivesInvalidUtf8) {
  TapBuffer t;
  TapEvent e = Event("/caf\xe9");
  e.src_workload = "shop/frontend";
  e.local_reply = true;
  e.status = 403;
  e.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  t.Publish(e);
  auto j = nlohmann::json::parse(t.ReadJson(0, 10));
  EXPECT_EQ(j["next"], 1);
  ASSERT_EQ(j["events"].size(), 1u);
  EXPECT_EQ(j["events"][0]["src_workload"], "shop/frontend");
  EXPECT_EQ(j["events"][0]["status"], 403);
  EXPECT_EQ(j["events"][0]["local_reply"], true);
  EXPECT_EQ(j["events"][0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

}  // namespace
}  // namespace weft::ztunnel
