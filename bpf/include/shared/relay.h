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

/* weft_relay_evts ring buffer record: the socket whose side passed its cap. */
struct weft_relay_event {
  __u64 cookie;
};

#endif
