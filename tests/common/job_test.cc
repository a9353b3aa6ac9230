#include "server/common/job.h"

#include "gtest/gtest.h"

namespace rebound::common {
namespace {

TEST(JobState, NamesRoundTrip) {
  for (int i = 1; i <= 8; ++i) {
    const auto s = static_cast<JobState>(i);
    EXPECT_EQ(JobStateFromName(JobStateName(s)), s);
  }
  EXPECT_EQ(JobStateFromName("NOPE"), std::nullopt);
}

TEST(JobState, TerminalAndDeadLetterSets) {
  EXPECT_FALSE(IsTerminal(JobState::kQueued));
  EXPECT_FALSE(IsTerminal(JobState::kWaitingRetry));
  EXPECT_TRUE(IsTerminal(JobState::kSucceeded));
  EXPECT_TRUE(IsTerminal(JobState::kCancelled));
  EXPECT_TRUE(IsDeadLetter(JobState::kFailed));
  EXPECT_TRUE(IsDeadLetter(JobState::kExhausted));
  EXPECT_FALSE(IsDeadLetter(JobState::kCancelled));
}

TEST(JobId, FormatsAndParses) {
  EXPECT_EQ(FormatJobId(42), "j42");
  EXPECT_EQ(ParseJobId("j42"), 42);
  EXPECT_EQ(ParseJobId("42"), std::nullopt);
  EXPECT_EQ(ParseJobId("j"), std::nullopt);
  EXPECT_EQ(ParseJobId("j-1"), std::nullopt);
  EXPECT_EQ(ParseJobId("jx"), std::nullopt);
}

TEST(Fingerprint, SameRequestSameDigestAndFieldBoundariesMatter) {
  JobSpec a;
  a.endpoint = "canvas";
  a.method = "POST";
  a.path = "/api/v1/x";
  a.body = "{}";
  JobSpec b = a;
  b.tenant = "other";          // scope, not content
  b.correlation_id = "c-1";    // metadata, not content
  b.labels["pipeline"] = "x";  // metadata, not content
  EXPECT_EQ(Fingerprint(a), Fingerprint(b));
  EXPECT_EQ(Fingerprint(a).size(), 64u);

  JobSpec c = a;
  c.body = "{ }";
  EXPECT_NE(Fingerprint(a), Fingerprint(c));

  JobSpec d = a;
  d.path = "/api/v1/x{";
  d.body = "}";
  EXPECT_NE(Fingerprint(a), Fingerprint(d));

  JobSpec e = a;
  e.headers.push_back({"X-A", "1"});
  EXPECT_NE(Fingerprint(a), Fingerprint(e));
}

}  // namespace
}  // namespace rebound::common
