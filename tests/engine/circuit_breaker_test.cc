#include "server/engine/circuit_breaker.h"

#include <optional>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rebound::engine {
namespace {

using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

config::CircuitBreakerConfig SmallConfig() {
  config::CircuitBreakerConfig c;
  c.failure_ratio = 0.5;
  c.min_requests = 4;
  c.window = absl::Seconds(10);
  c.open_duration = absl::Seconds(2);
  c.max_open_duration = absl::Seconds(10);
  c.half_open_probes = 2;
  return c;
}

// Starts one attempt and finishes it at once with `signal`.
std::optional<CircuitTransition> Attempt(CircuitBreaker& b, CircuitSignal signal, absl::Time now) {
  EXPECT_TRUE(b.MayStart());
  return b.Finish(b.Start(), signal, now);
}

// From open: waits out the open period and closes with successful probes. Returns the time.
absl::Time Recover(CircuitBreaker& b) {
  const absl::Time now = b.NextChange();
  b.Advance(now);
  EXPECT_EQ(b.state(), CircuitState::kHalfOpen);
  for (int i = 0; i < 100 && b.state() == CircuitState::kHalfOpen && b.MayStart(); ++i) {
    b.Finish(b.Start(), CircuitSignal::kSuccess, now);
  }
  EXPECT_EQ(b.state(), CircuitState::kClosed);
  return now;
}

// Opens a fresh breaker at `now` with min_requests failures.
void OpenWithFailures(CircuitBreaker& b, absl::Time now, int failures) {
  for (int i = 0; i < failures; ++i) Attempt(b, CircuitSignal::kFailure, now);
  ASSERT_EQ(b.state(), CircuitState::kOpen);
}

TEST(CircuitBreaker, StartsClosedAndLetsAttemptsThrough) {
  CircuitBreaker b(SmallConfig(), kStart);
  EXPECT_EQ(b.state(), CircuitState::kClosed);
  EXPECT_TRUE(b.MayStart());
  EXPECT_EQ(b.NextChange(), absl::InfiniteFuture());
  EXPECT_EQ(b.Snapshot(kStart).next_probe_at, absl::InfinitePast());
}

TEST(CircuitBreaker, DoesNotOpenBelowMinRequestsEvenWhenEverythingFails) {
  CircuitBreaker b(SmallConfig(), kStart);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Attempt(b, CircuitSignal::kFailure, kStart), std::nullopt);
  EXPECT_EQ(b.state(), CircuitState::kClosed);
  const std::optional<CircuitTransition> t = Attempt(b, CircuitSignal::kFailure, kStart);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->from, CircuitState::kClosed);
  EXPECT_EQ(t->to, CircuitState::kOpen);
  EXPECT_EQ(t->at, kStart);
  EXPECT_FALSE(b.MayStart());
}

TEST(CircuitBreaker, OpensExactlyAtTheRatioNotJustBelowIt) {
  config::CircuitBreakerConfig c = SmallConfig();
  c.min_requests = 10;
  c.failure_ratio = 0.3;
  CircuitBreaker below(c, kStart);
  // 2 failures of 10: 0.2 < 0.3.
  for (int i = 0; i < 8; ++i) Attempt(below, CircuitSignal::kSuccess, kStart);
  Attempt(below, CircuitSignal::kFailure, kStart);
  Attempt(below, CircuitSignal::kFailure, kStart);
  EXPECT_EQ(below.state(), CircuitState::kClosed);

  CircuitBreaker at(c, kStart);
  // 3 failures of 10: 0.3 >= 0.3 (3.0 / 10 is the double nearest 0.3, as the parsed ratio).
  for (int i = 0; i < 7; ++i) Attempt(at, CircuitSignal::kSuccess, kStart);
  Attempt(at, CircuitSignal::kFailure, kStart);
  Attempt(at, CircuitSignal::kFailure, kStart);
  const std::optional<CircuitTransition> t = Attempt(at, CircuitSignal::kFailure, kStart);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->to, CircuitState::kOpen);
  EXPECT_EQ(t->why, "3 of 10 attempts failed in the last 10s (ratio 0.30 >= 0.30); open for 2s");
}

TEST(CircuitBreaker, OldFailuresAgeOutOfTheWindow) {
  CircuitBreaker b(SmallConfig(), kStart);
  for (int i = 0; i < 3; ++i) Attempt(b, CircuitSignal::kFailure, kStart);
  EXPECT_EQ(b.Snapshot(kStart).window_failures, 3);
  // Still inside the window 9.9 s later (buckets of 1 s: the first one lasts until 10 s).
  EXPECT_EQ(b.Snapshot(kStart + absl::Milliseconds(9900)).window_failures, 3);
  // A window later they are gone: one more failure is 1 of 1, below min_requests.
  const absl::Time later = kStart + absl::Seconds(10);
  EXPECT_EQ(b.Snapshot(later).window_failures, 0);
  EXPECT_EQ(Attempt(b, CircuitSignal::kFailure, later), std::nullopt);
  EXPECT_EQ(b.state(), CircuitState::kClosed);
  EXPECT_EQ(b.Snapshot(later).window_requests, 1);
}

