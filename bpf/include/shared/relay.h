/* The same-node relay's map layouts (bpf/relay.bpf.c), shared with C++ (bpf/relay.h). */
#ifndef WEFT_BPF_SHARED_RELAY_H
#define WEFT_BPF_SHARED_RELAY_H

#include <linux/types.h>

/* Sockets one relay object can hold (two per flow). */
#define WEFT_RELAY_MAX_SOCKS 65536

/* weft_relay_side value, keyed by the socket's cookie: where bytes arriving on that socket go
 * and how many went. Written by ztunnel when it joins a pair; `redirected` and `over` by the
 * verdict program. */
struct weft_relay_side {
  __u64 peer;       /* cookie of the socket the bytes are sent out of */
  __u64 redirected; /* payload bytes redirected to the peer so far */
  __u64 cap;        /* redirected minus the peer's acknowledged bytes above this: tell ztunnel */
  __u32 over;       /* 1 once the cap was passed; cleared by ztunnel when it resumes */
  __u32 no_peer;    /* redirects that found no peer socket (the flow is being torn down) */
};

/* weft_relay_evts ring buffer record: the socket whose side passed its cap. */
struct weft_relay_event {
  __u64 cookie;
};

#endif
