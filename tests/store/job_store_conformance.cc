#include "tests/store/job_store_conformance.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/job.h"

namespace rebound::store::conformance {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

using common::AttemptRecord;
using common::FormatJobId;
using common::JobSpec;
using common::WaitReason;

void PrintTo(const BackendFactory& factory, std::ostream* os) { *os << factory.name; }

std::string BackendName(const ::testing::TestParamInfo<BackendFactory>& info) {
  return info.param.name;
}

JobSpec Spec(absl::string_view tenant, absl::string_view key) {
  JobSpec spec;
  spec.tenant = std::string(tenant);
  spec.idempotency_key = std::string(key);
  spec.endpoint = "canvas";
  spec.method = "PUT";
  spec.path = "/api/v1/courses/7/assignments/3/submissions/11";
  spec.headers = {{"Content-Type", "application/json"}};
  spec.body = R"({"submission":{"posted_grade":"A-"}})";
  return spec;
}

NewJob Job(JobSpec spec) {
  NewJob job;
  job.fingerprint = common::Fingerprint(spec);
  job.spec = std::move(spec);
  return job;
}

namespace {

// Counts callbacks of many Submit calls, each of one job.
class SubmitTally {
 public:
  explicit SubmitTally(int expected) : state_(std::make_shared<State>(expected)) {}

  // Submits `job` and records its result in slot `index`.
  void Submit(JobStore& store, NewJob job, absl::Time now, int index) {
    std::vector<NewJob> jobs;
    jobs.push_back(std::move(job));
    store.Submit(std::move(jobs), now, [state = state_, index](std::vector<SubmitResult> r) {
      SubmitResult result;
      if (r.size() == 1) {
        result = std::move(r[0]);
      } else {
        result.status = absl::InternalError(absl::StrCat(r.size(), " results for one job"));
      }
      state->results[index] = std::move(result);
      if (state->remaining.fetch_sub(1) == 1) state->done.Notify();
    });
  }
  // The results, once every callback ran; empty (and a test failure) on timeout.
  std::vector<SubmitResult> Wait() {
    if (!state_->done.WaitForNotificationWithTimeout(kCallbackDeadline)) {
      ADD_FAILURE() << state_->remaining.load() << " submits did not complete within "
                    << kCallbackDeadline;
      return {};
    }
    return state_->results;
  }

 private:
  struct State {
    explicit State(int n) : remaining(n), results(n) {}
    std::atomic<int> remaining;
    std::vector<SubmitResult> results;
    absl::Notification done;
  };
  std::shared_ptr<State> state_;
};

Transition To(JobId id, JobState state) {
  Transition t;
  t.job_id = id;
  t.state = state;
  return t;
}

// A WAITING_RETRY transition after `attempts` attempts of the current budget, due at `due`.
Transition Waiting(JobId id, WaitReason reason, absl::Time due, int attempts = 1) {
  Transition t = To(id, JobState::kWaitingRetry);
  t.attempt_count = attempts;
  t.next_attempt_at = due;
  t.wait_reason = reason;
  return t;
}

std::vector<JobId> Ids(const std::vector<common::JobRecord>& jobs) {
  std::vector<JobId> ids;
  for (const auto& job : jobs) ids.push_back(job.id);
  return ids;
}

void ExpectSpecEq(const JobSpec& got, const JobSpec& want) {
  EXPECT_EQ(got.tenant, want.tenant);
  EXPECT_EQ(got.idempotency_key, want.idempotency_key);
  EXPECT_EQ(got.endpoint, want.endpoint);
  EXPECT_EQ(got.method, want.method);
  EXPECT_EQ(got.path, want.path);
  EXPECT_EQ(got.query, want.query);
  EXPECT_EQ(got.headers, want.headers);
  EXPECT_EQ(got.body, want.body);
  EXPECT_EQ(got.ordering_key, want.ordering_key);
  EXPECT_EQ(got.deadline, want.deadline);
  EXPECT_EQ(got.labels, want.labels);
  EXPECT_EQ(got.correlation_id, want.correlation_id);
  EXPECT_EQ(got.policy, want.policy);
  EXPECT_EQ(got.priority, want.priority);
}

void ExpectAttemptEq(const AttemptRecord& got, const AttemptRecord& want) {
  EXPECT_EQ(got.number, want.number);
  EXPECT_EQ(got.started_at, want.started_at);
  EXPECT_EQ(got.duration, want.duration);
  EXPECT_EQ(got.http_status, want.http_status);
  EXPECT_EQ(got.transport_error, want.transport_error);
  EXPECT_EQ(got.classification, want.classification);
  EXPECT_EQ(got.decision, want.decision);
  EXPECT_EQ(got.next_attempt_at, want.next_attempt_at);
}

}  // namespace

PendingSubmit::PendingSubmit(JobStore& store, std::vector<NewJob> jobs, absl::Time now)
    : state_(std::make_shared<State>()) {
  store.Submit(std::move(jobs), now, [state = state_](std::vector<SubmitResult> results) {
    state->results = std::move(results);
    state->done.Notify();
  });
}

std::vector<SubmitResult> PendingSubmit::Wait() {
  if (!state_->done.WaitForNotificationWithTimeout(kCallbackDeadline)) {
    ADD_FAILURE() << "Submit did not complete within " << kCallbackDeadline;
    return {};
  }
  return state_->results;
}

JobStore::WriteDone PendingWrite::Callback() {
  return [state = state_](absl::Status status) {
    state->status = std::move(status);
    state->done.Notify();
  };
}

absl::Status PendingWrite::Wait() {
  if (!state_->done.WaitForNotificationWithTimeout(kCallbackDeadline)) {
    ADD_FAILURE() << "the write did not complete within " << kCallbackDeadline;
    return absl::DeadlineExceededError("the write did not complete");
  }
  return state_->status;
}

PendingApply::PendingApply(JobStore& store, std::vector<Transition> transitions, absl::Time now) {
  store.Apply(std::move(transitions), now, write_.Callback());
}

std::vector<SubmitResult> SubmitAndWait(JobStore& store, std::vector<NewJob> jobs, absl::Time now) {
  return PendingSubmit(store, std::move(jobs), now).Wait();
}

SubmitResult SubmitOne(JobStore& store, NewJob job, absl::Time now) {
  std::vector<NewJob> jobs;
  jobs.push_back(std::move(job));
  std::vector<SubmitResult> results = SubmitAndWait(store, std::move(jobs), now);
  if (results.size() != 1) {
    SubmitResult failed;
    failed.status = absl::InternalError(absl::StrCat(results.size(), " results for one job"));
    return failed;
  }
  return results[0];
}

absl::Status ApplyAndWait(JobStore& store, std::vector<Transition> transitions, absl::Time now) {
  return PendingApply(store, std::move(transitions), now).Wait();
}

absl::Status SaveEndpointPauseAndWait(JobStore& store, EndpointPause pause) {
  PendingWrite write;
  store.SaveEndpointPause(std::move(pause), write.Callback());
  return write.Wait();
}

absl::Status DeleteEndpointPauseAndWait(JobStore& store, std::string endpoint) {
  PendingWrite write;
  store.DeleteEndpointPause(std::move(endpoint), write.Callback());
  return write.Wait();
}

std::vector<common::JobRecord> ListAll(JobStore& store, const std::string& tenant,
                                       const ListFilter& filter, int page_size) {
  std::vector<common::JobRecord> all;
  std::string token;
  for (int pages = 0; pages < 100'000; ++pages) {
    absl::StatusOr<ListPage> page = store.List(tenant, filter, page_size, token);
    if (!page.ok()) {
      ADD_FAILURE() << "List: " << page.status();
      return all;
    }
    for (auto& job : page->jobs) all.push_back(std::move(job));
    if (page->next_page_token.empty()) return all;
    token = page->next_page_token;
  }
  ADD_FAILURE() << "List does not end";
  return all;
}

void JobStoreConformanceTest::SetUp() {
  backend_ = GetParam().make();
  ASSERT_NE(backend_, nullptr);
  absl::StatusOr<std::unique_ptr<JobStore>> store = backend_->Open();
  ASSERT_TRUE(store.ok()) << store.status();
  store_ = *std::move(store);
}

void JobStoreConformanceTest::TearDown() {
  store_.reset();
  backend_.reset();
}

void JobStoreConformanceTest::Reopen() {
  store_.reset();
  absl::StatusOr<std::unique_ptr<JobStore>> store = backend_->Open();
  ASSERT_TRUE(store.ok()) << store.status();
  store_ = *std::move(store);
}

namespace {

using namespace std::string_literals;  // NOLINT(build/namespaces): binary bodies in tests

TEST_P(JobStoreConformanceTest, SubmitThenGetRoundTripsEveryField) {
  JobSpec spec = Spec("tenant-a", "key-1");
  spec.endpoint = "moodle";
  spec.method = "POST";
  spec.path = "/webservice/rest/server.php";
  spec.query = "wsfunction=core_grades_update_grades&moodlewsrestformat=json";
  spec.headers = {{"X-B", "2"}, {"X-A", "1"}, {"X-B", "3"}, {"X-Empty", ""}};
  spec.body = "bin\0ary\xff\0end"s;
  spec.ordering_key = "course-7";
  spec.deadline = kT0 + absl::Hours(1) + absl::Milliseconds(123);
  spec.labels = {{"course", "7"}, {"term", "2025-fall"}};
  spec.correlation_id = "corr-123";
  spec.policy = "gentle";
  spec.priority = common::Priority::kHigh;
  const NewJob job = Job(spec);

  const SubmitResult r = SubmitOne(*store_, job, kT0);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_GT(r.job_id, 0);
  EXPECT_EQ(r.state, JobState::kQueued);
  EXPECT_FALSE(r.deduplicated);

  absl::StatusOr<JobRecord> got = store_->Get("tenant-a", r.job_id, /*with_attempts=*/true);
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSpecEq(got->spec, spec);
  EXPECT_EQ(got->id, r.job_id);
  EXPECT_EQ(got->fingerprint, job.fingerprint);
  EXPECT_EQ(got->state, JobState::kQueued);
  EXPECT_EQ(got->attempt_count, 0);
  EXPECT_EQ(got->budget_base, 0);
  EXPECT_EQ(got->throttled_count, 0);
  EXPECT_EQ(got->created_at, kT0);
  EXPECT_EQ(got->updated_at, kT0);
  EXPECT_EQ(got->next_attempt_at, absl::InfinitePast());
  EXPECT_EQ(got->first_attempt_at, absl::InfinitePast());
  EXPECT_EQ(got->last_decision, "");
  EXPECT_EQ(got->last_http_status, 0);
  EXPECT_EQ(got->last_response_body, "");
  EXPECT_EQ(got->wait_reason, WaitReason::kNone);
  EXPECT_EQ(got->waits_behind, 0);
  EXPECT_THAT(got->attempts, IsEmpty());

  absl::StatusOr<JobSpec> loaded = store_->LoadSpec(r.job_id);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSpecEq(*loaded, spec);
}

TEST_P(JobStoreConformanceTest, MinimalJobRoundTripsWithoutDeadlineHeadersOrBody) {
  JobSpec spec = Spec("tenant-a", "key-1");
  spec.headers.clear();
  spec.body.clear();
  spec.method = "GET";
  const SubmitResult r = SubmitOne(*store_, Job(spec), kT0);
  ASSERT_TRUE(r.status.ok()) << r.status;

  absl::StatusOr<JobRecord> got = store_->Get("tenant-a", r.job_id, /*with_attempts=*/false);
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSpecEq(got->spec, spec);
  EXPECT_EQ(got->spec.deadline, absl::InfiniteFuture());
}

TEST_P(JobStoreConformanceTest, AcknowledgedSubmitSurvivesCloseAndReopen) {
  const JobSpec spec = Spec("tenant-a", "key-1");
  const SubmitResult r = SubmitOne(*store_, Job(spec), kT0);
  ASSERT_TRUE(r.status.ok()) << r.status;
  Transition running = To(r.job_id, JobState::kRunning);
  running.attempt_count = 1;
  running.first_attempt_at = kT0 + absl::Seconds(1);
  AttemptRecord attempt;
  attempt.number = 1;
  attempt.started_at = kT0 + absl::Seconds(1);
  attempt.decision = "in flight";
  running.attempt = attempt;
  ASSERT_TRUE(ApplyAndWait(*store_, {running}, kT0 + absl::Seconds(1)).ok());

  Reopen();

  absl::StatusOr<JobRecord> got = store_->Get("tenant-a", r.job_id, /*with_attempts=*/true);
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSpecEq(got->spec, spec);
  EXPECT_EQ(got->state, JobState::kRunning);
  EXPECT_EQ(got->first_attempt_at, kT0 + absl::Seconds(1));
  ASSERT_EQ(got->attempts.size(), 1u);
  ExpectAttemptEq(got->attempts[0], attempt);
}

TEST_P(JobStoreConformanceTest, CountDeadLettersCountsFailedAndExhaustedPerEndpoint) {
  auto empty = store_->CountDeadLetters();
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->empty());
  std::vector<JobId> ids;
  for (int i = 0; i < 4; ++i) {
    common::JobSpec spec = Spec("t", absl::StrCat("dl-", i));
    spec.endpoint = i < 3 ? "canvas" : "moodle";
    const SubmitResult r = SubmitOne(*store_, Job(spec), kT0);
    ASSERT_TRUE(r.status.ok()) << r.status;
    ids.push_back(r.job_id);
  }
  ASSERT_TRUE(ApplyAndWait(*store_,
                           {To(ids[0], JobState::kFailed), To(ids[1], JobState::kExhausted),
                            To(ids[2], JobState::kSucceeded), To(ids[3], JobState::kFailed)},
                           kT0)
                  .ok());
  auto counts = store_->CountDeadLetters();
  ASSERT_TRUE(counts.ok()) << counts.status();
  std::map<std::string, int64_t> by_endpoint(counts->begin(), counts->end());
  EXPECT_EQ(by_endpoint, (std::map<std::string, int64_t>{{"canvas", 2}, {"moodle", 1}}));
}

TEST_P(JobStoreConformanceTest, SameKeyAndRequestReturnsTheExistingJobInItsCurrentState) {
  const NewJob job = Job(Spec("tenant-a", "key-1"));
  const SubmitResult first = SubmitOne(*store_, job, kT0);
  ASSERT_TRUE(first.status.ok()) << first.status;
  Transition running = To(first.job_id, JobState::kRunning);
  running.attempt_count = 1;
  ASSERT_TRUE(ApplyAndWait(*store_, {running}, kT0 + absl::Seconds(1)).ok());

  const SubmitResult again = SubmitOne(*store_, job, kT0 + absl::Minutes(1));
  ASSERT_TRUE(again.status.ok()) << again.status;
  EXPECT_TRUE(again.deduplicated);
  EXPECT_EQ(again.job_id, first.job_id);
  EXPECT_EQ(again.state, JobState::kRunning);
  EXPECT_EQ(ListAll(*store_, "tenant-a").size(), 1u);
}

TEST_P(JobStoreConformanceTest, SameKeyWithADifferentRequestIsAlreadyExistsNamingTheJob) {
  const SubmitResult first = SubmitOne(*store_, Job(Spec("tenant-a", "key-1")), kT0);
  ASSERT_TRUE(first.status.ok()) << first.status;
  JobSpec other = Spec("tenant-a", "key-1");
  other.body = R"({"submission":{"posted_grade":"B+"}})";

  const SubmitResult r = SubmitOne(*store_, Job(other), kT0);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kAlreadyExists) << r.status;
  EXPECT_THAT(std::string(r.status.message()), HasSubstr(FormatJobId(first.job_id)));
  EXPECT_THAT(std::string(r.status.message()), HasSubstr("'key-1'"));
  EXPECT_EQ(r.job_id, first.job_id);
  EXPECT_FALSE(r.deduplicated);
  EXPECT_EQ(ListAll(*store_, "tenant-a").size(), 1u);
}

