#include "bpf/node.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "bpf/bpffs.h"
#include "bpf/map_ops.h"
#include "bpf/pins.h"
#include "common/netns.h"
#include "common/status.h"

namespace weft::bpf {
namespace {

using internal::ErrnoStatus;

constexpr std::string_view kNetnsLinkPrefix = "sk_lookup_";

std::string NetnsLinkName(uint64_t cookie) {
  return absl::StrCat(Av(kNetnsLinkPrefix), cookie);
}

// Entries of a directory (names only); empty when it does not exist.
std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  return out;
}

absl::StatusOr<bpf_link_info> LinkInfo(struct bpf_link* link) {
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) != 0)
    return ErrnoStatus(errno, "reading a pinned link's info");
  return info;
}

// Detaches for good: unpins, then BPF_LINK_DETACH (so no other holder of the link keeps the
// program running), then frees.
absl::Status DestroyPinned(BpfLink link, const std::string& path) {
  struct bpf_link* l = link.release();
  if (l == nullptr) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return ErrnoStatus(errno, absl::StrCat("removing pin ", path));
    return absl::OkStatus();
  }
  absl::Status st;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    st = ErrnoStatus(errno, absl::StrCat("removing pin ", path));
  int err = bpf_link__detach(l);
  // A netns link whose netns is gone is already detached (ENOLINK); that is the goal.
  if (err != 0 && err != -ENOLINK && err != -EINVAL && st.ok())
    st = ErrnoStatus(err, absl::StrCat("detaching link ", path));
  // Disconnected, bpf_link__destroy frees the struct without its detach callback, which is what
  // closes the link's fd: close it here (the link is already unpinned and detached).
  const int fd = bpf_link__fd(l);
  bpf_link__disconnect(l);
  bpf_link__destroy(l);
  if (fd >= 0) ::close(fd);
  return st;
}

}  // namespace

NodeCapture::NodeCapture(std::string pin_dir, std::unique_ptr<InboundCapture> in,
                         std::unique_ptr<OutboundCapture> out)
    : pin_dir_(std::move(pin_dir)), in_(std::move(in)), out_(std::move(out)) {}

NodeCapture::~NodeCapture() = default;

absl::StatusOr<std::unique_ptr<NodeCapture>> NodeCapture::Open(std::string pin_dir, int cgroup_fd) {
  if (pin_dir.empty()) return absl::InvalidArgumentError("NodeCapture: pin dir is empty");
  if (cgroup_fd < 0)
    return absl::InvalidArgumentError("NodeCapture: no cgroup to attach the connect hooks to");
  if (absl::StartsWith(pin_dir, absl::StrCat(Av(kBpffsRoot), "/")))
    WEFT_RETURN_IF_ERROR(EnsureBpffsMounted(kBpffsRoot));
  std::string maps_dir = absl::StrCat(pin_dir, "/", Av(kMapsSubdir));
  std::string links_dir = absl::StrCat(pin_dir, "/", Av(kLinksSubdir));
  WEFT_RETURN_IF_ERROR(MakeDirs(maps_dir));
  WEFT_RETURN_IF_ERROR(MakeDirs(links_dir));
  if (!IsBpffs(pin_dir))
    return absl::FailedPreconditionError(
        absl::StrCat("pin dir ", pin_dir,
                     " is not on a bpffs: pins can only be made on bpffs (mount -t bpf "
                     "bpf <dir>, or use a dir under ",
                     Av(kBpffsRoot), ")"));

  int already = static_cast<int>(DirEntries(maps_dir).size());
  WEFT_ASSIGN_OR_RETURN(auto in, InboundCapture::LoadPinned(maps_dir));
  WEFT_ASSIGN_OR_RETURN(auto out, OutboundCapture::LoadPinned(maps_dir));
  auto node = std::unique_ptr<NodeCapture>(new NodeCapture(pin_dir, std::move(in), std::move(out)));
  node->adoption_.maps_reused = already;
  WEFT_RETURN_IF_ERROR(node->AdoptCgroupLinks(cgroup_fd));
  WEFT_RETURN_IF_ERROR(node->AdoptNetnsLinks());
  WEFT_RETURN_IF_ERROR(node->Sweep());
  return node;
}

