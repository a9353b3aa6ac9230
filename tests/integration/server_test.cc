// The whole service, end to end: real rebound-server, real fake-lms, real client library.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/client/subprocess.h"
#include "tests/integration/harness.h"

namespace rebound::testing {
namespace {

using ::testing::HasSubstr;

const ::testing::Environment* const kCurl =
    ::testing::AddGlobalTestEnvironment(new fakelms::CurlGlobalEnvironment);

double GapMs(const nlohmann::json& times, size_t i) {
  return times.at(i).get<double>() - times.at(i - 1).get<double>();
}

TEST_F(IntegrationTest, TransientFailuresAreRetriedUntilSuccess) {
  const auto job = Run(Job("k-503", "503,503,200"));
  EXPECT_EQ(job.state(), v1::SUCCEEDED);
  EXPECT_EQ(job.attempt_count(), 3);
  const auto got = client().Get(job.job_id());
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->attempts_size(), 3);
  EXPECT_EQ(got->attempts(0).http_status(), 503);
  EXPECT_EQ(got->attempts(0).classification(), "retry");
  EXPECT_THAT(got->attempts(0).decision(), HasSubstr("retry at"));
  EXPECT_EQ(got->attempts(2).http_status(), 200);
  const auto stats = KeyStats("k-503");
  EXPECT_EQ(stats["attempts"], 3);
  EXPECT_EQ(stats["effects"], 1);
  EXPECT_EQ(stats["key_header_every_attempt"], true);
}

TEST_F(IntegrationTest, PermanentFailureStopsAfterExactlyOneAttempt) {
  const auto job = Run(Job("k-400", "400,200"));
  EXPECT_EQ(job.state(), v1::FAILED);
  EXPECT_EQ(job.attempt_count(), 1);
  EXPECT_THAT(job.last_decision(), HasSubstr("permanent"));
  EXPECT_EQ(KeyStats("k-400")["attempts"], 1);
}

TEST_F(IntegrationTest, RetryAfterIsHonouredBeforeTheNextAttempt) {
  const auto job = Run(Job("k-429", "429:ra=1,200"));
  EXPECT_EQ(job.state(), v1::SUCCEEDED);
  const auto stats = KeyStats("k-429");
  ASSERT_EQ(stats["times_ms"].size(), 2u);
  EXPECT_GE(GapMs(stats["times_ms"], 1), 1000.0);
}

TEST_F(IntegrationTest, RetryAfterAsAnHttpDateIsHonoured) {
  const auto job = Run(Job("k-429d", "503:rad=2,200"));
  EXPECT_EQ(job.state(), v1::SUCCEEDED);
  const auto stats = KeyStats("k-429d");
  ASSERT_EQ(stats["times_ms"].size(), 2u);
  // An HTTP-date has one-second resolution: "2 s from now" is at least 1 s away.
  EXPECT_GE(GapMs(stats["times_ms"], 1), 1000.0);
}

// Canvas throttles with 403 and the body "403 Forbidden (Rate Limit Exceeded)", and sends no
// Retry-After (https://canvas.instructure.com/doc/api/file.throttling.html): the rule makes it
// a throttle; since nothing says when to come back, the endpoint waits out the policy's
// throttle backoff (150 ms, 300 ms, 600 ms here), and the throttles spend no attempts: three of
// them and a success with max_attempts 2.
TEST_F(IntegrationTest, CanvasThrottleRuleTreats403AsRateLimited) {
  const std::string throttle = "403:body=403%20Forbidden%20%28Rate%20Limit%20Exceeded%29";
  auto r = Job("k-canvas", absl::StrCat(throttle, ",", throttle, ",", throttle, ",200"));
  r.set_policy("canvas");
  const auto job = Run(r);
  EXPECT_EQ(job.state(), v1::SUCCEEDED);
  const auto got = client().Get(job.job_id());
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->attempts_size(), 4);
  EXPECT_EQ(got->throttled_attempts(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(got->attempts(i).classification(), "rate_limited");
    EXPECT_THAT(got->attempts(i).decision(),
                HasSubstr("403 rule canvas-throttle, throttle backoff "));
    EXPECT_THAT(got->attempts(i).decision(), HasSubstr(absl::StrCat("(level ", i + 1, ")")));
  }
  const auto stats = KeyStats("k-canvas");
  ASSERT_EQ(stats["times_ms"].size(), 4u);
  EXPECT_GE(GapMs(stats["times_ms"], 1), 150.0);
  EXPECT_GE(GapMs(stats["times_ms"], 2), 300.0);
  EXPECT_GE(GapMs(stats["times_ms"], 3), 600.0);
}

TEST_F(IntegrationTest, ConnectionRefusedIsRetriedUntilTheBudgetIsSpent) {
  v1::SyncRequest r = Job("k-dead", "200");
  r.set_endpoint("dead");
  r.set_path("/api/x");
  const auto job = Run(r);
  EXPECT_EQ(job.state(), v1::EXHAUSTED);
  EXPECT_EQ(job.attempt_count(), 5);
  const auto got = client().Get(job.job_id());
  ASSERT_TRUE(got.ok());
  for (const auto& a : got->attempts()) EXPECT_EQ(a.transport_error(), "connect");
}

TEST_F(IntegrationTest, AHangingUpstreamTimesOutAndIsRetried) {
  const auto job = Run(Job("k-hang", "hang,200"));
  EXPECT_EQ(job.state(), v1::SUCCEEDED);
  const auto got = client().Get(job.job_id());
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->attempts_size(), 2);
  EXPECT_EQ(got->attempts(0).transport_error(), "timeout");
  const double ms =
      got->attempts(0).duration().seconds() * 1e3 + got->attempts(0).duration().nanos() / 1e6;
  EXPECT_GE(ms, 450.0);   // the endpoint's 500ms timeout (curl's timer granularity)
  EXPECT_LT(ms, 2000.0);  // and not much more
}