TEST_P(JobStoreConformanceTest, DeduplicatesWithinOneBatch) {
  const NewJob a = Job(Spec("tenant-a", "key-1"));
  JobSpec changed = Spec("tenant-a", "key-1");
  changed.path = "/api/v1/courses/8/assignments/3/submissions/11";
  const NewJob b = Job(Spec("tenant-a", "key-2"));

  const std::vector<SubmitResult> r = SubmitAndWait(*store_, {a, a, Job(changed), b}, kT0);
  ASSERT_EQ(r.size(), 4u);
  ASSERT_TRUE(r[0].status.ok()) << r[0].status;
  EXPECT_FALSE(r[0].deduplicated);
  ASSERT_TRUE(r[1].status.ok()) << r[1].status;
  EXPECT_TRUE(r[1].deduplicated);
  EXPECT_EQ(r[1].job_id, r[0].job_id);
  EXPECT_EQ(r[1].state, JobState::kQueued);
  EXPECT_EQ(r[2].status.code(), absl::StatusCode::kAlreadyExists) << r[2].status;
  EXPECT_EQ(r[2].job_id, r[0].job_id);
  ASSERT_TRUE(r[3].status.ok()) << r[3].status;
  EXPECT_FALSE(r[3].deduplicated);
  EXPECT_NE(r[3].job_id, r[0].job_id);
  EXPECT_EQ(ListAll(*store_, "tenant-a").size(), 2u);
}

TEST_P(JobStoreConformanceTest, DeduplicatesAcrossCallsEnqueuedTogether) {
  const NewJob job = Job(Spec("tenant-a", "key-1"));
  PendingSubmit first(*store_, {job}, kT0);
  PendingSubmit second(*store_, {job}, kT0);
  const std::vector<SubmitResult> a = first.Wait();
  const std::vector<SubmitResult> b = second.Wait();
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  ASSERT_TRUE(a[0].status.ok()) << a[0].status;
  ASSERT_TRUE(b[0].status.ok()) << b[0].status;
  EXPECT_FALSE(a[0].deduplicated);
  EXPECT_TRUE(b[0].deduplicated);
  EXPECT_EQ(b[0].job_id, a[0].job_id);
}

TEST_P(JobStoreConformanceTest, TenantsAreIsolated) {
  const SubmitResult a = SubmitOne(*store_, Job(Spec("tenant-a", "shared-key")), kT0);
  const SubmitResult b = SubmitOne(*store_, Job(Spec("tenant-b", "shared-key")), kT0);
  ASSERT_TRUE(a.status.ok()) << a.status;
  ASSERT_TRUE(b.status.ok()) << b.status;
  EXPECT_FALSE(b.deduplicated);
  EXPECT_NE(a.job_id, b.job_id);

  EXPECT_TRUE(store_->Get("tenant-a", a.job_id, true).ok());
  EXPECT_EQ(store_->Get("tenant-b", a.job_id, true).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Get("tenant-a", b.job_id, false).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Ids(ListAll(*store_, "tenant-a")), ElementsAre(a.job_id));
  EXPECT_THAT(Ids(ListAll(*store_, "tenant-b")), ElementsAre(b.job_id));
  EXPECT_THAT(ListAll(*store_, "tenant-c"), IsEmpty());
}

TEST_P(JobStoreConformanceTest, UnknownJobIsNotFound) {
  EXPECT_EQ(store_->Get("tenant-a", 424242, true).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->LoadSpec(424242).status().code(), absl::StatusCode::kNotFound);
}

// The store decides nothing about ordering keys: a job whose key has an unfinished job is
// recorded QUEUED like any other, and BLOCKED only when the engine writes it.
TEST_P(JobStoreConformanceTest, SubmitRecordsQueuedWhateverItsOrderingKey) {
  auto ordered = [](absl::string_view key, absl::string_view ordering) {
    JobSpec spec = Spec("tenant-a", key);
    spec.ordering_key = std::string(ordering);
    return Job(spec);
  };
  const SubmitResult first = SubmitOne(*store_, ordered("k1", "course-7"), kT0);
  const SubmitResult second = SubmitOne(*store_, ordered("k2", "course-7"), kT0);
  ASSERT_TRUE(first.status.ok() && second.status.ok());
  EXPECT_EQ(first.state, JobState::kQueued);
  EXPECT_EQ(second.state, JobState::kQueued);
  // Also within one batch, and behind a job the engine has blocked.
  Transition block = To(second.job_id, JobState::kBlocked);
  block.wait_reason = WaitReason::kOrderingBlocked;
  block.waits_behind = first.job_id;
  ASSERT_TRUE(ApplyAndWait(*store_, {block}, kT0).ok());
  const std::vector<SubmitResult> batch =
      SubmitAndWait(*store_, {ordered("k3", "course-7"), ordered("k4", "course-7")}, kT0);
  ASSERT_EQ(batch.size(), 2u);
  for (const SubmitResult& r : batch) {
    ASSERT_TRUE(r.status.ok()) << r.status;
    EXPECT_EQ(r.state, JobState::kQueued);
    absl::StatusOr<JobRecord> got = store_->Get("tenant-a", r.job_id, false);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->state, JobState::kQueued);
    EXPECT_EQ(got->wait_reason, WaitReason::kNone);
  }

  // What the engine wrote stays until it writes again: the store does not unblock on its own.
  ASSERT_TRUE(ApplyAndWait(*store_, {To(first.job_id, JobState::kSucceeded)}, kT0).ok());
  absl::StatusOr<JobRecord> still = store_->Get("tenant-a", second.job_id, false);
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->state, JobState::kBlocked);
  EXPECT_EQ(still->waits_behind, first.job_id);
  // A deduplicated submit answers the job's current state, BLOCKED included.
  const SubmitResult again = SubmitOne(*store_, ordered("k2", "course-7"), kT0);
  EXPECT_TRUE(again.deduplicated);
  EXPECT_EQ(again.state, JobState::kBlocked);

  // Listing by key and state finds what the engine blocked, newest first.
  ListFilter blocked_filter;
  blocked_filter.states = {JobState::kBlocked};
  blocked_filter.ordering_key = "course-7";
  EXPECT_THAT(Ids(ListAll(*store_, "tenant-a", blocked_filter)), ElementsAre(second.job_id));
  ListFilter by_key;
  by_key.ordering_key = "course-7";
  EXPECT_THAT(Ids(ListAll(*store_, "tenant-a", by_key)),
              ElementsAre(batch[1].job_id, batch[0].job_id, second.job_id, first.job_id));
}