TEST(CircuitBreaker, FailuresSpreadWithinTheWindowAddUp) {
  CircuitBreaker b(SmallConfig(), kStart);
  for (int i = 0; i < 3; ++i) Attempt(b, CircuitSignal::kFailure, kStart + absl::Seconds(3 * i));
  EXPECT_EQ(b.state(), CircuitState::kClosed);
  Attempt(b, CircuitSignal::kFailure, kStart + absl::Milliseconds(9500));
  EXPECT_EQ(b.state(), CircuitState::kOpen);
}

TEST(CircuitBreaker, ThrottlesAreCountedApartAndDoNotOpenIt) {
  CircuitBreaker b(SmallConfig(), kStart);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(Attempt(b, CircuitSignal::kThrottle, kStart), std::nullopt);
  }
  EXPECT_EQ(b.state(), CircuitState::kClosed);
  const CircuitSnapshot s = b.Snapshot(kStart);
  EXPECT_EQ(s.window_throttles, 50);
  EXPECT_EQ(s.window_failures, 0);
  EXPECT_EQ(s.window_requests, 50);
  // Nor do they dilute the ratio or make up min_requests: 2 failures of 2 counted (2 < 4).
  Attempt(b, CircuitSignal::kFailure, kStart);
  Attempt(b, CircuitSignal::kFailure, kStart);
  EXPECT_EQ(b.state(), CircuitState::kClosed);
  Attempt(b, CircuitSignal::kFailure, kStart);
  Attempt(b, CircuitSignal::kFailure, kStart);
  EXPECT_EQ(b.state(), CircuitState::kOpen);
}

TEST(CircuitBreaker, ThrottlesOpenItWhenCountThrottles) {
  config::CircuitBreakerConfig c = SmallConfig();
  c.count_throttles = true;
  CircuitBreaker b(c, kStart);
  for (int i = 0; i < 3; ++i) Attempt(b, CircuitSignal::kThrottle, kStart);
  const std::optional<CircuitTransition> t = Attempt(b, CircuitSignal::kFailure, kStart);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->to, CircuitState::kOpen);
  EXPECT_THAT(t->why, HasSubstr("4 of 4 attempts failed (3 throttled)"));
}

TEST(CircuitBreaker, TurnsHalfOpenWhenTheOpenPeriodHasPassed) {
  CircuitBreaker b(SmallConfig(), kStart);
  OpenWithFailures(b, kStart, 4);
  EXPECT_EQ(b.NextChange(), kStart + absl::Seconds(2));
  EXPECT_EQ(b.Snapshot(kStart).next_probe_at, kStart + absl::Seconds(2));
  EXPECT_EQ(b.Advance(kStart + absl::Seconds(2) - absl::Nanoseconds(1)), std::nullopt);
  EXPECT_FALSE(b.MayStart());
  const std::optional<CircuitTransition> t = b.Advance(kStart + absl::Seconds(2));
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->from, CircuitState::kOpen);
  EXPECT_EQ(t->to, CircuitState::kHalfOpen);
  EXPECT_EQ(b.NextChange(), absl::InfiniteFuture());
  EXPECT_TRUE(b.MayStart());
}

TEST(CircuitBreaker, HalfOpenAdmitsOnlyTheConfiguredProbesAndClosesWhenAllSucceed) {
  CircuitBreaker b(SmallConfig(), kStart);
  OpenWithFailures(b, kStart, 4);
  const absl::Time probe_time = kStart + absl::Seconds(2);
  b.Advance(probe_time);
  const CircuitTicket p1 = b.Start();
  ASSERT_TRUE(b.MayStart());
  const CircuitTicket p2 = b.Start();
  EXPECT_TRUE(p1.probe);
  EXPECT_FALSE(b.MayStart());  // half_open_probes = 2
  EXPECT_EQ(b.Snapshot(probe_time).probes_started, 2);
  EXPECT_EQ(b.Finish(p1, CircuitSignal::kSuccess, probe_time), std::nullopt);
  EXPECT_EQ(b.state(), CircuitState::kHalfOpen);
  EXPECT_FALSE(b.MayStart());  // a finished probe does not free a slot
  const std::optional<CircuitTransition> t = b.Finish(p2, CircuitSignal::kSuccess, probe_time);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->to, CircuitState::kClosed);
  EXPECT_EQ(t->why, "2 of 2 half-open probes succeeded");
  EXPECT_TRUE(b.MayStart());
  // The failures that opened it are gone: three more do not re-open it.
  for (int i = 0; i < 3; ++i) Attempt(b, CircuitSignal::kFailure, probe_time);
  EXPECT_EQ(b.state(), CircuitState::kClosed);
}

