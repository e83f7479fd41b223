/* Helpers shared by every Weft program: reason counters and address handling. */
#ifndef WEFT_BPF_LIB_COMMON_H
#define WEFT_BPF_LIB_COMMON_H

/* linux/bpf.h first: libbpf's helper headers use its types. */
#include <linux/bpf.h>
/* (separate block so include sorting keeps the order) */
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "shared/capture.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#ifndef IPPROTO_TCP
#define IPPROTO_TCP 6
#endif

/* Declares a per-CPU reason counter map named `name`. */
#define WEFT_COUNTER_MAP(name)               \
  struct {                                   \
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); \
    __uint(max_entries, WEFT_REASON_SLOTS);  \
    __type(key, __u32);                      \
    __type(value, __u64);                    \
  } name SEC(".maps")

static __always_inline void weft_count(void* counters, int reason) {
  __u32 idx = (__u32)(reason + WEFT_REASON_OFFSET);
  __u64* n = bpf_map_lookup_elem(counters, &idx);
  if (n) *n += 1; /* per-CPU slot: no atomics needed */
}

/* IPv4 (network order) as IPv4-mapped IPv6 into `out`. */
static __always_inline void weft_addr_from_v4(__u8 out[16], __u32 ip4) {
  __u32* w = (__u32*)out;
  w[0] = 0;
  w[1] = 0;
  w[2] = bpf_htonl(0x0000ffff);
  w[3] = ip4;
}

static __always_inline void weft_addr_from_v6(__u8 out[16], const __u32 ip6[4]) {
  __u32* w = (__u32*)out;
  w[0] = ip6[0];
  w[1] = ip6[1];
  w[2] = ip6[2];
  w[3] = ip6[3];
}

/* True for 127.0.0.0/8 (plain or mapped) and ::1. */
static __always_inline int weft_addr_is_loopback(const __u8 addr[16]) {
  const __u32* w = (const __u32*)addr;
  if (w[0] != 0 || w[1] != 0) return 0;
  if (w[2] == bpf_htonl(0x0000ffff)) return (bpf_ntohl(w[3]) >> 24) == 127;
  return w[2] == 0 && w[3] == bpf_htonl(1);
}

static __always_inline int weft_addr_is_v4mapped(const __u8 addr[16]) {
  const __u32* w = (const __u32*)addr;
  return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

#endif /* WEFT_BPF_LIB_COMMON_H */