TEST_F(IntegrationTest, ExhaustedJobCanBeReplayed) {
  const auto job = Run(Job("k-replay", "500,500,500,500,500,200"));
  EXPECT_EQ(job.state(), v1::EXHAUSTED);
  EXPECT_EQ(job.attempt_count(), 5);
  auto replayed = client().Replay(job.job_id());
  ASSERT_TRUE(replayed.ok()) << replayed.status();
  auto done = client().Await(job.job_id(), absl::Seconds(20));
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), v1::SUCCEEDED);
  EXPECT_EQ(done->attempt_count(), 6);
  EXPECT_EQ(KeyStats("k-replay")["effects"], 1);

  auto again = client().Replay(job.job_id());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(IntegrationTest, DuplicateSubmitReturnsTheSameJob) {
  const auto r = Job("k-dup", "200");
  auto first = client().Submit(r);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->deduplicated());
  ASSERT_TRUE(client().Await(first->job_id(), absl::Seconds(10)).ok());
  auto second = client().Submit(r);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->deduplicated());
  EXPECT_EQ(second->job_id(), first->job_id());
  EXPECT_EQ(second->state(), v1::SUCCEEDED);
  EXPECT_EQ(KeyStats("k-dup")["attempts"], 1);
}

TEST_F(IntegrationTest, SameKeyWithADifferentRequestIsAlreadyExists) {
  auto first = client().Submit(Job("k-conflict", "200", R"({"score": 1})"));
  ASSERT_TRUE(first.ok());
  auto second = client().Submit(Job("k-conflict", "200", R"({"score": 2})"));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(second.status().message(), HasSubstr(first->job_id()));
}

