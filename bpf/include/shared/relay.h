/* The same-node relay's map layouts (bpf/relay.bpf.c), shared with C++ (bpf/relay.h). */
#ifndef WEFT_BPF_SHARED_RELAY_H
#define WEFT_BPF_SHARED_RELAY_H

#include <linux/types.h>

/* Sockets one relay object can hold (two per flow). */
#define WEFT_RELAY_MAX_SOCKS 65536

/* weft_relay_side value, keyed by the socket's cookie: where bytes arriving on that socket go
 * and how many went. Written by ztunnel when it joins a pair (before the socket enters
 * weft_relay_srcs), then only by the verdict program: ztunnel's own state is weft_relay_ctl. */
struct weft_relay_side {
  __u64 peer;       /* cookie of the socket the bytes are sent out of */
  __u64 redirected; /* payload bytes redirected to the peer so far */
  __u64 cap;        /* redirected minus the peer's acknowledged bytes above this: tell ztunnel */
  __u64 passed;     /* payload bytes left on the socket itself (paused or catching up) */
  __u32 over;       /* 1 + the ctl generation in which the cap event was posted (0: never) */
  __u32 no_peer;    /* redirects that found no peer socket (the flow is being torn down) */
  /* TCP sequence number just after the last payload byte the program took (valid once
   * seq_known): an skb that starts before it repeats bytes already taken (docs/fastpath.md,
   * "An skb that repeats bytes"). */
  __u32 next_seq;
  __u32 seq_known;
  __u64 overlaps;    /* skbs that repeated bytes already taken; the repeat was cut off */
  __u64 overlap_len; /* bytes cut off those skbs */
  __u32 broken;      /* 1: an skb repeated bytes the program could not cut off (dropped) */
  __u32 pad;
};

/* weft_relay_ctl value, keyed by the socket's cookie; written only by ztunnel, read by the
 * verdict program (absent: relay). While `paused`, or while ztunnel has not yet forwarded every
 * byte the program passed (`forwarded` != the side's `passed`), arriving bytes stay on the
 * socket (SK_PASS), in order behind everything redirected before. */
struct weft_relay_ctl {
  __u64 forwarded; /* passed bytes ztunnel has read from the socket and written to the peer */
  __u32 paused;    /* 1: keep every arriving byte on the socket */
  __u32 gen;       /* incremented by every unpause: re-arms the cap event */
};

/* The kernel's struct tcp_skb_cb (TCP_SKB_CB, skb->cb) starts with the segment's sequence
 * number, and skb->cb sits at this offset of struct sk_buff on 64-bit kernels (5.x to 6.18).
 * SelfTestRelay checks it on the running kernel: the sequence numbers read there must step by
 * exactly each skb's length. */
#define WEFT_SKB_CB_OFFSET 40
/* The most bytes one skb's repeated head can be cut by (sk_skb_adjust_room cuts at most
 * 0xfff per call). */
#define WEFT_RELAY_CUT_STEP 4095
#define WEFT_RELAY_CUT_STEPS 64

/* weft_relay_evts ring buffer record: the socket whose side passed its cap, or whose side is
 * broken (weft_relay_side.broken). */
struct weft_relay_event {
  __u64 cookie;
};

#endif
