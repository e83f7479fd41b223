// NodeCapture (root): pins, re-adoption by a new owner after the old one was destroyed
// without uninstalling (what a SIGKILLed agent leaves), enrol/unenrol leaving nothing behind,
// sweeping half-done enrolments, moving the cgroup links. Real sockets in test netns, a test
// cgroup "weft-t<pid>-<n>" and a pin dir /sys/fs/bpf/weft/t<pid>-<n> (bpf/testing.h).
#include "bpf/node.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "bpf/pinned_maps.h"
#include "bpf/pins.h"
#include "bpf/testing.h"
#include "common/netns.h"
#include "common/testing/kernel_features.h"
#include "common/testing/netns_fixture.h"
#include "common/testing/root.h"
#include "gtest/gtest.h"

namespace weft::bpf {
namespace {

constexpr std::string_view kNsPrefix = "weft-node-";

// Programs attached to `fd` (cgroup or netns) for `type`; -1 on error.
int Attached(int fd, bpf_attach_type type, uint32_t* first_id = nullptr) {
  uint32_t ids[16] = {}, cnt = 16;
  if (bpf_prog_query(fd, type, 0, nullptr, ids, &cnt) != 0) return -1;
  if (first_id) *first_id = cnt > 0 ? ids[0] : 0;
  return static_cast<int>(cnt);
}

uint32_t ProgId(struct bpf_program* p) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  EXPECT_EQ(bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len), 0);
  return info.id;
}

