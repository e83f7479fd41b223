// The node's eBPF capture as weft-agent runs it: both capture objects loaded with every map
// pinned under one pin dir (bpf/pins.h), the cgroup links (connect4, connect6, sockops) and one
// sk_lookup link per enrolled pod netns pinned there too. Pins outlive the process: killing
// the agent leaves traffic flowing, and the next NodeCapture::Open on the same dir re-adopts
// everything (maps reused with their contents, links switched to the newly loaded programs
// with bpf_link_update, so there is never a moment without a program) and sweeps what an
// interrupted enrolment left half-done.
//
// State lives in the pinned maps, not in this object: the slot of a pod is its weft_enrolled
// entry, its addresses are its weft_pod_addrs entries. ListEnrolled() reads them back.
//
// Thread-safety: none; one owner thread (the agent's loop). ReadPinnedCounters is
// independent of any instance and may run on any thread (the metrics endpoint).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bpf/capture.h"
#include "common/net.h"

namespace weft::bpf {

// What the agent enrols: the pod's netns and what its capture needs.
struct PodSpec {
  int netns_fd = -1;                    // the pod's network namespace (not kept)
  std::vector<IpAddr> addresses;        // steered inbound to the pod's ztunnel listeners
  std::vector<uint16_t> exclude_ports;  // outbound destination ports left alone
  std::vector<Cidr> exclude_cidrs;      // outbound destinations left alone
};

// An enrolled pod as the pinned maps describe it.
struct EnrolledPod {
  uint64_t netns_cookie = 0;
  uint32_t slot = 0;
  std::vector<IpAddr> addresses;
  bool sk_lookup_linked = false;  // its sk_lookup link is pinned
};

struct NodeCounters {
  ReasonCounts inbound;   // weft_inbound_counters
  ReasonCounts outbound;  // weft_outbound_counters
};

// What Open found and did, for logs and tests.
struct AdoptionReport {
  int maps_reused = 0;             // maps that were already pinned
  int links_readopted = 0;         // pinned links switched to the new programs
  int links_attached = 0;          // cgroup links newly attached and pinned
  int swept = 0;                   // leftovers of interrupted enrolments removed
  std::vector<std::string> notes;  // one line per unusual finding
};

class NodeCapture {
 public:
  // Mounts bpffs at /sys/fs/bpf if `pin_dir` is under it and nothing is mounted there, loads
  // the programs with their maps pinned under <pin_dir>/maps, attaches connect4/connect6/
  // sockops to the cgroup v2 directory `cgroup_fd` (re-adopting pinned links; a pinned link
  // on another cgroup is replaced) and re-adopts the pinned sk_lookup links. Never pass the
  // machine's root cgroup in tests. Errors: PermissionDenied (not root), Unavailable (kernel
  // lacks a feature), FailedPrecondition (pins of an incompatible Weft version).
  static absl::StatusOr<std::unique_ptr<NodeCapture>> Open(std::string pin_dir, int cgroup_fd);
  // Closes the fds; every pin stays (pods keep their capture).
  ~NodeCapture();
  NodeCapture(const NodeCapture&) = delete;
  NodeCapture& operator=(const NodeCapture&) = delete;

  // Enrols the pod: exclusions, addresses, the netns's sk_lookup link (pinned as
  // links/sk_lookup_<netns cookie>), then its weft_enrolled entry (which commits the slot).
  // Enrolling an enrolled netns keeps its slot and brings addresses and exclusions to `pod`
  // (added before the stale ones are removed). Returns the slot. On error whatever this call
  // added for a new pod is removed again.
  absl::StatusOr<uint32_t> Enroll(const PodSpec& pod);
  // Removes every map entry (weft_enrolled, exclusions, addresses, the slot's listeners, the
  // netns's original-destination records) and the sk_lookup link of that netns. Not enrolled
  // is not an error.
  absl::Status Unenroll(uint64_t netns_cookie);
  // Read from the pinned maps, ordered by cookie.
  absl::StatusOr<std::vector<EnrolledPod>> ListEnrolled() const;
  absl::StatusOr<NodeCounters> Counters() const;

  // Detaches every link, then removes the whole pin dir. The object must only be destroyed
  // afterwards.
  absl::Status Uninstall();

  // The counters of the maps pinned under `pin_dir` (opened by path for this call).
  static absl::StatusOr<NodeCounters> ReadPinnedCounters(std::string_view pin_dir);

  const std::string& pin_dir() const { return pin_dir_; }
  const AdoptionReport& adoption() const { return adoption_; }
  InboundCapture& inbound() { return *in_; }
  OutboundCapture& outbound() { return *out_; }

 private:
  NodeCapture(std::string pin_dir, std::unique_ptr<InboundCapture> in,
              std::unique_ptr<OutboundCapture> out);
  absl::Status AdoptCgroupLinks(int cgroup_fd);
  absl::Status AdoptNetnsLinks();
  absl::Status Sweep();
  absl::Status RemoveNetnsLink(uint64_t netns_cookie);

  std::string pin_dir_;
  std::unique_ptr<InboundCapture> in_;
  std::unique_ptr<OutboundCapture> out_;
  BpfLink connect4_, connect6_, sockops_;
  std::map<uint64_t, BpfLink> netns_links_;  // netns cookie -> pinned sk_lookup link
  AdoptionReport adoption_;
};

}  // namespace weft::bpf
