// CurlExecutor against the real fake-lms, through the http::Executor interface.
#include "server/http/curl_executor.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/http/executor.h"
#include "server/policy/policy.h"
#include "tests/fake_lms/fake_lms_process.h"
#include "tests/support/silent_listener.h"

namespace rebound::http {
namespace {

const ::testing::Environment* const kCurlEnvironment =
    ::testing::AddGlobalTestEnvironment(new fakelms::CurlGlobalEnvironment);

using policy::Outcome;
using policy::TransportError;
using ::rebound::testing::SilentListener;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::Duration kDeadline = absl::Seconds(20);

class CurlExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<fakelms::FakeLmsProcess>> lms = fakelms::FakeLmsProcess::Start();
    ASSERT_TRUE(lms.ok()) << lms.status();
    lms_ = *std::move(lms);
    absl::StatusOr<std::unique_ptr<CurlExecutor>> executor =
        CurlExecutor::Create(CurlExecutorOptions{});
    ASSERT_TRUE(executor.ok()) << executor.status();
    executor_ = *std::move(executor);
  }

  Executor& executor() { return *executor_; }

  Request Get(const std::string& path_and_query, const std::string& key) {
    Request r;
    r.method = "GET";
    r.url = lms_->base_url() + path_and_query;
    r.headers = {{"Idempotency-Key", key}};
    return r;
  }

  // Starts one attempt and polls until it completes.
  Outcome Run(Request request) {
    std::optional<Outcome> out;
    executor().Start(std::move(request), [&out](Outcome o) { out = std::move(o); });
    const absl::Time give_up = absl::Now() + kDeadline;
    while (!out && absl::Now() < give_up) executor().Poll(absl::Milliseconds(50));
    EXPECT_TRUE(out.has_value()) << "attempt did not complete";
    return out.value_or(Outcome{});
  }

  nlohmann::json KeyStats(const std::string& key) {
    absl::StatusOr<nlohmann::json> stats = lms_->Stats(key);
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? *stats : nlohmann::json();
  }

  int Connections() {
    absl::StatusOr<nlohmann::json> totals = lms_->Totals();
    EXPECT_TRUE(totals.ok()) << totals.status();
    return totals.ok() ? (*totals)["connections"].get<int>() : -1;
  }

  std::unique_ptr<fakelms::FakeLmsProcess> lms_;
  std::unique_ptr<CurlExecutor> executor_;
};

TEST_F(CurlExecutorTest, CollectsStatusHeadersAndBody) {
  const Outcome out = Run(Get("/courses/1?script=201", "collect"));
  EXPECT_EQ(out.error, TransportError::kNone) << out.error_detail;
  EXPECT_EQ(out.http_status, 201);
  EXPECT_EQ(out.Header("content-type"), "application/json");
  EXPECT_EQ(nlohmann::json::parse(out.body)["key"], "collect");
  EXPECT_GT(out.latency, absl::ZeroDuration());
}

TEST_F(CurlExecutorTest, RetryAfterHeaderIsVisibleLowerCasedAndTrimmed) {
  const Outcome out = Run(Get("/x?script=429:ra=7", "ra"));
  EXPECT_EQ(out.http_status, 429);
  EXPECT_EQ(out.Header("retry-after"), "7");
}

TEST_F(CurlExecutorTest, BodyIsBoundedByMaxResponseBytes) {
  Request r = Get(absl::StrCat("/x?script=200:body=", std::string(5000, 'b')), "big");
  r.max_response_bytes = 100;
  const Outcome out = Run(std::move(r));
  EXPECT_EQ(out.error, TransportError::kNone) << out.error_detail;
  EXPECT_EQ(out.http_status, 200);
  EXPECT_EQ(out.body, std::string(100, 'b'));
}

