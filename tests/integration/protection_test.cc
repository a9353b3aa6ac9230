// Endpoint protection end to end (issue 8, "Tests", integration (a)-(e)): the real rebound-server
// against the real fake-lms, each test with its own config of one endpoint "lms". What the
// upstream saw comes from fake-lms's arrival log (/__arrivals), so the limits are checked from
// the LMS's side, not from what the server says about itself.
#include <algorithm>
#include <cmath>
#include <csignal>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "server/config/config.h"
#include "tests/integration/harness.h"

namespace rebound::testing {
namespace {

using google::protobuf::util::TimeUtil;

const ::testing::Environment* const kCurl =
    ::testing::AddGlobalTestEnvironment(new fakelms::CurlGlobalEnvironment);

// One scripted request as fake-lms logged it (tools/fake-lms/README.md, "Arrival log").
struct Arrival {
  double at_ms = 0;
  std::optional<double> done_ms;
  int status = 0;
  bool outage = false;
};

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(t));
}

class ProtectionTest : public IntegrationTest {
 protected:
  // Only fake-lms: each test starts the server with its own endpoint settings.
  void SetUp() override { StartFakeLms(); }

  void TearDown() override {
    if (server_ != nullptr) StopServer();
  }

  // One endpoint "lms" on fake-lms with `endpoint_keys` (YAML lines indented by 4) and, unless
  // `policies` is given, the built-in default policy: the product defaults.
  void StartWith(const std::string& endpoint_keys, const std::string& policies = "") {
    std::ofstream(config_path_, std::ios::trunc)
        << "server:\n  grpc_listen: 127.0.0.1:0\n  metrics_listen: 127.0.0.1:0\n"
        << "  max_batch_size: 100\n  shutdown_grace: 2s\n"
        << "store:\n  path: " << dir_.File("rebound.db") << "\n"
        << policies << "endpoints:\n  - name: lms\n    base_url: http://127.0.0.1:" << lms_->port()
        << "\n    allowed_path_prefixes: [/api/v1/]\n"
        << endpoint_keys;
    StartServer();
  }

  void StopServer() {
    auto code = server_->process().Stop(absl::Seconds(20));
    EXPECT_TRUE(code.ok()) << code.status() << "\n" << ServerLog();
    server_.reset();
  }

  // Submits `n` jobs "<prefix><i>" with that query (fake-lms script and latency), in batches.
  std::vector<std::string> SubmitMany(const std::string& prefix, int n, const std::string& query) {
    std::vector<std::string> ids;
    for (int from = 0; from < n; from += 100) {
      std::vector<v1::SyncRequest> batch;
      for (int i = from; i < std::min(n, from + 100); ++i) {
        v1::SyncRequest r = Job(absl::StrCat(prefix, i), "200");
        r.set_query(query);
        batch.push_back(std::move(r));
      }
      auto res = client().SubmitBatch(batch);
      EXPECT_TRUE(res.ok()) << res.status();
      if (!res.ok()) return ids;
      for (const auto& item : res->results()) {
        EXPECT_EQ(item.code(), 0) << item.message();
        ids.push_back(item.result().job_id());
      }
    }
    return ids;
  }

  // What fake-lms saw of `n` jobs "<prefix><i>" (query: their script and latency) run to their
  // effects: requests, those its throttle mode answered, and the seconds until the last effect.
  struct ModeRun {
    int attempts = 0;
    int throttled = 0;
    int effects = 0;
    double seconds = 0;
  };
  ModeRun RunThroughTheMode(const std::string& prefix, int n, const std::string& query) {
    ModeRun run;
    const absl::Time start = absl::Now();
    SubmitMany(prefix, n, query);
    EXPECT_TRUE(AwaitEffects(n, start + absl::Seconds(60))) << ServerLog();
    run.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    auto totals = lms_->Totals();
    EXPECT_TRUE(totals.ok()) << totals.status();
    if (!totals.ok()) return run;
    run.attempts = (*totals)["attempts"];
    run.throttled = (*totals)["throttle_answers"];
    run.effects = (*totals)["effects"];
    std::cout << prefix << " " << run.attempts << " requests, " << run.throttled << " throttled ("
              << 100.0 * run.throttled / std::max(run.attempts, 1) << "%), " << run.effects
              << " of " << n << " jobs succeeded after " << run.seconds << " s\n";
    return run;
  }

  std::vector<Arrival> Arrivals() {
    auto j = lms_->Arrivals();
    EXPECT_TRUE(j.ok()) << j.status();
    std::vector<Arrival> out;
    if (!j.ok()) return out;
    EXPECT_EQ((*j)["dropped"], 0);
    for (const auto& a : (*j)["arrivals"]) {
      Arrival x;
      x.at_ms = a[0].get<double>();
      if (!a[2].is_null()) x.done_ms = a[2].get<double>();
      x.status = a[3].get<int>();
      x.outage = a[4].get<int>() == 1;
      out.push_back(x);
    }
    return out;
  }

