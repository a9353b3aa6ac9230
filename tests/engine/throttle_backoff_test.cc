// ThrottleBackoff alone, on a fake clock: a level rises once per backoff that did not suffice,
// not once per throttled answer.
#include "server/engine/throttle_backoff.h"

#include "gtest/gtest.h"
#include "server/common/clock.h"

namespace rebound::engine {
namespace {

class ThrottleBackoffTest : public ::testing::Test {
 protected:
  absl::Time Now() const { return clock_.Now(); }
  common::FakeClock clock_;
  ThrottleBackoff backoff_;
};

TEST_F(ThrottleBackoffTest, TheFirstThrottleIsLevelOne) {
  EXPECT_EQ(backoff_.level(), 0);
  EXPECT_EQ(backoff_.LevelFor(Now()), 1);
  EXPECT_EQ(backoff_.LevelFor(Now() - absl::Hours(1)), 1);
  backoff_.Begin(1, Now());
  EXPECT_EQ(backoff_.level(), 1);
  EXPECT_EQ(backoff_.since(), Now());
}

// 64 attempts in flight come back throttled together: one backoff, not 64 steps of it.
TEST_F(ThrottleBackoffTest, AttemptsSentBeforeTheBackoffBeganDoNotRaiseIt) {
  const absl::Time sent = Now();
  clock_.Advance(absl::Milliseconds(100));
  backoff_.Begin(backoff_.LevelFor(sent), Now());
  for (int i = 0; i < 63; ++i) {
    clock_.Advance(absl::Milliseconds(1));
    const int level = backoff_.LevelFor(sent);
    EXPECT_EQ(level, 1);
    backoff_.Begin(level, Now());
  }
  EXPECT_EQ(backoff_.level(), 1);
}

TEST_F(ThrottleBackoffTest, AThrottleOfAnAttemptSentAfterTheBackoffBeganRaisesIt) {
  backoff_.Begin(backoff_.LevelFor(Now()), Now());
  for (int expected = 2; expected <= 5; ++expected) {
    clock_.Advance(absl::Seconds(1));  // the pause ended; an attempt leaves now
    const absl::Time sent = Now();
    clock_.Advance(absl::Milliseconds(30));
    const int level = backoff_.LevelFor(sent);
    EXPECT_EQ(level, expected);
    backoff_.Begin(level, Now());
  }
  EXPECT_EQ(backoff_.level(), 5);
}

TEST_F(ThrottleBackoffTest, ASuccessBringsTheLevelBackToNone) {
  backoff_.Begin(3, Now());
  backoff_.Reset();
  EXPECT_EQ(backoff_.level(), 0);
  EXPECT_EQ(backoff_.since(), absl::InfinitePast());
  EXPECT_EQ(backoff_.LevelFor(Now() - absl::Hours(1)), 1);
}

TEST_F(ThrottleBackoffTest, TheLevelStopsRisingAtItsMax) {
  for (int i = 0; i < 100; ++i) {
    clock_.Advance(absl::Seconds(1));
    backoff_.Begin(backoff_.LevelFor(Now()), Now());
  }
  EXPECT_EQ(backoff_.level(), ThrottleBackoff::kMaxLevel);
  EXPECT_EQ(backoff_.LevelFor(Now() + absl::Seconds(1)), ThrottleBackoff::kMaxLevel);
  // A lower level never lowers it, and an older time never moves `since` back.
  const absl::Time since = backoff_.since();
  backoff_.Begin(1, since - absl::Seconds(5));
  EXPECT_EQ(backoff_.level(), ThrottleBackoff::kMaxLevel);
  EXPECT_EQ(backoff_.since(), since);
}

}  // namespace
}  // namespace rebound::engine