UniqueFd Listen(int netns_fd, const std::string& addr) {
  auto sa = SockAddr::Parse(addr);
  auto fd = SocketInNetns(netns_fd, sa->ip.IsV4() ? AF_INET : AF_INET6, SOCK_STREAM, 0);
  EXPECT_TRUE(fd.ok()) << fd.status();
  if (!fd.ok()) return UniqueFd();
  int one = 1;
  ::setsockopt(fd->get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage ss;
  socklen_t len = sa->ToSockaddr(&ss);
  EXPECT_EQ(::bind(fd->get(), reinterpret_cast<sockaddr*>(&ss), len), 0)
      << addr << ": " << std::strerror(errno);
  EXPECT_EQ(::listen(fd->get(), 64), 0);
  return std::move(*fd);
}

// A pod: netns with 10.77.0.1 + 10.77.0.9 on lo, ztunnel's outbound listener on 127.0.0.1:15001,
// ztunnel's inbound listener (any address, port 0) and an app listener on 10.77.0.1:<port>.
struct Pod {
  weft::testing::ScopedNetns ns{kNsPrefix};
  UniqueFd ztunnel_out, ztunnel_in, app;
  uint16_t app_port = 0;
  void Setup() {
    ASSERT_GE(ns.fd(), 0);
    ns.Exec("ip addr add 10.77.0.1/32 dev lo");
    ns.Exec("ip addr add 10.77.0.9/32 dev lo");
    ztunnel_out = Listen(ns.fd(), "127.0.0.1:15001");
    ztunnel_in = Listen(ns.fd(), "0.0.0.0:0");
    app = Listen(ns.fd(), "10.77.0.1:0");
    ASSERT_TRUE(ztunnel_out && ztunnel_in && app);
    app_port = LocalAddress(app.get())->port;
  }
  PodSpec Spec() const {
    PodSpec s;
    s.netns_fd = ns.fd();
    s.addresses = {*IpAddr::Parse("10.77.0.1")};
    s.exclude_ports = {9090};
    s.exclude_cidrs = {*Cidr::Parse("10.200.0.0/16")};
    return s;
  }
};

// Outbound from the pod (a child in the capture cgroup) to `dst`: which listener got it,
// "ztunnel", "app" or "" (none / failed).
std::string ConnectFromPod(const testing::ScopedCgroup& cgroup, const Pod& pod,
                           const std::string& dst) {
  uint16_t port = testing::ConnectFromCgroup(cgroup.path(), pod.ns.fd(), *SockAddr::Parse(dst));
  return testing::WhoAccepted(port, {{pod.ztunnel_out.get(), "ztunnel"}, {pod.app.get(), "app"}});
}

// An inbound connection inside the pod's netns from 10.77.0.9 (not the pod address itself,
// so sk_lookup applies) to 10.77.0.1:<app port>: "ztunnel_in", "app", "refused" or "nowhere".
std::string ConnectInbound(const Pod& pod) {
  uint16_t port = testing::ConnectFrom(pod.ns.fd(), *SockAddr::Parse("10.77.0.9:0"),
                                       SockAddr{*IpAddr::Parse("10.77.0.1"), pod.app_port});
  if (port == 0) return "refused";
  std::string who =
      testing::WhoAccepted(port, {{pod.ztunnel_in.get(), "ztunnel_in"}, {pod.app.get(), "app"}});
  return who.empty() ? "nowhere" : who;
}

// Every key of a pinned map, as raw bytes.
std::vector<std::vector<uint8_t>> PinnedKeys(const std::string& pin_dir, const char* map) {
  std::vector<std::vector<uint8_t>> out;
  UniqueFd fd(bpf_obj_get(MapPin(pin_dir, map).c_str()));
  EXPECT_TRUE(fd) << map << ": " << std::strerror(errno);
  if (!fd) return out;
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  bpf_obj_get_info_by_fd(fd.get(), &info, &len);
  std::vector<uint8_t> k(info.key_size), cursor(info.key_size);
  bool first = true;
  while (bpf_map_get_next_key(fd.get(), first ? nullptr : cursor.data(), k.data()) == 0) {
    first = false;
    cursor = k;
    out.push_back(k);
  }
  return out;
}

class NodeCaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WEFT_SKIP_UNLESS_ROOT("BPF, bpffs, netns, cgroups");
    WEFT_SKIP_UNLESS_KERNEL_FEATURE(testing::KernelHasCapturePrograms(),
                                    "this kernel lacks sk_lookup / cgroup sock_addr / sock_ops "
                                    "programs");
    weft::testing::DeleteStaleNamespaces(kNsPrefix);
    pins_ = std::make_unique<testing::ScopedPinDir>();
    ASSERT_FALSE(pins_->path().empty());
    cgroup_ = std::make_unique<testing::ScopedCgroup>();
    WEFT_SKIP_UNLESS_KERNEL_FEATURE(!cgroup_->path().empty(),
                                    "no cgroup2 mount in /proc/self/mounts");
    pod_.Setup();
  }
  void TearDown() override {
    // Whatever a failed assertion left: detach and unpin before the cgroup goes.
    if (node_) (void)node_->Uninstall();
    node_.reset();
    pins_.reset();
    cgroup_.reset();
  }

  std::unique_ptr<NodeCapture> OpenNode(int cgroup_fd = -1) {
    auto n = NodeCapture::Open(pins_->path(), cgroup_fd < 0 ? cgroup_->fd() : cgroup_fd);
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? std::move(*n) : nullptr;
  }

  std::unique_ptr<testing::ScopedPinDir> pins_;
  std::unique_ptr<testing::ScopedCgroup> cgroup_;
  Pod pod_;
  std::unique_ptr<NodeCapture> node_;
};

