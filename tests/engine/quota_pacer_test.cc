// QuotaPacer alone, on a fake clock: concurrency from the remaining quota (Canvas's bucket),
// spreading before a reset (D2L's credits, Clever's window), and nothing at all without readings.
#include "server/engine/quota_pacer.h"

#include "gtest/gtest.h"
#include "server/common/clock.h"

namespace rebound::engine {
namespace {

constexpr int64_t kMax = 64;

class QuotaPacerTest : public ::testing::Test {
 protected:
  absl::Time Now() const { return clock_.Now(); }
  // An answer carrying `remaining`, to an attempt sent `rtt` ago, with `in_flight` still out.
  void Answer(std::optional<double> remaining, int64_t in_flight = 0, bool throttled = false,
              absl::Duration rtt = absl::Milliseconds(20)) {
    clock_.Advance(absl::Milliseconds(1));  // sent after the previous answer
    const absl::Time started = Now();
    clock_.Advance(rtt);
    QuotaReading r;
    r.remaining = remaining;
    r.cost = cost_;
    r.limit = limit_;
    r.reset_at = reset_at_;
    pacer_.OnAnswer(r, throttled, started, Now(), in_flight, kMax);
  }

  common::FakeClock clock_;
  config::PacingConfig config_;
  QuotaPacer pacer_{config_};
  std::optional<double> cost_ = 1.0;
  std::optional<double> limit_;
  std::optional<absl::Time> reset_at_;
};

TEST_F(QuotaPacerTest, WithoutReadingsNothingIsLimited) {
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), kMax);
  for (int i = 0; i < 5; ++i) Answer(std::nullopt, 10, /*throttled=*/i == 2);
  EXPECT_EQ(pacer_.Allowed(kMax, Now()),
            kMax);  // a throttle without a reading does not start pacing
  EXPECT_EQ(pacer_.NextStartAt(), absl::InfinitePast());
  EXPECT_FALSE(pacer_.Snapshot(kMax, Now()).active);
}

// Canvas: no limit header; the largest remaining seen stands for it (600 here), so the low-water
// mark is 150 (ratio 0.25).
TEST_F(QuotaPacerTest, BelowTheLowWaterMarkConcurrencyHalvesOncePerRoundTrip) {
  Answer(599, /*in_flight=*/15);  // pacing starts from what is on the wire: 16
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), 16);
  Answer(100, 15);  // sent after the start: below the mark, halve
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), 8);
  // Answers to attempts that were on the wire together: one signal.
  const absl::Time sent_before = Now() - absl::Milliseconds(50);
  QuotaReading low;
  low.remaining = 90;
  for (int i = 0; i < 5; ++i) pacer_.OnAnswer(low, false, sent_before, Now(), 7, kMax);
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), 8);
  Answer(80, 7);
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), 4);
  for (int i = 0; i < 5; ++i) Answer(10, 1);
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), 1);  // min_in_flight
  EXPECT_EQ(pacer_.Snapshot(kMax, Now()).low_water, 150);
}

TEST_F(QuotaPacerTest, AboveTheMarkConcurrencyGrowsByOneAndAboveTwiceTheMarkByHalf) {
  Answer(599, 0);  // starts at 1
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), 1);
  Answer(200, 0);  // between 150 and 300: +1
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), 2);
  Answer(400, 1);  // >= 300: x1.5, at least +1
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), 3);
  Answer(400, 2);
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), 4);  // 4.5
  for (int i = 0; i < 20; ++i) Answer(599, 3);
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), kMax);
}

TEST_F(QuotaPacerTest, AThrottleWhilePacingDropsToTheMinimum) {
  Answer(599, 9);
  ASSERT_EQ(pacer_.Allowed(kMax, Now()), 10);
  Answer(0, 5, /*throttled=*/true);
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), 1);
}

TEST_F(QuotaPacerTest, AConfiguredLowWaterAndTheLimitHeaderSetTheMark) {
  limit_ = 1000;
  Answer(900, 0);
  EXPECT_EQ(pacer_.Snapshot(kMax, Now()).low_water, 250);
  config_.low_water = 50;
  pacer_.Configure(config_);
  EXPECT_EQ(pacer_.Snapshot(kMax, Now()).low_water, 50);
}