absl::Status NodeCapture::AdoptCgroupLinks(int cgroup_fd) {
  struct stat cg {};
  if (::fstat(cgroup_fd, &cg) != 0) return ErrnoStatus(errno, "fstat of the cgroup fd");
  // On cgroup v2 (kernfs) a cgroup's id is its directory's inode number.
  const uint64_t cgroup_id = cg.st_ino;
  struct Hook {
    std::string_view name;
    struct bpf_program* prog;
    BpfLink* slot;
  };
  Hook hooks[] = {{"connect4", out_->connect4_program(), &connect4_},
                  {"connect6", out_->connect6_program(), &connect6_},
                  {"sockops", out_->sockops_program(), &sockops_}};
  for (Hook& h : hooks) {
    std::string path = LinkPin(pin_dir_, h.name);
    BpfLink old;
    if (::access(path.c_str(), F_OK) == 0) {
      old = BpfLink(bpf_link__open(path.c_str()));
      if (!old) return ErrnoStatus(errno, absl::StrCat("opening pinned link ", path));
      WEFT_ASSIGN_OR_RETURN(bpf_link_info info, LinkInfo(old.get()));
      if (info.type == BPF_LINK_TYPE_CGROUP && info.cgroup.cgroup_id == cgroup_id) {
        int err = bpf_link__update_program(old.get(), h.prog);
        if (err != 0)
          return ErrnoStatus(
              err, absl::StrCat("switching pinned link ", path, " to the newly loaded program"));
        *h.slot = std::move(old);
        ++adoption_.links_readopted;
        continue;
      }
      adoption_.notes.push_back(absl::StrCat(path, " was attached to cgroup id ",
                                             info.cgroup.cgroup_id, "; moved to cgroup id ",
                                             cgroup_id));
    }
    // New attachment first, then the old one goes: connects stay captured throughout.
    struct bpf_link* raw = bpf_program__attach_cgroup(h.prog, cgroup_fd);
    if (raw == nullptr) return ErrnoStatus(errno, absl::StrCat("attaching ", Av(h.name)));
    BpfLink fresh(raw);
    if (old) WEFT_RETURN_IF_ERROR(DestroyPinned(std::move(old), path));
    int err = bpf_link__pin(fresh.get(), path.c_str());
    if (err != 0) return ErrnoStatus(err, absl::StrCat("pinning ", Av(h.name), " at ", path));
    *h.slot = std::move(fresh);
    ++adoption_.links_attached;
  }
  return absl::OkStatus();
}

absl::Status NodeCapture::AdoptNetnsLinks() {
  std::string links_dir = absl::StrCat(pin_dir_, "/", Av(kLinksSubdir));
  for (const std::string& name : DirEntries(links_dir)) {
    if (!absl::StartsWith(name, Av(kNetnsLinkPrefix))) continue;
    uint64_t cookie = 0;
    std::string path = absl::StrCat(links_dir, "/", name);
    if (!absl::SimpleAtoi(Av(std::string_view(name).substr(kNetnsLinkPrefix.size())), &cookie)) {
      adoption_.notes.push_back(absl::StrCat("ignoring unexpected pin ", path));
      continue;
    }
    BpfLink link(bpf_link__open(path.c_str()));
    if (!link) return ErrnoStatus(errno, absl::StrCat("opening pinned link ", path));
    int err = bpf_link__update_program(link.get(), in_->program());
    if (err == -ENOLINK) {
      // The netns is gone; Sweep or the agent's reconcile removes the pin.
      adoption_.notes.push_back(absl::StrCat(path, ": its netns no longer exists"));
    } else if (err != 0) {
      return ErrnoStatus(err, absl::StrCat("switching pinned link ", path, " to the new program"));
    } else {
      ++adoption_.links_readopted;
    }
    netns_links_[cookie] = std::move(link);
  }
  return absl::OkStatus();
}

