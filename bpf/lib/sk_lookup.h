/* Inbound steering: SYNs for an enrolled pod's address go to ztunnel's listener in that pod.
 * A missing listener drops (fail closed), so plaintext never reaches the app unmeshed. */
#ifndef WEFT_BPF_LIB_SK_LOOKUP_H
#define WEFT_BPF_LIB_SK_LOOKUP_H

#include "lib/common.h"
#include "lib/inbound_maps.h"

/* Fields read straight from the context: the verifier refuses loads through a ctx pointer
 * the compiler has offset, which copying into a stack key can produce. */
static __always_inline int weft_lookup_is_self(struct bpf_sk_lookup* ctx) {
  if (ctx->family == AF_INET) return ctx->remote_ip4 == ctx->local_ip4;
  return ctx->remote_ip6[0] == ctx->local_ip6[0] && ctx->remote_ip6[1] == ctx->local_ip6[1] &&
         ctx->remote_ip6[2] == ctx->local_ip6[2] && ctx->remote_ip6[3] == ctx->local_ip6[3];
}

static __always_inline int weft_steer_inbound(struct bpf_sk_lookup* ctx) {
  if (ctx->protocol != IPPROTO_TCP) {
    weft_count(&weft_inbound_counters, WEFT_PASS_NOT_TCP);
    return SK_PASS;
  }
  struct weft_addr_key key = {};
  if (ctx->family == AF_INET) {
    weft_addr_from_v4(key.addr, ctx->local_ip4);
  } else {
    __u32 ip6[4] = {ctx->local_ip6[0], ctx->local_ip6[1], ctx->local_ip6[2], ctx->local_ip6[3]};
    weft_addr_from_v6(key.addr, ip6);
  }
  if (weft_addr_is_loopback(key.addr)) {
    weft_count(&weft_inbound_counters, WEFT_PASS_LOOPBACK);
    return SK_PASS;
  }
  /* From the pod's own address to itself: ztunnel's last leg to the app (it connects from
   * inside the pod, so the kernel picks the destination address as the source), or the app
   * talking to itself. Neither is captured; remote traffic cannot carry that source and
   * complete a handshake. */
  if (weft_lookup_is_self(ctx)) {
    weft_count(&weft_inbound_counters, WEFT_PASS_SELF);
    return SK_PASS;
  }
  /* The program runs in an enrolled pod's netns only, so every local address is the pod's:
   * one ztunnel was not told about (IPv6 link-local, a secondary address) would bypass the
   * mesh. Fail closed. */
  struct weft_pod_slot* pod = bpf_map_lookup_elem(&weft_pod_addrs, &key);
  if (!pod) {
    weft_count(&weft_inbound_counters, WEFT_DROP_NOT_POD_ADDR);
    return SK_DROP;
  }

  int hbone = ctx->local_port == WEFT_PORT_HBONE;
  struct weft_listener_key lk = {
      .slot = pod->slot,
      .kind = (hbone ? WEFT_LISTENER_HBONE : WEFT_LISTENER_INBOUND) |
              (ctx->family == AF_INET6 ? WEFT_LISTENER_V6 : 0),
  };
  struct bpf_sock* sk = bpf_map_lookup_elem(&weft_listeners, &lk);
  if (!sk) {
    weft_count(&weft_inbound_counters,
               hbone ? WEFT_DROP_NO_HBONE_SOCKET : WEFT_DROP_NO_INBOUND_SOCKET);
    return SK_DROP;
  }
  long err = bpf_sk_assign(ctx, sk, 0);
  bpf_sk_release(sk);
  if (err) {
    weft_count(&weft_inbound_counters, WEFT_DROP_ASSIGN_FAILED);
    return SK_DROP;
  }
  weft_count(&weft_inbound_counters, hbone ? WEFT_REDIRECT_HBONE : WEFT_REDIRECT_INBOUND);
  return SK_PASS;
}

#endif /* WEFT_BPF_LIB_SK_LOOKUP_H */
