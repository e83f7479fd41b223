/* Outbound capture: connect() from an enrolled pod's netns is rewritten to ztunnel's
 * pod-local outbound listener; the original destination is saved under the socket cookie. */
#ifndef WEFT_BPF_LIB_CONNECT_H
#define WEFT_BPF_LIB_CONNECT_H

#include "lib/common.h"
#include "lib/outbound_maps.h"

#define WEFT_CONNECT_ALLOW 1
#define WEFT_CONNECT_REFUSE 0 /* connect() fails with EPERM */
#define WEFT_EACCES 13

/* Deny at connect (issue 16 §5): the entry ztunnel compiled for (netns, dst, port), the exact
 * port first, then port 0. Returns 1 when the connect must fail. `set_errno` is a constant of
 * the entry program: kernels with bpf_set_retval for cgroup/connect (5.18+; the agent probes
 * it and attaches the matching variant) fail it with EACCES, older ones with EPERM. */
static __always_inline int weft_connect_denied(__u64 netns, const __u8 dst[16], __u16 port,
                                               const int set_errno) {
  struct weft_deny_key dk = {.netns_cookie = netns, .port = port};
  __builtin_memcpy(dk.addr, dst, 16);
  struct weft_deny_value* dv = bpf_map_lookup_elem(&weft_connect_deny, &dk);
  if (!dv) {
    dk.port = 0;
    dv = bpf_map_lookup_elem(&weft_connect_deny, &dk);
  }
  if (!dv || dv->verdict != WEFT_DENY_VERDICT_DENY) return 0;
  __u32 label = dv->label_id;
  __u64* n = bpf_map_lookup_elem(&weft_deny_counts, &label);
  if (n) *n += 1; /* per-CPU slot */
  weft_count(&weft_outbound_counters, WEFT_DROP_POLICY_DENY);
  if (set_errno) bpf_set_retval(-WEFT_EACCES);
  return 1;
}

/* Decides and, when redirecting, records. `dst` is the destination as mapped/plain IPv6,
 * `port` in network order. Returns 1 when the caller must rewrite the destination. */
static __always_inline int weft_should_redirect(struct bpf_sock_addr* ctx, const __u8 dst[16],
                                                __u16 port, int* verdict, const int set_errno) {
  *verdict = WEFT_CONNECT_ALLOW;
  if (ctx->protocol != IPPROTO_TCP) {
    weft_count(&weft_outbound_counters, WEFT_PASS_NOT_TCP);
    return 0;
  }
  __u64 netns = bpf_get_netns_cookie(ctx);
  if (!bpf_map_lookup_elem(&weft_enrolled, &netns)) {
    weft_count(&weft_outbound_counters, WEFT_PASS_NOT_ENROLLED);
    return 0;
  }
  struct bpf_sock* sk = ctx->sk;
  if (sk && (sk->mark & WEFT_ZTUNNEL_MARK_MASK) == WEFT_ZTUNNEL_MARK) {
    weft_count(&weft_outbound_counters, WEFT_PASS_ZTUNNEL_MARK);
    return 0;
  }
  if (weft_addr_is_loopback(dst)) {
    weft_count(&weft_outbound_counters, WEFT_PASS_LOOPBACK);
    return 0;
  }
  struct weft_exclude_port_key pk = {.netns_cookie = netns, .port = port};
  if (bpf_map_lookup_elem(&weft_exclude_ports, &pk)) {
    weft_count(&weft_outbound_counters, WEFT_PASS_EXCLUDED_PORT);
    return 0;
  }
  struct weft_exclude_cidr_key ck = {.prefixlen = WEFT_CIDR_PREFIX_BASE + 128,
                                     .netns_cookie = netns};
  __builtin_memcpy(ck.addr, dst, 16);
  if (bpf_map_lookup_elem(&weft_exclude_cidrs, &ck)) {
    weft_count(&weft_outbound_counters, WEFT_PASS_EXCLUDED_CIDR);
    return 0;
  }
  if (weft_connect_denied(netns, dst, port, set_errno)) {
    *verdict = WEFT_CONNECT_REFUSE;
    return 0;
  }

  struct weft_orig_dst orig = {
      .port = port, .family = (__u16)ctx->user_family, .netns_cookie = netns};
  __builtin_memcpy(orig.addr, dst, 16);
  void* pod_records = bpf_map_lookup_elem(&weft_orig_dst, &netns);
  if (!pod_records) {
    weft_count(&weft_outbound_counters, WEFT_DROP_NO_POD_MAP);
    *verdict = WEFT_CONNECT_REFUSE;
    return 0;
  }
  __u64 cookie = bpf_get_socket_cookie(ctx);
  if (bpf_map_update_elem(pod_records, &cookie, &orig, BPF_ANY)) {
    /* Without the record ztunnel cannot know where to go: refuse rather than leak. */
    weft_count(&weft_outbound_counters, WEFT_DROP_ORIG_DST_FULL);
    *verdict = WEFT_CONNECT_REFUSE;
    return 0;
  }
  weft_count(&weft_outbound_counters, WEFT_REDIRECT_OUTBOUND);
  return 1;
}

static __always_inline int weft_connect4(struct bpf_sock_addr* ctx, const int set_errno) {
  __u8 dst[16];
  weft_addr_from_v4(dst, ctx->user_ip4);
  int verdict;
  if (weft_should_redirect(ctx, dst, (__u16)ctx->user_port, &verdict, set_errno)) {
    ctx->user_ip4 = bpf_htonl(0x7f000001);
    ctx->user_port = bpf_htons(WEFT_PORT_OUTBOUND);
  }
  return verdict;
}

static __always_inline int weft_connect6(struct bpf_sock_addr* ctx, const int set_errno) {
  __u8 dst[16];
  __u32 ip6[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
  weft_addr_from_v6(dst, ip6);
  int verdict;
  if (weft_should_redirect(ctx, dst, (__u16)ctx->user_port, &verdict, set_errno)) {
    /* A mapped destination stays mapped (::ffff:127.0.0.1) so it reaches the IPv4 listener of
     * a dual-stack socket; a real IPv6 destination goes to ::1. */
    int mapped = weft_addr_is_v4mapped(dst);
    ctx->user_ip6[0] = 0;
    ctx->user_ip6[1] = 0;
    ctx->user_ip6[2] = mapped ? bpf_htonl(0x0000ffff) : 0;
    ctx->user_ip6[3] = mapped ? bpf_htonl(0x7f000001) : bpf_htonl(1);
    ctx->user_port = bpf_htons(WEFT_PORT_OUTBOUND);
  }
  return verdict;
}

#endif /* WEFT_BPF_LIB_CONNECT_H */
