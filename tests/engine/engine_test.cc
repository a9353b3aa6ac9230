// Engine scheduling on a fake clock, a fake store and a fake executor: no thread, no sleep.
#include "server/engine/engine.h"

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/fakes.h"

namespace rebound::engine {
namespace {

using common::JobState;
using testing::FakeExecutor;
using testing::FakeStore;
using ::testing::HasSubstr;
using testing::Status;

std::shared_ptr<const config::Config> TestConfig(int max_in_flight = 8) {
  auto cfg = std::make_shared<config::Config>();
  auto p = std::make_shared<policy::Policy>();
  p->name = "default";
  p->backoff.initial = absl::Milliseconds(100);
  p->backoff.max = absl::Seconds(10);
  p->backoff.multiplier = 2;
  p->backoff.jitter = policy::Jitter::kNone;
  p->limits.max_attempts = 3;
  cfg->policies["default"] = p;
  config::EndpointConfig ep;
  ep.name = "lms";
  ep.base_url = "http://127.0.0.1:1";
  ep.allowed_path_prefixes = {"/api/"};
  ep.max_in_flight = max_in_flight;
  ep.policy = "default";
  ep.headers.push_back({"Authorization", "Bearer secret", true});
  cfg->endpoints.push_back(ep);
  return cfg;
}

// Options whose store reads (dispatch of a request kept in the store) run at once, so a test
// on the fake clock is deterministic.
EngineOptions InlineReads(uint64_t seed) {
  EngineOptions o;
  o.rng_seed = seed;
  o.run_read = [](absl::AnyInvocable<void() &&> read) { std::move(read)(); };
  return o;
}

// A POST job of tenant "t", fingerprinted.
store::NewJob MakeJob(const std::string& key, const std::string& endpoint, std::string body,
                      const std::string& ordering_key = "") {
  store::NewJob j;
  j.spec.tenant = "t";
  j.spec.idempotency_key = key;
  j.spec.endpoint = endpoint;
  j.spec.method = "POST";
  j.spec.path = "/api/grades";
  j.spec.body = std::move(body);
  j.spec.ordering_key = ordering_key;
  j.fingerprint = common::Fingerprint(j.spec);
  return j;
}

// Runs `engine` and commits `store` for `turns` turns (for engines other than the fixture's).
void Turns(Engine& engine, FakeStore& store, int turns = 10) {
  for (int i = 0; i < turns; ++i) {
    engine.RunOnce(absl::ZeroDuration());
    store.CommitAll();
  }
}

class RecordingObserver : public EngineObserver {
 public:
  void OnSubmitted(const common::JobSpec&, common::JobId, int, bool dedup) override {
    ++(dedup ? deduplicated : submitted);
  }
  void OnAttemptStarted(const JobRef&) override { ++attempts_started; }
  void OnAttemptFinished(const JobRef&, const policy::Outcome&, const policy::Decision& d,
                         absl::Duration) override {
    decisions.push_back(d.kind);
  }
  void OnFinished(const JobRef&, JobState state, absl::Duration age, const std::string&) override {
    finished.push_back(state);
    ages.push_back(age);
  }
  void OnGauges(int endpoint, const EndpointGauges& g) override { gauges[endpoint] = g; }
  void OnDeadLetterDelta(int, int64_t delta) override { dead_letters += delta; }
  void OnEndpointPaused(int, absl::Time) override { ++pauses; }

  int submitted = 0, deduplicated = 0, attempts_started = 0, pauses = 0;
  int64_t dead_letters = 0;
  std::vector<policy::Decision::Kind> decisions;
  std::vector<JobState> finished;
  std::vector<absl::Duration> ages;
  std::map<int, EndpointGauges> gauges;
};

class EngineTest : public ::testing::Test {
 protected:
  explicit EngineTest(int max_in_flight = 8, bool observed = false)
      : EngineTest(TestConfig(max_in_flight), observed) {}
  EngineTest(std::shared_ptr<const config::Config> config, bool observed)
      : engine_(std::move(config), store_, executor_, clock_, Options(observed)) {}

  EngineOptions Options(bool observed) {
    EngineOptions o = InlineReads(42);
    if (observed) {
      o.observer = &observer_;
      o.dead_letters_at_start = {7};
    }
    return o;
  }

  // Submits a GET job and commits the submit only: nothing has been dispatched yet.
  common::JobId SubmitOnly(const std::string& key, const std::string& endpoint = "lms") {
    store::NewJob j = MakeJob(key, endpoint, "");
    j.spec.method = "GET";
    j.spec.path = "/api/x";
    j.fingerprint = common::Fingerprint(j.spec);
    common::JobId id = 0;
    engine_.Submit({std::move(j)},
                   [&id](std::vector<store::SubmitResult> r) { id = r.at(0).job_id; });
    store_.CommitAll();
    EXPECT_NE(id, 0);
    return id;
  }

  // Runs the loop and the store until nothing changes.
  void Settle() {
    for (int i = 0; i < 50; ++i) {
      engine_.RunOnce(absl::ZeroDuration());
      if (store_.CommitAll() == 0) {
        engine_.RunOnce(absl::ZeroDuration());
        if (store_.CommitAll() == 0) return;
      }
    }
  }

  common::JobId Submit(const std::string& key, const std::string& ordering_key = "") {
    common::JobId id = 0;
    engine_.Submit({MakeJob(key, "lms", "{\"grade\":\"A\"}", ordering_key)},
                   [&id](std::vector<store::SubmitResult> r) {
                     ASSERT_TRUE(r.at(0).status.ok()) << r.at(0).status;
                     id = r.at(0).job_id;
                   });
    store_.CommitAll();
    EXPECT_NE(id, 0);
    Settle();
    return id;
  }

  common::FakeClock clock_;
  FakeStore store_;
  FakeExecutor executor_;
  RecordingObserver observer_;  // before engine_: the engine reports to it from construction
  Engine engine_;
};

TEST_F(EngineTest, RetriesTransientFailuresOnTheBackoffScheduleThenSucceeds) {
  const auto id = Submit("k1");
  ASSERT_EQ(executor_.started(), 1u);
  EXPECT_EQ(executor_.request(0).url, "http://127.0.0.1:1/api/grades");

  executor_.CompleteNext(Status(503));
  Settle();
  EXPECT_EQ(store_.Job(id).state, JobState::kWaitingRetry);
  EXPECT_EQ(engine_.NextWakeup(), clock_.Now() + absl::Milliseconds(100));

  clock_.Advance(absl::Milliseconds(99));
  Settle();
  EXPECT_EQ(executor_.started(), 1u) << "no attempt before the due time";
  clock_.Advance(absl::Milliseconds(1));
  Settle();
  ASSERT_EQ(executor_.started(), 2u);

  executor_.CompleteNext(Status(503));
  Settle();
  EXPECT_EQ(engine_.NextWakeup(), clock_.Now() + absl::Milliseconds(200));
  clock_.Advance(absl::Milliseconds(200));
  Settle();
  ASSERT_EQ(executor_.started(), 3u);
  executor_.CompleteNext(Status(200));
  Settle();

  const auto job = store_.Job(id);
  EXPECT_EQ(job.state, JobState::kSucceeded);
  EXPECT_EQ(job.attempt_count, 3);
  ASSERT_EQ(job.attempts.size(), 3u);
  EXPECT_THAT(job.attempts[0].decision, HasSubstr("backoff 100ms"));
  EXPECT_EQ(engine_.ActiveJobs(), 0);
}

TEST_F(EngineTest, EveryAttemptCarriesTheIdempotencyKeyAndEndpointHeaders) {
  Submit("key-xyz");
  executor_.CompleteNext(Status(503));
  Settle();
  clock_.Advance(absl::Seconds(1));
  Settle();
  ASSERT_EQ(executor_.started(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const auto& h = executor_.request(i).headers;
    EXPECT_THAT(h, ::testing::Contains(
                       std::make_pair(std::string("Idempotency-Key"), std::string("key-xyz"))));
    EXPECT_THAT(h, ::testing::Contains(
                       std::make_pair(std::string("Authorization"), std::string("Bearer secret"))));
    EXPECT_EQ(executor_.request(i).body, "{\"grade\":\"A\"}");
  }
}

TEST_F(EngineTest, PermanentErrorIsNeverRetried) {
  const auto id = Submit("k1");
  executor_.CompleteNext(Status(400));
  Settle();
  clock_.Advance(absl::Hours(1));
  Settle();
  EXPECT_EQ(executor_.started(), 1u);
  EXPECT_EQ(store_.Job(id).state, JobState::kFailed);
  EXPECT_EQ(engine_.NextWakeup(), absl::InfiniteFuture());
}

TEST_F(EngineTest, AttemptBudgetExhaustsThenReplayGrantsANewOne) {
  const auto id = Submit("k1");
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(executor_.open(), 1u);
    executor_.CompleteNext(Status(500));
    Settle();
    clock_.Advance(absl::Seconds(10));
    Settle();
  }
  EXPECT_EQ(store_.Job(id).state, JobState::kExhausted);
  EXPECT_EQ(executor_.started(), 3u);

  absl::Status replayed = absl::UnknownError("not called");
  engine_.Replay("t", id, [&](absl::Status s) { replayed = s; });
  Settle();
  EXPECT_TRUE(replayed.ok()) << replayed;
  ASSERT_EQ(executor_.started(), 4u);
  executor_.CompleteNext(Status(200));
  Settle();
  const auto job = store_.Job(id);
  EXPECT_EQ(job.state, JobState::kSucceeded);
  EXPECT_EQ(job.attempt_count, 4);
  EXPECT_EQ(job.budget_base, 3);
}

TEST_F(EngineTest, AnEndedJobCarriesItsPolicysRetentionAndAReplayClearsIt) {
  const auto ok = Submit("k-ok");
  const auto dead = Submit("k-dead");
  EXPECT_EQ(store_.PurgeAt(ok), absl::InfiniteFuture());  // RUNNING: never purged
  executor_.CompleteNext(Status(200));
  executor_.CompleteNext(Status(400));
  Settle();
  const absl::Time ended = clock_.Now();
  ASSERT_EQ(store_.Job(ok).state, JobState::kSucceeded);
  ASSERT_EQ(store_.Job(dead).state, JobState::kFailed);
  const policy::Policy defaults;
  EXPECT_EQ(store_.PurgeAt(ok), ended + defaults.retention);
  EXPECT_EQ(store_.PurgeAt(dead), ended + defaults.dead_letter_retention);

  absl::Status replayed = absl::UnknownError("not called");
  engine_.Replay("t", dead, [&](absl::Status s) { replayed = s; });
  Settle();
  ASSERT_TRUE(replayed.ok()) << replayed;
  EXPECT_EQ(store_.PurgeAt(dead), absl::InfiniteFuture());
}

TEST_F(EngineTest, ReplayOfAJobThatIsNotDeadLetteredIsRefused) {
  const auto id = Submit("k1");
  absl::Status s;
  engine_.Replay("t", id, [&](absl::Status st) { s = st; });
  Settle();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  engine_.Replay("other-tenant", 9999, [&](absl::Status st) { s = st; });
  Settle();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
}

TEST_F(EngineTest, RetryAfterIsAFloorAndPausesTheEndpoint) {
  const auto first = Submit("k1");
  executor_.CompleteNext(Status(429, {{"retry-after", "5"}}));
  Settle();
  EXPECT_EQ(store_.Job(first).state, JobState::kWaitingRetry);
  // A second job for the same endpoint waits for the pause instead of hammering it.
  Submit("k2");
  EXPECT_EQ(executor_.started(), 1u);
  clock_.Advance(absl::Milliseconds(4999));
  Settle();
  EXPECT_EQ(executor_.started(), 1u);
  clock_.Advance(absl::Milliseconds(1));
  Settle();
  // The pause's end starts slow start (default window 5s, max_in_flight 8): one attempt at
  // first, the oldest ready job (k2, queued before k1's retry came due), a second just after
  // 5s/8.
  EXPECT_EQ(executor_.started(), 2u);
  EXPECT_EQ(store_.Job(first).attempt_count, 1);
  clock_.Advance(absl::Milliseconds(626));
  Settle();
  EXPECT_EQ(executor_.started(), 3u);
  EXPECT_EQ(store_.Job(first).attempt_count, 2);
}

TEST_F(EngineTest, CancelStopsAWaitingJob) {
  const auto id = Submit("k1");
  executor_.CompleteNext(Status(503));
  Settle();
  absl::Status s = absl::UnknownError("not called");
  engine_.Cancel("t", id, [&](absl::Status st) { s = st; });
  Settle();
  EXPECT_TRUE(s.ok()) << s;
  clock_.Advance(absl::Hours(1));
  Settle();
  EXPECT_EQ(executor_.started(), 1u);
  EXPECT_EQ(store_.Job(id).state, JobState::kCancelled);
}

TEST_F(EngineTest, CancelOfARunningJobTakesEffectWhenTheAttemptFails) {
  const auto id = Submit("k1");
  absl::Status s = absl::UnknownError("not called");
  engine_.Cancel("t", id, [&](absl::Status st) { s = st; });
  Settle();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnknown) << "answered only when the attempt ends";
  executor_.CompleteNext(Status(503));
  Settle();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(store_.Job(id).state, JobState::kCancelled);
  EXPECT_EQ(executor_.started(), 1u);
}

TEST_F(EngineTest, CancelDuringASuccessfulAttemptKeepsTheSuccess) {
  const auto id = Submit("k1");
  absl::Status s;
  engine_.Cancel("t", id, [&](absl::Status st) { s = st; });
  Settle();
  executor_.CompleteNext(Status(201));
  Settle();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.Job(id).state, JobState::kSucceeded);
}

