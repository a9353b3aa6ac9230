// fake-lms, black-box: the real binary, real HTTP requests (libcurl), its stats JSON.
#include <curl/curl.h>
#include <dirent.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/fake_lms/fake_lms_process.h"

namespace rebound::fakelms {
namespace {

const ::testing::Environment* const kCurlEnvironment =
    ::testing::AddGlobalTestEnvironment(new CurlGlobalEnvironment);

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class FakeLmsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<FakeLmsProcess>> lms = FakeLmsProcess::Start();
    ASSERT_TRUE(lms.ok()) << lms.status();
    lms_ = *std::move(lms);
  }

  // GET base_url + path_and_query with "Idempotency-Key: key".
  HttpReply Get(const std::string& path_and_query, const std::string& key,
                absl::Duration timeout = absl::Seconds(10)) {
    return HttpFetch("GET", lms_->base_url() + path_and_query,
                     {absl::StrCat("Idempotency-Key: ", key)}, "", timeout);
  }

  nlohmann::json KeyStats(const std::string& key) {
    absl::StatusOr<nlohmann::json> stats = lms_->Stats(key);
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? *stats : nlohmann::json();
  }

  int OpenFds() {
    int n = 0;
    DIR* dir = opendir(absl::StrCat("/proc/", lms_->pid(), "/fd").c_str());
    if (dir == nullptr) return -1;
    while (readdir(dir) != nullptr) ++n;
    closedir(dir);
    return n;
  }

  std::unique_ptr<FakeLmsProcess> lms_;
};

TEST_F(FakeLmsTest, HealthAnswers200) {
  const HttpReply reply = HttpFetch("GET", lms_->base_url() + "/__health");
  ASSERT_EQ(reply.code, CURLE_OK);
  EXPECT_EQ(reply.status, 200);
}

TEST_F(FakeLmsTest, ScriptStepsAreUsedInOrderAndTheLastStepRepeats) {
  const std::string path = "/api/v1/courses/1/grades?script=503,429,500";
  EXPECT_EQ(Get(path, "k").status, 503);
  EXPECT_EQ(Get(path, "k").status, 429);
  EXPECT_EQ(Get(path, "k").status, 500);
  EXPECT_EQ(Get(path, "k").status, 500);
  const nlohmann::json stats = KeyStats("k");
  EXPECT_EQ(stats["attempts"], 4);
  EXPECT_EQ(stats["effects"], 0);
  EXPECT_THAT(stats["statuses"].get<std::vector<int>>(), ElementsAre(503, 429, 500, 500));
}

TEST_F(FakeLmsTest, DefaultScriptIs200WithJsonBody) {
  const HttpReply reply = Get("/x", "plain");
  ASSERT_EQ(reply.code, CURLE_OK);
  EXPECT_EQ(reply.status, 200);
  const nlohmann::json body = nlohmann::json::parse(reply.body);
  EXPECT_EQ(body["ok"], true);
  EXPECT_EQ(body["key"], "plain");
  EXPECT_EQ(body["attempt"], 1);
}

TEST_F(FakeLmsTest, KeysAreCountedSeparately) {
  EXPECT_EQ(Get("/x?script=503,200", "a").status, 503);
  EXPECT_EQ(Get("/x?script=503,200", "b").status, 503);
  EXPECT_EQ(Get("/x?script=503,200", "a").status, 200);
}

TEST_F(FakeLmsTest, RetryAfterDeltaSeconds) {
  const HttpReply reply = Get("/x?script=503:ra=7", "ra");
  EXPECT_EQ(reply.status, 503);
  EXPECT_EQ(reply.Header("retry-after"), "7");
}

TEST_F(FakeLmsTest, RetryAfterHttpDateIsAtLeastTheDelayAhead) {
  const absl::Time before = absl::Now();
  const HttpReply reply = Get("/x?script=429:rad=30", "rad");
  EXPECT_EQ(reply.status, 429);
  const std::string date = reply.Header("retry-after");
  EXPECT_THAT(date, HasSubstr(" GMT"));
  const time_t parsed = curl_getdate(date.c_str(), nullptr);
  ASSERT_GT(parsed, 0) << date;
  EXPECT_GE(absl::FromTimeT(parsed), before + absl::Seconds(29));
  EXPECT_LE(absl::FromTimeT(parsed), absl::Now() + absl::Seconds(31));
}

TEST_F(FakeLmsTest, MsOptionDelaysTheAnswer) {
  const HttpReply reply = Get("/x?script=200:ms=150", "slow");
  EXPECT_EQ(reply.status, 200);
  EXPECT_GE(reply.elapsed, absl::Milliseconds(150));
}

TEST_F(FakeLmsTest, LatencyParameterDelaysEveryStep) {
  const HttpReply reply = Get("/x?script=503:ms=50&latency_ms=100", "latency");
  EXPECT_EQ(reply.status, 503);
  EXPECT_GE(reply.elapsed, absl::Milliseconds(150));
}

TEST_F(FakeLmsTest, DelayedAnswerDoesNotBlockOtherRequests) {
  HttpReply slow;
  std::thread slow_client([&] { slow = Get("/x?script=200:ms=3000", "slow"); });
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (!lms_->Stats("slow").ok() && absl::Now() < give_up) {  // until it has arrived
    absl::SleepFor(absl::Milliseconds(5));
  }
  const HttpReply fast = Get("/x", "fast");
  slow_client.join();
  EXPECT_EQ(fast.code, CURLE_OK) << curl_easy_strerror(fast.code);
  EXPECT_EQ(fast.status, 200);
  EXPECT_LT(fast.elapsed, absl::Seconds(2));
  EXPECT_EQ(slow.code, CURLE_OK) << curl_easy_strerror(slow.code);
  EXPECT_EQ(slow.status, 200);
  EXPECT_GE(slow.elapsed, absl::Seconds(3));
}