// D2L / Clever: a window with a reset. Below the mark, what is left is spread until the reset;
// with nothing left, the next start waits for it.
TEST_F(QuotaPacerTest, BelowTheMarkStartsAreSpreadUntilTheReset) {
  limit_ = 100;
  cost_ = 1;
  reset_at_ = Now() + absl::Seconds(10) + absl::Milliseconds(21);  // 10 s after the answer
  Answer(10, 0);  // 10 left for the 10 s to the reset: one start every 10 s / 11
  EXPECT_EQ(pacer_.NextStartAt(), Now() + absl::Seconds(10) / 11);
  pacer_.OnStarted(Now());  // 9 left
  EXPECT_EQ(pacer_.NextStartAt(), Now() + absl::Seconds(1));
  // Nothing left: the next start waits for the reset.
  Answer(0.5, 1);
  EXPECT_EQ(pacer_.NextStartAt(), *reset_at_);
  // The window turned: no spacing, and the stale reading limits nothing.
  clock_.Advance(*reset_at_ - Now());
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), kMax);
  reset_at_ = Now() + absl::Seconds(60);
  Answer(99, 0);
  EXPECT_EQ(pacer_.NextStartAt(), absl::InfinitePast());
  pacer_.OnStarted(Now());
  EXPECT_EQ(pacer_.NextStartAt(), absl::InfinitePast());
}

// The upstream counted the answered request and those sent before it, not those sent after: the
// estimate takes those off what the answer says is left.
TEST_F(QuotaPacerTest, StartsAfterTheAnsweredRequestComeOffWhatItSaysIsLeft) {
  limit_ = 100;
  cost_ = 2;
  reset_at_ = Now() + absl::Minutes(1);
  Answer(90, 0);  // pacing begins
  const absl::Time answered_sent = Now();
  pacer_.OnStarted(answered_sent);
  clock_.Advance(absl::Milliseconds(5));
  pacer_.OnStarted(Now());
  pacer_.OnStarted(Now());
  pacer_.OnEnded(answered_sent);
  QuotaReading r;
  r.remaining = 6;  // the two sent after it are not in this: 6 - 2 x 2 = 2, one request's cost
  r.cost = 2;
  r.reset_at = reset_at_;
  pacer_.OnAnswer(r, false, answered_sent, Now(), 2, kMax);
  EXPECT_EQ(pacer_.NextStartAt(), Now() + (*reset_at_ - Now()) / 2);
  pacer_.OnStarted(Now());  // 0 left
  EXPECT_EQ(pacer_.NextStartAt(), *reset_at_);
}

TEST_F(QuotaPacerTest, AnswersWithoutAReadingGrowItAndManyEndPacing) {
  Answer(10, 0);
  ASSERT_TRUE(pacer_.Snapshot(kMax, Now()).active);
  ASSERT_EQ(pacer_.Allowed(kMax, Now()), 1);
  Answer(std::nullopt, 0);
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), 2);
  for (int i = 0; i < 16; ++i) Answer(std::nullopt, 0);
  EXPECT_FALSE(pacer_.Snapshot(kMax, Now()).active);
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), kMax);
}

TEST_F(QuotaPacerTest, StartInFlightProbesUntilTheFirstAnswer) {
  config_.start_in_flight = 1;
  QuotaPacer probing(config_);
  EXPECT_EQ(probing.Allowed(kMax, Now()), 1);
  QuotaReading r;
  r.remaining = 599;
  probing.OnAnswer(r, false, Now() - absl::Milliseconds(20), Now(), 0, kMax);
  EXPECT_TRUE(probing.Snapshot(kMax, Now()).active);
  EXPECT_EQ(probing.Allowed(kMax, Now()), 1);  // pacing from what was out: it grows per trip
  // An endpoint whose first answer announces no quota is not paced at all.
  QuotaPacer silent(config_);
  silent.OnAnswer(QuotaReading{}, false, Now() - absl::Milliseconds(20), Now(), 0, kMax);
  EXPECT_EQ(silent.Allowed(kMax, Now()), kMax);
}

TEST_F(QuotaPacerTest, DisabledPacingNeverLimits) {
  config_.enabled = false;
  pacer_.Configure(config_);
  Answer(0, 10, /*throttled=*/true);
  EXPECT_EQ(pacer_.Allowed(kMax, Now()), kMax);
}

}  // namespace
}  // namespace rebound::engine
