// Retries: effective configuration, retryOn semantics, back-off bounds, the budget and the
// per-request state machine.
#include "ztunnel/traffic/retry.h"

#include <gtest/gtest.h>

namespace weft::ztunnel::traffic {
namespace {

using K = AttemptResult::Kind;
using A = RetryState::Decision::Action;

TimePoint At(int64_t ms) {
  return TimePoint{} + Millis(ms);
}

config::TrafficPolicy PolicyWithRetries(uint32_t attempts, uint32_t retry_on) {
  config::TrafficPolicy p;
  p.retries = config::RetryPolicy{attempts, 300, retry_on, {}, {}};
  return p;
}

TEST(RetryTest, RouteRetryOverridesThePolicy) {
  config::TrafficPolicy policy = PolicyWithRetries(5, config::kRetryOn5xx);
  config::HttpRouteRule rule;
  RetrySpec s = EffectiveRetry(&rule, &policy);
  EXPECT_EQ(s.attempts, 5u);
  EXPECT_EQ(s.retry_on, config::kRetryOn5xx);
  EXPECT_EQ(s.per_try_timeout_ms, 300u);
  EXPECT_EQ(s.backoff_base_ms, 25u);
  EXPECT_EQ(s.backoff_max_ms, 250u);

  rule.retry = config::HttpRouteRetry{{503}, 2, 100};
  rule.backend_request_timeout_ms = 50;
  s = EffectiveRetry(&rule, &policy);
  EXPECT_EQ(s.attempts, 2u);
  EXPECT_EQ(s.status_codes, (std::vector<uint16_t>{503}));
  EXPECT_EQ(s.per_try_timeout_ms, 50u);
  EXPECT_EQ(s.backoff_base_ms, 100u);
  EXPECT_EQ(s.backoff_max_ms, 1000u);
  EXPECT_TRUE(IsRetriable(s, {K::kResponse, 503}));
  EXPECT_FALSE(IsRetriable(s, {K::kResponse, 500}));  // the route's codes replace 5xx
  EXPECT_TRUE(IsRetriable(s, {K::kConnectFailure}));
  EXPECT_TRUE(IsRetriable(s, {K::kReset}));

  EXPECT_EQ(EffectiveRetry(nullptr, nullptr).attempts, 0u);
  EXPECT_EQ(EffectiveRetry(nullptr, &policy).attempts, 5u);
}

struct RetriableCase {
  uint32_t retry_on;
  AttemptResult result;
  bool want;
};

TEST(RetryTest, RetryOnFollowsEnvoy) {
  const RetriableCase cases[] = {
      {config::kRetryOn5xx, {K::kResponse, 500}, true},
      {config::kRetryOn5xx, {K::kResponse, 404}, false},
      {config::kRetryOn5xx, {K::kReset}, true},
      {config::kRetryOn5xx, {K::kConnectFailure}, true},
      {config::kRetryOn5xx, {K::kTimeout}, true},
      {config::kRetryOnGatewayError, {K::kResponse, 500}, false},
      {config::kRetryOnGatewayError, {K::kResponse, 502}, true},
      {config::kRetryOnGatewayError, {K::kResponse, 504}, true},
      {config::kRetryOnGatewayError, {K::kReset}, true},
      {config::kRetryOnReset, {K::kReset}, true},
      {config::kRetryOnReset, {K::kResponse, 503}, false},
      {config::kRetryOnConnectFailure, {K::kConnectFailure}, true},
      {config::kRetryOnConnectFailure, {K::kReset}, false},
      {config::kRetryOnConnectFailure, {K::kResponse, 503}, false},
      {config::kRetryOnRetriableStatusCodes, {K::kResponse, 409}, true},
      {config::kRetryOnRetriableStatusCodes, {K::kResponse, 410}, false},
      {config::kRetryOnGrpcUnavailable, {K::kResponse, 200, 14}, true},
      {config::kRetryOnGrpcUnavailable, {K::kResponse, 200, 13}, false},
      {config::kRetryOnGrpcInternal, {K::kResponse, 200, 13}, true},
      {config::kRetryOnGrpcCancelled, {K::kResponse, 200, 1}, true},
      {config::kRetryOnGrpcDeadlineExceeded, {K::kResponse, 200, 4}, true},
      {config::kRetryOnGrpcResourceExhausted, {K::kResponse, 200, 8}, true},
      {config::kRetryOnGrpcResourceExhausted, {K::kResponse, 200, 0}, false},
      {0, {K::kResponse, 503}, false},
  };
  for (const RetriableCase& c : cases) {
    RetrySpec s;
    s.retry_on = c.retry_on;
    s.status_codes = {409};
    EXPECT_EQ(IsRetriable(s, c.result), c.want)
        << "retry_on " << c.retry_on << " kind " << static_cast<int>(c.result.kind) << " status "
        << c.result.status << " grpc " << c.result.grpc_status;
  }
}

TEST(RetryTest, BackoffIsFullyJitteredExponentialCapped) {
  RetrySpec s;  // base 25, max 250
  const uint64_t big = ~uint64_t{0};
  EXPECT_EQ(BackoffMs(s, 1, 0), 0u);
  EXPECT_EQ(BackoffMs(s, 1, 24), 24u);
  EXPECT_EQ(BackoffMs(s, 1, 25), 0u);        // [0, 25)
  EXPECT_EQ(BackoffMs(s, 2, 74), 74u);       // [0, 75)
  EXPECT_EQ(BackoffMs(s, 3, 174), 174u);     // [0, 175)
  EXPECT_EQ(BackoffMs(s, 4, 374), 250u);     // capped at 10x base
  EXPECT_LE(BackoffMs(s, 1000, big), 250u);  // no overflow however many retries
  for (uint64_t d = 0; d < 2000; d += 7) EXPECT_LT(BackoffMs(s, 2, d), 75u);
}

TEST(RetryBudgetTest, RatioPlusFloorWithinTheWindow) {
  RetryBudget b(config::RetryBudget{0.2, 1, 10000});  // floor: 1/s x 10 s = 10 retries
  int allowed = 0;
  for (int i = 0; i < 20; ++i) allowed += b.TryWithdraw(At(0)) ? 1 : 0;
  EXPECT_EQ(allowed, 10);
  for (int i = 0; i < 100; ++i) b.Deposit(At(500));  // +20 retries
  allowed = 0;
  for (int i = 0; i < 40; ++i) allowed += b.TryWithdraw(At(600)) ? 1 : 0;
  EXPECT_EQ(allowed, 20);
  EXPECT_FALSE(b.TryWithdraw(At(9999)));
  // After the TTL the early retries and deposits have left the window.
  allowed = 0;
  for (int i = 0; i < 40; ++i) allowed += b.TryWithdraw(At(11000)) ? 1 : 0;
  EXPECT_EQ(allowed, 10);
  RetryBudget::Stats s = b.stats();
  EXPECT_EQ(s.deposits, 100u);
  EXPECT_EQ(s.withdrawals, 40u);
  EXPECT_EQ(s.exhausted, 10u + 20u + 1u + 30u);
}

// A backend failing every request: retries stay within the ratio of the requests (plus the
// floor), so they never amplify the outage beyond it.
TEST(RetryBudgetTest, StopsAmplificationWhenEverythingFails) {
  RetryBudget budget(config::RetryBudget{0.2, 10, 10000});
  RetrySpec spec;
  spec.attempts = 3;
  spec.retry_on = config::kRetryOn5xx;
  uint64_t retries = 0;
  constexpr int kRequests = 10000;
  for (int i = 0; i < kRequests; ++i) {
    TimePoint now = At(i);  // 1000 requests per second for 10 s
    RetryState st(spec, &budget, nullptr, now);
    while (st.OnAttempt({K::kResponse, 503}, now, 0).action == A::kRetry) ++retries;
  }
  EXPECT_LE(retries, kRequests * 0.2 + 10 * 10);
  EXPECT_GE(retries, kRequests * 0.2 * 0.9);  // the budget is used, not starved
}

TEST(RetryStateTest, RetriesUntilTheLimit) {
  RetrySpec spec;
  spec.attempts = 2;
  spec.retry_on = config::kRetryOnGatewayError;
  RetryState st(spec, nullptr, nullptr, At(0));
  EXPECT_EQ(st.OnAttempt({K::kResponse, 503}, At(0), 0).action, A::kRetry);
  RetryState::Decision d = st.OnAttempt({K::kResponse, 503}, At(0), 74);
  EXPECT_EQ(d.action, A::kRetry);
  EXPECT_EQ(d.backoff_ms, 74u);  // second retry: [0, 75)
  EXPECT_EQ(st.OnAttempt({K::kResponse, 503}, At(0), 0).action, A::kLimitExceeded);
  EXPECT_EQ(st.retries(), 2u);

  RetryState ok(spec, nullptr, nullptr, At(0));
  EXPECT_EQ(ok.OnAttempt({K::kResponse, 200}, At(0), 0).action, A::kDone);
  EXPECT_EQ(ok.OnAttempt({K::kResponse, 500}, At(0), 0).action, A::kDone);  // not a gateway error
}

TEST(RetryStateTest, BudgetAndMaxRetriesStopRetries) {
  RetrySpec spec;
  spec.attempts = 5;
  spec.retry_on = config::kRetryOn5xx;
  RetryBudget budget(config::RetryBudget{0, 1, 1000});  // one retry per second, no ratio
  RetryState a(spec, &budget, nullptr, At(0));
  EXPECT_EQ(a.OnAttempt({K::kResponse, 500}, At(0), 0).action, A::kRetry);
  EXPECT_EQ(a.OnAttempt({K::kResponse, 500}, At(0), 0).action, A::kBudgetExhausted);

  CircuitBreaker cb(config::ConnectionPool{0, 0, 0, 0, 1});
  RetryState x(spec, nullptr, &cb, At(0)), y(spec, nullptr, &cb, At(0));
  EXPECT_EQ(x.OnAttempt({K::kReset}, At(0), 0).action, A::kRetry);  // holds the one retry slot
  EXPECT_EQ(y.OnAttempt({K::kReset}, At(0), 0).action, A::kOverflow);
  EXPECT_EQ(x.OnAttempt({K::kResponse, 200}, At(1), 0).action, A::kDone);  // slot released
  EXPECT_EQ(y.OnAttempt({K::kReset}, At(1), 0).action, A::kRetry);
  EXPECT_EQ(cb.stats().retry_overflows, 1u);
}

}  // namespace
}  // namespace weft::ztunnel::traffic
