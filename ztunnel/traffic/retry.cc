#include "ztunnel/traffic/retry.h"

#include <algorithm>

namespace weft::ztunnel::traffic {

RetrySpec EffectiveRetry(const config::HttpRouteRule* rule, const config::TrafficPolicy* policy) {
  RetrySpec spec;
  const config::RetryPolicy* pr =
      policy != nullptr && policy->retries ? &*policy->retries : nullptr;
  if (rule != nullptr && rule->retry) {
    spec.attempts = rule->retry->attempts;
    spec.retry_on = config::kRetryOnConnectFailure | config::kRetryOnReset |
                    config::kRetryOnRetriableStatusCodes;
    spec.status_codes = rule->retry->codes;
    if (rule->retry->backoff_ms != 0) spec.backoff_base_ms = rule->retry->backoff_ms;
  } else if (pr != nullptr) {
    spec.attempts = pr->attempts;
    spec.retry_on = pr->retry_on;
    spec.status_codes = pr->retriable_status_codes;
  }
  spec.backoff_max_ms = spec.backoff_base_ms * 10;
  if (rule != nullptr && rule->backend_request_timeout_ms != 0) {
    spec.per_try_timeout_ms = rule->backend_request_timeout_ms;
  } else if (pr != nullptr) {
    spec.per_try_timeout_ms = pr->per_try_timeout_ms;
  }
  return spec;
}

bool IsRetriable(const RetrySpec& spec, const AttemptResult& r) {
  using K = AttemptResult::Kind;
  const uint32_t on = spec.retry_on;
  switch (r.kind) {
    case K::kConnectFailure:
      return (on & (config::kRetryOn5xx | config::kRetryOnGatewayError | config::kRetryOnReset |
                    config::kRetryOnConnectFailure)) != 0;
    case K::kReset:
    case K::kTimeout:
      return (on & (config::kRetryOn5xx | config::kRetryOnGatewayError | config::kRetryOnReset)) !=
             0;
    case K::kResponse:
      break;
  }
  const uint16_t s = r.status;
  if ((on & config::kRetryOn5xx) && s >= 500 && s <= 599) return true;
  if ((on & config::kRetryOnGatewayError) && (s == 502 || s == 503 || s == 504)) return true;
  if ((on & config::kRetryOnRetriableStatusCodes) &&
      std::find(spec.status_codes.begin(), spec.status_codes.end(), s) != spec.status_codes.end()) {
    return true;
  }
  switch (r.grpc_status) {
    case 1:
      return (on & config::kRetryOnGrpcCancelled) != 0;
    case 4:
      return (on & config::kRetryOnGrpcDeadlineExceeded) != 0;
    case 8:
      return (on & config::kRetryOnGrpcResourceExhausted) != 0;
    case 13:
      return (on & config::kRetryOnGrpcInternal) != 0;
    case 14:
      return (on & config::kRetryOnGrpcUnavailable) != 0;
    default:
      return false;
  }
}

uint64_t BackoffMs(const RetrySpec& spec, uint32_t retry, uint64_t draw) {
  if (spec.backoff_base_ms == 0) return 0;
  // (2^retry - 1) * base, stopped growing once past the max (no overflow for any `retry`).
  uint64_t ceiling = spec.backoff_base_ms;
  for (uint32_t i = 1; i < retry && ceiling <= spec.backoff_max_ms; ++i) {
    ceiling = ceiling * 2 + spec.backoff_base_ms;
  }
  return std::min(draw % ceiling, spec.backoff_max_ms);
}

RetryBudget::RetryBudget(const config::RetryBudget& cfg)
    : cfg_(cfg),
      slot_ns_(std::max<int64_t>(1, static_cast<int64_t>(cfg.ttl_ms) * 1000000 / kSlots)) {}

RetryBudget::Slot& RetryBudget::Current(TimePoint now) {
  int64_t epoch = now.time_since_epoch().count() / slot_ns_;
  Slot& s = slots_[epoch % kSlots];
  if (s.epoch != epoch) s = Slot{epoch, 0, 0};
  return s;
}

void RetryBudget::Deposit(TimePoint now) {
  std::lock_guard<std::mutex> lock(mu_);
  Current(now).requests++;
  stats_.deposits++;
}

bool RetryBudget::TryWithdraw(TimePoint now) {
  std::lock_guard<std::mutex> lock(mu_);
  Slot& cur = Current(now);
  uint64_t requests = 0, retries = 0;
  for (const Slot& s : slots_) {
    if (s.epoch >= 0 && s.epoch > cur.epoch - kSlots) {
      requests += s.requests;
      retries += s.retries;
    }
  }
  double allowed = cfg_.min_retries_per_second * (static_cast<double>(cfg_.ttl_ms) / 1000) +
                   cfg_.retry_ratio * static_cast<double>(requests);
  if (static_cast<double>(retries) + 1 > allowed) {
    stats_.exhausted++;
    return false;
  }
  cur.retries++;
  stats_.withdrawals++;
  return true;
}

RetryBudget::Stats RetryBudget::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

RetryState::RetryState(RetrySpec spec, RetryBudget* budget, CircuitBreaker* breaker, TimePoint now)
    : spec_(std::move(spec)), budget_(budget), breaker_(breaker) {
  if (budget_ != nullptr) budget_->Deposit(now);
}

RetryState::Decision RetryState::OnAttempt(const AttemptResult& result, TimePoint now,
                                           uint64_t draw) {
  using A = Decision::Action;
  retry_slot_.reset();  // the retry that produced `result` (if any) is over
  if (!IsRetriable(spec_, result)) return {A::kDone, 0};
  if (retries_ >= spec_.attempts) return {A::kLimitExceeded, 0};
  if (budget_ != nullptr && !budget_->TryWithdraw(now)) return {A::kBudgetExhausted, 0};
  if (breaker_ != nullptr) {
    retry_slot_ = breaker_->TryRetry();
    if (!retry_slot_) return {A::kOverflow, 0};
  }
  ++retries_;
  return {A::kRetry, BackoffMs(spec_, retries_, draw)};
}

}  // namespace weft::ztunnel::traffic
