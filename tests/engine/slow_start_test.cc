#include "server/engine/slow_start.h"

#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rebound::engine {
namespace {

using ::testing::ElementsAre;

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

config::SlowStartConfig Window(absl::Duration d) {
  config::SlowStartConfig c;
  c.window = d;
  return c;
}

TEST(SlowStart, NotRampingAllowsTheFullCap) {
  const SlowStart s(Window(absl::Seconds(5)));
  EXPECT_FALSE(s.Ramping(kStart));
  EXPECT_EQ(s.Allowed(64, kStart), 64);
  EXPECT_EQ(s.Level(kStart), 1.0);
  EXPECT_EQ(s.Until(), absl::InfinitePast());
  EXPECT_EQ(s.NextStep(64, kStart), absl::InfiniteFuture());
}

TEST(SlowStart, RampsLinearlyFromOneToTheCap) {
  SlowStart s(Window(absl::Seconds(10)));
  s.Begin(kStart);
  EXPECT_EQ(s.Until(), kStart + absl::Seconds(10));
  std::vector<int64_t> allowed;
  for (int second = 0; second <= 11; ++second) {
    allowed.push_back(s.Allowed(20, kStart + absl::Seconds(second)));
  }
  // max(1, ceil(20 * t / 10)).
  EXPECT_THAT(allowed, ElementsAre(1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 20));
  EXPECT_EQ(s.Allowed(20, kStart + absl::Milliseconds(1)), 1);    // ceil(0.002)
  EXPECT_EQ(s.Allowed(20, kStart + absl::Milliseconds(501)), 2);  // ceil(1.002)
  EXPECT_EQ(s.Allowed(20, kStart + absl::Milliseconds(500)), 1);  // exactly 1.0
  EXPECT_DOUBLE_EQ(s.Level(kStart + absl::Milliseconds(2500)), 0.25);
  EXPECT_EQ(s.Level(kStart + absl::Seconds(10)), 1.0);
}

TEST(SlowStart, NextStepIsTheFirstNanosecondTheCapGrows) {
  SlowStart s(Window(absl::Seconds(1)));
  s.Begin(kStart);
  // max 3 over 1 s: 1 until 333333333 ns (inclusive), 2 from 333333334 ns.
  const absl::Time first = s.NextStep(3, kStart);
  EXPECT_EQ(first, kStart + absl::Nanoseconds(333'333'334));
  EXPECT_EQ(s.Allowed(3, first - absl::Nanoseconds(1)), 1);
  EXPECT_EQ(s.Allowed(3, first), 2);
  const absl::Time second = s.NextStep(3, first);
  EXPECT_EQ(second, kStart + absl::Nanoseconds(666'666'667));
  EXPECT_EQ(s.Allowed(3, second - absl::Nanoseconds(1)), 2);
  EXPECT_EQ(s.Allowed(3, second), 3);
  EXPECT_EQ(s.NextStep(3, second), absl::InfiniteFuture());
}

TEST(SlowStart, FollowingNextStepVisitsEveryValueOnce) {
  SlowStart s(Window(absl::Seconds(5)));
  s.Begin(kStart);
  absl::Time now = kStart;
  std::vector<int64_t> seen = {s.Allowed(64, now)};
  for (int i = 0; i < 100 && now != absl::InfiniteFuture(); ++i) {
    now = s.NextStep(64, now);
    if (now != absl::InfiniteFuture()) seen.push_back(s.Allowed(64, now));
  }
  ASSERT_EQ(seen.size(), 64u);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], static_cast<int64_t>(i) + 1);
}

TEST(SlowStart, BeginAgainRestartsTheRampFromOne) {
  SlowStart s(Window(absl::Seconds(10)));
  s.Begin(kStart);
  const absl::Time mid = kStart + absl::Seconds(7);
  EXPECT_EQ(s.Allowed(10, mid), 7);
  s.Begin(mid);
  EXPECT_EQ(s.Allowed(10, mid), 1);
  EXPECT_EQ(s.Allowed(10, mid + absl::Seconds(5)), 5);
  EXPECT_EQ(s.Until(), mid + absl::Seconds(10));
}

TEST(SlowStart, ZeroWindowIsOff) {
  SlowStart s(Window(absl::ZeroDuration()));
  s.Begin(kStart);
  EXPECT_FALSE(s.Ramping(kStart));
  EXPECT_EQ(s.Allowed(16, kStart), 16);
}

TEST(SlowStart, ReloadMovesTheEndOfARampUnderWay) {
  SlowStart s(Window(absl::Seconds(10)));
  s.Begin(kStart);
  s.Configure(Window(absl::Seconds(20)));
  EXPECT_EQ(s.Until(), kStart + absl::Seconds(20));
  EXPECT_EQ(s.Allowed(20, kStart + absl::Seconds(10)), 10);
  s.Configure(Window(absl::ZeroDuration()));
  EXPECT_FALSE(s.Ramping(kStart + absl::Seconds(1)));
  EXPECT_EQ(s.Allowed(20, kStart + absl::Seconds(1)), 20);
}

TEST(SlowStart, SnapshotShowsAllowedOverMax) {
  SlowStart s(Window(absl::Seconds(4)));
  s.Begin(kStart);
  const SlowStartSnapshot snap = s.Snapshot(8, kStart + absl::Seconds(1));
  EXPECT_EQ(snap.allowed_in_flight, 2);
  EXPECT_DOUBLE_EQ(snap.level, 0.25);
  EXPECT_EQ(snap.until, kStart + absl::Seconds(4));
  EXPECT_EQ(s.Snapshot(8, kStart + absl::Seconds(4)).level, 1.0);
}

}  // namespace
}  // namespace rebound::engine