TEST_F(EngineTest, CancelOfATerminalJobIsAFailedPrecondition) {
  const auto id = Submit("k1");
  executor_.CompleteNext(Status(200));
  Settle();
  absl::Status s;
  engine_.Cancel("t", id, [&](absl::Status st) { s = st; });
  Settle();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("SUCCEEDED"));
}

TEST_F(EngineTest, NoAttemptStartsBeforeItsRunningTransitionIsDurable) {
  SubmitOnly("k");
  engine_.RunOnce(absl::ZeroDuration());  // adopt + dispatch: RUNNING written, not committed
  engine_.RunOnce(absl::ZeroDuration());
  EXPECT_EQ(executor_.started(), 0u);
  store_.CommitAll();
  engine_.RunOnce(absl::ZeroDuration());
  EXPECT_EQ(executor_.started(), 1u);
}

TEST_F(EngineTest, OrderingKeyRunsJobsOneAtATimeInSubmissionOrder) {
  const auto a = Submit("a", "student-7");
  const auto b = Submit("b", "student-7");
  const auto c = Submit("c", "student-8");
  EXPECT_EQ(store_.Job(b).state, JobState::kBlocked);
  EXPECT_EQ(executor_.started(), 2u);  // a and c
  EXPECT_EQ(executor_.request(0).url, executor_.request(1).url);
  executor_.CompleteNext(Status(200));  // a
  Settle();
  EXPECT_EQ(store_.Job(a).state, JobState::kSucceeded);
  EXPECT_EQ(executor_.started(), 3u);  // b released
  EXPECT_NE(store_.Job(b).state, JobState::kBlocked);
  (void)c;
}

TEST_F(EngineTest, CancellingABlockedJobDoesNotReleaseTheKeyWhileItsRunnerIsOnTheWire) {
  const auto a = Submit("a", "student-7");
  const auto b = Submit("b", "student-7");
  const auto c = Submit("c", "student-7");
  ASSERT_EQ(executor_.started(), 1u);
  absl::Status s;
  engine_.Cancel("t", b, [&](absl::Status st) { s = st; });
  Settle();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(store_.Job(c).state, JobState::kBlocked);
  EXPECT_EQ(executor_.started(), 1u) << "c must wait for a";
  executor_.CompleteNext(Status(200));
  Settle();
  EXPECT_EQ(store_.Job(a).state, JobState::kSucceeded);
  EXPECT_EQ(executor_.started(), 2u);
}

TEST_F(EngineTest, TheEngineBlocksAJobOfABusyKeyThatTheStoreRecordedQueued) {
  const auto a = Submit("a", "student-7");
  std::vector<store::SubmitResult> answer;
  engine_.Submit({MakeJob("b", "lms", "{}", "student-7")},
                 [&](std::vector<store::SubmitResult> r) { answer = std::move(r); });
  store_.CommitAll();
  ASSERT_EQ(answer.size(), 1u);
  EXPECT_EQ(answer[0].state, JobState::kQueued);  // the store decides nothing
  const common::JobId b = answer[0].job_id;
  Settle();
  const common::JobRecord rb = store_.Job(b);
  EXPECT_EQ(rb.state, JobState::kBlocked);
  EXPECT_EQ(rb.wait_reason, common::WaitReason::kOrderingBlocked);
  EXPECT_EQ(rb.waits_behind, a);
  const auto c = Submit("c", "student-7");
  EXPECT_EQ(store_.Job(c).waits_behind, b);
  EXPECT_EQ(executor_.started(), 1u);  // a only
}

TEST_F(EngineTest, CancellingABlockedJobRewritesWhoItsSuccessorWaitsBehind) {
  const auto a = Submit("a", "student-7");
  const auto b = Submit("b", "student-7");
  const auto c = Submit("c", "student-7");
  const auto d = Submit("d", "student-7");
  ASSERT_EQ(store_.Job(c).waits_behind, b);
  absl::Status s;
  engine_.Cancel("t", b, [&](absl::Status st) { s = st; });
  Settle();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(store_.Job(c).state, JobState::kBlocked);
  EXPECT_EQ(store_.Job(c).waits_behind, a);  // b's place
  EXPECT_EQ(store_.Job(d).waits_behind, c);  // unchanged
  engine_.Cancel("t", d, [&](absl::Status st) { s = st; });
  Settle();
  EXPECT_EQ(store_.Job(c).waits_behind, a);  // the last one leaving changes nobody
  executor_.CompleteNext(Status(200));
  Settle();
  EXPECT_EQ(store_.Job(a).state, JobState::kSucceeded);
  EXPECT_EQ(executor_.started(), 2u) << "c released";
}

TEST_F(EngineTest, RecoveryBlocksAQueuedJobOfAKeyThatAlreadyHasARunner) {
  // A crash after the store recorded the submit (QUEUED) and before the engine's BLOCKED was
  // written: both jobs of the key come back runnable.
  FakeStore store;
  common::JobId a = 0, b = 0;
  store.Submit({MakeJob("a", "lms", "{}", "k"), MakeJob("b", "lms", "{}", "k")}, clock_.Now(),
               [&](std::vector<store::SubmitResult> r) {
                 a = r.at(0).job_id;
                 b = r.at(1).job_id;
               });
  store.CommitAll();
  ASSERT_EQ(store.Job(b).state, JobState::kQueued);
  FakeExecutor executor;
  Engine restarted(TestConfig(), store, executor, clock_, InlineReads(3));
  ASSERT_TRUE(restarted.Recover().ok());
  Turns(restarted, store);
  EXPECT_EQ(executor.started(), 1u);  // a only
  EXPECT_EQ(store.Job(b).state, JobState::kBlocked);
  EXPECT_EQ(store.Job(b).waits_behind, a);
  executor.CompleteNext(Status(200));
  Turns(restarted, store);
  EXPECT_EQ(executor.started(), 2u);
  EXPECT_EQ(store.Job(b).state, JobState::kRunning);
}

// Store reads asked of the engine's reader (run_read), held until the test runs them.
struct HeldReads {
  std::vector<absl::AnyInvocable<void() &&>> reads;
  EngineOptions Options() {
    EngineOptions o;
    o.rng_seed = 5;
    o.run_read = [this](absl::AnyInvocable<void() &&> read) { reads.push_back(std::move(read)); };
    return o;
  }
  void RunAll() {
    auto now = std::move(reads);
    reads.clear();
    for (auto& r : now) std::move(r)();
  }
};