TEST(CircuitBreaker, TheFirstFailedProbeReopensWithADoubledPeriod) {
  CircuitBreaker b(SmallConfig(), kStart);
  OpenWithFailures(b, kStart, 4);
  absl::Time now = kStart + absl::Seconds(2);
  b.Advance(now);
  const CircuitTicket p1 = b.Start();
  const CircuitTicket p2 = b.Start();
  const std::optional<CircuitTransition> t = b.Finish(p1, CircuitSignal::kFailure, now);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->from, CircuitState::kHalfOpen);
  EXPECT_EQ(t->to, CircuitState::kOpen);
  EXPECT_EQ(t->why, "a half-open probe failed; open for 4s (opening 2 in a row)");
  EXPECT_EQ(b.NextChange(), now + absl::Seconds(4));
  // The other probe, from the half-open that is over, changes nothing.
  EXPECT_EQ(b.Finish(p2, CircuitSignal::kSuccess, now), std::nullopt);
  EXPECT_EQ(b.state(), CircuitState::kOpen);
}

TEST(CircuitBreaker, OpenPeriodDoublesPerConsecutiveOpeningUpToTheCap) {
  CircuitBreaker b(SmallConfig(), kStart);  // 2s, max 10s
  OpenWithFailures(b, kStart, 4);
  absl::Time now = kStart;
  std::vector<absl::Duration> periods;
  for (int i = 0; i < 5; ++i) {
    periods.push_back(b.NextChange() - now);
    now = b.NextChange();
    b.Advance(now);
    ASSERT_EQ(b.state(), CircuitState::kHalfOpen);
    b.Finish(b.Start(), CircuitSignal::kFailure, now);
  }
  EXPECT_THAT(periods, ::testing::ElementsAre(absl::Seconds(2), absl::Seconds(4), absl::Seconds(8),
                                              absl::Seconds(10), absl::Seconds(10)));
}

TEST(CircuitBreaker, ReopeningSoonAfterClosingKeepsGrowingAndStayingClosedResetsIt) {
  CircuitBreaker b(SmallConfig(), kStart);
  OpenWithFailures(b, kStart, 4);
  absl::Time now = Recover(b);  // half-open at 2 s, two successful probes
  // Fails again 5 s after closing (within the 10 s window): the period grows to 4 s.
  now += absl::Seconds(5);
  OpenWithFailures(b, now, 4);
  EXPECT_EQ(b.NextChange() - now, absl::Seconds(4));
  EXPECT_EQ(b.Snapshot(now).consecutive_openings, 1);

  // Recover again, then stay closed for a whole window: the next opening is back to 2 s.
  now = Recover(b);
  now += absl::Seconds(10);
  OpenWithFailures(b, now, 4);
  EXPECT_EQ(b.NextChange() - now, absl::Seconds(2));
  EXPECT_EQ(b.Snapshot(now).consecutive_openings, 0);
}

TEST(CircuitBreaker, AnAttemptStartedWhileClosedDoesNotDecideAProbe) {
  CircuitBreaker b(SmallConfig(), kStart);
  const CircuitTicket slow = b.Start();  // still on the wire when the breaker opens
  OpenWithFailures(b, kStart, 4);
  const absl::Time now = kStart + absl::Seconds(2);
  b.Advance(now);
  ASSERT_EQ(b.state(), CircuitState::kHalfOpen);
  EXPECT_FALSE(slow.probe);
  EXPECT_EQ(b.Finish(slow, CircuitSignal::kFailure, now), std::nullopt);
  EXPECT_EQ(b.state(), CircuitState::kHalfOpen);
  EXPECT_EQ(b.Finish(slow, CircuitSignal::kSuccess, now), std::nullopt);
  EXPECT_EQ(b.Snapshot(now).probes_succeeded, 0);
}

TEST(CircuitBreaker, OutcomesFromBeforeAnOpeningDoNotCountAfterItCloses) {
  CircuitBreaker b(SmallConfig(), kStart);
  const CircuitTicket stale[3] = {b.Start(), b.Start(), b.Start()};
  OpenWithFailures(b, kStart, 4);
  const absl::Time now = Recover(b);
  for (const CircuitTicket& t : stale) b.Finish(t, CircuitSignal::kFailure, now);
  EXPECT_EQ(b.Snapshot(now).window_failures, 0);
  Attempt(b, CircuitSignal::kFailure, now);  // 1 of 1 counted, below min_requests
  EXPECT_EQ(b.state(), CircuitState::kClosed);
}