TEST_F(FakeLmsTest, ResetClosesTheConnectionWithoutAnswer) {
  const HttpReply reply = Get("/x?script=reset", "reset");
  EXPECT_TRUE(reply.code == CURLE_GOT_NOTHING || reply.code == CURLE_RECV_ERROR)
      << curl_easy_strerror(reply.code);
  EXPECT_THAT(KeyStats("reset")["statuses"].get<std::vector<int>>(), ElementsAre(0));
}

TEST_F(FakeLmsTest, CutSendsPartOfAnAnswerThenCloses) {
  const HttpReply reply = Get("/x?script=cut", "cut");
  EXPECT_EQ(reply.code, CURLE_PARTIAL_FILE) << curl_easy_strerror(reply.code);
  EXPECT_EQ(reply.status, 500);
  const nlohmann::json stats = KeyStats("cut");
  EXPECT_EQ(stats["effects"], 0);
  EXPECT_THAT(stats["statuses"].get<std::vector<int>>(), ElementsAre(0));
}

TEST_F(FakeLmsTest, HangTimesOutOnTheClient) {
  const HttpReply reply = Get("/x?script=hang", "hang", absl::Milliseconds(300));
  EXPECT_EQ(reply.code, CURLE_OPERATION_TIMEDOUT);
  EXPECT_GE(reply.elapsed, absl::Milliseconds(250));  // curl's own clock may round
  EXPECT_LT(reply.elapsed, absl::Seconds(5));
}

