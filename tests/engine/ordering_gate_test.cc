// OrderingGate alone: one runner per (tenant, ordering key), blocked jobs in order, the job
// each waits behind, and hand-on.
#include "server/engine/ordering_gate.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rebound::engine {
namespace {

const std::string kScope = OrderingGate::ScopeOf("t", "course-1");

TEST(OrderingGate, ScopesAreTenantAndKeyAndNoKeyIsNoScope) {
  EXPECT_EQ(OrderingGate::ScopeOf("t", ""), "");
  EXPECT_NE(OrderingGate::ScopeOf("t", "k"), OrderingGate::ScopeOf("u", "k"));
  EXPECT_NE(OrderingGate::ScopeOf("t\nk", ""), OrderingGate::ScopeOf("t", "k"));
}

TEST(OrderingGate, BlockedJobsWaitBehindTheOneAheadAndAreHandedOnInOrder) {
  OrderingGate g;
  EXPECT_FALSE(g.Busy(kScope));
  g.SetRunner(kScope, 10);
  EXPECT_TRUE(g.HasRunner(kScope));
  EXPECT_EQ(g.Block(kScope, 11), 10u);  // behind the runner
  EXPECT_EQ(g.Block(kScope, 12), 11u);
  EXPECT_EQ(g.BlockFirst(kScope, 5), 10u);  // a replayed job goes first, behind the runner
  EXPECT_EQ(g.BlockedCount(kScope), 3u);
  EXPECT_TRUE(g.Orphaned().empty());
  g.ReleaseRunner(kScope);
  EXPECT_TRUE(g.Busy(kScope));  // blocked jobs still hold the key
  EXPECT_THAT(g.Orphaned(), ::testing::ElementsAre(kScope));
  EXPECT_EQ(g.TakeNext(kScope), 5u);
  EXPECT_EQ(g.TakeNext(kScope), 11u);
  EXPECT_EQ(g.TakeNext(kScope), 12u);
  EXPECT_EQ(g.TakeNext(kScope), 0u);
  EXPECT_FALSE(g.Busy(kScope));
}

TEST(OrderingGate, RemovingABlockedJobNamesTheJobBehindItAndTheOneNowAheadOfThat) {
  OrderingGate g;
  g.SetRunner(kScope, 1);
  g.Block(kScope, 2);
  g.Block(kScope, 3);
  g.Block(kScope, 4);
  common::JobId ahead = 99;
  EXPECT_EQ(g.Remove(kScope, 3, &ahead), 4u);  // middle: 4 now waits behind 2
  EXPECT_EQ(ahead, 2u);
  EXPECT_EQ(g.Remove(kScope, 2, &ahead), 4u);  // first: 4 now waits behind the runner
  EXPECT_EQ(ahead, 1u);
  EXPECT_EQ(g.Remove(kScope, 4, &ahead), 0u);  // last: nobody behind it
  EXPECT_EQ(ahead, 0u);
  EXPECT_EQ(g.Remove(kScope, 4, &ahead), 0u);  // unknown
  EXPECT_EQ(g.BlockedCount(kScope), 0u);
  EXPECT_TRUE(g.HasRunner(kScope));
  EXPECT_EQ(g.Block(kScope, 5), 1u);
}

TEST(OrderingGate, KeysAreIndependent) {
  OrderingGate g;
  const std::string other = OrderingGate::ScopeOf("t", "course-2");
  g.SetRunner(kScope, 1);
  EXPECT_FALSE(g.Busy(other));
  EXPECT_EQ(g.Block(other, 2), 0u);  // no runner yet (recovery): nobody ahead
  EXPECT_THAT(g.Orphaned(), ::testing::ElementsAre(other));
}

}  // namespace
}  // namespace rebound::engine
