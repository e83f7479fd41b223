/* Test only (bpf/relay_test.cc, in the test's own network namespace): a tc egress program on
 * loopback that delivers a share of the TCP segments carrying payload twice (a clone to the
 * interface's ingress), as a spurious retransmission would. The receiving socket sees the copy
 * as old data, or, when it was merged with the next segment in the socket's backlog, as one
 * skb whose head repeats bytes already received: the case the relay must not pass on twice. */
#include <linux/bpf.h>
/* (separate block so include sorting keeps the order) */
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>

#ifndef WEFT_DUP_PER_MILLE
#define WEFT_DUP_PER_MILLE 0 /* the test sets it; tests/soak/relay_repeats.sh builds it in */
#endif
const volatile __u32 per_mille = WEFT_DUP_PER_MILLE; /* share of payload segments sent twice */

SEC("tc")
int weft_dup_segments(struct __sk_buff* skb) {
  if (skb->protocol != bpf_htons(ETH_P_IP)) return TC_ACT_OK;
  void* data = (void*)(long)skb->data;
  void* end = (void*)(long)skb->data_end;
  struct ethhdr* eth = data;
  if ((void*)(eth + 1) > end) return TC_ACT_OK;
  struct iphdr* ip = (void*)(eth + 1);
  if ((void*)(ip + 1) > end || ip->protocol != IPPROTO_TCP || ip->ihl != 5) return TC_ACT_OK;
  struct tcphdr* th = (void*)(ip + 1);
  if ((void*)(th + 1) > end) return TC_ACT_OK;
  int payload = (int)bpf_ntohs(ip->tot_len) - (int)sizeof(*ip) - th->doff * 4;
  if (payload <= 0 || bpf_get_prandom_u32() % 1000 >= per_mille) return TC_ACT_OK;
  bpf_clone_redirect(skb, skb->ifindex, BPF_F_INGRESS);
  return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
