// Retries (issue 15): the effective retry configuration of a request (a route rule's `retry`,
// else its Service's TrafficPolicy `retries`), which attempt results are retriable, Envoy's
// back-off, Linkerd's retry budget, and the per-request state machine tying them together.
//
// RetrySpec / IsRetriable / BackoffMs are pure. RetryBudget is thread-safe (one per Service per
// ztunnel, shared by the workers). RetryState is one request's, used on one thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include "config/model/types.h"
#include "ztunnel/traffic/circuit_breaker.h"
#include "ztunnel/traffic/clock.h"

namespace weft::ztunnel::traffic {

// What to retry for one request.
struct RetrySpec {
  uint32_t attempts = 0;               // retries after the first try; 0: no retries
  uint64_t per_try_timeout_ms = 0;     // 0: none
  uint32_t retry_on = 0;               // config::RetryOn bits
  std::vector<uint16_t> status_codes;  // kRetryOnRetriableStatusCodes
  uint64_t backoff_base_ms = 25;       // Envoy's default base interval
  uint64_t backoff_max_ms = 250;       // 10x the base, as Envoy
};

// A route rule's `retry` (GEP-1731) replaces the policy's: its codes are retried, plus connection
// failures and resets (the GEP: retry on connection errors when a retry stanza is configured),
// with its attempts and back-off. Otherwise the TrafficPolicy's retries apply. The per-try
// timeout is the rule's timeouts.backendRequest when set, else the policy's perTryTimeout.
// Either pointer may be null; with neither, the spec retries nothing.
RetrySpec EffectiveRetry(const config::HttpRouteRule* rule, const config::TrafficPolicy* policy);

// How one attempt ended.
struct AttemptResult {
  enum class Kind {
    kResponse,        // `status` (and `grpc_status` from the headers or trailers, -1: none)
    kConnectFailure,  // could not connect to the endpoint
    kReset,           // connection reset / closed before a complete response
    kTimeout,         // the per-try timeout fired
  };
  Kind kind = Kind::kResponse;
  uint16_t status = 0;
  int32_t grpc_status = -1;
};

// Envoy's retryOn semantics: 5xx = any 5xx response, reset, connect failure or per-try timeout;
// gateway-error = 502/503/504, reset, connect failure or per-try timeout; reset = reset,
// connect failure or per-try timeout; connect-failure = connect failure only;
// retriable-status-codes = `status_codes`; gRPC names = that grpc-status (cancelled 1,
// deadline-exceeded 4, resource-exhausted 8, internal 13, unavailable 14).
bool IsRetriable(const RetrySpec& spec, const AttemptResult& result);

// Envoy's fully jittered exponential back-off before retry number `retry` (1-based): uniform in
// [0, (2^retry - 1) * base), capped at the max.
uint64_t BackoffMs(const RetrySpec& spec, uint32_t retry, uint64_t draw);

// Linkerd's retry budget: every original request deposits, every retry withdraws; within the
// last `ttl` a retry is allowed while retries < min_retries_per_second * ttl_seconds +
// retry_ratio * requests. So retries add at most `retry_ratio` extra load, plus a floor for
// quiet services. Counted in 10 slots of ttl/10 each.
class RetryBudget {
 public:
  explicit RetryBudget(const config::RetryBudget& cfg);

  void Deposit(TimePoint now);      // one original request
  bool TryWithdraw(TimePoint now);  // one retry: false when the budget is spent

  struct Stats {
    uint64_t deposits = 0, withdrawals = 0, exhausted = 0;
  };
  Stats stats() const;

 private:
  static constexpr int kSlots = 10;
  struct Slot {
    int64_t epoch = -1;  // which ttl/10 period this slot counts
    uint64_t requests = 0, retries = 0;
  };
  Slot& Current(TimePoint now);  // mu_ held

  const config::RetryBudget cfg_;
  const int64_t slot_ns_;
  mutable std::mutex mu_;
  Slot slots_[kSlots];
  Stats stats_;
};

// One request's retries: construct it when the request starts (it deposits into the budget),
// call OnAttempt after every attempt. The retry slot of the circuit breaker (maxRetries) is held
// from a kRetry decision until the next OnAttempt (or destruction).
class RetryState {
 public:
  RetryState(RetrySpec spec, RetryBudget* budget, CircuitBreaker* breaker, TimePoint now);

  struct Decision {
    enum class Action {
      kRetry,            // retry after `backoff_ms`
      kDone,             // not retriable (success or not in retryOn): return this result
      kLimitExceeded,    // retriable, attempts used up: return it with response flag "URX"
      kBudgetExhausted,  // retriable, the retry budget refused (counted): return it as is
      kOverflow,         // retriable, maxRetries outstanding (counted): return it as is
    };
    Action action = Action::kDone;
    uint64_t backoff_ms = 0;
  };
  Decision OnAttempt(const AttemptResult& result, TimePoint now, uint64_t draw);

  uint32_t retries() const { return retries_; }
  const RetrySpec& spec() const { return spec_; }

 private:
  RetrySpec spec_;
  RetryBudget* budget_;
  CircuitBreaker* breaker_;
  uint32_t retries_ = 0;
  std::optional<CircuitBreaker::Slot> retry_slot_;
};

}  // namespace weft::ztunnel::traffic