TEST_F(NodeCaptureTest, PinsSurviveTheOwnerAndAreReadoptedWithoutDuplicates) {
  node_ = OpenNode();
  ASSERT_TRUE(node_);
  EXPECT_EQ(node_->adoption().links_attached, 3);
  EXPECT_EQ(node_->adoption().maps_reused, 0);
  auto slot = node_->Enroll(pod_.Spec());
  ASSERT_TRUE(slot.ok()) << slot.status();
  EXPECT_EQ(*slot, 1u);
  for (const char* l : {"connect4", "connect6", "sockops"})
    EXPECT_TRUE(std::filesystem::exists(LinkPin(pins_->path(), l))) << l;
  std::string netns_pin = LinkPin(pins_->path(), absl::StrCat("sk_lookup_", pod_.ns.cookie()));
  EXPECT_TRUE(std::filesystem::exists(netns_pin));
  EXPECT_TRUE(std::filesystem::exists(MapPin(pins_->path(), "weft_listeners")));

  // ztunnel's side: its inbound listener under the slot, through the pinned map.
  auto zt = PinnedMaps::Open(pins_->path());
  ASSERT_TRUE(zt.ok()) << zt.status();
  ASSERT_TRUE((*zt)->SetListener(*slot, WEFT_LISTENER_INBOUND, pod_.ztunnel_in.get()).ok());
  EXPECT_EQ(ConnectFromPod(*cgroup_, pod_, "10.77.0.1:" + std::to_string(pod_.app_port)),
            "ztunnel");
  EXPECT_EQ(ConnectInbound(pod_), "ztunnel_in");

  // The owner goes away without uninstalling (a killed agent): traffic is still captured.
  node_.reset();
  EXPECT_EQ(ConnectFromPod(*cgroup_, pod_, "10.77.0.1:" + std::to_string(pod_.app_port)),
            "ztunnel");
  EXPECT_EQ(ConnectInbound(pod_), "ztunnel_in");

  // A new owner re-adopts: same slot, maps kept, links switched to its programs, one each.
  node_ = OpenNode();
  ASSERT_TRUE(node_);
  const AdoptionReport& r = node_->adoption();
  EXPECT_EQ(r.links_readopted, 4) << "3 cgroup links + 1 sk_lookup link";
  EXPECT_EQ(r.links_attached, 0);
  EXPECT_GE(r.maps_reused, 9);
  EXPECT_EQ(r.swept, 0);
  auto pods = node_->ListEnrolled();
  ASSERT_TRUE(pods.ok()) << pods.status();
  ASSERT_EQ(pods->size(), 1u);
  EXPECT_EQ((*pods)[0].netns_cookie, pod_.ns.cookie());
  EXPECT_EQ((*pods)[0].slot, 1u);
  ASSERT_EQ((*pods)[0].addresses.size(), 1u);
  EXPECT_EQ((*pods)[0].addresses[0].ToString(), "10.77.0.1");
  EXPECT_TRUE((*pods)[0].sk_lookup_linked);
  auto again = node_->Enroll(pod_.Spec());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, 1u) << "re-enrolling keeps the slot";

  uint32_t id = 0;
  EXPECT_EQ(Attached(cgroup_->fd(), BPF_CGROUP_INET4_CONNECT, &id), 1);
  EXPECT_EQ(id, ProgId(node_->outbound().connect4_program())) << "link runs the new program";
  EXPECT_EQ(Attached(cgroup_->fd(), BPF_CGROUP_INET6_CONNECT), 1);
  EXPECT_EQ(Attached(cgroup_->fd(), BPF_CGROUP_SOCK_OPS), 1);
  EXPECT_EQ(Attached(pod_.ns.fd(), BPF_SK_LOOKUP, &id), 1);
  EXPECT_EQ(id, ProgId(node_->inbound().program()));
  // ztunnel's listener entry survived the restart (the map was reused).
  EXPECT_EQ(ConnectInbound(pod_), "ztunnel_in");
  EXPECT_EQ(ConnectFromPod(*cgroup_, pod_, "10.77.0.1:" + std::to_string(pod_.app_port)),
            "ztunnel");
  auto counters = node_->Counters();
  ASSERT_TRUE(counters.ok());
  EXPECT_GE(counters->outbound[WEFT_REDIRECT_OUTBOUND], 3u) << "counters kept across owners";
  EXPECT_GE(counters->inbound[WEFT_REDIRECT_INBOUND], 3u);
  auto pinned = NodeCapture::ReadPinnedCounters(pins_->path());
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  EXPECT_EQ(pinned->outbound, counters->outbound);

  ASSERT_TRUE(node_->Uninstall().ok());
  node_.reset();
  EXPECT_FALSE(std::filesystem::exists(pins_->path()));
  EXPECT_EQ(Attached(cgroup_->fd(), BPF_CGROUP_INET4_CONNECT), 0);
  EXPECT_EQ(Attached(cgroup_->fd(), BPF_CGROUP_SOCK_OPS), 0);
  EXPECT_EQ(Attached(pod_.ns.fd(), BPF_SK_LOOKUP), 0);
  EXPECT_EQ(ConnectFromPod(*cgroup_, pod_, "10.77.0.1:" + std::to_string(pod_.app_port)), "app");
  EXPECT_EQ(ConnectInbound(pod_), "app");
}

