/* Weft capture: every map key/value and reason code shared between the eBPF programs in
 * the bpf/ entry programs and the C++ loader (bpf/capture.h). Defined once here, fixed-width types,
 * explicit padding; bpf/layout_check.cc asserts the layout on the C++ side.
 *
 * Byte order: addresses and the ports inside `weft_orig_dst` / `weft_exclude_port_key` are in
 * network byte order (as the kernel hands them to the programs). IPv4 addresses are stored
 * everywhere as IPv4-mapped IPv6 (::ffff:a.b.c.d) so one key type serves both families. */
#ifndef WEFT_BPF_SHARED_CAPTURE_H
#define WEFT_BPF_SHARED_CAPTURE_H

#include <linux/types.h>

/* Ports of ztunnel's in-pod listeners. */
#define WEFT_PORT_OUTBOUND 15001 /* outbound capture, 127.0.0.1 / ::1 */
#define WEFT_PORT_INBOUND 15006  /* inbound plaintext capture */
#define WEFT_PORT_HBONE 15008    /* inbound HBONE (mTLS) */

/* ztunnel marks every socket it opens; (mark & MASK) == VALUE is never redirected. */
#define WEFT_ZTUNNEL_MARK 0x539
#define WEFT_ZTUNNEL_MARK_MASK 0xfff

/* Reason codes, counted per CPU in the `*_counters` maps at index code + WEFT_REASON_OFFSET.
 * Negative: the packet/connect was refused (fail closed). Positive: it was redirected or let
 * through untouched. The C++ side names them (weft::bpf::ReasonName) for metric labels. */
enum weft_reason {
  WEFT_DROP_NO_HBONE_SOCKET = -1,    /* sk_lookup: ztunnel's HBONE listener is not in the map */
  WEFT_DROP_NO_INBOUND_SOCKET = -2,  /* sk_lookup: ztunnel's plaintext listener is missing */
  WEFT_DROP_ASSIGN_FAILED = -3,      /* sk_lookup: bpf_sk_assign refused the listener */
  WEFT_DROP_ORIG_DST_FULL = -4,      /* connect: the original destination could not be saved */
  WEFT_DROP_PEER_RECORD_FAILED = -5, /* sockops: the by-peer record could not be saved */
  WEFT_DROP_NOT_POD_ADDR = -6,       /* sk_lookup: a local address of the pod's netns that is
                                        not one of its enrolled addresses (IPv6 link-local, a
                                        secondary address): never delivered uncaptured */
  WEFT_DROP_NO_POD_MAP = -7,         /* connect: the enrolled pod has no original-destination
                                        map of its own (enrolment in progress or broken) */
  WEFT_DROP_POLICY_DENY = -8,        /* connect: weft_connect_deny says the destination's
                                        policy certainly denies this connect (issue 16 §5) */

  WEFT_PASS_NOT_TCP = 1,  /* not TCP: left alone */
  WEFT_PASS_LOOPBACK = 2, /* destination is loopback: left alone */
  /* 3 was WEFT_PASS_NOT_POD_ADDR: such addresses are dropped now (WEFT_DROP_NOT_POD_ADDR). */
  WEFT_PASS_NOT_ENROLLED = 4,  /* connect: the socket's netns is not enrolled */
  WEFT_PASS_ZTUNNEL_MARK = 5,  /* connect: ztunnel's own socket */
  WEFT_PASS_EXCLUDED_PORT = 6, /* connect: destination port excluded for this netns */
  WEFT_PASS_EXCLUDED_CIDR = 7, /* connect: destination address excluded for this netns */
  WEFT_REDIRECT_HBONE = 8,     /* sk_lookup: steered to ztunnel's HBONE listener */
  WEFT_REDIRECT_INBOUND = 9,   /* sk_lookup: steered to ztunnel's plaintext listener */
  WEFT_REDIRECT_OUTBOUND = 10, /* connect: rewritten to the outbound listener */
  WEFT_RECORD_PEER = 11,       /* sockops: original destination filed under the peer */
  WEFT_PASS_SELF = 12,         /* sk_lookup: the pod connecting to its own address (ztunnel's
                                  inbound leg to the app comes from the pod address itself) */
  WEFT_LOCAL_LEG_JOINED = 13,  /* sockops: an app socket of a captured connection entered
                                  weft_local_legs (sk_msg short-cut to ztunnel's socket) */
  WEFT_LOCAL_LEG_FULL = 14,    /* sockops: weft_local_legs refused it (full): plain TCP */
  WEFT_LOCAL_LEG_INBOUND = 15, /* sockops: an app's accepted socket of ztunnel's inbound
                                  (delivery) leg entered weft_local_legs */
};
#define WEFT_REASON_OFFSET 8 /* index = code + offset; keeps the most negative code at >= 0 */
#define WEFT_REASON_SLOTS 32 /* entries of the counter arrays */

