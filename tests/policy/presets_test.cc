// The LMS presets, table-tested: how each classifies its LMS's answers, and which of the answers'
// headers it reads (docs/presets.md).
#include "server/policy/presets.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "tests/policy/outcomes.h"

namespace rebound::policy {
namespace {

using ::testing::IsEmpty;

// 2026-12-01T17:00:00Z, unix 1796144400.
const absl::Time kNow = absl::FromUnixSeconds(1796144400);

const Preset& Named(absl::string_view name) {
  const Preset* p = FindPreset(name);
  EXPECT_NE(p, nullptr) << name;
  static const Preset kNone;
  return p != nullptr ? *p : kNone;
}

Action ClassifyWith(const Preset& preset, const Outcome& outcome) {
  return Classify(Policy{}, outcome, &preset.rules).action;
}

struct Row {
  int status;
  const char* body;
  Action want;
};

void ExpectRows(absl::string_view preset_name, const std::vector<Row>& rows) {
  const Preset& preset = Named(preset_name);
  for (const Row& row : rows) {
    EXPECT_EQ(ClassifyWith(preset, Http(row.status, row.body)), row.want)
        << preset_name << ": " << row.status << " " << row.body;
  }
}

TEST(PresetsTest, NamesAreListedInOrderAndEachIsFound) {
  EXPECT_EQ(PresetNames(),
            "blackboard, canvas, classlink, clever, d2l, google-classroom, moodle, oneroster");
  for (const char* name : {"blackboard", "canvas", "classlink", "clever", "d2l", "google-classroom",
                           "moodle", "oneroster"}) {
    EXPECT_NE(FindPreset(name), nullptr) << name;
  }
  EXPECT_EQ(FindPreset("blackboard9"), nullptr);
}

// Moodle's REST server answers an exception with HTTP 200 and its JSON error: permanent, except
// the codes of a site in maintenance or a database that briefly refused.
TEST(PresetsTest, MoodleA200ExceptionIsPermanentUnlessItsCodeIsTransient) {
  const auto error = [](absl::string_view exception, absl::string_view code) {
    return absl::StrCat(R"({"exception":")", exception, R"(","errorcode":")", code,
                        R"(","message":"whatever it says"})");
  };
  const std::string maintenance = error("moodle_exception", "sitemaintenance");
  const std::string connection = error("dml_connection_exception", "dbconnectionfailed");
  const std::string read = error("dml_read_exception", "dmlreadexception");
  const std::string write = error("dml_write_exception", "dmlwriteexception");
  const std::string token = error("moodle_exception", "invalidtoken");
  const std::string access = error("webservice_access_exception", "accessexception");
  const std::string parameter = error("invalid_parameter_exception", "invalidparameter");
  // A code that only starts like a transient one is not one.
  const std::string longer = error("moodle_exception", "sitemaintenancefoo");
  const std::string no_code = R"({"exception":"TypeError","message":"Argument 1 must be int"})";
  // A message quoting a transient code does not make the error transient.
  const std::string quoted =
      absl::StrCat(R"({"exception":"moodle_exception","errorcode":"invalidtoken","message":"not )",
                   R"(\"errorcode\":\"sitemaintenance\""})");
  ExpectRows("moodle", {
                           {200, maintenance.c_str(), Action::kRetry},
                           {200, connection.c_str(), Action::kRetry},
                           {200, read.c_str(), Action::kRetry},
                           {200, write.c_str(), Action::kRetry},
                           {200, token.c_str(), Action::kPermanent},
                           {200, access.c_str(), Action::kPermanent},
                           {200, parameter.c_str(), Action::kPermanent},
                           {200, longer.c_str(), Action::kPermanent},
                           {200, no_code.c_str(), Action::kPermanent},
                           {200, quoted.c_str(), Action::kPermanent},
                           // Function results are successes, whatever keys they hold later on.
                           {200, R"({"id":5,"exception":"none"})", Action::kSuccess},
                           {200, R"([{"id":5}])", Action::kSuccess},
                           {200, "null", Action::kSuccess},
                           // Statuses keep their defaults: an early error is a 503 HTML page.
                           {503, "<html>maintenance</html>", Action::kRetry},
                           {404, maintenance.c_str(), Action::kPermanent},
                           {429, "", Action::kRateLimited},
                       });
  const Preset& moodle = Named("moodle");
  EXPECT_TRUE(moodle.throttle_headers.retry_after);
  EXPECT_FALSE(moodle.throttle_headers.ietf);
  EXPECT_THAT(moodle.throttle_headers.reset, IsEmpty());
  EXPECT_THAT(moodle.throttle_headers.remaining, IsEmpty());
}