TEST_F(FakeLmsTest, HungRequestIsDroppedWhenTheClientGoesAway) {
  const int baseline = OpenFds();  // no connection yet
  ASSERT_GT(baseline, 0);
  Get("/x?script=hang", "leak", absl::Milliseconds(100));
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (OpenFds() > baseline && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(OpenFds(), baseline);
  EXPECT_EQ(Get("/__health", "after").status, 200);
}

TEST_F(FakeLmsTest, FirstSuccessIsTheEffectAndRepeatsGetTheStoredAnswer) {
  const HttpReply first = Get("/x?script=200", "once");
  ASSERT_EQ(first.status, 200);
  // The script now says 500, but the key is applied: the stored answer comes back.
  const HttpReply second = Get("/x?script=500", "once");
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(second.body, first.body);
  EXPECT_EQ(second.Header("x-fake-repeat"), "true");
  const nlohmann::json stats = KeyStats("once");
  EXPECT_EQ(stats["attempts"], 2);
  EXPECT_EQ(stats["effects"], 1);
  EXPECT_EQ(stats["repeats"], 1);
}

TEST_F(FakeLmsTest, FailuresBeforeTheSuccessAreNotEffects) {
  const std::string path = "/x?script=503,502,201";
  EXPECT_EQ(Get(path, "k").status, 503);
  EXPECT_EQ(Get(path, "k").status, 502);
  EXPECT_EQ(Get(path, "k").status, 201);
  EXPECT_EQ(Get(path, "k").status, 201);
  const nlohmann::json stats = KeyStats("k");
  EXPECT_EQ(stats["effects"], 1);
  EXPECT_EQ(stats["repeats"], 1);
  EXPECT_THAT(stats["statuses"].get<std::vector<int>>(), ElementsAre(503, 502, 201, 201));
}

TEST_F(FakeLmsTest, BodyOptionIsPercentDecoded) {
  const HttpReply reply = Get("/x?script=403:body=Rate%20Limit%20Exceeded", "canvas");
  EXPECT_EQ(reply.status, 403);
  EXPECT_EQ(reply.body, "Rate Limit Exceeded");
}

TEST_F(FakeLmsTest, HeadersOverrideTheQuery) {
  const HttpReply reply =
      HttpFetch("POST", lms_->base_url() + "/x?script=200",
                {"Idempotency-Key: hdr", "X-Fake-Script: 422:body=no%2C%20thanks"}, "{}");
  EXPECT_EQ(reply.status, 422);
  EXPECT_EQ(reply.body, "no, thanks");
}

TEST_F(FakeLmsTest, LocationOptionKeepsColonsInTheUrl) {
  const HttpReply reply = Get("/x?script=302:loc=http://127.0.0.1:9/next:ra=1", "redirect");
  EXPECT_EQ(reply.status, 302);
  EXPECT_EQ(reply.Header("location"), "http://127.0.0.1:9/next");
  EXPECT_EQ(reply.Header("retry-after"), "1");
}

TEST_F(FakeLmsTest, BadScriptIsRejectedWith400) {
  const HttpReply reply = Get("/x?script=200,teapot", "bad");
  EXPECT_EQ(reply.status, 400);
  EXPECT_THAT(reply.body, HasSubstr("teapot"));
}

TEST_F(FakeLmsTest, EveryMethodIsAcceptedAndRecorded) {
  for (const std::string method : {"GET", "POST", "PUT", "PATCH", "DELETE"}) {
    const std::string key = "method-" + method;
    const HttpReply reply = HttpFetch(method, lms_->base_url() + "/grades/7?q=1",
                                      {"Idempotency-Key: " + key}, "twelve bytes");
    EXPECT_EQ(reply.status, 200) << method;
    const nlohmann::json stats = KeyStats(key);
    EXPECT_EQ(stats["last_method"], method);
    EXPECT_EQ(stats["last_path"], "/grades/7?q=1");
    EXPECT_EQ(stats["last_body_bytes"], 12) << method;
  }
}

TEST_F(FakeLmsTest, KeyFallsBackToXFakeKeyThenToPathAndQuery) {
  HttpFetch("GET", lms_->base_url() + "/a?b=c", {"X-Fake-Key: fallback"});
  HttpFetch("GET", lms_->base_url() + "/a?b=c");
  EXPECT_EQ(KeyStats("fallback")["attempts"], 1);
  EXPECT_EQ(KeyStats("/a?b=c")["attempts"], 1);
}

TEST_F(FakeLmsTest, StatsTellWhetherTheKeyHeaderCameEveryTime) {
  Get("/x?script=503,200", "steady");
  Get("/x?script=503,200", "steady");
  HttpFetch("GET", lms_->base_url() + "/x?script=503,200", {"Idempotency-Key: flaky"});
  HttpFetch("GET", lms_->base_url() + "/x?script=503,200", {"X-Fake-Key: flaky"});
  EXPECT_EQ(KeyStats("steady")["key_header_every_attempt"], true);
  EXPECT_EQ(KeyStats("flaky")["key_header_every_attempt"], false);
}

TEST_F(FakeLmsTest, StatsJsonHasTotalsKeysAndArrivalTimes) {
  Get("/x?script=500,200", "t");
  Get("/x?script=500,200", "t");
  Get("/x", "u");
  absl::StatusOr<nlohmann::json> all = lms_->AllStats();
  ASSERT_TRUE(all.ok()) << all.status();
  const nlohmann::json& totals = (*all)["totals"];
  EXPECT_EQ(totals["keys"], 2);
  EXPECT_EQ(totals["attempts"], 3);
  EXPECT_EQ(totals["effects"], 2);
  EXPECT_EQ(totals["repeats"], 0);
  EXPECT_GE(totals["requests"], 3);
  const std::vector<double> times = (*all)["keys"]["t"]["times_ms"].get<std::vector<double>>();
  ASSERT_EQ(times.size(), 2u);
  EXPECT_GT(times[0], 0.0);
  EXPECT_GT(times[1], times[0]);
  EXPECT_EQ((*all)["keys"]["u"]["attempts"], 1);

  absl::StatusOr<nlohmann::json> summary = lms_->Totals();
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ((*summary)["attempts"], 3);
  EXPECT_EQ(lms_->Stats("never-seen").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(FakeLmsTest, ConnectionsAreCounted) {
  HttpFetch("GET", lms_->base_url() + "/x");
  HttpFetch("GET", lms_->base_url() + "/x");
  absl::StatusOr<nlohmann::json> totals = lms_->Totals();
  ASSERT_TRUE(totals.ok()) << totals.status();
  // Two requests, one Totals() call: each HttpFetch opens its own connection.
  EXPECT_EQ((*totals)["connections"], 3);
}

TEST_F(FakeLmsTest, ResetEndpointForgetsEverything) {
  Get("/x", "gone");
  ASSERT_TRUE(lms_->Reset().ok());
  EXPECT_EQ(lms_->Stats("gone").status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<nlohmann::json> totals = lms_->Totals();
  ASSERT_TRUE(totals.ok()) << totals.status();
  EXPECT_EQ((*totals)["attempts"], 0);
  EXPECT_EQ((*totals)["keys"], 0);
  // And a key starts over at step 1 afterwards.
  EXPECT_EQ(Get("/x?script=503,200", "gone").status, 503);
}

// POST base_url + path_and_query, the JSON answer (null when not JSON).
nlohmann::json PostJson(const FakeLmsProcess& lms, const std::string& path_and_query,
                        long* status = nullptr) {
  const HttpReply reply = HttpFetch("POST", lms.base_url() + path_and_query);
  if (status != nullptr) *status = reply.status;
  return nlohmann::json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
}

nlohmann::json GetJsonOf(const FakeLmsProcess& lms, const std::string& path_and_query) {
  const HttpReply reply = HttpFetch("GET", lms.base_url() + path_and_query);
  EXPECT_EQ(reply.status, 200) << path_and_query << ": " << reply.body;
  return nlohmann::json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
}

TEST_F(FakeLmsTest, OutageAnswersEveryScriptedRequestWithoutEffectsUntilEnded) {
  ASSERT_EQ(Get("/x?script=200", "applied").status, 200);  // an effect before the outage
  ASSERT_TRUE(lms_->StartOutage(absl::Seconds(60)).ok());

  const HttpReply down = Get("/x?script=200", "fresh");
  EXPECT_EQ(down.status, 503);
  EXPECT_EQ(down.Header("retry-after"), "");
  EXPECT_EQ(nlohmann::json::parse(down.body)["outage"], true);
  // A key already applied gets no stored answer either: the LMS is down.
  const HttpReply repeat = Get("/x?script=200", "applied");
  EXPECT_EQ(repeat.status, 503);
  EXPECT_EQ(repeat.Header("x-fake-repeat"), "");
  EXPECT_EQ(Get("/__health", "h").status, 200);  // admin paths are not scripted

  const nlohmann::json fresh = KeyStats("fresh");
  EXPECT_EQ(fresh["attempts"], 1);
  EXPECT_EQ(fresh["effects"], 0);
  EXPECT_EQ(fresh["outage_answers"], 1);
  EXPECT_THAT(fresh["statuses"].get<std::vector<int>>(), ElementsAre(503));
  EXPECT_EQ(KeyStats("applied")["repeats"], 0);
  absl::StatusOr<nlohmann::json> totals = lms_->Totals();
  ASSERT_TRUE(totals.ok()) << totals.status();
  EXPECT_EQ((*totals)["outage_answers"], 2);
  EXPECT_EQ((*totals)["effects"], 1);

  ASSERT_TRUE(lms_->EndOutage().ok());
  EXPECT_EQ(Get("/x?script=200", "fresh").status, 200);
  EXPECT_EQ(KeyStats("fresh")["effects"], 1);
}

TEST_F(FakeLmsTest, OutageAnswersDoNotUseScriptSteps) {
  long status = 0;
  PostJson(*lms_, "/__outage?ms=60000&status=502", &status);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(Get("/x?script=429,201", "k").status, 502);
  EXPECT_EQ(Get("/x?script=429,201", "k").status, 502);
  PostJson(*lms_, "/__outage?ms=0", &status);
  EXPECT_EQ(Get("/x?script=429,201", "k").status, 429);  // step 1, not step 3
  EXPECT_EQ(Get("/x?script=429,201", "k").status, 201);
  EXPECT_THAT(KeyStats("k")["statuses"].get<std::vector<int>>(), ElementsAre(502, 502, 429, 201));
}

TEST_F(FakeLmsTest, OutageEndsByItselfAtItsTime) {
  long status = 0;
  PostJson(*lms_, "/__outage?ms=300", &status);
  ASSERT_EQ(status, 200);
  const absl::Time set = absl::Now();
  EXPECT_EQ(Get("/x", "a").status, 503);
  long last = 0;
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  for (int i = 0; absl::Now() < give_up; ++i) {
    last = Get("/x", absl::StrCat("poll-", i)).status;
    if (last == 200) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(last, 200);
  EXPECT_GE(absl::Now() - set, absl::Milliseconds(300));
}

TEST_F(FakeLmsTest, OutageCanBeScopedToAPathPrefixAndStartLater) {
  long status = 0;
  PostJson(*lms_, "/__outage?ms=60000&status=500&prefix=/e1", &status);
  ASSERT_EQ(status, 200);
  const nlohmann::json later = PostJson(*lms_, "/__outage?ms=1000&after_ms=60000&prefix=/e2");
  EXPECT_EQ(Get("/e1/api/x", "a").status, 500);
  EXPECT_EQ(Get("/e10/api/x", "b").status, 500);  // a plain string prefix, as documented
  EXPECT_EQ(Get("/e2/api/x", "c").status, 200);   // not yet
  EXPECT_EQ(Get("/e3/api/x", "d").status, 200);

  const nlohmann::json listed = GetJsonOf(*lms_, "/__outage");
  ASSERT_EQ(listed["outages"].size(), 2u) << listed.dump();
  for (const nlohmann::json& o : listed["outages"]) {
    if (o["prefix"] == "/e1") {
      EXPECT_EQ(o["status"], 500);
      EXPECT_EQ(o["active"], true);
    } else {
      EXPECT_EQ(o["prefix"], "/e2");
      EXPECT_EQ(o["active"], false);
      EXPECT_GE(o["from_ms"].get<double>(), listed["now_ms"].get<double>() + 59000);
    }
  }
  // Ending one prefix leaves the other.
  PostJson(*lms_, "/__outage?ms=0&prefix=/e1", &status);
  EXPECT_EQ(Get("/e1/api/x", "a").status, 200);
  EXPECT_EQ(GetJsonOf(*lms_, "/__outage")["outages"].size(), 1u);
}

TEST_F(FakeLmsTest, OutageRejectsBadParametersNamingThem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/__outage", "ms"},
      {"/__outage?ms=-1", "ms"},
      {"/__outage?ms=10&status=200", "status"},
      {"/__outage?ms=10&status=abc", "status"},
      {"/__outage?ms=10&after_ms=x", "after_ms"},
      {"/__outage?ms=10&prefix=e1", "prefix"}};
  for (const auto& [path, field] : cases) {
    long status = 0;
    const nlohmann::json body = PostJson(*lms_, path, &status);
    EXPECT_EQ(status, 400) << path;
    EXPECT_THAT(body.value("error", ""), HasSubstr(field)) << path;
  }
  EXPECT_EQ(HttpFetch("DELETE", lms_->base_url() + "/__outage").status, 405);
  EXPECT_EQ(Get("/x", "still-up").status, 200);
}

// Canvas's throttle as its docs and middleware describe it (tools/fake-lms/canvas.h): here a
// bucket of high-water mark 120 and maximum 160, up-front cost 50, cost 10, no outflow to speak
// of (0.001/s), so the arithmetic is exact to the printed digits.
TEST_F(FakeLmsTest, CanvasModeThrottlesByTheLeakyBucketWithItsHeadersAndNoRetryAfter) {
  ASSERT_TRUE(
      lms_->StartCanvas("/c/", "high_water=120&maximum=160&outflow=0.001&up_front=50&cost=10")
          .ok());
  // One at a time: 50 up front, then 10 stays; remaining 120 - 10 = 110, then 100, ...
  const HttpReply first = Get("/c/a", "k1");
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.Header("x-request-cost"), "10.0");
  EXPECT_EQ(first.Header("x-rate-limit-remaining").substr(0, 5), "110.0");
  // Three held at once (delayed answers): 10 + 3 x 50 = 160 >= 120 from the third on.
  std::vector<std::thread> held;
  std::vector<HttpReply> replies(3);
  for (int i = 0; i < 3; ++i) {
    held.emplace_back([&, i] { replies[i] = Get("/c/b?script=200:ms=400", absl::StrCat("h", i)); });
    absl::SleepFor(absl::Milliseconds(60));
  }
  for (std::thread& t : held) t.join();
  int throttled = 0;
  for (const HttpReply& r : replies) {
    if (r.status != 403) continue;
    ++throttled;
    EXPECT_EQ(r.body, "403 Forbidden (Rate Limit Exceeded)\n");
    EXPECT_EQ(r.Header("retry-after"), "");
    EXPECT_EQ(r.Header("x-request-cost"), "") << "Canvas sends no cost on a throttled answer";
    EXPECT_NE(r.Header("x-rate-limit-remaining"), "");
  }
  EXPECT_EQ(throttled, 1);
  // A throttled key uses no script step and is no effect: it goes on where it was.
  const nlohmann::json h2 = KeyStats("h2");
  EXPECT_EQ(h2["throttle_answers"], 1);
  EXPECT_EQ(h2["effects"], 0);
  // Other prefixes are not throttled, and another token has its own bucket.
  EXPECT_EQ(Get("/d/a", "k2").Header("x-request-cost"), "");
  const HttpReply other = HttpFetch("GET", lms_->base_url() + "/c/a",
                                    {"Idempotency-Key: k3", "Authorization: Bearer other"});
  EXPECT_EQ(other.Header("x-rate-limit-remaining").substr(0, 5), "110.0");
  absl::StatusOr<nlohmann::json> status = lms_->Canvas();
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_EQ((*status)["canvas"].size(), 1u);
  EXPECT_EQ((*status)["canvas"][0]["throttled"], 1);
  EXPECT_EQ((*status)["canvas"][0]["passed"], 4);
  EXPECT_EQ((*status)["canvas"][0]["buckets"].size(), 2u);
}

TEST_F(FakeLmsTest, CanvasModeLeaksAtItsOutflowAndRemainingGoesBelowZeroOverTheMark) {
  ASSERT_TRUE(
      lms_->StartCanvas("", "high_water=100&maximum=150&outflow=100&up_front=0&cost=140").ok());
  const HttpReply over = Get("/x", "k1");
  EXPECT_EQ(over.status, 200);
  const double remaining = std::stod(over.Header("x-rate-limit-remaining"));
  EXPECT_LT(remaining, -30.0);  // 100 - 140, less a few ms of leak
  EXPECT_GT(remaining, -40.5);
  EXPECT_EQ(Get("/x", "k2").status, 403);   // at or over the mark: throttled
  absl::SleepFor(absl::Milliseconds(600));  // 60 units leak away
  EXPECT_EQ(Get("/x", "k2").status, 200);
}

TEST_F(FakeLmsTest, CanvasModeRejectsBadParametersNamingThem) {
  for (const auto& [params, error] : std::vector<std::pair<std::string, std::string>>{
           {"outflow=-1", "outflow: want a non-negative number"},
           {"cost=lots", "cost: want a non-negative number"},
           {"high_water=900", "high_water: want 0 < high_water <= maximum"},
           {"prefix=c", "prefix: want a path starting with '/'"},
           {"off=2", "off: want 0 or 1"}}) {
    const HttpReply r = HttpFetch("POST", lms_->base_url() + "/__canvas?" + params);
    EXPECT_EQ(r.status, 400) << params;
    EXPECT_THAT(r.body, HasSubstr(error)) << params;
  }
  ASSERT_TRUE(lms_->StartCanvas("/c/").ok());
  EXPECT_EQ(HttpFetch("POST", lms_->base_url() + "/__canvas?prefix=/c/&off=1").status, 200);
  absl::StatusOr<nlohmann::json> status = lms_->Canvas();
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE((*status)["canvas"].empty());
}

// D2L's credits (tools/fake-lms/window.h): every answer but a 429 carries the remaining credits,
// the seconds until the reset and the cost; a 429 carries only Retry-After.
TEST_F(FakeLmsTest, D2lModeCountsCreditsPerWindowAndAnswers429WithRetryAfterOnly) {
  const HttpReply set =
      HttpFetch("POST", lms_->base_url() + "/__d2l?prefix=/d/&limit=30&cost=10&window_ms=60000");
  ASSERT_EQ(set.status, 200) << set.body;
  const HttpReply first = Get("/d/a", "k1");
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.Header("x-rate-limit-remaining"), "20");
  EXPECT_EQ(first.Header("x-request-cost"), "10");
  const int reset = std::stoi(first.Header("x-rate-limit-reset"));
  EXPECT_GE(reset, 1);
  EXPECT_LE(reset, 60);
  EXPECT_EQ(first.Header("retry-after"), "");
  EXPECT_EQ(Get("/d/a", "k2").Header("x-rate-limit-remaining"), "10");
  EXPECT_EQ(Get("/d/a", "k3").Header("x-rate-limit-remaining"), "0");
  const HttpReply over = Get("/d/a", "k4");
  EXPECT_EQ(over.status, 429);
  EXPECT_NE(over.Header("retry-after"), "");
  EXPECT_LE(std::stoi(over.Header("retry-after")), 60);
  EXPECT_EQ(over.Header("x-rate-limit-remaining"), "") << "D2L sends only Retry-After on a 429";
  EXPECT_EQ(over.Header("x-rate-limit-reset"), "");
  EXPECT_EQ(KeyStats("k4")["throttle_answers"], 1);
  EXPECT_EQ(KeyStats("k4")["effects"], 0);
  // Another token has its own bucket; other prefixes none.
  const HttpReply other = HttpFetch("GET", lms_->base_url() + "/d/a",
                                    {"Idempotency-Key: k5", "Authorization: Bearer app-2"});
  EXPECT_EQ(other.Header("x-rate-limit-remaining"), "20");
  EXPECT_EQ(Get("/e/a", "k6").Header("x-rate-limit-remaining"), "");
}

// Clever's fixed window (tools/fake-lms/window.h): a throttled request gets 429 and
// X-RateLimit-Reset, the unix time of the reset; other answers carry nothing of it.
TEST_F(FakeLmsTest, CleverModeAnswers429WithTheResetAsAUnixTimeAndResetsWithTheWindow) {
  const HttpReply set = HttpFetch("POST", lms_->base_url() + "/__clever?limit=2&window_ms=1000");
  ASSERT_EQ(set.status, 200) << set.body;
  // Start just after a window turned, so the three requests share one.
  absl::SleepFor(absl::Milliseconds(1000 - absl::ToUnixMillis(absl::Now()) % 1000 + 20));
  const HttpReply a = Get("/x", "k1");
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.Header("x-ratelimit-reset"), "");
  EXPECT_EQ(a.Header("x-ratelimit-remaining"), "");
  EXPECT_EQ(Get("/x", "k2").status, 200);
  const HttpReply over = Get("/x", "k3");
  ASSERT_EQ(over.status, 429);
  EXPECT_EQ(over.Header("retry-after"), "");
  const int64_t reset = std::stoll(over.Header("x-ratelimit-reset"));
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  EXPECT_GE(reset, now);
  EXPECT_LE(reset, now + 1);
  absl::SleepFor(absl::FromUnixSeconds(reset) - absl::Now() + absl::Milliseconds(20));
  EXPECT_EQ(Get("/x", "k3").status, 200);  // the window turned
  EXPECT_EQ(HttpFetch("POST", lms_->base_url() + "/__clever?window_ms=1500").status, 400);
  EXPECT_EQ(HttpFetch("POST", lms_->base_url() + "/__clever?limit=0").status, 400);
  absl::StatusOr<nlohmann::json> totals = lms_->Totals();
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ((*totals)["throttle_answers"], 1);
}

// Moodle's REST server (tools/fake-lms/moodle.h): under a /__moodle prefix a script step may be
// one of Moodle's error codes, answered HTTP 200 with Moodle's JSON error; numeric steps and
// paths outside the prefix stay as they are.
TEST_F(FakeLmsTest, MoodleModeAnswersItsErrorCodesWith200AndTheJsonException) {
  ASSERT_TRUE(lms_->Post("/__moodle?prefix=/m/").ok());
  const std::string script = "?script=dmlwriteexception,sitemaintenance,invalidtoken,200";
  const HttpReply write = Get("/m/webservice/rest/server.php" + script, "m1");
  EXPECT_EQ(write.status, 200);
  EXPECT_EQ(write.Header("content-type"), "application/json");
  EXPECT_EQ(write.body, R"({"exception":"dml_write_exception","errorcode":"dmlwriteexception",)"
                        R"("message":"Error writing to database"})");
  const HttpReply maintenance = Get("/m/webservice/rest/server.php" + script, "m1");
  EXPECT_EQ(maintenance.status, 200);
  EXPECT_THAT(maintenance.body, HasSubstr(R"("errorcode":"sitemaintenance")"));
  EXPECT_THAT(Get("/m/webservice/rest/server.php" + script, "m1").body,
              HasSubstr(R"("exception":"moodle_exception","errorcode":"invalidtoken")"));
  const HttpReply ok = Get("/m/webservice/rest/server.php" + script, "m1");
  EXPECT_EQ(ok.status, 200);
  EXPECT_THAT(ok.body, HasSubstr(R"("ok":true)"));
  // An error answer is a 200, but no effect: the effect is the success.
  EXPECT_EQ(KeyStats("m1")["effects"], 1);
  EXPECT_EQ(Get("/m/x?script=503", "m2").status, 503);
  // Outside the prefix, and codes Moodle does not send, are bad scripts.
  EXPECT_EQ(Get("/other?script=sitemaintenance", "m3").status, 400);
  EXPECT_EQ(Get("/m/x?script=sessionwaiterr", "m4").status, 400);
  EXPECT_EQ(HttpFetch("POST", lms_->base_url() + "/__moodle?prefix=m").status, 400);
  const HttpReply listing = HttpFetch("GET", lms_->base_url() + "/__moodle");
  EXPECT_THAT(listing.body, HasSubstr(R"("prefix":"/m/")"));
  ASSERT_TRUE(lms_->Post("/__moodle?prefix=/m/&off=1").ok());
  EXPECT_EQ(Get("/m/x?script=sitemaintenance", "m5").status, 400);
}

// Blackboard's daily quota (tools/fake-lms/window.h), time-scaled: a count per application
// (every token), each answer with X-Rate-Limit-Limit, -Remaining and -Reset (a unix time);
// over it, 429 with the same headers and no Retry-After.
TEST_F(FakeLmsTest, BlackboardModeCountsPerApplicationAndSendsItsThreeHeadersOnEveryAnswer) {
  ASSERT_TRUE(lms_->Post("/__blackboard?limit=2&window_ms=2000").ok());
  // Start just after a window turned, so the three requests share one.
  absl::SleepFor(absl::Milliseconds(2000 - absl::ToUnixMillis(absl::Now()) % 2000 + 20));
  const HttpReply a = HttpFetch("GET", lms_->base_url() + "/learn/api/public/v1/users",
                                {"Idempotency-Key: b1", "Authorization: Bearer one"});
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.Header("x-rate-limit-limit"), "2");
  EXPECT_EQ(a.Header("x-rate-limit-remaining"), "1");
  const HttpReply b = HttpFetch("GET", lms_->base_url() + "/learn/api/public/v1/users",
                                {"Idempotency-Key: b2", "Authorization: Bearer two"});
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(b.Header("x-rate-limit-remaining"), "0") << "one count for the application";
  const HttpReply over = Get("/x", "b3");
  ASSERT_EQ(over.status, 429);
  EXPECT_EQ(over.Header("retry-after"), "");
  EXPECT_EQ(over.Header("x-rate-limit-remaining"), "0");
  EXPECT_EQ(over.Header("x-rate-limit-limit"), "2");
  const int64_t reset = std::stoll(over.Header("x-rate-limit-reset"));
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  EXPECT_EQ(reset, std::stoll(a.Header("x-rate-limit-reset")));
  EXPECT_GE(reset, now);
  EXPECT_LE(reset, now + 2);
  absl::SleepFor(absl::FromUnixSeconds(reset) - absl::Now() + absl::Milliseconds(20));
  const HttpReply after = Get("/x", "b3");
  EXPECT_EQ(after.status, 200);  // the period turned
  EXPECT_EQ(after.Header("x-rate-limit-remaining"), "1");
  EXPECT_EQ(HttpFetch("POST", lms_->base_url() + "/__blackboard?limit=-1").status, 400);
  const HttpReply listing = HttpFetch("GET", lms_->base_url() + "/__blackboard");
  EXPECT_THAT(listing.body, HasSubstr(R"("style":"blackboard")"));
  absl::StatusOr<nlohmann::json> totals = lms_->Totals();
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ((*totals)["throttle_answers"], 1);
}