TEST(CircuitBreaker, AThrottledOrAbandonedProbeGivesItsSlotBack) {
  CircuitBreaker b(SmallConfig(), kStart);
  OpenWithFailures(b, kStart, 4);
  const absl::Time now = kStart + absl::Seconds(2);
  b.Advance(now);
  const CircuitTicket p1 = b.Start();
  const CircuitTicket p2 = b.Start();
  ASSERT_FALSE(b.MayStart());
  EXPECT_EQ(b.Finish(p1, CircuitSignal::kThrottle, now), std::nullopt);
  EXPECT_EQ(b.state(), CircuitState::kHalfOpen);
  EXPECT_TRUE(b.MayStart());
  b.Abandon(p2);
  EXPECT_EQ(b.Snapshot(now).probes_started, 0);
  // Two fresh probes close it.
  b.Finish(b.Start(), CircuitSignal::kSuccess, now);
  b.Finish(b.Start(), CircuitSignal::kSuccess, now);
  EXPECT_EQ(b.state(), CircuitState::kClosed);
}

TEST(CircuitBreaker, AThrottledProbeReopensWhenCountThrottles) {
  config::CircuitBreakerConfig c = SmallConfig();
  c.count_throttles = true;
  CircuitBreaker b(c, kStart);
  OpenWithFailures(b, kStart, 4);
  const absl::Time now = kStart + absl::Seconds(2);
  b.Advance(now);
  const std::optional<CircuitTransition> t = b.Finish(b.Start(), CircuitSignal::kThrottle, now);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->to, CircuitState::kOpen);
}

TEST(CircuitBreaker, DisabledIsAlwaysClosed) {
  config::CircuitBreakerConfig c = SmallConfig();
  c.enabled = false;
  CircuitBreaker b(c, kStart);
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(Attempt(b, CircuitSignal::kFailure, kStart), std::nullopt);
  EXPECT_EQ(b.state(), CircuitState::kClosed);
  EXPECT_FALSE(b.Snapshot(kStart).enabled);
}

TEST(CircuitBreaker, DisablingByReloadClosesAnOpenBreaker) {
  CircuitBreaker b(SmallConfig(), kStart);
  OpenWithFailures(b, kStart, 4);
  config::CircuitBreakerConfig off = SmallConfig();
  off.enabled = false;
  const std::optional<CircuitTransition> t = b.Configure(off, kStart + absl::Seconds(1));
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->to, CircuitState::kClosed);
  EXPECT_TRUE(b.MayStart());
}

TEST(CircuitBreaker, ReloadKeepsTheWindowAndShortensARunningOpenPeriodToTheNewCap) {
  CircuitBreaker b(SmallConfig(), kStart);
  for (int i = 0; i < 3; ++i) Attempt(b, CircuitSignal::kFailure, kStart);
  config::CircuitBreakerConfig c = SmallConfig();
  c.min_requests = 5;
  EXPECT_EQ(b.Configure(c, kStart), std::nullopt);
  EXPECT_EQ(b.Snapshot(kStart).window_failures, 3);  // same window: counts kept
  Attempt(b, CircuitSignal::kFailure, kStart);
  EXPECT_EQ(b.state(), CircuitState::kClosed);
  Attempt(b, CircuitSignal::kFailure, kStart);
  ASSERT_EQ(b.state(), CircuitState::kOpen);
  EXPECT_EQ(b.NextChange(), kStart + absl::Seconds(2));

  c.open_duration = absl::Seconds(1);
  c.max_open_duration = absl::Seconds(1);
  b.Configure(c, kStart);
  EXPECT_EQ(b.NextChange(), kStart + absl::Seconds(1));
  EXPECT_EQ(b.state(), CircuitState::kOpen);

  // A new window length cannot reuse the buckets.
  CircuitBreaker w(SmallConfig(), kStart);
  for (int i = 0; i < 3; ++i) Attempt(w, CircuitSignal::kFailure, kStart);
  c = SmallConfig();
  c.window = absl::Seconds(20);
  w.Configure(c, kStart);
  EXPECT_EQ(w.Snapshot(kStart).window_failures, 0);
}

TEST(CircuitBreaker, LoweringHalfOpenProbesBelowTheSuccessesClosesIt) {
  config::CircuitBreakerConfig c = SmallConfig();
  c.half_open_probes = 3;
  CircuitBreaker b(c, kStart);
  OpenWithFailures(b, kStart, 4);
  const absl::Time now = kStart + absl::Seconds(2);
  b.Advance(now);
  b.Finish(b.Start(), CircuitSignal::kSuccess, now);
  b.Finish(b.Start(), CircuitSignal::kSuccess, now);
  ASSERT_EQ(b.state(), CircuitState::kHalfOpen);
  c.half_open_probes = 2;
  const std::optional<CircuitTransition> t = b.Configure(c, now);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->to, CircuitState::kClosed);
}

}  // namespace
}  // namespace rebound::engine
