// `weftctl tap` (issue 14): a live stream of the requests ztunnel's HTTP paths see, like
// `linkerd viz tap`. A bounded ring of the latest requests, read over the loopback admin endpoint
// (GET /tap?since=SEQ&max=N). It can never slow the data path: a worker builds an event only while
// a reader asked within the last kActiveFor, and publishing never waits (a ring another thread
// holds drops the event and counts it); a reader that falls more than the ring's capacity behind
// is told how many it missed. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace weft::ztunnel {

struct TapEvent {
  uint64_t seq = 0;                        // set by Publish: 1, 2, ...
  int64_t unix_ms = 0;                     // when the request arrived
  std::string reporter;                    // "destination"
  std::string src_workload, dst_workload;  // "ns/name", "" when unknown (not in the mesh)
  std::string src_identity, dst_identity;  // SPIFFE ids, "" for plaintext callers
  std::string src_addr, dst_addr;          // ip:port
  std::string method, authority, path;
  int status = 0;  // 0: no response
  double latency_ms = 0;
  uint64_t request_bytes = 0, response_bytes = 0;
  bool local_reply = false;  // answered by ztunnel (a denial, a refused request)
  std::string trace_id;      // W3C traceparent or B3 trace id, "" when the request has none
};

class TapBuffer {
 public:
  static constexpr std::chrono::seconds kActiveFor{10};
  explicit TapBuffer(size_t capacity = 4096) : capacity_(capacity) {}

  // True while a reader asked within kActiveFor: only then is it worth building events.
  bool Active() const;
  // Never blocks: if another thread holds the ring, the event is dropped and counted.
  void Publish(TapEvent ev);

  struct Page {
    uint64_t next = 0;     // pass as `since` next time
    uint64_t dropped = 0;  // events lost since the buffer started (contention)
    uint64_t missed = 0;   // events after `since` already overwritten (the reader was too slow)
    std::vector<TapEvent> events;
  };
  // Events with seq > since, oldest first, at most `max`. Marks a reader as active.
  Page Read(uint64_t since, size_t max);
  // The same as JSON: {"next":N,"dropped":N,"missed":N,"events":[{...}, ...]}.
  std::string ReadJson(uint64_t since, size_t max);

 private:
  const size_t capacity_;
  std::mutex mu_;
  std::deque<TapEvent> ring_;
  uint64_t last_seq_ = 0;
  std::atomic<uint64_t> dropped_{0};
  std::atomic<int64_t> last_read_ms_{-1'000'000'000};
};

}  // namespace weft::ztunnel