  v1::EndpointStatus Status() {
    auto s = client().GetEndpointStatus("lms");
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok() || s->endpoints_size() != 1) return {};
    return s->endpoints(0);
  }

  // Polls fake-lms until `n` keys have had their effect (bounded by `deadline`).
  bool AwaitEffects(int n, absl::Time deadline) {
    while (absl::Now() < deadline) {
      auto totals = lms_->Totals();
      if (totals.ok() && (*totals).value("effects", 0) >= n) return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }

  // Polls the server until no job is active (QUEUED, BLOCKED, RUNNING, WAITING_RETRY), bounded
  // by `deadline`.
  bool AwaitNoActiveJob(absl::Time deadline) {
    v1::ListSyncsRequest req;
    for (v1::SyncState s : {v1::QUEUED, v1::BLOCKED, v1::RUNNING, v1::WAITING_RETRY}) {
      req.add_states(s);
    }
    req.set_page_size(1);
    while (absl::Now() < deadline) {
      auto res = client().List(req);
      if (res.ok() && res->jobs().empty()) return true;
      absl::SleepFor(absl::Milliseconds(200));
    }
    return false;
  }

  // Every job of the server by state (ListSyncs, paged).
  std::map<int, int> CountByState(int* max_attempts = nullptr) {
    std::map<int, int> by_state;
    v1::ListSyncsRequest req;
    req.set_page_size(500);
    for (int page = 0; page < 100; ++page) {
      auto res = client().List(req);
      EXPECT_TRUE(res.ok()) << res.status();
      if (!res.ok()) break;
      for (const auto& job : res->jobs()) {
        ++by_state[job.state()];
        if (max_attempts != nullptr) *max_attempts = std::max(*max_attempts, job.attempt_count());
      }
      if (res->next_page_token().empty()) break;
      req.set_page_token(res->next_page_token());
    }
    return by_state;
  }
};

// (a) 500 jobs, 64 in flight, the LMS hard down (503, no Retry-After) for kOutage, under the
// product defaults: the built-in default policy (5 attempts, backoff 200 ms doubling, full
// jitter) and the default circuit breaker, retry budget and slow start. Before issue 8 the LMS
// saw ~4,050 requests in such an outage and the jobs were EXHAUSTED within it.
constexpr absl::Duration kOutage = absl::Seconds(20);  // the figure

TEST_F(ProtectionTest, HardDownLmsSeesJobsInFlightPlusProbesAndNoJobIsDeadLettered) {
  constexpr int kJobs = 500;
  constexpr int kMaxInFlight = 64;
  const config::CircuitBreakerConfig cb;  // the defaults the endpoint runs with
  ASSERT_NO_FATAL_FAILURE(StartWith(absl::StrCat("    max_in_flight: ", kMaxInFlight, "\n")));
  ASSERT_TRUE(lms_->StartOutage(kOutage).ok());
  const absl::Time outage_end = absl::Now() + kOutage;
  const std::vector<std::string> ids = SubmitMany("a-", kJobs, "script=200");
  ASSERT_EQ(ids.size(), static_cast<size_t>(kJobs));

  // The bound, from the design. Until the breaker opens, at most max_in_flight attempts are on
  // the wire, and a slot freed by an outcome can be refilled until min_requests outcomes are
  // counted (all failures: ratio 1 >= failure_ratio), so at most max_in_flight + min_requests - 1
  // requests. Once open, only half-open probes pass: at most half_open_probes per half-open
  // period, and the periods begin open_duration after the opening, then 2x, 4x ... (capped at
  // max_open_duration) after each re-opening; the breaker opens after the outage began, so the
  // periods that begin within it are at most those with a start offset below kOutage.
  int half_open_periods = 0;
  absl::Duration offset = absl::ZeroDuration();
  for (absl::Duration open = cb.open_duration; offset + open < kOutage;
       open = std::min(open * 2, cb.max_open_duration)) {
    offset += open;
    ++half_open_periods;
  }
  const int bound = kMaxInFlight + cb.min_requests - 1 + cb.half_open_probes * half_open_periods;

  // After the outage: the open period in progress (at most max_open_duration), the probes, slow
  // start's window, then the jobs' own backoff (at most 1.6 s before their 5th attempt); 15 s
  // on top for this loaded machine.
  const config::SlowStartConfig slow_start;
  const absl::Duration recovery_bound =
      cb.max_open_duration + slow_start.window + absl::Seconds(2) + absl::Seconds(15);
  absl::SleepFor(outage_end - absl::Now());
  EXPECT_TRUE(AwaitNoActiveJob(outage_end + recovery_bound))
      << "jobs still active " << recovery_bound << " after the outage's end";
  const absl::Duration recovered_after = absl::Now() - outage_end;

  const std::vector<Arrival> arrivals = Arrivals();
  const int during = static_cast<int>(
      std::count_if(arrivals.begin(), arrivals.end(), [](const Arrival& a) { return a.outage; }));
  const int succeeded = static_cast<int>(std::count_if(
      arrivals.begin(), arrivals.end(), [](const Arrival& a) { return a.status == 200; }));
  int max_attempts = 0;
  std::map<int, int> by_state = CountByState(&max_attempts);
  std::cout << "[ measured ] requests during a " << kOutage << " outage: " << during << " (bound "
            << bound << ", " << half_open_periods << " half-open periods); no job active "
            << recovered_after << " after it ended; most attempts of a job: " << max_attempts
            << "; requests in all: " << arrivals.size() << "\n";
  EXPECT_GE(during, cb.min_requests) << "the outage was seen";
  EXPECT_LE(during, bound) << "of the order of the jobs in flight plus probes";
  EXPECT_EQ(succeeded, kJobs);
  EXPECT_EQ(by_state[v1::SUCCEEDED], kJobs) << "no job dead-lettered by the outage";
  EXPECT_EQ(by_state.size(), 1u);
  EXPECT_LE(max_attempts, 5);
}