// Google Classroom's quota (tools/fake-lms/window.h): a moving window per user, a day's count
// per client; over it, 429 with Google's RESOURCE_EXHAUSTED JSON error and no quota header.
TEST_F(FakeLmsTest, GoogleClassroomModeIsAMovingWindowAnsweredWithResourceExhausted) {
  ASSERT_TRUE(lms_->Post("/__google-classroom?limit=2&window_ms=1000&day_limit=4").ok());
  EXPECT_EQ(Get("/x", "k1").status, 200);
  absl::SleepFor(absl::Milliseconds(600));
  const HttpReply second = Get("/x", "k2");
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(second.Header("retry-after"), "");
  const HttpReply over = Get("/x", "k3");
  ASSERT_EQ(over.status, 429);
  EXPECT_EQ(over.Header("retry-after"), "");
  EXPECT_EQ(over.Header("x-ratelimit-reset"), "");
  const nlohmann::json error = nlohmann::json::parse(over.body)["error"];
  EXPECT_EQ(error["code"], 429);
  EXPECT_EQ(error["status"], "RESOURCE_EXHAUSTED");
  // A moving window: the first request leaves it 1 s after it came, not at a minute's turn.
  absl::SleepFor(absl::Milliseconds(450));
  EXPECT_EQ(Get("/x", "k3").status, 200);
  EXPECT_EQ(Get("/x", "k4").status, 429);  // the second is still in the window
  // Another user has a window of its own, but the day's quota is the client's: 4 in all.
  const HttpReply other = HttpFetch("GET", lms_->base_url() + "/x",
                                    {"Idempotency-Key: k5", "Authorization: Bearer user-2"});
  EXPECT_EQ(other.status, 200);
  const HttpReply day_over = HttpFetch("GET", lms_->base_url() + "/x",
                                       {"Idempotency-Key: k6", "Authorization: Bearer user-3"});
  EXPECT_EQ(day_over.status, 429);
}