TEST_P(JobStoreConformanceTest, ApplyUpdatesTheJobAndAppendsAttemptsInOrder) {
  const SubmitResult r = SubmitOne(*store_, Job(Spec("tenant-a", "key-1")), kT0);
  ASSERT_TRUE(r.status.ok()) << r.status;

  AttemptRecord first;
  first.number = 1;
  first.started_at = kT0 + absl::Seconds(1);
  first.duration = absl::Milliseconds(250) + absl::Microseconds(7);
  first.http_status = 503;
  first.classification = "retry";
  first.decision = "retry at +10s because 503";
  first.next_attempt_at = kT0 + absl::Seconds(11);
  Transition waiting = To(r.job_id, JobState::kWaitingRetry);
  waiting.attempt_count = 1;
  waiting.next_attempt_at = first.next_attempt_at;
  waiting.first_attempt_at = first.started_at;
  waiting.last_decision = first.decision;
  waiting.last_http_status = 503;
  waiting.last_response_body = "Service Unavailable";
  waiting.attempt = first;
  ASSERT_TRUE(ApplyAndWait(*store_, {waiting}, kT0 + absl::Seconds(2)).ok());

  // No body in this transition: the last response stays.
  Transition running = To(r.job_id, JobState::kRunning);
  running.attempt_count = 2;
  running.first_attempt_at = first.started_at;
  running.last_http_status = 503;
  ASSERT_TRUE(ApplyAndWait(*store_, {running}, kT0 + absl::Seconds(11)).ok());
  absl::StatusOr<JobRecord> mid = store_->Get("tenant-a", r.job_id, true);
  ASSERT_TRUE(mid.ok()) << mid.status();
  EXPECT_EQ(mid->last_response_body, "Service Unavailable");

  AttemptRecord second;
  second.number = 2;
  second.started_at = kT0 + absl::Seconds(11);
  second.duration = absl::Milliseconds(40);
  second.http_status = 200;
  second.classification = "success";
  second.decision = "done";
  Transition done = To(r.job_id, JobState::kSucceeded);
  done.attempt_count = 2;
  done.first_attempt_at = first.started_at;
  done.last_decision = "success";
  done.last_http_status = 200;
  done.last_response_body = "{\"ok\":true}\0"s;
  done.attempt = second;
  ASSERT_TRUE(ApplyAndWait(*store_, {done}, kT0 + absl::Seconds(12)).ok());

  absl::StatusOr<JobRecord> got = store_->Get("tenant-a", r.job_id, /*with_attempts=*/true);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state, JobState::kSucceeded);
  EXPECT_EQ(got->attempt_count, 2);
  EXPECT_EQ(got->next_attempt_at, absl::InfinitePast());
  EXPECT_EQ(got->first_attempt_at, kT0 + absl::Seconds(1));
  EXPECT_EQ(got->last_decision, "success");
  EXPECT_EQ(got->last_http_status, 200);
  EXPECT_EQ(got->last_response_body, "{\"ok\":true}\0"s);
  EXPECT_EQ(got->created_at, kT0);
  EXPECT_EQ(got->updated_at, kT0 + absl::Seconds(12));
  ASSERT_EQ(got->attempts.size(), 2u);
  ExpectAttemptEq(got->attempts[0], first);
  ExpectAttemptEq(got->attempts[1], second);

  absl::StatusOr<JobRecord> brief = store_->Get("tenant-a", r.job_id, /*with_attempts=*/false);
  ASSERT_TRUE(brief.ok()) << brief.status();
  EXPECT_THAT(brief->attempts, IsEmpty());
  EXPECT_EQ(brief->state, JobState::kSucceeded);
}

TEST_P(JobStoreConformanceTest, AnAttemptWithTheSameNumberIsReplaced) {
  const SubmitResult r = SubmitOne(*store_, Job(Spec("tenant-a", "key-1")), kT0);
  ASSERT_TRUE(r.status.ok()) << r.status;
  AttemptRecord attempt;
  attempt.number = 1;
  attempt.started_at = kT0;
  attempt.decision = "in flight";
  Transition running = To(r.job_id, JobState::kRunning);
  running.attempt = attempt;
  ASSERT_TRUE(ApplyAndWait(*store_, {running}, kT0).ok());

  attempt.http_status = 503;
  attempt.duration = absl::Milliseconds(90);
  attempt.classification = "retry";
  attempt.decision = "retry at +1s because 503";
  Transition waiting = To(r.job_id, JobState::kWaitingRetry);
  waiting.attempt = attempt;
  ASSERT_TRUE(ApplyAndWait(*store_, {waiting}, kT0 + absl::Seconds(1)).ok());

  absl::StatusOr<JobRecord> got = store_->Get("tenant-a", r.job_id, true);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->attempts.size(), 1u);
  ExpectAttemptEq(got->attempts[0], attempt);
}

TEST_P(JobStoreConformanceTest, ApplyWithAnUnknownJobFailsThatCallAndWritesNoneOfIt) {
  const SubmitResult a = SubmitOne(*store_, Job(Spec("tenant-a", "key-1")), kT0);
  const SubmitResult b = SubmitOne(*store_, Job(Spec("tenant-a", "key-2")), kT0);
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  Transition touched = To(a.job_id, JobState::kRunning);
  touched.last_decision = "from the failing call";
  const JobId unknown = a.job_id + b.job_id + 1'000'000;

  PendingApply failing(*store_, {touched, To(unknown, JobState::kRunning)}, kT0);
  PendingApply fine(*store_, {To(b.job_id, JobState::kRunning)}, kT0);
  const absl::Status failed = failing.Wait();
  EXPECT_EQ(failed.code(), absl::StatusCode::kNotFound) << failed;
  EXPECT_THAT(std::string(failed.message()), HasSubstr(FormatJobId(unknown)));
  EXPECT_TRUE(fine.Wait().ok());

  absl::StatusOr<JobRecord> got_a = store_->Get("tenant-a", a.job_id, false);
  ASSERT_TRUE(got_a.ok()) << got_a.status();
  EXPECT_EQ(got_a->state, JobState::kQueued);
  EXPECT_EQ(got_a->last_decision, "");
  absl::StatusOr<JobRecord> got_b = store_->Get("tenant-a", b.job_id, false);
  ASSERT_TRUE(got_b.ok()) << got_b.status();
  EXPECT_EQ(got_b->state, JobState::kRunning);
}

TEST_P(JobStoreConformanceTest, PurgeExpiredKeysFreesTheKeyOnceRetentionEnds) {
  const NewJob ended = Job(Spec("tenant-a", "key-ended"));
  const NewJob active = Job(Spec("tenant-a", "key-active"));
  const SubmitResult e = SubmitOne(*store_, ended, kT0);
  const SubmitResult a = SubmitOne(*store_, active, kT0);
  ASSERT_TRUE(e.status.ok() && a.status.ok());
  const absl::Time finished = kT0 + absl::Minutes(1);
  ASSERT_TRUE(ApplyAndWait(*store_, {To(e.job_id, JobState::kSucceeded)}, finished).ok());

  // The retention clock started at `finished`: a cutoff there frees nothing yet.
  absl::StatusOr<int64_t> purged = store_->PurgeExpiredKeys(finished);
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 0);
  EXPECT_TRUE(SubmitOne(*store_, ended, finished).deduplicated);

  purged = store_->PurgeExpiredKeys(finished + absl::Seconds(1));
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 1);
  // A job that has not ended keeps its key however late the cutoff.
  purged = store_->PurgeExpiredKeys(kT0 + absl::Hours(24 * 365));
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 0);

  const SubmitResult fresh = SubmitOne(*store_, ended, kT0 + absl::Hours(25));
  ASSERT_TRUE(fresh.status.ok()) << fresh.status;
  EXPECT_FALSE(fresh.deduplicated);
  EXPECT_NE(fresh.job_id, e.job_id);
  const SubmitResult kept = SubmitOne(*store_, active, kT0 + absl::Hours(25));
  EXPECT_TRUE(kept.deduplicated);
  EXPECT_EQ(kept.job_id, a.job_id);
  // The old job itself is still there.
  EXPECT_TRUE(store_->Get("tenant-a", e.job_id, false).ok());
}

TEST_P(JobStoreConformanceTest, AReplayedJobKeepsItsKey) {
  const NewJob job = Job(Spec("tenant-a", "key-1"));
  const SubmitResult r = SubmitOne(*store_, job, kT0);
  ASSERT_TRUE(r.status.ok()) << r.status;
  ASSERT_TRUE(ApplyAndWait(*store_, {To(r.job_id, JobState::kFailed)}, kT0).ok());
  Transition replay = To(r.job_id, JobState::kQueued);
  replay.budget_base = 1;
  ASSERT_TRUE(ApplyAndWait(*store_, {replay}, kT0 + absl::Minutes(1)).ok());

  absl::StatusOr<int64_t> purged = store_->PurgeExpiredKeys(kT0 + absl::Hours(24 * 365));
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 0);
  const SubmitResult again = SubmitOne(*store_, job, kT0 + absl::Hours(48));
  EXPECT_TRUE(again.deduplicated);
  EXPECT_EQ(again.job_id, r.job_id);
  EXPECT_EQ(again.state, JobState::kQueued);
}

