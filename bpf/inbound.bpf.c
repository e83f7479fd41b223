/* Entry: per-netns sk_lookup program of an enrolled pod (attached by the agent). */
#include "lib/sk_lookup.h"

SEC("sk_lookup")
int weft_sk_lookup(struct bpf_sk_lookup* ctx) {
  return weft_steer_inbound(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