absl::Status NodeCapture::Sweep() {
  WEFT_ASSIGN_OR_RETURN(auto enrolled, out_->Enrolled());
  std::set<uint32_t> slots;
  for (const auto& [cookie, slot] : enrolled) slots.insert(slot);
  WEFT_ASSIGN_OR_RETURN(auto addrs, in_->PodAddresses());
  WEFT_ASSIGN_OR_RETURN(auto listener_slots, in_->ListenerSlots());
  std::set<uint32_t> stale_slots;
  for (const auto& [slot, a] : addrs)
    if (!slots.count(slot)) stale_slots.insert(slot);
  for (uint32_t slot : listener_slots)
    if (!slots.count(slot)) stale_slots.insert(slot);
  for (uint32_t slot : stale_slots) {
    WEFT_RETURN_IF_ERROR(in_->RemovePod(slot));
    ++adoption_.swept;
  }
  WEFT_ASSIGN_OR_RETURN(auto leftover, out_->NetnsWithState());
  for (uint64_t cookie : leftover) {
    if (enrolled.count(cookie)) continue;
    WEFT_RETURN_IF_ERROR(out_->Unenroll(cookie));
    ++adoption_.swept;
  }
  std::vector<uint64_t> stale_links;
  for (const auto& [cookie, link] : netns_links_)
    if (!enrolled.count(cookie)) stale_links.push_back(cookie);
  for (uint64_t cookie : stale_links) {
    WEFT_RETURN_IF_ERROR(RemoveNetnsLink(cookie));
    ++adoption_.swept;
  }
  return absl::OkStatus();
}

absl::Status NodeCapture::RemoveNetnsLink(uint64_t netns_cookie) {
  std::string path = LinkPin(pin_dir_, NetnsLinkName(netns_cookie));
  BpfLink link;
  auto it = netns_links_.find(netns_cookie);
  if (it != netns_links_.end()) {
    link = std::move(it->second);
    netns_links_.erase(it);
  }
  return DestroyPinned(std::move(link), path);
}

absl::StatusOr<uint32_t> NodeCapture::Enroll(const PodSpec& pod) {
  if (pod.netns_fd < 0) return absl::InvalidArgumentError("Enroll: the pod's netns fd is not open");
  WEFT_ASSIGN_OR_RETURN(uint64_t cookie, NetnsCookie(pod.netns_fd));
  WEFT_ASSIGN_OR_RETURN(auto enrolled, out_->Enrolled());
  auto known = enrolled.find(cookie);
  const bool is_new = known == enrolled.end();
  uint32_t slot = 0;
  if (!is_new) {
    slot = known->second;
  } else {
    std::set<uint32_t> used;
    for (const auto& [c, s] : enrolled) used.insert(s);
    slot = 1;  // 0 stays unused: a zeroed key never names a pod
    while (used.count(slot)) ++slot;
  }

  auto attempt = [&]() -> absl::Status {
    // A new slot may still hold an earlier pod's listeners (ztunnel removes its own on
    // DelWorkload, but not if it died): those must never receive this pod's SYNs.
    if (is_new) WEFT_RETURN_IF_ERROR(in_->RemovePod(slot));
    WEFT_RETURN_IF_ERROR(out_->SetExclusions(cookie, pod.exclude_ports, pod.exclude_cidrs));
    WEFT_RETURN_IF_ERROR(in_->SetPodAddresses(slot, pod.addresses));
    if (!netns_links_.count(cookie)) {
      std::string path = LinkPin(pin_dir_, NetnsLinkName(cookie));
      WEFT_ASSIGN_OR_RETURN(BpfLink link, in_->AttachToNetns(pod.netns_fd));
      int err = bpf_link__pin(link.get(), path.c_str());
      if (err != 0) return ErrnoStatus(err, absl::StrCat("pinning sk_lookup at ", path));
      netns_links_[cookie] = std::move(link);
    }
    return out_->Enroll(cookie, slot);
  };
  absl::Status st = attempt();
  if (!st.ok()) {
    if (is_new) (void)Unenroll(cookie);  // best effort; Sweep at the next Open catches the rest
    return st;
  }
  return slot;
}

