#include "server/engine/budget.h"

#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace rebound::engine {
namespace {

using common::Priority;
using common::WaitReason;

// 2027-01-15 10:00:00 UTC: a 24h period began at midnight.
const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

config::BudgetConfig Quota(int64_t limit, absl::Duration period = absl::Hours(24)) {
  config::BudgetConfig b;
  b.name = "app";
  b.quota.limit = limit;
  b.quota.period = period;
  return b;
}

TEST(Budget, PeriodsAreFixedWindowsFromTheEpochShiftedByTheOffset) {
  config::BudgetConfig c = Quota(10);
  Budget b(c, kNow);
  const absl::Time midnight = absl::FromUnixSeconds(1'800'000'000 / 86400 * 86400);
  EXPECT_EQ(b.PeriodStart(kNow), midnight);
  EXPECT_EQ(b.PeriodStart(midnight), midnight);
  EXPECT_EQ(b.PeriodStart(midnight - absl::Nanoseconds(1)), midnight - absl::Hours(24));
  c.quota.offset = absl::Hours(5);  // e.g. 05:00 UTC, midnight in a US eastern winter
  b.Configure(c, kNow);
  EXPECT_EQ(b.PeriodStart(kNow), midnight + absl::Hours(5));
  EXPECT_EQ(b.PeriodStart(midnight + absl::Hours(4)), midnight - absl::Hours(19));
}

TEST(Budget, AQuotaUsedUpWaitsForTheNextPeriodAndIsRenewedThen) {
  Budget b(Quota(3, absl::Minutes(1)), kNow);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(b.Admit("", Priority::kNormal, kNow).admitted) << i;
    b.OnStarted("", kNow);
    b.OnFinished("");
  }
  const Admission a = b.Admit("", Priority::kHigh, kNow);
  EXPECT_FALSE(a.admitted);
  EXPECT_EQ(a.reason, WaitReason::kQuotaExhausted);
  EXPECT_EQ(a.until, b.PeriodStart(kNow) + absl::Minutes(1));
  EXPECT_FALSE(b.Admit("", Priority::kHigh, a.until - absl::Nanoseconds(1)).admitted);
  EXPECT_TRUE(b.Admit("", Priority::kLow, a.until).admitted);
}

TEST(Budget, ScopesCountApart) {
  config::BudgetConfig c = Quota(2);
  c.split_by = "credential";
  Budget b(c, kNow);
  for (int i = 0; i < 2; ++i) b.OnStarted("token-a", kNow);
  EXPECT_EQ(b.Admit("token-a", Priority::kNormal, kNow).reason, WaitReason::kQuotaExhausted);
  EXPECT_TRUE(b.Admit("token-b", Priority::kNormal, kNow).admitted);
  EXPECT_TRUE(b.Admit("", Priority::kNormal, kNow).admitted);
}

TEST(Budget, ALowPriorityBurstCannotUseTheHighPriorityReserve) {
  config::BudgetConfig c = Quota(100);
  c.quota.reserve[static_cast<int>(Priority::kHigh)] = 0.2;
  c.quota.reserve[static_cast<int>(Priority::kNormal)] = 0.1;
  Budget b(c, kNow);
  // A low-priority burst of 1,000 gets what neither reserve keeps: 70.
  int low = 0;
  for (int i = 0; i < 1000; ++i) {
    if (!b.Admit("", Priority::kLow, kNow).admitted) break;
    b.OnStarted("", kNow);
    ++low;
  }
  EXPECT_EQ(low, 70);
  const Admission held = b.Admit("", Priority::kLow, kNow);
  EXPECT_EQ(held.reason, WaitReason::kQuotaReserved);
  EXPECT_EQ(held.until, b.PeriodStart(kNow) + absl::Hours(24));
  // Normal may go on to 80; high to the whole 100.
  int normal = 0;
  while (b.Admit("", Priority::kNormal, kNow).admitted) {
    b.OnStarted("", kNow);
    ++normal;
  }
  EXPECT_EQ(normal, 10);
  EXPECT_EQ(b.Admit("", Priority::kNormal, kNow).reason, WaitReason::kQuotaReserved);
  int high = 0;
  while (b.Admit("", Priority::kHigh, kNow).admitted) {
    b.OnStarted("", kNow);
    ++high;
  }
  EXPECT_EQ(high, 20);
  EXPECT_EQ(b.Admit("", Priority::kHigh, kNow).reason, WaitReason::kQuotaExhausted);
}

TEST(Budget, ConcurrencyAndTokensHoldAsRateLimited) {
  config::BudgetConfig c;
  c.name = "district";
  c.max_in_flight = 2;
  c.rate_limit = {10, 3};
  Budget b(c, kNow);
  b.OnStarted("", kNow);
  b.OnStarted("", kNow);
  Admission a = b.Admit("", Priority::kNormal, kNow);
  EXPECT_EQ(a.reason, WaitReason::kRateLimited);
  EXPECT_EQ(a.until, absl::InfiniteFuture());  // until a completion
  b.OnFinished("");
  EXPECT_TRUE(b.Admit("", Priority::kNormal, kNow).admitted);
  b.OnStarted("", kNow);  // the third token
  b.OnFinished("");
  b.OnFinished("");
  a = b.Admit("", Priority::kNormal, kNow);
  EXPECT_EQ(a.reason, WaitReason::kRateLimited);
  EXPECT_EQ(a.until, kNow + absl::Milliseconds(100));
  EXPECT_TRUE(b.Admit("", Priority::kNormal, a.until).admitted);
}

TEST(Budget, UsageIsReportedOnceWhenItChangesAndRestoredForItsPeriodOnly) {
  config::BudgetConfig c = Quota(10);
  c.split_by = "tenant";
  Budget b(c, kNow);
  b.OnStarted("a", kNow);
  b.OnStarted("a", kNow);
  b.OnStarted("b", kNow);
  std::vector<store::BudgetUsage> rows;
  b.TakeChanged(&rows);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].budget, "app");
  EXPECT_EQ(rows[0].scope, "a");
  EXPECT_EQ(rows[0].used, 2);
  EXPECT_EQ(rows[0].period_start, b.PeriodStart(kNow));
  rows.clear();
  b.TakeChanged(&rows);
  EXPECT_TRUE(rows.empty());

  Budget restarted(c, kNow);
  restarted.Restore("a", b.PeriodStart(kNow), 9, kNow);
  restarted.Restore("b", b.PeriodStart(kNow) - absl::Hours(24), 10, kNow);  // yesterday's
  EXPECT_TRUE(restarted.Admit("a", Priority::kNormal, kNow).admitted);
  restarted.OnStarted("a", kNow);
  EXPECT_EQ(restarted.Admit("a", Priority::kNormal, kNow).reason, WaitReason::kQuotaExhausted);
  EXPECT_TRUE(restarted.Admit("b", Priority::kNormal, kNow).admitted);
}