// (b) A token bucket of 20/s with a burst of 5, 80 ready jobs and room for 64 in flight: no
// one-second window of arrivals at the LMS holds more than burst + rate.
TEST_F(ProtectionTest, TokenBucketRateIsNeverExceededInAnyOneSecondWindow) {
  constexpr int kJobs = 80;
  constexpr double kRate = 20;
  constexpr int kBurst = 5;
  ASSERT_NO_FATAL_FAILURE(StartWith(absl::StrCat(
      "    max_in_flight: 64\n    rate_limit: {rate: ", kRate, ", burst: ", kBurst, "}\n")));
  ASSERT_EQ(SubmitMany("b-", kJobs, "script=200").size(), static_cast<size_t>(kJobs));
  // (kJobs - kBurst) / kRate = 3.75 s at the limit.
  ASSERT_TRUE(AwaitEffects(kJobs, absl::Now() + absl::Seconds(30)));
  const std::vector<Arrival> arrivals = Arrivals();
  ASSERT_EQ(arrivals.size(), static_cast<size_t>(kJobs));
  size_t max_in_window = 0;
  for (size_t i = 0; i < arrivals.size(); ++i) {
    size_t j = i;
    while (j < arrivals.size() && arrivals[j].at_ms < arrivals[i].at_ms + 1000) ++j;
    max_in_window = std::max(max_in_window, j - i);
  }
  const double span_ms = arrivals.back().at_ms - arrivals.front().at_ms;
  std::cout << "[ measured ] most arrivals in one second: " << max_in_window << " (bound "
            << kBurst + kRate << " + 1); " << kJobs << " requests over " << span_ms << " ms\n";
  // A bucket admits at most burst + rate x 1 s in any second; one token (50 ms) more for the
  // arrival times: fake-lms stamps a request when its loop reads it, which on a loaded machine
  // can be tens of ms after the server sent it, and a late burst then shares a window with
  // tokens of a second later (24 or 25 measured here; unlimited, all 80 come within ~10 ms).
  EXPECT_LE(max_in_window, static_cast<size_t>(kBurst + kRate + 1));
  // The bucket did hold the jobs back: unlimited, 80 jobs arrive within a few ms.
  EXPECT_GE(span_ms, 1000 * (kJobs - kBurst) / kRate * 0.95);
}

// (c) A 429 with Retry-After: 5, as D2L Brightspace answers when its credit bucket is empty ("we
// include ... in all 429 responses: Retry-After", https://community.d2l.com/brightspace/kb/
// articles/1195-rate-limiting-and-api-response-headers; only the header the test needs, none of
// D2L's X-Rate-Limit-* headers, which Rebound does not read yet), pauses the endpoint for 5 s;
// when the pause ends, slow start lets the in-flight cap grow from 1 to max_in_flight over its
// window instead of releasing the 60 ready jobs at once.
TEST_F(ProtectionTest, AfterARetryAfterPauseTheFirst100MsStayWithinTheSlowStartRamp) {
  constexpr int kMaxInFlight = 32;
  constexpr absl::Duration kWindow = absl::Seconds(1);
  constexpr int kLatencyMs = 150;  // > 100: a slot starts at most one request in 100 ms
  constexpr int kJobs = 60;
  ASSERT_NO_FATAL_FAILURE(StartWith(
      absl::StrCat("    max_in_flight: ", kMaxInFlight, "\n    slow_start: {window: 1s}\n")));
  v1::SyncRequest throttled = Job("c-429", "200");
  throttled.set_query(absl::StrCat("script=429:ra=5,200&latency_ms=", kLatencyMs));
  ASSERT_TRUE(client().Submit(throttled).ok());
  // The pause is in force before the other jobs arrive.
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (!Status().has_paused_until() && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(Status().has_paused_until()) << ServerLog();
  const std::vector<std::string> ids =
      SubmitMany("c-", kJobs, absl::StrCat("script=200&latency_ms=", kLatencyMs));
  ASSERT_EQ(ids.size(), static_cast<size_t>(kJobs));
  auto held = client().Get(ids.back());
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->wait().reason(), v1::ENDPOINT_PAUSED);
  ASSERT_TRUE(AwaitEffects(kJobs + 1, absl::Now() + absl::Seconds(30)));

  const std::vector<Arrival> arrivals = Arrivals();
  ASSERT_EQ(arrivals.size(), static_cast<size_t>(kJobs + 2));
  ASSERT_EQ(arrivals[0].status, 429);
  // The pause lasts 5 s from the server's receipt of the 429, which is after fake-lms sent it
  // (done_ms): it ended at or after done_ms(429) + 5000, and the ramp began then. Every request
  // that arrives in [first, first + 100 ms] is still held (latency 150 ms) when the last of them
  // is admitted, so their number is at most the cap slow start allows by then:
  // ceil(max_in_flight x elapsed / window) with elapsed <= first + 100 - (done_ms(429) + 5000).
  ASSERT_TRUE(arrivals[0].done_ms.has_value());
  const double first = arrivals[1].at_ms;
  const double pause_end_at_earliest = *arrivals[0].done_ms + 5000;
  ASSERT_GE(first, pause_end_at_earliest) << "a request during the pause";
  const int in_first_100ms =
      static_cast<int>(std::count_if(arrivals.begin() + 1, arrivals.end(),
                                     [&](const Arrival& a) { return a.at_ms <= first + 100; }));
  const double elapsed_ms = first + 100 - pause_end_at_earliest;
  const int bound = std::clamp(
      static_cast<int>(std::ceil(kMaxInFlight * elapsed_ms / absl::ToDoubleMilliseconds(kWindow))),
      1, kMaxInFlight);
  std::cout << "[ measured ] requests in the first 100 ms after the pause: " << in_first_100ms
            << " (ramp bound " << bound << " at " << elapsed_ms
            << " ms after the earliest end of the pause; max_in_flight " << kMaxInFlight << ")\n";
  EXPECT_GE(in_first_100ms, 1);
  EXPECT_LE(in_first_100ms, bound);
}

