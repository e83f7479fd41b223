// PinnedMaps against maps pinned the way the agent pins them (bpf/pins.h layout), created
// here with the shared layouts so this test needs libbpf only (root). The agent's own pins
// are exercised with PinnedMaps in bpf/node_test.cc.
#include "bpf/pinned_maps.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "bpf/bpffs.h"
#include "bpf/map_ops.h"
#include "bpf/pins.h"
#include "bpf/testing.h"
#include "common/netns.h"
#include "common/testing/netns_fixture.h"
#include "common/testing/root.h"
#include "gtest/gtest.h"

namespace weft::bpf {
namespace {

constexpr std::string_view kNsPrefix = "weft-pin-";

// Creates and pins one map of the agent's layout; the pin keeps it alive after close.
void PinMap(const std::string& dir, const char* name, bpf_map_type type, uint32_t key_size,
            uint32_t value_size) {
  int fd = bpf_map_create(type, name, key_size, value_size, 64, nullptr);
  ASSERT_GE(fd, 0) << name << ": " << std::strerror(errno);
  UniqueFd map(fd);
  ASSERT_TRUE(MakeDirs(dir + "/maps").ok());
  ASSERT_EQ(bpf_obj_pin(map.get(), MapPin(dir, name).c_str()), 0) << std::strerror(errno);
}

// The by-peer hash of maps: netns cookie -> the pod's LRU of records (shared/capture.h).
void PinByPeer(const std::string& dir) {
  int inner = bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "weft_pod_od", sizeof(weft_peer_key),
                             sizeof(weft_orig_dst), WEFT_ORIG_DST_PER_POD, nullptr);
  ASSERT_GE(inner, 0) << std::strerror(errno);
  UniqueFd template_map(inner);
  LIBBPF_OPTS(bpf_map_create_opts, opts, .inner_map_fd = static_cast<__u32>(inner));
  int fd = bpf_map_create(BPF_MAP_TYPE_HASH_OF_MAPS, "weft_orig_dst_by_peer", sizeof(uint64_t),
                          sizeof(uint32_t), 64, &opts);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  UniqueFd map(fd);
  ASSERT_TRUE(MakeDirs(dir + "/maps").ok());
  ASSERT_EQ(bpf_obj_pin(map.get(), MapPin(dir, "weft_orig_dst_by_peer").c_str()), 0)
      << std::strerror(errno);
}

class PinnedMapsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("bpffs, BPF maps");
    weft::testing::DeleteStaleNamespaces(kNsPrefix);
    pins_ = std::make_unique<testing::ScopedPinDir>();
    ASSERT_FALSE(pins_->path().empty());
  }
  void PinBoth() {
    PinMap(pins_->path(), "weft_listeners", BPF_MAP_TYPE_SOCKHASH, sizeof(weft_listener_key), 8);
    PinByPeer(pins_->path());
  }
  std::unique_ptr<testing::ScopedPinDir> pins_;
};

TEST_F(PinnedMapsTest, MissingPinsAreNotFoundNamingThePath) {
  auto m = PinnedMaps::Open(pins_->path());
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsNotFound(m.status())) << m.status();
  EXPECT_TRUE(absl::StrContains(m.status().message(), MapPin(pins_->path(), "weft_listeners")))
      << m.status();
  EXPECT_TRUE(absl::StrContains(m.status().message(), "weft-agent")) << m.status();
  EXPECT_TRUE(absl::IsInvalidArgument(PinnedMaps::Open("").status()));
}

TEST_F(PinnedMapsTest, ForeignMapUnderTheNameIsRefused) {
  PinMap(pins_->path(), "weft_listeners", BPF_MAP_TYPE_HASH, sizeof(weft_listener_key), 8);
  PinByPeer(pins_->path());
  auto m = PinnedMaps::Open(pins_->path());
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(m.status())) << m.status();
  EXPECT_TRUE(absl::StrContains(m.status().message(), "weft_listeners")) << m.status();
}