TEST(Budget, SweepForgetsIdleScopesButNotTheirQuota) {
  config::BudgetConfig c = Quota(10, absl::Minutes(1));
  c.split_by = "district";
  c.max_in_flight = 5;
  Budget b(c, kNow);
  b.OnStarted("busy", kNow);
  b.OnStarted("done", kNow);
  b.OnFinished("done");
  std::vector<store::BudgetUsage> rows;
  b.TakeChanged(&rows);
  b.Sweep(kNow);
  EXPECT_EQ(b.Snapshot(kNow, 10).scopes, 2u);  // "done" used quota this period
  b.Sweep(kNow + absl::Minutes(2));
  const BudgetSnapshot s = b.Snapshot(kNow + absl::Minutes(2), 10);
  EXPECT_EQ(s.scopes, 1u);  // "busy" is still in flight
  EXPECT_EQ(s.busiest[0].scope, "busy");
  EXPECT_EQ(s.busiest[0].in_flight, 1);
  EXPECT_EQ(s.busiest[0].quota_used, 0);  // a new period
}

TEST(Budget, LanesCarryTheTenantTheFairnessLabelAndEachScope) {
  const std::map<std::string, std::string> labels = {{"district", "d7"}, {"credential", "t1"}};
  std::vector<std::string> scopes;
  EXPECT_EQ(LaneOf("acme", &labels, "", {}, &scopes), "acme");
  EXPECT_TRUE(scopes.empty());
  EXPECT_EQ(LaneOf("acme", &labels, "district", {"credential", "tenant", ""}, &scopes),
            "acme\x1f"
            "d7\x1f"
            "t1\x1f"
            "acme\x1f");
  EXPECT_EQ(scopes, (std::vector<std::string>{"t1", "acme", ""}));
  EXPECT_EQ(LaneOf("acme", nullptr, "district", {"credential"}, &scopes), "acme\x1f\x1f");
  EXPECT_EQ(scopes, (std::vector<std::string>{""}));
}

}  // namespace
}  // namespace rebound::engine