TEST(PresetsTest, BlackboardReadsItsThreeHeadersAndTheDefaultsClassify) {
  ExpectRows("blackboard", {
                               {200, "{}", Action::kSuccess},
                               {429, "", Action::kRateLimited},
                               {503, "", Action::kRetry},
                               {401, "", Action::kPermanent},
                               {403, "", Action::kPermanent},
                           });
  const ThrottleHeaders& h = Named("blackboard").throttle_headers;
  EXPECT_FALSE(h.ietf);
  // The reset as a unix time (Blackboard's wording), and as seconds if it is not one.
  const Outcome unix_reset = Http(429, "",
                                  {{"x-rate-limit-limit", "10000"},
                                   {"x-rate-limit-remaining", "0"},
                                   {"x-rate-limit-reset", "1796148000"}});
  const ThrottleSignals s = ReadThrottleSignals(unix_reset, h, kNow);
  ASSERT_TRUE(s.reset_at.has_value());
  EXPECT_EQ(*s.reset_at, kNow + absl::Hours(1));
  EXPECT_EQ(s.remaining, 0);
  EXPECT_EQ(s.limit, 10000);
  EXPECT_THAT(s.ignored, IsEmpty());
  const ThrottleSignals delta =
      ReadThrottleSignals(Http(200, "", {{"x-rate-limit-reset", "3600"}}), h, kNow);
  ASSERT_TRUE(delta.reset_at.has_value());
  EXPECT_EQ(*delta.reset_at, kNow + absl::Hours(1));
  // Vendor headers Blackboard does not send are not read.
  const ThrottleSignals other =
      ReadThrottleSignals(Http(200, "", {{"x-ratelimit-remaining", "5"}}), h, kNow);
  EXPECT_FALSE(other.remaining.has_value());
}

// ClassLink documents 429 with a cool-down and exponential backoff for 429 and 5xx; OneRoster's
// binding documents no throttling: both are the defaults, reading no vendor header.
TEST(PresetsTest, ClassLinkAndOneRosterAreTheDefaultsWithNoVendorHeader) {
  for (const char* name : {"classlink", "oneroster"}) {
    ExpectRows(name, {
                         {200, "{}", Action::kSuccess},
                         {429, "", Action::kRateLimited},
                         {500, "", Action::kRetry},
                         {503, "", Action::kRetry},
                         {400, "", Action::kPermanent},
                         {401, "", Action::kPermanent},
                         {404, "", Action::kPermanent},
                     });
    const Preset& p = Named(name);
    EXPECT_THAT(p.rules, IsEmpty()) << name;
    EXPECT_TRUE(p.throttle_headers.retry_after) << name;
    EXPECT_FALSE(p.throttle_headers.ietf) << name;
    EXPECT_TRUE(p.throttle_headers.reset.empty() && p.throttle_headers.remaining.empty() &&
                p.throttle_headers.limit.empty() && p.throttle_headers.cost.empty())
        << name;
    const ThrottleSignals s = ReadThrottleSignals(
        Http(429, "", {{"retry-after", "5"}, {"x-ratelimit-reset", "1796148000"}}),
        p.throttle_headers, kNow);
    EXPECT_EQ(s.RetryAt(), kNow + absl::Seconds(5)) << name;
    EXPECT_FALSE(s.reset_at.has_value()) << name;
  }
}

}  // namespace
}  // namespace rebound::policy
