// Deny at connect (issue 16 §5, docs/security.md "Deny at connect"): which connects from this
// node's pods the destination's L4 policy certainly denies, compiled into entries for the
// connect program's weft_connect_deny map (bpf/connect_deny.h), so the connect fails at once in
// the source pod instead of crossing HBONE to be refused. The destination ztunnel still
// enforces everything; an entry only saves the round trip.
//
// Conservative by construction: an entry exists only where the decision is a certain DENY from
// facts the source node has. For a destination workload:
//   - on this node by the snapshot itself (Workload::node is this node's name: the view that
//     says so was built with every policy of this node's pods, so all of its policies are in
//     it) and held by this ztunnel: no NetworkPolicy selects it, no policy makes it parse HTTP, and
//     every ALLOW/DENY policy that applies (dry-run and AUDIT ones change nothing) uses only the
//     source identity (principals, namespaces, source.principal, source.namespace, with not-forms)
//     and the destination port (ports, destination.port, with not-forms). The decision is then
//     Authorize()'s, exactly as the destination would reach it.
//   - on another node (its node's view may hold ALLOW policies this node never receives): only
//     a matching DENY policy is certain, so an entry exists only when every DENY policy in this
//     view that applies uses only those attributes and one of them matches.
// For a Service VIP (the connect program sees the VIP: ztunnel picks the endpoint after the
// redirect), an entry for VIP:port exists only when the Service has at least one endpoint
// ztunnel could send it to, every one of them certainly denies the source by the rules above on
// the port's target port (not the service port), all with the same label, and the port stays L4
// at the source: not declared HTTP, no HTTPRoute on the Service, no TrafficPolicy on the port,
// neither port one of ztunnel's. An address that is a Service VIP is never compiled as a
// workload's (ztunnel resolves the Service first).
// Anything else (an ipBlocks rule, a destination.ip condition, an L7 attribute, a workload
// outside the mesh or not running) leaves the connect alone.
//
// Pure function of its inputs; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/net.h"
#include "ztunnel/state/snapshot.h"

namespace weft::ztunnel {

// A pod on this node whose connects the connect program sees.
struct DenySource {
  std::string uid;  // its workload uid in the snapshot
  uint64_t netns_cookie = 0;
};

struct DenyEntry {
  uint64_t netns_cookie = 0;
  IpAddr dst;
  uint16_t port = 0;  // 0: every port of `dst` without an entry of its own
  bool deny = true;   // false: an exception to the port-0 entry
  // The label the destination counts the denial with (weft_policy_denials_total): the deciding
  // policy "ns/name" ("" when no ALLOW policy matched) and "deny" | "no_allow_match".
  std::string policy;
  std::string reason;
};

struct CompiledDenies {
  std::vector<DenyEntry> entries;
  size_t dropped = 0;   // (source pod, destination address) groups left out: max_entries reached
  size_t skipped = 0;   // destination workloads whose policies the source cannot decide
  size_t compiled = 0;  // destination workloads with policies the source decided
  size_t vip_ports_compiled = 0;  // Service ports whose endpoints the source decided
  size_t vip_ports_skipped = 0;   // Service ports left to the destination (see above)
};

// Ports the connect program never denies (ztunnel's own listeners, reached only by ztunnel).
bool IsNeverDeniedPort(uint16_t port);

// The entries for `sources` (pods of this node) towards every workload and Service VIP of
// `snap`. A
// destination is local (see above) when its Workload::node is `node` (non-empty) and its uid is
// in `local_uids` (the pods this ztunnel holds). At most `max_entries` entries; a (source,
// destination address) group is added whole or not at all.
CompiledDenies CompileConnectDenies(const ConfigSnapshot& snap,
                                    const std::vector<DenySource>& sources, std::string_view node,
                                    const std::set<std::string>& local_uids, size_t max_entries);

}  // namespace weft::ztunnel
