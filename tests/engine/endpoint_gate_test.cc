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

struct RecordingObserver : EngineObserver {
  void OnCircuitChanged(int endpoint, CircuitState, CircuitState to, const std::string&) override {
    EXPECT_EQ(endpoint, 0);
    circuit.push_back(to);
  }
  void OnRetryDelayed(int endpoint) override {
    EXPECT_EQ(endpoint, 0);
    ++retries_delayed;
  }
  std::vector<CircuitState> circuit;
  int retries_delayed = 0;
};

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
    ep.slow_start.window = absl::ZeroDuration();  // the protection tests below turn it on
    config_.endpoints.push_back(ep);
    gate_.Configure(config_.endpoints[0], config_, Now(), 0, &observer_);
  }

  absl::Time Now() const { return clock_.Now(); }
  // Takes every job the gate admits now, counting each as started.
  std::vector<common::JobId> TakeAll() {
    std::vector<common::JobId> ids;
    EndpointGate::Ready r;
    while (gate_.TakeAdmitted(Now(), &r)) {
      tickets_.push_back(gate_.OnStarted(r, Now()));
      ids.push_back(r.id);
    }
    return ids;
  }

  config::Config config_;
  common::FakeClock clock_;
  RecordingObserver observer_;
  EndpointGate gate_;
  std::vector<AttemptTicket> tickets_;
};

TEST_F(EndpointGateTest, ConfigureTakesTheEndpointsSettingsAndFallsBackToTheDefaultPolicy) {
  EXPECT_EQ(gate_.base_url(), "http://127.0.0.1:1/base");
  EXPECT_EQ(gate_.default_policy()->name, "patient");
  EXPECT_EQ(gate_.config().max_in_flight, 2);
  config::Config other = config_;
  other.endpoints[0].policy = "gone";
  other.endpoints[0].base_url = "http://127.0.0.1:2";
  gate_.PushReady(ReadyJob{7, false}, Now());
  gate_.Configure(other.endpoints[0], other, Now());
  EXPECT_EQ(gate_.default_policy()->name, "default");
  EXPECT_EQ(gate_.base_url(), "http://127.0.0.1:2");
  EXPECT_EQ(gate_.ReadySize(), 1u);  // a reload keeps the queue
}

TEST_F(EndpointGateTest, TheInFlightCapHoldsWithoutAWaitReasonUntilAnAttemptEnds) {
  for (common::JobId id = 1; id <= 3; ++id) gate_.PushReady(ReadyJob{id, false}, Now());
  EXPECT_EQ(TakeAll(), (std::vector<common::JobId>{1, 2}));
  const Admission full = gate_.Admit(Now(), false);
  EXPECT_FALSE(full.admitted);
  EXPECT_EQ(full.reason, WaitReason::kNone);
  EXPECT_EQ(gate_.NextWakeup(Now()), absl::InfiniteFuture());  // a completion wakes the loop
  const CircuitSignal ok = CircuitSignal::kSuccess;
  gate_.OnFinished(tickets_[0], &ok, Now());
  EXPECT_EQ(gate_.in_flight(), 1);
  EXPECT_EQ(TakeAll(), (std::vector<common::JobId>{3}));
  EXPECT_FALSE(gate_.HasReady());
}