TEST_F(IntegrationTest, CancelStopsFurtherAttempts) {
  auto r = Job("k-cancel", "503");
  r.set_policy("slow");  // 400ms between attempts
  auto submitted = client().Submit(r);
  ASSERT_TRUE(submitted.ok());
  // Wait until the first attempt has failed and the job waits for its retry.
  ASSERT_TRUE(client()
                  .Watch(
                      submitted->job_id(),
                      [](const v1::SyncEvent& e) { return e.state() != v1::WAITING_RETRY; },
                      absl::Seconds(10))
                  .ok());
  auto cancelled = client().Cancel(submitted->job_id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::CANCELLED);
  absl::SleepFor(absl::Milliseconds(900));  // two retry periods of the slow policy
  EXPECT_EQ(KeyStats("k-cancel")["attempts"], 1);
  auto again = client().Cancel(submitted->job_id());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(IntegrationTest, WatchStreamsEveryTransitionUntilTerminal) {
  auto submitted = client().Submit(Job("k-watch", "503:ms=300,200"));
  ASSERT_TRUE(submitted.ok());
  std::vector<v1::SyncState> states;
  const absl::Status s = client().Watch(
      submitted->job_id(),
      [&](const v1::SyncEvent& e) {
        states.push_back(e.state());
        return true;
      },
      absl::Seconds(20));
  ASSERT_TRUE(s.ok()) << s;
  // The first event is the state at subscription (the first attempt takes 300ms).
  ASSERT_GE(states.size(), 4u);
  EXPECT_THAT(states.front(), ::testing::AnyOf(v1::QUEUED, v1::RUNNING));
  const std::vector<v1::SyncState> tail(states.end() - 3, states.end());
  EXPECT_THAT(tail, ::testing::ElementsAre(v1::WAITING_RETRY, v1::RUNNING, v1::SUCCEEDED));
}

TEST_F(IntegrationTest, BadRequestsNameTheField) {
  auto expect_invalid = [&](v1::SyncRequest r, const std::string& field) {
    auto s = client().Submit(r);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(s.status().message(), HasSubstr(field));
  };
  auto r = Job("", "200");
  expect_invalid(r, "request.idempotency_key");
  r = Job("k", "200");
  r.set_endpoint("nope");
  expect_invalid(r, "request.endpoint");
  r = Job("k", "200");
  r.set_path("/admin/users");
  expect_invalid(r, "request.path");
  r.set_path("/api/v1/../../admin");
  expect_invalid(r, "request.path");
  r = Job("k", "200", std::string(2000, 'x'));
  expect_invalid(r, "request.body");
  r = Job("k", "200");
  r.set_method("TRACE");
  expect_invalid(r, "request.method");
  r = Job("k", "200");
  auto* h = r.add_headers();
  h->set_name("X-Evil");
  h->set_value("a\r\nHost: attacker");
  expect_invalid(r, "request.headers[0].value");

  std::vector<v1::SyncRequest> batch;
  for (int i = 0; i < 11; ++i) batch.push_back(Job("b" + std::to_string(i), "200"));
  auto too_big = client().SubmitBatch(batch);
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_big.status().message(), HasSubstr("requests"));
}