TEST_F(PinnedMapsTest, SetListenerPutsTheListeningSocketInTheMap) {
  PinBoth();
  auto m = PinnedMaps::Open(pins_->path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->pin_dir(), pins_->path());

  weft::testing::ScopedNetns ns(kNsPrefix);
  auto lfd = SocketInNetns(ns.fd(), AF_INET6, SOCK_STREAM, 0);
  ASSERT_TRUE(lfd.ok()) << lfd.status();
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;
  ASSERT_EQ(::bind(lfd->get(), reinterpret_cast<sockaddr*>(&any), sizeof(any)), 0);

  // Not listening yet: refused with the hint.
  absl::Status st = (*m)->SetListener(3, WEFT_LISTENER_INBOUND, lfd->get());
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "listen")) << st;
  EXPECT_TRUE(absl::IsInvalidArgument((*m)->SetListener(3, WEFT_LISTENER_INBOUND, -1)));

  ASSERT_EQ(::listen(lfd->get(), 8), 0);
  ASSERT_TRUE((*m)->SetListener(3, WEFT_LISTENER_INBOUND, lfd->get()).ok());

  // A userspace lookup of a SOCKHASH returns the socket's cookie.
  UniqueFd raw(bpf_obj_get(MapPin(pins_->path(), "weft_listeners").c_str()));
  ASSERT_TRUE(raw);
  weft_listener_key key{.slot = 3, .kind = WEFT_LISTENER_INBOUND};
  uint64_t got = 0, want = 0;
  socklen_t len = sizeof(want);
  ASSERT_EQ(::getsockopt(lfd->get(), SOL_SOCKET, SO_COOKIE, &want, &len), 0);
  ASSERT_EQ(bpf_map_lookup_elem(raw.get(), &key, &got), 0) << std::strerror(errno);
  EXPECT_EQ(got, want);

  ASSERT_TRUE((*m)->RemoveListener(3, WEFT_LISTENER_INBOUND).ok());
  EXPECT_NE(bpf_map_lookup_elem(raw.get(), &key, &got), 0);
  EXPECT_TRUE((*m)->RemoveListener(3, WEFT_LISTENER_INBOUND).ok()) << "absent is not an error";
}

