/* The local legs of captured connections (docs/fastpath.md, "The local legs of cross-node
 * traffic"): an app and ztunnel talk over a loopback TCP connection inside the pod's netns. Both
 * ends go into weft_local_legs; the sk_msg program attached to it hands a message sent on one end
 * straight to the other end's receive queue (bpf_msg_redirect_hash with BPF_F_INGRESS), skipping
 * the loopback TCP stack, but only while the TCP path between them is idle:
 *   - the sender has no unacknowledged bytes (write_seq == snd_una),
 *   - the receiver has no unread TCP bytes (copied_seq == rcv_nxt), and
 *   - the receiver's queue of redirected bytes is under its receive buffer (sk_rcvbuf).
 * The first two keep the byte order: a redirected message is read before anything TCP holds
 * (tcp_bpf_recvmsg takes the redirected queue first), so a redirect may only follow TCP bytes
 * that are already read. The third is the back-pressure the kernel's ingress redirect lacks
 * (bpf_tcp_ingress checks only the protocol's global memory): a message that finds the queue
 * full takes TCP, whose window pushes back on the sender; redirects resume once the receiver
 * has read everything. Anything else (peer not joined, closed) is plain TCP. */
#ifndef WEFT_BPF_LIB_LOCAL_LEGS_H
#define WEFT_BPF_LIB_LOCAL_LEGS_H

#include "lib/common.h"
/* (separate block so include sorting keeps the order) */
#include <bpf/bpf_core_read.h>

#include "lib/outbound_maps.h"

struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, WEFT_LOCAL_LEGS_MAX);
  __type(key, struct weft_sock_tuple);
  __type(value, __u64);
} weft_local_legs SEC(".maps");

/* Inbound delivery legs ztunnel is about to connect, by the app's accepted socket's own tuple
 * (its remote end is ztunnel's bound socket). LRU: an announced connection that never reaches
 * an app in the attach cgroup ages out. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, WEFT_LOCAL_LEGS_EXPECT_MAX);
  __type(key, struct weft_sock_tuple);
  __type(value, __u32);
} weft_local_legs_expect SEC(".maps");

/* Mappable: ztunnel reads the switch from memory on every connection, no syscall. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(map_flags, BPF_F_MMAPABLE);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u32);
} weft_local_legs_config SEC(".maps");

/* The kernel fields read, relocated by libbpf from the kernel's BTF (CO-RE). */
struct tcp_sock {
  __u32 rcv_nxt;
  __u32 copied_seq;
  __u32 snd_una;
  __u32 write_seq;
} __attribute__((preserve_access_index));
struct sock {
  int sk_rcvbuf;
  void* sk_user_data;
} __attribute__((preserve_access_index));
struct sk_psock {
  __u32 msg_tot_len;
} __attribute__((preserve_access_index));
struct sk_msg {
  struct sock* sk_redir;
} __attribute__((preserve_access_index));

#define WEFT_SK_USER_DATA_PTRMASK (~7UL) /* SK_USER_DATA_NOCOPY | _BPF | _PSOCK */

/* One 32-bit context load (clang would merge neighbouring ones into a 64-bit load, which the
 * verifier refuses for these context fields). */
#define WEFT_CTX_U32(field) (*(volatile __u32*)&(field))

/* sock_ops and sk_msg contexts give remote_port in network order in the upper 16 bits (little
 * endian) and local_port in host order. */
static __always_inline __u16 weft_ctx_remote_port(__u32 remote_port) {
  return (__u16)(remote_port >> 16);
}

/* The socket's own tuple, as weft_local_legs keys it. */
static __always_inline void weft_skops_tuple(struct bpf_sock_ops* skops, __u64 netns,
                                             struct weft_sock_tuple* key) {
  key->netns_cookie = netns;
  key->local_port = bpf_htons((__u16)skops->local_port);
  key->remote_port = weft_ctx_remote_port(skops->remote_port);
  if (skops->family == AF_INET) {
    weft_addr_from_v4(key->local, skops->local_ip4);
    weft_addr_from_v4(key->remote, skops->remote_ip4);
  } else {
    __u32 l6[4] = {WEFT_CTX_U32(skops->local_ip6[0]), WEFT_CTX_U32(skops->local_ip6[1]),
                   WEFT_CTX_U32(skops->local_ip6[2]), WEFT_CTX_U32(skops->local_ip6[3])};
    __u32 r6[4] = {WEFT_CTX_U32(skops->remote_ip6[0]), WEFT_CTX_U32(skops->remote_ip6[1]),
                   WEFT_CTX_U32(skops->remote_ip6[2]), WEFT_CTX_U32(skops->remote_ip6[3])};
    weft_addr_from_v6(key->local, l6);
    weft_addr_from_v6(key->remote, r6);
  }
}

static __always_inline void weft_local_leg_add(struct bpf_sock_ops* skops,
                                               struct weft_sock_tuple* key, int joined) {
  if (bpf_sock_hash_update(skops, &weft_local_legs, key, BPF_NOEXIST) != 0) {
    weft_count(&weft_outbound_counters, WEFT_LOCAL_LEG_FULL);
    return;
  }
  weft_count(&weft_outbound_counters, joined);
}

