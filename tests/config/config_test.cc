#include "server/config/config.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "re2/re2.h"

namespace rebound::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::string_view kSource = "rebound.yaml";

// One endpoint with only its required keys, to which a test appends more.
constexpr absl::string_view kEndpoint = R"(
endpoints:
  - name: lms
    base_url: http://127.0.0.1:8080
    allowed_path_prefixes: [/api/]
)";

std::string ErrorOf(absl::string_view yaml) {
  const absl::StatusOr<Config> config = ParseConfig(yaml, kSource);
  if (config.ok()) return "<parsed without error>";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
  return std::string(config.status().message());
}

// kEndpoint followed by more keys of the same endpoint, indented to match.
std::string EndpointWith(absl::string_view extra) { return absl::StrCat(kEndpoint, extra); }

Config ParseOk(absl::string_view yaml) {
  absl::StatusOr<Config> config = ParseConfig(yaml, kSource);
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *std::move(config) : Config();
}

// A file under the test's temporary directory, removed at the end of the test.
class TempFile {
 public:
  TempFile(absl::string_view name, absl::string_view contents)
      : path_(absl::StrCat(::testing::TempDir(), "/", name)) {
    std::ofstream(path_, std::ios::binary) << contents;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Sets an environment variable for the duration of a test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~ScopedEnv() { unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

// The protection defaults README's configuration reference documents (config.h's structs).
void ExpectDocumentedProtectionDefaults(const EndpointConfig& e) {
  EXPECT_TRUE(e.circuit_breaker.enabled);
  EXPECT_EQ(e.circuit_breaker.failure_ratio, 0.5);
  EXPECT_EQ(e.circuit_breaker.min_requests, 20);
  EXPECT_EQ(e.circuit_breaker.window, absl::Seconds(10));
  EXPECT_EQ(e.circuit_breaker.open_duration, absl::Seconds(2));
  EXPECT_EQ(e.circuit_breaker.max_open_duration, absl::Seconds(30));
  EXPECT_EQ(e.circuit_breaker.half_open_probes, 3);
  EXPECT_FALSE(e.circuit_breaker.count_throttles);
  EXPECT_TRUE(e.retry_budget.enabled);
  EXPECT_EQ(e.retry_budget.ratio, 0.2);
  EXPECT_EQ(e.retry_budget.min_retries, 10);
  EXPECT_EQ(e.rate_limit.rate, 0);
  EXPECT_EQ(e.rate_limit.burst, 0);
  EXPECT_EQ(e.slow_start.window, absl::Seconds(5));
  EXPECT_TRUE(e.pacing.enabled);
  EXPECT_EQ(e.pacing.low_water, 0);
  EXPECT_EQ(e.pacing.low_water_ratio, 0.25);
  EXPECT_EQ(e.pacing.min_in_flight, 1);
  EXPECT_EQ(e.pacing.start_in_flight, 0);
}

// --- The sample file -------------------------------------------------------------------------

TEST(SampleConfig, ParsesAsShippedWithoutCanvasToken) {
  unsetenv("CANVAS_TOKEN");
  const std::string path = REBOUND_SOURCE_DIR "/config/rebound.yaml";
  const absl::StatusOr<Config> config = LoadConfigFile(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source, path);
  EXPECT_EQ(config->server.grpc_listen, "127.0.0.1:50051");
  EXPECT_EQ(config->server.metrics_listen, "127.0.0.1:9464");
  EXPECT_EQ(config->store.path, "rebound.db");
  EXPECT_EQ(config->store.synchronous, "full");

  ASSERT_EQ(config->policies.size(), 7u);
  // The pipeline policies (docs/presets.md): their priorities order the endpoints' queues.
  EXPECT_EQ(config->FindPolicy("gradebook")->priority, common::Priority::kHigh);
  EXPECT_EQ(config->FindPolicy("gradebook")->limits.max_elapsed, absl::Hours(24));
  EXPECT_EQ(config->FindPolicy("attendance")->priority, common::Priority::kNormal);
  EXPECT_EQ(config->FindPolicy("attendance")->limits.max_elapsed, absl::Hours(4));
  EXPECT_EQ(config->FindPolicy("engagement")->priority, common::Priority::kLow);
  ASSERT_EQ(config->budgets.size(), 1u);
  EXPECT_EQ(config->budgets[0].split_by, "district");
  EXPECT_EQ(config->endpoints[0].budgets, std::vector<std::string>{"district"});
  EXPECT_EQ(config->endpoints[0].fairness_label, "district");
  const auto def = config->FindPolicy("default");
  ASSERT_NE(def, nullptr);
  EXPECT_EQ(def->backoff.initial, absl::Milliseconds(200));
  EXPECT_EQ(def->backoff.max, absl::Seconds(30));
  EXPECT_EQ(def->backoff.multiplier, 2.0);
  EXPECT_EQ(def->backoff.jitter, policy::Jitter::kFull);
  EXPECT_EQ(def->limits.max_attempts, 5);
  EXPECT_EQ(def->limits.max_elapsed, absl::Hours(1));
  EXPECT_EQ(def->limits.max_retry_after, absl::Minutes(10));
  EXPECT_EQ(def->limits.max_throttled, 100);
  EXPECT_FALSE(def->limits.count_throttles);
  EXPECT_EQ(def->throttle_backoff.initial, absl::Seconds(1));
  EXPECT_EQ(def->throttle_backoff.max, absl::Minutes(1));
  EXPECT_EQ(def->throttle_backoff.multiplier, 2.0);
  EXPECT_EQ(def->throttle_backoff.jitter, policy::Jitter::kEqual);

  const auto canvas = config->FindPolicy("canvas");
  ASSERT_NE(canvas, nullptr);
  ASSERT_EQ(canvas->rules.size(), 1u);
  EXPECT_EQ(canvas->rules[0].action, policy::Action::kRateLimited);
  ASSERT_EQ(canvas->rules[0].statuses.size(), 1u);
  EXPECT_EQ(canvas->rules[0].statuses[0].lo, 403);
  EXPECT_TRUE(RE2::PartialMatch("{\"errors\":\"403 Forbidden (Rate Limit Exceeded)\"}",
                                *canvas->rules[0].body_regex));

  const auto moodle = config->FindPolicy("moodle");
  ASSERT_NE(moodle, nullptr);
  ASSERT_EQ(moodle->rules.size(), 1u);
  EXPECT_EQ(moodle->rules[0].action, policy::Action::kPermanent);
  EXPECT_TRUE(
      RE2::PartialMatch(R"({"exception" : "moodle_exception"})", *moodle->rules[0].body_regex));
  EXPECT_FALSE(RE2::PartialMatch(R"({"courses": []})", *moodle->rules[0].body_regex));

  const auto fast = config->FindPolicy("fast");
  ASSERT_NE(fast, nullptr);
  EXPECT_EQ(fast->backoff.initial, absl::Milliseconds(10));
  EXPECT_EQ(fast->backoff.max, absl::Milliseconds(200));
  EXPECT_EQ(fast->limits.max_attempts, 4);

  const EndpointConfig* canvas_endpoint = config->FindEndpoint("canvas");
  ASSERT_NE(canvas_endpoint, nullptr);
  EXPECT_EQ(canvas_endpoint->base_url, "http://127.0.0.1:8080");
  EXPECT_THAT(canvas_endpoint->allowed_path_prefixes, ElementsAre("/api/v1/"));
  EXPECT_EQ(canvas_endpoint->policy, "canvas");
  // The optional Authorization header is skipped without CANVAS_TOKEN.
  ASSERT_EQ(canvas_endpoint->headers.size(), 1u);
  EXPECT_EQ(canvas_endpoint->headers[0].name, "Accept");

  const EndpointConfig* moodle_endpoint = config->FindEndpoint("moodle");
  ASSERT_NE(moodle_endpoint, nullptr);
  EXPECT_THAT(moodle_endpoint->allowed_path_prefixes, ElementsAre("/webservice/rest/"));
  EXPECT_EQ(moodle_endpoint->policy, "moodle");
}

TEST(SampleConfig, SendsCanvasTokenFromTheEnvironmentAsASecret) {
  const ScopedEnv token("CANVAS_TOKEN", "Bearer 7~abc");
  const absl::StatusOr<Config> config = LoadConfigFile(REBOUND_SOURCE_DIR "/config/rebound.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  const EndpointConfig* canvas = config->FindEndpoint("canvas");
  ASSERT_NE(canvas, nullptr);
  ASSERT_EQ(canvas->headers.size(), 2u);
  EXPECT_EQ(canvas->headers[0].name, "Authorization");
  EXPECT_EQ(canvas->headers[0].value, "Bearer 7~abc");
  EXPECT_TRUE(canvas->headers[0].secret);
}

TEST(SampleConfig, CommentedProtectionExampleParsesToTheDefaults) {
  // The sample shows the protection sections commented out; uncommented, they must parse and
  // give the defaults they claim to be.
  std::ifstream file(REBOUND_SOURCE_DIR "/config/rebound.yaml");
  std::string line;
  std::string sections;
  bool inside = false;
  while (std::getline(file, line)) {
    if (absl::StartsWith(line, "    # circuit_breaker:")) inside = true;
    if (!inside) continue;
    if (!RE2::PartialMatch(line, R"(^    # +[a-z_]+:)")) break;  // the comment that follows
    sections += absl::StrCat("    ", line.substr(6), "\n");
  }
  ASSERT_THAT(sections, HasSubstr("slow_start:"));
  ExpectDocumentedProtectionDefaults(ParseOk(EndpointWith(sections)).endpoints.at(0));
}

// --- Defaults --------------------------------------------------------------------------------

TEST(Defaults, EmptyDocumentGivesEveryDefaultAndABuiltInDefaultPolicy) {
  const Config config = ParseOk("");
  EXPECT_EQ(config.source, kSource);
  EXPECT_EQ(config.server.grpc_listen, ServerConfig().grpc_listen);
  EXPECT_TRUE(config.endpoints.empty());
  ASSERT_EQ(config.policies.size(), 1u);
  EXPECT_EQ(config.FindPolicy("default")->name, "default");
}

TEST(Defaults, MinimalConfigGetsAllDefaults) {
  const Config config = ParseOk(kEndpoint);
  const ServerConfig server;
  EXPECT_EQ(config.server.grpc_listen, server.grpc_listen);
  EXPECT_EQ(config.server.metrics_listen, server.metrics_listen);
  EXPECT_EQ(config.server.default_tenant, server.default_tenant);
  EXPECT_EQ(config.server.max_batch_size, server.max_batch_size);
  EXPECT_EQ(config.server.max_body_bytes, server.max_body_bytes);
  EXPECT_EQ(config.server.max_headers, server.max_headers);
  EXPECT_EQ(config.server.max_header_bytes, server.max_header_bytes);
  EXPECT_EQ(config.server.max_key_length, server.max_key_length);
  EXPECT_EQ(config.server.max_labels, server.max_labels);
  EXPECT_EQ(config.server.max_active_jobs, server.max_active_jobs);
  EXPECT_EQ(config.server.max_watchers, 4096u);  // the documented defaults (README)
  EXPECT_EQ(config.server.max_watchers_per_tenant, 1024u);
  EXPECT_EQ(config.server.stream_window, 512u);
  EXPECT_EQ(config.server.shutdown_grace, server.shutdown_grace);
  const StoreConfig store;
  EXPECT_EQ(config.store.path, store.path);
  EXPECT_EQ(config.store.synchronous, store.synchronous);
  EXPECT_EQ(config.store.max_batch, store.max_batch);
  EXPECT_EQ(config.idempotency_retention, absl::Hours(24));
  EXPECT_EQ(config.idempotency_header, "Idempotency-Key");

  const auto def = config.FindPolicy("default");
  ASSERT_NE(def, nullptr);
  const policy::Policy expected;
  EXPECT_TRUE(def->rules.empty());
  EXPECT_EQ(def->backoff.initial, expected.backoff.initial);
  EXPECT_EQ(def->backoff.max, expected.backoff.max);
  EXPECT_EQ(def->backoff.multiplier, expected.backoff.multiplier);
  EXPECT_EQ(def->backoff.jitter, expected.backoff.jitter);
  EXPECT_EQ(def->limits.max_attempts, expected.limits.max_attempts);
  EXPECT_EQ(def->limits.max_elapsed, expected.limits.max_elapsed);
  EXPECT_EQ(def->limits.max_retry_after, expected.limits.max_retry_after);
  EXPECT_EQ(def->body_match_bytes, expected.body_match_bytes);
  EXPECT_EQ(def->pause_endpoint_on_rate_limit, expected.pause_endpoint_on_rate_limit);

  ASSERT_EQ(config.endpoints.size(), 1u);
  const EndpointConfig& e = config.endpoints[0];
  const EndpointConfig defaults;
  EXPECT_EQ(e.name, "lms");
  EXPECT_EQ(e.connect_timeout, defaults.connect_timeout);
  EXPECT_EQ(e.timeout, defaults.timeout);
  EXPECT_EQ(e.max_response_bytes, defaults.max_response_bytes);
  EXPECT_EQ(e.max_in_flight, defaults.max_in_flight);
  EXPECT_EQ(e.policy, "default");
  EXPECT_TRUE(e.headers.empty());
}

TEST(Log, LevelAndRateCapAreReadAndCheckedStrictly) {
  EXPECT_EQ(ParseOk("").log.level, "info");
  EXPECT_EQ(ParseOk("").log.max_lines_per_second, 1000u);
  const Config config = ParseOk("log: {level: debug, max_lines_per_second: 50}");
  EXPECT_EQ(config.log.level, "debug");
  EXPECT_EQ(config.log.max_lines_per_second, 50u);
  EXPECT_THAT(ErrorOf("log: {level: loud}"), HasSubstr("log.level"));
  EXPECT_THAT(ErrorOf("log: {max_lines_per_second: -1}"), HasSubstr("log.max_lines_per_second"));
  EXPECT_THAT(ErrorOf("log: {format: text}"), HasSubstr("log: unknown key 'format'"));
}

TEST(Defaults, APolicyNamedDefaultInTheFileReplacesTheBuiltInOne) {
  const Config config = ParseOk("policies: [{name: default, limits: {max_attempts: 9}}]");
  ASSERT_EQ(config.policies.size(), 1u);
  EXPECT_EQ(config.FindPolicy("default")->limits.max_attempts, 9);
}

TEST(Defaults, EveryKeyCanBeSet) {
  const Config config = ParseOk(R"(
server:
  grpc_listen: 0.0.0.0:6000
  metrics_listen: 0.0.0.0:6001
  default_tenant: acme
  max_batch_size: 10
  max_body_bytes: 2048
  max_headers: 4
  max_header_bytes: 100
  max_key_length: 64
  max_labels: 2
  max_active_jobs: 1000
  max_watchers: 20
  max_watchers_per_tenant: 5
  stream_window: 16
  shutdown_grace: 0s
store: {path: /var/lib/rebound/jobs.db, synchronous: normal, max_batch: 16}
idempotency: {retention: 48h, header: X-Request-Key}
policies:
  - name: slow
    backoff: {initial: 1s, max: 1m, multiplier: 1.5, jitter: decorrelated}
    throttle_backoff: {initial: 2s, max: 5m, multiplier: 3, jitter: none}
    limits: {max_attempts: 10, max_elapsed: inf, max_retry_after: 1m, max_throttled: 40,
             count_throttles: true}
    body_match_bytes: 128
    pause_endpoint_on_rate_limit: false
endpoints:
  - name: sis
    base_url: HTTPS://sis.example.edu:8443/base/
    allowed_path_prefixes: [/v1/, /v2/]
    connect_timeout: 250ms
    timeout: 2s
    max_response_bytes: 100
    max_in_flight: 3
    policy: slow
)");
  EXPECT_EQ(config.server.grpc_listen, "0.0.0.0:6000");
  EXPECT_EQ(config.server.metrics_listen, "0.0.0.0:6001");
  EXPECT_EQ(config.server.default_tenant, "acme");
  EXPECT_EQ(config.server.max_batch_size, 10u);
  EXPECT_EQ(config.server.max_body_bytes, 2048u);
  EXPECT_EQ(config.server.max_headers, 4u);
  EXPECT_EQ(config.server.max_header_bytes, 100u);
  EXPECT_EQ(config.server.max_key_length, 64u);
  EXPECT_EQ(config.server.max_labels, 2u);
  EXPECT_EQ(config.server.max_active_jobs, 1000u);
  EXPECT_EQ(config.server.max_watchers, 20u);
  EXPECT_EQ(config.server.max_watchers_per_tenant, 5u);
  EXPECT_EQ(config.server.stream_window, 16u);
  EXPECT_EQ(config.server.shutdown_grace, absl::ZeroDuration());
  EXPECT_EQ(config.store.path, "/var/lib/rebound/jobs.db");
  EXPECT_EQ(config.store.synchronous, "normal");
  EXPECT_EQ(config.store.max_batch, 16u);
  EXPECT_EQ(config.idempotency_retention, absl::Hours(48));
  EXPECT_EQ(config.idempotency_header, "X-Request-Key");

  const auto slow = config.FindPolicy("slow");
  ASSERT_NE(slow, nullptr);
  EXPECT_EQ(slow->backoff.initial, absl::Seconds(1));
  EXPECT_EQ(slow->backoff.max, absl::Minutes(1));
  EXPECT_EQ(slow->backoff.multiplier, 1.5);
  EXPECT_EQ(slow->backoff.jitter, policy::Jitter::kDecorrelated);
  EXPECT_EQ(slow->limits.max_attempts, 10);
  EXPECT_EQ(slow->limits.max_elapsed, absl::InfiniteDuration());
  EXPECT_EQ(slow->limits.max_retry_after, absl::Minutes(1));
  EXPECT_EQ(slow->limits.max_throttled, 40);
  EXPECT_TRUE(slow->limits.count_throttles);
  EXPECT_EQ(slow->throttle_backoff.initial, absl::Seconds(2));
  EXPECT_EQ(slow->throttle_backoff.max, absl::Minutes(5));
  EXPECT_EQ(slow->throttle_backoff.multiplier, 3.0);
  EXPECT_EQ(slow->throttle_backoff.jitter, policy::Jitter::kNone);
  EXPECT_EQ(slow->body_match_bytes, 128u);
  EXPECT_FALSE(slow->pause_endpoint_on_rate_limit);
  EXPECT_NE(config.FindPolicy("default"), nullptr);

  const EndpointConfig* sis = config.FindEndpoint("sis");
  ASSERT_NE(sis, nullptr);
  EXPECT_EQ(sis->base_url, "https://sis.example.edu:8443/base");
  EXPECT_THAT(sis->allowed_path_prefixes, ElementsAre("/v1/", "/v2/"));
  EXPECT_EQ(sis->connect_timeout, absl::Milliseconds(250));
  EXPECT_EQ(sis->timeout, absl::Seconds(2));
  EXPECT_EQ(sis->max_response_bytes, 100u);
  EXPECT_EQ(sis->max_in_flight, 3);
  EXPECT_EQ(sis->policy, "slow");
}

TEST(Lookup, UnknownNamesGiveNull) {
  const Config config = ParseOk(kEndpoint);
  EXPECT_NE(config.FindEndpoint("lms"), nullptr);
  EXPECT_EQ(config.FindEndpoint("nope"), nullptr);
  EXPECT_EQ(config.FindPolicy("nope"), nullptr);
}

// --- Rules -----------------------------------------------------------------------------------

TEST(Rules, AreCompiledInOrderWithDefaultNames) {
  const Config config = ParseOk(R"(
policies:
  - name: lms
    rules:
      - name: throttle
        status: [403]
        body: "Rate Limit Exceeded"
        action: rate_limited
      - header: {name: X-Maintenance}
        action: retry
      - header: {name: X-Error-Code, regex: "^E(1|2)$"}
        action: permanent
      - action: success
)");
  const auto p = config.FindPolicy("lms");
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(p->rules.size(), 4u);
  EXPECT_EQ(p->rules[0].name, "throttle");
  EXPECT_EQ(p->rules[0].action, policy::Action::kRateLimited);
  ASSERT_NE(p->rules[0].body_regex, nullptr);
  EXPECT_TRUE(RE2::PartialMatch("403 Rate Limit Exceeded", *p->rules[0].body_regex));
  EXPECT_TRUE(p->rules[0].header_name.empty());

  EXPECT_EQ(p->rules[1].name, "rules[1]");
  EXPECT_EQ(p->rules[1].action, policy::Action::kRetry);
  EXPECT_EQ(p->rules[1].header_name, "x-maintenance");  // outcome headers are lower-case
  EXPECT_EQ(p->rules[1].header_regex, nullptr);
  EXPECT_TRUE(p->rules[1].statuses.empty());
  EXPECT_EQ(p->rules[1].body_regex, nullptr);

  EXPECT_EQ(p->rules[2].name, "rules[2]");
  EXPECT_EQ(p->rules[2].header_name, "x-error-code");
  ASSERT_NE(p->rules[2].header_regex, nullptr);
  EXPECT_TRUE(RE2::PartialMatch("E2", *p->rules[2].header_regex));
  EXPECT_EQ(p->rules[2].action, policy::Action::kPermanent);

  EXPECT_EQ(p->rules[3].action, policy::Action::kSuccess);
}

TEST(Rules, StatusesAcceptCodesAndInclusiveRanges) {
  const Config config = ParseOk(R"(
policies:
  - name: p
    rules:
      - {status: [403, "500-599", 429], action: retry}
      - {status: 418, action: permanent}
)");
  const auto p = config.FindPolicy("p");
  ASSERT_NE(p, nullptr);
  const auto& s = p->rules[0].statuses;
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].lo, 403);
  EXPECT_EQ(s[0].hi, 403);
  EXPECT_EQ(s[1].lo, 500);
  EXPECT_EQ(s[1].hi, 599);
  EXPECT_EQ(s[2].lo, 429);
  EXPECT_EQ(s[2].hi, 429);
  ASSERT_EQ(p->rules[1].statuses.size(), 1u);
  EXPECT_EQ(p->rules[1].statuses[0].lo, 418);
}

TEST(Rules, BackwardsOrOutOfBoundsStatusRangeIsRejected) {
  EXPECT_THAT(ErrorOf("policies: [{name: p, rules: [{status: ['599-500'], action: retry}]}]"),
              HasSubstr("policies[0].rules[0].status[0]: invalid status '599-500'"));
  EXPECT_THAT(ErrorOf("policies: [{name: p, rules: [{status: [200, 99], action: retry}]}]"),
              HasSubstr("policies[0].rules[0].status[1]"));
  EXPECT_THAT(ErrorOf("policies: [{name: p, rules: [{status: [5xx], action: retry}]}]"),
              HasSubstr("policies[0].rules[0].status[0]: expected a status code"));
  EXPECT_THAT(ErrorOf("policies: [{name: p, rules: [{status: [], action: retry}]}]"),
              HasSubstr("policies[0].rules[0].status: must not be empty"));
}

TEST(Rules, ActionIsRequiredAndMustBeKnown) {
  EXPECT_THAT(ErrorOf("policies: [{name: p, rules: [{status: [500]}]}]"),
              HasSubstr("policies[0].rules[0].action: required key is missing"));
  EXPECT_THAT(ErrorOf("policies: [{name: p, rules: [{action: retry}, {action: later}]}]"),
              HasSubstr("policies[0].rules[1].action: invalid value 'later'"));
}

TEST(Rules, BadBodyRegexNamesThePathAndRe2sMessage) {
  EXPECT_THAT(ErrorOf("policies: [{name: p, rules: [{body: 'a(b', action: retry}]}]"),
              HasSubstr("rebound.yaml: policies[0].rules[0].body: invalid regex 'a(b': missing )"));
}

TEST(Rules, BadHeaderRegexNamesThePath) {
  EXPECT_THAT(
      ErrorOf(
          "policies: [{name: p, rules: [{header: {name: X-A, regex: '[z-a]'}, action: retry}]}]"),
      HasSubstr("policies[0].rules[0].header.regex: invalid regex"));
}

TEST(Rules, HeaderConditionNeedsAValidName) {
  EXPECT_THAT(ErrorOf("policies: [{name: p, rules: [{header: {regex: x}, action: retry}]}]"),
              HasSubstr("policies[0].rules[0].header.name: required key is missing"));
  EXPECT_THAT(ErrorOf("policies: [{name: p, rules: [{header: {name: 'X A'}, action: retry}]}]"),
              HasSubstr("policies[0].rules[0].header.name: invalid header name"));
}

TEST(Rules, DuplicateRuleNamesAreRejected) {
  EXPECT_THAT(ErrorOf("policies: [{name: p, rules: [{name: a, action: retry}, "
                      "{name: a, action: permanent}]}]"),
              HasSubstr("policies[0].rules[1].name: duplicate rule 'a'"));
}

// --- Strictness ------------------------------------------------------------------------------

TEST(Strict, UnknownTopLevelKeyIsRejected) {
  EXPECT_EQ(ErrorOf("servers: {}"), "rebound.yaml: unknown top-level key 'servers'");
}

TEST(Strict, UnknownNestedKeyNamesItsPath) {
  EXPECT_EQ(ErrorOf("policies: [{name: p, backoff: {intial: 1s}}]"),
            "rebound.yaml: policies[0].backoff: unknown key 'intial'");
  EXPECT_EQ(ErrorOf("policies: [{name: p, throttle_backoff: {initial: 0s}}]"),
            "rebound.yaml: policies[0].throttle_backoff.initial: must be positive, got '0s'");
  EXPECT_EQ(ErrorOf("policies: [{name: p, limits: {max_throttled: 0}}]"),
            "rebound.yaml: policies[0].limits.max_throttled: must be a positive integer, got 0");
  EXPECT_EQ(ErrorOf("policies: [{name: p, limits: {count_throttles: maybe}}]"),
            "rebound.yaml: policies[0].limits.count_throttles: expected true or false, got "
            "'maybe'");
  EXPECT_THAT(ErrorOf("server: {grpc_port: 1}"), HasSubstr("server: unknown key 'grpc_port'"));
  EXPECT_THAT(ErrorOf("server: {stream_window: 0}"),
              HasSubstr("server.stream_window: must be a positive integer, got 0"));
  EXPECT_THAT(ErrorOf(EndpointWith("    ratelimit: {rate: 3}\n")),
              HasSubstr("endpoints[0]: unknown key 'ratelimit'"));
  EXPECT_EQ(ErrorOf(EndpointWith("    rate_limit: {qps: 3}\n")),
            "rebound.yaml: endpoints[0].rate_limit: unknown key 'qps'");
  EXPECT_THAT(ErrorOf(EndpointWith("    headers: [{name: A, value: b, secert: true}]\n")),
              HasSubstr("endpoints[0].headers[0]: unknown key 'secert'"));
}

TEST(Strict, DuplicateKeyIsRejected) {
  EXPECT_THAT(ErrorOf("store:\n  path: a.db\n  path: b.db\n"),
              HasSubstr("store: duplicate key 'path'"));
}

TEST(Strict, WrongShapeIsRejected) {
  EXPECT_THAT(ErrorOf("server: [1, 2]"), HasSubstr("server: expected a mapping"));
  EXPECT_THAT(ErrorOf("policies: {name: p}"), HasSubstr("policies: expected a list"));
  EXPECT_THAT(ErrorOf("- a\n- b\n"), HasSubstr("rebound.yaml: the document must be a mapping"));
  EXPECT_THAT(ErrorOf("store: {path: [a]}"), HasSubstr("store.path: expected a single value"));
  EXPECT_THAT(ErrorOf("store: {path: }"), HasSubstr("store.path: missing value"));
}

TEST(Strict, YamlSyntaxErrorGivesTheLineNumber) {
  EXPECT_THAT(ErrorOf("server:\n  grpc_listen: a\n  max_labels: 2: 3\n"),
              HasSubstr("rebound.yaml: line 3, column"));
  EXPECT_THAT(ErrorOf("server:\n  a: 1\n b: 2\n"), HasSubstr("rebound.yaml: line 3, column 2: "));
}

TEST(Strict, OnlyOneDocumentIsAllowed) {
  EXPECT_THAT(ErrorOf("server: {}\n---\nstore: {}\n"), HasSubstr("expected one YAML document"));
}

TEST(Strict, InvalidDurationNamesItsPath) {
  EXPECT_THAT(ErrorOf(EndpointWith("    timeout: fast\n")),
              HasSubstr("rebound.yaml: endpoints[0].timeout: invalid duration 'fast'"));
  EXPECT_THAT(ErrorOf(EndpointWith("    timeout: 30\n")),
              HasSubstr("endpoints[0].timeout: invalid duration '30'"));
}

TEST(Strict, DurationsMustBePositiveAndFinite) {
  EXPECT_THAT(ErrorOf(EndpointWith("    connect_timeout: 0s\n")),
              HasSubstr("endpoints[0].connect_timeout: must be positive"));
  EXPECT_THAT(ErrorOf(EndpointWith("    timeout: -1s\n")),
              HasSubstr("endpoints[0].timeout: must be positive"));
  EXPECT_THAT(ErrorOf("idempotency: {retention: inf}"),
              HasSubstr("idempotency.retention: must be finite"));
  EXPECT_THAT(ErrorOf("server: {shutdown_grace: -1s}"),
              HasSubstr("server.shutdown_grace: must be positive"));
}

TEST(Strict, IntegersMustBePositiveIntegers) {
  EXPECT_THAT(ErrorOf("policies: [{name: p, limits: {max_attempts: 2.5}}]"),
              HasSubstr("policies[0].limits.max_attempts: expected a positive integer, got '2.5'"));
  EXPECT_THAT(ErrorOf("policies: [{name: p, limits: {max_attempts: 0}}]"),
              HasSubstr("policies[0].limits.max_attempts: must be a positive integer, got 0"));
  EXPECT_THAT(ErrorOf("server: {max_batch_size: -5}"),
              HasSubstr("server.max_batch_size: must be a positive integer, got -5"));
  EXPECT_THAT(ErrorOf("store: {max_batch: many}"), HasSubstr("store.max_batch: expected a"));
  EXPECT_THAT(ErrorOf("store: {max_batch: '16'}"),
              HasSubstr("store.max_batch: expected a positive integer, got the string '16'"));
  EXPECT_THAT(ErrorOf(EndpointWith("    max_in_flight: 99999999999\n")),
              HasSubstr("endpoints[0].max_in_flight: too large"));
}

TEST(Strict, BooleansAreTrueOrFalseOnly) {
  EXPECT_THAT(ErrorOf("policies: [{name: p, pause_endpoint_on_rate_limit: yes}]"),
              HasSubstr("policies[0].pause_endpoint_on_rate_limit: expected true or false"));
}

TEST(Strict, EnumsListTheirChoices) {
  EXPECT_THAT(ErrorOf("store: {synchronous: off}"),
              HasSubstr("store.synchronous: invalid value 'off' (one of full, normal)"));
  EXPECT_THAT(ErrorOf("policies: [{name: p, backoff: {jitter: random}}]"),
              HasSubstr("policies[0].backoff.jitter: invalid value 'random'"));
}

TEST(Strict, BackoffMustBeConsistent) {
  EXPECT_THAT(ErrorOf("policies: [{name: p, backoff: {initial: 1m, max: 1s}}]"),
              HasSubstr("policies[0].backoff.initial: must not exceed max"));
  EXPECT_THAT(ErrorOf("policies: [{name: p, backoff: {multiplier: 0.5}}]"),
              HasSubstr("policies[0].backoff.multiplier: must be at least 1"));
  EXPECT_THAT(ErrorOf("policies: [{name: p, backoff: {multiplier: nan}}]"),
              HasSubstr("policies[0].backoff.multiplier: expected a number"));
}

TEST(Strict, IdempotencyHeaderMustBeAToken) {
  EXPECT_THAT(ErrorOf("idempotency: {header: 'Idem Key'}"),
              HasSubstr("idempotency.header: invalid header name"));
}

// --- Retention of ended jobs and the store's checks ------------------------------------------

TEST(Retention, DefaultsAreAWeekForEndedJobsAndThirtyDaysForDeadLetters) {
  const Config config = ParseOk("policies: [{name: p}]");
  for (const char* name : {"default", "p"}) {
    EXPECT_EQ(config.FindPolicy(name)->retention, absl::Hours(24 * 7)) << name;
    EXPECT_EQ(config.FindPolicy(name)->dead_letter_retention, absl::Hours(24 * 30)) << name;
  }
  EXPECT_TRUE(config.store.quick_check);
  EXPECT_EQ(config.store.max_file_bytes, 0u);
}

TEST(Retention, EachPolicySetsItsOwnAndInfKeepsForever) {
  const Config config = ParseOk(
      "policies: [{name: p, retention: 36h, dead_letter_retention: 2160h}, "
      "{name: q, retention: inf, dead_letter_retention: inf}]");
  EXPECT_EQ(config.FindPolicy("p")->retention, absl::Hours(36));
  EXPECT_EQ(config.FindPolicy("p")->dead_letter_retention, absl::Hours(24 * 90));
  EXPECT_EQ(config.FindPolicy("q")->retention, absl::InfiniteDuration());
  EXPECT_EQ(config.FindPolicy("q")->dead_letter_retention, absl::InfiniteDuration());
}

TEST(Retention, ShorterThanTheIdempotencyRetentionIsRefusedNamingThePath) {
  // A purged job takes its key along: the dedupe window would end early.
  EXPECT_THAT(ErrorOf("idempotency: {retention: 48h}\npolicies: [{name: p, retention: 24h}]"),
              HasSubstr("policies[0].retention: 24h is shorter than idempotency.retention (48h)"));
  EXPECT_THAT(
      ErrorOf("policies: [{name: p, dead_letter_retention: 1h}]"),
      HasSubstr("policies[0].dead_letter_retention: 1h is shorter than idempotency.retention"));
  EXPECT_THAT(ErrorOf("policies: [{name: p, retention: 0s}]"), HasSubstr("policies[0].retention"));
  EXPECT_THAT(ErrorOf("policies: [{name: p, retention: soon}]"),
              HasSubstr("policies[0].retention"));
}

TEST(Retention, LeftOutItGrowsToALongerIdempotencyRetention) {
  const Config config = ParseOk("idempotency: {retention: 1440h}\npolicies: [{name: p}]");
  for (const char* name : {"default", "p"}) {
    EXPECT_EQ(config.FindPolicy(name)->retention, absl::Hours(24 * 60)) << name;
    EXPECT_EQ(config.FindPolicy(name)->dead_letter_retention, absl::Hours(24 * 60)) << name;
  }
}

TEST(Retention, StoreQuickCheckAndSizeCapAreReadStrictly) {
  const Config config = ParseOk("store: {quick_check: false, max_file_bytes: 1073741824}");
  EXPECT_FALSE(config.store.quick_check);
  EXPECT_EQ(config.store.max_file_bytes, 1073741824u);
  EXPECT_THAT(ErrorOf("store: {quick_check: sometimes}"), HasSubstr("store.quick_check"));
  EXPECT_THAT(ErrorOf("store: {max_file_bytes: -1}"), HasSubstr("store.max_file_bytes"));
}

// --- Names and references --------------------------------------------------------------------

TEST(Names, DuplicatePolicyNameIsRejected) {
  EXPECT_THAT(ErrorOf("policies: [{name: p}, {name: q}, {name: p}]"),
              HasSubstr("policies[2].name: duplicate policy 'p'"));
}

TEST(Names, DuplicateEndpointNameIsRejected) {
  EXPECT_THAT(ErrorOf(absl::StrCat(kEndpoint, R"(
  - name: lms
    base_url: http://127.0.0.1:9090
    allowed_path_prefixes: [/]
)")),
              HasSubstr("endpoints[1].name: duplicate endpoint 'lms'"));
}

TEST(Names, PolicyAndEndpointNeedPlainNames) {
  EXPECT_THAT(ErrorOf("policies: [{backoff: {}}]"),
              HasSubstr("policies[0].name: required key is missing"));
  EXPECT_THAT(ErrorOf("policies: [{name: 'a b'}]"), HasSubstr("policies[0].name: invalid name"));
  EXPECT_THAT(ErrorOf("endpoints: [{name: x, allowed_path_prefixes: [/]}]"),
              HasSubstr("endpoints[0].base_url: required key is missing"));
}

TEST(Names, UnknownPolicyReferencedByEndpointIsRejected) {
  EXPECT_EQ(ErrorOf(EndpointWith("    policy: nope\n")),
            "rebound.yaml: endpoints[0].policy: unknown policy 'nope'");
}

TEST(Names, EndpointMayReferenceAPolicyDefinedAfterIt) {
  const Config config =
      ParseOk(absl::StrCat(EndpointWith("    policy: later\n"), "policies: [{name: later}]\n"));
  EXPECT_EQ(config.FindEndpoint("lms")->policy, "later");
}

// Endpoints named e0, e1, ... with only their required keys.
std::string ManyEndpoints(size_t n) {
  std::string yaml = "endpoints:\n";
  for (size_t i = 0; i < n; ++i) {
    absl::StrAppend(&yaml, "  - {name: e", i,
                    ", base_url: 'http://h', allowed_path_prefixes: [/]}\n");
  }
  return yaml;
}

TEST(Names, MoreEndpointsThanOneProcessServesAreRefusedWithTheLimit) {
  EXPECT_EQ(ParseOk(ManyEndpoints(kMaxEndpoints)).endpoints.size(), kMaxEndpoints);
  EXPECT_EQ(ErrorOf(ManyEndpoints(kMaxEndpoints + 1)),
            "rebound.yaml: endpoints: 1025 endpoints; one process serves at most 1024");
}

// --- Endpoint URL and paths ------------------------------------------------------------------

TEST(Endpoints, BaseUrlTrailingSlashIsStripped) {
  const Config config = ParseOk(R"(
endpoints:
  - {name: a, base_url: "http://lms.example.edu/", allowed_path_prefixes: [/]}
  - {name: b, base_url: "https://[::1]:8443/moodle//", allowed_path_prefixes: [/]}
)");
  EXPECT_EQ(config.FindEndpoint("a")->base_url, "http://lms.example.edu");
  EXPECT_EQ(config.FindEndpoint("b")->base_url, "https://[::1]:8443/moodle");
}

TEST(Endpoints, BaseUrlMustBePlainHttpOrHttps) {
  const auto error_for = [](absl::string_view url) {
    return ErrorOf(
        absl::StrCat("endpoints: [{name: a, base_url: '", url, "', allowed_path_prefixes: [/]}]"));
  };
  EXPECT_THAT(error_for("ftp://lms.example.edu"),
              HasSubstr("endpoints[0].base_url: invalid URL 'ftp://lms.example.edu': only http"));
  EXPECT_THAT(error_for("lms.example.edu"), HasSubstr("endpoints[0].base_url: invalid URL"));
  EXPECT_THAT(error_for("http://user:pw@lms.example.edu"), HasSubstr("user information"));
  EXPECT_THAT(error_for("http://lms.example.edu/?a=1"), HasSubstr("a query is not allowed"));
  EXPECT_THAT(error_for("http://lms.example.edu/#top"), HasSubstr("a fragment is not allowed"));
  EXPECT_THAT(error_for("http://lms.example.edu:99999"), HasSubstr("the port must be"));
  EXPECT_THAT(error_for("http://:8080"), HasSubstr("missing host"));
  EXPECT_THAT(error_for("http://lms.example.edu/a/../b"), HasSubstr("'..'"));
}

TEST(Endpoints, ProxyIsOptionalExplicitAndWithoutCredentials) {
  EXPECT_EQ(ParseOk(kEndpoint).endpoints[0].proxy, "");
  EXPECT_EQ(
      ParseOk(EndpointWith("    proxy: http://proxy.district.example:3128/\n")).endpoints[0].proxy,
      "http://proxy.district.example:3128");
  EXPECT_THAT(ErrorOf(EndpointWith("    proxy: http://user:pw@proxy:3128\n")),
              HasSubstr("endpoints[0].proxy: invalid URL 'http://user:pw@proxy:3128': user "
                        "information is not allowed"));
  EXPECT_THAT(ErrorOf(EndpointWith("    proxy: http://proxy:3128/path\n")),
              HasSubstr("endpoints[0].proxy: invalid URL 'http://proxy:3128/path': a path is not "
                        "allowed"));
  EXPECT_THAT(ErrorOf(EndpointWith("    proxy: socks5://proxy:1080\n")),
              HasSubstr("endpoints[0].proxy: invalid URL 'socks5://proxy:1080': only http and "
                        "https are allowed"));
}

TEST(Endpoints, PathPrefixesAreRequiredAndStartWithASlash) {
  EXPECT_THAT(ErrorOf("endpoints: [{name: a, base_url: 'http://h'}]"),
              HasSubstr("endpoints[0].allowed_path_prefixes: required key is missing"));
  EXPECT_THAT(ErrorOf("endpoints: [{name: a, base_url: 'http://h', allowed_path_prefixes: []}]"),
              HasSubstr("endpoints[0].allowed_path_prefixes: must list at least one prefix"));
  EXPECT_THAT(
      ErrorOf("endpoints: [{name: a, base_url: 'http://h', allowed_path_prefixes: [/a, api/]}]"),
      HasSubstr("endpoints[0].allowed_path_prefixes[1]: must start with a single '/'"));
  EXPECT_THAT(
      ErrorOf("endpoints: [{name: a, base_url: 'http://h', allowed_path_prefixes: [/a/../]}]"),
      HasSubstr("endpoints[0].allowed_path_prefixes[0]: invalid path prefix"));
}

// --- Headers and secrets ---------------------------------------------------------------------

TEST(Headers, InlineValueIsKept) {
  const Config config =
      ParseOk(EndpointWith("    headers: [{name: Accept, value: application/json}]\n"));
  const auto& headers = config.FindEndpoint("lms")->headers;
  ASSERT_EQ(headers.size(), 1u);
  EXPECT_EQ(headers[0].name, "Accept");
  EXPECT_EQ(headers[0].value, "application/json");
  EXPECT_FALSE(headers[0].secret);
}

TEST(Headers, SecretFromEnvironmentIsResolved) {
  const ScopedEnv env("REBOUND_CONFIG_TEST_TOKEN", "Bearer s3cret");
  const Config config = ParseOk(
      EndpointWith("    headers: [{name: Authorization, value_from_env: REBOUND_CONFIG_TEST_TOKEN, "
                   "secret: true}]\n"));
  const auto& headers = config.FindEndpoint("lms")->headers;
  ASSERT_EQ(headers.size(), 1u);
  EXPECT_EQ(headers[0].value, "Bearer s3cret");
  EXPECT_TRUE(headers[0].secret);
}

TEST(Headers, SecretFromFileIsResolvedWithoutTrailingNewline) {
  const TempFile file("config_test_api_key", "k3y-123\n");
  const Config config = ParseOk(EndpointWith(absl::StrCat(
      "    headers: [{name: X-Api-Key, value_from_file: '", file.path(), "', secret: true}]\n")));
  const auto& headers = config.FindEndpoint("lms")->headers;
  ASSERT_EQ(headers.size(), 1u);
  EXPECT_EQ(headers[0].name, "X-Api-Key");
  EXPECT_EQ(headers[0].value, "k3y-123");
  EXPECT_TRUE(headers[0].secret);
}

TEST(Headers, MissingEnvironmentVariableIsAnErrorNamingTheKey) {
  unsetenv("REBOUND_CONFIG_TEST_ABSENT");
  EXPECT_THAT(ErrorOf(EndpointWith(
                  "    headers: [{name: Authorization, value_from_env: REBOUND_CONFIG_TEST_ABSENT, "
                  "secret: true}]\n")),
              HasSubstr("endpoints[0].headers[0].value_from_env: environment variable "
                        "'REBOUND_CONFIG_TEST_ABSENT' is not set"));
}

TEST(Headers, OptionalHeaderIsSkippedWhenItsSourceIsAbsent) {
  unsetenv("REBOUND_CONFIG_TEST_ABSENT");
  const Config config = ParseOk(EndpointWith(absl::StrCat(
      "    headers:\n"
      "      - {name: Authorization, value_from_env: REBOUND_CONFIG_TEST_ABSENT, secret: true,"
      " optional: true}\n"
      "      - {name: X-Api-Key, value_from_file: '",
      ::testing::TempDir(), "/config_test_no_such_file', secret: true, optional: true}\n",
      "      - {name: Accept, value: application/json}\n")));
  const auto& headers = config.FindEndpoint("lms")->headers;
  ASSERT_EQ(headers.size(), 1u);
  EXPECT_EQ(headers[0].name, "Accept");
}

TEST(Headers, MissingFileIsAnErrorNamingTheKey) {
  EXPECT_THAT(ErrorOf(EndpointWith(absl::StrCat(
                  "    headers: [{name: X-Api-Key, value_from_file: '", ::testing::TempDir(),
                  "/config_test_no_such_file', secret: true}]\n"))),
              HasSubstr("endpoints[0].headers[0].value_from_file: cannot read"));
}

TEST(Headers, SecretWithInlineValueIsRejected) {
  EXPECT_THAT(ErrorOf(EndpointWith(
                  "    headers: [{name: Authorization, value: 'Bearer x', secret: true}]\n")),
              HasSubstr("endpoints[0].headers[0].value: a secret header must use value_from_env or "
                        "value_from_file"));
}

TEST(Headers, ExactlyOneValueSourceIsRequired) {
  EXPECT_THAT(ErrorOf(EndpointWith("    headers: [{name: Accept}]\n")),
              HasSubstr("endpoints[0].headers[0]: one of value, value_from_env or value_from_file "
                        "is required"));
  EXPECT_THAT(ErrorOf(EndpointWith("    headers: [{name: Accept, value: a, value_from_env: B}]\n")),
              HasSubstr("endpoints[0].headers[0]: only one of"));
}

TEST(Headers, OptionalAppliesOnlyToEnvironmentAndFile) {
  EXPECT_THAT(ErrorOf(EndpointWith("    headers: [{name: Accept, value: a, optional: true}]\n")),
              HasSubstr("endpoints[0].headers[0].optional: applies only to"));
}

TEST(Headers, NameMustBeAToken) {
  EXPECT_THAT(ErrorOf(EndpointWith("    headers: [{name: 'Bad Name', value: a}]\n")),
              HasSubstr("endpoints[0].headers[0].name: invalid header name 'Bad Name'"));
  EXPECT_THAT(ErrorOf(EndpointWith("    headers: [{name: 'X:Y', value: a}]\n")),
              HasSubstr("endpoints[0].headers[0].name: invalid header name"));
}

TEST(Headers, ValueWithCrOrLfIsRejected) {
  EXPECT_THAT(ErrorOf(EndpointWith("    headers: [{name: A, value: \"x\\r\\nEvil: 1\"}]\n")),
              HasSubstr("endpoints[0].headers[0].value: the header value contains CR, LF"));
  const ScopedEnv env("REBOUND_CONFIG_TEST_TOKEN", "a\nb");
  const std::string error = ErrorOf(EndpointWith(
      "    headers: [{name: A, value_from_env: REBOUND_CONFIG_TEST_TOKEN, secret: true}]\n"));
  EXPECT_THAT(error,
              HasSubstr("endpoints[0].headers[0].value_from_env: the header value contains"));
  EXPECT_THAT(error, Not(HasSubstr("a\nb")));  // never echo a secret
}

TEST(Headers, DuplicateAndClientManagedNamesAreRejected) {
  EXPECT_THAT(ErrorOf(EndpointWith("    headers: [{name: Accept, value: a}, {name: accept, "
                                   "value: b}]\n")),
              HasSubstr("endpoints[0].headers[1].name: duplicate header 'accept'"));
  EXPECT_THAT(ErrorOf(EndpointWith("    headers: [{name: Host, value: evil.example}]\n")),
              HasSubstr("endpoints[0].headers[0].name: 'Host' is set by the HTTP client"));
  EXPECT_THAT(ErrorOf(EndpointWith("    headers: [{name: idempotency-key, value: k}]\n")),
              HasSubstr("endpoints[0].headers[0].name: 'idempotency-key' is the idempotency"));
}

// --- Endpoint protection ---------------------------------------------------------------------

TEST(Protection, AbsentSectionsGiveTheDocumentedDefaults) {
  ExpectDocumentedProtectionDefaults(ParseOk(kEndpoint).endpoints.at(0));
  // An empty section is the defaults too.
  const Config empty_config = ParseOk(EndpointWith("    circuit_breaker:\n    retry_budget: {}\n"));
  const EndpointConfig& empty = empty_config.endpoints.at(0);
  EXPECT_EQ(empty.circuit_breaker.min_requests, 20);
  EXPECT_EQ(empty.retry_budget.min_retries, 10);
}

TEST(Protection, EveryKeyCanBeSet) {
  const Config config = ParseOk(EndpointWith(R"(    circuit_breaker:
      enabled: false
      failure_ratio: 0.25
      min_requests: 7
      window: 30s
      open_duration: 500ms
      max_open_duration: 1m
      half_open_probes: 1
      count_throttles: true
    retry_budget: {enabled: false, ratio: 1, min_retries: 0}
    rate_limit: {rate: 20, burst: 5}
    slow_start: {window: 0s}
    pacing: {enabled: false, low_water: 150.5, low_water_ratio: 0.5, min_in_flight: 2}
)"));
  const EndpointConfig& e = config.endpoints.at(0);
  EXPECT_FALSE(e.circuit_breaker.enabled);
  EXPECT_EQ(e.circuit_breaker.failure_ratio, 0.25);
  EXPECT_EQ(e.circuit_breaker.min_requests, 7);
  EXPECT_EQ(e.circuit_breaker.window, absl::Seconds(30));
  EXPECT_EQ(e.circuit_breaker.open_duration, absl::Milliseconds(500));
  EXPECT_EQ(e.circuit_breaker.max_open_duration, absl::Minutes(1));
  EXPECT_EQ(e.circuit_breaker.half_open_probes, 1);
  EXPECT_TRUE(e.circuit_breaker.count_throttles);
  EXPECT_FALSE(e.retry_budget.enabled);
  EXPECT_EQ(e.retry_budget.ratio, 1.0);
  EXPECT_EQ(e.retry_budget.min_retries, 0);
  EXPECT_EQ(e.rate_limit.rate, 20);
  EXPECT_EQ(e.rate_limit.burst, 5);
  EXPECT_EQ(e.slow_start.window, absl::ZeroDuration());
  EXPECT_FALSE(e.pacing.enabled);
  EXPECT_EQ(e.pacing.low_water, 150.5);
  EXPECT_EQ(e.pacing.low_water_ratio, 0.5);
  EXPECT_EQ(e.pacing.min_in_flight, 2);
}

TEST(Presets, APresetGivesItsRulesAndHeadersAndTheEndpointsOwnGoOnTop) {
  const Config canvas = ParseOk(EndpointWith(R"(    preset: canvas
    rules:
      - {name: mine, status: [418], action: retry}
)"));
  const EndpointConfig& e = canvas.endpoints.at(0);
  EXPECT_EQ(e.preset, "canvas");
  ASSERT_EQ(e.rules.size(), 2u);
  EXPECT_EQ(e.rules[0].name, "mine");  // the endpoint's own first
  EXPECT_EQ(e.rules[1].name, "canvas-throttle");
  EXPECT_EQ(e.rules[1].action, policy::Action::kRateLimited);
  EXPECT_THAT(e.throttle_headers.remaining, ElementsAre("x-rate-limit-remaining"));
  EXPECT_THAT(e.throttle_headers.cost, ElementsAre("x-request-cost"));
  EXPECT_TRUE(e.throttle_headers.reset.empty());
  EXPECT_TRUE(e.throttle_headers.retry_after);  // HTTP's own: a proxy in front may send it
  EXPECT_EQ(e.pacing.start_in_flight, 1);
  EXPECT_EQ(ParseOk(EndpointWith("    preset: canvas\n    pacing: {start_in_flight: 0}\n"))
                .endpoints.at(0)
                .pacing.start_in_flight,
            0);

  const Config clever = ParseOk(EndpointWith("    preset: clever\n"));
  const EndpointConfig& c = clever.endpoints.at(0);
  EXPECT_TRUE(c.rules.empty());
  ASSERT_EQ(c.throttle_headers.reset.size(), 1u);
  EXPECT_EQ(c.throttle_headers.reset[0].name, "x-ratelimit-reset");
  EXPECT_EQ(c.throttle_headers.reset[0].form, policy::ResetForm::kUnixSeconds);

  const Config d2l = ParseOk(EndpointWith("    preset: d2l\n"));
  const EndpointConfig& d = d2l.endpoints.at(0);
  ASSERT_EQ(d.throttle_headers.reset.size(), 1u);
  EXPECT_EQ(d.throttle_headers.reset[0].form, policy::ResetForm::kDeltaSeconds);
  EXPECT_TRUE(d.throttle_headers.retry_after);

  // The endpoint's own throttle_headers replace the preset's.
  const Config own =
      ParseOk(EndpointWith("    preset: d2l\n    throttle_headers: {remaining: [x-left]}\n"));
  EXPECT_THAT(own.endpoints.at(0).throttle_headers.remaining, ElementsAre("x-left"));
  EXPECT_EQ(ErrorOf(EndpointWith("    preset: blackboard9\n")),
            "rebound.yaml: endpoints[0].preset: unknown preset 'blackboard9' (want blackboard, "
            "canvas, classlink, clever, d2l, google-classroom, moodle, oneroster)");
  const Config google = ParseOk(EndpointWith("    preset: google-classroom\n"));
  const policy::ThrottleHeaders& g = google.endpoints.at(0).throttle_headers;
  EXPECT_TRUE(g.retry_after);
  EXPECT_FALSE(g.ietf);
  EXPECT_TRUE(g.reset.empty() && g.remaining.empty() && g.limit.empty() && g.cost.empty());
  const Config moodle = ParseOk(EndpointWith("    preset: moodle\n"));
  EXPECT_EQ(moodle.endpoints.at(0).rules.size(), 2u);
  const Config blackboard = ParseOk(EndpointWith("    preset: blackboard\n"));
  const policy::ThrottleHeaders& b = blackboard.endpoints.at(0).throttle_headers;
  ASSERT_EQ(b.reset.size(), 2u);
  EXPECT_EQ(b.reset[0].name, "x-rate-limit-reset");
  EXPECT_EQ(b.reset[0].form, policy::ResetForm::kUnixSeconds);
  EXPECT_THAT(b.limit, ElementsAre("x-rate-limit-limit"));
  EXPECT_THAT(b.remaining, ElementsAre("x-rate-limit-remaining"));
  for (const char* name : {"classlink", "oneroster"}) {
    const Config parsed = ParseOk(EndpointWith(absl::StrCat("    preset: ", name, "\n")));
    EXPECT_TRUE(parsed.endpoints.at(0).rules.empty()) << name;
    EXPECT_TRUE(parsed.endpoints.at(0).throttle_headers.reset.empty()) << name;
  }
  EXPECT_THAT(ErrorOf(EndpointWith("    rules: [{name: a, action: retry}, {name: a, action: "
                                   "retry}]\n")),
              HasSubstr("endpoints[0].rules[1].name: duplicate rule 'a'"));
}

TEST(Protection, BurstLeftOutOrZeroIsCeilOfTheRateAndAtLeastOne) {
  const auto burst_of = [](absl::string_view rate_limit) {
    return ParseOk(EndpointWith(absl::StrCat("    rate_limit: ", rate_limit, "\n")))
        .endpoints.at(0)
        .rate_limit.burst;
  };
  EXPECT_EQ(burst_of("{rate: 20}"), 20);
  EXPECT_EQ(burst_of("{rate: 2.5}"), 3);
  EXPECT_EQ(burst_of("{rate: 0.2}"), 1);
  EXPECT_EQ(burst_of("{rate: 8, burst: 0}"), 8);
  EXPECT_EQ(burst_of("{rate: 8, burst: 1}"), 1);
  EXPECT_EQ(burst_of("{rate: 0}"), 0);  // no bucket
}

TEST(ThrottleHeaders, DefaultsAndEveryKey) {
  const Config plain_config = ParseOk(kEndpoint);
  const EndpointConfig& plain = plain_config.endpoints.at(0);
  const policy::ThrottleHeaders defaults;
  EXPECT_TRUE(plain.throttle_headers.retry_after);
  EXPECT_TRUE(plain.throttle_headers.ietf);
  EXPECT_EQ(plain.throttle_headers.remaining, defaults.remaining);
  ASSERT_EQ(plain.throttle_headers.reset.size(), 1u);
  EXPECT_EQ(plain.throttle_headers.reset[0].name, "ratelimit-reset");

  const Config config = ParseOk(EndpointWith(R"(    throttle_headers:
      retry_after: false
      ietf: false
      reset: [{name: X-RateLimit-Reset, form: unix_seconds}, {name: X-Reset-At, form: date}]
      remaining: [X-RateLimit-Remaining]
      limit: []
      cost: [X-Request-Cost]
)"));
  const EndpointConfig& e = config.endpoints.at(0);
  EXPECT_FALSE(e.throttle_headers.retry_after);
  EXPECT_FALSE(e.throttle_headers.ietf);
  ASSERT_EQ(e.throttle_headers.reset.size(), 2u);
  EXPECT_EQ(e.throttle_headers.reset[0].name, "x-ratelimit-reset");  // lower-cased
  EXPECT_EQ(e.throttle_headers.reset[0].form, policy::ResetForm::kUnixSeconds);
  EXPECT_EQ(e.throttle_headers.reset[1].form, policy::ResetForm::kDate);
  EXPECT_THAT(e.throttle_headers.remaining, ElementsAre("x-ratelimit-remaining"));
  EXPECT_TRUE(e.throttle_headers.limit.empty());  // a list given replaces the default
  EXPECT_THAT(e.throttle_headers.cost, ElementsAre("x-request-cost"));
}

TEST(Protection, BadValuesAreRefusedNamingTheKey) {
  const struct {
    const char* section;
    const char* message;
  } cases[] = {
      {"circuit_breaker: {failure_ratio: 0}",
       "rebound.yaml: endpoints[0].circuit_breaker.failure_ratio: must be in (0, 1], got 0"},
      {"circuit_breaker: {failure_ratio: 1.5}",
       "endpoints[0].circuit_breaker.failure_ratio: must be in (0, 1], got 1.5"},
      {"circuit_breaker: {failure_ratio: '0.5'}",
       "endpoints[0].circuit_breaker.failure_ratio: expected a number, got the string '0.5'"},
      {"circuit_breaker: {failure_ratio: .nan}",
       "endpoints[0].circuit_breaker.failure_ratio: expected a number"},
      {"circuit_breaker: {min_requests: 0}",
       "endpoints[0].circuit_breaker.min_requests: must be a positive integer, got 0"},
      {"circuit_breaker: {window: 0s}", "endpoints[0].circuit_breaker.window: must be positive"},
      {"circuit_breaker: {window: 10}", "endpoints[0].circuit_breaker.window: invalid duration"},
      {"circuit_breaker: {window: inf}", "endpoints[0].circuit_breaker.window: must be finite"},
      {"circuit_breaker: {open_duration: 0s}",
       "endpoints[0].circuit_breaker.open_duration: must be positive"},
      {"circuit_breaker: {open_duration: 2s, max_open_duration: 1s}",
       "endpoints[0].circuit_breaker.max_open_duration: max_open_duration (1s) must not be "
       "shorter than open_duration (2s)"},
      {"circuit_breaker: {open_duration: 1m}",
       "endpoints[0].circuit_breaker.open_duration: max_open_duration (30s, the default) must "
       "not be shorter than open_duration (1m)"},
      {"circuit_breaker: {half_open_probes: 0}",
       "endpoints[0].circuit_breaker.half_open_probes: must be a positive integer"},
      {"circuit_breaker: {count_throttles: yes}",
       "endpoints[0].circuit_breaker.count_throttles: expected true or false"},
      {"circuit_breaker: {enabled: 1}",
       "endpoints[0].circuit_breaker.enabled: expected true or false"},
      {"circuit_breaker: {ratio: 0.5}", "endpoints[0].circuit_breaker: unknown key 'ratio'"},
      {"circuit_breaker: [enabled]", "endpoints[0].circuit_breaker: expected a mapping"},
      {"retry_budget: {ratio: 1.5}", "endpoints[0].retry_budget.ratio: must be in [0, 1], got 1.5"},
      {"retry_budget: {ratio: -0.1}", "endpoints[0].retry_budget.ratio: must be in [0, 1]"},
      {"retry_budget: {min_retries: -1}",
       "endpoints[0].retry_budget.min_retries: must be a non-negative integer, got -1"},
      {"retry_budget: {min_retries: 1.5}",
       "endpoints[0].retry_budget.min_retries: expected a non-negative integer"},
      {"retry_budget: {enabled: on}", "endpoints[0].retry_budget.enabled: expected true or false"},
      {"retry_budget: {budget: 3}", "endpoints[0].retry_budget: unknown key 'budget'"},
      {"rate_limit: {rate: -1}",
       "endpoints[0].rate_limit.rate: must be from 0 (no limit) to 1000000 attempts per second"},
      {"rate_limit: {rate: 2000000}", "endpoints[0].rate_limit.rate: must be from 0"},
      {"rate_limit: {rate: .inf}", "endpoints[0].rate_limit.rate: expected a number"},
      {"rate_limit: {rate: fast}", "endpoints[0].rate_limit.rate: expected a number, got 'fast'"},
      {"rate_limit: {rate: 5, burst: -1}",
       "endpoints[0].rate_limit.burst: must be a non-negative integer"},
      {"rate_limit: {qsp: 5}", "endpoints[0].rate_limit: unknown key 'qsp'"},
      {"slow_start: {window: -1s}", "endpoints[0].slow_start.window: must be positive"},
      {"slow_start: {window: 5}", "endpoints[0].slow_start.window: invalid duration"},
      {"slow_start: {ramp: 5s}", "endpoints[0].slow_start: unknown key 'ramp'"},
      {"pacing: {low_water: -5}", "endpoints[0].pacing.low_water: must not be negative"},
      {"pacing: {low_water_ratio: 0}", "endpoints[0].pacing.low_water_ratio: must be"},
      {"pacing: {min_in_flight: 0}",
       "endpoints[0].pacing.min_in_flight: must be a positive integer, got 0"},
      {"pacing: {mark: 5}", "endpoints[0].pacing: unknown key 'mark'"},
      {"throttle_headers: {reset: [{name: X-RateLimit-Reset, form: epoch}]}",
       "endpoints[0].throttle_headers.reset[0].form: unknown form 'epoch' (want delta_seconds, "
       "unix_seconds or date)"},
      {"throttle_headers: {reset: [{name: X-RateLimit-Reset}]}",
       "endpoints[0].throttle_headers.reset[0].form: required key is missing"},
      {"throttle_headers: {reset: [{name: 'X Reset', form: date}]}",
       "endpoints[0].throttle_headers.reset[0].name: invalid header name 'X Reset'"},
      {"throttle_headers: {remaining: [ok, 'bad:name']}",
       "endpoints[0].throttle_headers.remaining[1]: invalid header name 'bad:name'"},
      {"throttle_headers: {cost: X-Request-Cost}",
       "endpoints[0].throttle_headers.cost: expected a list"},
      {"throttle_headers: {ietf: maybe}",
       "endpoints[0].throttle_headers.ietf: expected true or false"},
      {"throttle_headers: {quota: [x]}", "endpoints[0].throttle_headers: unknown key 'quota'"},
  };
  for (const auto& c : cases) {
    EXPECT_THAT(ErrorOf(EndpointWith(absl::StrCat("    ", c.section, "\n"))), HasSubstr(c.message))
        << c.section;
  }
}

TEST(Protection, ErrorsNameTheEndpointByIndex) {
  EXPECT_THAT(ErrorOf(absl::StrCat(kEndpoint, R"(  - name: sis
    base_url: http://127.0.0.1:8081
    allowed_path_prefixes: [/]
    rate_limit: {rate: -5}
)")),
              HasSubstr("endpoints[1].rate_limit.rate: must be from 0"));
}

// --- Files -----------------------------------------------------------------------------------

constexpr absl::string_view kBudgets = R"(
budgets:
  - name: blackboard-app
    quota: {limit: 10000, period: 24h, offset: 5h, reserve: {high: 0.2, normal: 0.1}}
  - name: district
    rate: 5
    burst: 10
    max_in_flight: 8
    split_by: district
)";

TEST(Budgets, EveryKeyAndTheEndpointsThatNameThem) {
  const Config config = ParseOk(absl::StrCat(kBudgets, kEndpoint,
                                             "    budgets: [blackboard-app, district]\n"
                                             "    fairness_label: district\n"));
  ASSERT_EQ(config.budgets.size(), 2u);
  const BudgetConfig& app = config.budgets[0];
  EXPECT_EQ(app.name, "blackboard-app");
  EXPECT_EQ(app.quota.limit, 10000);
  EXPECT_EQ(app.quota.period, absl::Hours(24));
  EXPECT_EQ(app.quota.offset, absl::Hours(5));
  EXPECT_DOUBLE_EQ(app.quota.reserve[static_cast<int>(common::Priority::kHigh)], 0.2);
  EXPECT_DOUBLE_EQ(app.quota.reserve[static_cast<int>(common::Priority::kNormal)], 0.1);
  EXPECT_DOUBLE_EQ(app.quota.reserve[static_cast<int>(common::Priority::kLow)], 0);
  EXPECT_EQ(app.rate_limit.rate, 0);
  EXPECT_EQ(app.max_in_flight, 0);
  EXPECT_EQ(app.split_by, "");
  const BudgetConfig* district = config.FindBudget("district");
  ASSERT_NE(district, nullptr);
  EXPECT_EQ(district->rate_limit.rate, 5);
  EXPECT_EQ(district->rate_limit.burst, 10);
  EXPECT_EQ(district->max_in_flight, 8);
  EXPECT_EQ(district->split_by, "district");
  EXPECT_EQ(district->quota.limit, 0);
  EXPECT_EQ(config.endpoints[0].budgets, (std::vector<std::string>{"blackboard-app", "district"}));
  EXPECT_EQ(config.endpoints[0].fairness_label, "district");
  EXPECT_TRUE(ParseOk(kEndpoint).endpoints[0].budgets.empty());
  // burst defaults as in rate_limit.
  EXPECT_EQ(ParseOk("budgets: [{name: b, rate: 2.5}]").budgets[0].rate_limit.burst, 3);
}

TEST(Budgets, BadValuesAreRefusedNamingTheKey) {
  const struct {
    std::string yaml;
    const char* message;
  } cases[] = {
      {"budgets: [{name: b}]", "budgets[0]: sets no limit: give rate, max_in_flight or quota"},
      {"budgets: [{rate: 1}]", "budgets[0].name: required key is missing"},
      {"budgets: [{name: b, rate: 1}, {name: b, rate: 2}]",
       "budgets[1].name: duplicate budget 'b'"},
      {"budgets: [{name: b, quota: {period: 1h}}]",
       "budgets[0].quota.limit: required key is missing"},
      {"budgets: [{name: b, quota: {limit: 0}}]", "budgets[0].quota.limit: must be a positive"},
      {"budgets: [{name: b, quota: {limit: 5, period: 500ms}}]",
       "budgets[0].quota.period: must be at least 1s, got 500ms"},
      {"budgets: [{name: b, quota: {limit: 5, period: 1h, offset: 1h}}]",
       "budgets[0].quota.offset: must be shorter than the period (1h), got 1h"},
      {"budgets: [{name: b, quota: {limit: 5, reserve: {high: 0.6, normal: 0.4}}}]",
       "budgets[0].quota.reserve: the reserves add up to 1"},
      {"budgets: [{name: b, quota: {limit: 5, reserve: {low: 0.1}}}]",
       "budgets[0].quota.reserve: unknown key 'low'"},
      {"budgets: [{name: b, rate: -1}]", "budgets[0].rate: must be from 0"},
      {"budgets: [{name: b, max_in_flight: -2}]",
       "budgets[0].max_in_flight: must be a non-negative"},
      {"budgets: [{name: b, rate: 1, window: 1s}]", "budgets[0]: unknown key 'window'"},
      {absl::StrCat(kEndpoint, "    budgets: [nope]\n"),
       "endpoints[0].budgets[0]: unknown budget 'nope' (budgets[] must define it)"},
      {absl::StrCat("budgets: [{name: b, rate: 1}]\n", kEndpoint, "    budgets: [b, b]\n"),
       "endpoints[0].budgets[1]: budget 'b' named twice"},
      {"policies: [{name: p, priority: urgent}]",
       "policies[0].priority: invalid value 'urgent' (one of low, normal, high)"},
  };
  for (const auto& c : cases) {
    EXPECT_THAT(ErrorOf(c.yaml), HasSubstr(c.message)) << c.yaml;
  }
}

TEST(Budgets, APolicyNamesItsPriorityNormalByDefault) {
  const Config config = ParseOk("policies: [{name: gradebook, priority: high}, {name: other}]");
  EXPECT_EQ(config.FindPolicy("gradebook")->priority, common::Priority::kHigh);
  EXPECT_EQ(config.FindPolicy("other")->priority, common::Priority::kNormal);
  EXPECT_EQ(config.FindPolicy("default")->priority, common::Priority::kNormal);
}

TEST(Files, MissingConfigFileIsNotFoundWithThePath) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/config_test_absent.yaml");
  const absl::StatusOr<Config> config = LoadConfigFile(path);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(config.status().message(), HasSubstr(path));
}

TEST(Files, ErrorsNameTheFileAsSource) {
  const TempFile file("config_test_bad.yaml", "store: {synchronous: sometimes}\n");
  const absl::StatusOr<Config> config = LoadConfigFile(file.path());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(),
              HasSubstr(absl::StrCat(file.path(), ": store.synchronous: invalid value")));
}

}  // namespace
}  // namespace rebound::config
