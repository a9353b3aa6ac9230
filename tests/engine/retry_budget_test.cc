#include "server/engine/retry_budget.h"

#include <cstdint>
#include <limits>

#include "gtest/gtest.h"

namespace rebound::engine {
namespace {

config::RetryBudgetConfig Budget(double ratio, int min_retries) {
  config::RetryBudgetConfig c;
  c.ratio = ratio;
  c.min_retries = min_retries;
  return c;
}

TEST(RetryBudget, AllowsMaxOfMinRetriesAndTheFlooredShare) {
  const RetryBudget b(Budget(0.2, 3));
  EXPECT_EQ(b.Allowed(0), 3);
  EXPECT_EQ(b.Allowed(10), 3);  // floor(2.0) < 3
  EXPECT_EQ(b.Allowed(19), 3);  // floor(3.8)
  EXPECT_EQ(b.Allowed(20), 4);  // floor(4.0)
  EXPECT_EQ(b.Allowed(24), 4);  // floor(4.8)
  EXPECT_EQ(b.Allowed(25), 5);
  EXPECT_EQ(b.Allowed(1000), 200);
}

TEST(RetryBudget, ZeroMinRetriesAndZeroRatioHoldEveryRetry) {
  const RetryBudget b(Budget(0, 0));
  EXPECT_EQ(b.Allowed(1000), 0);
  EXPECT_FALSE(b.MayStartRetry(1000, 0));
  const RetryBudget floor_only(Budget(0, 2));
  EXPECT_TRUE(floor_only.MayStartRetry(1000, 1));
  EXPECT_FALSE(floor_only.MayStartRetry(1000, 2));
}

TEST(RetryBudget, TheDecimalRatioIsTakenAsWritten) {
  // 0.29 * 100 is 28.999999999999996 in binary floating point.
  EXPECT_EQ(RetryBudget(Budget(0.29, 0)).Allowed(100), 29);
  EXPECT_EQ(RetryBudget(Budget(0.7, 0)).Allowed(10), 7);
  EXPECT_EQ(RetryBudget(Budget(0.1, 0)).Allowed(9), 0);
  EXPECT_EQ(RetryBudget(Budget(1.0, 0)).Allowed(7), 7);
}

TEST(RetryBudget, TheRetryBeingAdmittedIsNotCountedInFlight) {
  // 10 attempts on the wire, 2 of them retries, ratio 0.25: floor(2.5) = 2 retries allowed,
  // so a third waits; with 12 on the wire (floor(3.0) = 3) it may start.
  const RetryBudget b(Budget(0.25, 0));
  EXPECT_FALSE(b.MayStartRetry(10, 2));
  EXPECT_TRUE(b.MayStartRetry(12, 2));
  // Ratio 1: retries cannot vouch for themselves; with every attempt a retry, no more start.
  const RetryBudget all(Budget(1.0, 0));
  EXPECT_FALSE(all.MayStartRetry(5, 5));
  EXPECT_TRUE(all.MayStartRetry(5, 4));
}

TEST(RetryBudget, DisabledAllowsEveryRetry) {
  config::RetryBudgetConfig c = Budget(0, 0);
  c.enabled = false;
  const RetryBudget b(c);
  EXPECT_EQ(b.Allowed(0), std::numeric_limits<int64_t>::max());
  EXPECT_TRUE(b.MayStartRetry(0, 1'000'000));
  EXPECT_FALSE(b.Snapshot(0, 0).enabled);
}

TEST(RetryBudget, ReloadAppliesAtOnceAndSnapshotShowsTheBudget) {
  RetryBudget b(Budget(0.2, 3));
  EXPECT_EQ(b.Snapshot(50, 4).budget, 10);
  b.Configure(Budget(0.5, 1));
  const RetryBudgetSnapshot s = b.Snapshot(50, 4);
  EXPECT_TRUE(s.enabled);
  EXPECT_EQ(s.retries_in_flight, 4);
  EXPECT_EQ(s.budget, 25);
}

}  // namespace
}  // namespace rebound::engine