// (d) An operator pause is persisted: it holds the jobs submitted before and after a restart on
// the same database, and ResumeEndpoint releases them.
TEST_F(ProtectionTest, OperatorPauseHoldsAcrossARestartUntilResumed) {
  ASSERT_NO_FATAL_FAILURE(StartWith("    slow_start: {window: 200ms}\n"));
  const std::string kReason = "LMS maintenance 02:00-04:00";
  v1::PauseEndpointRequest pause;
  pause.set_name("lms");
  pause.set_reason(kReason);
  auto paused = client().PauseEndpoint(pause);
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_TRUE(paused->operator_paused());

  std::vector<std::string> ids = SubmitMany("d-before-", 3, "script=200");
  absl::SleepFor(absl::Milliseconds(300));  // time enough to send them, were they not held
  auto expect_held = [&](const std::string& when) {
    for (const std::string& id : ids) {
      auto job = client().Get(id);
      ASSERT_TRUE(job.ok()) << job.status();
      EXPECT_EQ(job->state(), v1::QUEUED) << when << " " << id;
      EXPECT_EQ(job->wait().reason(), v1::OPERATOR_PAUSED) << when << " " << id;
      EXPECT_FALSE(job->wait().has_until()) << "paused until resumed";
    }
    EXPECT_THAT(Arrivals(), ::testing::IsEmpty()) << when;
  };
  ASSERT_NO_FATAL_FAILURE(expect_held("before the restart"));

  StopServer();
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const v1::EndpointStatus after = Status();
  EXPECT_TRUE(after.operator_paused());
  EXPECT_EQ(after.operator_reason(), kReason);
  EXPECT_TRUE(after.has_operator_paused_at());
  EXPECT_FALSE(after.has_operator_paused_until());
  const std::vector<std::string> later = SubmitMany("d-after-", 3, "script=200");
  ids.insert(ids.end(), later.begin(), later.end());
  absl::SleepFor(absl::Milliseconds(300));
  ASSERT_NO_FATAL_FAILURE(expect_held("after the restart"));
  v1::ListSyncsRequest list;
  list.set_wait_reason(v1::OPERATOR_PAUSED);
  auto listed = client().List(list);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->jobs_size(), 6);

  auto resumed = client().ResumeEndpoint("lms");
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_FALSE(resumed->operator_paused());
  for (const std::string& id : ids) {
    auto job = client().Await(id, absl::Seconds(20));
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(job->state(), v1::SUCCEEDED) << id;
    EXPECT_EQ(job->attempt_count(), 1) << id;
  }
  EXPECT_EQ(Arrivals().size(), ids.size());
}

