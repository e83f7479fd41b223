/* Entry: outbound capture hooks, attached to the cgroup that holds the pods. */
#include "lib/connect.h"
#include "lib/local_legs.h"
#include "lib/sockops.h"

SEC("cgroup/connect4")
int weft_connect4_prog(struct bpf_sock_addr* ctx) {
  return weft_connect4(ctx, 1);
}

SEC("cgroup/connect6")
int weft_connect6_prog(struct bpf_sock_addr* ctx) {
  return weft_connect6(ctx, 1);
}

/* The same without bpf_set_retval (kernels before 5.18): a denied connect fails with EPERM.
 * The loader keeps only one pair (OutboundCapture: kernel probe). */
SEC("cgroup/connect4")
int weft_connect4_eperm_prog(struct bpf_sock_addr* ctx) {
  return weft_connect4(ctx, 0);
}

SEC("cgroup/connect6")
int weft_connect6_eperm_prog(struct bpf_sock_addr* ctx) {
  return weft_connect6(ctx, 0);
}

SEC("sockops")
int weft_sockops_prog(struct bpf_sock_ops* skops) {
  weft_record_peer(skops);
  weft_local_leg_join(skops);
  return 1;
}

SEC("sk_msg")
int weft_local_leg_prog(struct sk_msg_md* msg) {
  return weft_local_leg_verdict(msg);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