// An ended job with the purge time its transition carried.
Transition Ended(JobId id, JobState state, absl::Time purge_at) {
  Transition t = To(id, state);
  t.purge_at = purge_at;
  return t;
}

int64_t DeadLetters(JobStore& store, const std::string& endpoint) {
  auto counts = store.CountDeadLetters();
  EXPECT_TRUE(counts.ok()) << counts.status();
  if (!counts.ok()) return -1;
  for (const auto& [name, n] : *counts) {
    if (name == endpoint) return n;
  }
  return 0;
}

absl::StatusOr<int64_t> PurgeAll(JobStore& store, absl::Time now) {
  int64_t total = 0;
  for (int i = 0; i < 1000; ++i) {  // bounded: a store that never finishes fails the test
    absl::StatusOr<int64_t> n = store.PurgeEndedJobs(now, 100);
    if (!n.ok()) return n.status();
    total += *n;
    if (*n < 100) return total;
  }
  return absl::InternalError("PurgeEndedJobs never finished");
}

TEST_P(JobStoreConformanceTest, EndedJobsArePurgedAfterTheirRetentionDeadLettersLaterActiveNever) {
  const SubmitResult done = SubmitOne(*store_, Job(Spec("tenant-a", "done")), kT0);
  const SubmitResult dead = SubmitOne(*store_, Job(Spec("tenant-a", "dead")), kT0);
  const SubmitResult active = SubmitOne(*store_, Job(Spec("tenant-a", "active")), kT0);
  ASSERT_TRUE(done.status.ok() && dead.status.ok() && active.status.ok());
  const absl::Time ended = kT0 + absl::Minutes(1);
  Transition attempt = Ended(done.job_id, JobState::kSucceeded, ended + absl::Hours(24 * 7));
  attempt.attempt_count = 1;
  attempt.attempt = common::AttemptRecord{};
  attempt.attempt->number = 1;
  attempt.attempt->started_at = kT0;
  attempt.last_response_body = "ok";
  // A purge time on a non-terminal transition is not recorded: an active job is never purged.
  Transition running = Ended(active.job_id, JobState::kRunning, ended);
  ASSERT_TRUE(
      ApplyAndWait(
          *store_,
          {attempt, Ended(dead.job_id, JobState::kFailed, ended + absl::Hours(24 * 30)), running},
          ended)
          .ok());

  // Strictly after the purge time: at it, nothing goes.
  absl::StatusOr<int64_t> purged = PurgeAll(*store_, ended + absl::Hours(24 * 7));
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 0);
  purged = PurgeAll(*store_, ended + absl::Hours(24 * 7) + absl::Seconds(1));
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 1);
  EXPECT_EQ(store_->Get("tenant-a", done.job_id, true).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->Get("tenant-a", dead.job_id, false).ok());
  EXPECT_EQ(DeadLetters(*store_, "canvas"), 1);

  purged = PurgeAll(*store_, ended + absl::Hours(24 * 30) + absl::Seconds(1));
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 1);
  EXPECT_EQ(store_->Get("tenant-a", dead.job_id, false).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(DeadLetters(*store_, "canvas"), 0);

  purged = PurgeAll(*store_, kT0 + absl::Hours(24 * 3650));
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 0);
  absl::StatusOr<common::JobRecord> still = store_->Get("tenant-a", active.job_id, false);
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->state, JobState::kRunning);
  // Recovery sees the active job and nothing of the purged ones.
  absl::StatusOr<std::vector<ActiveJob>> recovered = store_->Recover(kT0 + absl::Hours(24 * 3650));
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  ASSERT_EQ(recovered->size(), 1u);
  EXPECT_EQ(recovered->front().id, active.job_id);
}

TEST_P(JobStoreConformanceTest, APurgedJobsKeyNoLongerDeduplicatesToIt) {
  const NewJob job = Job(Spec("tenant-a", "key-1"));
  const SubmitResult r = SubmitOne(*store_, job, kT0);
  ASSERT_TRUE(r.status.ok()) << r.status;
  // The key's own retention has not ended (no key purge ran): the job's purge takes it along.
  ASSERT_TRUE(
      ApplyAndWait(*store_, {Ended(r.job_id, JobState::kSucceeded, kT0 + absl::Hours(1))}, kT0)
          .ok());
  EXPECT_TRUE(SubmitOne(*store_, job, kT0 + absl::Minutes(1)).deduplicated);
  absl::StatusOr<int64_t> purged = PurgeAll(*store_, kT0 + absl::Hours(2));
  ASSERT_TRUE(purged.ok()) << purged.status();
  ASSERT_EQ(*purged, 1);

  const SubmitResult again = SubmitOne(*store_, job, kT0 + absl::Hours(2));
  ASSERT_TRUE(again.status.ok()) << again.status;
  EXPECT_FALSE(again.deduplicated);
  EXPECT_NE(again.job_id, r.job_id);
  EXPECT_TRUE(store_->Get("tenant-a", again.job_id, false).ok());
}

TEST_P(JobStoreConformanceTest, AReplayedDeadLetterIsNotPurgedUntilItEndsAgain) {
  const SubmitResult r = SubmitOne(*store_, Job(Spec("tenant-a", "key-1")), kT0);
  ASSERT_TRUE(r.status.ok()) << r.status;
  ASSERT_TRUE(
      ApplyAndWait(*store_, {Ended(r.job_id, JobState::kExhausted, kT0 + absl::Hours(1))}, kT0)
          .ok());
  Transition replay = To(r.job_id, JobState::kQueued);
  replay.budget_base = 1;
  ASSERT_TRUE(ApplyAndWait(*store_, {replay}, kT0 + absl::Minutes(30)).ok());

  absl::StatusOr<int64_t> purged = PurgeAll(*store_, kT0 + absl::Hours(24 * 365));
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 0);
  EXPECT_TRUE(store_->Get("tenant-a", r.job_id, false).ok());

  const absl::Time ended = kT0 + absl::Hours(24 * 365);
  ASSERT_TRUE(
      ApplyAndWait(*store_, {Ended(r.job_id, JobState::kSucceeded, ended + absl::Hours(1))}, ended)
          .ok());
  purged = PurgeAll(*store_, ended + absl::Hours(2));
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 1);
}

TEST_P(JobStoreConformanceTest, PurgeEndedJobsDeletesAtMostItsLimitPerCallOldestFirst) {
  std::vector<JobId> ids;
  std::vector<Transition> ends;
  for (int i = 0; i < 10; ++i) {
    const SubmitResult r = SubmitOne(*store_, Job(Spec("tenant-a", absl::StrCat("k", i))), kT0);
    ASSERT_TRUE(r.status.ok()) << r.status;
    ids.push_back(r.job_id);
    // Purge times in reverse id order: the oldest purge time goes first, not the oldest id.
    ends.push_back(Ended(r.job_id, JobState::kCancelled, kT0 + absl::Minutes(10 - i)));
  }
  ASSERT_TRUE(ApplyAndWait(*store_, ends, kT0).ok());
  const absl::Time later = kT0 + absl::Hours(1);
  std::vector<int64_t> per_call;
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<int64_t> n = store_->PurgeEndedJobs(later, 3);
    ASSERT_TRUE(n.ok()) << n.status();
    per_call.push_back(*n);
  }
  EXPECT_THAT(per_call, ElementsAre(3, 3, 3, 1, 0));
  EXPECT_TRUE(ListAll(*store_, "tenant-a").empty());

  // Of two ended jobs, a limit of 1 takes the one due first.
  const SubmitResult a = SubmitOne(*store_, Job(Spec("tenant-a", "a")), kT0);
  const SubmitResult b = SubmitOne(*store_, Job(Spec("tenant-a", "b")), kT0);
  ASSERT_TRUE(ApplyAndWait(*store_,
                           {Ended(a.job_id, JobState::kSucceeded, kT0 + absl::Minutes(2)),
                            Ended(b.job_id, JobState::kSucceeded, kT0 + absl::Minutes(1))},
                           kT0)
                  .ok());
  ASSERT_EQ(store_->PurgeEndedJobs(later, 1).value_or(-1), 1);
  EXPECT_TRUE(store_->Get("tenant-a", a.job_id, false).ok());
  EXPECT_FALSE(store_->Get("tenant-a", b.job_id, false).ok());
}

TEST_P(JobStoreConformanceTest, RecoverRequeuesRunningJobsAndKeepsWaitingRetryDueTimes) {
  auto submit = [&](absl::string_view key, absl::string_view ordering = "") {
    JobSpec spec = Spec("tenant-a", key);
    spec.ordering_key = std::string(ordering);
    spec.deadline = kT0 + absl::Hours(1);
    spec.policy = "gentle";
    const SubmitResult r = SubmitOne(*store_, Job(spec), kT0);
    EXPECT_TRUE(r.status.ok()) << r.status;
    return r.job_id;
  };
  const JobId queued = submit("k1");
  const JobId running = submit("k2");
  const JobId waiting = submit("k3");
  const JobId done = submit("k4");
  const JobId first_in_line = submit("k5", "course-1");
  const JobId blocked = submit("k6", "course-1");

  Transition run = To(running, JobState::kRunning);
  run.attempt_count = 1;
  run.first_attempt_at = kT0 + absl::Seconds(1);
  Transition wait = To(waiting, JobState::kWaitingRetry);
  wait.attempt_count = 2;
  wait.budget_base = 0;
  wait.throttled_count = 1;
  wait.first_attempt_at = kT0 + absl::Seconds(1);
  wait.next_attempt_at = kT0 + absl::Minutes(5);
  ASSERT_TRUE(
      ApplyAndWait(*store_,
                   {run, wait, To(done, JobState::kSucceeded), To(blocked, JobState::kBlocked)},
                   kT0 + absl::Seconds(2))
          .ok());

  const absl::Time restart = kT0 + absl::Minutes(10);
  absl::StatusOr<std::vector<ActiveJob>> active = store_->Recover(restart);
  ASSERT_TRUE(active.ok()) << active.status();
  std::vector<JobId> ids;
  for (const ActiveJob& job : *active) ids.push_back(job.id);
  EXPECT_THAT(ids, ElementsAre(queued, running, waiting, first_in_line, blocked));
  ASSERT_EQ(active->size(), 5u);

  const ActiveJob& requeued = (*active)[1];
  EXPECT_EQ(requeued.state, JobState::kQueued);
  EXPECT_EQ(requeued.attempt_count, 1);
  EXPECT_EQ(requeued.first_attempt_at, kT0 + absl::Seconds(1));

  const ActiveJob& w = (*active)[2];
  EXPECT_EQ(w.state, JobState::kWaitingRetry);
  EXPECT_EQ(w.next_attempt_at, kT0 + absl::Minutes(5));
  EXPECT_EQ(w.first_attempt_at, kT0 + absl::Seconds(1));
  EXPECT_EQ(w.attempt_count, 2);
  EXPECT_EQ(w.budget_base, 0);
  EXPECT_EQ(w.throttled_count, 1);
  EXPECT_EQ(requeued.throttled_count, 0);
  EXPECT_EQ(w.endpoint, "canvas");
  EXPECT_EQ(w.policy, "gentle");
  EXPECT_EQ(w.tenant, "tenant-a");
  EXPECT_EQ(w.deadline, kT0 + absl::Hours(1));
  EXPECT_EQ(w.created_at, kT0);

  EXPECT_EQ((*active)[0].state, JobState::kQueued);
  EXPECT_EQ((*active)[0].next_attempt_at, absl::InfinitePast());
  EXPECT_EQ((*active)[4].state, JobState::kBlocked);
  EXPECT_EQ((*active)[4].ordering_key, "course-1");

  // The re-queue is persisted.
  absl::StatusOr<JobRecord> got = store_->Get("tenant-a", running, false);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state, JobState::kQueued);
  EXPECT_EQ(got->updated_at, restart);
  Reopen();
  absl::StatusOr<std::vector<ActiveJob>> again = store_->Recover(restart + absl::Minutes(1));
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->size(), 5u);
  EXPECT_EQ((*again)[1].state, JobState::kQueued);
}