// (e) GetEndpointStatus against what fake-lms saw: the sliding window's counts while closed, the
// open breaker (no request reaches the LMS until its next probe), the probes, and closed again.
TEST_F(ProtectionTest, EndpointStatusAgreesWithWhatTheLmsSaw) {
  constexpr int kMaxInFlight = 8;
  constexpr int kMinRequests = 10;
  constexpr absl::Duration kOpen = absl::Seconds(2);
  // A window longer than the test: no outcome ages out of it.
  ASSERT_NO_FATAL_FAILURE(StartWith(
      absl::StrCat("    max_in_flight: ", kMaxInFlight,
                   "\n    circuit_breaker: {min_requests: ", kMinRequests,
                   ", window: 60s, open_duration: 2s, max_open_duration: 2s, half_open_probes: "
                   "3}\n    slow_start: {window: 200ms}\n"),
      "policies:\n  - name: default\n"
      "    backoff: {initial: 20ms, max: 100ms, multiplier: 2, jitter: none}\n"
      "    limits: {max_attempts: 50}\n"));

  // Closed: 4 jobs fail once, 4 succeed at once (12 requests, 4 failures: ratio 1/3).
  std::vector<std::string> ids = SubmitMany("e-flaky-", 4, "script=503,200");
  const std::vector<std::string> ok = SubmitMany("e-ok-", 4, "script=200");
  ids.insert(ids.end(), ok.begin(), ok.end());
  ASSERT_TRUE(AwaitEffects(8, absl::Now() + absl::Seconds(20)));
  std::vector<Arrival> arrivals = Arrivals();
  auto count = [](const std::vector<Arrival>& v, int status) {
    return std::count_if(v.begin(), v.end(), [&](const Arrival& a) { return a.status == status; });
  };
  v1::EndpointStatus s = Status();
  EXPECT_EQ(s.circuit(), v1::CLOSED);
  EXPECT_TRUE(s.circuit_enabled());
  EXPECT_EQ(s.window_requests(), static_cast<int64_t>(arrivals.size()));
  EXPECT_EQ(s.window_failures(), count(arrivals, 503));
  EXPECT_EQ(s.window_throttles(), 0);
  EXPECT_EQ(s.in_flight(), 0);
  EXPECT_EQ(s.max_in_flight(), kMaxInFlight);
  EXPECT_EQ(s.allowed_in_flight(), kMaxInFlight);
  EXPECT_FALSE(s.has_next_probe_at());

  // Hard down: the breaker opens; until its next probe the LMS sees nothing.
  ASSERT_TRUE(lms_->StartOutage(absl::Seconds(60)).ok());
  const std::vector<std::string> down = SubmitMany("e-down-", 12, "script=200");
  ids.insert(ids.end(), down.begin(), down.end());
  absl::Time give_up = absl::Now() + absl::Seconds(10);
  do {
    s = Status();
    if (s.circuit() == v1::OPEN && s.in_flight() == 0 && s.running() == 0) break;
    absl::SleepFor(absl::Milliseconds(10));
  } while (absl::Now() < give_up);
  ASSERT_EQ(s.circuit(), v1::OPEN) << ServerLog();
  ASSERT_EQ(s.in_flight(), 0);
  ASSERT_TRUE(s.has_next_probe_at());
  const absl::Time opened = FromProto(s.circuit_changed_at());
  const absl::Time next_probe = FromProto(s.next_probe_at());
  EXPECT_EQ(next_probe - opened, kOpen);
  EXPECT_EQ(s.window_requests(), 0) << "the window starts anew at each transition";
  // Each of the 20 jobs is held by the breaker or in its backoff, none running.
  int64_t waiting = 0, circuit_open = 0;
  for (const auto& w : s.waiting()) {
    waiting += w.count();
    if (w.reason() == v1::CIRCUIT_OPEN) circuit_open = w.count();
  }
  EXPECT_EQ(waiting, 12) << s.DebugString();
  EXPECT_GE(circuit_open, 1) << s.DebugString();
  EXPECT_EQ(s.running(), 0);
  auto held = client().Get(down.back());
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->wait().reason(), v1::CIRCUIT_OPEN) << held->DebugString();
  EXPECT_EQ(FromProto(held->wait().until()), next_probe);
  // The breaker opened at the failure that made the window's ratio reach 1/2 with at least
  // min_requests outcomes: after 4 more failures (8 of 16); the rest were already in flight.
  arrivals = Arrivals();
  const int64_t outage_answers =
      std::count_if(arrivals.begin(), arrivals.end(), [](const Arrival& a) { return a.outage; });
  EXPECT_GE(outage_answers, 4);
  EXPECT_LE(outage_answers, 4 + kMaxInFlight - 1);
  const size_t seen_when_open = arrivals.size();
  absl::SleepFor(
      std::max(next_probe - absl::Now() - absl::Milliseconds(300), absl::ZeroDuration()));
  EXPECT_EQ(Arrivals().size(), seen_when_open) << "a request while the breaker was open";

  // The LMS is back: at the next probe time half_open_probes probes pass, succeed, and close it.
  ASSERT_TRUE(lms_->EndOutage().ok());
  for (const std::string& id : ids) {
    auto job = client().Await(id, absl::Seconds(20));
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(job->state(), v1::SUCCEEDED) << id;
  }
  arrivals = Arrivals();
  s = Status();
  EXPECT_EQ(s.circuit(), v1::CLOSED) << s.DebugString();
  EXPECT_FALSE(s.has_next_probe_at());
  EXPECT_GE(FromProto(s.circuit_changed_at()), next_probe);
  // Since the close: every request the LMS answered after the outage but the 3 probes (the
  // window starts anew when it closes), none failed.
  const int64_t after_outage = std::count_if(arrivals.begin() + seen_when_open, arrivals.end(),
                                             [](const Arrival& a) { return !a.outage; });
  EXPECT_EQ(s.window_requests(), after_outage - 3) << s.DebugString();
  EXPECT_EQ(s.window_failures(), 0);
  EXPECT_EQ(s.in_flight(), 0);
  EXPECT_TRUE(s.waiting().empty()) << s.DebugString();
}

// Canvas's throttle (fake-lms's Canvas mode: its documentation and its middleware), time-scaled:
// 400 grade updates through one token, each costing 3 units, the bucket (high-water mark 600,
// up-front cost 50) leaking 400 units a second, so the bucket lets them through in
// (400 x 3 - 600) / 400 = 1.5 s at best. Canvas sends no Retry-After and no reset; the endpoint
// paces itself from X-Rate-Limit-Remaining. Issue 9's target: at most 5% of the requests
// throttled, none dead-lettered (2 attempts each: throttles do not spend them), done within
// 1.5 x the bound (here + 1 s for a loaded 2-core machine), at the default 64 in flight. The
// endpoint names `preset: canvas`: the 403 rule, X-Rate-Limit-Remaining and X-Request-Cost, and
// one attempt in flight until the first answer has told how full the bucket is (a first burst of
// 64 would have spent it on up-front costs: 52 throttles).
TEST_F(ProtectionTest, CanvasPacingKeepsThrottlesRareAndFinishesNearTheBucketsBound) {
  ASSERT_TRUE(
      lms_->StartCanvas("", "high_water=600&maximum=800&up_front=50&cost=3&outflow=400").ok());
  StartWith("    policy: canvas\n    preset: canvas\n",
            "policies:\n  - name: canvas\n    limits: {max_attempts: 2}\n"
            "    throttle_backoff: {initial: 100ms, max: 1s}\n");
  constexpr int kJobs = 400;
  const ModeRun run = RunThroughTheMode("canvas-", kJobs, "script=200&latency_ms=10");
  const double bound = (kJobs * 3.0 - 600) / 400;  // 1.5 s
  EXPECT_EQ(run.effects, kJobs);
  EXPECT_LE(run.throttled, 0.05 * run.attempts);
  EXPECT_LE(run.seconds, 1.5 * bound + 1.0);
  const v1::EndpointStatus status = Status();
  EXPECT_TRUE(status.pacing_active());
  EXPECT_TRUE(status.has_quota_remaining());
}

