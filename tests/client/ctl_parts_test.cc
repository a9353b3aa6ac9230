// The pure parts of reboundctl: JSONL reading, tables, time conversions.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "client/jsonl.h"
#include "client/table.h"
#include "client/time_util.h"

namespace rebound::client {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

TEST(JsonlTest, ReadsEveryLineAndSkipsBlankOnes) {
  std::istringstream in(
      "{\"idempotencyKey\":\"k1\",\"labels\":{\"a\":\"b\"},\"body\":\"aGk=\"}\n"
      "\n"
      "   \r\n"
      "{\"idempotency_key\":\"k2\",\"deadline\":\"2026-11-29T10:00:00Z\"}\r\n");

  const JsonlContents contents = ParseSyncRequestsJsonl(in, "jobs.jsonl");

  EXPECT_TRUE(contents.errors.empty());
  ASSERT_EQ(contents.requests.size(), 2u);
  EXPECT_EQ(contents.requests[0].line, 1);
  EXPECT_EQ(contents.requests[0].request.idempotency_key(), "k1");
  EXPECT_EQ(contents.requests[0].request.labels().at("a"), "b");
  EXPECT_EQ(contents.requests[0].request.body(), "hi");  // bytes are base64 in JSON
  EXPECT_EQ(contents.requests[1].line, 4);
  EXPECT_EQ(contents.requests[1].request.deadline().seconds(), 1795946400);
}

TEST(JsonlTest, ReportsEveryBadLineWithFileAndLineNumber) {
  std::istringstream in(
      "{\"idempotencyKey\":\"k1\"}\n"
      "{\"idempotencyKey\":\"k2\",\"pth\":\"/x\"}\n"  // unknown field: a typo must not pass
      "[1, 2]\n"
      "{\"method\": 7}\n");

  const JsonlContents contents = ParseSyncRequestsJsonl(in, "jobs.jsonl");

  EXPECT_EQ(contents.requests.size(), 1u);
  ASSERT_EQ(contents.errors.size(), 3u);
  EXPECT_THAT(contents.errors[0], StartsWith("jobs.jsonl:2: "));
  EXPECT_THAT(contents.errors[0], HasSubstr("pth"));
  EXPECT_THAT(contents.errors[1], StartsWith("jobs.jsonl:3: "));
  EXPECT_THAT(contents.errors[2], StartsWith("jobs.jsonl:4: "));
  for (const std::string& error : contents.errors) {
    EXPECT_THAT(error, Not(HasSubstr("\n")));  // no echo of the line under a caret
  }
}

TEST(TableTest, AlignsColumnsWithoutTrailingSpaces) {
  Table table({"ID", "STATE", "NOTE"});
  table.AddRow({"j1", "SUCCEEDED", ""});
  table.AddRow({"j100", "QUEUED", "x"});
  std::ostringstream out;

  table.Print(out);

  EXPECT_EQ(out.str(),
            "ID    STATE      NOTE\n"
            "j1    SUCCEEDED\n"
            "j100  QUEUED     x\n");
}

TEST(TableTest, ControlCharactersAreEscapedAndUtf8IsKept) {
  EXPECT_EQ(ForTerminal("plain Zo\u00eb"), "plain Zo\u00eb");
  EXPECT_EQ(ForTerminal("a\r\nb\tc"), "a\\r\\nb\\tc");
  EXPECT_EQ(ForTerminal("\x1b[2J\x07\x7f"), "\\x1b[2J\\x07\\x7f");
  EXPECT_EQ(ForTerminal(std::string("nul\0x", 5)), "nul\\x00x");
  EXPECT_EQ(ForTerminal("csi\xc2\x9b"
                        "31m"),
            "csi\\u009b31m");

  Table table({"KEY", "VALUE"});
  table.AddRow({"k\x1b]0;owned\x07", "v\r\nforged line"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(),
            "KEY                VALUE\n"
            "k\\x1b]0;owned\\x07  v\\r\\nforged line\n");
}

TEST(TimeUtilTest, TimestampsRoundTripAndPrintAsRfc3339Utc) {
  absl::StatusOr<absl::Time> t = ParseRfc3339("2026-11-29T11:00:00.25+01:00");
  ASSERT_TRUE(t.ok()) << t.status();
  const google::protobuf::Timestamp proto = ToProtoTimestamp(*t);
  EXPECT_EQ(proto.seconds(), 1795946400);
  EXPECT_EQ(proto.nanos(), 250'000'000);
  EXPECT_EQ(FromProtoTimestamp(proto), *t);
  EXPECT_EQ(FormatTimestamp(proto), "2026-11-29T10:00:00.25Z");
  EXPECT_EQ(FormatTimestamp(google::protobuf::Timestamp()), "-");
}

TEST(TimeUtilTest, RejectsTextThatIsNotRfc3339) {
  EXPECT_EQ(ParseRfc3339("tomorrow").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRfc3339("2026-11-29 10:00").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TimeUtilTest, DurationsPrintInAbseilForm) {
  google::protobuf::Duration d;
  d.set_seconds(1);
  d.set_nanos(500'000'000);
  EXPECT_EQ(FormatProtoDuration(d), "1.5s");
  EXPECT_EQ(FormatProtoDuration(google::protobuf::Duration()), "-");
}

}  // namespace
}  // namespace rebound::client