TEST_F(EngineTest, CancelReplayAndWatchOfAnEndedJobReadTheStoreOffTheLoop) {
  const auto a = Submit("a");
  executor_.CompleteNext(Status(400));
  Settle();
  ASSERT_EQ(store_.Job(a).state, JobState::kFailed);
  HeldReads held;
  FakeExecutor executor;
  Engine engine(TestConfig(), store_, executor, clock_, held.Options());
  ASSERT_TRUE(engine.Recover().ok());
  std::optional<absl::Status> cancelled, replayed, replayed_again, unknown;
  engine.Cancel("t", a, [&](absl::Status st) { cancelled = st; });
  engine.Replay("t", a, [&](absl::Status st) { replayed = st; });
  engine.Replay("t", a, [&](absl::Status st) { replayed_again = st; });
  engine.Cancel("t", 999, [&](absl::Status st) { unknown = st; });
  engine.RunOnce(absl::ZeroDuration());
  // Nothing answered from the loop: each asked the reader.
  EXPECT_EQ(held.reads.size(), 4u);
  EXPECT_FALSE(cancelled || replayed || replayed_again || unknown);
  held.RunAll();
  Turns(engine, store_);
  ASSERT_TRUE(cancelled && replayed && replayed_again && unknown);
  EXPECT_EQ(cancelled->code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(cancelled->message(),
              HasSubstr("is already FAILED; only unfinished jobs can be cancelled"));
  EXPECT_TRUE(replayed->ok()) << *replayed;
  // Both replays read FAILED; the second finds the first's job in memory when it comes back.
  EXPECT_EQ(replayed_again->code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(replayed_again->message(), HasSubstr("only FAILED or EXHAUSTED jobs"));
  EXPECT_EQ(unknown->code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(executor.started(), 1u);  // the replay's attempt
}

TEST_F(EngineTest, AJobBlockedBehindAReplayedJobRunsWhenTheReplayEnds) {
  const auto a = Submit("a", "student-7");
  executor_.CompleteNext(Status(400));
  Settle();
  ASSERT_EQ(store_.Job(a).state, JobState::kFailed);
  absl::Status s;
  engine_.Replay("t", a, [&](absl::Status st) { s = st; });
  Settle();
  ASSERT_TRUE(s.ok()) << s;
  const auto b = Submit("b", "student-7");
  EXPECT_EQ(store_.Job(b).state, JobState::kBlocked);
  ASSERT_EQ(executor_.started(), 2u);  // a's replay only
  executor_.CompleteNext(Status(200));
  Settle();
  EXPECT_EQ(store_.Job(a).state, JobState::kSucceeded);
  EXPECT_EQ(executor_.started(), 3u) << "b released";
}

TEST_F(EngineTest, ACancelBeforeTheAttemptLeavesSendsNothing) {
  const common::JobId id = SubmitOnly("k");
  engine_.RunOnce(absl::ZeroDuration());  // dispatched: RUNNING written, not yet committed
  absl::Status s = absl::UnknownError("not answered");
  engine_.Cancel("t", id, [&](absl::Status st) { s = st; });
  Settle();
  EXPECT_EQ(executor_.started(), 0u);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(store_.Job(id).state, JobState::kCancelled);
  EXPECT_EQ(store_.Job(id).attempt_count, 0);
}

TEST_F(EngineTest, ReplayRespectsTheActiveJobLimit) {
  auto cfg = std::make_shared<config::Config>(*TestConfig());
  cfg->server.max_active_jobs = 1;
  FakeExecutor executor;
  Engine small(cfg, store_, executor, clock_, InlineReads(1));
  const auto failed = Submit("f");  // on engine_; fails permanently
  executor_.CompleteNext(Status(400));
  Settle();
  store::NewJob j;
  j.spec.tenant = "t";
  j.spec.idempotency_key = "busy";
  j.spec.endpoint = "lms";
  j.fingerprint = common::Fingerprint(j.spec);
  small.Submit({std::move(j)}, [](std::vector<store::SubmitResult>) {});
  store_.CommitAll();
  std::optional<absl::Status> s;
  small.Replay("t", failed, [&](absl::Status st) { s = st; });
  // The dead-lettered record is read off the loop; the answer comes on the turn after.
  for (int i = 0; i < 3 && !s.has_value(); ++i) small.RunOnce(absl::ZeroDuration());
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->code(), absl::StatusCode::kResourceExhausted);
}

class ObservedEngineTest : public EngineTest {
 protected:
  ObservedEngineTest() : EngineTest(8, /*observed=*/true) {}
  EndpointGauges Gauges() {
    clock_.Advance(absl::Seconds(1));  // gauges are published once a second
    Settle();
    return observer_.gauges.at(0);
  }
};

TEST_F(ObservedEngineTest, GaugesCountJobsByStateAndWaitReason) {
  EXPECT_EQ(observer_.dead_letters, 7) << "dead letters already in the store";
  Submit("a");
  Submit("b");
  Submit("c");
  EXPECT_EQ(Gauges().running, 3);
  EXPECT_EQ(Gauges().in_flight, 3);
  executor_.CompleteNext(Status(503));                           // a: backoff 100ms
  executor_.CompleteNext(Status(429, {{"retry-after", "30"}}));  // b: Retry-After, pauses
  executor_.CompleteNext(Status(400));                           // c: dead letter
  Settle();
  EXPECT_EQ(observer_.pauses, 1);
  EXPECT_EQ(observer_.dead_letters, 8);
  // One second later a's retry is due but the endpoint is paused: it waits in the queue.
  const EndpointGauges g = Gauges();
  EXPECT_TRUE(g.paused);
  EXPECT_EQ(g.waiting_paused, 1);
  EXPECT_EQ(g.waiting_retry_after, 1);
  EXPECT_EQ(g.running, 0);
  EXPECT_EQ(observer_.submitted, 3);
  EXPECT_EQ(observer_.attempts_started, 3);
  ASSERT_EQ(observer_.finished.size(), 1u);
  EXPECT_EQ(observer_.finished[0], JobState::kFailed);
}

TEST_F(ObservedEngineTest, ReplayTakesAJobOutOfTheDeadLetters) {
  const auto id = Submit("a");
  executor_.CompleteNext(Status(400));
  Settle();
  EXPECT_EQ(observer_.dead_letters, 8);
  engine_.Replay("t", id, [](absl::Status) {});
  Settle();
  EXPECT_EQ(observer_.dead_letters, 7);
  EXPECT_EQ(Gauges().running, 1);
}

TEST_F(EngineTest, ReloadAppliesToTheNextAttemptNotToTheOneOnTheWire) {
  const auto id = Submit("k1");
  ASSERT_EQ(executor_.open(), 1u);
  auto cfg = std::make_shared<config::Config>(*TestConfig());
  auto strict = std::make_shared<policy::Policy>(*cfg->policies["default"]);
  strict->limits.max_attempts = 1;
  strict->backoff.initial = absl::Seconds(5);
  cfg->policies["default"] = strict;
  cfg->endpoints[0].base_url = "http://127.0.0.1:2";
  absl::Status reloaded = absl::UnknownError("not called");
  engine_.Reload(cfg, [&](absl::Status s) { reloaded = s; });
  Settle();
  ASSERT_TRUE(reloaded.ok()) << reloaded;
  // The attempt that started under the old policy is decided by it: retry in 100ms.
  executor_.CompleteNext(Status(503));
  Settle();
  EXPECT_EQ(store_.Job(id).state, JobState::kWaitingRetry);
  EXPECT_EQ(engine_.NextWakeup(), clock_.Now() + absl::Milliseconds(100));
  clock_.Advance(absl::Milliseconds(100));
  Settle();
  ASSERT_EQ(executor_.started(), 2u);
  EXPECT_EQ(executor_.request(1).url, "http://127.0.0.1:2/api/grades") << "new endpoint settings";
  // The next decision uses the new policy: one attempt per budget, so this one exhausts it.
  executor_.CompleteNext(Status(503));
  Settle();
  EXPECT_EQ(store_.Job(id).state, JobState::kExhausted);
}

TEST_F(ObservedEngineTest, ACancelledJobsLastAttemptIsNoRetry) {
  const auto id = Submit("a");
  engine_.Cancel("t", id, [](absl::Status) {});
  Settle();
  executor_.CompleteNext(Status(503));
  Settle();
  ASSERT_EQ(observer_.decisions.size(), 1u);
  EXPECT_NE(observer_.decisions[0], policy::Decision::Kind::kRetry);
  ASSERT_EQ(observer_.finished.size(), 1u);
  EXPECT_EQ(observer_.finished[0], JobState::kCancelled);
}

TEST_F(ObservedEngineTest, AReplayCancelledBeforeItsCommitStillLeavesTheDeadLetters) {
  const auto id = Submit("a");
  executor_.CompleteNext(Status(400));
  Settle();
  EXPECT_EQ(observer_.dead_letters, 8);
  engine_.Replay("t", id, [](absl::Status) {});
  engine_.RunOnce(absl::ZeroDuration());  // replay decided, not committed
  engine_.Cancel("t", id, [](absl::Status) {});
  Settle();
  EXPECT_EQ(store_.Job(id).state, JobState::kCancelled);
  EXPECT_EQ(observer_.dead_letters, 7);
}

TEST_F(EngineTest, ReloadAddsEndpointsAndMatchesKnownOnesByName) {
  auto cfg = std::make_shared<config::Config>(*TestConfig());
  config::EndpointConfig added = cfg->endpoints[0];
  added.name = "lms2";
  added.base_url = "http://127.0.0.1:3";
  cfg->endpoints.insert(cfg->endpoints.begin(), added);  // new one first: order does not matter
  absl::Status reloaded = absl::UnknownError("not called");
  engine_.Reload(cfg, [&](absl::Status s) { reloaded = s; });
  Settle();
  ASSERT_TRUE(reloaded.ok()) << reloaded;
  Submit("old");  // endpoint "lms"
  SubmitOnly("new", "lms2");
  Settle();
  ASSERT_EQ(executor_.started(), 2u);
  EXPECT_EQ(executor_.request(0).url, "http://127.0.0.1:1/api/grades");
  EXPECT_EQ(executor_.request(1).url, "http://127.0.0.1:3/api/x");
}

TEST_F(EngineTest, EachAttemptIsItsOwnSpanUnderTheJobsTrace) {
  const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  store::NewJob j;
  j.spec.tenant = "t";
  j.spec.idempotency_key = "traced";
  j.spec.endpoint = "lms";
  j.spec.method = "GET";
  j.spec.path = "/api/x";
  j.spec.headers.push_back({"traceparent", absl::StrCat("00-", trace, "-00f067aa0ba902b7-01")});
  j.fingerprint = common::Fingerprint(j.spec);
  engine_.Submit({std::move(j)}, [](std::vector<store::SubmitResult>) {});
  store_.CommitAll();
  Settle();
  executor_.CompleteNext(Status(503));
  Settle();
  clock_.Advance(absl::Seconds(1));
  Settle();
  ASSERT_EQ(executor_.started(), 2u);
  std::vector<std::string> sent;
  for (size_t i = 0; i < 2; ++i) {
    for (const auto& [name, value] : executor_.request(i).headers) {
      if (name == "traceparent") sent.push_back(value);
    }
  }
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_NE(sent[0], sent[1]);
  for (const auto& t : sent) {
    EXPECT_EQ(t.substr(3, 32), trace);
    EXPECT_NE(t.substr(36, 16), "00f067aa0ba902b7");
  }
}

class EngineInFlightTest : public EngineTest {
 protected:
  EngineInFlightTest() : EngineTest(2) {}
};

TEST_F(EngineInFlightTest, MaxInFlightCapsConcurrentAttempts) {
  for (int i = 0; i < 5; ++i) Submit("k" + std::to_string(i));
  EXPECT_EQ(executor_.open(), 2u);
  executor_.CompleteNext(Status(200));
  Settle();
  EXPECT_EQ(executor_.open(), 2u);
  EXPECT_EQ(executor_.started(), 3u);
}

TEST_F(EngineTest, RecoveryRequeuesRunningJobsAndKeepsRetryDueTimes) {
  const auto done = Submit("k1");
  const auto waiting = Submit("k2");
  executor_.CompleteNext(Status(200));  // k1 ends
  Settle();
  EXPECT_EQ(store_.Job(done).state, JobState::kSucceeded);
  executor_.CompleteNext(Status(503));  // k2 waits 100ms
  Settle();
  const absl::Time due = store_.Job(waiting).next_attempt_at;
  const auto third = Submit("k3");  // RUNNING when the "process dies"
  ASSERT_EQ(executor_.open(), 1u);

  // A new engine on the same store: the old one is gone mid-attempt.
  FakeExecutor executor2;
  Engine engine2(TestConfig(), store_, executor2, clock_, InlineReads(7));
  ASSERT_TRUE(engine2.Recover().ok());
  store_.CommitAll();
  engine2.RunOnce(absl::ZeroDuration());
  store_.CommitAll();
  engine2.RunOnce(absl::ZeroDuration());  // RUNNING committed: its request is read
  engine2.RunOnce(absl::ZeroDuration());  // the read is back: the attempt starts
  EXPECT_EQ(executor2.started(), 1u) << "the RUNNING job runs again";
  EXPECT_EQ(engine2.NextWakeup(), due);
  EXPECT_EQ(store_.Job(third).attempt_count, 2);
  EXPECT_EQ(engine2.ActiveJobs(), 2);
}

TEST_F(EngineTest, WaitingJobsReloadTheirRequestFromTheStore) {
  const auto id = Submit("k1");
  executor_.CompleteNext(Status(429, {{"retry-after", "60"}}));
  Settle();
  clock_.Advance(absl::Seconds(60));
  Settle();
  ASSERT_EQ(executor_.started(), 2u);
  EXPECT_EQ(store_.spec_loads(), 1);
  EXPECT_EQ(executor_.request(1).body, executor_.request(0).body);
  (void)id;
}

// The config of TestConfig() plus an endpoint "gone" that a later config drops.
std::shared_ptr<const config::Config> ConfigWithGone() {
  auto cfg = std::make_shared<config::Config>(*TestConfig());
  config::EndpointConfig gone = cfg->endpoints[0];
  gone.name = "gone";
  cfg->endpoints.push_back(gone);
  return cfg;
}

class EngineRemovedEndpointTest : public EngineTest {
 protected:
  EngineRemovedEndpointTest() : EngineTest(ConfigWithGone(), false) {}

  common::JobId SubmitTo(const std::string& key, const std::string& endpoint) {
    common::JobId id = 0;
    engine_.Submit({MakeJob(key, endpoint, key, "student-1")},
                   [&id](std::vector<store::SubmitResult> r) { id = r.at(0).job_id; });
    store_.CommitAll();
    Settle();
    EXPECT_NE(id, 0);
    return id;
  }
};

// Issue 12 item 1: jobs of an ordering key whose endpoint left the config crashed every start.
TEST_F(EngineRemovedEndpointTest, JobsOfARemovedEndpointFailAtRecoveryAndTheKeyStaysOrdered) {
  // The key's first job hangs on "gone"; the other 19 wait behind it, alternating endpoints.
  std::vector<common::JobId> ids;
  for (int i = 0; i < 20; ++i) {
    ids.push_back(SubmitTo("k" + std::to_string(i), i % 2 == 0 ? "gone" : "lms"));
  }
  ASSERT_EQ(executor_.open(), 1u);
  EXPECT_EQ(store_.Job(ids[0]).state, JobState::kRunning);
  for (int i = 1; i < 20; ++i) EXPECT_EQ(store_.Job(ids[i]).state, JobState::kBlocked);

  // Restart without "gone": recovery must not crash, and fails its jobs with a clear reason.
  FakeExecutor executor2;
  Engine engine2(TestConfig(), store_, executor2, clock_, InlineReads(7));
  ASSERT_TRUE(engine2.Recover().ok());
  auto settle2 = [&] { Turns(engine2, store_, 20); };
  settle2();
  for (int i = 0; i < 20; i += 2) {
    const auto job = store_.Job(ids[i]);
    EXPECT_EQ(job.state, JobState::kFailed) << i;
    EXPECT_THAT(job.last_decision, HasSubstr("endpoint 'gone' is no longer configured")) << i;
  }
  EXPECT_EQ(engine2.Stats().unroutable, 10);
  // The lms jobs of the key run one at a time, in submit order, with their own bodies.
  for (int i = 1; i < 20; i += 2) {
    ASSERT_EQ(executor2.open(), 1u) << "one job of the key at a time, at job " << i;
    EXPECT_EQ(executor2.CompleteNext(Status(200)).body, "k" + std::to_string(i));
    settle2();
    EXPECT_EQ(store_.Job(ids[i]).state, JobState::kSucceeded) << i;
  }
  EXPECT_EQ(executor2.open(), 0u);
  EXPECT_EQ(engine2.ActiveJobs(), 0);

  // A third start finds nothing left to do.
  FakeExecutor executor3;
  Engine engine3(TestConfig(), store_, executor3, clock_, InlineReads(9));
  ASSERT_TRUE(engine3.Recover().ok());
  EXPECT_EQ(engine3.ActiveJobs(), 0);
}

TEST_F(EngineRemovedEndpointTest, ABlockedJobOfARemovedEndpointBehindALiveRunnerFailsAtOnce) {
  const auto first = SubmitTo("a", "lms");
  const auto second = SubmitTo("b", "gone");
  const auto third = SubmitTo("c", "lms");
  ASSERT_EQ(executor_.open(), 1u);
  FakeExecutor executor2;
  Engine engine2(TestConfig(), store_, executor2, clock_, InlineReads(7));
  ASSERT_TRUE(engine2.Recover().ok());
  Turns(engine2, store_, 5);
  EXPECT_EQ(store_.Job(second).state, JobState::kFailed);
  ASSERT_EQ(executor2.open(), 1u) << "the RUNNING job runs again, alone";
  EXPECT_EQ(executor2.CompleteNext(Status(200)).body, "a");
  Turns(engine2, store_, 5);
  EXPECT_EQ(store_.Job(first).state, JobState::kSucceeded);
  ASSERT_EQ(executor2.open(), 1u);
  EXPECT_EQ(executor2.CompleteNext(Status(200)).body, "c");
  Turns(engine2, store_, 5);
  EXPECT_EQ(store_.Job(third).state, JobState::kSucceeded);
}

// Issue 12 item 2: every BLOCKED job and the first 4,096 queued per endpoint kept their body in
// memory (2,000 jobs of 256 KiB: +535 MB). Now the bytes held are bounded by a budget; the rest
// are read back from the store at dispatch, with their exact bodies.
TEST_F(EngineTest, RequestsHeldInMemoryStayWithinTheByteBudgetAndAreAllSentExactly) {
  constexpr size_t kBudget = 64 << 10;
  constexpr int kJobs = 40;  // x 2 (one ordering key, one busy endpoint), 16 KiB each
  auto cfg = std::make_shared<config::Config>(*TestConfig(/*max_in_flight=*/1));
  EngineOptions options = InlineReads(3);
  options.spec_bytes_budget = kBudget;
  FakeExecutor executor;
  Engine engine(cfg, store_, executor, clock_, std::move(options));
  auto settle = [&] { Turns(engine, store_); };
  auto body_of = [](int i) {
    return std::string(16 << 10, static_cast<char>('a' + i % 26)) + std::to_string(i);
  };
  std::vector<store::NewJob> jobs;
  for (int i = 0; i < 2 * kJobs; ++i) {
    // The first kJobs on one ordering key (BLOCKED behind the first), the rest queued.
    jobs.push_back(
        MakeJob("big-" + std::to_string(i), "lms", body_of(i), i < kJobs ? "student-1" : ""));
  }
  engine.Submit(std::move(jobs), [](std::vector<store::SubmitResult> r) {
    for (const auto& x : r) ASSERT_TRUE(x.status.ok()) << x.status;
  });
  store_.CommitAll();
  settle();
  ASSERT_EQ(executor.open(), 1u);  // max_in_flight 1: everything else waits
  const EngineStats held = engine.Stats();
  EXPECT_LE(held.spec_bytes_held, static_cast<int64_t>(kBudget));
  EXPECT_GT(held.spec_bytes_held, 0) << "what fits stays in memory (no read at dispatch)";

  std::multiset<std::string> sent;
  for (int n = 0; n < 2 * kJobs && executor.open() > 0; ++n) {
    sent.insert(executor.CompleteNext(Status(200)).body);
    settle();
    EXPECT_LE(engine.Stats().spec_bytes_held, static_cast<int64_t>(kBudget + (17 << 10)))
        << "the budget plus the attempt on the wire";
  }
  std::multiset<std::string> want;
  for (int i = 0; i < 2 * kJobs; ++i) want.insert(body_of(i));
  EXPECT_TRUE(sent == want) << "every job sent once, with its exact body";
  EXPECT_GT(engine.Stats().spec_loads, 0);
  EXPECT_EQ(engine.Stats().spec_bytes_held, 0);
  EXPECT_EQ(engine.ActiveJobs(), 0);
}

// A read of a request that fails (the store busy for a moment) neither stops the server nor
// loses the job: the attempt is given back and tried again.
TEST_F(EngineTest, AFailedReadOfTheRequestIsTriedAgainLater) {
  EngineOptions options = InlineReads(5);
  options.spec_bytes_budget = 0;  // every request stays in the store
  FakeExecutor executor;
  Engine engine(TestConfig(), store_, executor, clock_, std::move(options));
  auto settle = [&] { Turns(engine, store_); };
  common::JobId id = 0;
  engine.Submit({MakeJob("r", "lms", "exact body")},
                [&id](std::vector<store::SubmitResult> r) { id = r[0].job_id; });
  store_.FailNextLoads(1);
  store_.CommitAll();
  settle();
  EXPECT_EQ(executor.started(), 0u);
  EXPECT_EQ(store_.Job(id).state, JobState::kWaitingRetry);
  EXPECT_EQ(store_.Job(id).attempt_count, 0) << "nothing was sent: the attempt is given back";
  EXPECT_THAT(store_.Job(id).last_decision, HasSubstr("could not be read from the store"));
  clock_.Advance(absl::Seconds(1));
  settle();
  ASSERT_EQ(executor.started(), 1u);
  EXPECT_EQ(executor.CompleteNext(Status(200)).body, "exact body");
  settle();
  EXPECT_EQ(store_.Job(id).state, JobState::kSucceeded);
  EXPECT_EQ(store_.Job(id).attempt_count, 1);
}

class RecordingSink : public WatchSink {
 public:
  void OnEvent(const JobEvent& e) override { states.push_back(e.state); }
  void OnEnd(absl::Status s) override {
    ended = true;
    end_status = s;
  }
  bool Closed() const override { return false; }
  std::vector<JobState> states;
  bool ended = false;
  absl::Status end_status;
};

TEST_F(EngineTest, WatchSeesEveryTransitionUntilTerminal) {
  const common::JobId id = SubmitOnly("w");
  auto sink = std::make_shared<RecordingSink>();
  engine_.Watch("t", id, sink);
  Settle();
  executor_.CompleteNext(Status(502));
  Settle();
  clock_.Advance(absl::Seconds(1));
  Settle();
  executor_.CompleteNext(Status(200));
  Settle();
  EXPECT_THAT(sink->states,
              ::testing::ElementsAre(JobState::kQueued, JobState::kRunning, JobState::kWaitingRetry,
                                     JobState::kRunning, JobState::kSucceeded));
  EXPECT_TRUE(sink->ended);
}

// Issue 12 item 3: a cancelled WatchSync stream's sink stayed in the engine until the job's
// next event (for a job waiting hours, hours of memory).
TEST_F(EngineTest, UnwatchDropsTheSinkAtOnce) {
  const common::JobId id = SubmitOnly("w");
  auto kept = std::make_shared<RecordingSink>();
  engine_.Watch("t", id, kept);
  std::vector<std::shared_ptr<RecordingSink>> cancelled;
  for (int i = 0; i < 3; ++i) {
    cancelled.push_back(std::make_shared<RecordingSink>());
    engine_.Watch("t", id, cancelled.back());
  }
  Settle();
  EXPECT_EQ(engine_.Stats().watchers, 4);
  for (auto& sink : cancelled) engine_.Unwatch(id, sink);
  engine_.Unwatch(id, std::make_shared<RecordingSink>());  // unknown: ignored
  Settle();
  EXPECT_EQ(engine_.Stats().watchers, 1);
  for (auto& sink : cancelled) EXPECT_EQ(sink.use_count(), 1) << "the engine let go of it";
  executor_.CompleteNext(Status(200));
  Settle();
  EXPECT_TRUE(kept->ended);
  EXPECT_EQ(kept->states.back(), JobState::kSucceeded);
  for (auto& sink : cancelled) EXPECT_FALSE(sink->ended);
  EXPECT_EQ(engine_.Stats().watchers, 0);
  engine_.Unwatch(id, kept);  // after the end: nothing left to drop
  Settle();
  EXPECT_EQ(engine_.Stats().watchers, 0);
}

TEST_F(EngineTest, SubmitBeyondTheActiveJobLimitIsResourceExhausted) {
  auto cfg = std::make_shared<config::Config>(*TestConfig());
  cfg->server.max_active_jobs = 1;
  Engine small(cfg, store_, executor_, clock_, InlineReads(1));
  std::vector<store::NewJob> jobs(2);
  for (int i = 0; i < 2; ++i) {
    jobs[i].spec.tenant = "t";
    jobs[i].spec.idempotency_key = "x" + std::to_string(i);
    jobs[i].spec.endpoint = "lms";
  }
  std::vector<store::SubmitResult> results;
  small.Submit(std::move(jobs), [&](std::vector<store::SubmitResult> r) { results = r; });
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].status.code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(EngineTest, AWatcherLearnsOfTheEndOnlyOnceItIsDurable) {
  const auto id = Submit("k1");
  executor_.CompleteNext(Status(200));
  engine_.RunOnce(absl::ZeroDuration());  // SUCCEEDED decided, written, not committed
  auto sink = std::make_shared<RecordingSink>();
  engine_.Watch("t", id, sink);
  engine_.RunOnce(absl::ZeroDuration());
  EXPECT_TRUE(sink->states.empty()) << "no terminal event before the commit";
  Settle();
  EXPECT_THAT(sink->states, ::testing::ElementsAre(JobState::kSucceeded));
  EXPECT_TRUE(sink->ended);
}

TEST_F(EngineTest, WatchOfAnEndedJobReadsItOffTheLoopThenSendsItsStateAndEnds) {
  const auto a = Submit("a");
  executor_.CompleteNext(Status(400));
  Settle();
  HeldReads held;
  FakeExecutor executor;
  Engine engine(TestConfig(), store_, executor, clock_, held.Options());
  ASSERT_TRUE(engine.Recover().ok());
  auto sink = std::make_shared<RecordingSink>();
  engine.Watch("t", a, sink);
  engine.RunOnce(absl::ZeroDuration());
  EXPECT_EQ(held.reads.size(), 1u);
  EXPECT_TRUE(sink->states.empty());
  held.RunAll();
  Turns(engine, store_);
  EXPECT_THAT(sink->states, ::testing::ElementsAre(JobState::kFailed));
  EXPECT_TRUE(sink->ended);
  EXPECT_TRUE(sink->end_status.ok()) << sink->end_status;
}

// --- Endpoint protection through the engine ------------------------------------------------

std::shared_ptr<const config::Config> BreakerConfig() {
  auto cfg = std::make_shared<config::Config>(*TestConfig());
  config::EndpointConfig& ep = cfg->endpoints[0];
  ep.circuit_breaker.min_requests = 2;
  ep.circuit_breaker.open_duration = absl::Seconds(1);
  ep.circuit_breaker.half_open_probes = 1;
  ep.slow_start.window = absl::ZeroDuration();
  return cfg;
}

class EngineProtectionTest : public EngineTest {
 protected:
  EngineProtectionTest() : EngineTest(BreakerConfig(), /*observed=*/true) {}

  EndpointStatus StatusNow() {
    absl::StatusOr<std::vector<EndpointStatus>> got;
    engine_.GetEndpointStatus("lms", [&](auto s) { got = std::move(s); });
    Settle();
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() && !got->empty() ? got->front() : EndpointStatus{};
  }
};

TEST_F(EngineProtectionTest, AnOpenCircuitHoldsJobsWithoutSpendingAttemptsUntilAProbeCloses) {
  const auto k1 = Submit("k1");
  const auto k2 = Submit("k2");
  ASSERT_EQ(executor_.started(), 2u);
  executor_.CompleteNext(Status(503));
  executor_.CompleteNext(Status(503));
  Settle();  // 2 of 2 failed: open for 1s
  EXPECT_EQ(StatusNow().circuit, CircuitState::kOpen);
  const auto k3 = Submit("k3");
  clock_.Advance(absl::Milliseconds(500));  // k1 and k2 are due (backoff 100ms)
  Settle();
  EXPECT_EQ(executor_.started(), 2u) << "nothing reaches a tripped endpoint";
  EXPECT_EQ(store_.Job(k1).attempt_count, 1);
  EXPECT_EQ(store_.Job(k2).attempt_count, 1);
  EXPECT_EQ(store_.Job(k3).attempt_count, 0) << "a wait spends no attempt";
  absl::Time until;
  EXPECT_EQ(engine_.EndpointWait("lms", false, &until), common::WaitReason::kCircuitOpen);
  EXPECT_EQ(until, clock_.Now() + absl::Milliseconds(500));
  EXPECT_EQ(engine_.EndpointsWaiting(common::WaitReason::kCircuitOpen),
            std::vector<std::string>{"lms"});
  const EndpointStatus open = StatusNow();
  EXPECT_EQ(open.next_probe_at, until);
  EXPECT_EQ(open.waiting[static_cast<int>(common::WaitReason::kCircuitOpen)], 3);
  EXPECT_EQ(engine_.NextWakeup(), until);

  clock_.Advance(absl::Milliseconds(500));
  Settle();  // half-open: one probe
  ASSERT_EQ(executor_.started(), 3u);
  executor_.CompleteNext(Status(200));
  Settle();  // closed: the rest go
  EXPECT_EQ(StatusNow().circuit, CircuitState::kClosed);
  EXPECT_EQ(executor_.started(), 5u);
  EXPECT_EQ(engine_.EndpointWait("lms", false, &until), common::WaitReason::kNone);
}

TEST_F(EngineProtectionTest, AnOperatorPauseIsDurableHoldsJobsAndIsRestoredAfterARestart) {
  absl::StatusOr<std::vector<EndpointStatus>> paused;
  engine_.PauseEndpoint("lms", absl::InfiniteFuture(), "LMS maintenance",
                        [&](auto s) { paused = std::move(s); });
  Settle();
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_TRUE(paused->at(0).operator_paused);
  EXPECT_EQ(paused->at(0).operator_reason, "LMS maintenance");
  const auto k1 = Submit("k1");
  EXPECT_EQ(executor_.started(), 0u);
  absl::Time until;
  EXPECT_EQ(engine_.EndpointWait("lms", false, &until), common::WaitReason::kOperatorPaused);
  EXPECT_EQ(until, absl::InfiniteFuture());

  // A restart on the same store: the pause is still there.
  FakeExecutor executor2;
  Engine restarted(BreakerConfig(), store_, executor2, clock_, InlineReads(5));
  ASSERT_TRUE(restarted.Recover().ok());
  Turns(restarted, store_);
  EXPECT_EQ(executor2.started(), 0u);
  absl::StatusOr<std::vector<EndpointStatus>> resumed;
  restarted.ResumeEndpoint("lms", [&](auto s) { resumed = std::move(s); });
  Turns(restarted, store_);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_FALSE(resumed->at(0).operator_paused);
  EXPECT_EQ(executor2.started(), 1u);
  EXPECT_EQ(store_.Job(k1).attempt_count, 1);
  // Resuming twice is refused; so is an unknown endpoint.
  restarted.ResumeEndpoint("lms", [&](auto s) { resumed = std::move(s); });
  Turns(restarted, store_);
  EXPECT_EQ(resumed.status().code(), absl::StatusCode::kFailedPrecondition);
  restarted.PauseEndpoint("nowhere", absl::InfiniteFuture(), "", [&](auto s) { resumed = s; });
  Turns(restarted, store_);
  EXPECT_EQ(resumed.status().code(), absl::StatusCode::kNotFound);
}

std::shared_ptr<const config::Config> RateConfig() {
  auto cfg = std::make_shared<config::Config>(*TestConfig());
  cfg->endpoints[0].rate_limit.rate = 10;
  cfg->endpoints[0].rate_limit.burst = 1;
  cfg->endpoints[0].slow_start.window = absl::ZeroDuration();
  return cfg;
}

class EngineRateLimitTest : public EngineTest {
 protected:
  EngineRateLimitTest() : EngineTest(RateConfig(), /*observed=*/false) {}
};

TEST_F(EngineRateLimitTest, SendsArePacedEvenWhenOneCommitReleasesSeveralAdmittedAttempts) {
  for (const char* key : {"k1", "k2", "k3"}) SubmitOnly(key);
  // Admitted one per token (10/s, burst 1), their RUNNING writes not yet committed: a slow
  // group commit.
  for (int i = 0; i < 3; ++i) {
    engine_.RunOnce(absl::ZeroDuration());
    if (i < 2) clock_.Advance(absl::Milliseconds(100));
  }
  ASSERT_EQ(executor_.started(), 0u);
  absl::Time until;
  EXPECT_EQ(engine_.EndpointWait("lms", false, &until), common::WaitReason::kNone);
  // The commit hands all three back at once: still one request per token leaves.
  store_.CommitAll();
  engine_.RunOnce(absl::ZeroDuration());
  EXPECT_EQ(executor_.started(), 1u) << "a clump of commits must not become a burst upstream";
  EXPECT_EQ(engine_.NextWakeup(), clock_.Now() + absl::Milliseconds(100));
  clock_.Advance(absl::Milliseconds(100));
  engine_.RunOnce(absl::ZeroDuration());
  EXPECT_EQ(executor_.started(), 2u);
  clock_.Advance(absl::Milliseconds(100));
  engine_.RunOnce(absl::ZeroDuration());
  EXPECT_EQ(executor_.started(), 3u);
}

// Clever answers a throttle with 429 and X-RateLimit-Reset (a unix timestamp), no Retry-After
// ("Rate Limiting" in https://dev.clever.com/docs/error-messages): with the endpoint's
// throttle_headers naming it, the job waits for the reset and the endpoint pauses until then.
std::shared_ptr<const config::Config> CleverHeadersConfig() {
  auto cfg = std::make_shared<config::Config>(*TestConfig());
  cfg->endpoints[0].throttle_headers.reset = {
      {"x-ratelimit-reset", policy::ResetForm::kUnixSeconds}};
  cfg->endpoints[0].slow_start.window = absl::ZeroDuration();
  return cfg;
}

class EngineThrottleHeadersTest : public EngineTest {
 protected:
  EngineThrottleHeadersTest() : EngineTest(CleverHeadersConfig(), /*observed=*/false) {}
};

TEST_F(EngineThrottleHeadersTest, AThrottleWaitsForTheResetItsHeadersAnnounce) {
  const auto first = Submit("k1");
  const absl::Time reset = absl::FromUnixSeconds(absl::ToUnixSeconds(clock_.Now()) + 20);
  executor_.CompleteNext(
      Status(429, {{"x-ratelimit-remaining", "0"},
                   {"x-ratelimit-reset", absl::StrCat(absl::ToUnixSeconds(reset))}}));
  Settle();
  EXPECT_EQ(store_.Job(first).state, JobState::kWaitingRetry);
  EXPECT_EQ(store_.Job(first).next_attempt_at, reset);
  Submit("k2");  // waits for the reset too: the endpoint is paused
  absl::Time until;
  EXPECT_EQ(engine_.EndpointWait("lms", false, &until), common::WaitReason::kEndpointPaused);
  EXPECT_EQ(until, reset);
  clock_.Advance(reset - clock_.Now() - absl::Milliseconds(1));
  Settle();
  EXPECT_EQ(executor_.started(), 1u);
  clock_.Advance(absl::Milliseconds(1));
  Settle();
  EXPECT_EQ(executor_.started(), 3u);
}

// A throttle naming no time (Canvas's 403, a bare 429): the endpoint waits out a throttle
// backoff of its own (1s, 2s, 4s ... here, no jitter) and the throttles spend no attempts.
std::shared_ptr<const config::Config> ThrottleBackoffConfig(int max_throttled = 100) {
  auto cfg = std::make_shared<config::Config>(*TestConfig());
  auto p = std::make_shared<policy::Policy>(*cfg->policies.at("default"));
  p->throttle_backoff = {absl::Seconds(1), absl::Seconds(8), 2.0, policy::Jitter::kNone};
  p->limits.max_throttled = max_throttled;
  cfg->policies["default"] = p;
  cfg->endpoints[0].slow_start.window = absl::ZeroDuration();
  return cfg;
}

class EngineThrottleBackoffTest : public EngineTest {
 protected:
  EngineThrottleBackoffTest() : EngineTest(ThrottleBackoffConfig(), /*observed=*/false) {}
};

TEST_F(EngineThrottleBackoffTest, ThrottlesNamingNoTimeBackOffTheEndpointAndSpendNoAttempts) {
  const auto id = Submit("k1");
  ASSERT_EQ(executor_.started(), 1u);
  for (const absl::Duration backoff : {absl::Seconds(1), absl::Seconds(2), absl::Seconds(4)}) {
    SCOPED_TRACE(absl::FormatDuration(backoff));
    executor_.CompleteNext(Status(429));
    Settle();
    // Due at once, held by the endpoint: RATE_LIMITED until the backoff ends.
    EXPECT_EQ(store_.Job(id).state, JobState::kWaitingRetry);
    EXPECT_EQ(store_.Job(id).next_attempt_at, clock_.Now());
    absl::Time until;
    EXPECT_EQ(engine_.EndpointWait("lms", true, &until), common::WaitReason::kRateLimited);
    EXPECT_EQ(until, clock_.Now() + backoff);
    EXPECT_THAT(store_.Job(id).last_decision, HasSubstr("throttle backoff"));
    const size_t started = executor_.started();
    clock_.Advance(backoff - absl::Milliseconds(1));
    Settle();
    EXPECT_EQ(executor_.started(), started);
    clock_.Advance(absl::Milliseconds(1));
    Settle();
    EXPECT_EQ(executor_.started(), started + 1);
  }
  // Four attempts with max_attempts 3: the three throttles did not count.
  EXPECT_EQ(store_.Job(id).throttled_count, 3);
  executor_.CompleteNext(Status(200));
  Settle();
  EXPECT_EQ(store_.Job(id).state, JobState::kSucceeded);
  EXPECT_EQ(store_.Job(id).attempt_count, 4);
}

// Eight attempts on the wire when the bucket runs dry come back throttled together: that is
// one signal, one backoff at level 1, not eight escalations.
TEST_F(EngineThrottleBackoffTest, AttemptsThrottledTogetherRaiseTheBackoffOnce) {
  for (int i = 0; i < 8; ++i) SubmitOnly(absl::StrCat("k", i));
  Settle();
  ASSERT_EQ(executor_.started(), 8u);
  for (int i = 0; i < 8; ++i) executor_.CompleteNext(Status(429));
  Settle();
  absl::Time until;
  EXPECT_EQ(engine_.EndpointWait("lms", true, &until), common::WaitReason::kRateLimited);
  EXPECT_EQ(until, clock_.Now() + absl::Seconds(1));
  clock_.Advance(absl::Seconds(1));
  Settle();
  ASSERT_EQ(executor_.started(), 16u);
  // Sent after the first backoff began, they throttle again: level 2, once.
  for (int i = 0; i < 8; ++i) executor_.CompleteNext(Status(429));
  Settle();
  EXPECT_EQ(engine_.EndpointWait("lms", true, &until), common::WaitReason::kRateLimited);
  EXPECT_EQ(until, clock_.Now() + absl::Seconds(2));
  // A success brings the level back: the next throttle waits 1s again.
  clock_.Advance(absl::Seconds(2));
  Settle();
  ASSERT_EQ(executor_.started(), 24u);
  executor_.CompleteNext(Status(200));
  for (int i = 0; i < 7; ++i) executor_.CompleteNext(Status(429));
  Settle();
  EXPECT_EQ(engine_.EndpointWait("lms", true, &until), common::WaitReason::kRateLimited);
  EXPECT_EQ(until, clock_.Now() + absl::Seconds(1));
}

TEST_F(EngineThrottleBackoffTest, TheThrottledCountSurvivesARestart) {
  const auto id = Submit("k1");
  executor_.CompleteNext(Status(429));
  Settle();
  ASSERT_EQ(store_.Job(id).throttled_count, 1);
  // A restart: a new engine on the same store reads the count back.
  FakeExecutor executor2;
  Engine engine2(ThrottleBackoffConfig(), store_, executor2, clock_, InlineReads(7));
  ASSERT_TRUE(engine2.Recover().ok());
  clock_.Advance(absl::Seconds(1));
  Turns(engine2, store_);
  ASSERT_EQ(executor2.started(), 1u);
  executor2.CompleteNext(Status(429));
  Turns(engine2, store_);
  EXPECT_EQ(store_.Job(id).throttled_count, 2);
}

class EngineMaxThrottledTest : public EngineTest {
 protected:
  EngineMaxThrottledTest() : EngineTest(ThrottleBackoffConfig(2), /*observed=*/false) {}
};

TEST_F(EngineMaxThrottledTest, MaxThrottledExhaustsAndAReplayStartsTheCountAnew) {
  const auto id = Submit("k1");
  executor_.CompleteNext(Status(429));
  Settle();
  clock_.Advance(absl::Seconds(1));
  Settle();
  executor_.CompleteNext(Status(429));
  Settle();
  EXPECT_EQ(store_.Job(id).state, JobState::kExhausted);
  EXPECT_THAT(store_.Job(id).last_decision, HasSubstr("throttled 2 times (max_throttled 2)"));
  EXPECT_EQ(store_.Job(id).throttled_count, 2);
  absl::Status replayed = absl::UnknownError("not called");
  engine_.Replay("t", id, [&](absl::Status s) { replayed = s; });
  Settle();
  ASSERT_TRUE(replayed.ok()) << replayed;
  EXPECT_EQ(store_.Job(id).throttled_count, 0);
  clock_.Advance(absl::Seconds(2));
  Settle();
  ASSERT_EQ(executor_.started(), 3u);
  executor_.CompleteNext(Status(429));
  Settle();
  EXPECT_EQ(store_.Job(id).state, JobState::kWaitingRetry);
  EXPECT_EQ(store_.Job(id).throttled_count, 1);
}

// Canvas-style answers (X-Rate-Limit-Remaining on every answer, no limit header): once the
// remaining quota falls below the low-water mark (a quarter of the most seen remaining), the
// endpoint's concurrency halves per round trip, held as RATE_LIMITED, before any throttle.
TEST_F(EngineTest, AFallingRemainingQuotaLowersConcurrencyBeforeAnyThrottle) {
  for (int i = 0; i < 8; ++i) SubmitOnly(absl::StrCat("k", i));
  Settle();
  ASSERT_EQ(executor_.started(), 8u);
  // The eight that were on the wire together: the first reading starts pacing at what is out.
  executor_.CompleteNext(Status(200, {{"x-rate-limit-remaining", "600.0"}}));
  for (int i = 0; i < 7; ++i) {
    executor_.CompleteNext(Status(200, {{"x-rate-limit-remaining", "100.0"}}));
  }
  Settle();
  for (int i = 0; i < 8; ++i) SubmitOnly(absl::StrCat("m", i));
  clock_.Advance(absl::Milliseconds(1));
  Settle();
  ASSERT_EQ(executor_.started(), 16u);  // 8 allowed (what was out), none of them sent after
  // Answers to attempts sent after pacing began: below 150, halve.
  clock_.Advance(absl::Milliseconds(20));
  executor_.CompleteNext(Status(200, {{"x-rate-limit-remaining", "90.0"}}));
  Settle();
  for (int i = 0; i < 8; ++i) SubmitOnly(absl::StrCat("n", i));
  Settle();
  absl::Time until;
  EXPECT_EQ(engine_.EndpointWait("lms", false, &until), common::WaitReason::kRateLimited);
  EXPECT_EQ(executor_.open(), 7u) << "halved to 4: nothing new starts while 7 are out";
  for (int i = 0; i < 4; ++i)
    executor_.CompleteNext(Status(200, {{"x-rate-limit-remaining", "90.0"}}));
  Settle();
  EXPECT_EQ(executor_.open(), 4u);
}

// --- Budgets, priorities and fair turns (issue 9 items 5 and 6) ---

// Three endpoints sharing "app"; "district" splits by the district label with a quota.
std::shared_ptr<const config::Config> BudgetConfig(int shared_in_flight, int64_t quota,
                                                   double high_reserve = 0) {
  auto cfg = std::make_shared<config::Config>(*TestConfig());
  cfg->endpoints[0].slow_start.window = absl::ZeroDuration();
  cfg->endpoints[0].circuit_breaker.enabled = false;
  config::BudgetConfig app;
  app.name = "app";
  app.max_in_flight = shared_in_flight;
  config::BudgetConfig district;
  district.name = "district";
  district.split_by = "district";
  district.quota.limit = quota;
  district.quota.period = absl::Minutes(1);
  district.quota.reserve[static_cast<int>(common::Priority::kHigh)] = high_reserve;
  cfg->budgets = {app, district};
  for (const char* name : {"lms", "lms-2", "lms-3"}) {
    config::EndpointConfig ep = cfg->endpoints[0];
    ep.name = name;
    ep.budgets = {"app", "district"};
    if (ep.name != "lms") cfg->endpoints.push_back(ep);
  }
  cfg->endpoints[0].budgets = {"app", "district"};
  return cfg;
}

class EngineBudgetTest : public EngineTest {
 protected:
  EngineBudgetTest() : EngineTest(BudgetConfig(4, 1000), /*observed=*/true) {}
  explicit EngineBudgetTest(std::shared_ptr<const config::Config> config)
      : EngineTest(std::move(config), /*observed=*/true) {}

  common::JobId SubmitTo(const std::string& key, const std::string& endpoint,
                         const std::string& district = "",
                         common::Priority priority = common::Priority::kUnspecified) {
    store::NewJob j = MakeJob(key, endpoint, "{}");
    if (!district.empty()) j.spec.labels["district"] = district;
    j.spec.priority = priority;
    j.fingerprint = common::Fingerprint(j.spec);
    common::JobId id = 0;
    engine_.Submit({std::move(j)}, [&id](std::vector<store::SubmitResult> r) {
      ASSERT_TRUE(r.at(0).status.ok()) << r.at(0).status;
      id = r.at(0).job_id;
    });
    store_.CommitAll();
    EXPECT_NE(id, 0);
    return id;
  }
  EndpointStatus StatusOf(const std::string& endpoint) {
    absl::StatusOr<std::vector<EndpointStatus>> got;
    engine_.GetEndpointStatus(endpoint, [&](auto s) { got = std::move(s); });
    Settle();
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() && !got->empty() ? got->front() : EndpointStatus{};
  }
  int Waiting(const EndpointStatus& s, common::WaitReason r) {
    return static_cast<int>(s.waiting[static_cast<int>(r)]);
  }
};

TEST_F(EngineBudgetTest, ThreeEndpointsSharingABudgetNeverExceedItTogether) {
  for (int i = 0; i < 10; ++i) {
    for (const char* ep : {"lms", "lms-2", "lms-3"}) SubmitTo(absl::StrCat(ep, "-", i), ep);
  }
  Settle();
  size_t done = 0;
  size_t most_open = 0;
  for (int step = 0; step < 100 && done < 30; ++step) {
    most_open = std::max(most_open, executor_.open());
    ASSERT_LE(executor_.open(), 4u) << "step " << step;
    if (executor_.open() == 0) break;
    executor_.CompleteNext(Status(200));
    ++done;
    Settle();
  }
  EXPECT_EQ(done, 30u);
  EXPECT_EQ(most_open, 4u);  // the shared cap, not 3 x 8
  EXPECT_EQ(engine_.Stats().succeeded, 30);
  const EndpointStatus s = StatusOf("lms-2");
  ASSERT_EQ(s.budgets.size(), 2u);
  EXPECT_EQ(s.budgets[0].name, "app");
  EXPECT_EQ(s.budgets[0].max_in_flight, 4);
}

TEST_F(EngineBudgetTest, ASharedCapHoldsJobsAsRateLimitedWithoutSpendingAttempts) {
  std::vector<common::JobId> ids;
  for (int i = 0; i < 6; ++i)
    ids.push_back(SubmitTo(absl::StrCat("k", i), i % 2 ? "lms" : "lms-3"));
  Settle();
  EXPECT_EQ(executor_.open(), 4u);
  int never_tried = 0;
  for (const common::JobId id : ids) never_tried += store_.Job(id).attempt_count == 0;
  EXPECT_EQ(never_tried, 2);
  const EndpointStatus lms = StatusOf("lms");
  const EndpointStatus lms3 = StatusOf("lms-3");
  EXPECT_EQ(Waiting(lms, common::WaitReason::kRateLimited) +
                Waiting(lms3, common::WaitReason::kRateLimited),
            2);
}

class EngineQuotaTest : public EngineBudgetTest {
 protected:
  EngineQuotaTest() : EngineBudgetTest(BudgetConfig(100, 3, /*high_reserve=*/1.0 / 3)) {}
};

TEST_F(EngineQuotaTest, ADistrictOutOfQuotaWaitsForThePeriodWhileAnotherGoesOn) {
  // Low priority may use 2 of the 3 (a third is kept for high).
  std::vector<common::JobId> d1;
  for (int i = 0; i < 4; ++i) d1.push_back(SubmitTo(absl::StrCat("d1-", i), "lms", "d1"));
  const common::JobId d2 = SubmitTo("d2-0", "lms-2", "d2");
  Settle();
  EXPECT_EQ(executor_.open(), 3u);  // two of d1 (normal: two thirds), d2's one
  EXPECT_EQ(store_.Job(d2).attempt_count, 1);
  while (executor_.open() > 0) {
    executor_.CompleteNext(Status(200));
    Settle();
  }
  EXPECT_EQ(store_.Job(d1[2]).attempt_count, 0);
  EXPECT_EQ(store_.Job(d1[3]).attempt_count, 0);
  EndpointStatus s = StatusOf("lms");
  EXPECT_EQ(Waiting(s, common::WaitReason::kQuotaReserved), 2);
  absl::Time until;
  const common::WaitReason wait =
      engine_.BudgetWait("lms", store_.Job(d1[2]).spec, common::Priority::kNormal, &until);
  EXPECT_EQ(wait, common::WaitReason::kQuotaReserved);
  const absl::Time period_end = absl::FromUnixSeconds(1'800'000'000 / 60 * 60 + 60);
  EXPECT_EQ(until, period_end);
  EXPECT_EQ(engine_.NextWakeup(), period_end);
  EXPECT_EQ(engine_.EndpointsWaiting(common::WaitReason::kQuotaReserved),
            std::vector<std::string>{"lms"});

  // A high-priority grade may use the reserve; then the quota is used up for everyone.
  const common::JobId urgent = SubmitTo("d1-high", "lms-3", "d1", common::Priority::kHigh);
  Settle();
  EXPECT_EQ(store_.Job(urgent).attempt_count, 1);
  executor_.CompleteNext(Status(200));
  Settle();
  const common::JobId late = SubmitTo("d1-late", "lms", "d1", common::Priority::kHigh);
  Settle();
  EXPECT_EQ(store_.Job(late).attempt_count, 0);
  s = StatusOf("lms");
  EXPECT_EQ(Waiting(s, common::WaitReason::kQuotaExhausted), 3);  // all of it is used now
  EXPECT_EQ(Waiting(s, common::WaitReason::kQuotaReserved), 0);
  ASSERT_EQ(s.budgets.size(), 2u);
  EXPECT_EQ(s.budgets[1].quota_limit, 3);
  EXPECT_EQ(s.budgets[1].period_end, period_end);
  ASSERT_FALSE(s.budgets[1].busiest.empty());
  EXPECT_EQ(s.budgets[1].busiest[0].scope, "d1");
  EXPECT_EQ(s.budgets[1].busiest[0].quota_used, 3);

  // The next period renews it: the high one first, then one normal (normal jobs may use two
  // thirds of it); the last normal one waits for the period after.
  clock_.Set(period_end);
  Settle();
  EXPECT_EQ(store_.Job(late).attempt_count, 1);
  EXPECT_EQ(executor_.open(), 2u);
  while (executor_.open() > 0) {
    executor_.CompleteNext(Status(200));
    Settle();
  }
  EXPECT_EQ(store_.Job(d1[3]).attempt_count, 0);
  clock_.Set(period_end + absl::Minutes(1));
  Settle();
  ASSERT_EQ(executor_.open(), 1u);
  executor_.CompleteNext(Status(200));
  Settle();
  EXPECT_EQ(engine_.Stats().succeeded, 7);
  EXPECT_EQ(engine_.Stats().exhausted + engine_.Stats().failed, 0);
}

TEST_F(EngineQuotaTest, WhatAQuotaUsedSurvivesARestartWithinItsPeriod) {
  for (int i = 0; i < 3; ++i) SubmitTo(absl::StrCat("h", i), "lms", "d1", common::Priority::kHigh);
  Settle();
  while (executor_.open() > 0) {
    executor_.CompleteNext(Status(200));
    Settle();
  }
  const common::JobId waiting = SubmitTo("h3", "lms", "d1", common::Priority::kHigh);
  Settle();
  EXPECT_EQ(store_.Job(waiting).attempt_count, 0);
  const absl::StatusOr<std::vector<store::BudgetUsage>> rows = store_.LoadBudgetUsage();
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].budget, "district");
  EXPECT_EQ((*rows)[0].scope, "d1");
  EXPECT_EQ((*rows)[0].used, 3);

  // The same store, a new process: the job is recovered, the quota still spent.
  FakeExecutor executor;
  Engine restarted(BudgetConfig(100, 3, 1.0 / 3), store_, executor, clock_, InlineReads(7));
  ASSERT_TRUE(restarted.Recover().ok());
  Turns(restarted, store_);
  EXPECT_EQ(executor.started(), 0u);
  clock_.Advance(absl::Minutes(1));
  Turns(restarted, store_);
  EXPECT_EQ(executor.started(), 1u);
}

// One endpoint of 3 in flight; "district" allows 2 attempts a minute per district.
std::shared_ptr<const config::Config> SmallQuotaConfig() {
  auto cfg = std::make_shared<config::Config>(*BudgetConfig(100, 2));
  cfg->endpoints.resize(1);
  cfg->endpoints[0].max_in_flight = 3;
  return cfg;
}

class EngineSmallQuotaTest : public EngineBudgetTest {
 protected:
  EngineSmallQuotaTest() : EngineBudgetTest(SmallQuotaConfig()) {}
};

// The budgets' holds are found by a scan of the lanes, not by the dispatch pass: a pass that
// stops at the endpoint's in-flight cap must not hide them.
TEST_F(EngineSmallQuotaTest, QuotaWaitsShowWhileTheEndpointIsAtItsCap) {
  std::vector<common::JobId> d1;
  for (int i = 0; i < 4; ++i) d1.push_back(SubmitTo(absl::StrCat("d1-", i), "lms", "d1"));
  for (int i = 0; i < 3; ++i) SubmitTo(absl::StrCat("d2-", i), "lms", "d2");
  Settle();
  ASSERT_EQ(executor_.open(), 3u);  // two of d1, one of d2: the cap
  const EndpointStatus s = StatusOf("lms");
  EXPECT_EQ(Waiting(s, common::WaitReason::kQuotaExhausted), 2);  // d1's last two
  absl::Time until;
  EXPECT_EQ(engine_.BudgetWait("lms", store_.Job(d1[3]).spec, common::Priority::kNormal, &until),
            common::WaitReason::kQuotaExhausted);
  EXPECT_EQ(engine_.EndpointsWaiting(common::WaitReason::kQuotaExhausted),
            std::vector<std::string>{"lms"});
}

// A replayed job keeps its labels and priority: it is counted in its own district's quota.
TEST_F(EngineSmallQuotaTest, AReplayedJobIsCountedInItsOwnScope) {
  const common::JobId refused = SubmitTo("d1-refused", "lms", "d1");
  Settle();
  executor_.CompleteNext(Status(400));  // permanent: FAILED, one of d1's two spent
  Settle();
  ASSERT_EQ(store_.Job(refused).state, JobState::kFailed);
  SubmitTo("d1-ok", "lms", "d1");
  Settle();
  executor_.CompleteNext(Status(200));  // d1's second
  Settle();
  absl::Status replayed = absl::UnknownError("not answered");
  engine_.Replay("t", refused, [&](absl::Status st) { replayed = st; });
  Settle();
  ASSERT_TRUE(replayed.ok()) << replayed;
  EXPECT_EQ(executor_.open(), 0u) << "d1 has no quota left this period";
  EXPECT_EQ(Waiting(StatusOf("lms"), common::WaitReason::kQuotaExhausted), 1);
  clock_.Advance(absl::Minutes(1));
  Settle();
  EXPECT_EQ(executor_.open(), 1u);
}

class EnginePriorityTest : public EngineBudgetTest {
 protected:
  EnginePriorityTest() : EngineBudgetTest(OneAtATime()) {}
  static std::shared_ptr<const config::Config> OneAtATime() {
    auto cfg = std::make_shared<config::Config>(*TestConfig(1));
    cfg->endpoints[0].slow_start.window = absl::ZeroDuration();
    cfg->endpoints[0].fairness_label = "district";
    auto low = std::make_shared<policy::Policy>(*cfg->policies.at("default"));
    low->name = "telemetry";
    low->priority = common::Priority::kLow;
    cfg->policies["telemetry"] = low;
    return cfg;
  }
  common::JobId SubmitWithPolicy(const std::string& key, const std::string& policy) {
    store::NewJob j = MakeJob(key, "lms", "{}");
    j.spec.policy = policy;
    j.fingerprint = common::Fingerprint(j.spec);
    common::JobId id = 0;
    engine_.Submit({std::move(j)}, [&id](std::vector<store::SubmitResult> r) { id = r[0].job_id; });
    store_.CommitAll();
    return id;
  }
  // Completes the one attempt on the wire and returns the job the next one belongs to.
  std::string Next() {
    executor_.CompleteNext(Status(200));
    Settle();
    if (executor_.open() == 0) return "";
    for (const auto& [name, value] : executor_.request(executor_.started() - 1).headers) {
      if (name == "Idempotency-Key") return value;
    }
    return "(no key)";
  }
};

TEST_F(EnginePriorityTest, HigherPrioritiesStartFirstThePolicysWhenTheJobNamesNone) {
  SubmitTo("first", "lms");  // takes the one place
  Settle();
  SubmitWithPolicy("telemetry", "telemetry");  // the policy's: low
  SubmitTo("attendance", "lms");               // normal
  SubmitTo("grade", "lms", "", common::Priority::kHigh);
  SubmitTo("late-grade", "lms", "", common::Priority::kHigh);
  Settle();
  std::vector<std::string> order;
  for (int i = 0; i < 4; ++i) order.push_back(Next());
  EXPECT_THAT(order, ::testing::ElementsAre("grade", "late-grade", "attendance", "telemetry"));
}

TEST_F(EnginePriorityTest, AReloadThatRaisesAPolicysPriorityReordersTheQueuedJobs) {
  SubmitTo("first", "lms");
  Settle();
  SubmitTo("attendance", "lms");               // normal
  SubmitWithPolicy("telemetry", "telemetry");  // low, until the reload
  Settle();
  auto raised = std::make_shared<config::Config>(*OneAtATime());
  auto high = std::make_shared<policy::Policy>(*raised->policies.at("telemetry"));
  high->priority = common::Priority::kHigh;
  raised->policies["telemetry"] = high;
  absl::Status reloaded = absl::UnknownError("not answered");
  engine_.Reload(raised, [&](absl::Status st) { reloaded = st; });
  Settle();
  ASSERT_TRUE(reloaded.ok()) << reloaded;
  EXPECT_EQ(Next(), "telemetry");
  EXPECT_EQ(Next(), "attendance");
}

TEST_F(EnginePriorityTest, DistrictsTakeTurnsSoABackfillCannotHoldTheOthersBack) {
  SubmitTo("first", "lms");
  Settle();
  for (int i = 0; i < 50; ++i) SubmitTo(absl::StrCat("backfill-", i), "lms", "d1");
  SubmitTo("d2-a", "lms", "d2");
  SubmitTo("d2-b", "lms", "d2");
  Settle();
  std::vector<std::string> order;
  for (int i = 0; i < 4; ++i) order.push_back(Next());
  EXPECT_THAT(order, ::testing::ElementsAre("backfill-0", "d2-a", "backfill-1", "d2-b"));
}

}  // namespace
}  // namespace rebound::engine