TEST_F(NodeCaptureTest, UnenrolRemovesEveryEntryAndLinkOfThatPodOnly) {
  Pod other;
  other.Setup();
  node_ = OpenNode();
  ASSERT_TRUE(node_);
  auto a = node_->Enroll(pod_.Spec());
  PodSpec os = other.Spec();
  os.addresses = {*IpAddr::Parse("10.77.0.1"), *IpAddr::Parse("fd00::1")};
  // Pod addresses are unique on a node: the other pod gets different ones.
  os.addresses = {*IpAddr::Parse("10.78.0.1"), *IpAddr::Parse("fd00::1")};
  auto b = node_->Enroll(os);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  auto zt = PinnedMaps::Open(pins_->path());
  ASSERT_TRUE(zt.ok());
  ASSERT_TRUE((*zt)->SetListener(*a, WEFT_LISTENER_INBOUND, pod_.ztunnel_in.get()).ok());
  ASSERT_TRUE((*zt)->SetListener(*b, WEFT_LISTENER_INBOUND, other.ztunnel_in.get()).ok());
  // A redirected connect files original-destination records for pod A.
  ASSERT_EQ(ConnectFromPod(*cgroup_, pod_, "10.77.0.1:" + std::to_string(pod_.app_port)),
            "ztunnel");
  EXPECT_FALSE(PinnedKeys(pins_->path(), "weft_orig_dst_by_peer").empty());

  ASSERT_TRUE(node_->Unenroll(pod_.ns.cookie()).ok());
  EXPECT_FALSE(std::filesystem::exists(
      LinkPin(pins_->path(), absl::StrCat("sk_lookup_", pod_.ns.cookie()))));
  EXPECT_EQ(Attached(pod_.ns.fd(), BPF_SK_LOOKUP), 0);
  EXPECT_EQ(Attached(other.ns.fd(), BPF_SK_LOOKUP), 1) << "the other pod keeps its link";
  auto mentions = [&](const std::vector<uint8_t>& key, size_t off, const void* v, size_t n) {
    return key.size() >= off + n && std::memcmp(key.data() + off, v, n) == 0;
  };
  uint64_t ca = pod_.ns.cookie(), cb = other.ns.cookie();
  for (const char* m : {"weft_enrolled", "weft_exclude_ports"}) {
    for (const auto& k : PinnedKeys(pins_->path(), m)) {
      EXPECT_FALSE(mentions(k, 0, &ca, 8)) << m << " still has pod A";
    }
  }
  for (const auto& k : PinnedKeys(pins_->path(), "weft_exclude_cidrs"))
    EXPECT_FALSE(mentions(k, 8, &ca, 8)) << "weft_exclude_cidrs still has pod A";
  for (const auto& k : PinnedKeys(pins_->path(), "weft_orig_dst_by_peer"))
    EXPECT_FALSE(mentions(k, 0, &ca, 8)) << "weft_orig_dst_by_peer still has pod A";
  for (const auto& k : PinnedKeys(pins_->path(), "weft_listeners"))
    EXPECT_FALSE(mentions(k, 0, &*a, 4)) << "weft_listeners still has slot " << *a;
  auto addrs = PinnedKeys(pins_->path(), "weft_pod_addrs");
  EXPECT_EQ(addrs.size(), 2u) << "only the other pod's two addresses remain";
  EXPECT_EQ(PinnedKeys(pins_->path(), "weft_enrolled").size(), 1u);
  EXPECT_EQ(PinnedKeys(pins_->path(), "weft_exclude_ports").size(), 1u);
  bool other_has_port = false;
  for (const auto& k : PinnedKeys(pins_->path(), "weft_exclude_ports"))
    other_has_port |= mentions(k, 0, &cb, 8);
  EXPECT_TRUE(other_has_port);
  EXPECT_EQ(ConnectFromPod(*cgroup_, pod_, "10.77.0.1:" + std::to_string(pod_.app_port)), "app");
  EXPECT_EQ(ConnectInbound(pod_), "app");
  EXPECT_TRUE(node_->Unenroll(pod_.ns.cookie()).ok()) << "unenrolling twice is fine";

  // A new pod reuses the freed slot; the old listener entry is gone, so it fails closed.
  Pod third;
  third.Setup();
  auto c = node_->Enroll(third.Spec());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*c, *a);
  EXPECT_EQ(ConnectInbound(third), "refused") << "no listener yet: SYNs are dropped";

  ASSERT_TRUE(node_->Uninstall().ok());
  node_.reset();
  EXPECT_FALSE(std::filesystem::exists(pins_->path()));
  EXPECT_EQ(Attached(other.ns.fd(), BPF_SK_LOOKUP), 0);
  EXPECT_EQ(Attached(third.ns.fd(), BPF_SK_LOOKUP), 0);
}