/* Sockops, the app's end of a local leg joins the map:
 * - BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB (outbound): an app socket whose connect() was redirected
 *   to ztunnel's outbound listener (its record is in the pod's weft_orig_dst);
 * - BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB (inbound delivery): an app's accepted socket whose
 *   connection ztunnel announced in weft_local_legs_expect before connecting (ztunnel's socket
 *   is in ztunnel's cgroup, not the pod's, so only the app's end passes through here). */
static __always_inline void weft_local_leg_join(struct bpf_sock_ops* skops) {
  if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
      skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
    return;
  __u32 zero = 0;
  __u32* on = bpf_map_lookup_elem(&weft_local_legs_config, &zero);
  if (!on || *on != WEFT_LOCAL_LEGS_ON) return;
  __u64 netns = bpf_get_netns_cookie(skops);
  struct weft_sock_tuple key = {};
  if (skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
    weft_skops_tuple(skops, netns, &key);
    if (!bpf_map_lookup_elem(&weft_local_legs_expect, &key)) return; /* not ztunnel's leg */
    bpf_map_delete_elem(&weft_local_legs_expect, &key);
    weft_local_leg_add(skops, &key, WEFT_LOCAL_LEG_INBOUND);
    return;
  }
  void* pod_records = bpf_map_lookup_elem(&weft_orig_dst, &netns);
  if (!pod_records) return; /* not an enrolled pod */
  __u64 cookie = bpf_get_socket_cookie(skops);
  if (!bpf_map_lookup_elem(pod_records, &cookie)) return; /* not redirected by connect4/6 */
  weft_skops_tuple(skops, netns, &key);
  weft_local_leg_add(skops, &key, WEFT_LOCAL_LEG_JOINED);
}

/* True when a message from `mt` may go straight into `peer`'s receive queue (see the top). */
static __always_inline int weft_local_leg_idle(struct tcp_sock* mt, struct sock* peer) {
  if (!bpf_core_field_exists(struct sk_psock, msg_tot_len)) return 0; /* cannot bound it */
  if (!mt || !peer) return 0;
  struct tcp_sock* pt = (struct tcp_sock*)peer;
  if (BPF_CORE_READ(mt, write_seq) != BPF_CORE_READ(mt, snd_una)) return 0;
  if (BPF_CORE_READ(pt, rcv_nxt) != BPF_CORE_READ(pt, copied_seq)) return 0;
  unsigned long data = (unsigned long)BPF_CORE_READ(peer, sk_user_data);
  struct sk_psock* psock = (struct sk_psock*)(data & WEFT_SK_USER_DATA_PTRMASK);
  if (!psock) return 0;
  __u32 queued = BPF_CORE_READ(psock, msg_tot_len);
  int rcvbuf = BPF_CORE_READ(peer, sk_rcvbuf);
  return rcvbuf > 0 && queued < (__u32)rcvbuf;
}

/* sk_msg verdict of every socket in weft_local_legs. A program of this type cannot look a
 * socket up (the lookup takes a reference it has no helper to drop), so it learns the peer from
 * the redirect itself: redirect to the peer, read the peer the kernel found (msg->sk_redir),
 * and when the path is not idle, redirect to its own egress instead (plain TCP, in order). */
static __always_inline int weft_local_leg_verdict(struct sk_msg_md* msg) {
  struct weft_sock_tuple own = {.netns_cookie = bpf_get_netns_cookie(msg),
                                .local_port = bpf_htons((__u16)msg->local_port),
                                .remote_port = weft_ctx_remote_port(msg->remote_port)};
  if (msg->family == AF_INET) {
    weft_addr_from_v4(own.local, msg->local_ip4);
    weft_addr_from_v4(own.remote, msg->remote_ip4);
  } else {
    __u32 l6[4] = {WEFT_CTX_U32(msg->local_ip6[0]), WEFT_CTX_U32(msg->local_ip6[1]),
                   WEFT_CTX_U32(msg->local_ip6[2]), WEFT_CTX_U32(msg->local_ip6[3])};
    __u32 r6[4] = {WEFT_CTX_U32(msg->remote_ip6[0]), WEFT_CTX_U32(msg->remote_ip6[1]),
                   WEFT_CTX_U32(msg->remote_ip6[2]), WEFT_CTX_U32(msg->remote_ip6[3])};
    weft_addr_from_v6(own.local, l6);
    weft_addr_from_v6(own.remote, r6);
  }
  struct weft_sock_tuple peer = own;
  __builtin_memcpy(peer.local, own.remote, sizeof(peer.local));
  __builtin_memcpy(peer.remote, own.local, sizeof(peer.remote));
  peer.local_port = own.remote_port;
  peer.remote_port = own.local_port;
  if (bpf_msg_redirect_hash(msg, &weft_local_legs, &peer, BPF_F_INGRESS) != SK_PASS)
    return SK_PASS; /* the other end has not joined (or has closed): plain TCP */
  struct sock* psk = BPF_CORE_READ((struct sk_msg*)msg, sk_redir);
  struct tcp_sock* mt = msg->sk ? bpf_skc_to_tcp_sock(msg->sk) : 0;
  if (weft_local_leg_idle(mt, psk)) return SK_PASS; /* the redirect stands */
  /* Not idle: out of our own socket, through TCP. Never the peer's queue out of order. */
  if (bpf_msg_redirect_hash(msg, &weft_local_legs, &own, 0) != SK_PASS) return SK_DROP;
  return SK_PASS;
}

#endif /* WEFT_BPF_LIB_LOCAL_LEGS_H */