// D2L Brightspace's credits (fake-lms's D2L mode: its knowledge-base articles 1195 and 1191),
// time-scaled: 200 credits a 1 s window, 10 a request, so 20 requests a window. Every answer but a
// 429 carries X-Rate-Limit-Remaining, X-Rate-Limit-Reset (seconds) and X-Request-Cost; the
// endpoint's `preset: d2l` names those headers, and pacing spreads the credits left below the
// low-water mark until the reset and waits for it when none are left, so the credits are not
// overrun: at most a few 429s, and every job succeeds with 2 attempts.
TEST_F(ProtectionTest, D2lCreditsArePacedUntilTheAnnouncedResetAndNeverOverrun) {
  ASSERT_TRUE(lms_->Post("/__d2l?limit=200&cost=10&window_ms=1000").ok());
  StartWith("    max_in_flight: 16\n    policy: d2l\n    preset: d2l\n",
            "policies:\n  - name: d2l\n    limits: {max_attempts: 2}\n");
  const ModeRun run = RunThroughTheMode("d2l-", 100, "script=200&latency_ms=10");
  EXPECT_EQ(run.effects, 100);
  EXPECT_LE(run.throttled, 3);
  EXPECT_GE(run.seconds, 3.0) << "more than the windows allow (5 windows: at least 4 turns)";
  EXPECT_LE(run.seconds, 12.0);
}

// Clever's fixed window (fake-lms's Clever mode: dev.clever.com "Rate Limiting"), time-scaled:
// 20 requests a 1 s window. Only a throttled answer says anything: 429 with X-RateLimit-Reset, a
// unix time, which `preset: clever` reads. The endpoint pauses until that reset and resumes under
// slow start, so what runs into the exhausted window is what was on the wire when it ran dry, not
// the backlog; the throttles spend no attempts (2 each, all succeed).
TEST_F(ProtectionTest, CleverWindowsPauseTheEndpointUntilTheAnnouncedReset) {
  ASSERT_TRUE(lms_->Post("/__clever?limit=20&window_ms=1000").ok());
  StartWith("    max_in_flight: 16\n    policy: clever\n    preset: clever\n",
            "policies:\n  - name: clever\n    limits: {max_attempts: 2}\n");
  const ModeRun run = RunThroughTheMode("clever-", 100, "script=200&latency_ms=10");
  EXPECT_EQ(run.effects, 100);
  // At most what was on the wire when each window ran dry (16 at once; at most 6 windows).
  EXPECT_LE(run.throttled, 16 * 6);
  EXPECT_LE(run.throttled * 4, run.attempts) << "no more than a quarter of the requests throttled";
  EXPECT_GE(run.seconds, 3.0) << "more than the windows allow (5 windows: at least 4 turns)";
  EXPECT_LE(run.seconds, 15.0);
}

// Google Classroom's quota (fake-lms's Google Classroom mode: developers.google.com/classroom/
// limits), time-scaled: 20 requests per user in any 1 s (a moving window). Over it, 429
// RESOURCE_EXHAUSTED with no time named and no quota header, to be retried "preferably using
// exponential backoff": with `preset: google-classroom` the endpoint waits out its throttle
// backoff (50 ms, 100 ms, ... here), which rises while the throttles go on, and the throttles
// spend no attempts (2 each, all succeed).
TEST_F(ProtectionTest, GoogleClassroomQuotaBacksTheEndpointOffExponentially) {
  ASSERT_TRUE(lms_->Post("/__google-classroom?limit=20&window_ms=1000").ok());
  StartWith("    max_in_flight: 16\n    policy: google\n    preset: google-classroom\n",
            "policies:\n  - name: google\n    limits: {max_attempts: 2}\n"
            "    throttle_backoff: {initial: 50ms, max: 2s, jitter: none}\n");
  const ModeRun run = RunThroughTheMode("google-", 100, "script=200&latency_ms=10");
  EXPECT_EQ(run.effects, 100);
  EXPECT_LE(run.throttled * 2, run.attempts) << "no more than half the requests throttled";
  EXPECT_GE(run.seconds, 3.0) << "more than the quota allows (100 in 20 per moving second)";
  EXPECT_LE(run.seconds, 20.0);
}

// Moodle's web service errors (fake-lms's Moodle mode: webservice/rest/locallib.php answers an
// exception with HTTP 200 and a JSON error): with `preset: moodle` a 200 carrying a refusal
// (invalidtoken) ends FAILED at its first attempt instead of SUCCEEDED, and a site in maintenance
// or a database that briefly refused (dmlwriteexception, sitemaintenance) is retried until the
// call succeeds.
TEST_F(ProtectionTest, MoodleExceptionsIn200sFailAtOnceUnlessTheirCodeIsTransient) {
  ASSERT_TRUE(lms_->Post("/__moodle?prefix=/api/v1/").ok());
  StartWith("    max_in_flight: 16\n    policy: moodle\n    preset: moodle\n",
            "policies:\n  - name: moodle\n    limits: {max_attempts: 4}\n"
            "    backoff: {initial: 10ms, max: 50ms, multiplier: 2, jitter: none}\n");
  constexpr int kEach = 20;
  const absl::Time start = absl::Now();
  SubmitMany("refused-", kEach, "script=invalidtoken");
  SubmitMany("transient-", kEach, "script=dmlwriteexception,sitemaintenance,200");
  ASSERT_TRUE(AwaitNoActiveJob(start + absl::Seconds(30))) << ServerLog();
  int max_attempts = 0;
  std::map<int, int> by_state = CountByState(&max_attempts);
  auto totals = lms_->Totals();
  ASSERT_TRUE(totals.ok()) << totals.status();
  const int attempts = (*totals)["attempts"];
  std::cout << "moodle: " << by_state[v1::FAILED] << " FAILED, " << by_state[v1::SUCCEEDED]
            << " SUCCEEDED, " << by_state[v1::EXHAUSTED] << " EXHAUSTED; " << attempts
            << " requests, at most " << max_attempts << " attempts a job\n";
  EXPECT_EQ(by_state[v1::FAILED], kEach) << "a refusal in a 200 is permanent";
  EXPECT_EQ(by_state[v1::SUCCEEDED], kEach) << "maintenance and database errors are retried";
  EXPECT_EQ(by_state[v1::EXHAUSTED], 0);
  EXPECT_EQ(attempts, kEach * 1 + kEach * 3) << "1 attempt each refused, 3 each transient";
  EXPECT_EQ(max_attempts, 3);
  EXPECT_EQ((*totals)["effects"], kEach);
}