TEST_F(PinnedMapsTest, OriginalDestinationOfAcceptedFindsTheRecordByPeer) {
  PinBoth();
  auto m = PinnedMaps::Open(pins_->path());
  ASSERT_TRUE(m.ok()) << m.status();

  // ztunnel's outbound listener and an app connection to it, in a test netns.
  weft::testing::ScopedNetns ns(kNsPrefix);
  auto lfd = SocketInNetns(ns.fd(), AF_INET, SOCK_STREAM, 0);
  auto cfd = SocketInNetns(ns.fd(), AF_INET, SOCK_STREAM, 0);
  auto cfd2 = SocketInNetns(ns.fd(), AF_INET, SOCK_STREAM, 0);
  ASSERT_TRUE(lfd.ok() && cfd.ok() && cfd2.ok());
  auto lo = SockAddr::Parse("127.0.0.1:0");
  sockaddr_storage ss;
  socklen_t sl = lo->ToSockaddr(&ss);
  ASSERT_EQ(::bind(lfd->get(), reinterpret_cast<sockaddr*>(&ss), sl), 0);
  ASSERT_EQ(::listen(lfd->get(), 8), 0);
  auto bound = LocalAddress(lfd->get());
  ASSERT_TRUE(bound.ok());
  sl = bound->ToSockaddr(&ss);
  ASSERT_EQ(::connect(cfd->get(), reinterpret_cast<sockaddr*>(&ss), sl), 0);
  ASSERT_EQ(::connect(cfd2->get(), reinterpret_cast<sockaddr*>(&ss), sl), 0);
  UniqueFd accepted(::accept(lfd->get(), nullptr, nullptr));
  UniqueFd accepted2(::accept(lfd->get(), nullptr, nullptr));
  ASSERT_TRUE(accepted && accepted2);
  auto app = LocalAddress(cfd->get());
  ASSERT_TRUE(app.ok());

  // The record sockops files for the first connection: {netns cookie, app's local address}.
  weft_peer_key key{};
  key.netns_cookie = ns.cookie();
  key.addr[10] = key.addr[11] = 0xff;
  uint32_t v4 = htonl(app->ip.v4_host_order());
  std::memcpy(key.addr + 12, &v4, 4);
  key.port = htons(app->port);
  weft_orig_dst rec{};
  rec.addr[10] = rec.addr[11] = 0xff;
  uint32_t dst = htonl(0x0a630005);  // 10.99.0.5
  std::memcpy(rec.addr + 12, &dst, 4);
  rec.port = htons(8080);
  rec.family = AF_INET;
  rec.netns_cookie = ns.cookie();
  UniqueFd raw(bpf_obj_get(MapPin(pins_->path(), "weft_orig_dst_by_peer").c_str()));
  ASSERT_TRUE(raw);
  // Before the agent gave the pod its map: not found, saying so.
  auto early = (*m)->OriginalDestinationOfAccepted(accepted.get());
  EXPECT_TRUE(absl::IsNotFound(early.status())) << early.status();
  EXPECT_TRUE(absl::StrContains(early.status().message(), "has no map for the pod"))
      << early.status();
  // The agent's enrolment: the pod's own LRU of records in the outer map.
  UniqueFd pod(bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "weft_pod_od", sizeof(weft_peer_key),
                              sizeof(weft_orig_dst), WEFT_ORIG_DST_PER_POD, nullptr));
  ASSERT_TRUE(pod) << std::strerror(errno);
  uint64_t cookie = ns.cookie();
  uint32_t pod_fd = static_cast<uint32_t>(pod.get());
  ASSERT_EQ(bpf_map_update_elem(raw.get(), &cookie, &pod_fd, BPF_ANY), 0) << std::strerror(errno);
  ASSERT_EQ(bpf_map_update_elem(pod.get(), &key, &rec, BPF_ANY), 0) << std::strerror(errno);

  // accept() order is not guaranteed: pick the one whose peer is the first client.
  int mine = PeerAddress(accepted.get())->port == app->port ? accepted.get() : accepted2.get();
  int other = mine == accepted.get() ? accepted2.get() : accepted.get();
  auto orig = (*m)->OriginalDestinationOfAccepted(mine);
  ASSERT_TRUE(orig.ok()) << orig.status();
  EXPECT_EQ(orig->ToString(), "10.99.0.5:8080");

  auto none = (*m)->OriginalDestinationOfAccepted(other);
  EXPECT_TRUE(absl::IsNotFound(none.status())) << none.status();
  EXPECT_EQ((*m)->CachedPodMaps(), 1u);

  // The inner map's descriptor is cached per pod; the pod re-enrolled under the same cookie
  // gets a new inner map, and the old one (still holding the old record) must not answer.
  UniqueFd pod2(bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "weft_pod_od", sizeof(weft_peer_key),
                               sizeof(weft_orig_dst), WEFT_ORIG_DST_PER_POD, nullptr));
  ASSERT_TRUE(pod2) << std::strerror(errno);
  weft_orig_dst rec2 = rec;
  rec2.port = htons(9090);
  ASSERT_EQ(bpf_map_update_elem(pod2.get(), &key, &rec2, BPF_ANY), 0) << std::strerror(errno);
  uint32_t pod2_fd = static_cast<uint32_t>(pod2.get());
  ASSERT_EQ(bpf_map_update_elem(raw.get(), &cookie, &pod2_fd, BPF_ANY), 0) << std::strerror(errno);
  auto again = (*m)->OriginalDestinationOfAccepted(mine);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->ToString(), "10.99.0.5:9090");

  // Unenrolled: not found, and the cached descriptor is let go.
  ASSERT_EQ(bpf_map_delete_elem(raw.get(), &cookie), 0) << std::strerror(errno);
  auto gone = (*m)->OriginalDestinationOfAccepted(mine);
  EXPECT_TRUE(absl::IsNotFound(gone.status())) << gone.status();
  EXPECT_EQ((*m)->CachedPodMaps(), 0u);
  // Enrolled again with the first map: its record answers.
  ASSERT_EQ(bpf_map_update_elem(raw.get(), &cookie, &pod_fd, BPF_ANY), 0) << std::strerror(errno);
  auto back = (*m)->OriginalDestinationOfAccepted(mine);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToString(), "10.99.0.5:8080");
}

