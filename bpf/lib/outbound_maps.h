/* Maps of the outbound connect4/connect6 programs (layouts in shared/capture.h). */
#ifndef WEFT_BPF_LIB_OUTBOUND_MAPS_H
#define WEFT_BPF_LIB_OUTBOUND_MAPS_H

#include "lib/common.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, __u64); /* netns cookie */
  __type(value, struct weft_enrolled_pod);
} weft_enrolled SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16384);
  __type(key, struct weft_exclude_port_key);
  __type(value, __u8);
} weft_exclude_ports SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, 16384);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct weft_exclude_cidr_key);
  __type(value, __u8);
} weft_exclude_cidrs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, __u64); /* socket cookie */
  __type(value, struct weft_orig_dst);
} weft_orig_dst SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, struct weft_peer_key);
  __type(value, struct weft_orig_dst);
} weft_orig_dst_by_peer SEC(".maps");

WEFT_COUNTER_MAP(weft_outbound_counters);

#endif /* WEFT_BPF_LIB_OUTBOUND_MAPS_H */
