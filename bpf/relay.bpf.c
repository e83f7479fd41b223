/* Entry: the same-node relay (docs/fastpath.md). An sk_skb stream verdict attached to
 * weft_relay_srcs: every skb that arrives on a socket of that map is sent out of its peer socket
 * (weft_relay_tgts, no programs) by the kernel, with no wake-up of ztunnel. The program counts
 * the bytes (the Istio byte metrics) and, when the peer falls more than `cap` bytes behind (its
 * application reads slowly), tells ztunnel through a ring buffer. ztunnel then pauses the socket
 * with weft_relay_ctl (never by taking it out of weft_relay_srcs, which can lose an skb: see
 * docs/fastpath.md): the program leaves its bytes on the socket, whose TCP receive window then
 * pushes back on the sender. */
#include <linux/bpf.h>
/* (separate block so include sorting keeps the order) */
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "shared/relay.h"

struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, WEFT_RELAY_MAX_SOCKS);
  __type(key, __u64);
  __type(value, __u64);
} weft_relay_srcs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, WEFT_RELAY_MAX_SOCKS);
  __type(key, __u64);
  __type(value, __u64);
} weft_relay_tgts SEC(".maps");

/* Not preallocated: a preallocated hash of this size would charge ~6 MiB of kernel memory to
 * every ztunnel worker whether or not it relays anything. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(max_entries, WEFT_RELAY_MAX_SOCKS);
  __type(key, __u64);
  __type(value, struct weft_relay_side);
} weft_relay_side SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(max_entries, WEFT_RELAY_MAX_SOCKS);
  __type(key, __u64);
  __type(value, struct weft_relay_ctl);
} weft_relay_ctl SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 64 * 1024);
} weft_relay_evts SEC(".maps");

/* The one field of the kernel's struct tcp_sock the program reads, relocated by libbpf from the
 * kernel's BTF (CO-RE). */
struct tcp_sock {
  __u64 bytes_acked;
} __attribute__((preserve_access_index));

/* Bytes the peer has sent and seen acknowledged (its application's stack took them). */
static __always_inline __u64 weft_peer_acked(__u64 peer) {
  struct bpf_sock* sk = bpf_map_lookup_elem(&weft_relay_tgts, &peer);
  __u64 acked = 0;
  if (!sk) return 0;
  struct tcp_sock* tp = bpf_skc_to_tcp_sock(sk);
  if (tp) acked = BPF_CORE_READ(tp, bytes_acked);
  bpf_sk_release(sk);
  return acked;
}

/* The kernel hands the verdict whole skbs off the receive queue (tcp_read_skb), without the
 * check tcp_recvmsg makes against the bytes already read: an skb that TCP queued with a
 * sequence number before its rcv_nxt (a retransmission partly overlapping what arrived, e.g. a
 * spurious retransmission merged with the next segment in the socket's backlog) reaches the
 * program whole. Its head repeats bytes the program already took. Cut that head off (the
 * kernel then also counts only the rest as read), so every byte goes on exactly once. False:
 * it could not be cut; the caller drops the skb and ztunnel resets the flow. */
/* Set by ztunnel before loading: 1 on kernels whose verdict reads whole skbs (tcp_read_skb,
 * 6.0 on). Older ones read through tcp_read_sock, which skips the bytes already read itself
 * (and hands over a clone whose sequence number no longer matches its first byte). */
const volatile __u32 weft_cut_repeats = 1;

static __always_inline int weft_cut_repeat(struct __sk_buff* skb, struct weft_relay_side* s) {
  if (!weft_cut_repeats) return 1;
  __u32 seq = 0;
  /* TCP_SKB_CB(skb)->seq. The context is the kernel's sk_buff (root may read it). */
  if (bpf_probe_read_kernel(&seq, sizeof seq, (void*)skb + WEFT_SKB_CB_OFFSET) != 0) return 0;
  __u32 len = skb->len;
  if (s->seq_known) {
    __s32 repeat = (__s32)(s->next_seq - seq);
    if (repeat >= (__s32)len) return 0; /* TCP never queues an skb with nothing new */
    if (repeat > 0) {
      __u32 left = (__u32)repeat;
      if (left > WEFT_RELAY_CUT_STEP * WEFT_RELAY_CUT_STEPS) return 0;
      /* One copy of the head into the linear part, then cuts that only move the start. */
      if (bpf_skb_pull_data(skb, left) != 0) return 0;
      for (int i = 0; i < WEFT_RELAY_CUT_STEPS && left > 0; i++) {
        __u32 n = left < WEFT_RELAY_CUT_STEP ? left : WEFT_RELAY_CUT_STEP;
        if (bpf_skb_adjust_room(skb, -(__s32)n, 0, 0) != 0) return 0;
        left -= n;
      }
      if (left != 0) return 0;
      s->overlaps++;
      s->overlap_len += (__u32)repeat;
      seq += (__u32)repeat;
      len -= (__u32)repeat;
    }
  }
  s->next_seq = seq + len;
  s->seq_known = 1;
  return 1;
}

SEC("sk_skb/stream_verdict")
int weft_relay_verdict(struct __sk_buff* skb) {
  __u64 cookie = bpf_get_socket_cookie(skb);
  struct weft_relay_side* s = bpf_map_lookup_elem(&weft_relay_side, &cookie);
  /* Never happens (ztunnel writes the side before the socket): keep the bytes on the socket,
   * where ztunnel reads them. */
  if (!s) return SK_PASS;
  /* An skb without payload (a bare FIN) must not be redirected: the peer's work queue treats a
   * send of 0 bytes as a broken pipe and stops sending. The FIN itself is TCP state, which
   * ztunnel passes on (shutdown) once the bytes before it are out. */
  if (skb->len == 0) return SK_DROP;
  /* Verdicts of one socket run one at a time (socket lock), so the side's sequence state has
   * one writer. Once broken, nothing more goes on: ztunnel resets the flow. */
  if (s->broken || !weft_cut_repeat(skb, s)) {
    if (!s->broken) {
      s->broken = 1;
      struct weft_relay_event e = {.cookie = cookie};
      bpf_ringbuf_output(&weft_relay_evts, &e, sizeof e, 0);
    }
    return SK_DROP;
  }
  /* Paused, or ztunnel still forwarding what was passed before: keep the bytes on the socket
   * (its own queue, read by ztunnel's recv), in order behind what was redirected and passed
   * before. The verdicts of one socket run one at a time (under its socket lock), so `passed`
   * has one writer. ztunnel updates the ctl element as a whole (a hash update replaces it), so
   * both fields come from one of its writes. */
  struct weft_relay_ctl* c = bpf_map_lookup_elem(&weft_relay_ctl, &cookie);
  if (c && (c->paused || c->forwarded != s->passed)) {
    __sync_fetch_and_add(&s->passed, skb->len);
    return SK_PASS;
  }
  __u32 armed = (c ? c->gen : 0) + 1;
  __u64 total = __sync_fetch_and_add(&s->redirected, skb->len) + skb->len;
  if (s->over != armed && total - weft_peer_acked(s->peer) > s->cap) {
    s->over = armed;
    struct weft_relay_event e = {.cookie = cookie};
    bpf_ringbuf_output(&weft_relay_evts, &e, sizeof e, 0);
  }
  long verdict = bpf_sk_redirect_hash(skb, &weft_relay_tgts, &s->peer, 0);
  if (verdict != SK_PASS) __sync_fetch_and_add(&s->no_peer, 1);
  return (int)verdict;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
