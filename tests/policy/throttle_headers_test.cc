// The rate-limit header parser, table-tested on every form it reads.
#include "server/policy/throttle_headers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace rebound::policy {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// 2026-12-01T17:00:00Z, unix 1796144400.
const absl::Time kNow = absl::FromUnixSeconds(1796144400);

Outcome Answer(std::vector<std::pair<std::string, std::string>> headers) {
  Outcome o;
  o.http_status = 429;
  o.headers = std::move(headers);
  return o;
}

struct ResetCase {
  const char* value;
  ResetForm form;
  std::optional<absl::Duration> in;  // from kNow; nullopt: skipped
  const char* error;
};

TEST(ParseResetValueTest, EveryFormAndEveryWayToGetItWrong) {
  const ResetCase cases[] = {
      // Seconds until the reset (D2L's X-Rate-Limit-Reset, the IETF drafts' RateLimit-Reset).
      {"30", ResetForm::kDeltaSeconds, absl::Seconds(30), ""},
      {" 1.5 ", ResetForm::kDeltaSeconds, absl::Milliseconds(1500), ""},
      {"0", ResetForm::kDeltaSeconds, absl::ZeroDuration(), ""},
      {"-5", ResetForm::kDeltaSeconds, std::nullopt, "negative"},
      {"soon", ResetForm::kDeltaSeconds, std::nullopt, "not a number"},
      {"1e3", ResetForm::kDeltaSeconds, std::nullopt, "not a number"},
      {"inf", ResetForm::kDeltaSeconds, std::nullopt, "not a number"},
      {"", ResetForm::kDeltaSeconds, std::nullopt, "empty"},
      {"40000000", ResetForm::kDeltaSeconds, std::nullopt, "too far ahead"},
      // A unix timestamp (Clever's X-RateLimit-Reset).
      {"1796144460", ResetForm::kUnixSeconds, absl::Seconds(60), ""},
      {"1796144400", ResetForm::kUnixSeconds, absl::ZeroDuration(), ""},
      {"1796144399", ResetForm::kUnixSeconds, absl::ZeroDuration(), ""},  // a second of skew
      {"1796144000", ResetForm::kUnixSeconds, std::nullopt, "in the past"},
      {"1796144460000", ResetForm::kUnixSeconds, std::nullopt, "too far ahead"},  // ms
      {"-1", ResetForm::kUnixSeconds, std::nullopt, "negative"},
      // Dates: HTTP-date (IMF-fixdate and the obsolete forms RFC 9110 asks to accept), RFC 3339.
      {"Tue, 01 Dec 2026 17:02:00 GMT", ResetForm::kDate, absl::Minutes(2), ""},
      {"Tuesday, 01-Dec-26 17:02:00 GMT", ResetForm::kDate, absl::Minutes(2), ""},
      {"2026-12-01T17:00:30Z", ResetForm::kDate, absl::Seconds(30), ""},
      {"2026-12-01T18:00:30+01:00", ResetForm::kDate, absl::Seconds(30), ""},
      {"2026-12-01T16:00:00Z", ResetForm::kDate, std::nullopt, "in the past"},
      {"tomorrow-ish", ResetForm::kDate, std::nullopt, "not a date"},
      {"30", ResetForm::kDate, std::nullopt, "not a date"},
  };
  for (const ResetCase& c : cases) {
    SCOPED_TRACE(::testing::Message() << "'" << c.value << "' as " << ResetFormName(c.form));
    const ParsedTime t = ParseResetValue(c.value, c.form, kNow);
    if (c.in.has_value()) {
      ASSERT_TRUE(t.at.has_value()) << t.error;
      EXPECT_EQ(*t.at - kNow, *c.in);
      EXPECT_EQ(t.error, "");
    } else {
      EXPECT_FALSE(t.at.has_value());
      EXPECT_EQ(t.error, c.error);
    }
  }
}

TEST(ResetFormTest, NamesRoundTrip) {
  for (ResetForm f : {ResetForm::kDeltaSeconds, ResetForm::kUnixSeconds, ResetForm::kDate}) {
    EXPECT_EQ(ParseResetForm(ResetFormName(f)), f);
  }
  EXPECT_EQ(ParseResetForm("epoch"), std::nullopt);
}