// Found by the soak (tests/soak): every unenrolment used to leave the sk_lookup link's fd open
// in the agent (DestroyPinned disconnected the link, so bpf_link__destroy never closed it).
TEST_F(NodeCaptureTest, EnrolUnenrolCyclesLeaveNoDescriptorOpen) {
  node_ = OpenNode();
  ASSERT_TRUE(node_);
  auto fds = [] {
    int n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
  };
  ASSERT_TRUE(node_->Enroll(pod_.Spec()).ok());
  ASSERT_TRUE(node_->Unenroll(pod_.ns.cookie()).ok());
  const int before = fds();
  for (int i = 0; i < 5; ++i) {
    auto slot = node_->Enroll(pod_.Spec());
    ASSERT_TRUE(slot.ok()) << slot.status();
    ASSERT_TRUE(node_->Unenroll(pod_.ns.cookie()).ok());
  }
  EXPECT_EQ(fds(), before) << "descriptors left open by 5 enrol/unenrol cycles";
}

TEST_F(NodeCaptureTest, ReenrolChangesExclusionsInPlace) {
  node_ = OpenNode();
  ASSERT_TRUE(node_);
  ASSERT_TRUE(node_->Enroll(pod_.Spec()).ok());
  EXPECT_EQ(ConnectFromPod(*cgroup_, pod_, "10.77.0.1:" + std::to_string(pod_.app_port)),
            "ztunnel");
  PodSpec s = pod_.Spec();
  s.exclude_ports = {pod_.app_port};
  s.exclude_cidrs = {};
  auto slot = node_->Enroll(s);
  ASSERT_TRUE(slot.ok());
  EXPECT_EQ(*slot, 1u);
  EXPECT_EQ(ConnectFromPod(*cgroup_, pod_, "10.77.0.1:" + std::to_string(pod_.app_port)), "app");
  EXPECT_EQ(PinnedKeys(pins_->path(), "weft_exclude_ports").size(), 1u) << "9090 was removed";
  EXPECT_TRUE(PinnedKeys(pins_->path(), "weft_exclude_cidrs").empty());
}

