// EndpointGate alone, on a fake clock (times are values passed in): admission, the ready
// queue's two kinds, counts, gauges and the next wake-up.
#include "server/engine/endpoint_gate.h"

#include <memory>

#include "gtest/gtest.h"
#include "server/common/clock.h"

namespace rebound::engine {
namespace {

using common::JobState;
using common::WaitReason;

class EndpointGateTest : public ::testing::Test {
 protected:
  EndpointGateTest() {
    auto p = std::make_shared<policy::Policy>();
    p->name = "default";
    config_.policies["default"] = p;
    auto patient = std::make_shared<policy::Policy>();
    patient->name = "patient";
    config_.policies["patient"] = patient;
    config::EndpointConfig ep;
    ep.name = "lms";
    ep.base_url = "http://127.0.0.1:1/base";
    ep.max_in_flight = 2;
    ep.policy = "patient";
    config_.endpoints.push_back(ep);
    gate_.Configure(config_.endpoints[0], config_);
  }

  absl::Time Now() const { return clock_.Now(); }
  // Takes every job the gate admits now, counting each as started.
  std::vector<common::JobId> TakeAll() {
    std::vector<common::JobId> ids;
    EndpointGate::Ready r;
    while (gate_.TakeAdmitted(Now(), &r)) {
      gate_.OnStarted(r.retry);
      ids.push_back(r.id);
    }
    return ids;
  }

  config::Config config_;
  common::FakeClock clock_;
  EndpointGate gate_;
};

TEST_F(EndpointGateTest, ConfigureTakesTheEndpointsSettingsAndFallsBackToTheDefaultPolicy) {
  EXPECT_EQ(gate_.base_url(), "http://127.0.0.1:1/base");
  EXPECT_EQ(gate_.default_policy()->name, "patient");
  EXPECT_EQ(gate_.config().max_in_flight, 2);
  config::Config other = config_;
  other.endpoints[0].policy = "gone";
  other.endpoints[0].base_url = "http://127.0.0.1:2";
  gate_.PushReady(7, false);
  gate_.Configure(other.endpoints[0], other);
  EXPECT_EQ(gate_.default_policy()->name, "default");
  EXPECT_EQ(gate_.base_url(), "http://127.0.0.1:2");
  EXPECT_EQ(gate_.ReadySize(), 1u);  // a reload keeps the queue
}

TEST_F(EndpointGateTest, TheInFlightCapHoldsWithoutAWaitReasonUntilAnAttemptEnds) {
  for (common::JobId id = 1; id <= 3; ++id) gate_.PushReady(id, false);
  EXPECT_EQ(TakeAll(), (std::vector<common::JobId>{1, 2}));
  const Admission full = gate_.Admit(Now(), false);
  EXPECT_FALSE(full.admitted);
  EXPECT_EQ(full.reason, WaitReason::kNone);
  EXPECT_EQ(gate_.NextWakeup(Now()), absl::InfiniteFuture());  // a completion wakes the loop
  policy::Outcome ok;
  ok.http_status = 200;
  gate_.OnFinished(false, &ok);
  EXPECT_EQ(gate_.in_flight(), 1);
  EXPECT_EQ(TakeAll(), (std::vector<common::JobId>{3}));
  EXPECT_FALSE(gate_.HasReady());
}

TEST_F(EndpointGateTest, APauseHoldsEveryJobUntilItEndsAndOnlyMovesLater) {
  const absl::Time until = Now() + absl::Seconds(5);
  EXPECT_TRUE(gate_.PauseUntil(until));
  EXPECT_FALSE(gate_.PauseUntil(until - absl::Seconds(1)));
  EXPECT_EQ(gate_.paused_until(), until);
  EXPECT_EQ(gate_.NextWakeup(Now()), absl::InfiniteFuture());  // nothing queued
  gate_.PushReady(1, true);
  gate_.PushReady(2, false);
  const Admission paused = gate_.Admit(Now(), true);
  EXPECT_FALSE(paused.admitted);
  EXPECT_EQ(paused.reason, WaitReason::kEndpointPaused);
  EXPECT_EQ(paused.until, until);
  EXPECT_EQ(gate_.NextWakeup(Now()), until);
  EXPECT_TRUE(TakeAll().empty());
  clock_.Advance(absl::Seconds(5));
  EXPECT_TRUE(gate_.Admit(Now(), true).admitted);
  EXPECT_EQ(TakeAll(), (std::vector<common::JobId>{1, 2}));
}

TEST_F(EndpointGateTest, FirstAttemptsAndRetriesAreTakenOldestFirstAcrossBothQueues) {
  gate_.PushReady(1, false);
  gate_.PushReady(2, true);
  gate_.PushReady(3, false);
  gate_.PushReady(4, true);
  std::vector<std::pair<common::JobId, bool>> taken;
  EndpointGate::Ready r;
  while (gate_.TakeAdmitted(Now(), &r)) {
    taken.emplace_back(r.id, r.retry);  // (not started: in flight stays under the cap)
  }
  EXPECT_EQ(taken, (std::vector<std::pair<common::JobId, bool>>{
                       {1, false}, {2, true}, {3, false}, {4, true}}));
}

TEST_F(EndpointGateTest, CountsMakeTheGauges) {
  gate_.Count(JobState::kQueued, false, +1);
  gate_.Count(JobState::kQueued, false, +1);
  gate_.Count(JobState::kBlocked, false, +1);
  gate_.Count(JobState::kWaitingRetry, true, +1);
  gate_.Count(JobState::kWaitingRetry, false, +1);
  gate_.Count(JobState::kWaitingRetry, false, +1);
  gate_.Count(JobState::kRunning, false, +1);
  gate_.Count(JobState::kQueued, false, -1);
  gate_.OnStarted(false);
  EndpointGauges g = gate_.Gauges(Now());
  EXPECT_FALSE(g.paused);
  EXPECT_EQ(g.queued, 1);
  EXPECT_EQ(g.waiting_paused, 0);
  EXPECT_EQ(g.blocked, 1);
  EXPECT_EQ(g.running, 1);
  EXPECT_EQ(g.waiting_retry_after, 1);
  EXPECT_EQ(g.waiting_backoff, 2);
  EXPECT_EQ(g.in_flight, 1);
  gate_.PauseUntil(Now() + absl::Seconds(1));
  g = gate_.Gauges(Now());
  EXPECT_TRUE(g.paused);
  EXPECT_EQ(g.queued, 0);
  EXPECT_EQ(g.waiting_paused, 1);
  EXPECT_FALSE(gate_.Gauges(Now() + absl::Seconds(1)).paused);
}

}  // namespace
}  // namespace rebound::engine
