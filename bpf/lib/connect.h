/* Outbound capture: connect() from an enrolled pod's netns is rewritten to ztunnel's
 * pod-local outbound listener; the original destination is saved under the socket cookie. */
#ifndef WEFT_BPF_LIB_CONNECT_H
#define WEFT_BPF_LIB_CONNECT_H

#include "lib/common.h"
#include "lib/outbound_maps.h"

#define WEFT_CONNECT_ALLOW 1
#define WEFT_CONNECT_REFUSE 0 /* connect() fails with EPERM */

/* Decides and, when redirecting, records. `dst` is the destination as mapped/plain IPv6,
 * `port` in network order. Returns 1 when the caller must rewrite the destination. */
static __always_inline int weft_should_redirect(struct bpf_sock_addr* ctx, const __u8 dst[16],
                                                __u16 port, int* verdict) {
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

static __always_inline int weft_connect4(struct bpf_sock_addr* ctx) {
  __u8 dst[16];
  weft_addr_from_v4(dst, ctx->user_ip4);
  int verdict;
  if (weft_should_redirect(ctx, dst, (__u16)ctx->user_port, &verdict)) {
    ctx->user_ip4 = bpf_htonl(0x7f000001);
    ctx->user_port = bpf_htons(WEFT_PORT_OUTBOUND);
  }
  return verdict;
}

static __always_inline int weft_connect6(struct bpf_sock_addr* ctx) {
  __u8 dst[16];
  __u32 ip6[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
  weft_addr_from_v6(dst, ip6);
  int verdict;
  if (weft_should_redirect(ctx, dst, (__u16)ctx->user_port, &verdict)) {
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