TEST_F(FakeLmsTest, ArrivalsListEveryScriptedRequestWithSegmentAndAnswerTime) {
  Get("/e1/api/a?script=201", "a");
  Get("/e2/api/b?script=200:ms=120", "b");
  Get("/__health", "admin");  // not listed
  long status = 0;
  PostJson(*lms_, "/__outage?ms=60000&prefix=/e1", &status);
  Get("/e1/api/c", "c");
  Get("/", "root");

  const nlohmann::json log = GetJsonOf(*lms_, "/__arrivals");
  EXPECT_EQ(log["fields"], nlohmann::json({"at_ms", "segment", "done_ms", "status", "outage"}));
  EXPECT_EQ(log["dropped"], 0);
  const nlohmann::json& rows = log["arrivals"];
  ASSERT_EQ(rows.size(), 4u) << log.dump();
  EXPECT_EQ(rows[0][1], "/e1");
  EXPECT_EQ(rows[0][3], 201);
  EXPECT_EQ(rows[0][4], 0);
  EXPECT_EQ(rows[1][1], "/e2");
  EXPECT_EQ(rows[1][3], 200);
  EXPECT_GE(rows[1][2].get<double>() - rows[1][0].get<double>(), 120.0);  // the delayed answer
  EXPECT_EQ(rows[2][1], "/e1");
  EXPECT_EQ(rows[2][3], 503);
  EXPECT_EQ(rows[2][4], 1);
  EXPECT_EQ(rows[3][1], "/");
  double previous = 0;
  for (const nlohmann::json& row : rows) {
    EXPECT_GT(row[0].get<double>(), previous);
    previous = row[0].get<double>();
    EXPECT_GE(row[2].get<double>(), row[0].get<double>());
    EXPECT_LE(row[2].get<double>(), log["now_ms"].get<double>());
  }

  // since_ms: from the third request on.
  const nlohmann::json since =
      GetJsonOf(*lms_, absl::StrCat("/__arrivals?since_ms=", rows[2][0].get<double>() - 0.0005));
  ASSERT_EQ(since["arrivals"].size(), 2u) << since.dump();
  EXPECT_EQ(since["arrivals"][0][1], "/e1");
  EXPECT_EQ(HttpFetch("GET", lms_->base_url() + "/__arrivals?since_ms=soon").status, 400);
}