TEST_F(NodeCaptureTest, OpenSweepsWhatAnInterruptedEnrolmentLeft) {
  node_ = OpenNode();
  ASSERT_TRUE(node_);
  ASSERT_TRUE(node_->Enroll(pod_.Spec()).ok());
  // Entries and a link an enrolment writes before its weft_enrolled entry, with no entry.
  Pod half;
  half.Setup();
  ASSERT_TRUE(node_->inbound().AddPodAddress(*IpAddr::Parse("10.79.0.1"), 7).ok());
  ASSERT_TRUE(node_->inbound().SetListener(7, WEFT_LISTENER_HBONE, half.ztunnel_in.get()).ok());
  ASSERT_TRUE(node_->outbound().ExcludePort(half.ns.cookie(), 53).ok());
  auto link = node_->inbound().AttachToNetns(half.ns.fd());
  ASSERT_TRUE(link.ok());
  std::string pin = LinkPin(pins_->path(), absl::StrCat("sk_lookup_", half.ns.cookie()));
  ASSERT_EQ(bpf_link__pin(link->get(), pin.c_str()), 0);
  node_.reset();
  link->release();  // leaked like a crash would (the fd closes with the process only)

  node_ = OpenNode();
  ASSERT_TRUE(node_);
  EXPECT_EQ(node_->adoption().swept, 3) << "slot 7, the exclusion, the link";
  EXPECT_FALSE(std::filesystem::exists(pin));
  EXPECT_EQ(Attached(half.ns.fd(), BPF_SK_LOOKUP), 0);
  EXPECT_EQ(PinnedKeys(pins_->path(), "weft_pod_addrs").size(), 1u);
  EXPECT_TRUE(PinnedKeys(pins_->path(), "weft_listeners").empty());
  EXPECT_EQ(PinnedKeys(pins_->path(), "weft_exclude_ports").size(), 1u);
  auto pods = node_->ListEnrolled();
  ASSERT_TRUE(pods.ok());
  EXPECT_EQ(pods->size(), 1u);
}

TEST_F(NodeCaptureTest, ReopenedOnAnotherCgroupMovesTheLinks) {
  node_ = OpenNode();
  ASSERT_TRUE(node_);
  testing::ScopedCgroup second;
  ASSERT_GE(second.fd(), 0);
  node_.reset();
  node_ = OpenNode(second.fd());
  ASSERT_TRUE(node_);
  EXPECT_EQ(node_->adoption().links_attached, 3);
  EXPECT_EQ(node_->adoption().notes.size(), 3u);
  EXPECT_EQ(Attached(cgroup_->fd(), BPF_CGROUP_INET4_CONNECT), 0);
  EXPECT_EQ(Attached(second.fd(), BPF_CGROUP_INET4_CONNECT), 1);
  EXPECT_EQ(Attached(second.fd(), BPF_CGROUP_SOCK_OPS), 1);
  ASSERT_TRUE(node_->Uninstall().ok());
  node_.reset();
  EXPECT_EQ(Attached(second.fd(), BPF_CGROUP_INET4_CONNECT), 0);
}

TEST_F(NodeCaptureTest, BadArgumentsAreClearErrors) {
  auto n = NodeCapture::Open("", cgroup_->fd());
  EXPECT_TRUE(absl::IsInvalidArgument(n.status())) << n.status();
  n = NodeCapture::Open(pins_->path(), -1);
  EXPECT_TRUE(absl::IsInvalidArgument(n.status())) << n.status();
  char tmpl[] = "/tmp/weft-node-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  n = NodeCapture::Open(std::string(tmpl) + "/pins", cgroup_->fd());
  EXPECT_TRUE(absl::IsFailedPrecondition(n.status())) << n.status();
  std::filesystem::remove_all(tmpl);
  node_ = OpenNode();
  ASSERT_TRUE(node_);
  PodSpec s;
  EXPECT_TRUE(absl::IsInvalidArgument(node_->Enroll(s).status()));
}

}  // namespace
}  // namespace weft::bpf