/* --- inbound (sk_lookup) ------------------------------------------------------------- */

/* `weft_pod_addrs` (hash): the enrolled pods' addresses -> the pod's slot. sk_lookup has no
 * netns cookie on the 5.15 floor, so the agent gives every enrolled pod a small slot number
 * and keys the listener map by it. Pod addresses are unique on a node. */
struct weft_addr_key {
  __u8 addr[16]; /* IPv6, or IPv4-mapped IPv6 */
};
struct weft_pod_slot {
  __u32 slot;
  __u32 _pad;
};

/* `weft_listeners` (SOCKHASH): (slot, kind) -> ztunnel's listening socket in that pod. ztunnel
 * binds one listener per family, so IPv6 SYNs look up the kind with WEFT_LISTENER_V6 set. */
enum weft_listener_kind {
  WEFT_LISTENER_HBONE = 0,    /* port 15008, IPv4 */
  WEFT_LISTENER_INBOUND = 1,  /* port 15006, every other destination port, IPv4 */
  WEFT_LISTENER_HBONE6 = 2,   /* the same, IPv6 */
  WEFT_LISTENER_INBOUND6 = 3, /* the same, IPv6 */
};
#define WEFT_LISTENER_V6 2
struct weft_listener_key {
  __u32 slot;
  __u32 kind; /* enum weft_listener_kind */
};

/* --- outbound (cgroup/connect4, cgroup/connect6) --------------------------------------- */

/* `weft_enrolled` (hash): netns cookie -> pod settings. Only sockets in these netns are
 * redirected. */
struct weft_enrolled_pod {
  __u32 slot;
  __u32 _pad;
};

/* `weft_exclude_ports` (hash): (netns cookie, destination port) -> present = not redirected. */
struct weft_exclude_port_key {
  __u64 netns_cookie;
  __u16 port; /* network byte order */
  __u16 _pad0;
  __u32 _pad1;
};

/* `weft_exclude_cidrs` (LPM trie): netns cookie then address, prefix length counted over
 * both: 64 + 96 + v4 prefix for IPv4 (as mapped), 64 + v6 prefix for IPv6. */
struct weft_exclude_cidr_key {
  __u32 prefixlen;
  __u32 _pad; /* part of the LPM data: always 0, counted as 32 matching bits */
  __u64 netns_cookie;
  __u8 addr[16];
};
#define WEFT_CIDR_PREFIX_BASE 96 /* _pad (32 bits) + netns_cookie (64 bits) */

/* The original-destination records are kept per pod: `weft_orig_dst` and
 * `weft_orig_dst_by_peer` are hashes of maps keyed by the pod's netns cookie, and each enrolled
 * pod gets its own inner LRU hash of WEFT_ORIG_DST_PER_POD entries (created by the agent at
 * enrolment). A pod that connects in a tight loop can only evict its own older records, never
 * a neighbour's (one shared LRU let any pod evict every other pod's records, refusing their
 * connections). A record is needed only between connect() and ztunnel's accept(), so 1024 per
 * pod covers far more connects in flight than a pod can have; about 200 KiB of kernel memory
 * per pod for both maps. */
#define WEFT_ORIG_DST_PER_POD 1024
#define WEFT_MAX_PODS_PER_NODE 4096 /* entries of weft_enrolled and the per-pod outer maps */