TEST_F(IntegrationTest, ABatchAnswersEachItemAndKeepsTheGoodOnes) {
  std::vector<v1::SyncRequest> batch = {Job("b-1", "200"), Job("b-2", "200"), Job("b-3", "200")};
  batch[1].set_path("/etc/passwd");
  auto res = client().SubmitBatch(batch);
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_EQ(res->results_size(), 3);
  EXPECT_EQ(res->results(0).code(), 0);
  EXPECT_EQ(res->results(1).code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(res->results(1).message(), HasSubstr("requests[1].path"));
  EXPECT_EQ(res->results(2).code(), 0);
  for (int i : {0, 2}) {
    auto job = client().Await(res->results(i).result().job_id(), absl::Seconds(10));
    ASSERT_TRUE(job.ok());
    EXPECT_EQ(job->state(), v1::SUCCEEDED);
  }
}

TEST_F(IntegrationTest, ListFiltersByStateAndLabelWithPages) {
  for (int i = 0; i < 5; ++i) {
    auto r = Job("l-ok-" + std::to_string(i), "200");
    (*r.mutable_labels())["pipeline"] = "gradebook";
    Run(r);
  }
  for (int i = 0; i < 3; ++i) Run(Job("l-bad-" + std::to_string(i), "404"));
  v1::ListSyncsRequest req;
  req.add_states(v1::FAILED);
  auto failed = client().List(req);
  ASSERT_TRUE(failed.ok()) << failed.status();
  EXPECT_EQ(failed->jobs_size(), 3);

  v1::ListSyncsRequest by_label;
  by_label.set_label("pipeline=gradebook");
  by_label.set_page_size(2);
  int seen = 0;
  for (int page = 0; page < 10; ++page) {
    auto res = client().List(by_label);
    ASSERT_TRUE(res.ok()) << res.status();
    seen += res->jobs_size();
    if (res->next_page_token().empty()) break;
    by_label.set_page_token(res->next_page_token());
  }
  EXPECT_EQ(seen, 5);
}

TEST_F(IntegrationTest, SigtermDrainsInFlightAttemptsAndExitsZero) {
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    auto s = client().Submit(Job("k-drain-" + std::to_string(i), "200:ms=400"));
    ASSERT_TRUE(s.ok());
    ids.push_back(s->job_id());
  }
  // Every attempt is on the wire (fake-lms answers after 400ms).
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (true) {
    auto totals = lms_->Totals();
    ASSERT_TRUE(totals.ok());
    if ((*totals)["attempts"].get<int>() >= 20 || absl::Now() > give_up) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  server_->process().Signal(SIGTERM);
  auto code = server_->process().Wait(absl::Seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  StartServer();
  for (const auto& id : ids) {
    auto job = client().Get(id);
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(job->state(), v1::SUCCEEDED) << id << " " << job->last_decision();
    EXPECT_EQ(job->attempt_count(), 1);
  }
}

// Waits until fake-lms has received `n` scripted requests (attempts; its own /__stats calls
// are not counted there).
void AwaitRequests(fakelms::FakeLmsProcess& lms, int n) {
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (absl::Now() < give_up) {
    auto totals = lms.Totals();
    if (totals.ok() && (*totals)["attempts"].get<int>() >= n) return;
    absl::SleepFor(absl::Milliseconds(10));
  }
  ADD_FAILURE() << "fake-lms did not see " << n << " requests";
}

TEST_F(IntegrationTest, AttemptStillOnTheWireAfterTheGraceRunsAgainAfterRestart) {
  auto r = Job("k-slow", "200:ms=10000");
  r.set_endpoint("slow");
  auto submitted = client().Submit(r);
  ASSERT_TRUE(submitted.ok());
  AwaitRequests(*lms_, 1);
  server_->process().Signal(SIGTERM);
  auto code = server_->process().Wait(absl::Seconds(15));
  ASSERT_TRUE(code.ok()) << code.status() << "\n" << ServerLog();
  EXPECT_EQ(*code, 0);
  StartServer();
  // The LMS applied the first delivery when it arrived; the rerun gets the stored answer.
  auto job = client().Await(submitted->job_id(), absl::Seconds(20));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::SUCCEEDED);
  const auto stats = KeyStats("k-slow");
  EXPECT_EQ(stats["effects"], 1);
  EXPECT_EQ(stats["repeats"], 1);
}

TEST_F(IntegrationTest, ACancelWaitingOnAnAttemptIsAnsweredAtShutdown) {
  auto r = Job("k-cancel-stop", "503:ms=10000");
  r.set_endpoint("slow");
  auto submitted = client().Submit(r);
  ASSERT_TRUE(submitted.ok());
  AwaitRequests(*lms_, 1);
  absl::Status cancel_status = absl::UnknownError("not answered");
  std::thread canceller([&] { cancel_status = client().Cancel(submitted->job_id()).status(); });
  absl::SleepFor(absl::Milliseconds(200));  // the cancel now waits for the attempt
  server_->process().Signal(SIGTERM);
  auto code = server_->process().Wait(absl::Seconds(15));
  canceller.join();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  EXPECT_EQ(cancel_status.code(), absl::StatusCode::kUnavailable) << cancel_status;
}

TEST_F(IntegrationTest, SigtermWith200AttemptsInFlightDrainsThemAllAndExitsZero) {
  constexpr int kJobs = 200;
  std::vector<std::string> ids;
  for (int b = 0; b < kJobs / 10; ++b) {
    std::vector<v1::SyncRequest> batch;
    for (int i = 0; i < 10; ++i) {
      auto r = Job(absl::StrCat("k-200-", b * 10 + i), "200:ms=1000");
      r.set_endpoint("slow");
      batch.push_back(r);
    }
    auto res = client().SubmitBatch(batch);
    ASSERT_TRUE(res.ok()) << res.status();
    for (const auto& item : res->results()) {
      ASSERT_EQ(item.code(), 0) << item.message();
      ids.push_back(item.result().job_id());
    }
  }
  AwaitRequests(*lms_, kJobs);  // all 200 on the wire (answers take 1 s)
  const absl::Time sent = absl::Now();
  server_->process().Signal(SIGTERM);

  // Draining: health says NOT_SERVING and submits are refused, while the attempts finish.
  // The client's receive window kept at a fixed 16 KiB (gRPC otherwise grows it with its
  // bandwidth-delay probe, up to megabytes, and unread answers fill all of it).
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 * 1024);
  auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                           grpc::InsecureChannelCredentials(), args);
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckResponse::ServingStatus status =
      grpc::health::v1::HealthCheckResponse::SERVING;
  for (int i = 0; i < 50 && status == grpc::health::v1::HealthCheckResponse::SERVING; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc::health::v1::HealthCheckResponse res;
    if (!health->Check(&ctx, {}, &res).ok()) break;  // already gone counts as not serving
    status = res.status();
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_NE(status, grpc::health::v1::HealthCheckResponse::SERVING);
  auto late = Job("k-200-late", "200");
  late.set_endpoint("slow");
  EXPECT_EQ(client().Submit(late).status().code(), absl::StatusCode::kUnavailable);

  auto code = server_->process().Wait(absl::Seconds(20));
  const absl::Duration drain = absl::Now() - sent;
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  EXPECT_LT(drain, absl::Seconds(8)) << "1 s answers, a 2 s grace, ~1 s to close the ports";
  RecordProperty("drain_ms", static_cast<int>(absl::ToInt64Milliseconds(drain)));
  std::printf("drain of %d in-flight attempts: %lld ms\n", kJobs,
              static_cast<long long>(absl::ToInt64Milliseconds(drain)));

  StartServer();
  for (const auto& id : ids) {
    auto job = client().Get(id);
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(job->state(), v1::SUCCEEDED) << id;
    EXPECT_EQ(job->attempt_count(), 1) << id;
  }
  auto totals = lms_->Totals();
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ((*totals)["effects"], kJobs);
  EXPECT_EQ((*totals)["repeats"], 0);
}

