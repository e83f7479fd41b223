/* Maps of the inbound sk_lookup program (layouts in shared/capture.h). */
#ifndef WEFT_BPF_LIB_INBOUND_MAPS_H
#define WEFT_BPF_LIB_INBOUND_MAPS_H

#include "lib/common.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, struct weft_addr_key);
  __type(value, struct weft_pod_slot);
} weft_pod_addrs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, 2048);
  __type(key, struct weft_listener_key);
  __type(value, __u64);
} weft_listeners SEC(".maps");

WEFT_COUNTER_MAP(weft_inbound_counters);

#endif /* WEFT_BPF_LIB_INBOUND_MAPS_H */