TEST_F(CurlExecutorTest, RefusedConnectionIsAConnectError) {
  // A port that was free a moment ago, now closed.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), len), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  close(fd);

  Request r;
  r.method = "GET";
  r.url = absl::StrCat("http://127.0.0.1:", ntohs(addr.sin_port), "/x");
  const Outcome out = Run(std::move(r));
  EXPECT_EQ(out.error, TransportError::kConnect) << out.error_detail;
  EXPECT_EQ(out.http_status, 0);
  EXPECT_FALSE(out.error_detail.empty());
}

TEST_F(CurlExecutorTest, HangingUpstreamIsATimeout) {
  Request r = Get("/x?script=hang", "hang");
  r.timeout = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  const Outcome out = Run(std::move(r));
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(out.error, TransportError::kTimeout) << out.error_detail;
  EXPECT_GE(took, absl::Milliseconds(250));
  EXPECT_LT(took, absl::Milliseconds(300) + absl::Seconds(2));
}

TEST_F(CurlExecutorTest, ClosedConnectionIsAReset) {
  const Outcome out = Run(Get("/x?script=reset", "reset"));
  EXPECT_EQ(out.error, TransportError::kReset) << out.error_detail;
  EXPECT_EQ(out.http_status, 0);
}

TEST_F(CurlExecutorTest, AnswerCutShortIsAResetAndIsNotResent) {
  ASSERT_EQ(Run(Get("/warm-up", "warm-up")).http_status, 200);  // the next attempt reuses it
  const Outcome out = Run(Get("/x?script=cut,200", "cut"));
  EXPECT_EQ(out.error, TransportError::kReset) << out.error_detail;
  EXPECT_EQ(out.http_status, 0);
  EXPECT_TRUE(out.body.empty());
  EXPECT_EQ(KeyStats("cut")["attempts"], 1);
}

// Pins libcurl behaviour the engine's attempt counts depend on: when a *reused* connection is
// closed before a single byte of answer, curl resends the request on a fresh connection by
// itself (a keep-alive race, to curl). So one attempt may reach the upstream twice; the
// Idempotency-Key header makes that harmless. Tests that need one failure per attempt use
// 'cut', not 'reset'.
TEST_F(CurlExecutorTest, CurlResendsOnceWhenAReusedConnectionIsClosedBeforeAnyByte) {
  ASSERT_EQ(Run(Get("/warm-up", "warm-up")).http_status, 200);
  const Outcome out = Run(Get("/x?script=reset,200", "resent"));
  EXPECT_EQ(out.http_status, 200);
  EXPECT_EQ(KeyStats("resent")["attempts"], 2);
}

TEST_F(CurlExecutorTest, RedirectsAreNotFollowed) {
  const std::string target = lms_->base_url() + "/elsewhere";
  const Outcome out = Run(Get("/x?script=302:loc=" + target, "redirect"));
  EXPECT_EQ(out.error, TransportError::kNone) << out.error_detail;
  EXPECT_EQ(out.http_status, 302);
  EXPECT_EQ(out.Header("location"), target);
  absl::StatusOr<nlohmann::json> totals = lms_->Totals();
  ASSERT_TRUE(totals.ok()) << totals.status();
  EXPECT_EQ((*totals)["attempts"], 1);  // nothing went to /elsewhere
}