TEST_P(JobStoreConformanceTest, ListFiltersByStateEndpointOrderingKeyAndLabel) {
  auto submit = [&](absl::string_view tenant, absl::string_view key, absl::string_view endpoint,
                    absl::string_view ordering,
                    std::map<std::string, std::string> labels) -> JobId {
    JobSpec spec = Spec(tenant, key);
    spec.endpoint = std::string(endpoint);
    spec.ordering_key = std::string(ordering);
    spec.labels = std::move(labels);
    const SubmitResult r = SubmitOne(*store_, Job(spec), kT0);
    EXPECT_TRUE(r.status.ok()) << r.status;
    return r.job_id;
  };
  const JobId j1 = submit("t", "k1", "canvas", "", {{"course", "7"}});
  const JobId j2 = submit("t", "k2", "moodle", "o1", {{"course", "8"}});
  const JobId j3 = submit("t", "k3", "canvas", "", {{"course", "7"}, {"term", "fall"}});
  const JobId j4 = submit("t", "k4", "canvas", "o1", {});
  const JobId j5 = submit("t", "k5", "moodle", "", {{"term", "spring"}});
  submit("other", "k1", "canvas", "o1", {{"course", "7"}});  // never listed for "t"
  Transition wait = To(j5, JobState::kWaitingRetry);
  wait.next_attempt_at = kT0 + absl::Minutes(1);
  ASSERT_TRUE(ApplyAndWait(*store_,
                           {To(j1, JobState::kSucceeded), To(j3, JobState::kFailed), wait,
                            To(j4, JobState::kBlocked)},
                           kT0)
                  .ok());

  auto list = [&](std::vector<JobState> states, std::string endpoint, std::string ordering_key,
                  std::string label_key, std::string label_value) {
    ListFilter filter;
    filter.states = std::move(states);
    filter.endpoint = std::move(endpoint);
    filter.ordering_key = std::move(ordering_key);
    filter.label_key = std::move(label_key);
    filter.label_value = std::move(label_value);
    return Ids(ListAll(*store_, "t", filter));
  };
  EXPECT_THAT(list({}, "", "", "", ""), ElementsAre(j5, j4, j3, j2, j1));
  EXPECT_THAT(list({JobState::kFailed, JobState::kSucceeded}, "", "", "", ""), ElementsAre(j3, j1));
  EXPECT_THAT(list({JobState::kQueued}, "", "", "", ""), ElementsAre(j2));
  EXPECT_THAT(list({JobState::kBlocked}, "", "", "", ""), ElementsAre(j4));
  EXPECT_THAT(list({}, "canvas", "", "", ""), ElementsAre(j4, j3, j1));
  EXPECT_THAT(list({}, "", "o1", "", ""), ElementsAre(j4, j2));
  EXPECT_THAT(list({}, "", "", "course", "7"), ElementsAre(j3, j1));
  EXPECT_THAT(list({}, "", "", "course", "9"), IsEmpty());
  EXPECT_THAT(list({JobState::kFailed}, "canvas", "", "course", "7"), ElementsAre(j3));
  EXPECT_THAT(list({}, "nowhere", "", "", ""), IsEmpty());
}

TEST_P(JobStoreConformanceTest, ListPagesCoverEveryJobExactlyOnceNewestFirst) {
  std::vector<JobId> submitted;
  for (int i = 0; i < 23; ++i) {
    const SubmitResult r = SubmitOne(*store_, Job(Spec("t", absl::StrCat("k", i))), kT0);
    ASSERT_TRUE(r.status.ok()) << r.status;
    submitted.push_back(r.job_id);
  }
  std::reverse(submitted.begin(), submitted.end());

  std::vector<JobId> seen;
  std::string token;
  int pages = 0;
  do {
    absl::StatusOr<ListPage> page = store_->List("t", {}, 5, token);
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_LE(page->jobs.size(), 5u);
    for (const auto& job : page->jobs) seen.push_back(job.id);
    token = page->next_page_token;
    ASSERT_LT(++pages, 100);
  } while (!token.empty());
  EXPECT_EQ(pages, 5);
  EXPECT_THAT(seen, ElementsAreArray(submitted));

  // page_size <= 0 means the default (50); an exact fit leaves no next page.
  absl::StatusOr<ListPage> all = store_->List("t", {}, 0, "");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->jobs.size(), 23u);
  EXPECT_EQ(all->next_page_token, "");
  absl::StatusOr<ListPage> exact = store_->List("t", {}, 23, "");
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->next_page_token, "");

  EXPECT_EQ(store_->List("t", {}, 5, "not a token").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(JobStoreConformanceTest, ListOmitsBodiesAndAttemptsButKeepsHeadersAndLabels) {
  JobSpec spec = Spec("t", "k1");
  spec.labels = {{"course", "7"}};
  const SubmitResult r = SubmitOne(*store_, Job(spec), kT0);
  ASSERT_TRUE(r.status.ok()) << r.status;
  Transition done = To(r.job_id, JobState::kSucceeded);
  done.attempt_count = 1;
  done.last_response_body = "graded";
  done.last_http_status = 200;
  AttemptRecord attempt;
  attempt.number = 1;
  attempt.http_status = 200;
  done.attempt = attempt;
  ASSERT_TRUE(ApplyAndWait(*store_, {done}, kT0 + absl::Seconds(1)).ok());

  const std::vector<common::JobRecord> jobs = ListAll(*store_, "t");
  ASSERT_EQ(jobs.size(), 1u);
  const common::JobRecord& job = jobs[0];
  EXPECT_EQ(job.id, r.job_id);
  EXPECT_EQ(job.state, JobState::kSucceeded);
  EXPECT_EQ(job.last_http_status, 200);
  EXPECT_EQ(job.spec.body, "");
  EXPECT_EQ(job.last_response_body, "");
  EXPECT_THAT(job.attempts, IsEmpty());
  EXPECT_EQ(job.spec.headers, spec.headers);
  EXPECT_EQ(job.spec.labels, spec.labels);
  EXPECT_EQ(job.spec.path, spec.path);
}

TEST_P(JobStoreConformanceTest, ASubmitIsVisibleToReadsWhenItsCallbackRuns) {
  struct State {
    absl::Notification done;
    absl::Status read;
  };
  auto state = std::make_shared<State>();
  JobStore* store = store_.get();
  store_->Submit({Job(Spec("t", "k1"))}, kT0, [state, store](std::vector<SubmitResult> r) {
    state->read = r.size() == 1 && r[0].status.ok() ? store->Get("t", r[0].job_id, false).status()
                                                    : absl::InternalError("submit failed");
    state->done.Notify();
  });
  ASSERT_TRUE(state->done.WaitForNotificationWithTimeout(kCallbackDeadline));
  EXPECT_TRUE(state->read.ok()) << state->read;
}

TEST_P(JobStoreConformanceTest, ManySubmittersAtOnceAreAllAcknowledgedAndNoneLost) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 500;
  const std::optional<CommitCounts> before = backend_->Counts(*store_);
  SubmitTally tally(kThreads * kPerThread);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<NewJob> jobs;
      for (int i = 0; i < kPerThread; ++i) {
        jobs.push_back(Job(Spec("t", absl::StrCat("thread-", t, "-job-", i))));
      }
      for (int i = 0; i < kPerThread; ++i) {
        tally.Submit(*store_, std::move(jobs[i]), kT0, t * kPerThread + i);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const std::vector<SubmitResult> results = tally.Wait();
  ASSERT_EQ(results.size(), static_cast<size_t>(kThreads * kPerThread));

  std::set<JobId> ids;
  for (int t = 0; t < kThreads; ++t) {
    JobId previous = 0;
    for (int i = 0; i < kPerThread; ++i) {
      const SubmitResult& r = results[t * kPerThread + i];
      ASSERT_TRUE(r.status.ok()) << r.status;
      EXPECT_FALSE(r.deduplicated);
      EXPECT_GT(r.job_id, previous) << "one submitter's jobs are stored in its order";
      previous = r.job_id;
      ids.insert(r.job_id);
    }
  }
  EXPECT_EQ(ids.size(), results.size());
  ASSERT_TRUE(store_->Flush().ok());
  EXPECT_EQ(ListAll(*store_, "t", {}, 1000).size(), results.size());

  const std::optional<CommitCounts> after = backend_->Counts(*store_);
  if (before.has_value() && after.has_value()) {
    const int64_t commits = after->commits - before->commits;
    const int64_t ops = after->ops - before->ops;
    EXPECT_GE(ops, kThreads * kPerThread);
    EXPECT_LT(commits * 4, ops) << "group commit: " << commits << " commits for " << ops
                                << " calls";
  }
}

TEST_P(JobStoreConformanceTest, GroupCommitWritesManyCallsPerTransaction) {
  const std::optional<CommitCounts> before = backend_->Counts(*store_);
  if (!before.has_value()) GTEST_SKIP() << "this backend keeps no commit counters";
  constexpr int kCalls = 2000;
  std::vector<NewJob> jobs;
  for (int i = 0; i < kCalls; ++i) jobs.push_back(Job(Spec("t", absl::StrCat("k", i))));
  SubmitTally tally(kCalls);
  for (int i = 0; i < kCalls; ++i) tally.Submit(*store_, std::move(jobs[i]), kT0, i);
  const std::vector<SubmitResult> results = tally.Wait();
  ASSERT_EQ(results.size(), static_cast<size_t>(kCalls));
  for (const SubmitResult& r : results) ASSERT_TRUE(r.status.ok()) << r.status;
  ASSERT_TRUE(store_->Flush().ok());

  const std::optional<CommitCounts> after = backend_->Counts(*store_);
  ASSERT_TRUE(after.has_value());
  const int64_t commits = after->commits - before->commits;
  const int64_t ops = after->ops - before->ops;
  EXPECT_EQ(ops, kCalls);
  EXPECT_LT(commits * 4, ops) << commits << " commits for " << ops << " calls";
}

TEST_P(JobStoreConformanceTest, FlushWaitsForEverythingEnqueuedBeforeIt) {
  for (int i = 0; i < 100; ++i) {
    store_->Submit({Job(Spec("t", absl::StrCat("k", i)))}, kT0, [](std::vector<SubmitResult>) {});
  }
  ASSERT_TRUE(store_->Flush().ok());
  EXPECT_EQ(ListAll(*store_, "t", {}, 1000).size(), 100u);
}

TEST_P(JobStoreConformanceTest, ClosingTheStoreCommitsEverythingEnqueued) {
  constexpr int kCalls = 300;
  SubmitTally tally(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    tally.Submit(*store_, Job(Spec("t", absl::StrCat("k", i))), kT0, i);
  }
  Reopen();
  const std::vector<SubmitResult> results = tally.Wait();
  ASSERT_EQ(results.size(), static_cast<size_t>(kCalls));
  for (const SubmitResult& r : results) ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(ListAll(*store_, "t", {}, 1000).size(), static_cast<size_t>(kCalls));
}

// --- Wait reasons ---

TEST_P(JobStoreConformanceTest, AWaitReasonIsWrittenWithItsTransitionAndReadBackByGetAndList) {
  const SubmitResult a = SubmitOne(*store_, Job(Spec("t", "k1")), kT0);
  const SubmitResult b = SubmitOne(*store_, Job(Spec("t", "k2")), kT0);
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  Transition blocked = To(b.job_id, JobState::kBlocked);
  blocked.wait_reason = WaitReason::kOrderingBlocked;
  blocked.waits_behind = a.job_id;
  ASSERT_TRUE(
      ApplyAndWait(*store_,
                   {Waiting(a.job_id, WaitReason::kRetryAfter, kT0 + absl::Minutes(2)), blocked},
                   kT0 + absl::Seconds(1))
          .ok());

  auto expect_wait = [&](JobId id, WaitReason reason, JobId behind) {
    absl::StatusOr<JobRecord> got = store_->Get("t", id, /*with_attempts=*/false);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->wait_reason, reason) << "job " << id;
    EXPECT_EQ(got->waits_behind, behind) << "job " << id;
    for (const JobRecord& listed : ListAll(*store_, "t")) {
      if (listed.id != id) continue;
      EXPECT_EQ(listed.wait_reason, reason) << "listed job " << id;
      EXPECT_EQ(listed.waits_behind, behind) << "listed job " << id;
    }
  };
  expect_wait(a.job_id, WaitReason::kRetryAfter, 0);
  expect_wait(b.job_id, WaitReason::kOrderingBlocked, a.job_id);
  Reopen();
  expect_wait(a.job_id, WaitReason::kRetryAfter, 0);
  expect_wait(b.job_id, WaitReason::kOrderingBlocked, a.job_id);

  // Each transition writes the job's wait anew: one without a reason clears it.
  Transition running = To(a.job_id, JobState::kRunning);
  running.attempt_count = 2;
  Transition queued = To(b.job_id, JobState::kQueued);
  ASSERT_TRUE(ApplyAndWait(*store_, {running, queued}, kT0 + absl::Minutes(2)).ok());
  expect_wait(a.job_id, WaitReason::kNone, 0);
  expect_wait(b.job_id, WaitReason::kNone, 0);
}

