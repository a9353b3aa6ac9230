#include "server/policy/policy.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/mock_distributions.h"
#include "absl/random/mocking_bit_gen.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/policy/throttle_headers.h"
#include "tests/policy/outcomes.h"

namespace rebound::policy {
namespace {

using ::testing::_;
using ::testing::HasSubstr;
using ::testing::ReturnArg;

// A fixed instant: nothing here reads the clock.
const absl::Time kNow =
    absl::FromCivil(absl::CivilSecond(2026, 11, 29, 10, 0, 0), absl::UTCTimeZone());

Outcome Transport(TransportError e, std::string detail = "") {
  Outcome o;
  o.error = e;
  o.error_detail = std::move(detail);
  return o;
}

std::shared_ptr<const RE2> Re(const char* pattern) {
  auto re = std::make_shared<const RE2>(pattern);
  EXPECT_TRUE(re->ok()) << pattern;
  return re;
}

Rule CanvasThrottle() {
  Rule r;
  r.name = "canvas-throttle";
  r.statuses = {{403, 403}};
  r.body_regex = Re("Rate Limit Exceeded");
  r.action = Action::kRateLimited;
  return r;
}

Rule MoodleException() {
  Rule r;
  r.name = "moodle-exception";
  r.statuses = {{200, 200}};
  r.body_regex = Re(R"("exception")");
  r.action = Action::kPermanent;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Names and headers

TEST(NamesTest, EnumsHaveStableNames) {
  EXPECT_EQ(ActionName(Action::kSuccess), "success");
  EXPECT_EQ(ActionName(Action::kRetry), "retry");
  EXPECT_EQ(ActionName(Action::kRateLimited), "rate_limited");
  EXPECT_EQ(ActionName(Action::kPermanent), "permanent");
  EXPECT_EQ(TransportErrorName(TransportError::kNone), "");
  EXPECT_EQ(TransportErrorName(TransportError::kConnect), "connect");
  EXPECT_EQ(TransportErrorName(TransportError::kDns), "dns");
  EXPECT_EQ(TransportErrorName(TransportError::kReset), "reset");
  EXPECT_EQ(TransportErrorName(TransportError::kTimeout), "timeout");
  EXPECT_EQ(TransportErrorName(TransportError::kTls), "tls");
  EXPECT_EQ(TransportErrorName(TransportError::kOther), "other");
  EXPECT_EQ(JitterName(Jitter::kNone), "none");
  EXPECT_EQ(JitterName(Jitter::kFull), "full");
  EXPECT_EQ(JitterName(Jitter::kEqual), "equal");
  EXPECT_EQ(JitterName(Jitter::kDecorrelated), "decorrelated");
}

TEST(OutcomeTest, HeaderReturnsTheFirstValueOrNothing) {
  Outcome o = Http(200, "", {{"x-a", "1"}, {"retry-after", "5"}, {"retry-after", "9"}});
  EXPECT_EQ(o.Header("retry-after"), std::optional<absl::string_view>("5"));
  EXPECT_EQ(o.Header("x-a"), std::optional<absl::string_view>("1"));
  EXPECT_EQ(o.Header("x-missing"), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// Classification defaults

struct DefaultRow {
  int status;
  Action action;
};

TEST(ClassifyTest, DefaultsFollowTheDesignTable) {
  const DefaultRow rows[] = {
      {200, Action::kSuccess},   {201, Action::kSuccess},     {204, Action::kSuccess},
      {299, Action::kSuccess},   {429, Action::kRateLimited}, {408, Action::kRetry},
      {500, Action::kRetry},     {502, Action::kRetry},       {503, Action::kRetry},
      {504, Action::kRetry},     {400, Action::kPermanent},   {401, Action::kPermanent},
      {403, Action::kPermanent}, {404, Action::kPermanent},   {409, Action::kPermanent},
      {422, Action::kPermanent}, {499, Action::kPermanent},   {300, Action::kPermanent},
      {301, Action::kPermanent}, {302, Action::kPermanent},   {304, Action::kPermanent},
      {307, Action::kPermanent}, {308, Action::kPermanent},   {100, Action::kPermanent},
      {101, Action::kPermanent}, {501, Action::kPermanent},   {505, Action::kPermanent},
      {511, Action::kPermanent}, {599, Action::kPermanent},   {600, Action::kPermanent},
  };
  const Policy policy;
  for (const DefaultRow& row : rows) {
    SCOPED_TRACE(row.status);
    const Classification c = Classify(policy, Http(row.status));
    EXPECT_EQ(c.action, row.action) << ActionName(c.action);
    EXPECT_EQ(c.why, absl::StrCat(row.status, " default"));
  }
}

TEST(ClassifyTest, EveryTransportErrorIsRetried) {
  const TransportError errors[] = {TransportError::kConnect, TransportError::kDns,
                                   TransportError::kReset,   TransportError::kTimeout,
                                   TransportError::kTls,     TransportError::kOther};
  const Policy policy;
  for (TransportError e : errors) {
    SCOPED_TRACE(TransportErrorName(e));
    const Classification c = Classify(policy, Transport(e));
    EXPECT_EQ(c.action, Action::kRetry);
    EXPECT_EQ(c.why, absl::StrCat("transport ", TransportErrorName(e)));
  }
}

TEST(ClassifyTest, StatusZeroWithoutAnErrorCountsAsTransportOther) {
  const Classification c = Classify(Policy(), Http(0));
  EXPECT_EQ(c.action, Action::kRetry);
  EXPECT_EQ(c.why, "transport other");
}

// ---------------------------------------------------------------------------------------------
// Classification rules

TEST(ClassifyTest, StatusRangeRuleMatchesOnlyInsideItsRanges) {
  Policy policy;
  Rule r;
  r.name = "cloudflare";
  r.statuses = {{520, 527}, {530, 530}};
  r.action = Action::kRetry;
  policy.rules = {r};

  EXPECT_EQ(Classify(policy, Http(520)).action, Action::kRetry);
  EXPECT_EQ(Classify(policy, Http(524)).why, "524 rule cloudflare");
  EXPECT_EQ(Classify(policy, Http(527)).action, Action::kRetry);
  EXPECT_EQ(Classify(policy, Http(530)).action, Action::kRetry);
  EXPECT_EQ(Classify(policy, Http(528)).why, "528 default");
  EXPECT_EQ(Classify(policy, Http(528)).action, Action::kPermanent);
}

TEST(ClassifyTest, RuleWithStatusesNeverMatchesATransportError) {
  Policy policy;
  Rule r;
  r.name = "5xx-permanent";
  r.statuses = {{500, 599}};
  r.action = Action::kPermanent;
  policy.rules = {r};

  const Classification c = Classify(policy, Transport(TransportError::kTimeout));
  EXPECT_EQ(c.action, Action::kRetry);
  EXPECT_EQ(c.why, "transport timeout");
}

TEST(ClassifyTest, RuleWithoutStatusesAlsoSeesTransportErrors) {
  Policy policy;
  Rule r;
  r.name = "no-retry-on-tls";
  r.action = Action::kPermanent;
  policy.rules = {r};

  const Classification c = Classify(policy, Transport(TransportError::kTls));
  EXPECT_EQ(c.action, Action::kPermanent);
  EXPECT_EQ(c.why, "transport tls rule no-retry-on-tls");
}

TEST(ClassifyTest, CanvasThrottle403WithRateLimitBodyIsRateLimited) {
  Policy policy;
  policy.rules = {CanvasThrottle()};

  const Classification throttled =
      Classify(policy, Http(403, "403 Forbidden (Rate Limit Exceeded)"));
  EXPECT_EQ(throttled.action, Action::kRateLimited);
  EXPECT_EQ(throttled.why, "403 rule canvas-throttle");

  // Every condition must hold: a plain 403 or the body on another status keeps the defaults.
  EXPECT_EQ(Classify(policy, Http(403, "unauthorized")).action, Action::kPermanent);
  EXPECT_EQ(Classify(policy, Http(200, "Rate Limit Exceeded")).action, Action::kSuccess);
}

TEST(ClassifyTest, Moodle200WithExceptionBodyIsPermanent) {
  Policy policy;
  policy.rules = {MoodleException()};

  const Classification c =
      Classify(policy, Http(200, R"({"exception":"invalid_parameter_exception","errorcode":"x"})"));
  EXPECT_EQ(c.action, Action::kPermanent);
  EXPECT_EQ(c.why, "200 rule moodle-exception");
  EXPECT_EQ(Classify(policy, Http(200, R"({"id":42})")).action, Action::kSuccess);
}

TEST(ClassifyTest, BodyRuleSeesOnlyTheFirstBodyMatchBytes) {
  Policy policy;
  policy.rules = {CanvasThrottle()};
  const std::string marker = "Rate Limit Exceeded";
  const Outcome o = Http(403, std::string(100, 'x') + marker);

  policy.body_match_bytes = 100 + marker.size() - 1;  // the marker's last byte is cut off
  EXPECT_EQ(Classify(policy, o).action, Action::kPermanent);

  policy.body_match_bytes = 100 + marker.size();  // exactly fits
  EXPECT_EQ(Classify(policy, o).action, Action::kRateLimited);
}

TEST(ClassifyTest, HeaderRuleWithoutRegexNeedsOnlyThePresence) {
  Policy policy;
  Rule r;
  r.name = "throttle-header";
  r.header_name = "x-throttled";
  r.action = Action::kRateLimited;
  policy.rules = {r};

  EXPECT_EQ(Classify(policy, Http(200, "", {{"x-throttled", ""}})).action, Action::kRateLimited);
  EXPECT_EQ(Classify(policy, Http(200, "", {{"x-throttled", ""}})).why, "200 rule throttle-header");
  EXPECT_EQ(Classify(policy, Http(200, "", {{"x-other", "1"}})).action, Action::kSuccess);
}

TEST(ClassifyTest, HeaderRuleWithRegexMatchesTheValue) {
  Policy policy;
  Rule r;
  r.name = "canvas-bucket-empty";
  r.header_name = "x-rate-limit-remaining";
  r.header_regex = Re(R"(^0(\.0+)?$)");
  r.action = Action::kRateLimited;
  policy.rules = {r};

  EXPECT_EQ(Classify(policy, Http(403, "", {{"x-rate-limit-remaining", "0.0"}})).action,
            Action::kRateLimited);
  EXPECT_EQ(Classify(policy, Http(403, "", {{"x-rate-limit-remaining", "12.5"}})).action,
            Action::kPermanent);
  EXPECT_EQ(Classify(policy, Http(403)).action, Action::kPermanent);
}

TEST(ClassifyTest, AnEndpointsRulesComeBeforeThePolicys) {
  Policy policy;
  Rule mine;
  mine.name = "policy-403";
  mine.statuses = {{403, 403}};
  mine.action = Action::kRetry;
  policy.rules = {mine};
  const std::vector<Rule> endpoint = {CanvasThrottle()};
  const Outcome throttled = Http(403, "403 Forbidden (Rate Limit Exceeded)");
  const Classification c = Classify(policy, throttled, &endpoint);
  EXPECT_EQ(c.action, Action::kRateLimited);
  EXPECT_EQ(c.why, "403 rule canvas-throttle");
  EXPECT_EQ(Classify(policy, Http(403, "no"), &endpoint).why, "403 rule policy-403");
  EXPECT_EQ(Classify(policy, throttled).why, "403 rule policy-403");
}

TEST(ClassifyTest, FirstMatchingRuleWins) {
  Policy policy;
  Rule first;
  first.name = "first";
  first.statuses = {{500, 504}};
  first.action = Action::kPermanent;
  Rule second;
  second.name = "second";
  second.statuses = {{503, 503}};
  second.action = Action::kRateLimited;
  policy.rules = {first, second};

  const Classification c = Classify(policy, Http(503));
  EXPECT_EQ(c.action, Action::kPermanent);
  EXPECT_EQ(c.why, "503 rule first");
}

// ---------------------------------------------------------------------------------------------
// Backoff

Backoff Exponential(Jitter jitter) {
  Backoff b;
  b.initial = absl::Milliseconds(200);
  b.max = absl::Seconds(30);
  b.multiplier = 2.0;
  b.jitter = jitter;
  return b;
}

TEST(BackoffTest, BaseBackoffGrowsGeometricallyUntilTheCap) {
  const Backoff b = Exponential(Jitter::kNone);
  EXPECT_EQ(BaseBackoff(b, 1), absl::Milliseconds(200));
  EXPECT_EQ(BaseBackoff(b, 2), absl::Milliseconds(400));
  EXPECT_EQ(BaseBackoff(b, 3), absl::Milliseconds(800));
  EXPECT_EQ(BaseBackoff(b, 8), absl::Milliseconds(25600));
  EXPECT_EQ(BaseBackoff(b, 9), absl::Seconds(30));
  EXPECT_EQ(BaseBackoff(b, 10), absl::Seconds(30));
}

TEST(BackoffTest, BaseBackoffHonoursFractionalMultipliers) {
  Backoff b = Exponential(Jitter::kNone);
  b.multiplier = 1.5;
  EXPECT_EQ(BaseBackoff(b, 3), absl::Milliseconds(450));
}

TEST(BackoffTest, BaseBackoffNeverOverflowsForHugeAttempts) {
  const Backoff b = Exponential(Jitter::kNone);
  EXPECT_EQ(BaseBackoff(b, 64), absl::Seconds(30));
  EXPECT_EQ(BaseBackoff(b, 1000), absl::Seconds(30));
  EXPECT_EQ(BaseBackoff(b, INT_MAX), absl::Seconds(30));
}

TEST(BackoffTest, AttemptBelowOneCountsAsTheFirst) {
  EXPECT_EQ(BaseBackoff(Exponential(Jitter::kNone), 0), absl::Milliseconds(200));
}

TEST(BackoffTest, NoJitterIsTheBaseBackoff) {
  std::mt19937_64 engine(7);
  const Backoff b = Exponential(Jitter::kNone);
  for (int n = 1; n <= 12; ++n) {
    EXPECT_EQ(JitteredBackoff(b, n, absl::ZeroDuration(), engine), BaseBackoff(b, n));
  }
}

TEST(BackoffTest, FullJitterStaysWithinZeroAndBase) {
  std::mt19937_64 engine(42);
  const Backoff b = Exponential(Jitter::kFull);
  const absl::Duration base = BaseBackoff(b, 4);  // 1.6s
  absl::Duration lowest = absl::InfiniteDuration();
  absl::Duration highest = absl::ZeroDuration();
  for (int i = 0; i < 10000; ++i) {
    const absl::Duration d = JitteredBackoff(b, 4, absl::ZeroDuration(), engine);
    ASSERT_GE(d, absl::ZeroDuration());
    ASSERT_LE(d, base);
    lowest = std::min(lowest, d);
    highest = std::max(highest, d);
  }
  // The draws really spread over the interval.
  EXPECT_LT(lowest, base / 10);
  EXPECT_GT(highest, base * 9 / 10);
}

TEST(BackoffTest, EqualJitterStaysWithinHalfBaseAndBase) {
  std::mt19937_64 engine(42);
  const Backoff b = Exponential(Jitter::kEqual);
  const absl::Duration base = BaseBackoff(b, 4);
  for (int i = 0; i < 10000; ++i) {
    const absl::Duration d = JitteredBackoff(b, 4, absl::ZeroDuration(), engine);
    ASSERT_GE(d, base / 2);
    ASSERT_LE(d, base);
  }
}

TEST(BackoffTest, DecorrelatedJitterStaysWithinInitialAndMax) {
  std::mt19937_64 engine(42);
  const Backoff b = Exponential(Jitter::kDecorrelated);
  absl::Duration previous = absl::ZeroDuration();
  for (int i = 0; i < 10000; ++i) {
    const absl::Duration d = JitteredBackoff(b, i + 1, previous, engine);
    ASSERT_GE(d, b.initial);
    ASSERT_LE(d, b.max);
    ASSERT_LE(d,
              std::max(b.initial, (previous == absl::ZeroDuration() ? b.initial : previous) * 3));
    previous = d;
  }
}

TEST(BackoffTest, EveryJitterStaysWithinMaxAtAttemptOneThousand) {
  std::mt19937_64 engine(1);
  for (Jitter j : {Jitter::kNone, Jitter::kFull, Jitter::kEqual, Jitter::kDecorrelated}) {
    SCOPED_TRACE(JitterName(j));
    const Backoff b = Exponential(j);
    for (int i = 0; i < 1000; ++i) {
      const absl::Duration d = JitteredBackoff(b, 1000, absl::Hours(1000), engine);
      ASSERT_GE(d, absl::ZeroDuration());
      ASSERT_LE(d, b.max);
    }
  }
}

// MockingBitGen pins absl::Uniform at the lower or the upper bound of whatever interval the
// implementation asks for, so both ends of each jitter mode are checked exactly.
class PinnedJitterTest : public ::testing::Test {
 protected:
  void PinAtLowerBound() {
    ON_CALL(absl::MockUniform<int64_t>(), Call(absl::IntervalClosedClosed, gen_, _, _))
        .WillByDefault(ReturnArg<1>());
  }
  void PinAtUpperBound() {
    ON_CALL(absl::MockUniform<int64_t>(), Call(absl::IntervalClosedClosed, gen_, _, _))
        .WillByDefault(ReturnArg<2>());
  }
  absl::Duration Draw(Jitter j, int n, absl::Duration previous = absl::ZeroDuration()) {
    return JitteredBackoff(Exponential(j), n, previous, gen_);
  }

  ::testing::NiceMock<absl::MockingBitGen> gen_;
};

TEST_F(PinnedJitterTest, FullJitterSpansZeroToBase) {
  PinAtLowerBound();
  EXPECT_EQ(Draw(Jitter::kFull, 3), absl::ZeroDuration());
  PinAtUpperBound();
  EXPECT_EQ(Draw(Jitter::kFull, 3), absl::Milliseconds(800));
  EXPECT_EQ(Draw(Jitter::kFull, 1000), absl::Seconds(30));
}

TEST_F(PinnedJitterTest, EqualJitterSpansHalfBaseToBase) {
  PinAtLowerBound();
  EXPECT_EQ(Draw(Jitter::kEqual, 3), absl::Milliseconds(400));
  PinAtUpperBound();
  EXPECT_EQ(Draw(Jitter::kEqual, 3), absl::Milliseconds(800));
  EXPECT_EQ(Draw(Jitter::kEqual, 1000), absl::Seconds(30));
}

TEST_F(PinnedJitterTest, DecorrelatedJitterSpansInitialToThreeTimesPrevious) {
  PinAtLowerBound();
  EXPECT_EQ(Draw(Jitter::kDecorrelated, 1), absl::Milliseconds(200));
  EXPECT_EQ(Draw(Jitter::kDecorrelated, 5, absl::Seconds(5)), absl::Milliseconds(200));
  PinAtUpperBound();
  // No previous delay yet: initial stands in for it.
  EXPECT_EQ(Draw(Jitter::kDecorrelated, 1), absl::Milliseconds(600));
  EXPECT_EQ(Draw(Jitter::kDecorrelated, 5, absl::Seconds(5)), absl::Seconds(15));
  // 3 * 20s exceeds the cap.
  EXPECT_EQ(Draw(Jitter::kDecorrelated, 5, absl::Seconds(20)), absl::Seconds(30));
}

// ---------------------------------------------------------------------------------------------
// Retry-After

std::string HttpDate(absl::Time t) {
  return absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", t, absl::UTCTimeZone());
}

TEST(RetryAfterTest, DeltaSecondsAreParsed) {
  EXPECT_EQ(ParseRetryAfter("2", kNow), absl::Seconds(2));
  EXPECT_EQ(ParseRetryAfter(" 3 ", kNow), absl::Seconds(3));
  EXPECT_EQ(ParseRetryAfter("\t120\r\n", kNow), absl::Seconds(120));
  EXPECT_EQ(ParseRetryAfter("0", kNow), absl::ZeroDuration());
}

TEST(RetryAfterTest, HttpDateInTheFutureIsTheTimeUntilThen) {
  EXPECT_EQ(ParseRetryAfter(HttpDate(kNow + absl::Seconds(90)), kNow), absl::Seconds(90));
  EXPECT_EQ(ParseRetryAfter(HttpDate(kNow + absl::Hours(25)), kNow), absl::Hours(25));
}

TEST(RetryAfterTest, ObsoleteHttpDateFormatsAreAccepted) {
  const absl::Time later = kNow + absl::Seconds(42);
  // RFC 850 and asctime(), which RFC 9110 says recipients must accept.
  EXPECT_EQ(ParseRetryAfter(
                absl::FormatTime("%A, %d-%b-%y %H:%M:%S GMT", later, absl::UTCTimeZone()), kNow),
            absl::Seconds(42));
  EXPECT_EQ(
      ParseRetryAfter(absl::FormatTime("%a %b %e %H:%M:%S %Y", later, absl::UTCTimeZone()), kNow),
      absl::Seconds(42));
}

TEST(RetryAfterTest, HttpDateInThePastIsZero) {
  EXPECT_EQ(ParseRetryAfter(HttpDate(kNow - absl::Seconds(30)), kNow), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", kNow), absl::ZeroDuration());
}

TEST(RetryAfterTest, GarbageIsIgnored) {
  EXPECT_EQ(ParseRetryAfter("soon", kNow), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("later please", kNow), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("1.5", kNow), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("5s", kNow), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("Blursday, 99 Foo 2026 25:61:61 GMT", kNow), std::nullopt);
}

TEST(RetryAfterTest, NegativeAndSignedNumbersAreIgnored) {
  EXPECT_EQ(ParseRetryAfter("-5", kNow), std::nullopt);
  EXPECT_EQ(ParseRetryAfter(" -120 ", kNow), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("+5", kNow), std::nullopt);
}

TEST(RetryAfterTest, EmptyIsIgnored) {
  EXPECT_EQ(ParseRetryAfter("", kNow), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("   ", kNow), std::nullopt);
}

// Documented behaviour: delta-seconds too large to be meaningful saturate at a large finite
// duration (decades) instead of overflowing; Decide() then clamps to max_retry_after.
TEST(RetryAfterTest, HugeDeltaSecondsSaturateInsteadOfOverflowing) {
  for (const char* huge :
       {"99999999999999999999", "18446744073709551616", "9223372036854775807", "4000000000"}) {
    SCOPED_TRACE(huge);
    const std::optional<absl::Duration> ra = ParseRetryAfter(huge, kNow);
    ASSERT_TRUE(ra.has_value());
    EXPECT_GE(*ra, absl::Hours(24 * 365 * 30));
    EXPECT_LT(*ra, absl::InfiniteDuration());
  }
}

// ---------------------------------------------------------------------------------------------
// Decide

class DecideTest : public ::testing::Test {
 protected:
  DecideTest() {
    policy_.backoff = Exponential(Jitter::kNone);     // deterministic delays
    policy_.throttle_backoff.jitter = Jitter::kNone;  // 1s, 2s, 4s ... 1m
    ctx_.attempt = 1;
    ctx_.first_attempt_at = kNow - absl::Seconds(1);
  }

  Decision Run(const Outcome& outcome) { return Decide(policy_, outcome, ctx_, kNow, engine_); }

  Policy policy_;
  AttemptContext ctx_;
  std::mt19937_64 engine_{2026};
};

TEST_F(DecideTest, SuccessSucceeds) {
  const Decision d = Run(Http(200));
  EXPECT_EQ(d.kind, Decision::Kind::kSucceed);
  EXPECT_EQ(d.classification.action, Action::kSuccess);
  EXPECT_EQ(d.reason, "succeeded: 200 default");
}

TEST_F(DecideTest, PermanentErrorIsNeverRetried) {
  for (int status : {400, 404, 301}) {
    SCOPED_TRACE(status);
    const Decision d = Run(Http(status, "", {{"retry-after", "1"}}));
    EXPECT_EQ(d.kind, Decision::Kind::kFail);
    EXPECT_EQ(d.classification.action, Action::kPermanent);
    EXPECT_EQ(d.next_attempt_at, absl::InfinitePast());
    EXPECT_FALSE(d.pause_endpoint);
  }
  EXPECT_EQ(Run(Http(404)).reason, "stop: 404 default permanent");
}

TEST_F(DecideTest, RetryReasonNamesTimeClassificationAndBackoff) {
  ctx_.attempt = 2;
  const Decision d = Run(Http(503));
  EXPECT_EQ(d.kind, Decision::Kind::kRetry);
  EXPECT_EQ(d.delay, absl::Milliseconds(400));
  EXPECT_EQ(d.next_attempt_at, kNow + absl::Milliseconds(400));
  EXPECT_EQ(d.retry_after, std::nullopt);
  EXPECT_FALSE(d.pause_endpoint);
  EXPECT_EQ(d.reason, "retry at 2026-11-29T10:00:00.400Z: 503 default, backoff 400ms");
}

TEST_F(DecideTest, TransportErrorIsRetriedAndItsDetailKept) {
  const Decision d =
      Run(Transport(TransportError::kTimeout, "Operation timed out after 5000 milliseconds"));
  EXPECT_EQ(d.kind, Decision::Kind::kRetry);
  EXPECT_EQ(d.classification.why, "transport timeout");
  EXPECT_THAT(d.reason, HasSubstr("transport timeout (Operation timed out after 5000"));
  EXPECT_THAT(d.reason, HasSubstr("backoff 200ms"));
}

TEST_F(DecideTest, RetryAfterIsAFloorNotACeiling) {
  const Decision d = Run(Http(503, "", {{"retry-after", "5"}}));  // backoff would be 200ms
  EXPECT_EQ(d.kind, Decision::Kind::kRetry);
  EXPECT_EQ(d.delay, absl::Seconds(5));
  EXPECT_EQ(d.retry_after, absl::Seconds(5));
  EXPECT_EQ(d.next_attempt_at, kNow + absl::Seconds(5));
  EXPECT_EQ(d.reason, "retry at 2026-11-29T10:00:05.000Z: 503 default, Retry-After 5s");
  EXPECT_FALSE(d.pause_endpoint) << "only rate_limited outcomes pause the endpoint";
}

TEST_F(DecideTest, RetryAfterShorterThanTheBackoffDoesNotShortenIt) {
  ctx_.attempt = 4;  // backoff 1.6s
  const Decision d = Run(Http(503, "", {{"retry-after", "1"}}));
  EXPECT_EQ(d.kind, Decision::Kind::kRetry);
  EXPECT_EQ(d.delay, absl::Milliseconds(1600));
  EXPECT_EQ(d.retry_after, absl::Seconds(1));
  EXPECT_THAT(d.reason, HasSubstr("backoff 1.6s"));
}

TEST_F(DecideTest, RetryAfterAsHttpDateIsAFloorToo) {
  const Decision d = Run(Http(503, "", {{"retry-after", HttpDate(kNow + absl::Seconds(7))}}));
  EXPECT_EQ(d.delay, absl::Seconds(7));
  EXPECT_EQ(d.retry_after, absl::Seconds(7));
}

TEST_F(DecideTest, UnparsableRetryAfterOnAThrottleFallsBackToTheThrottleBackoff) {
  const Decision d = Run(Http(429, "", {{"retry-after", "soon"}}));
  EXPECT_EQ(d.kind, Decision::Kind::kRetry);
  EXPECT_EQ(d.retry_after, std::nullopt);
  EXPECT_TRUE(d.throttle_backoff());
  EXPECT_EQ(d.pause_until, kNow + absl::Seconds(1));
}

TEST_F(DecideTest, UnparsableRetryAfterOnA503FallsBackToTheBackoff) {
  const Decision d = Run(Http(503, "", {{"retry-after", "soon"}}));
  EXPECT_EQ(d.kind, Decision::Kind::kRetry);
  EXPECT_EQ(d.delay, absl::Milliseconds(200));
  EXPECT_EQ(d.retry_after, std::nullopt);
  EXPECT_FALSE(d.throttle_backoff());
}

TEST_F(DecideTest, RetryAfterIsClampedByMaxRetryAfter) {
  policy_.limits.max_retry_after = absl::Minutes(10);
  const Decision d = Run(Http(503, "", {{"retry-after", "3600"}}));
  EXPECT_EQ(d.kind, Decision::Kind::kRetry);
  EXPECT_EQ(d.delay, absl::Minutes(10));
  EXPECT_EQ(d.retry_after, absl::Minutes(10));
}

TEST_F(DecideTest, HugeRetryAfterIsClampedByMaxRetryAfter) {
  const Decision d = Run(Http(429, "", {{"retry-after", "99999999999999999999"}}));
  EXPECT_EQ(d.kind, Decision::Kind::kRetry);
  EXPECT_EQ(d.delay, policy_.limits.max_retry_after);
}

TEST_F(DecideTest, RateLimitedWithRetryAfterPausesTheEndpoint) {
  const Decision d = Run(Http(429, "", {{"retry-after", "2"}}));
  EXPECT_EQ(d.kind, Decision::Kind::kRetry);
  EXPECT_EQ(d.classification.action, Action::kRateLimited);
  EXPECT_TRUE(d.throttled());
  EXPECT_FALSE(d.throttle_backoff());
  EXPECT_TRUE(d.pause_endpoint);
  EXPECT_EQ(d.pause_until, kNow + absl::Seconds(2));
  EXPECT_EQ(d.next_attempt_at, kNow + absl::Seconds(2));
  EXPECT_EQ(d.reason, "retry at 2026-11-29T10:00:02.000Z: 429 default, Retry-After 2s");
}

TEST_F(DecideTest, AThrottleWaitsForTheUpstreamsTimeNotOnTheErrorBackoff) {
  ctx_.attempt = 4;  // an error backoff would be 1.6s
  const Decision d = Run(Http(429, "", {{"retry-after", "1"}}));
  EXPECT_EQ(d.delay, absl::Seconds(1));
  EXPECT_EQ(d.next_attempt_at, kNow + absl::Seconds(1));
}

// No time named: the endpoint pauses for the throttle backoff at the gate's level, and the job
// is due at once, to wait in the endpoint's queue (RATE_LIMITED) rather than on a timer.
TEST_F(DecideTest, RateLimitedWithoutATimePausesTheEndpointForTheThrottleBackoff) {
  const Decision d = Run(Http(429));
  EXPECT_EQ(d.kind, Decision::Kind::kRetry);
  EXPECT_TRUE(d.throttled());
  EXPECT_TRUE(d.throttle_backoff());
  EXPECT_TRUE(d.pause_endpoint);
  EXPECT_FALSE(d.retry_after.has_value());
  EXPECT_EQ(d.pause_until, kNow + absl::Seconds(1));
  EXPECT_EQ(d.delay, absl::ZeroDuration());
  EXPECT_EQ(d.next_attempt_at, kNow);
  EXPECT_EQ(d.reason,
            "retry at 2026-11-29T10:00:01.000Z: 429 default, throttle backoff 1s (level 1)");
}

TEST_F(DecideTest, TheThrottleBackoffGrowsWithTheEndpointsLevelUpToItsMax) {
  const std::pair<int, absl::Duration> steps[] = {{1, absl::Seconds(1)},
                                                  {2, absl::Seconds(2)},
                                                  {3, absl::Seconds(4)},
                                                  {7, absl::Minutes(1)},
                                                  {64, absl::Minutes(1)}};
  for (const auto& [level, wait] : steps) {
    SCOPED_TRACE(level);
    ctx_.throttle_level = level;
    const Decision d = Run(Http(429));
    EXPECT_EQ(d.pause_until, kNow + wait);
    EXPECT_THAT(d.reason, HasSubstr(absl::StrCat("(level ", level, ")")));
  }
}

TEST_F(DecideTest, AZeroRetryAfterOnAThrottleIsNoTime) {
  const Decision d = Run(Http(429, "", {{"retry-after", "0"}}));
  EXPECT_TRUE(d.throttle_backoff());
  EXPECT_EQ(d.pause_until, kNow + absl::Seconds(1));
}

TEST_F(DecideTest, WithoutTheEndpointPauseAThrottledJobWaitsOutTheThrottleBackoffItself) {
  policy_.pause_endpoint_on_rate_limit = false;
  ctx_.throttle_level = 2;
  const Decision d = Run(Http(429));
  EXPECT_EQ(d.kind, Decision::Kind::kRetry);
  EXPECT_TRUE(d.throttle_backoff());
  EXPECT_FALSE(d.pause_endpoint);
  EXPECT_EQ(d.delay, absl::Seconds(2));
  EXPECT_EQ(d.next_attempt_at, kNow + absl::Seconds(2));
}

TEST_F(DecideTest, ThrottlesDoNotSpendMaxAttempts) {
  ctx_.attempt = 5;  // all five throttled but this one: max_attempts 5 is not reached
  ctx_.throttled = 4;
  EXPECT_EQ(Run(Http(429)).kind, Decision::Kind::kRetry);
  EXPECT_EQ(Run(Http(503)).kind, Decision::Kind::kRetry);
  ctx_.attempt = 9;  // 4 throttled, this is the fifth that counts
  const Decision d = Run(Http(503));
  EXPECT_EQ(d.kind, Decision::Kind::kExhaust);
  EXPECT_EQ(d.reason, "stop: attempts exhausted (5/5) after 503 default");
}

TEST_F(DecideTest, TheErrorBackoffCountsOnlyTheAttemptsThatCount) {
  ctx_.attempt = 4;
  ctx_.throttled = 2;  // the second attempt that counts: 400ms, not the fourth's 1.6s
  EXPECT_EQ(Run(Http(503)).delay, absl::Milliseconds(400));
}

TEST_F(DecideTest, CountThrottlesMakesEveryThrottleAnAttempt) {
  policy_.limits.count_throttles = true;
  ctx_.attempt = 5;
  ctx_.throttled = 4;
  const Decision d = Run(Http(429));
  EXPECT_EQ(d.kind, Decision::Kind::kExhaust);
  EXPECT_EQ(d.reason, "stop: attempts exhausted (5/5) after 429 default");
  ctx_.attempt = 4;
  ctx_.throttled = 0;
  EXPECT_EQ(Run(Http(503)).delay, absl::Milliseconds(1600));
}

TEST_F(DecideTest, MaxThrottledExhausts) {
  policy_.limits.max_throttled = 3;
  ctx_.attempt = 3;
  ctx_.throttled = 2;
  const Decision d = Run(Http(429));
  EXPECT_EQ(d.kind, Decision::Kind::kExhaust);
  EXPECT_TRUE(d.throttled());
  EXPECT_EQ(d.reason, "stop: throttled 3 times (max_throttled 3) after 429 default");
  ctx_.throttled = 1;
  EXPECT_EQ(Run(Http(429)).kind, Decision::Kind::kRetry);
  ctx_.throttled = 2;  // an error is not a throttle
  EXPECT_EQ(Run(Http(503)).kind, Decision::Kind::kRetry);
}

TEST_F(DecideTest, AThrottleBackoffBeyondMaxElapsedOrTheDeadlineExhausts) {
  ctx_.throttle_level = 6;  // 32s
  ctx_.deadline = kNow + absl::Seconds(10);
  Decision d = Run(Http(429));
  EXPECT_EQ(d.kind, Decision::Kind::kExhaust);
  EXPECT_THAT(d.reason, HasSubstr("stop: deadline would pass"));
  EXPECT_FALSE(d.pause_endpoint);
  ctx_.deadline = absl::InfiniteFuture();
  ctx_.first_attempt_at = kNow - absl::Hours(1) + absl::Seconds(20);
  d = Run(Http(429));
  EXPECT_EQ(d.kind, Decision::Kind::kExhaust);
  EXPECT_THAT(d.reason, HasSubstr("stop: max_elapsed 1h would be exceeded"));
}

TEST_F(DecideTest, PolicyCanTurnTheEndpointPauseOff) {
  policy_.pause_endpoint_on_rate_limit = false;
  const Decision d = Run(Http(429, "", {{"retry-after", "2"}}));
  EXPECT_EQ(d.kind, Decision::Kind::kRetry);
  EXPECT_FALSE(d.pause_endpoint);
}

// Canvas throttles with 403 "Rate Limit Exceeded" and X-Rate-Limit-Remaining, and sends no
// Retry-After and no reset time (https://canvas.instructure.com/doc/api/file.throttling.html):
// nothing tells when to resume, so the endpoint pauses for the throttle backoff.
TEST_F(DecideTest, CanvasThrottleRuleDrivesAThrottleBackoff) {
  policy_.rules = {CanvasThrottle()};
  const Decision d = Run(Http(403, "403 Forbidden (Rate Limit Exceeded)",
                              {{"x-rate-limit-remaining", "0.0"}, {"x-request-cost", "0.05"}}));
  EXPECT_EQ(d.kind, Decision::Kind::kRetry);
  EXPECT_EQ(d.classification.action, Action::kRateLimited);
  EXPECT_FALSE(d.retry_after.has_value());
  EXPECT_TRUE(d.throttle_backoff());
  EXPECT_TRUE(d.pause_endpoint);
  EXPECT_THAT(d.reason, HasSubstr(": 403 rule canvas-throttle, throttle backoff 1s (level 1)"));
}

// Clever answers a throttle with 429 and X-RateLimit-Reset, a unix timestamp ("Rate
// Limiting" in https://dev.clever.com/docs/error-messages).
TEST_F(DecideTest, RateLimitedWithAResetHeaderWaitsForTheResetAndPausesTheEndpoint) {
  ThrottleHeaders clever;
  clever.reset = {{"x-ratelimit-reset", ResetForm::kUnixSeconds}};
  ctx_.throttle_headers = &clever;
  const std::string reset = absl::StrCat(absl::ToUnixSeconds(kNow) + 30);
  const Decision d = Run(Http(429, "", {{"x-ratelimit-reset", reset}}));
  EXPECT_EQ(d.kind, Decision::Kind::kRetry);
  EXPECT_EQ(d.retry_after, absl::Seconds(30));
  EXPECT_EQ(d.next_attempt_at, kNow + absl::Seconds(30));
  EXPECT_TRUE(d.pause_endpoint);
  EXPECT_EQ(d.reason, "retry at 2026-11-29T10:00:30.000Z: 429 default, rate-limit reset 30s");
  // Clamped like a Retry-After.
  policy_.limits.max_retry_after = absl::Seconds(10);
  EXPECT_EQ(Run(Http(429, "", {{"x-ratelimit-reset", reset}})).retry_after, absl::Seconds(10));
  // A Retry-After, when the answer has both, is the upstream's word for this request.
  EXPECT_EQ(Run(Http(429, "", {{"retry-after", "4"}, {"x-ratelimit-reset", reset}})).retry_after,
            absl::Seconds(4));
}

TEST_F(DecideTest, AResetHeaderOnAnAnswerThatIsNoThrottleIsNoWait) {
  ThrottleHeaders d2l;
  d2l.reset = {{"x-rate-limit-reset", ResetForm::kDeltaSeconds}};
  ctx_.throttle_headers = &d2l;
  // D2L sends its quota headers on every answer: on a 503 they tell the window, not a retry.
  const Decision d = Run(Http(503, "", {{"x-rate-limit-reset", "45"}}));
  EXPECT_EQ(d.kind, Decision::Kind::kRetry);
  EXPECT_FALSE(d.retry_after.has_value());
  EXPECT_EQ(d.delay, absl::Milliseconds(200));
}

TEST_F(DecideTest, AnUnusableResetFallsBackToTheThrottleBackoff) {
  ThrottleHeaders clever;
  clever.reset = {{"x-ratelimit-reset", ResetForm::kUnixSeconds}};
  ctx_.throttle_headers = &clever;
  const std::string past = absl::StrCat(absl::ToUnixSeconds(kNow) - 600);
  const Decision d = Run(Http(429, "", {{"x-ratelimit-reset", past}}));
  EXPECT_FALSE(d.retry_after.has_value());
  EXPECT_TRUE(d.throttle_backoff());
  EXPECT_EQ(d.pause_until, kNow + absl::Seconds(1));
}

TEST_F(DecideTest, AThrottleSaysWhatItWaitsForAndSkippedHeaderValuesAreCountedByReason) {
  EXPECT_EQ(Run(Http(429, "", {{"retry-after", "2"}})).throttle_wait, ThrottleWait::kRetryAfter);
  EXPECT_EQ(Run(Http(429, "", {{"ratelimit-reset", "3"}})).throttle_wait, ThrottleWait::kReset);
  EXPECT_EQ(Run(Http(429)).throttle_wait, ThrottleWait::kBackoff);
  EXPECT_EQ(Run(Http(503, "", {{"retry-after", "2"}})).throttle_wait, ThrottleWait::kNone);
  ThrottleHeaders clever;
  clever.reset = {{"x-ratelimit-reset", ResetForm::kUnixSeconds}};
  ctx_.throttle_headers = &clever;
  const std::string past = absl::StrCat(absl::ToUnixSeconds(kNow) - 600);
  const Decision d =
      Run(Http(429, "", {{"x-ratelimit-reset", past}, {"x-ratelimit-remaining", "lots"}}));
  EXPECT_EQ(d.ignored[static_cast<size_t>(IgnoredReason::kPast)], 1);
  EXPECT_EQ(d.ignored[static_cast<size_t>(IgnoredReason::kUnparsable)], 1);
  EXPECT_EQ(d.ignored[static_cast<size_t>(IgnoredReason::kNegative)], 0);
  EXPECT_EQ(IgnoredReasonName(IgnoredReason::kTooFarAhead), "too_far_ahead");
  EXPECT_EQ(ThrottleWaitName(ThrottleWait::kReset), "reset");
  // A success reads the quota only when asked to (an endpoint that paces).
  EXPECT_FALSE(Run(Http(200, "", {{"x-rate-limit-remaining", "5"}})).quota.remaining.has_value());
  ctx_.read_quota = true;
  EXPECT_EQ(Run(Http(200, "", {{"x-rate-limit-remaining", "5"}})).quota.remaining, 5.0);
}

TEST_F(DecideTest, RetryAfterCanBeIgnoredForAnEndpointThatMisusesIt) {
  ThrottleHeaders no_retry_after;
  no_retry_after.retry_after = false;
  ctx_.throttle_headers = &no_retry_after;
  const Decision d = Run(Http(429, "", {{"retry-after", "600"}}));
  EXPECT_FALSE(d.retry_after.has_value());
  EXPECT_TRUE(d.throttle_backoff());
  EXPECT_EQ(d.pause_until, kNow + absl::Seconds(1));
}

TEST_F(DecideTest, MaxAttemptsExhausts) {
  ctx_.attempt = 5;
  const Decision d = Run(Http(503));
  EXPECT_EQ(d.kind, Decision::Kind::kExhaust);
  EXPECT_EQ(d.classification.action, Action::kRetry);
  EXPECT_EQ(d.classification.why, "503 default");
  EXPECT_EQ(d.reason, "stop: attempts exhausted (5/5) after 503 default");
  EXPECT_FALSE(d.pause_endpoint);
}

TEST_F(DecideTest, AttemptBeforeTheLastStillRetries) {
  ctx_.attempt = 4;
  EXPECT_EQ(Run(Http(503)).kind, Decision::Kind::kRetry);
}

TEST_F(DecideTest, MaxElapsedExhausts) {
  ctx_.first_attempt_at = kNow - absl::Hours(1) + absl::Milliseconds(100);  // backoff 200ms
  const Decision d = Run(Http(502));
  EXPECT_EQ(d.kind, Decision::Kind::kExhaust);
  EXPECT_EQ(d.classification.action, Action::kRetry);
  EXPECT_THAT(d.reason, HasSubstr("stop: max_elapsed 1h would be exceeded"));
}

TEST_F(DecideTest, RetryLandingExactlyOnMaxElapsedIsAllowed) {
  ctx_.first_attempt_at = kNow - absl::Hours(1) + absl::Milliseconds(200);
  EXPECT_EQ(Run(Http(502)).kind, Decision::Kind::kRetry);
}

TEST_F(DecideTest, DeadlineExhausts) {
  ctx_.deadline = kNow + absl::Milliseconds(100);  // backoff 200ms
  const Decision d = Run(Http(504));
  EXPECT_EQ(d.kind, Decision::Kind::kExhaust);
  EXPECT_EQ(d.classification.action, Action::kRetry);
  EXPECT_THAT(d.reason, HasSubstr("stop: deadline would pass"));
}

TEST_F(DecideTest, RetryAfterBeyondTheDeadlineExhausts) {
  ctx_.deadline = kNow + absl::Seconds(10);
  const Decision d = Run(Http(429, "", {{"retry-after", "60"}}));
  EXPECT_EQ(d.kind, Decision::Kind::kExhaust);
  EXPECT_EQ(d.classification.action, Action::kRateLimited);
  EXPECT_FALSE(d.pause_endpoint);
}

TEST_F(DecideTest, PinnedFullJitterDelayIsTheDrawnValue) {
  ::testing::NiceMock<absl::MockingBitGen> gen;
  ON_CALL(absl::MockUniform<int64_t>(), Call(absl::IntervalClosedClosed, gen, _, _))
      .WillByDefault(ReturnArg<2>());  // the upper bound
  policy_.backoff.jitter = Jitter::kFull;
  ctx_.attempt = 3;
  const Decision d = Decide(policy_, Http(500), ctx_, kNow, gen);
  EXPECT_EQ(d.delay, absl::Milliseconds(800));
  EXPECT_EQ(d.reason, "retry at 2026-11-29T10:00:00.800Z: 500 default, backoff 800ms");
}

}  // namespace
}  // namespace rebound::policy
