/* Files a redirected connection's original destination under the app socket's local address
 * and port once connect() has chosen them, so ztunnel can find it from the accepted socket
 * (its peer) without knowing the app socket's cookie. */
#ifndef WEFT_BPF_LIB_SOCKOPS_H
#define WEFT_BPF_LIB_SOCKOPS_H

#include "lib/common.h"
#include "lib/outbound_maps.h"

static __always_inline void weft_record_peer(struct bpf_sock_ops* skops) {
  /* TCP_CONNECT_CB runs in tcp_connect(), after the source port was hashed. */
  if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB) return;
  __u64 netns = bpf_get_netns_cookie(skops);
  void* pod_records = bpf_map_lookup_elem(&weft_orig_dst, &netns);
  if (!pod_records) return; /* not an enrolled pod */
  __u64 cookie = bpf_get_socket_cookie(skops);
  struct weft_orig_dst* orig = bpf_map_lookup_elem(pod_records, &cookie);
  if (!orig) return; /* not redirected by connect4/6 */
  struct weft_peer_key key = {.netns_cookie = orig->netns_cookie,
                              .port = bpf_htons((__u16)skops->local_port)};
  if (skops->family == AF_INET) {
    weft_addr_from_v4(key.addr, skops->local_ip4);
  } else {
    __u32 ip6[4] = {skops->local_ip6[0], skops->local_ip6[1], skops->local_ip6[2],
                    skops->local_ip6[3]};
    weft_addr_from_v6(key.addr, ip6);
  }
  struct weft_orig_dst copy = *orig;
  void* pod_by_peer = bpf_map_lookup_elem(&weft_orig_dst_by_peer, &netns);
  if (!pod_by_peer || bpf_map_update_elem(pod_by_peer, &key, &copy, BPF_ANY)) {
    weft_count(&weft_outbound_counters, WEFT_DROP_PEER_RECORD_FAILED);
    return;
  }
  weft_count(&weft_outbound_counters, WEFT_RECORD_PEER);
}

#endif /* WEFT_BPF_LIB_SOCKOPS_H */