absl::Status NodeCapture::Unenroll(uint64_t netns_cookie) {
  WEFT_ASSIGN_OR_RETURN(auto enrolled, out_->Enrolled());
  // Outbound first: the app's connects go direct rather than to a listener about to close.
  WEFT_RETURN_IF_ERROR(out_->Unenroll(netns_cookie));
  auto it = enrolled.find(netns_cookie);
  if (it != enrolled.end()) WEFT_RETURN_IF_ERROR(in_->RemovePod(it->second));
  return RemoveNetnsLink(netns_cookie);
}

absl::StatusOr<std::vector<EnrolledPod>> NodeCapture::ListEnrolled() const {
  WEFT_ASSIGN_OR_RETURN(auto enrolled, out_->Enrolled());
  WEFT_ASSIGN_OR_RETURN(auto addrs, in_->PodAddresses());
  std::vector<EnrolledPod> out;
  for (const auto& [cookie, slot] : enrolled) {
    EnrolledPod p;
    p.netns_cookie = cookie;
    p.slot = slot;
    auto a = addrs.find(slot);
    if (a != addrs.end()) p.addresses = a->second;
    p.sk_lookup_linked = netns_links_.count(cookie) > 0;
    out.push_back(std::move(p));
  }
  return out;
}

absl::StatusOr<NodeCounters> NodeCapture::Counters() const {
  NodeCounters c;
  WEFT_ASSIGN_OR_RETURN(c.inbound, in_->Counters());
  WEFT_ASSIGN_OR_RETURN(c.outbound, out_->Counters());
  return c;
}

absl::StatusOr<NodeCounters> NodeCapture::ReadPinnedCounters(std::string_view pin_dir) {
  NodeCounters c;
  for (auto [name, out] :
       {std::pair<std::string_view, ReasonCounts*>{"weft_inbound_counters", &c.inbound},
        {"weft_outbound_counters", &c.outbound}}) {
    std::string path = MapPin(pin_dir, name);
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0) {
      if (errno == ENOENT)
        return absl::NotFoundError(absl::StrCat(path, " is not pinned (capture not installed)"));
      return ErrnoStatus(errno, absl::StrCat("opening ", path));
    }
    UniqueFd map(fd);
    WEFT_ASSIGN_OR_RETURN(*out, internal::ReadCounters(map.get(), name));
  }
  return c;
}

absl::Status NodeCapture::Uninstall() {
  absl::Status first;
  auto note = [&](absl::Status st) {
    if (!st.ok() && first.ok()) first = std::move(st);
  };
  // Outbound first (connects go direct again), then inbound.
  note(DestroyPinned(std::move(connect4_), LinkPin(pin_dir_, "connect4")));
  note(DestroyPinned(std::move(connect6_), LinkPin(pin_dir_, "connect6")));
  note(DestroyPinned(std::move(sockops_), LinkPin(pin_dir_, "sockops")));
  std::vector<uint64_t> cookies;
  for (const auto& [cookie, link] : netns_links_) cookies.push_back(cookie);
  for (uint64_t c : cookies) note(RemoveNetnsLink(c));
  std::error_code ec;
  std::filesystem::remove_all(pin_dir_, ec);
  if (ec) note(absl::InternalError(absl::StrCat("removing ", pin_dir_, ": ", ec.message())));
  return first;
}

}  // namespace weft::bpf