// Sets environment variables for one test and restores them after.
class ScopedEnv {
 public:
  ScopedEnv(std::initializer_list<std::pair<const char*, std::string>> vars) {
    for (const auto& [name, value] : vars) {
      const char* old = std::getenv(name);
      saved_.emplace_back(name, old == nullptr ? std::nullopt : std::optional<std::string>(old));
      setenv(name, value.c_str(), 1);
    }
  }
  ~ScopedEnv() {
    for (const auto& [name, old] : saved_) {
      if (old) {
        setenv(name, old->c_str(), 1);
      } else {
        unsetenv(name);
      }
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
};

TEST_F(CurlExecutorTest, ProxyEnvironmentVariablesAreIgnored) {
  SilentListener proxy;
  ASSERT_TRUE(proxy.ok());
  Outcome out;
  {
    // Only around the attempt: the test's own stats requests would honour them.
    const ScopedEnv env({{"http_proxy", proxy.url()},
                         {"HTTPS_PROXY", proxy.url()},
                         {"ALL_PROXY", proxy.url()},
                         {"all_proxy", proxy.url()}});
    Request r = Get("/x?script=200", "no-proxy");
    r.headers.emplace_back("Authorization", "Bearer never-to-a-proxy");
    r.timeout = absl::Seconds(3);  // before the fix: the silent proxy held it until this timeout
    out = Run(std::move(r));
  }
  EXPECT_EQ(out.error, TransportError::kNone) << out.error_detail;
  EXPECT_EQ(out.http_status, 200);
  EXPECT_FALSE(proxy.Contacted());
  EXPECT_EQ(KeyStats("no-proxy")["attempts"], 1);  // reached fake-lms directly
}

TEST_F(CurlExecutorTest, AnExplicitProxyIsUsedEvenWhenNoProxySaysOtherwise) {
  SilentListener proxy;
  ASSERT_TRUE(proxy.ok());
  Outcome out;
  {
    const ScopedEnv env({{"no_proxy", "*"}, {"NO_PROXY", "*"}});
    Request r = Get("/x?script=200", "via-proxy");
    r.proxy = proxy.url();
    r.timeout = absl::Milliseconds(500);
    out = Run(std::move(r));
  }
  EXPECT_EQ(out.error, TransportError::kTimeout) << out.error_detail;  // the proxy never answers
  EXPECT_TRUE(proxy.Contacted());
  absl::StatusOr<nlohmann::json> totals = lms_->Totals();
  ASSERT_TRUE(totals.ok()) << totals.status();
  EXPECT_EQ((*totals)["attempts"], 0);  // nothing reached fake-lms
}

TEST_F(CurlExecutorTest, SequentialAttemptsReuseTheConnection) {
  const int before = Connections();
  for (int i = 0; i < 200; ++i) {
    const Outcome out = Run(Get("/x", absl::StrCat("seq-", i)));
    ASSERT_EQ(out.http_status, 200) << i << ": " << out.error_detail;
  }
  // Minus the connection of the second Connections() call itself.
  const int used = Connections() - before - 1;
  EXPECT_GE(used, 1);
  EXPECT_LE(used, 2);
}

TEST_F(CurlExecutorTest, AThousandConcurrentAttemptsComplete) {
  constexpr int kAttempts = 1000;
  int completed = 0;
  int ok = 0;
  for (int i = 0; i < kAttempts; ++i) {
    executor().Start(Get("/x?latency_ms=5", absl::StrCat("many-", i)), [&](Outcome o) {
      ++completed;
      if (o.http_status == 200) ++ok;
    });
  }
  EXPECT_EQ(executor().InFlight(), static_cast<size_t>(kAttempts));
  const absl::Time give_up = absl::Now() + kDeadline;
  while (completed < kAttempts && absl::Now() < give_up) executor().Poll(absl::Milliseconds(50));
  EXPECT_EQ(completed, kAttempts);
  EXPECT_EQ(ok, kAttempts);
  EXPECT_EQ(executor().InFlight(), 0u);
  absl::StatusOr<nlohmann::json> totals = lms_->Totals();
  ASSERT_TRUE(totals.ok()) << totals.status();
  EXPECT_EQ((*totals)["effects"], kAttempts);
  EXPECT_EQ((*totals)["repeats"], 0);
  // At most one connection per attempt (plus Totals()'s own): none was opened twice.
  EXPECT_LE((*totals)["connections"], kAttempts + 1);
}

// Runs `count` attempts of `latency_ms` each on `executor` at once; returns how many succeeded.
int RunConcurrently(Executor& executor, const std::string& base_url, int count, int latency_ms) {
  int completed = 0;
  int ok = 0;
  for (int i = 0; i < count; ++i) {
    Request r;
    r.method = "GET";
    r.url = absl::StrCat(base_url, "/x?latency_ms=", latency_ms);
    r.headers = {{"Idempotency-Key", absl::StrCat("held-", i)}};
    executor.Start(std::move(r), [&](Outcome o) {
      ++completed;
      if (o.http_status == 200) ++ok;
    });
  }
  const absl::Time give_up = absl::Now() + kDeadline;
  while (completed < count && absl::Now() < give_up) executor.Poll(absl::Milliseconds(50));
  EXPECT_EQ(completed, count);
  return ok;
}

// The endpoints' max_in_flight caps bound concurrency, not curl: by default no attempt waits
// inside curl for a connection, even with hundreds to one host (a wait there would make a paced
// send leave late, together with later ones).
TEST_F(CurlExecutorTest, AttemptsToOneHostAreNotQueuedForAConnectionByDefault) {
  constexpr int kHeld = 300;  // more than the 256 connections per host of libcurl's habit
  EXPECT_EQ(RunConcurrently(executor(), lms_->base_url(), kHeld, 300), kHeld);
  // Each attempt was held by fake-lms while all the others were in flight: one connection each.
  EXPECT_GE(Connections(), kHeld);
}

TEST_F(CurlExecutorTest, AnExplicitHostConnectionLimitIsHonoured) {
  CurlExecutorOptions options;
  options.max_host_connections = 8;
  absl::StatusOr<std::unique_ptr<CurlExecutor>> limited = CurlExecutor::Create(options);
  ASSERT_TRUE(limited.ok()) << limited.status();
  EXPECT_EQ(RunConcurrently(**limited, lms_->base_url(), 40, 50), 40);
  EXPECT_LE(Connections(), 8 + 1);  // plus Connections()'s own request
}

TEST_F(CurlExecutorTest, WakeupInterruptsAPollFromAnotherThread) {
  std::thread waker([this] {
    absl::SleepFor(absl::Milliseconds(100));
    executor().Wakeup();
  });
  const absl::Time start = absl::Now();
  executor().Poll(absl::Seconds(10));
  const absl::Duration took = absl::Now() - start;
  waker.join();
  EXPECT_LT(took, absl::Seconds(2));
}

TEST_F(CurlExecutorTest, SubMillisecondPollWaitsAboutAMillisecond) {
  const absl::Time start = absl::Now();
  executor().Poll(absl::Microseconds(200));
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Microseconds(500));  // rounded up to 1ms, not to 0
  EXPECT_LT(took, absl::Seconds(1));
}

TEST_F(CurlExecutorTest, ZeroPollDoesNotWait) {
  const absl::Time start = absl::Now();
  executor().Poll(absl::ZeroDuration());
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
}

TEST_F(CurlExecutorTest, DoneMayStartTheNextAttempt) {
  std::vector<int> statuses;
  bool finished = false;
  executor().Start(Get("/x?script=503,200", "chain"), [&](Outcome first) {
    statuses.push_back(first.http_status);
    executor().Start(Get("/x?script=503,200", "chain"), [&](Outcome second) {
      statuses.push_back(second.http_status);
      finished = true;
    });
  });
  const absl::Time give_up = absl::Now() + kDeadline;
  while (!finished && absl::Now() < give_up) executor().Poll(absl::Milliseconds(50));
  EXPECT_THAT(statuses, ElementsAre(503, 200));
  EXPECT_EQ(executor().InFlight(), 0u);
}

TEST_F(CurlExecutorTest, IdempotencyKeyAndUserAgentAreSent) {
  Run(Get("/x?script=503,200", "key-42"));
  Run(Get("/x?script=503,200", "key-42"));
  const nlohmann::json stats = KeyStats("key-42");
  EXPECT_EQ(stats["attempts"], 2);
  EXPECT_EQ(stats["effects"], 1);
  EXPECT_EQ(stats["key_header_every_attempt"], true);
  EXPECT_EQ(stats["last_headers"]["user-agent"], "rebound/0.1");
}

TEST_F(CurlExecutorTest, MethodsAndBodiesAreSentAsGiven) {
  for (const std::string method : {"POST", "PUT", "PATCH", "DELETE", "GET"}) {
    Request r = Get("/grades/9?x=1", "method-" + method);
    r.method = method;
    r.body = method == "GET" ? "" : R"({"score":97})";
    r.headers.emplace_back("Content-Type", "application/json");
    r.headers.emplace_back("X-Empty", "");
    const Outcome out = Run(std::move(r));
    EXPECT_EQ(out.http_status, 200) << method << ": " << out.error_detail;
    const nlohmann::json stats = KeyStats("method-" + method);
    EXPECT_EQ(stats["last_method"], method);
    EXPECT_EQ(stats["last_path"], "/grades/9?x=1");
    EXPECT_EQ(stats["last_body_bytes"], method == "GET" ? 0 : 12) << method;
    EXPECT_EQ(stats["last_headers"]["content-type"], "application/json");
    EXPECT_FALSE(stats["last_headers"].contains("expect"));
  }
}

TEST_F(CurlExecutorTest, BodyWithoutContentTypeIsNotLabelledAsAForm) {
  Request r = Get("/x", "no-type");
  r.method = "POST";
  r.body = "raw";
  EXPECT_EQ(Run(std::move(r)).http_status, 200);
  EXPECT_FALSE(KeyStats("no-type")["last_headers"].contains("content-type"));
}

TEST_F(CurlExecutorTest, InvalidRequestFailsFromTheNextPollNotFromStart) {
  Request r = Get("/x", "bad");
  r.headers.emplace_back("X-Evil", "a\r\nInjected: yes");
  std::optional<Outcome> out;
  executor().Start(std::move(r), [&out](Outcome o) { out = std::move(o); });
  EXPECT_FALSE(out.has_value());
  EXPECT_EQ(executor().InFlight(), 1u);
  executor().Poll(absl::Seconds(5));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->error, TransportError::kOther);
  EXPECT_THAT(out->error_detail, HasSubstr("invalid header"));
  EXPECT_EQ(executor().InFlight(), 0u);
  EXPECT_EQ(lms_->Stats("bad").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CurlExecutorTest, DestructionCompletesAttemptsInProgress) {
  std::vector<Outcome> outcomes;
  Executor* ex = executor_.get();  // executor_ reads null while it is being reset
  ex->Start(Get("/x?script=hang", "shutdown"), [&](Outcome o) {
    outcomes.push_back(std::move(o));
    // Even a callback that starts again during shutdown gets its answer.
    ex->Start(Get("/x", "after-shutdown"),
              [&](Outcome again) { outcomes.push_back(std::move(again)); });
  });
  const absl::Time give_up = absl::Now() + kDeadline;
  while (!lms_->Stats("shutdown").ok() && absl::Now() < give_up) {
    executor().Poll(absl::Milliseconds(10));
  }
  executor_.reset();
  ASSERT_EQ(outcomes.size(), 2u);
  for (const Outcome& o : outcomes) {
    EXPECT_EQ(o.error, TransportError::kOther);
    EXPECT_EQ(o.error_detail, "executor shut down");
  }
}

TEST_F(CurlExecutorTest, PooledHandlesStartClean) {
  // A POST with a body, then a GET on the same pooled handle: nothing of the POST remains.
  Request post = Get("/x", "pool-post");
  post.method = "POST";
  post.body = "payload";
  post.headers.emplace_back("X-Only-Once", "1");
  EXPECT_EQ(Run(std::move(post)).http_status, 200);
  EXPECT_EQ(Run(Get("/x", "pool-get")).http_status, 200);
  const nlohmann::json stats = KeyStats("pool-get");
  EXPECT_EQ(stats["last_method"], "GET");
  EXPECT_EQ(stats["last_body_bytes"], 0);
  EXPECT_FALSE(stats["last_headers"].contains("x-only-once"));
}

TEST(CurlExecutorOptionsTest, ForEndpointsGivesEveryCappedAttemptAConnection) {
  // Plenty of descriptors: the idle pool keeps a connection for each capped attempt.
  CurlExecutorOptions o = CurlExecutorOptions::ForEndpoints(5000, 1048576);
  EXPECT_EQ(o.max_host_connections, 0);
  EXPECT_EQ(o.max_total_connections, 1048576 - CurlExecutorOptions::kReservedDescriptors);
  EXPECT_EQ(o.max_idle_connections, 5000);
  // Small caps still keep 256 idle connections.
  EXPECT_EQ(CurlExecutorOptions::ForEndpoints(64, 1048576).max_idle_connections, 256);
  // The usual soft limit of 1024: room for 768 connections, and no more kept idle.
  o = CurlExecutorOptions::ForEndpoints(1240, 1024);
  EXPECT_EQ(o.max_total_connections, 1024 - CurlExecutorOptions::kReservedDescriptors);
  EXPECT_EQ(o.max_idle_connections, 768);
  // A tiny limit still allows a few connections rather than none.
  o = CurlExecutorOptions::ForEndpoints(10, 100);
  EXPECT_EQ(o.max_total_connections, 64);
  EXPECT_EQ(o.max_idle_connections, 64);
  EXPECT_TRUE(CurlExecutor::Create(o).ok());
}

TEST(CurlExecutorCreateTest, RejectsNegativeLimits) {
  CurlExecutorOptions options;
  options.max_host_connections = -1;
  EXPECT_EQ(CurlExecutor::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TransportErrorFromCurlCodeTest, MapsEachFamily) {
  EXPECT_EQ(TransportErrorFromCurlCode(CURLE_OK), TransportError::kNone);
  EXPECT_EQ(TransportErrorFromCurlCode(CURLE_COULDNT_CONNECT), TransportError::kConnect);
  EXPECT_EQ(TransportErrorFromCurlCode(CURLE_COULDNT_RESOLVE_HOST), TransportError::kDns);
  EXPECT_EQ(TransportErrorFromCurlCode(CURLE_COULDNT_RESOLVE_PROXY), TransportError::kDns);
  EXPECT_EQ(TransportErrorFromCurlCode(CURLE_OPERATION_TIMEDOUT), TransportError::kTimeout);
  EXPECT_EQ(TransportErrorFromCurlCode(CURLE_RECV_ERROR), TransportError::kReset);
  EXPECT_EQ(TransportErrorFromCurlCode(CURLE_SEND_ERROR), TransportError::kReset);
  EXPECT_EQ(TransportErrorFromCurlCode(CURLE_GOT_NOTHING), TransportError::kReset);
  EXPECT_EQ(TransportErrorFromCurlCode(CURLE_PARTIAL_FILE), TransportError::kReset);
  EXPECT_EQ(TransportErrorFromCurlCode(CURLE_SSL_CONNECT_ERROR), TransportError::kTls);
  EXPECT_EQ(TransportErrorFromCurlCode(CURLE_PEER_FAILED_VERIFICATION), TransportError::kTls);
  EXPECT_EQ(TransportErrorFromCurlCode(CURLE_SSL_CERTPROBLEM), TransportError::kTls);
  EXPECT_EQ(TransportErrorFromCurlCode(CURLE_UNSUPPORTED_PROTOCOL), TransportError::kOther);
  EXPECT_EQ(TransportErrorFromCurlCode(CURLE_TOO_MANY_REDIRECTS), TransportError::kOther);
}

TEST(CurlExecutorProtocolTest, OnlyHttpAndHttpsAreAllowed) {
  absl::StatusOr<std::unique_ptr<CurlExecutor>> executor =
      CurlExecutor::Create(CurlExecutorOptions{});
  ASSERT_TRUE(executor.ok()) << executor.status();
  Request r;
  r.method = "GET";
  r.url = "file:///etc/hostname";
  std::optional<Outcome> out;
  (*executor)->Start(std::move(r), [&out](Outcome o) { out = std::move(o); });
  const absl::Time give_up = absl::Now() + kDeadline;
  while (!out && absl::Now() < give_up) (*executor)->Poll(absl::Milliseconds(50));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->error, TransportError::kOther);
  EXPECT_TRUE(out->body.empty());
}

}  // namespace
}  // namespace rebound::http