// Descriptors of pods that left are swept once the cache grows past kSweepAbove, so it never
// keeps a departed pod's inner map alive for long.
TEST_F(PinnedMapsTest, PodMapCacheSweepsDepartedPods) {
  PinBoth();
  UniqueFd raw(bpf_obj_get(MapPin(pins_->path(), "weft_orig_dst_by_peer").c_str()));
  ASSERT_TRUE(raw);
  internal::PodMapCache cache;
  const size_t n = internal::PodMapCache::kSweepAbove;
  std::vector<UniqueFd> inner;
  weft_peer_key key{};
  weft_orig_dst value{};
  for (uint64_t cookie = 1; cookie <= n; ++cookie) {
    inner.emplace_back(bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "weft_pod_od", sizeof(weft_peer_key),
                                      sizeof(weft_orig_dst), WEFT_ORIG_DST_PER_POD, nullptr));
    ASSERT_TRUE(inner.back()) << std::strerror(errno);
    uint32_t fd = static_cast<uint32_t>(inner.back().get());
    ASSERT_EQ(bpf_map_update_elem(raw.get(), &cookie, &fd, BPF_ANY), 0) << std::strerror(errno);
    bool missing = false;
    ASSERT_TRUE(cache.Lookup(raw.get(), "by_peer", cookie, &key, &value, &missing).ok());
    EXPECT_TRUE(missing);
  }
  EXPECT_EQ(cache.size(), n);
  // Every pod but the last leaves without being asked for again; a new pod arrives.
  for (uint64_t cookie = 1; cookie < n; ++cookie)
    ASSERT_EQ(bpf_map_delete_elem(raw.get(), &cookie), 0) << std::strerror(errno);
  uint64_t fresh = n + 1;
  uint32_t fd = static_cast<uint32_t>(inner.front().get());
  ASSERT_EQ(bpf_map_update_elem(raw.get(), &fresh, &fd, BPF_ANY), 0) << std::strerror(errno);
  bool missing = false;
  ASSERT_TRUE(cache.Lookup(raw.get(), "by_peer", fresh, &key, &value, &missing).ok());
  EXPECT_EQ(cache.size(), 2u);  // the last old pod and the new one
  // A pod never enrolled: NotFound.
  EXPECT_TRUE(absl::IsNotFound(cache.Lookup(raw.get(), "by_peer", 999, &key, &value, &missing)));
}

// The agent's local-legs switch is read from a read-only mapping, live: no reopen, no syscall.
TEST_F(PinnedMapsTest, LocalLegsSwitchIsReadLiveFromTheMappedConfig) {
  PinBoth();
  {
    auto m = PinnedMaps::Open(pins_->path());  // an agent without local legs
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_FALSE((*m)->local_legs_on());
  }
  PinMap(pins_->path(), "weft_local_legs", BPF_MAP_TYPE_SOCKHASH, sizeof(weft_sock_tuple), 8);
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_MMAPABLE);
  UniqueFd config(bpf_map_create(BPF_MAP_TYPE_ARRAY, "weft_local_legs_config", sizeof(uint32_t),
                                 sizeof(uint32_t), 1, &opts));
  ASSERT_TRUE(config) << std::strerror(errno);
  ASSERT_EQ(bpf_obj_pin(config.get(), MapPin(pins_->path(), "weft_local_legs_config").c_str()), 0);
  auto m = PinnedMaps::Open(pins_->path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE((*m)->local_legs_on());
  uint32_t zero = 0, on = WEFT_LOCAL_LEGS_ON;
  ASSERT_EQ(bpf_map_update_elem(config.get(), &zero, &on, BPF_ANY), 0);
  EXPECT_TRUE((*m)->local_legs_on());
  ASSERT_EQ(bpf_map_update_elem(config.get(), &zero, &zero, BPF_ANY), 0);
  EXPECT_FALSE((*m)->local_legs_on());
}

}  // namespace
}  // namespace weft::bpf
