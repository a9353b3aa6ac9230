// Why a job waits, as the API shows it: a job's own stored wait, the endpoint's gate's wait for
// a job ready to run, the ListSyncs wait filter, and the endpoint status and event mapping.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/api/service.h"
#include "tests/api/fake_endpoint_control.h"

namespace rebound::api {
namespace {

using common::JobState;
using common::WaitReason;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

int64_t Seconds(const google::protobuf::Timestamp& t) { return t.seconds(); }

common::JobRecord Job(JobState state) {
  common::JobRecord job;
  job.id = 42;
  job.spec.endpoint = "canvas";
  job.state = state;
  return job;
}

TEST(JobWaitOf, BackoffAndRetryAfterLastUntilTheirDueTime) {
  testing::FakeEndpointControl gates;
  gates.SetWait("canvas", true, {WaitReason::kCircuitOpen, kNow + absl::Seconds(30)});
  common::JobRecord job = Job(JobState::kWaitingRetry);
  job.attempt_count = 1;
  job.next_attempt_at = kNow + absl::Seconds(5);
  job.wait_reason = WaitReason::kRetryAfter;
  auto wait = JobWaitOf(job, common::Priority::kNormal, kNow, gates);
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(wait->reason(), v1::RETRY_AFTER);
  EXPECT_EQ(Seconds(wait->until()), absl::ToUnixSeconds(kNow) + 5);
  EXPECT_TRUE(wait->behind_job_id().empty());

  job.wait_reason = WaitReason::kBackoff;
  EXPECT_EQ(JobWaitOf(job, common::Priority::kNormal, kNow, gates)->reason(), v1::BACKOFF);
  // A row stored before wait reasons existed reads kNone: it is a backoff.
  job.wait_reason = WaitReason::kNone;
  EXPECT_EQ(JobWaitOf(job, common::Priority::kNormal, kNow, gates)->reason(), v1::BACKOFF);
  // Its own wait comes first: the endpoint was not asked.
  EXPECT_THAT(gates.wait_calls(), IsEmpty());

  // Once due, it is ready to run: the endpoint's gate decides, for a retry.
  job.wait_reason = WaitReason::kRetryAfter;
  wait = JobWaitOf(job, common::Priority::kNormal, job.next_attempt_at, gates);
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(wait->reason(), v1::CIRCUIT_OPEN);
  EXPECT_EQ(Seconds(wait->until()), absl::ToUnixSeconds(kNow) + 30);
  EXPECT_THAT(gates.wait_calls(), ElementsAre(Pair("canvas", true)));
}

TEST(JobWaitOf, QueuedJobAsksTheGateAsAFirstAttemptOrARetryOfItsBudget) {
  testing::FakeEndpointControl gates;
  gates.SetWait("canvas", false, {WaitReason::kOperatorPaused, absl::InfiniteFuture()});
  gates.SetWait("canvas", true, {WaitReason::kRetryBudget, absl::InfiniteFuture()});
  common::JobRecord job = Job(JobState::kQueued);
  auto wait = JobWaitOf(job, common::Priority::kNormal, kNow, gates);
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(wait->reason(), v1::OPERATOR_PAUSED);
  EXPECT_FALSE(wait->has_until());  // until resumed
  // Replayed: 3 attempts before the new budget began, none since: a first attempt.
  job.attempt_count = 3;
  job.budget_base = 3;
  EXPECT_EQ(JobWaitOf(job, common::Priority::kNormal, kNow, gates)->reason(), v1::OPERATOR_PAUSED);
  job.attempt_count = 4;
  EXPECT_EQ(JobWaitOf(job, common::Priority::kNormal, kNow, gates)->reason(), v1::RETRY_BUDGET);
  EXPECT_THAT(gates.wait_calls(),
              ElementsAre(Pair("canvas", false), Pair("canvas", false), Pair("canvas", true)));
}

TEST(JobWaitOf, AJobTheGateLetsThroughDoesNotWait) {
  testing::FakeEndpointControl gates;
  EXPECT_FALSE(
      JobWaitOf(Job(JobState::kQueued), common::Priority::kNormal, kNow, gates).has_value());
}

TEST(JobWaitOf, BlockedNamesTheJobAhead) {
  testing::FakeEndpointControl gates;
  common::JobRecord job = Job(JobState::kBlocked);
  job.wait_reason = WaitReason::kOrderingBlocked;
  job.waits_behind = 7;
  auto wait = JobWaitOf(job, common::Priority::kNormal, kNow, gates);
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(wait->reason(), v1::ORDERING_BLOCKED);
  EXPECT_EQ(wait->behind_job_id(), common::FormatJobId(7));
  EXPECT_FALSE(wait->has_until());
}

TEST(JobWaitOf, RunningAndEndedJobsDoNotWait) {
  testing::FakeEndpointControl gates;
  gates.SetWait("canvas", false, {WaitReason::kCircuitOpen, kNow});
  gates.SetWait("canvas", true, {WaitReason::kCircuitOpen, kNow});
  for (JobState s : {JobState::kRunning, JobState::kSucceeded, JobState::kFailed,
                     JobState::kExhausted, JobState::kCancelled}) {
    EXPECT_FALSE(JobWaitOf(Job(s), common::Priority::kNormal, kNow, gates).has_value())
        << static_cast<int>(s);
  }
  EXPECT_THAT(gates.wait_calls(), IsEmpty());
}

TEST(AddWaitFilter, OwnReasonsUseTheStoredColumn) {
  testing::FakeEndpointControl gates;
  store::ListFilter f;
  ASSERT_TRUE(AddWaitFilter(WaitReason::kRetryAfter, kNow, gates, &f));
  EXPECT_EQ(f.wait_reason, WaitReason::kRetryAfter);
  EXPECT_EQ(f.due_after, kNow);  // only while the wait lasts
  EXPECT_EQ(f.due_by, absl::InfiniteFuture());
  EXPECT_THAT(f.endpoints, IsEmpty());

  store::ListFilter blocked;
  ASSERT_TRUE(AddWaitFilter(WaitReason::kOrderingBlocked, kNow, gates, &blocked));
  EXPECT_EQ(blocked.wait_reason, WaitReason::kOrderingBlocked);
  EXPECT_EQ(blocked.due_after, absl::InfinitePast());
}

TEST(AddWaitFilter, EndpointReasonsSelectReadyJobsOnTheEndpointsThatHoldThem) {
  testing::FakeEndpointControl gates;
  gates.SetWaiting(WaitReason::kCircuitOpen, {"canvas", "moodle"});
  gates.SetWaiting(WaitReason::kRetryBudget, {"moodle"});
  store::ListFilter f;
  ASSERT_TRUE(AddWaitFilter(WaitReason::kCircuitOpen, kNow, gates, &f));
  EXPECT_FALSE(f.wait_reason.has_value());
  EXPECT_THAT(f.endpoints, ElementsAre("canvas", "moodle"));
  EXPECT_THAT(f.states, ElementsAre(JobState::kQueued, JobState::kWaitingRetry));
  EXPECT_EQ(f.due_by, kNow);
  EXPECT_FALSE(f.retries_only);

  store::ListFilter budget;
  ASSERT_TRUE(AddWaitFilter(WaitReason::kRetryBudget, kNow, gates, &budget));
  EXPECT_TRUE(budget.retries_only);

  // The request's states narrow the ready states.
  store::ListFilter queued;
  queued.states = {JobState::kQueued, JobState::kSucceeded};
  ASSERT_TRUE(AddWaitFilter(WaitReason::kCircuitOpen, kNow, gates, &queued));
  EXPECT_THAT(queued.states, ElementsAre(JobState::kQueued));
}

TEST(AddWaitFilter, NoMatchPossibleMeansNoQuery) {
  testing::FakeEndpointControl gates;
  gates.SetWaiting(WaitReason::kCircuitOpen, {"canvas"});
  store::ListFilter none;
  EXPECT_FALSE(AddWaitFilter(WaitReason::kRateLimited, kNow, gates, &none));  // nobody
  store::ListFilter other;
  other.endpoint = "moodle";
  EXPECT_FALSE(AddWaitFilter(WaitReason::kCircuitOpen, kNow, gates, &other));
  store::ListFilter ended;
  ended.states = {JobState::kSucceeded};
  EXPECT_FALSE(AddWaitFilter(WaitReason::kCircuitOpen, kNow, gates, &ended));
}

TEST(EndpointStatusProto, CarriesEveryPart) {
  engine::EndpointStatus s;
  s.name = "canvas";
  s.circuit = engine::CircuitState::kOpen;
  s.circuit_changed_at = kNow - absl::Seconds(2);
  s.next_probe_at = kNow + absl::Seconds(8);
  s.window_requests = 20;
  s.window_failures = 15;
  s.window_throttles = 3;
  s.operator_paused = true;
  s.operator_paused_at = kNow - absl::Seconds(60);
  s.operator_reason = "maintenance";
  s.in_flight = 2;
  s.max_in_flight = 16;
  s.allowed_in_flight = 4;
  s.slow_start_level = 0.25;
  s.slow_start_until = kNow + absl::Seconds(10);
  s.rate = 20;
  s.burst = 40;
  s.tokens = 12.5;
  s.retries_in_flight = 1;
  s.retry_budget = 3;
  s.waiting[static_cast<size_t>(WaitReason::kCircuitOpen)] = 7;
  s.waiting[static_cast<size_t>(WaitReason::kBackoff)] = 2;
  s.ready = 5;
  s.running = 2;
  s.oldest_waiting_age = absl::Milliseconds(1500);
  s.paused_until = kNow - absl::Seconds(1);  // a Retry-After pause that is over
  s.pause_cause = "429";
  v1::EndpointStatus p;
  ToProto(s, kNow, &p);
  EXPECT_EQ(p.name(), "canvas");
  EXPECT_EQ(p.circuit(), v1::OPEN);
  EXPECT_EQ(Seconds(p.next_probe_at()), absl::ToUnixSeconds(kNow) + 8);
  EXPECT_EQ(Seconds(p.circuit_changed_at()), absl::ToUnixSeconds(kNow) - 2);
  EXPECT_EQ(p.window_failures(), 15);
  EXPECT_EQ(p.window_throttles(), 3);
  EXPECT_FALSE(p.has_paused_until());
  EXPECT_TRUE(p.pause_cause().empty());
  EXPECT_EQ(Seconds(p.slow_start_until()), absl::ToUnixSeconds(kNow) + 10);
  EXPECT_TRUE(p.operator_paused());
  EXPECT_FALSE(p.has_operator_paused_until());  // until resumed
  EXPECT_EQ(p.operator_reason(), "maintenance");
  EXPECT_EQ(p.allowed_in_flight(), 4);
  EXPECT_DOUBLE_EQ(p.slow_start_level(), 0.25);
  EXPECT_DOUBLE_EQ(p.tokens(), 12.5);
  EXPECT_EQ(p.retry_budget(), 3);
  ASSERT_EQ(p.waiting_size(), 2);  // only the reasons with jobs, in WaitReason order
  EXPECT_EQ(p.waiting(0).reason(), v1::BACKOFF);
  EXPECT_EQ(p.waiting(0).count(), 2);
  EXPECT_EQ(p.waiting(1).reason(), v1::CIRCUIT_OPEN);
  EXPECT_EQ(p.waiting(1).count(), 7);
  EXPECT_EQ(p.oldest_waiting_age().seconds(), 1);
  EXPECT_EQ(p.oldest_waiting_age().nanos(), 500'000'000);

  s.circuit = engine::CircuitState::kHalfOpen;
  s.paused_until = kNow + absl::Seconds(5);
  v1::EndpointStatus half;
  ToProto(s, kNow + absl::Seconds(11), &half);  // the ramp is over, the pause is not
  EXPECT_EQ(half.circuit(), v1::HALF_OPEN);
  EXPECT_FALSE(half.has_next_probe_at());
  EXPECT_FALSE(half.has_slow_start_until());
  EXPECT_FALSE(half.has_paused_until());
  ToProto(s, kNow, &half);
  EXPECT_EQ(Seconds(half.paused_until()), absl::ToUnixSeconds(kNow) + 5);
  EXPECT_EQ(half.pause_cause(), "429");
}

TEST(SyncEventProto, CarriesTheWait) {
  engine::JobEvent e;
  e.id = 9;
  e.state = JobState::kBlocked;
  e.at = kNow;
  e.wait_reason = WaitReason::kOrderingBlocked;
  e.waits_behind = 8;
  v1::SyncEvent p = ToProto(e);
  EXPECT_EQ(p.wait().reason(), v1::ORDERING_BLOCKED);
  EXPECT_EQ(p.wait().behind_job_id(), common::FormatJobId(8));
  EXPECT_FALSE(p.wait().has_until());

  e.state = JobState::kQueued;
  e.wait_reason = WaitReason::kRateLimited;
  e.wait_until = kNow + absl::Milliseconds(50);
  e.waits_behind = 0;
  p = ToProto(e);
  EXPECT_EQ(p.wait().reason(), v1::RATE_LIMITED);
  EXPECT_EQ(p.wait().until().nanos(), 50'000'000);
  EXPECT_TRUE(p.wait().behind_job_id().empty());

  e.wait_reason = WaitReason::kNone;
  EXPECT_FALSE(ToProto(e).has_wait());
}

TEST(WaitReasonProto, NumbersAreCommonWaitReasons) {
  for (int r = 0; r < common::kWaitReasonCount; ++r) {
    const std::string name(common::WaitReasonName(static_cast<WaitReason>(r)));
    if (r == 0) continue;  // "NONE" is WAIT_REASON_UNSPECIFIED
    EXPECT_EQ(v1::WaitReason_Name(static_cast<v1::WaitReason>(r)), name);
  }
}

}  // namespace
}  // namespace rebound::api