TEST_P(JobStoreConformanceTest, TheCauseOfARetryAfterWaitSurvivesARestart) {
  const SubmitResult retry_after = SubmitOne(*store_, Job(Spec("t", "k1")), kT0);
  const SubmitResult backoff = SubmitOne(*store_, Job(Spec("t", "k2")), kT0);
  const SubmitResult first = SubmitOne(*store_, Job(Spec("t", "k3")), kT0);
  const SubmitResult blocked = SubmitOne(*store_, Job(Spec("t", "k4")), kT0);
  const SubmitResult running = SubmitOne(*store_, Job(Spec("t", "k5")), kT0);
  Transition block = To(blocked.job_id, JobState::kBlocked);
  block.wait_reason = WaitReason::kOrderingBlocked;
  block.waits_behind = first.job_id;
  // A RUNNING job has no wait; if one was written anyway, recovery's QUEUED has none.
  Transition run = To(running.job_id, JobState::kRunning);
  run.attempt_count = 1;
  run.wait_reason = WaitReason::kBackoff;
  run.waits_behind = first.job_id;
  ASSERT_TRUE(
      ApplyAndWait(
          *store_,
          {Waiting(retry_after.job_id, WaitReason::kRetryAfter, kT0 + absl::Hours(1)),
           Waiting(backoff.job_id, WaitReason::kBackoff, kT0 + absl::Minutes(1)), block, run},
          kT0)
          .ok());
  Reopen();

  const absl::Time restart = kT0 + absl::Minutes(5);
  absl::StatusOr<std::vector<ActiveJob>> active = store_->Recover(restart);
  ASSERT_TRUE(active.ok()) << active.status();
  std::map<JobId, ActiveJob> by_id;
  for (ActiveJob& job : *active) by_id[job.id] = std::move(job);
  ASSERT_EQ(by_id.size(), 5u);
  EXPECT_EQ(by_id[retry_after.job_id].wait_reason, WaitReason::kRetryAfter);
  EXPECT_EQ(by_id[retry_after.job_id].next_attempt_at, kT0 + absl::Hours(1));
  EXPECT_EQ(by_id[backoff.job_id].wait_reason, WaitReason::kBackoff);
  EXPECT_EQ(by_id[blocked.job_id].wait_reason, WaitReason::kOrderingBlocked);
  EXPECT_EQ(by_id[blocked.job_id].waits_behind, first.job_id);
  EXPECT_EQ(by_id[first.job_id].wait_reason, WaitReason::kNone);
  EXPECT_EQ(by_id[running.job_id].state, JobState::kQueued);
  EXPECT_EQ(by_id[running.job_id].wait_reason, WaitReason::kNone);
  EXPECT_EQ(by_id[running.job_id].waits_behind, 0);

  // Persisted so: the re-queued job reads back without a wait, the others keep theirs.
  absl::StatusOr<JobRecord> requeued = store_->Get("t", running.job_id, false);
  ASSERT_TRUE(requeued.ok()) << requeued.status();
  EXPECT_EQ(requeued->wait_reason, WaitReason::kNone);
  EXPECT_EQ(requeued->waits_behind, 0);
  absl::StatusOr<JobRecord> waiting = store_->Get("t", retry_after.job_id, false);
  ASSERT_TRUE(waiting.ok()) << waiting.status();
  EXPECT_EQ(waiting->wait_reason, WaitReason::kRetryAfter);
}

// A tenant's jobs in every kind of wait, for the wait filters. `now` is kT0 + 30 s.
class WaitFilterFixture {
 public:
  static constexpr absl::Duration kNow = absl::Seconds(30);

  explicit WaitFilterFixture(JobStore& store) : store_(store) {
    const absl::Time t0 = kT0;
    queued_canvas = Submit("canvas");
    queued_moodle = Submit("moodle");
    requeued_retry = Submit("canvas");  // QUEUED again after an attempt: its next is a retry
    backoff_waiting = Submit("canvas", {{"course", "7"}});
    retry_after_waiting = Submit("canvas");
    backoff_due = Submit("moodle");
    retry_after_due = Submit("canvas", {{"course", "7"}});
    blocked = Submit("canvas", {}, "course-1");
    running = Submit("canvas");
    succeeded = Submit("canvas");
    replayed = Submit("d2l");  // QUEUED with a fresh budget: a first attempt again
    other_tenant = SubmitIn("other", "canvas");

    Transition requeued = To(requeued_retry, JobState::kQueued);
    requeued.attempt_count = 2;
    requeued.budget_base = 1;
    Transition block = To(blocked, JobState::kBlocked);
    block.wait_reason = WaitReason::kOrderingBlocked;
    block.waits_behind = queued_canvas;
    Transition run = To(running, JobState::kRunning);
    run.attempt_count = 1;
    Transition done = To(succeeded, JobState::kSucceeded);
    done.attempt_count = 1;
    Transition replay = To(replayed, JobState::kQueued);
    replay.attempt_count = 3;
    replay.budget_base = 3;
    EXPECT_TRUE(
        ApplyAndWait(
            store_,
            {requeued, Waiting(backoff_waiting, WaitReason::kBackoff, t0 + absl::Seconds(40)),
             Waiting(retry_after_waiting, WaitReason::kRetryAfter, t0 + absl::Minutes(5), 2),
             Waiting(backoff_due, WaitReason::kBackoff, t0 + absl::Seconds(5), 3),
             Waiting(retry_after_due, WaitReason::kRetryAfter, t0 + absl::Seconds(20)), block, run,
             done, replay, Waiting(other_tenant, WaitReason::kBackoff, t0 + absl::Seconds(1))},
            t0)
            .ok());
  }

  std::vector<JobId> List(const ListFilter& filter, int page_size = 0) {
    return Ids(ListAll(store_, "t", filter, page_size));
  }

  JobId queued_canvas, queued_moodle, requeued_retry, backoff_waiting, retry_after_waiting,
      backoff_due, retry_after_due, blocked, running, succeeded, replayed, other_tenant;

 private:
  JobId Submit(const std::string& endpoint, std::map<std::string, std::string> labels = {},
               const std::string& ordering_key = "") {
    return SubmitIn("t", endpoint, std::move(labels), ordering_key);
  }
  JobId SubmitIn(const std::string& tenant, const std::string& endpoint,
                 std::map<std::string, std::string> labels = {},
                 const std::string& ordering_key = "") {
    JobSpec spec = Spec(tenant, absl::StrCat("k", ++n_));
    spec.endpoint = endpoint;
    spec.labels = std::move(labels);
    spec.ordering_key = ordering_key;
    const SubmitResult r = SubmitOne(store_, Job(spec), kT0);
    EXPECT_TRUE(r.status.ok()) << r.status;
    return r.job_id;
  }