// Blackboard's quota per application (fake-lms's Blackboard mode: 10,000 calls a day by
// default), time-scaled: 50 requests a 2 s period. Every answer carries X-Rate-Limit-Limit,
// -Remaining and -Reset (a unix time), which `preset: blackboard` reads: the endpoint paces its
// starts on the remaining quota, and jobs beyond the quota wait for the announced reset instead
// of being dead-lettered (throttles spend no attempts).
TEST_F(ProtectionTest, BlackboardJobsBeyondTheQuotaWaitForTheResetAndNoneIsDeadLettered) {
  ASSERT_TRUE(lms_->Post("/__blackboard?limit=50&window_ms=2000").ok());
  StartWith("    max_in_flight: 16\n    policy: blackboard\n    preset: blackboard\n",
            "policies:\n  - name: blackboard\n    limits: {max_attempts: 2}\n");
  constexpr int kJobs = 120;  // 2.4 periods' quota
  const ModeRun run = RunThroughTheMode("blackboard-", kJobs, "script=200&latency_ms=10");
  EXPECT_EQ(run.effects, kJobs);
  // Into an exhausted quota goes at most what was on the wire when it ran dry (16 at once; the
  // jobs span at most 4 periods).
  EXPECT_LE(run.throttled, 16 * 4);
  EXPECT_EQ(run.attempts, kJobs + run.throttled) << "every request but the throttled succeeded";
  EXPECT_GE(run.seconds, 2.0) << "more than the quota allows (3 periods: at least 1 full one)";
  EXPECT_LE(run.seconds, 15.0);
  ASSERT_TRUE(AwaitNoActiveJob(absl::Now() + absl::Seconds(10)));
  std::map<int, int> by_state = CountByState();
  EXPECT_EQ(by_state[v1::SUCCEEDED], kJobs) << "no job dead-lettered by the quota";
  EXPECT_EQ(by_state[v1::EXHAUSTED] + by_state[v1::FAILED], 0);
}

// Blackboard's quota as a budget (docs/presets.md): the LMS counts 50 a window, the budget half
// of that a fixed period of the same length, so however the two windows are aligned any LMS
// window spans at most two budget periods and the quota is never overrun (pacing off, to show
// the budget alone does it). Jobs beyond it wait QUOTA_EXHAUSTED, spending no attempt.
TEST_F(ProtectionTest, ABlackboardQuotaBudgetKeepsEveryRequestInsideTheQuota) {
  ASSERT_TRUE(lms_->Post("/__blackboard?limit=50&window_ms=2000").ok());
  StartWith(
      "    max_in_flight: 16\n    preset: blackboard\n    pacing: {enabled: false}\n"
      "    budgets: [blackboard-app]\n",
      "budgets:\n  - name: blackboard-app\n    quota: {limit: 25, period: 2s}\n");
  constexpr int kJobs = 60;
  const absl::Time start = absl::Now();
  const std::vector<std::string> ids = SubmitMany("bb-budget-", kJobs, "script=200&latency_ms=5");
  // While the first period's 25 are spent, the rest wait for the next one.
  absl::SleepFor(absl::Milliseconds(300));
  int exhausted = 0;
  for (const std::string& id : ids) {
    auto job = client().Get(id);
    ASSERT_TRUE(job.ok()) << job.status();
    if (job->wait().reason() == v1::QUOTA_EXHAUSTED) {
      ++exhausted;
      EXPECT_EQ(job->attempt_count(), 0) << "a quota wait spends no attempt";
      EXPECT_TRUE(job->wait().has_until());
    }
  }
  EXPECT_GT(exhausted, 0) << "jobs beyond the period's quota wait QUOTA_EXHAUSTED";
  ASSERT_TRUE(AwaitEffects(kJobs, start + absl::Seconds(30))) << ServerLog();
  auto totals = lms_->Totals();
  ASSERT_TRUE(totals.ok()) << totals.status();
  std::cout << kJobs << " jobs through a 25-per-2s budget against Blackboard's 50 per 2s: "
            << (*totals)["throttle_answers"] << " throttled of " << (*totals)["attempts"]
            << " requests, " << exhausted << " seen waiting QUOTA_EXHAUSTED, "
            << absl::ToDoubleSeconds(absl::Now() - start) << " s\n";
  EXPECT_EQ((*totals)["throttle_answers"], 0);
  EXPECT_EQ((*totals)["attempts"], kJobs);
  const v1::EndpointStatus s = Status();
  ASSERT_EQ(s.budgets_size(), 1);
  EXPECT_EQ(s.budgets(0).quota_limit(), 25);
  EXPECT_TRUE(s.budgets(0).has_period_end());
}

