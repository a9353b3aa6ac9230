#include "server/engine/token_bucket.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace rebound::engine {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

config::RateLimitConfig Limit(double rate, int burst) {
  config::RateLimitConfig c;
  c.rate = rate;
  c.burst = burst;
  return c;
}

TEST(TokenBucket, StartsFullAndEmptiesAfterTheBurst) {
  TokenBucket b(Limit(10, 5), kStart);
  EXPECT_DOUBLE_EQ(b.Tokens(kStart), 5);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(b.TryTake(kStart)) << i;
  EXPECT_FALSE(b.TryTake(kStart));
  EXPECT_DOUBLE_EQ(b.Tokens(kStart), 0);
}

TEST(TokenBucket, RefillsContinuouslyAtTheRate) {
  TokenBucket b(Limit(10, 5), kStart);
  for (int i = 0; i < 5; ++i) b.TryTake(kStart);
  EXPECT_NEAR(b.Tokens(kStart + absl::Milliseconds(250)), 2.5, 1e-9);
  EXPECT_FALSE(b.TryTake(kStart + absl::Milliseconds(99)));
  EXPECT_TRUE(b.TryTake(kStart + absl::Milliseconds(100)));
  EXPECT_FALSE(b.TryTake(kStart + absl::Milliseconds(100)));
}

TEST(TokenBucket, NeverHoldsMoreThanTheBurst) {
  TokenBucket b(Limit(10, 5), kStart);
  b.TryTake(kStart);
  const absl::Time later = kStart + absl::Hours(1);
  EXPECT_DOUBLE_EQ(b.Tokens(later), 5);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(b.TryTake(later));
  EXPECT_FALSE(b.TryTake(later));
}

TEST(TokenBucket, BurstZeroMeansCeilOfTheRateAndAtLeastOne) {
  EXPECT_EQ(TokenBucket(Limit(2.5, 0), kStart).Snapshot(kStart).burst, 3);
  EXPECT_EQ(TokenBucket(Limit(0.2, 0), kStart).Snapshot(kStart).burst, 1);
  EXPECT_EQ(TokenBucket(Limit(20, 0), kStart).Snapshot(kStart).burst, 20);
}

TEST(TokenBucket, RateZeroIsUnlimited) {
  TokenBucket b(Limit(0, 0), kStart);
  EXPECT_FALSE(b.limited());
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(b.TryTake(kStart));
  EXPECT_EQ(b.Tokens(kStart), std::numeric_limits<double>::infinity());
  EXPECT_EQ(b.NextTokenAt(kStart), kStart);
  const TokenBucketSnapshot s = b.Snapshot(kStart);
  EXPECT_EQ(s.rate, 0);
  EXPECT_EQ(s.burst, 0);
  EXPECT_EQ(s.tokens, 0);
}

TEST(TokenBucket, NextTokenAtIsTheExactNanosecond) {
  // Burst 2, so the bucket is never full (and nothing is capped away) after the first takes.
  TokenBucket b(Limit(3, 2), kStart);
  EXPECT_EQ(b.NextTokenAt(kStart), kStart);  // full
  ASSERT_TRUE(b.TryTake(kStart));
  ASSERT_TRUE(b.TryTake(kStart));
  // One token every 1/3 s: 333333333.3 ns, so the first nanosecond with a whole token is ...334.
  const absl::Time next = b.NextTokenAt(kStart);
  EXPECT_EQ(next, kStart + absl::Nanoseconds(333'333'334));
  EXPECT_EQ(b.NextTokenAt(kStart + absl::Milliseconds(100)), next);
  EXPECT_FALSE(b.TryTake(next - absl::Nanoseconds(1)));
  EXPECT_TRUE(b.TryTake(next));
  EXPECT_EQ(b.NextTokenAt(next), kStart + absl::Nanoseconds(666'666'667));
}

TEST(TokenBucket, AMillionTakesAtNextTokenAtGiveTheExactCount) {
  // A rate whose period is not a whole number of nanoseconds (333.33 ns): adding the period as
  // a Duration on every take would drift by ~0.08 ns a take, 250 tokens over a million. Burst 2:
  // with burst 1 the bucket would be full at each take and the refill of the part of a
  // nanosecond it waited beyond the token is capped away, as a full bucket's must be.
  const double rate = 3e6;
  TokenBucket b(Limit(rate, 2), kStart);
  absl::Time now = kStart;
  int64_t taken = 0;
  for (int i = 0; i < 1'000'000; ++i) {
    now = b.NextTokenAt(now);
    ASSERT_TRUE(b.TryTake(now)) << i;
    ++taken;
  }
  // burst + rate x elapsed, to within one.
  const double expected = 2 + rate * absl::FDivDuration(now - kStart, absl::Seconds(1));
  EXPECT_NEAR(static_cast<double>(taken), expected, 1.0);
  EXPECT_NEAR(absl::FDivDuration(now - kStart, absl::Seconds(1)), (1'000'000 - 2) / rate, 1e-9);
}

TEST(TokenBucket, TakingAtAFixedStepOverALongIntervalDoesNotDrift) {
  // 7 tokens/s polled every millisecond for 2000 simulated seconds: 2,000,000 polls.
  TokenBucket b(Limit(7, 2), kStart);
  int64_t taken = 0;
  absl::Time now = kStart;
  for (int i = 0; i <= 2'000'000; ++i) {
    now = kStart + absl::Milliseconds(i);
    if (b.TryTake(now)) ++taken;
  }
  EXPECT_NEAR(static_cast<double>(taken), 2 + 7 * 2000.0, 1.0);
}

TEST(TokenBucket, ReloadKeepsTheTokensCappedAtTheNewBurst) {
  TokenBucket b(Limit(10, 10), kStart);
  for (int i = 0; i < 4; ++i) b.TryTake(kStart);
  b.Configure(Limit(1, 20), kStart);
  EXPECT_DOUBLE_EQ(b.Tokens(kStart), 6);
  b.Configure(Limit(1, 2), kStart);
  EXPECT_DOUBLE_EQ(b.Tokens(kStart), 2);
  EXPECT_NEAR(b.Tokens(kStart + absl::Milliseconds(500)), 2, 1e-9);  // capped
  // From no bucket to a bucket: it starts full.
  TokenBucket u(Limit(0, 0), kStart);
  u.Configure(Limit(5, 4), kStart);
  EXPECT_DOUBLE_EQ(u.Tokens(kStart), 4);
}

}  // namespace
}  // namespace rebound::engine