// Waits until the server log has `n` lines containing `needle`.
bool AwaitLog(const std::function<std::string()>& log, const std::string& needle, int n) {
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (absl::Now() < give_up) {
    const std::string text = log();
    int count = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
      ++count;
    }
    if (count >= n) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

TEST_F(IntegrationTest, SighupReloadsPoliciesAndRefusesABadConfigKeepingTheOldOne) {
  std::string yaml;
  {
    std::ifstream in(config_path_);
    yaml.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string five = "limits: {max_attempts: 5, max_elapsed: 1m, max_retry_after: 5s}";
  ASSERT_NE(yaml.find(five), std::string::npos);
  std::string two = yaml;
  two.replace(two.find(five), five.size(),
              "limits: {max_attempts: 2, max_elapsed: 1m, max_retry_after: 5s}");
  auto log = [this] { return ServerLog(); };

  std::ofstream(config_path_, std::ios::trunc) << two;
  server_->process().Signal(SIGHUP);
  ASSERT_TRUE(AwaitLog(log, "\"config_reloaded\"", 1)) << ServerLog();
  auto job = Run(Job("k-reload-1", "503"));
  EXPECT_EQ(job.state(), v1::EXHAUSTED);
  EXPECT_EQ(job.attempt_count(), 2) << "the new max_attempts";

  std::ofstream(config_path_, std::ios::trunc) << two << "bogus: 1\n";
  server_->process().Signal(SIGHUP);
  ASSERT_TRUE(AwaitLog(log, "\"config_reload_rejected\"", 1)) << ServerLog();
  EXPECT_THAT(ServerLog(), HasSubstr("unknown top-level key 'bogus'"));

  std::string moved = two;
  moved.replace(moved.find("grpc_listen: 127.0.0.1:0"), 24, "grpc_listen: 127.0.0.1:1");
  std::ofstream(config_path_, std::ios::trunc) << moved;
  server_->process().Signal(SIGHUP);
  ASSERT_TRUE(AwaitLog(log, "\"config_reload_rejected\"", 2)) << ServerLog();
  EXPECT_THAT(ServerLog(), HasSubstr("server.grpc_listen cannot change without a restart"));

  job = Run(Job("k-reload-2", "503"));
  EXPECT_EQ(job.attempt_count(), 2) << "the last good config stays in force";

  // A new endpoint (onboarding another LMS) is added without a restart.
  const size_t lms_at = two.find("  - name: lms\n");
  ASSERT_NE(lms_at, std::string::npos);
  const size_t lms_end = two.find("  - name: slow\n", lms_at);  // the endpoint, not the policy
  std::string lms2 = two.substr(lms_at, lms_end - lms_at);
  lms2.replace(0, std::string("  - name: lms\n").size(), "  - name: lms2\n");
  std::string with_lms2 = two + lms2;
  std::ofstream(config_path_, std::ios::trunc) << with_lms2;
  server_->process().Signal(SIGHUP);
  ASSERT_TRUE(AwaitLog(log, "\"config_reloaded\"", 2)) << ServerLog();
  auto r = Job("k-reload-lms2", "503,200");
  r.set_endpoint("lms2");
  job = Run(r);
  EXPECT_EQ(job.state(), v1::SUCCEEDED);
  EXPECT_EQ(job.attempt_count(), 2);

  // Removing one needs a restart.
  std::string without_dead = with_lms2;
  const size_t dead_at = without_dead.find("  - name: dead\n");
  ASSERT_NE(dead_at, std::string::npos);
  const size_t dead_end = without_dead.find("  - name: lms2\n", dead_at);
  without_dead.erase(dead_at, dead_end - dead_at);
  std::ofstream(config_path_, std::ios::trunc) << without_dead;
  server_->process().Signal(SIGHUP);
  ASSERT_TRUE(AwaitLog(log, "\"config_reload_rejected\"", 3)) << ServerLog();
  EXPECT_THAT(ServerLog(), HasSubstr("removing 'dead'"));
}

TEST_F(IntegrationTest, HealthIsServingAndReflectionListsTheApi) {
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                     grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext hctx;
  hctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest hreq;
  grpc::health::v1::HealthCheckResponse hres;
  ASSERT_TRUE(health->Check(&hctx, hreq, &hres).ok());
  EXPECT_EQ(hres.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(channel);
  grpc::ClientContext rctx;
  rctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = reflection->ServerReflectionInfo(&rctx);
  grpc::reflection::v1alpha::ServerReflectionRequest rreq;
  rreq.set_list_services("");
  ASSERT_TRUE(stream->Write(rreq));
  stream->WritesDone();
  grpc::reflection::v1alpha::ServerReflectionResponse rres;
  ASSERT_TRUE(stream->Read(&rres));
  std::vector<std::string> services;
  for (const auto& s : rres.list_services_response().service()) services.push_back(s.name());
  EXPECT_THAT(services, ::testing::Contains("rebound.v1.Rebound"));
  EXPECT_THAT(services, ::testing::Contains("grpc.health.v1.Health"));
  while (stream->Read(&rres)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
}

using ServingStatus = ::grpc::health::v1::HealthCheckResponse::ServingStatus;
using ::grpc::health::v1::HealthCheckResponse;

// reboundctl (the real binary) against the server at `port`.
client::ProcessResult Reboundctl(int port, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {REBOUNDCTL_BIN, "--target", absl::StrCat("127.0.0.1:", port),
                                   "--timeout", "5s"};
  argv.insert(argv.end(), args.begin(), args.end());
  return client::RunProcess(argv);
}

TEST_F(IntegrationTest, HealthAnswersForTheApiServiceNameAsForTheWholeServer) {
  const absl::StatusOr<ServingStatus> server = client().CheckHealth("");
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(*server, HealthCheckResponse::SERVING);
  const absl::StatusOr<ServingStatus> api = client().CheckHealth("rebound.v1.Rebound");
  ASSERT_TRUE(api.ok()) << api.status();
  EXPECT_EQ(*api, HealthCheckResponse::SERVING);
  EXPECT_EQ(client().CheckHealth("rebound.v1.Nothing").status().code(),
            absl::StatusCode::kNotFound);

  const client::ProcessResult whole = Reboundctl(server_->port(), {"health"});
  EXPECT_EQ(whole.exit_code, 0) << whole.err;
  EXPECT_EQ(whole.out, absl::StrCat("127.0.0.1:", server_->port(), " SERVING\n"));
  const client::ProcessResult named =
      Reboundctl(server_->port(), {"health", "--service", "rebound.v1.Rebound"});
  EXPECT_EQ(named.exit_code, 0) << named.err;
  EXPECT_EQ(named.out,
            absl::StrCat("127.0.0.1:", server_->port(), " rebound.v1.Rebound SERVING\n"));
  const client::ProcessResult unknown =
      Reboundctl(server_->port(), {"health", "--service", "rebound.v1.Nothing"});
  EXPECT_EQ(unknown.exit_code, 3) << unknown.err;
  EXPECT_THAT(unknown.err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(unknown.err, HasSubstr("no service 'rebound.v1.Nothing'"));
}

TEST_F(IntegrationTest, WhileDrainingBothHealthNamesSayNotServingAndReboundctlHealthFails) {
  auto r = Job("k-health-drain", "200:ms=1500");
  r.set_endpoint("slow");
  ASSERT_TRUE(client().Submit(r).ok());
  AwaitRequests(*lms_, 1);
  const int port = server_->port();
  server_->process().Signal(SIGTERM);

  // Shutdown() says NOT_SERVING first, then drains the attempt (1.5 s, within the 2 s grace).
  absl::StatusOr<ServingStatus> api = HealthCheckResponse::SERVING;
  for (int i = 0; i < 100 && api.ok() && *api == HealthCheckResponse::SERVING; ++i) {
    api = client().CheckHealth("rebound.v1.Rebound");
    if (api.ok() && *api == HealthCheckResponse::SERVING) absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(api.ok()) << api.status();
  EXPECT_EQ(*api, HealthCheckResponse::NOT_SERVING);
  const absl::StatusOr<ServingStatus> whole = client().CheckHealth("");
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(*whole, HealthCheckResponse::NOT_SERVING);
  const client::ProcessResult draining =
      Reboundctl(port, {"health", "--service", "rebound.v1.Rebound"});
  EXPECT_EQ(draining.exit_code, 1) << draining.err;
  EXPECT_EQ(draining.out, absl::StrCat("127.0.0.1:", port, " rebound.v1.Rebound NOT_SERVING\n"));
  EXPECT_THAT(draining.err, HasSubstr("is NOT_SERVING, not SERVING"));

  auto code = server_->process().Wait(absl::Seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  const client::ProcessResult gone = Reboundctl(port, {"health"});
  EXPECT_EQ(gone.exit_code, 4) << gone.err;
  EXPECT_THAT(gone.err, HasSubstr("UNAVAILABLE"));
}

TEST_F(IntegrationTest, AFullStoreAnswersSubmitsUnavailableNotResourceExhausted) {
  // Restart on a store capped at 256 KiB: it fills after a few hundred jobs, as a full disk
  // would. The jobs wait behind one hanging job on their ordering key: the engine writes only
  // their BLOCKED step, often in the same transaction as a submit that meets the full file,
  // and that submit's refusal must not fail it (the process would stop).
  server_.reset();
  std::string text = IntegrationConfig(lms_->port(), UnusedPort(), dir_.File("rebound.db"));
  const std::string store_key = "store:\n  path: ";
  ASSERT_NE(text.find(store_key), std::string::npos);
  text.replace(text.find(store_key), store_key.size(),
               "store:\n  max_file_bytes: 262144\n  path: ");
  std::ofstream(config_path_) << text;
  StartServer();

  v1::SyncRequest first = Job("full-0", "hang");
  first.set_endpoint("slow");
  first.set_ordering_key("course-1");
  ASSERT_TRUE(client().Submit(first).ok());
  absl::Status refused;
  int accepted = 1;
  std::vector<std::string> ids;
  for (int i = 1; i < 2000 && refused.ok(); ++i) {
    v1::SyncRequest r = Job(absl::StrCat("full-", i), "200", std::string(1000, 'g'));
    r.set_endpoint("slow");
    r.set_ordering_key("course-1");
    auto submitted = client().Submit(r);
    if (submitted.ok()) {
      ids.push_back(submitted->job_id());
      ++accepted;
    } else {
      refused = submitted.status();
    }
  }
  // The engine decides BLOCKED (the submit's answer may still say QUEUED): read them back.
  for (size_t i = 0; i < ids.size(); i += 50) {
    const auto got = client().Get(ids[i]);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->state(), v1::BLOCKED) << ids[i];
  }
  EXPECT_GT(accepted, 10);
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_EQ(refused.message(), "store: cannot write, the disk or database is full; retry later");
  // The operator's log has SQLite's own words; the server still serves what it holds.
  EXPECT_THAT(ServerLog(), HasSubstr("database or disk is full"));
  v1::ListSyncsRequest list;
  list.set_page_size(1000);
  auto listed = client().List(list);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->jobs_size(), accepted);
}

TEST_F(IntegrationTest, SubmitSyncStreamAnswersEachJobByItsSequenceAsItIsDurable) {
  std::vector<v1::SyncRequest> requests;
  for (int i = 0; i < 300; ++i) requests.push_back(Job(absl::StrCat("stream-", i), "200"));
  requests[7].set_endpoint("nowhere");  // refused on its own, naming the field
  requests[8] = requests[3];            // the same key and request: deduplicated
  absl::Mutex mu;
  std::map<uint64_t, v1::SubmitSyncStreamResponse> answers;
  const absl::Status status =
      client().SubmitStream(requests, 16, [&](const v1::SubmitSyncStreamResponse& answer) {
        absl::MutexLock lock(&mu);
        EXPECT_TRUE(answers.emplace(answer.sequence(), answer).second) << answer.sequence();
      });
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(answers.size(), requests.size());
  EXPECT_EQ(answers[7].code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(answers[7].message(), HasSubstr("request.endpoint"));
  EXPECT_FALSE(answers[7].has_result());
  std::set<std::string> ids;
  for (const auto& [sequence, answer] : answers) {
    if (sequence == 7) continue;
    ASSERT_EQ(answer.code(), 0) << sequence << ": " << answer.message();
    if (sequence != 8) {
      EXPECT_TRUE(ids.insert(answer.result().job_id()).second) << sequence;
    }
  }
  EXPECT_EQ(ids.size(), 298u);
  EXPECT_TRUE(answers[8].result().deduplicated());
  EXPECT_EQ(answers[8].result().job_id(), answers[3].result().job_id());
  // Each answer was durable: the job is there, and runs to its end.
  const auto job = client().Await(answers[299].result().job_id(), absl::Seconds(20));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::SUCCEEDED);
  EXPECT_EQ(job->request().idempotency_key(), "stream-299");
}

}  // namespace
}  // namespace rebound::testing