  JobStore& store_;
  int n_ = 0;
};

ListFilter OwnWait(WaitReason reason) {
  ListFilter filter;
  filter.wait_reason = reason;
  return filter;
}

TEST_P(JobStoreConformanceTest, ListFiltersByTheJobsOwnWaitReason) {
  WaitFilterFixture f(*store_);
  const absl::Time now = kT0 + WaitFilterFixture::kNow;
  EXPECT_THAT(f.List(OwnWait(WaitReason::kBackoff)), ElementsAre(f.backoff_due, f.backoff_waiting));
  EXPECT_THAT(f.List(OwnWait(WaitReason::kRetryAfter)),
              ElementsAre(f.retry_after_due, f.retry_after_waiting));
  EXPECT_THAT(f.List(OwnWait(WaitReason::kOrderingBlocked)), ElementsAre(f.blocked));
  EXPECT_THAT(f.List(OwnWait(WaitReason::kNone)),
              ElementsAre(f.replayed, f.succeeded, f.running, f.requeued_retry, f.queued_moodle,
                          f.queued_canvas));
  // An endpoint's reasons are never stored per job.
  EXPECT_THAT(f.List(OwnWait(WaitReason::kCircuitOpen)), IsEmpty());

  // Still in its own wait: due after now.
  ListFilter backoff = OwnWait(WaitReason::kBackoff);
  backoff.due_after = now;
  EXPECT_THAT(f.List(backoff), ElementsAre(f.backoff_waiting));
  ListFilter retry_after = OwnWait(WaitReason::kRetryAfter);
  retry_after.due_after = now;
  EXPECT_THAT(f.List(retry_after), ElementsAre(f.retry_after_waiting));

  // ANDed with the other filters.
  ListFilter with_label = OwnWait(WaitReason::kBackoff);
  with_label.label_key = "course";
  with_label.label_value = "7";
  EXPECT_THAT(f.List(with_label), ElementsAre(f.backoff_waiting));
  ListFilter with_key = OwnWait(WaitReason::kOrderingBlocked);
  with_key.ordering_key = "course-1";
  EXPECT_THAT(f.List(with_key), ElementsAre(f.blocked));
  with_key.ordering_key = "course-2";
  EXPECT_THAT(f.List(with_key), IsEmpty());
  ListFilter with_state = OwnWait(WaitReason::kBackoff);
  with_state.states = {JobState::kWaitingRetry, JobState::kQueued};
  with_state.endpoint = "moodle";
  EXPECT_THAT(f.List(with_state), ElementsAre(f.backoff_due));
  with_state.states = {JobState::kQueued};
  EXPECT_THAT(f.List(with_state), IsEmpty());
}

TEST_P(JobStoreConformanceTest, ListFiltersReadyJobsByDueTimeEndpointsAndRetries) {
  WaitFilterFixture f(*store_);
  const absl::Time now = kT0 + WaitFilterFixture::kNow;
  // Ready: QUEUED, or WAITING_RETRY due by now. Not BLOCKED, RUNNING or ended jobs.
  ListFilter ready;
  ready.due_by = now;
  EXPECT_THAT(f.List(ready), ElementsAre(f.replayed, f.retry_after_due, f.backoff_due,
                                         f.requeued_retry, f.queued_moodle, f.queued_canvas));
  // At the due time itself a job is due.
  ready.due_by = kT0 + absl::Seconds(20);
  EXPECT_THAT(f.List(ready), ElementsAre(f.replayed, f.retry_after_due, f.backoff_due,
                                         f.requeued_retry, f.queued_moodle, f.queued_canvas));
  ready.due_by = kT0 + absl::Seconds(20) - absl::Microseconds(1);
  EXPECT_THAT(f.List(ready), ElementsAre(f.replayed, f.backoff_due, f.requeued_retry,
                                         f.queued_moodle, f.queued_canvas));
  ready.due_by = now;

  ListFilter on_endpoints = ready;
  on_endpoints.endpoints = {"canvas"};
  EXPECT_THAT(f.List(on_endpoints),
              ElementsAre(f.retry_after_due, f.requeued_retry, f.queued_canvas));
  on_endpoints.endpoints = {"moodle", "d2l", "moodle", "sakai"};
  EXPECT_THAT(f.List(on_endpoints), ElementsAre(f.replayed, f.backoff_due, f.queued_moodle));
  on_endpoints.endpoint = "moodle";  // ANDed with the list
  EXPECT_THAT(f.List(on_endpoints), ElementsAre(f.backoff_due, f.queued_moodle));
  on_endpoints.endpoint = "canvas";
  EXPECT_THAT(f.List(on_endpoints), IsEmpty());

  // Retries of the current budget only (RETRY_BUDGET holds those back, not first attempts).
  ListFilter retries = ready;
  retries.retries_only = true;
  EXPECT_THAT(f.List(retries), ElementsAre(f.retry_after_due, f.backoff_due, f.requeued_retry));
  retries.endpoints = {"moodle"};
  EXPECT_THAT(f.List(retries), ElementsAre(f.backoff_due));

  // Still waiting: WAITING_RETRY due after now; QUEUED jobs never are.
  ListFilter waiting;
  waiting.due_after = now;
  EXPECT_THAT(f.List(waiting), ElementsAre(f.retry_after_waiting, f.backoff_waiting));
  // A window: due after one time and by another.
  ListFilter window;
  window.due_after = kT0 + absl::Seconds(15);
  window.due_by = kT0 + absl::Seconds(40);
  EXPECT_THAT(f.List(window), ElementsAre(f.retry_after_due, f.backoff_waiting));

  // The due filters narrow the states asked for; states outside them match nothing.
  ListFilter queued_due = ready;
  queued_due.states = {JobState::kQueued};
  EXPECT_THAT(f.List(queued_due),
              ElementsAre(f.replayed, f.requeued_retry, f.queued_moodle, f.queued_canvas));
  ListFilter retry_due = ready;
  retry_due.states = {JobState::kWaitingRetry, JobState::kRunning};
  EXPECT_THAT(f.List(retry_due), ElementsAre(f.retry_after_due, f.backoff_due));
  ListFilter none = waiting;
  none.states = {JobState::kQueued, JobState::kBlocked, JobState::kRunning};
  EXPECT_THAT(f.List(none), IsEmpty());
  none = ready;
  none.states = {JobState::kSucceeded};
  EXPECT_THAT(f.List(none), IsEmpty());

  // With a label or an ordering key (those walks), the same terms hold.
  ListFilter labelled = ready;
  labelled.label_key = "course";
  labelled.label_value = "7";
  EXPECT_THAT(f.List(labelled), ElementsAre(f.retry_after_due));
  labelled.label_value = "";
  EXPECT_THAT(f.List(labelled), ElementsAre(f.retry_after_due));
  labelled.due_by = absl::InfiniteFuture();
  labelled.due_after = now;
  EXPECT_THAT(f.List(labelled), ElementsAre(f.backoff_waiting));
  ListFilter keyed = ready;
  keyed.ordering_key = "course-1";
  EXPECT_THAT(f.List(keyed), IsEmpty());  // BLOCKED is not ready

  // Endpoints alone, and retries alone (every state).
  ListFilter endpoints_only;
  endpoints_only.endpoints = {"moodle"};
  EXPECT_THAT(f.List(endpoints_only), ElementsAre(f.backoff_due, f.queued_moodle));
  ListFilter retries_only;
  retries_only.retries_only = true;
  EXPECT_THAT(f.List(retries_only),
              ElementsAre(f.succeeded, f.running, f.retry_after_due, f.backoff_due,
                          f.retry_after_waiting, f.backoff_waiting, f.requeued_retry));
}

TEST_P(JobStoreConformanceTest, AWaitingRetryWithoutADueTimeIsDue) {
  const SubmitResult r = SubmitOne(*store_, Job(Spec("t", "k1")), kT0);
  ASSERT_TRUE(r.status.ok()) << r.status;
  ASSERT_TRUE(
      ApplyAndWait(*store_, {Waiting(r.job_id, WaitReason::kBackoff, absl::InfinitePast())}, kT0)
          .ok());
  ListFilter ready;
  ready.due_by = kT0;
  EXPECT_THAT(Ids(ListAll(*store_, "t", ready)), ElementsAre(r.job_id));
  ready.states = {JobState::kWaitingRetry};
  EXPECT_THAT(Ids(ListAll(*store_, "t", ready)), ElementsAre(r.job_id));
  ListFilter waiting;
  waiting.due_after = kT0 - absl::Hours(24 * 365);
  EXPECT_THAT(ListAll(*store_, "t", waiting), IsEmpty());
}