TEST_F(FakeLmsTest, ProcessHelpersSetOutagesAndReadArrivals) {
  ASSERT_TRUE(lms_->StartOutage(absl::Seconds(60), 502, "/e7/").ok());
  EXPECT_EQ(Get("/e7/x", "a").status, 502);
  EXPECT_EQ(Get("/e8/x", "b").status, 200);
  ASSERT_TRUE(lms_->EndOutage("/e7/").ok());
  EXPECT_EQ(Get("/e7/x", "a").status, 200);
  EXPECT_FALSE(lms_->StartOutage(absl::Seconds(1), 200).ok());  // not an outage status
  absl::StatusOr<nlohmann::json> log = lms_->Arrivals();
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_EQ((*log)["arrivals"].size(), 3u);
  EXPECT_EQ((*log)["arrivals"][0][4], 1);
  absl::StatusOr<nlohmann::json> later = lms_->Arrivals((*log)["now_ms"].get<double>());
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ((*later)["arrivals"].size(), 0u);
}

TEST_F(FakeLmsTest, ArrivalOfAHungRequestEndsWhenTheClientGoesAway) {
  Get("/e5/x?script=hang", "hang", absl::Milliseconds(200));
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  nlohmann::json rows;
  while (absl::Now() < give_up) {
    rows = GetJsonOf(*lms_, "/__arrivals")["arrivals"];
    if (rows.size() == 1 && !rows[0][2].is_null()) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][3], 0);
  ASSERT_FALSE(rows[0][2].is_null());
  EXPECT_GE(rows[0][2].get<double>() - rows[0][0].get<double>(), 150.0);
}

