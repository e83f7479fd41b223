/* Entry: outbound capture hooks, attached to the cgroup that holds the pods. */
#include "lib/connect.h"
#include "lib/sockops.h"

SEC("cgroup/connect4")
int weft_connect4_prog(struct bpf_sock_addr* ctx) {
  return weft_connect4(ctx);
}

SEC("cgroup/connect6")
int weft_connect6_prog(struct bpf_sock_addr* ctx) {
  return weft_connect6(ctx);
}

SEC("sockops")
int weft_sockops_prog(struct bpf_sock_ops* skops) {
  weft_record_peer(skops);
  return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