TEST_P(JobStoreConformanceTest, WaitFiltersPageNewestFirstLikeEveryList) {
  // Ready jobs of two endpoints in both ready states, interleaved with jobs that do not match.
  std::vector<JobId> want_ready, want_backoff;
  std::vector<Transition> transitions;
  for (int i = 0; i < 40; ++i) {
    JobSpec spec = Spec("t", absl::StrCat("k", i));
    spec.endpoint = i % 5 == 0 ? "moodle" : "canvas";
    const SubmitResult r = SubmitOne(*store_, Job(spec), kT0);
    ASSERT_TRUE(r.status.ok()) << r.status;
    switch (i % 4) {
      case 0:  // QUEUED
        if (spec.endpoint == "canvas") want_ready.push_back(r.job_id);
        break;
      case 1:  // due
        transitions.push_back(Waiting(r.job_id, WaitReason::kBackoff, kT0 + absl::Seconds(i)));
        if (spec.endpoint == "canvas") want_ready.push_back(r.job_id);
        want_backoff.push_back(r.job_id);
        break;
      case 2:  // not yet due
        transitions.push_back(
            Waiting(r.job_id, WaitReason::kBackoff, kT0 + absl::Hours(1) + absl::Seconds(i)));
        want_backoff.push_back(r.job_id);
        break;
      case 3:  // ended
        transitions.push_back(To(r.job_id, JobState::kSucceeded));
        break;
    }
  }
  ASSERT_TRUE(ApplyAndWait(*store_, transitions, kT0).ok());
  std::reverse(want_ready.begin(), want_ready.end());
  std::reverse(want_backoff.begin(), want_backoff.end());

  ListFilter ready;
  ready.due_by = kT0 + absl::Minutes(1);
  ready.endpoints = {"canvas"};
  for (const int page_size : {1, 3, 4, 7, 50}) {
    EXPECT_THAT(Ids(ListAll(*store_, "t", ready, page_size)), ElementsAreArray(want_ready))
        << "page size " << page_size;
    EXPECT_THAT(Ids(ListAll(*store_, "t", OwnWait(WaitReason::kBackoff), page_size)),
                ElementsAreArray(want_backoff))
        << "page size " << page_size;
  }
  // A page of exactly what is left has no next page.
  absl::StatusOr<ListPage> exact =
      store_->List("t", ready, static_cast<int>(want_ready.size()), "");
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->jobs.size(), want_ready.size());
  EXPECT_EQ(exact->next_page_token, "");
  // A filter that can match nothing still answers a page (empty, no token).
  ListFilter nothing = ready;
  nothing.states = {JobState::kSucceeded};
  absl::StatusOr<ListPage> empty = store_->List("t", nothing, 5, "");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_THAT(empty->jobs, IsEmpty());
  EXPECT_EQ(empty->next_page_token, "");
  EXPECT_EQ(store_->List("t", nothing, 5, "not a token").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// --- Budgets: what recovery gives them, and their quota's usage ---

TEST_P(JobStoreConformanceTest, RecoverGivesEachActiveJobItsPriorityAndLabels) {
  JobSpec graded = Spec("tenant-a", "grade");
  graded.priority = common::Priority::kHigh;
  graded.labels = {{"district", "d7"}, {"credential", "token-1"}};
  JobSpec telemetry = Spec("tenant-a", "click");
  telemetry.priority = common::Priority::kLow;
  const JobSpec plain = Spec("tenant-b", "plain");
  const SubmitResult a = SubmitOne(*store_, Job(graded), kT0);
  const SubmitResult b = SubmitOne(*store_, Job(telemetry), kT0);
  const SubmitResult c = SubmitOne(*store_, Job(plain), kT0);
  ASSERT_TRUE(a.status.ok() && b.status.ok() && c.status.ok());
  Reopen();
  absl::StatusOr<std::vector<ActiveJob>> active = store_->Recover(kT0 + absl::Minutes(1));
  ASSERT_TRUE(active.ok()) << active.status();
  ASSERT_EQ(active->size(), 3u);
  EXPECT_EQ((*active)[0].id, a.job_id);
  EXPECT_EQ((*active)[0].priority, common::Priority::kHigh);
  EXPECT_EQ((*active)[0].labels, graded.labels);
  EXPECT_EQ((*active)[1].priority, common::Priority::kLow);
  EXPECT_THAT((*active)[1].labels, IsEmpty());
  EXPECT_EQ((*active)[2].priority, common::Priority::kUnspecified);
  EXPECT_THAT((*active)[2].labels, IsEmpty());
}

absl::Status SaveBudgetUsageAndWait(JobStore& store, std::vector<BudgetUsage> usage) {
  PendingWrite write;
  store.SaveBudgetUsage(std::move(usage), write.Callback());
  return write.Wait();
}

TEST_P(JobStoreConformanceTest, BudgetUsageIsKeptPerBudgetAndScopeAndSurvivesAReopen) {
  absl::StatusOr<std::vector<BudgetUsage>> none = store_->LoadBudgetUsage();
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_THAT(*none, IsEmpty());
  const absl::Time today = kT0;
  ASSERT_TRUE(SaveBudgetUsageAndWait(*store_, {BudgetUsage{"blackboard", "", today, 10},
                                               BudgetUsage{"district", "d7", today, 3},
                                               BudgetUsage{"district", "d8", today, 1}})
                  .ok());
  // A later count of the same (budget, scope) replaces the row, even for another period.
  ASSERT_TRUE(
      SaveBudgetUsageAndWait(*store_, {BudgetUsage{"blackboard", "", today, 11},
                                       BudgetUsage{"district", "d7", today + absl::Hours(24), 1}})
          .ok());
  Reopen();
  absl::StatusOr<std::vector<BudgetUsage>> rows = store_->LoadBudgetUsage();
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ((*rows)[0].budget, "blackboard");
  EXPECT_EQ((*rows)[0].used, 11);
  EXPECT_EQ((*rows)[1].scope, "d7");
  EXPECT_EQ((*rows)[1].period_start, today + absl::Hours(24));
  EXPECT_EQ((*rows)[1].used, 1);
  EXPECT_EQ((*rows)[2].scope, "d8");
  EXPECT_EQ((*rows)[2].used, 1);
}

// --- Operator pauses ---

EndpointPause Pause(absl::string_view endpoint, absl::Time until, absl::string_view reason) {
  EndpointPause pause;
  pause.endpoint = std::string(endpoint);
  pause.until = until;
  pause.reason = std::string(reason);
  pause.paused_at = kT0;
  return pause;
}

void ExpectPausesEq(const std::vector<EndpointPause>& got, const std::vector<EndpointPause>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].endpoint, want[i].endpoint);
    EXPECT_EQ(got[i].until, want[i].until) << got[i].endpoint;
    EXPECT_EQ(got[i].reason, want[i].reason) << got[i].endpoint;
    EXPECT_EQ(got[i].paused_at, want[i].paused_at) << got[i].endpoint;
  }
}

TEST_P(JobStoreConformanceTest, EndpointPausesAreSavedReplacedDeletedAndSurviveAReopen) {
  absl::StatusOr<std::vector<EndpointPause>> none = store_->LoadEndpointPauses();
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_THAT(*none, IsEmpty());

  const EndpointPause canvas = Pause("canvas", kT0 + absl::Hours(2), "LMS maintenance");
  const EndpointPause moodle = Pause("moodle", absl::InfiniteFuture(), "");
  ASSERT_TRUE(SaveEndpointPauseAndWait(*store_, canvas).ok());
  ASSERT_TRUE(SaveEndpointPauseAndWait(*store_, moodle).ok());
  absl::StatusOr<std::vector<EndpointPause>> both = store_->LoadEndpointPauses();
  ASSERT_TRUE(both.ok()) << both.status();
  ExpectPausesEq(*both, {canvas, moodle});

  // One per endpoint: a second pause replaces the first.
  EndpointPause longer = Pause("canvas", kT0 + absl::Hours(5), "maintenance runs late");
  longer.paused_at = kT0 + absl::Minutes(30);
  ASSERT_TRUE(SaveEndpointPauseAndWait(*store_, longer).ok());
  Reopen();
  absl::StatusOr<std::vector<EndpointPause>> reopened = store_->LoadEndpointPauses();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  ExpectPausesEq(*reopened, {longer, moodle});

  ASSERT_TRUE(DeleteEndpointPauseAndWait(*store_, "canvas").ok());
  // Resuming an endpoint that is not paused is not an error.
  ASSERT_TRUE(DeleteEndpointPauseAndWait(*store_, "canvas").ok());
  ASSERT_TRUE(DeleteEndpointPauseAndWait(*store_, "sakai").ok());
  Reopen();
  absl::StatusOr<std::vector<EndpointPause>> left = store_->LoadEndpointPauses();
  ASSERT_TRUE(left.ok()) << left.status();
  ExpectPausesEq(*left, {moodle});
}

TEST_P(JobStoreConformanceTest, APauseIsDurableWhenItsCallbackRunsAndFlushWaitsForIt) {
  struct State {
    absl::Notification done;
    absl::Status write;
    absl::StatusOr<std::vector<EndpointPause>> read;
  };
  auto state = std::make_shared<State>();
  JobStore* store = store_.get();
  store_->SaveEndpointPause(Pause("canvas", kT0 + absl::Hours(1), "window"),
                            [state, store](absl::Status s) {
                              state->write = s;
                              state->read = store->LoadEndpointPauses();
                              state->done.Notify();
                            });
  ASSERT_TRUE(state->done.WaitForNotificationWithTimeout(kCallbackDeadline));
  ASSERT_TRUE(state->write.ok()) << state->write;
  ASSERT_TRUE(state->read.ok()) << state->read.status();
  ASSERT_EQ(state->read->size(), 1u);
  EXPECT_EQ(state->read->front().endpoint, "canvas");

  store_->DeleteEndpointPause("canvas", [](absl::Status) {});
  ASSERT_TRUE(store_->Flush().ok());
  absl::StatusOr<std::vector<EndpointPause>> after = store_->LoadEndpointPauses();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_THAT(*after, IsEmpty());
}

TEST_P(JobStoreConformanceTest, PauseWritesAreGroupCommittedWithOtherWrites) {
  const std::optional<CommitCounts> before = backend_->Counts(*store_);
  if (!before.has_value()) GTEST_SKIP() << "this backend keeps no commit counters";
  constexpr int kPauses = 500;
  SubmitTally tally(kPauses);
  std::vector<PendingWrite> writes(kPauses);
  for (int i = 0; i < kPauses; ++i) {
    store_->SaveEndpointPause(
        Pause(absl::StrCat("endpoint-", i % 50), kT0 + absl::Minutes(i), absl::StrCat("pause ", i)),
        writes[i].Callback());
    tally.Submit(*store_, Job(Spec("t", absl::StrCat("k", i))), kT0, i);
  }
  for (PendingWrite& write : writes) ASSERT_TRUE(write.Wait().ok());
  for (const SubmitResult& r : tally.Wait()) ASSERT_TRUE(r.status.ok()) << r.status;
  ASSERT_TRUE(store_->Flush().ok());
  const std::optional<CommitCounts> after = backend_->Counts(*store_);
  ASSERT_TRUE(after.has_value());
  const int64_t commits = after->commits - before->commits;
  const int64_t ops = after->ops - before->ops;
  EXPECT_EQ(ops, 2 * kPauses);
  EXPECT_LT(commits * 4, ops) << commits << " commits for " << ops << " calls";
  // The last write of each endpoint is the one kept.
  absl::StatusOr<std::vector<EndpointPause>> pauses = store_->LoadEndpointPauses();
  ASSERT_TRUE(pauses.ok()) << pauses.status();
  ASSERT_EQ(pauses->size(), 50u);
  for (const EndpointPause& p : *pauses) {
    int n = -1;
    ASSERT_TRUE(absl::SimpleAtoi(absl::StripPrefix(p.endpoint, "endpoint-"), &n)) << p.endpoint;
    EXPECT_EQ(p.reason, absl::StrCat("pause ", kPauses - 50 + n));
  }
}

}  // namespace
}  // namespace rebound::store::conformance