/* `weft_orig_dst` (inner LRU hash): socket cookie of the app's socket -> where it tried to go. */
struct weft_orig_dst {
  __u8 addr[16]; /* IPv6, or IPv4-mapped IPv6 for connect4 and mapped connect6 */
  __u16 port;    /* network byte order */
  __u16 family;  /* AF_INET or AF_INET6 as the app called connect() */
  __u32 _pad;
  __u64 netns_cookie;
};

/* `weft_orig_dst_by_peer` (inner LRU hash): the same record, keyed by what ztunnel sees on the
 * accepted socket: its netns cookie (SO_NETNS_COOKIE) and its peer address, i.e. the app
 * socket's local address and port. Filled by the sockops program when the redirected connect
 * has picked its source port (BPF_SOCK_OPS_TCP_CONNECT_CB). */
struct weft_peer_key {
  __u64 netns_cookie;
  __u8 addr[16]; /* the app socket's local address, IPv4 as mapped */
  __u16 port;    /* the app socket's local port, network byte order */
  __u16 _pad0;
  __u32 _pad1;
};

/* --- deny at connect (issue 16 §5, docs/security.md "Deny at connect") ------------------ */

/* `weft_connect_deny` (hash), written by ztunnel: (source pod netns cookie, destination
 * address, destination port) -> what the destination's policy certainly decides. The connect
 * program looks up the exact port first, then port 0 (every other port of that address); an
 * absent entry lets the connect through (the destination decides, as always). */
struct weft_deny_key {
  __u64 netns_cookie;
  __u8 addr[16]; /* IPv6, or IPv4-mapped IPv6 */
  __u16 port;    /* network byte order; 0 = every port without an entry of its own */
  __u16 _pad0;
  __u32 _pad1;
};
enum weft_deny_verdict {
  WEFT_DENY_VERDICT_PASS = 0, /* an exception to a port-0 entry: let it through */
  WEFT_DENY_VERDICT_DENY = 1, /* connect() fails in the source pod (EACCES, EPERM pre-5.18) */
};
struct weft_deny_value {
  __u32 verdict;  /* enum weft_deny_verdict */
  __u32 label_id; /* index into weft_deny_counts: ztunnel maps it to the policy label */
};
#define WEFT_CONNECT_DENY_ENTRIES 65536 /* entries of weft_connect_deny */
#define WEFT_DENY_LABELS 1024           /* entries of weft_deny_counts (per-CPU u64) */
/* --- local legs (sk_msg, docs/fastpath.md "The local legs of cross-node traffic") ----- */

/* `weft_local_legs` (SOCKHASH, sk_msg verdict attached): both ends of a loopback (or pod
 * address to itself) connection between an app and ztunnel, keyed by their own 4-tuple as seen
 * from that socket, in its netns. The app's end is added by the sockops program, ztunnel's by
 * ztunnel (PinnedMaps::JoinLocalLeg); a message sent on one end goes into the other end's
 * receive queue (the reversed tuple) while the TCP path between them is idle. */
struct weft_sock_tuple {
  __u64 netns_cookie;
  __u8 local[16];    /* IPv4 as mapped */
  __u8 remote[16];   /* IPv4 as mapped */
  __u16 local_port;  /* network byte order */
  __u16 remote_port; /* network byte order */
  __u32 _pad;
};
#define WEFT_LOCAL_LEGS_MAX 65536

/* `weft_local_legs_expect` (LRU hash, weft_sock_tuple -> __u32 1): the inbound (delivery) legs
 * ztunnel announces before it connects to an app in the pod: the key is the app's accepted
 * socket's own tuple (local: the app's address and port; remote: the address and port ztunnel
 * bound). The sockops program adds that socket to weft_local_legs at
 * BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB and deletes the entry. */
#define WEFT_LOCAL_LEGS_EXPECT_MAX 65536

/* `weft_local_legs_config` (array, 1 entry): WEFT_LOCAL_LEGS_ON when the sockops program adds
 * app sockets (the agent's --local-legs). Off: nothing enters the map, every byte takes TCP. */
#define WEFT_LOCAL_LEGS_ON 1

#endif /* WEFT_BPF_SHARED_CAPTURE_H */
