// Layout checks of the structs shared with the eBPF programs (Cilium's alignchecker idea):
// a drift between the BPF C and C++ views of shared/capture.h fails the build here.
#include <cstddef>

#include "shared/capture.h"

namespace weft::bpf {

static_assert(sizeof(weft_addr_key) == 16);
static_assert(sizeof(weft_pod_slot) == 8);
static_assert(sizeof(weft_listener_key) == 8);
static_assert(offsetof(weft_listener_key, kind) == 4);
static_assert(sizeof(weft_enrolled_pod) == 8);
static_assert(sizeof(weft_exclude_port_key) == 16);
static_assert(offsetof(weft_exclude_port_key, port) == 8);
static_assert(sizeof(weft_exclude_cidr_key) == 32);
static_assert(offsetof(weft_exclude_cidr_key, netns_cookie) == 8);
static_assert(offsetof(weft_exclude_cidr_key, addr) == 16);
// LPM data starts right after prefixlen; the base counts _pad and netns_cookie.
static_assert(WEFT_CIDR_PREFIX_BASE == 8 * (offsetof(weft_exclude_cidr_key, addr) - 4));
static_assert(sizeof(weft_orig_dst) == 32);
static_assert(offsetof(weft_orig_dst, port) == 16);
static_assert(offsetof(weft_orig_dst, family) == 18);
static_assert(offsetof(weft_orig_dst, netns_cookie) == 24);
static_assert(sizeof(weft_peer_key) == 32);
static_assert(offsetof(weft_peer_key, addr) == 8);
static_assert(offsetof(weft_peer_key, port) == 24);
static_assert(WEFT_DROP_PEER_RECORD_FAILED + WEFT_REASON_OFFSET >= 0);
static_assert(WEFT_DROP_POLICY_DENY + WEFT_REASON_OFFSET >= 0);
static_assert(sizeof(weft_deny_key) == 32);
static_assert(offsetof(weft_deny_key, addr) == 8);
static_assert(offsetof(weft_deny_key, port) == 24);
static_assert(sizeof(weft_deny_value) == 8);
static_assert(offsetof(weft_deny_value, label_id) == 4);
static_assert(WEFT_LOCAL_LEG_INBOUND + WEFT_REASON_OFFSET < WEFT_REASON_SLOTS);
static_assert(sizeof(weft_sock_tuple) == 48);
static_assert(offsetof(weft_sock_tuple, local) == 8);
static_assert(offsetof(weft_sock_tuple, remote) == 24);
static_assert(offsetof(weft_sock_tuple, local_port) == 40);
static_assert(offsetof(weft_sock_tuple, remote_port) == 42);

}  // namespace weft::bpf
