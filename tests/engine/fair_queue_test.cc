#include "server/engine/fair_queue.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace rebound::engine {
namespace {

using common::JobId;
using common::Priority;

const std::vector<std::string> kNoScopes;

class FairQueueTest : public ::testing::Test {
 protected:
  void Push(JobId id, absl::string_view lane, Priority p = Priority::kNormal, bool retry = false) {
    q_.Push(p, lane, kNoScopes, FairQueue::Item{id, seq_++, absl::UnixEpoch(), retry});
  }
  // Takes the next job that `refuse` (a lane key) does not hold, of the kinds allowed; 0 when
  // none.
  JobId Take(absl::string_view refuse = "", bool firsts = true, bool retries = true) {
    const FairQueue::Item* item =
        q_.Peek(firsts, retries, [&](const FairQueue::LaneInfo& lane, const FairQueue::Item&) {
          return lane.key != refuse;
        });
    if (item == nullptr) return 0;
    const JobId id = item->id;
    q_.Pop();
    return id;
  }

  FairQueue q_;
  uint64_t seq_ = 0;
};

TEST_F(FairQueueTest, OneLaneIsFirstInFirstOut) {
  for (JobId id = 1; id <= 5; ++id) Push(id, "district-a");
  for (JobId id = 1; id <= 5; ++id) EXPECT_EQ(Take(), id);
  EXPECT_EQ(Take(), 0);
  EXPECT_TRUE(q_.empty());
}

TEST_F(FairQueueTest, LanesTakeTurnsOneJobEach) {
  Push(1, "a");
  Push(2, "a");
  Push(3, "a");
  Push(11, "b");
  Push(12, "b");
  Push(21, "c");
  std::vector<JobId> order;
  while (JobId id = Take()) order.push_back(id);
  EXPECT_EQ(order, (std::vector<JobId>{1, 11, 21, 2, 12, 3}));
}

TEST_F(FairQueueTest, HigherPriorityFirstWhateverTheLane) {
  Push(1, "a", Priority::kLow);
  Push(2, "b", Priority::kNormal);
  Push(3, "a", Priority::kHigh);
  Push(4, "c", Priority::kUnspecified);  // normal
  EXPECT_EQ(Take(), 3);
  EXPECT_EQ(Take(), 2);
  EXPECT_EQ(Take(), 4);
  EXPECT_EQ(Take(), 1);
}

TEST_F(FairQueueTest, ARefusedLaneKeepsItsJobsAndHoldsNoOtherBack) {
  Push(1, "out-of-quota");
  Push(2, "out-of-quota");
  Push(3, "fine");
  Push(4, "fine");
  EXPECT_EQ(Take("out-of-quota"), 3);
  EXPECT_EQ(Take("out-of-quota"), 4);
  EXPECT_EQ(Take("out-of-quota"), 0);
  EXPECT_EQ(q_.size(), 2u);
  EXPECT_EQ(Take(), 1);  // admitted again: it had kept its order
  EXPECT_EQ(Take(), 2);
}

TEST_F(FairQueueTest, AskedAboutLaneHeadsOnlyAndOncePerLane) {
  for (JobId id = 1; id <= 100; ++id) Push(id, "backfill");
  Push(1000, "other");
  int asked = 0;
  const FairQueue::Item* item =
      q_.Peek(true, true, [&](const FairQueue::LaneInfo& lane, const FairQueue::Item& head) {
        ++asked;
        EXPECT_EQ(head.id, lane.key == "backfill" ? 1 : 1000);
        if (lane.key == "backfill") {
          EXPECT_EQ(lane.firsts, 100u);
          EXPECT_EQ(lane.retries, 0u);
        }
        return false;
      });
  EXPECT_EQ(item, nullptr);
  EXPECT_EQ(asked, 2);
}

// The fairness bound (fair_queue.h): with K lanes holding jobs of a priority, the n-th job of a
// lane is among the first n x K taken. A 100,000-job backfill and nine other districts' ten
// grade changes each, all queued before any starts: every one of the 90 starts within 10 x 10.
TEST_F(FairQueueTest, ABackfillDelaysAnotherDistrictsJobsByAtMostTheNumberOfLanesEach) {
  constexpr int kBackfill = 100'000;
  constexpr int kDistricts = 9;
  constexpr int kEach = 10;
  for (JobId id = 1; id <= kBackfill; ++id) Push(id, "district-0");
  for (int d = 1; d <= kDistricts; ++d) {
    for (int n = 1; n <= kEach; ++n) Push(1'000'000 * d + n, "district-" + std::to_string(d));
  }
  constexpr int kLanes = kDistricts + 1;
  int taken = 0;
  int others = 0;
  int last_other = 0;
  while (others < kDistricts * kEach) {
    const JobId id = Take();
    ASSERT_NE(id, 0);
    ++taken;
    if (id < 1'000'000) continue;
    ++others;
    const int n = static_cast<int>(id % 1'000'000);
    EXPECT_LE(taken, n * kLanes) << "job " << n << " of district " << id / 1'000'000;
    last_other = taken;
  }
  EXPECT_EQ(last_other, kEach * kLanes);  // the backfill took one turn in ten
  EXPECT_EQ(q_.size(), static_cast<size_t>(kBackfill - (last_other - others)));
}

// Retries wait apart from first attempts but in the same turns: another district's retry,
// ready long after a backfill's first attempts were queued, still goes at its lane's turn.
TEST_F(FairQueueTest, ARetryTakesItsLanesTurnNotItsPlaceInTimeBehindABackfill) {
  for (JobId id = 1; id <= 1000; ++id) Push(id, "district-a");
  Push(5000, "district-b", Priority::kNormal, /*retry=*/true);
  EXPECT_EQ(Take(), 1);
  EXPECT_EQ(Take(), 5000);
  // And the other way round: a lane's first attempt goes at its turn behind older retries.
  for (JobId id = 6000; id < 6100; ++id) Push(id, "retries-a", Priority::kNormal, true);
  Push(7000, "firsts-b");
  std::vector<JobId> order;
  for (int i = 0; i < 4; ++i) order.push_back(Take());
  EXPECT_NE(std::find(order.begin(), order.end(), 7000), order.end());
}

TEST_F(FairQueueTest, WithinALaneTheOlderFrontGoesFirstAndAHeldKindLetsTheOtherPass) {
  Push(1, "a", Priority::kNormal, /*retry=*/true);
  Push(2, "a");
  Push(3, "a", Priority::kNormal, /*retry=*/true);
  EXPECT_EQ(q_.retries(), 2u);
  EXPECT_EQ(Take("", /*firsts=*/true, /*retries=*/false), 2);  // the retry budget holds retries
  EXPECT_EQ(Take("", true, false), 0);
  EXPECT_EQ(q_.FrontRetry()->id, 1);
  EXPECT_EQ(Take(), 1);
  EXPECT_EQ(Take(), 3);
  EXPECT_EQ(q_.retries(), 0u);
  EXPECT_EQ(Take("", false, false), 0);
}

TEST_F(FairQueueTest, ALaneThatComesBackWaitsBehindTheLanesAlreadyWaiting) {
  Push(1, "a");
  Push(2, "b");
  EXPECT_EQ(Take(), 1);  // "a" is empty now
  Push(3, "c");
  Push(4, "a");
  EXPECT_EQ(Take(), 2);
  EXPECT_EQ(Take(), 3);
  EXPECT_EQ(Take(), 4);
}

TEST_F(FairQueueTest, DrainGivesEveryJobOldestFirstAndEmptiesTheQueue) {
  Push(1, "a", Priority::kLow);
  Push(2, "b", Priority::kNormal, /*retry=*/true);
  Push(3, "a");
  std::vector<FairQueue::Item> items;
  q_.Drain(&items);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].id, 1);
  EXPECT_TRUE(items[1].retry);
  EXPECT_EQ(items[2].id, 3);
  EXPECT_EQ(q_.retries(), 0u);
  EXPECT_TRUE(q_.empty());
  EXPECT_EQ(q_.lanes(), 0u);
  EXPECT_EQ(Take(), 0);
}

TEST_F(FairQueueTest, EmptiedLanesAreForgottenPastABound) {
  for (JobId id = 1; id <= 5000; ++id) {
    Push(id, "one-off-" + std::to_string(id));
    EXPECT_EQ(Take(), id);
  }
  EXPECT_EQ(q_.lanes(), 0u);
  Push(9, "x");
  EXPECT_EQ(q_.lanes(), 1u);
  EXPECT_EQ(Take(), 9);
}

}  // namespace
}  // namespace rebound::engine