TEST_F(FakeLmsTest, ArrivalOfAWaitingRequestHasNoAnswerTimeYet) {
  HttpReply slow;
  std::thread client([&] { slow = Get("/e6/x?script=200:ms=1500", "slow"); });
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  nlohmann::json rows;
  while (absl::Now() < give_up) {
    rows = GetJsonOf(*lms_, "/__arrivals")["arrivals"];
    if (!rows.empty()) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_TRUE(rows[0][2].is_null()) << rows.dump();
  client.join();
  EXPECT_EQ(slow.status, 200);
  EXPECT_FALSE(GetJsonOf(*lms_, "/__arrivals")["arrivals"][0][2].is_null());
}

TEST_F(FakeLmsTest, ResetForgetsArrivalsAndOutages) {
  long status = 0;
  PostJson(*lms_, "/__outage?ms=60000", &status);
  Get("/x", "a");
  ASSERT_TRUE(lms_->Reset().ok());
  EXPECT_EQ(GetJsonOf(*lms_, "/__arrivals")["arrivals"].size(), 0u);
  EXPECT_EQ(GetJsonOf(*lms_, "/__outage")["outages"].size(), 0u);
  EXPECT_EQ(Get("/x", "a").status, 200);
}

TEST_F(FakeLmsTest, ExitsZeroOnSigterm) {
  absl::StatusOr<int> exit_code = lms_->Stop();
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
}

TEST_F(FakeLmsTest, ExitsZeroOnSigtermWithRequestsStillWaiting) {
  // A hung request and a delayed one are in progress when the signal comes.
  std::unique_ptr<CURLM, decltype(&curl_multi_cleanup)> multi(curl_multi_init(),
                                                              &curl_multi_cleanup);
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> hang(curl_easy_init(), &curl_easy_cleanup);
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> slow(curl_easy_init(), &curl_easy_cleanup);
  const std::string hang_url = lms_->base_url() + "/x?script=hang";
  const std::string slow_url = lms_->base_url() + "/y?script=200:ms=60000";
  curl_easy_setopt(hang.get(), CURLOPT_URL, hang_url.c_str());
  curl_easy_setopt(slow.get(), CURLOPT_URL, slow_url.c_str());
  curl_multi_add_handle(multi.get(), hang.get());
  curl_multi_add_handle(multi.get(), slow.get());
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (absl::Now() < give_up) {
    int running = 0;
    curl_multi_perform(multi.get(), &running);
    curl_multi_poll(multi.get(), nullptr, 0, 10, nullptr);
    absl::StatusOr<nlohmann::json> totals = lms_->Totals();
    if (totals.ok() && (*totals)["attempts"] == 2) break;
  }
  absl::StatusOr<int> exit_code = lms_->Stop();
  curl_multi_remove_handle(multi.get(), hang.get());
  curl_multi_remove_handle(multi.get(), slow.get());
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
}

}  // namespace
}  // namespace rebound::fakelms