// --- Budgets and priorities (issue 9 items 5 and 6), seen from the LMS's side ---

// Attempts that were on the wire at once at the upstream, at most, from its arrival log.
int MostAtOnce(const std::vector<Arrival>& arrivals) {
  std::vector<std::pair<double, int>> edges;
  for (const Arrival& a : arrivals) {
    edges.emplace_back(a.at_ms, +1);
    edges.emplace_back(a.done_ms.value_or(a.at_ms), -1);
  }
  std::sort(edges.begin(), edges.end());  // an end before a start at the same instant
  int now = 0, most = 0;
  for (const auto& [at, delta] : edges) most = std::max(most, now += delta);
  return most;
}

TEST_F(ProtectionTest, ABudgetSharedByThreeEndpointsHoldsTheirSumAtTheLms) {
  const std::string others =
      absl::StrCat("  - name: lms-2\n    base_url: http://127.0.0.1:", lms_->port(),
                   "\n    allowed_path_prefixes: [/api/v1/]\n    budgets: [app]\n",
                   "  - name: lms-3\n    base_url: http://127.0.0.1:", lms_->port(),
                   "\n    allowed_path_prefixes: [/api/v1/]\n    budgets: [app]\n");
  StartWith(absl::StrCat("    budgets: [app]\n", others),
            "budgets:\n  - name: app\n    max_in_flight: 4\n");
  constexpr int kJobs = 90;
  std::vector<v1::SyncRequest> batch;
  for (int i = 0; i < kJobs; ++i) {
    v1::SyncRequest r = Job(absl::StrCat("shared-", i), "200");
    r.set_endpoint(i % 3 == 0 ? "lms" : i % 3 == 1 ? "lms-2" : "lms-3");
    r.set_query("script=200&latency_ms=30");
    batch.push_back(std::move(r));
  }
  auto res = client().SubmitBatch(batch);
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_TRUE(AwaitEffects(kJobs, absl::Now() + absl::Seconds(30))) << ServerLog();
  const std::vector<Arrival> arrivals = Arrivals();
  const int most = MostAtOnce(arrivals);
  std::cout << kJobs << " jobs on 3 endpoints (64 in flight each) sharing a budget of 4: at most "
            << most << " at once at the LMS, " << arrivals.size() << " requests\n";
  EXPECT_LE(most, 4);
  EXPECT_GE(most, 3) << "the budget, not something else, should be the limit";
  EXPECT_EQ(arrivals.size(), static_cast<size_t>(kJobs));
  const v1::EndpointStatus s = Status();
  ASSERT_EQ(s.budgets_size(), 1);
  EXPECT_EQ(s.budgets(0).name(), "app");
  EXPECT_EQ(s.budgets(0).max_in_flight(), 4);
}

TEST_F(ProtectionTest, GradesSubmittedBehindABackfillStartBeforeItAndEachDistrictTakesItsTurn) {
  StartWith("    max_in_flight: 1\n    fairness_label: district\n",
            "policies:\n  - name: default\n  - name: telemetry\n    priority: low\n");
  // A low-priority backfill of district d1 queued first, then three grades (high) and three
  // normal jobs of another district.
  std::vector<v1::SyncRequest> batch;
  for (int i = 0; i < 40; ++i) {
    v1::SyncRequest r = Job(absl::StrCat("backfill-", i), "200");
    r.set_query("script=200&latency_ms=20");
    r.set_policy("telemetry");
    (*r.mutable_labels())["district"] = "d1";
    batch.push_back(std::move(r));
  }
  auto backfill = client().SubmitBatch(batch);
  ASSERT_TRUE(backfill.ok()) << backfill.status();
  batch.clear();
  for (int i = 0; i < 3; ++i) {
    v1::SyncRequest grade = Job(absl::StrCat("grade-", i), "200");
    grade.set_query("script=200&latency_ms=20");
    grade.set_priority(v1::HIGH);
    (*grade.mutable_labels())["district"] = "d1";
    batch.push_back(grade);
    v1::SyncRequest other = Job(absl::StrCat("d2-", i), "200");
    other.set_query("script=200&latency_ms=20");
    (*other.mutable_labels())["district"] = "d2";
    batch.push_back(other);
  }
  auto urgent = client().SubmitBatch(batch);
  ASSERT_TRUE(urgent.ok()) << urgent.status();
  ASSERT_TRUE(AwaitEffects(46, absl::Now() + absl::Seconds(30))) << ServerLog();

  auto started = [&](const std::string& id) {
    auto job = client().Get(id);
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok() || job->attempts_size() == 0) return absl::InfiniteFuture();
    return FromProto(job->attempts(0).started_at());
  };
  std::vector<absl::Time> backfill_starts;
  for (const auto& item : backfill->results())
    backfill_starts.push_back(started(item.result().job_id()));
  std::sort(backfill_starts.begin(), backfill_starts.end());
  absl::Time last_urgent = absl::InfinitePast();
  for (const auto& item : urgent->results()) {
    last_urgent = std::max(last_urgent, started(item.result().job_id()));
  }
  // One at a time: the backfill's first job may be on the wire when the others arrive; every
  // grade and normal job then goes before the rest of it.
  const auto before = std::count_if(backfill_starts.begin(), backfill_starts.end(),
                                    [&](absl::Time t) { return t < last_urgent; });
  std::cout << "backfill jobs started before the last of 6 higher-priority jobs: " << before
            << " of 40\n";
  EXPECT_LE(before, 2);
}

}  // namespace
}  // namespace rebound::testing