TEST(ReadThrottleSignalsTest, RetryAfterInBothForms) {
  const ThrottleHeaders defaults;
  ThrottleSignals s = ReadThrottleSignals(Answer({{"retry-after", "7"}}), defaults, kNow);
  EXPECT_EQ(s.retry_after_at, kNow + absl::Seconds(7));
  EXPECT_EQ(s.RetryAt(), kNow + absl::Seconds(7));
  s = ReadThrottleSignals(Answer({{"retry-after", "Tue, 01 Dec 2026 17:00:09 GMT"}}), defaults,
                          kNow);
  EXPECT_EQ(s.retry_after_at, kNow + absl::Seconds(9));
  s = ReadThrottleSignals(Answer({{"retry-after", "later"}}), defaults, kNow);
  EXPECT_FALSE(s.retry_after_at.has_value());
  EXPECT_THAT(s.ignored, ElementsAre("retry-after: neither delta-seconds nor an HTTP-date"));
  ThrottleHeaders off;
  off.retry_after = false;
  EXPECT_FALSE(ReadThrottleSignals(Answer({{"retry-after", "7"}}), off, kNow).RetryAt());
}

// Canvas: no Retry-After; X-Rate-Limit-Remaining and X-Request-Cost on every answer
// (https://canvas.instructure.com/doc/api/file.throttling.html).
TEST(ReadThrottleSignalsTest, CanvasRemainingAndCostWithoutAReset) {
  const ThrottleSignals s =
      ReadThrottleSignals(Answer({{"x-request-cost", "0.0157"}, {"x-rate-limit-remaining", "0.0"}}),
                          ThrottleHeaders{}, kNow);
  EXPECT_EQ(s.RetryAt(), std::nullopt);
  EXPECT_EQ(s.remaining, 0.0);
  EXPECT_DOUBLE_EQ(*s.cost, 0.0157);
  EXPECT_THAT(s.ignored, IsEmpty());
}

// D2L: X-Rate-Limit-Remaining / -Reset (seconds) on normal answers, Retry-After on a 429
// (https://community.d2l.com/brightspace/kb/articles/1195-rate-limiting-and-api-response-headers).
TEST(ReadThrottleSignalsTest, D2lResetInSecondsAndRetryAfterWins) {
  ThrottleHeaders d2l;
  d2l.reset = {{"x-rate-limit-reset", ResetForm::kDeltaSeconds}};
  ThrottleSignals s = ReadThrottleSignals(
      Answer({{"x-rate-limit-remaining", "12"}, {"x-rate-limit-reset", "45"}}), d2l, kNow);
  EXPECT_EQ(s.remaining, 12);
  EXPECT_EQ(s.reset_at, kNow + absl::Seconds(45));
  EXPECT_EQ(s.RetryAt(), kNow + absl::Seconds(45));
  s = ReadThrottleSignals(Answer({{"retry-after", "3"}, {"x-rate-limit-reset", "45"}}), d2l, kNow);
  EXPECT_EQ(s.RetryAt(), kNow + absl::Seconds(3));  // the 429's own answer comes first
}

// Clever: 429 with X-RateLimit-Reset, a unix timestamp ("Rate Limiting" in
// https://dev.clever.com/docs/error-messages).
TEST(ReadThrottleSignalsTest, CleverResetAsAUnixTimestamp) {
  ThrottleHeaders clever;
  clever.reset = {{"x-ratelimit-reset", ResetForm::kUnixSeconds}};
  const ThrottleSignals s = ReadThrottleSignals(
      Answer({{"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", "1796144430"}}), clever, kNow);
  EXPECT_EQ(s.reset_at, kNow + absl::Seconds(30));
  EXPECT_EQ(s.remaining, 0);
}

TEST(ReadThrottleSignalsTest, AnUnusableResetIsSkippedWithItsReasonAndTheNextOneIsRead) {
  ThrottleHeaders two;
  two.reset = {{"x-ratelimit-reset", ResetForm::kUnixSeconds},
               {"x-rate-limit-reset", ResetForm::kDeltaSeconds}};
  const ThrottleSignals s = ReadThrottleSignals(
      Answer({{"x-ratelimit-reset", "1700000000"}, {"x-rate-limit-reset", "5"}}), two, kNow);
  EXPECT_EQ(s.reset_at, kNow + absl::Seconds(5));
  EXPECT_THAT(s.ignored, ElementsAre("x-ratelimit-reset: in the past"));
}

TEST(ReadThrottleSignalsTest, GarbageQuotaValuesAreSkippedWithTheirReasons) {
  const ThrottleSignals s =
      ReadThrottleSignals(Answer({{"x-rate-limit-remaining", "lots"}, {"x-request-cost", "-1"}}),
                          ThrottleHeaders{}, kNow);
  EXPECT_FALSE(s.remaining.has_value());
  EXPECT_FALSE(s.cost.has_value());
  EXPECT_THAT(s.ignored,
              ElementsAre("x-rate-limit-remaining: not a number", "x-request-cost: negative"));
}