TEST_F(EndpointGateTest, APauseHoldsEveryJobUntilItEndsAndOnlyMovesLater) {
  const absl::Time until = Now() + absl::Seconds(5);
  EXPECT_TRUE(gate_.PauseUntil(until, "429"));
  EXPECT_FALSE(gate_.PauseUntil(until - absl::Seconds(1), "429"));
  EXPECT_EQ(gate_.paused_until(), until);
  EXPECT_EQ(gate_.NextWakeup(Now()), absl::InfiniteFuture());  // nothing queued
  gate_.PushReady(ReadyJob{1, true}, Now());
  gate_.PushReady(ReadyJob{2, false}, Now());
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

TEST_F(EndpointGateTest, AThrottleBackoffPauseShowsAsRateLimitedAndItsLevelResetsOnASuccess) {
  gate_.PushReady(ReadyJob{1, true}, Now());
  const absl::Time sent = Now();
  EXPECT_EQ(gate_.ThrottleLevel(sent), 1);
  clock_.Advance(absl::Milliseconds(50));
  gate_.OnThrottleBackoff(1, Now());
  EXPECT_TRUE(gate_.PauseUntil(Now() + absl::Seconds(1), "throttle backoff", true));
  const Admission held = gate_.Admit(Now(), true);
  EXPECT_FALSE(held.admitted);
  EXPECT_EQ(held.reason, WaitReason::kRateLimited);
  EXPECT_EQ(held.until, Now() + absl::Seconds(1));
  EXPECT_EQ(gate_.Status(Now()).throttle_level, 1);
  // An attempt that was on the wire before the backoff began gets the same level; one sent
  // after it, the next.
  EXPECT_EQ(gate_.ThrottleLevel(sent), 1);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(TakeAll(), (std::vector<common::JobId>{1}));
  EXPECT_EQ(gate_.ThrottleLevel(Now()), 2);
  // A pause for the upstream's own time is ENDPOINT_PAUSED.
  EXPECT_TRUE(gate_.PauseUntil(Now() + absl::Seconds(2), "Retry-After"));
  EXPECT_EQ(gate_.Admit(Now(), false).reason, WaitReason::kEndpointPaused);
  const CircuitSignal throttle = CircuitSignal::kThrottle;
  gate_.OnFinished(tickets_[0], &throttle, Now());
  EXPECT_EQ(gate_.Status(Now()).throttle_level, 1);  // a throttle is no success
  tickets_.push_back(gate_.OnStarted(EndpointGate::Ready{0, false, {}}, Now()));
  const CircuitSignal ok = CircuitSignal::kSuccess;
  gate_.OnFinished(tickets_[1], &ok, Now());
  EXPECT_EQ(gate_.Status(Now()).throttle_level, 0);
  EXPECT_EQ(gate_.ThrottleLevel(Now() - absl::Hours(1)), 1);
}

TEST_F(EndpointGateTest, FirstAttemptsAndRetriesAreTakenOldestFirstAcrossBothQueues) {
  gate_.PushReady(ReadyJob{1, false}, Now());
  gate_.PushReady(ReadyJob{2, true}, Now());
  gate_.PushReady(ReadyJob{3, false}, Now());
  gate_.PushReady(ReadyJob{4, true}, Now());
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
  gate_.OnStarted(EndpointGate::Ready{0, false, {}}, Now());
  EndpointGauges g = gate_.Gauges(Now());
  EXPECT_FALSE(g.paused);
  EXPECT_EQ(g.queued, 1);
  EXPECT_EQ(g.waiting_paused, 0);
  EXPECT_EQ(g.blocked, 1);
  EXPECT_EQ(g.running, 1);
  EXPECT_EQ(g.waiting_retry_after, 1);
  EXPECT_EQ(g.waiting_backoff, 2);
  EXPECT_EQ(g.in_flight, 1);
  gate_.PauseUntil(Now() + absl::Seconds(1), "429");
  g = gate_.Gauges(Now());
  EXPECT_TRUE(g.paused);
  EXPECT_EQ(g.queued, 0);
  EXPECT_EQ(g.waiting_paused, 1);
  EXPECT_FALSE(gate_.Gauges(Now() + absl::Seconds(1)).paused);
}

// --- Protection: each check alone, then their order -----------------------------------------

class ProtectedGateTest : public EndpointGateTest {
 protected:
  // Applies `edit` to the endpoint's settings (a reload that keeps the gate's state).
  template <typename Edit>
  void Reconfigure(Edit edit) {
    edit(config_.endpoints[0]);
    gate_.Configure(config_.endpoints[0], config_, Now());
  }
  void Finish(size_t ticket, CircuitSignal signal) {
    gate_.OnFinished(tickets_[ticket], &signal, Now());
  }
};

TEST_F(ProtectedGateTest, AnOperatorPauseHoldsEveryJobFirstAndEndsByItselfOrWhenLifted) {
  gate_.PauseUntil(Now() + absl::Seconds(30), "429");  // shorter reasons come after it
  const absl::Time until = Now() + absl::Minutes(10);
  gate_.SetOperatorPause(until, "maintenance", Now());
  gate_.PushReady(ReadyJob{1, false}, Now());
  const Admission a = gate_.Admit(Now(), false);
  EXPECT_EQ(a.reason, WaitReason::kOperatorPaused);
  EXPECT_EQ(a.until, until);
  EXPECT_TRUE(TakeAll().empty());
  EXPECT_EQ(gate_.Status(Now()).operator_reason, "maintenance");
  EXPECT_TRUE(gate_.ClearOperatorPause(Now()));
  EXPECT_FALSE(gate_.ClearOperatorPause(Now()));
  EXPECT_EQ(gate_.Admit(Now(), false).reason, WaitReason::kEndpointPaused);
  // Until resumed: no time to wake for.
  gate_.SetOperatorPause(absl::InfiniteFuture(), "", Now());
  clock_.Advance(absl::Minutes(30));
  gate_.Tick(Now());
  EXPECT_EQ(gate_.Admit(Now(), false).reason, WaitReason::kOperatorPaused);
  EXPECT_EQ(gate_.NextWakeup(Now()), absl::InfiniteFuture());
  // A pause with an end lapses at it.
  gate_.SetOperatorPause(Now() + absl::Seconds(1), "short", Now());
  clock_.Advance(absl::Seconds(1));
  gate_.Tick(Now());
  EXPECT_FALSE(gate_.OperatorPaused(Now()));
  EXPECT_EQ(TakeAll(), (std::vector<common::JobId>{1}));
}

TEST_F(ProtectedGateTest, AnOpenBreakerHoldsJobsUntilItsProbeTimeThenLetsOnlyTheProbesThrough) {
  Reconfigure([](config::EndpointConfig& ep) {
    ep.max_in_flight = 10;
    ep.circuit_breaker.min_requests = 2;
    ep.circuit_breaker.half_open_probes = 1;
    ep.circuit_breaker.open_duration = absl::Seconds(2);
  });
  for (common::JobId id = 1; id <= 5; ++id) gate_.PushReady(ReadyJob{id, false}, Now());
  EXPECT_EQ(TakeAll().size(), 5u);
  Finish(0, CircuitSignal::kFailure);
  Finish(1, CircuitSignal::kFailure);  // 2 of 2 failed: open
  ASSERT_EQ(observer_.circuit, (std::vector<CircuitState>{CircuitState::kOpen}));
  Finish(2, CircuitSignal::kSuccess);  // started before the opening: does not count
  for (common::JobId id = 6; id <= 8; ++id) gate_.PushReady(ReadyJob{id, true}, Now());
  const Admission held = gate_.Admit(Now(), true);
  EXPECT_EQ(held.reason, WaitReason::kCircuitOpen);
  EXPECT_EQ(held.until, Now() + absl::Seconds(2));
  EXPECT_EQ(gate_.NextWakeup(Now()), Now() + absl::Seconds(2));
  EXPECT_TRUE(TakeAll().empty());  // nothing taken: no attempt spent
  EXPECT_TRUE(gate_.RefreshHolds(Now()));
  EXPECT_EQ(gate_.hold(true).reason, WaitReason::kCircuitOpen);
  clock_.Advance(absl::Seconds(2));
  gate_.Tick(Now());
  EXPECT_EQ(gate_.Status(Now()).circuit, CircuitState::kHalfOpen);
  EXPECT_EQ(TakeAll(), (std::vector<common::JobId>{6}));  // one probe
  EXPECT_EQ(gate_.Admit(Now(), true).reason, WaitReason::kCircuitOpen);
  EXPECT_EQ(gate_.NextWakeup(Now()), absl::InfiniteFuture());  // the probe's end wakes it
  Finish(5, CircuitSignal::kSuccess);
  EXPECT_EQ(observer_.circuit.back(), CircuitState::kClosed);
  EXPECT_EQ(TakeAll(), (std::vector<common::JobId>{7, 8}));
}

TEST_F(ProtectedGateTest, ClosingTheBreakerOrEndingAPauseStartsASlowRamp) {
  Reconfigure([](config::EndpointConfig& ep) {
    ep.max_in_flight = 10;
    ep.slow_start.window = absl::Seconds(10);
  });
  gate_.PauseUntil(Now() + absl::Seconds(1), "429");
  gate_.Tick(Now());
  for (common::JobId id = 1; id <= 20; ++id) gate_.PushReady(ReadyJob{id, false}, Now());
  clock_.Advance(absl::Seconds(1));
  gate_.Tick(Now());  // the pause ended: ramp from 1
  EXPECT_EQ(TakeAll().size(), 1u);
  const Admission capped = gate_.Admit(Now(), false);
  EXPECT_EQ(capped.reason, WaitReason::kNone);  // the cap holds it: ready, not waiting
  EXPECT_EQ(capped.until, Now() + absl::Seconds(1) + absl::Nanoseconds(1));
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(gate_.Status(Now()).allowed_in_flight, 5);
  EXPECT_EQ(TakeAll().size(), 4u);
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(TakeAll().size(), 5u);  // the whole cap after the window
}

TEST_F(ProtectedGateTest, OverBudgetRetriesWaitWhileFirstAttemptsGoAndEachHoldIsCountedOnce) {
  Reconfigure([](config::EndpointConfig& ep) {
    ep.max_in_flight = 10;
    ep.retry_budget.min_retries = 1;
    ep.retry_budget.ratio = 0;
  });
  gate_.PushReady(ReadyJob{1, true}, Now());
  gate_.PushReady(ReadyJob{2, true}, Now());
  gate_.PushReady(ReadyJob{3, false}, Now());
  EXPECT_EQ(TakeAll(), (std::vector<common::JobId>{1, 3}));  // one retry in flight at most
  EXPECT_EQ(gate_.Admit(Now(), true).reason, WaitReason::kRetryBudget);
  EXPECT_TRUE(gate_.Admit(Now(), false).admitted);
  EXPECT_TRUE(TakeAll().empty());
  EXPECT_EQ(observer_.retries_delayed, 1);  // job 2, counted once however often it is asked
  Finish(0, CircuitSignal::kSuccess);
  EXPECT_EQ(TakeAll(), (std::vector<common::JobId>{2}));
}

TEST_F(ProtectedGateTest, AnEmptyBucketHoldsUntilTheNextTokenAndOnlyAdmissionsTakeTokens) {
  Reconfigure([](config::EndpointConfig& ep) {
    ep.max_in_flight = 100;
    ep.rate_limit.rate = 2;
    ep.rate_limit.burst = 2;
  });
  for (common::JobId id = 1; id <= 5; ++id) gate_.PushReady(ReadyJob{id, false}, Now());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(gate_.Admit(Now(), false).admitted);  // asking is free
  EXPECT_EQ(TakeAll().size(), 2u);
  const Admission empty = gate_.Admit(Now(), false);
  EXPECT_EQ(empty.reason, WaitReason::kRateLimited);
  EXPECT_EQ(empty.until, Now() + absl::Milliseconds(500));
  EXPECT_EQ(gate_.NextWakeup(Now()), Now() + absl::Milliseconds(500));
  clock_.Advance(absl::Milliseconds(500));
  EXPECT_EQ(TakeAll().size(), 1u);
  EXPECT_NEAR(gate_.Gauges(Now()).tokens, 0, 1e-9);
}

TEST_F(ProtectedGateTest, SendsLeaveOnePerIntervalEvenAfterABurstOfAdmissions) {
  Reconfigure([](config::EndpointConfig& ep) {
    ep.max_in_flight = 100;
    ep.rate_limit.rate = 10;
    ep.rate_limit.burst = 4;
  });
  ASSERT_TRUE(gate_.paces_sends());
  for (common::JobId id = 1; id <= 4; ++id) gate_.PushReady(ReadyJob{id, false}, Now());
  ASSERT_EQ(TakeAll().size(), 4u);  // the burst is spent at admission
  for (common::JobId id = 1; id <= 4; ++id) gate_.HoldForSend(id, Now());
  common::JobId sent = 0;
  ASSERT_TRUE(gate_.ReleaseSend(Now(), &sent));
  EXPECT_EQ(sent, 1);
  // The other three do not follow at once: they are the upstream's allowance for delivery
  // delays of up to (burst - 1) / rate = 300ms.
  EXPECT_FALSE(gate_.ReleaseSend(Now(), &sent));
  EXPECT_EQ(gate_.NextWakeup(Now()), Now() + absl::Milliseconds(100));
  for (common::JobId id = 2; id <= 4; ++id) {
    clock_.Advance(absl::Milliseconds(100) - absl::Nanoseconds(1));
    EXPECT_FALSE(gate_.ReleaseSend(Now(), &sent));
    clock_.Advance(absl::Nanoseconds(1));
    ASSERT_TRUE(gate_.ReleaseSend(Now(), &sent));
    EXPECT_EQ(sent, id);
  }
  EXPECT_FALSE(gate_.ReleaseSend(Now() + absl::Seconds(10), &sent));  // none held
}

TEST_F(ProtectedGateTest, ALoopWakingLateLosesNoSendRate) {
  Reconfigure([](config::EndpointConfig& ep) {
    ep.max_in_flight = 1000;
    ep.rate_limit.rate = 100;
    ep.rate_limit.burst = 1;
  });
  const absl::Time start = Now();
  for (common::JobId id = 1; id <= 101; ++id) gate_.HoldForSend(id, Now());
  common::JobId sent = 0;
  int sends = 0;
  // The loop wakes 0.9ms after each token is due (its waits are whole milliseconds): each
  // token is taken as of when it came due, so 101 sends still fit 1s plus that last lateness
  // (taken when the loop woke, the 101st would leave after 1.09s).
  while (sends < 101 && Now() - start < absl::Seconds(2)) {
    while (gate_.ReleaseSend(Now(), &sent)) ++sends;
    if (sends == 101) break;
    clock_.Advance(gate_.NextWakeup(Now()) - Now() + absl::Microseconds(900));
  }
  EXPECT_EQ(sends, 101);
  EXPECT_LE(Now() - start, absl::Seconds(1) + absl::Milliseconds(1));
}

TEST_F(ProtectedGateTest, OutcomesMapToBreakerSignals) {
  policy::Outcome o;
  o.http_status = 503;
  EXPECT_EQ(SignalOf(o, policy::Action::kRetry), CircuitSignal::kFailure);
  o.http_status = 429;
  EXPECT_EQ(SignalOf(o, policy::Action::kRateLimited), CircuitSignal::kThrottle);
  o.http_status = 403;  // a rate_limited rule (Canvas) is a throttle, not a failure
  EXPECT_EQ(SignalOf(o, policy::Action::kRateLimited), CircuitSignal::kThrottle);
  o.http_status = 404;  // the job's fault; the endpoint is up
  EXPECT_EQ(SignalOf(o, policy::Action::kPermanent), CircuitSignal::kSuccess);
  o.http_status = 0;
  o.error = policy::TransportError::kTimeout;
  EXPECT_EQ(SignalOf(o, policy::Action::kRetry), CircuitSignal::kFailure);
}

}  // namespace
}  // namespace rebound::engine
