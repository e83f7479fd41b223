/* Maps of the outbound connect4/connect6 programs (layouts in shared/capture.h). */
#ifndef WEFT_BPF_LIB_OUTBOUND_MAPS_H
#define WEFT_BPF_LIB_OUTBOUND_MAPS_H

#include "lib/common.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, WEFT_MAX_PODS_PER_NODE);
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

/* Per pod (see WEFT_ORIG_DST_PER_POD): the outer maps are keyed by the pod's netns cookie,
 * the inner maps are created by the agent when it enrols the pod. */
/* Sizes, not __type: clang emits a struct reached only through an inner map definition as a
 * forward declaration, which libbpf cannot size. */
struct weft_orig_dst_pod {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, WEFT_ORIG_DST_PER_POD);
  __uint(key_size, sizeof(__u64)); /* socket cookie */
  __uint(value_size, sizeof(struct weft_orig_dst));
};

struct weft_orig_dst_by_peer_pod {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, WEFT_ORIG_DST_PER_POD);
  __uint(key_size, sizeof(struct weft_peer_key));
  __uint(value_size, sizeof(struct weft_orig_dst));
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
  __uint(max_entries, WEFT_MAX_PODS_PER_NODE);
  __type(key, __u64); /* netns cookie */
  __array(values, struct weft_orig_dst_pod);
} weft_orig_dst SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
  __uint(max_entries, WEFT_MAX_PODS_PER_NODE);
  __type(key, __u64); /* netns cookie */
  __array(values, struct weft_orig_dst_by_peer_pod);
} weft_orig_dst_by_peer SEC(".maps");

WEFT_COUNTER_MAP(weft_outbound_counters);

/* Deny at connect (shared/capture.h): filled by ztunnel, read by connect4/6. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, WEFT_CONNECT_DENY_ENTRIES);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct weft_deny_key);
  __type(value, struct weft_deny_value);
} weft_connect_deny SEC(".maps");

/* Denied connects per label_id of weft_connect_deny's values. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, WEFT_DENY_LABELS);
  __type(key, __u32);
  __type(value, __u64);
} weft_deny_counts SEC(".maps");

#endif /* WEFT_BPF_LIB_OUTBOUND_MAPS_H */