// Canvas's X-Rate-Limit-Remaining is its high-water mark less the bucket's level, and the
// bucket fills past the mark: below zero, nothing is left.
TEST(ReadThrottleSignalsTest, ANegativeRemainingIsNothingLeft) {
  const ThrottleSignals s =
      ReadThrottleSignals(Answer({{"x-rate-limit-remaining", "-149.5"}}), ThrottleHeaders{}, kNow);
  EXPECT_EQ(s.remaining, 0.0);
  EXPECT_TRUE(s.ignored.empty());
}

// Drafts up to 06: separate fields, read as named headers by default.
TEST(ReadThrottleSignalsTest, IetfDraft06SeparateFields) {
  const ThrottleSignals s = ReadThrottleSignals(
      Answer({{"ratelimit-limit", "100"}, {"ratelimit-remaining", "0"}, {"ratelimit-reset", "20"}}),
      ThrottleHeaders{}, kNow);
  EXPECT_EQ(s.limit, 100);
  EXPECT_EQ(s.remaining, 0);
  EXPECT_EQ(s.reset_at, kNow + absl::Seconds(20));
}

TEST(ReadThrottleSignalsTest, IetfDraft07Dictionary) {
  const ThrottleSignals s = ReadThrottleSignals(
      Answer({{"ratelimit", "limit=100, remaining=3, reset=12"}, {"ratelimit-policy", "100;w=60"}}),
      ThrottleHeaders{}, kNow);
  EXPECT_EQ(s.limit, 100);
  EXPECT_EQ(s.remaining, 3);
  EXPECT_EQ(s.reset_at, kNow + absl::Seconds(12));
}

// Draft 08 on: a list of quota items; the tightest one speaks, with its policy's quota.
TEST(ReadThrottleSignalsTest, IetfStructuredFieldsTakeTheTightestQuota) {
  const ThrottleSignals s = ReadThrottleSignals(
      Answer({{"ratelimit", R"("burst";r=40;t=1, "daily";r=0;t=3600)"},
              {"ratelimit-policy", R"("burst";q=100;w=1, "daily";q=10000;w=86400)"}}),
      ThrottleHeaders{}, kNow);
  EXPECT_EQ(s.remaining, 0);
  EXPECT_EQ(s.reset_at, kNow + absl::Hours(1));
  EXPECT_EQ(s.limit, 10000);
  EXPECT_EQ(s.window, absl::Hours(24));
  EXPECT_THAT(s.ignored, IsEmpty());
}

TEST(ReadThrottleSignalsTest, NamedHeadersComeBeforeTheIetfFieldsAndIetfCanBeTurnedOff) {
  ThrottleSignals s = ReadThrottleSignals(
      Answer({{"x-rate-limit-remaining", "7"}, {"ratelimit", R"("q";r=1;t=5)"}}), ThrottleHeaders{},
      kNow);
  EXPECT_EQ(s.remaining, 7);
  EXPECT_EQ(s.reset_at, kNow + absl::Seconds(5));  // only the IETF field gave one
  ThrottleHeaders no_ietf;
  no_ietf.ietf = false;
  s = ReadThrottleSignals(Answer({{"ratelimit", R"("q";r=1;t=5)"}}), no_ietf, kNow);
  EXPECT_FALSE(s.remaining.has_value());
  EXPECT_FALSE(s.reset_at.has_value());
}

TEST(ReadThrottleSignalsTest, MalformedIetfItemsAreSkipped) {
  const ThrottleSignals s = ReadThrottleSignals(
      Answer({{"ratelimit", R"(noquote;r=1, "ok";r=x;t=-2)"}}), ThrottleHeaders{}, kNow);
  EXPECT_FALSE(s.remaining.has_value());
  EXPECT_FALSE(s.reset_at.has_value());
  EXPECT_THAT(s.ignored, ElementsAre("ratelimit: not a quota item: noquote;r=1",
                                     "ratelimit r: not a number", "ratelimit t: negative"));
}

TEST(ReadThrottleSignalsTest, UnknownDraft07MembersAreSkipped) {
  const ThrottleSignals s = ReadThrottleSignals(Answer({{"ratelimit", "remaining=2, window=9"}}),
                                                ThrottleHeaders{}, kNow);
  EXPECT_EQ(s.remaining, 2);
  EXPECT_THAT(s.ignored, ElementsAre("ratelimit: not a quota member: window=9"));
}

TEST(ReadThrottleSignalsTest, NoHeadersNoSignals) {
  const ThrottleSignals s = ReadThrottleSignals(Answer({}), ThrottleHeaders{}, kNow);
  EXPECT_EQ(s.RetryAt(), std::nullopt);
  EXPECT_FALSE(s.remaining || s.limit || s.cost || s.window);
  EXPECT_THAT(s.ignored, IsEmpty());
}

}  // namespace
}  // namespace rebound::policy
