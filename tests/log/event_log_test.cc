#include "server/log/event_log.h"

#include <cstdio>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/common/clock.h"

namespace rebound::log {
namespace {

using nlohmann::json;

// 2026-11-29T22:49:12.257Z
const absl::Time kFixedTime = absl::FromUnixMillis(1'795'992'552'257);

// Collects whole lines; EventLog serializes sink calls, so no lock is needed here.
struct Capture {
  std::vector<std::string> lines;
  EventLog::Sink Sink() {
    return [this](absl::string_view line) { lines.emplace_back(line); };
  }
  json Parsed(size_t i) const { return json::parse(lines.at(i)); }
};

EventLog::Options Opts(Level min_level = Level::kDebug, int cap = 1000) {
  EventLog::Options o;
  o.min_level = min_level;
  o.max_lines_per_second_per_event = cap;
  return o;
}

JobFields SomeJob() {
  JobFields f;
  f.job_id = 123;
  f.tenant = "acme";
  f.endpoint = "canvas";
  return f;
}

TEST(EventLog, EveryLineIsOneJsonObjectWithTsLevelAndEvent) {
  common::FakeClock clock;
  Capture out;
  EventLog log(clock, Opts(), out.Sink());
  for (int e = 0; e < kEventCount; ++e) log.Log(static_cast<Event>(e), SomeJob());
  log.Message(Level::kError, "config_error", "endpoints[0].url: missing");

  ASSERT_EQ(out.lines.size(), static_cast<size_t>(kEventCount + 1));
  for (const std::string& line : out.lines) {
    ASSERT_FALSE(line.empty());
    EXPECT_EQ(line.back(), '\n');
    EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
    const json j = json::parse(line);
    ASSERT_TRUE(j.is_object());
    EXPECT_TRUE(j["ts"].is_string());
    EXPECT_TRUE(j["level"].is_string());
    EXPECT_TRUE(j["event"].is_string());
    // ts, level and event lead every line.
    EXPECT_EQ(line.rfind("{\"ts\":", 0), 0u) << line;
  }
  EXPECT_EQ(out.Parsed(2)["event"], "attempt_started");
  EXPECT_EQ(out.Parsed(kEventCount)["event"], "config_error");
  EXPECT_EQ(out.Parsed(kEventCount)["message"], "endpoints[0].url: missing");
}

TEST(EventLog, TimestampIsRfc3339UtcWithMillisecondsFromTheInjectedClock) {
  common::FakeClock clock(kFixedTime);
  Capture out;
  EventLog log(clock, Opts(), out.Sink());
  log.Log(Event::kSubmitted, SomeJob());
  clock.Advance(absl::Microseconds(999));  // still .257: milliseconds are truncated
  log.Log(Event::kSubmitted, SomeJob());
  clock.Set(absl::FromUnixSeconds(1'800'000'000));
  log.Log(Event::kSubmitted, SomeJob());

  EXPECT_EQ(out.Parsed(0)["ts"], "2026-11-29T22:49:12.257Z");
  EXPECT_EQ(out.Parsed(1)["ts"], "2026-11-29T22:49:12.257Z");
  EXPECT_EQ(out.Parsed(2)["ts"], "2027-01-15T08:00:00.000Z");
}

TEST(EventLog, UnsetFieldsAreOmitted) {
  common::FakeClock clock;
  Capture out;
  EventLog log(clock, Opts(), out.Sink());
  log.Log(Event::kSubmitted, JobFields{});
  JobFields f;
  f.job_id = 7;
  log.Log(Event::kCancelled, f);

  const json bare = out.Parsed(0);
  EXPECT_EQ(bare.size(), 3u) << bare.dump();
  const json one = out.Parsed(1);
  EXPECT_EQ(one.size(), 4u) << one.dump();
  EXPECT_EQ(one["job_id"], "j7");
  EXPECT_FALSE(one.contains("suppressed"));
  EXPECT_FALSE(one.contains("latency_ms"));
  EXPECT_FALSE(one.contains("http_status"));
}

TEST(EventLog, EverySetFieldIsWrittenUnderItsName) {
  common::FakeClock clock;
  Capture out;
  EventLog log(clock, Opts(), out.Sink());
  JobFields f = SomeJob();
  f.correlation_id = "req-42";
  f.attempt = 2;
  f.http_status = 503;
  f.transport_error = "timeout";
  f.classification = "retry";
  f.latency = absl::Microseconds(812'500);
  f.delay = absl::Milliseconds(1500);
  f.delay_cause = "retry_after";
  f.reason = "503 is retryable; Retry-After 1.5s";
  f.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  log.Log(Level::kWarn, Event::kRetryScheduled, f);

  const json j = out.Parsed(0);
  EXPECT_EQ(j["level"], "warn");
  EXPECT_EQ(j["event"], "retry_scheduled");
  EXPECT_EQ(j["job_id"], "j123");
  EXPECT_EQ(j["tenant"], "acme");
  EXPECT_EQ(j["endpoint"], "canvas");
  EXPECT_EQ(j["correlation_id"], "req-42");
  EXPECT_EQ(j["attempt"], 2);
  EXPECT_EQ(j["http_status"], 503);
  EXPECT_EQ(j["transport_error"], "timeout");
  EXPECT_EQ(j["classification"], "retry");
  EXPECT_TRUE(j["latency_ms"].is_number_float());
  EXPECT_DOUBLE_EQ(j["latency_ms"].get<double>(), 812.5);
  EXPECT_DOUBLE_EQ(j["delay_ms"].get<double>(), 1500.0);
  EXPECT_EQ(j["delay_cause"], "retry_after");
  EXPECT_EQ(j["reason"], "503 is retryable; Retry-After 1.5s");
  EXPECT_EQ(j["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  EXPECT_EQ(j.size(), 16u) << j.dump();
}

TEST(EventLog, ZeroDurationsAreWrittenBecauseTheyAreSet) {
  common::FakeClock clock;
  Capture out;
  EventLog log(clock, Opts(), out.Sink());
  JobFields f;
  f.delay = absl::ZeroDuration();
  log.Log(Event::kRetryScheduled, f);
  EXPECT_EQ(out.Parsed(0)["delay_ms"], 0.0);
}

TEST(EventLog, LinesBelowTheMinimumLevelAreDropped) {
  common::FakeClock clock;
  Capture out;
  EventLog log(clock, Opts(Level::kWarn), out.Sink());
  EXPECT_FALSE(log.Enabled(Level::kInfo));
  EXPECT_TRUE(log.Enabled(Level::kWarn));
  log.Log(Level::kDebug, Event::kAttemptStarted, SomeJob());
  log.Log(Level::kInfo, Event::kSubmitted, SomeJob());
  log.Log(Level::kWarn, Event::kExhausted, SomeJob());
  log.Log(Level::kError, Event::kFailed, SomeJob());
  log.Message(Level::kInfo, "server_started", "listening");
  log.Message(Level::kError, "config_error", "bad");

  ASSERT_EQ(out.lines.size(), 3u);
  EXPECT_EQ(out.Parsed(0)["event"], "exhausted");
  EXPECT_EQ(out.Parsed(1)["level"], "error");
  EXPECT_EQ(out.Parsed(2)["event"], "config_error");
}

TEST(EventLog, DefaultLevelsKeepAttemptStartedAtDebugAndDeadLettersAtWarn) {
  EXPECT_EQ(DefaultLevel(Event::kAttemptStarted), Level::kDebug);
  EXPECT_EQ(DefaultLevel(Event::kAttemptFinished), Level::kInfo);
  EXPECT_EQ(DefaultLevel(Event::kSubmitted), Level::kInfo);
  EXPECT_EQ(DefaultLevel(Event::kFailed), Level::kWarn);
  EXPECT_EQ(DefaultLevel(Event::kExhausted), Level::kWarn);
  EXPECT_EQ(DefaultLevel(Event::kRejected), Level::kWarn);

  common::FakeClock clock;
  Capture out;
  EventLog log(clock, EventLog::Options{}, out.Sink());  // default: info
  log.Log(Event::kAttemptStarted, SomeJob());
  log.Log(Event::kAttemptFinished, SomeJob());
  ASSERT_EQ(out.lines.size(), 1u);
  EXPECT_EQ(out.Parsed(0)["event"], "attempt_finished");
  EXPECT_EQ(out.Parsed(0)["level"], "info");
}

TEST(Level, ParsesNamesCaseInsensitively) {
  EXPECT_EQ(ParseLevel("debug"), Level::kDebug);
  EXPECT_EQ(ParseLevel("info"), Level::kInfo);
  EXPECT_EQ(ParseLevel("INFO"), Level::kInfo);
  EXPECT_EQ(ParseLevel("warn"), Level::kWarn);
  EXPECT_EQ(ParseLevel("warning"), Level::kWarn);
  EXPECT_EQ(ParseLevel("error"), Level::kError);
  EXPECT_EQ(ParseLevel(""), std::nullopt);
  EXPECT_EQ(ParseLevel("verbose"), std::nullopt);
  for (Level l : {Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}) {
    EXPECT_EQ(ParseLevel(LevelName(l)), l);
  }
}

TEST(Event, NamesAreUniqueSnakeCase) {
  std::set<std::string> names;
  for (int e = 0; e < kEventCount; ++e) {
    const std::string name(EventName(static_cast<Event>(e)));
    EXPECT_NE(name, "unknown");
    for (char c : name) EXPECT_TRUE((c >= 'a' && c <= 'z') || c == '_') << name;
    names.insert(name);
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(kEventCount));
  EXPECT_EQ(EventName(Event::kRetryScheduled), "retry_scheduled");
  EXPECT_EQ(EventName(Event::kServerStopping), "server_stopping");
}

TEST(EventLog, RateCapDropsTheLineOverTheCapAndReportsItOnTheNextLine) {
  common::FakeClock clock;
  Capture out;
  EventLog log(clock, Opts(Level::kDebug, /*cap=*/3), out.Sink());
  for (int i = 0; i < 4; ++i) log.Log(Event::kAttemptFinished, SomeJob());  // clock frozen
  ASSERT_EQ(out.lines.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_FALSE(out.Parsed(i).contains("suppressed"));

  clock.Advance(absl::Seconds(1));
  log.Log(Event::kAttemptFinished, SomeJob());
  log.Log(Event::kAttemptFinished, SomeJob());
  ASSERT_EQ(out.lines.size(), 5u);
  EXPECT_EQ(out.Parsed(3)["suppressed"], 1);
  EXPECT_FALSE(out.Parsed(4).contains("suppressed"));  // reported once, then reset
}

TEST(EventLog, RateCapCountsEveryDroppedLine) {
  common::FakeClock clock;
  Capture out;
  EventLog log(clock, Opts(Level::kDebug, /*cap=*/2), out.Sink());
  for (int i = 0; i < 10; ++i) log.Log(Event::kRetryScheduled, SomeJob());
  ASSERT_EQ(out.lines.size(), 2u);
  clock.Advance(absl::Milliseconds(500));  // refills one token at 2/s
  log.Log(Event::kRetryScheduled, SomeJob());
  log.Log(Event::kRetryScheduled, SomeJob());
  ASSERT_EQ(out.lines.size(), 3u);
  EXPECT_EQ(out.Parsed(2)["suppressed"], 8);
  clock.Advance(absl::Seconds(10));  // the bucket never holds more than one second's worth
  for (int i = 0; i < 5; ++i) log.Log(Event::kRetryScheduled, SomeJob());
  ASSERT_EQ(out.lines.size(), 5u);
  EXPECT_EQ(out.Parsed(3)["suppressed"], 1);
}

TEST(EventLog, RateCapIsPerEventSoAStormDoesNotSilenceOtherEvents) {
  common::FakeClock clock;
  Capture out;
  EventLog log(clock, Opts(Level::kDebug, /*cap=*/2), out.Sink());
  for (int i = 0; i < 50; ++i) log.Log(Event::kRetryScheduled, SomeJob());
  log.Log(Event::kExhausted, SomeJob());
  log.Log(Event::kExhausted, SomeJob());
  log.Message(Level::kInfo, "server_stopping", "SIGTERM");

  ASSERT_EQ(out.lines.size(), 5u);
  EXPECT_EQ(out.Parsed(2)["event"], "exhausted");
  EXPECT_EQ(out.Parsed(3)["event"], "exhausted");
  EXPECT_FALSE(out.Parsed(3).contains("suppressed"));
  EXPECT_EQ(out.Parsed(4)["event"], "server_stopping");
}

TEST(EventLog, LevelFilteredLinesNeitherSpendTokensNorCountAsSuppressed) {
  common::FakeClock clock;
  Capture out;
  EventLog log(clock, Opts(Level::kInfo, /*cap=*/1), out.Sink());
  for (int i = 0; i < 5; ++i) log.Log(Level::kDebug, Event::kWaiting, SomeJob());
  log.Log(Level::kInfo, Event::kWaiting, SomeJob());
  ASSERT_EQ(out.lines.size(), 1u);
  EXPECT_FALSE(out.Parsed(0).contains("suppressed"));
}

TEST(EventLog, ZeroCapMeansUncapped) {
  common::FakeClock clock;
  Capture out;
  EventLog log(clock, Opts(Level::kDebug, /*cap=*/0), out.Sink());
  for (int i = 0; i < 5000; ++i) log.Log(Event::kAttemptStarted, SomeJob());
  EXPECT_EQ(out.lines.size(), 5000u);
}

TEST(EventLog, MessagesShareOneBucketAndReportSuppression) {
  common::FakeClock clock;
  Capture out;
  EventLog log(clock, Opts(Level::kDebug, /*cap=*/1), out.Sink());
  log.Message(Level::kError, "config_error", "a");
  log.Message(Level::kError, "other_error", "b");
  clock.Advance(absl::Seconds(1));
  log.Message(Level::kInfo, "server_started", "c");
  ASSERT_EQ(out.lines.size(), 2u);
  EXPECT_EQ(out.Parsed(1)["suppressed"], 1);
  EXPECT_EQ(out.Parsed(1)["message"], "c");
}

TEST(EventLog, ClockSteppingBackNeitherRefillsNorFreezesTheBucket) {
  common::FakeClock clock(kFixedTime);
  Capture out;
  EventLog log(clock, Opts(Level::kDebug, /*cap=*/1), out.Sink());
  log.Log(Event::kWaiting, SomeJob());
  clock.Set(kFixedTime - absl::Hours(1));
  log.Log(Event::kWaiting, SomeJob());
  clock.Advance(absl::Milliseconds(500));
  log.Log(Event::kWaiting, SomeJob());
  EXPECT_EQ(out.lines.size(), 1u);
  clock.Advance(absl::Milliseconds(500));
  log.Log(Event::kWaiting, SomeJob());
  ASSERT_EQ(out.lines.size(), 2u);
  EXPECT_EQ(out.Parsed(1)["suppressed"], 2);
}

TEST(EventLog, HostileStringsStayOneValidJsonLine) {
  common::FakeClock clock;
  Capture out;
  EventLog log(clock, Opts(), out.Sink());
  const std::string quotes = R"(say "hi" \ {"injected":true})";
  const std::string newlines = "line1\nline2\r\n{\"event\":\"forged\"}";
  const char kControls[] = "nul\0bel\a esc\x1b tab\t";
  const std::string controls(kControls, sizeof(kControls) - 1);
  const std::string invalid_utf8 = "ok \xff\xfe bad \xc3( end";
  const std::string unicode = "caf\xc3\xa9 \xe2\x9c\x93";
  JobFields f = SomeJob();
  f.reason = quotes;
  f.tenant = newlines;
  f.endpoint = controls;
  f.transport_error = invalid_utf8;
  f.correlation_id = unicode;
  log.Log(Event::kAttemptFinished, f);
  log.Message(Level::kError, newlines, invalid_utf8);

  ASSERT_EQ(out.lines.size(), 2u);
  for (const std::string& line : out.lines) {
    EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
    EXPECT_EQ(line.find('\r'), std::string::npos) << line;
    for (char c : line.substr(0, line.size() - 1)) {
      EXPECT_GE(static_cast<unsigned char>(c), 0x20) << line;
    }
  }
  const json j = out.Parsed(0);
  EXPECT_EQ(j["event"], "attempt_finished");
  EXPECT_FALSE(j.contains("injected"));
  EXPECT_EQ(j["reason"], quotes);
  EXPECT_EQ(j["tenant"], newlines);
  EXPECT_EQ(j["endpoint"], controls);
  EXPECT_EQ(j["correlation_id"], unicode);
  // Invalid bytes become U+FFFD; the valid text around them survives.
  const std::string replaced = j["transport_error"];
  EXPECT_EQ(replaced.rfind("ok ", 0), 0u);
  EXPECT_NE(replaced.find("\xef\xbf\xbd"), std::string::npos);
  EXPECT_NE(replaced.find(" end"), std::string::npos);

  const json m = out.Parsed(1);
  EXPECT_EQ(m["event"], newlines);
  EXPECT_NE(m["message"].get<std::string>().find("\xef\xbf\xbd"), std::string::npos);
}

TEST(EventLog, ConcurrentLoggingFromFourThreadsProducesOnlyWholeLines) {
  common::FakeClock clock;
  std::ostringstream stream;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  {
    EventLog log(clock, Opts(Level::kDebug, /*cap=*/0), EventLog::OstreamSink(&stream));
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&log, t] {
        const std::string tenant = absl::StrCat("tenant-", t);
        for (int i = 0; i < kPerThread; ++i) {
          JobFields f;
          f.job_id = t * kPerThread + i + 1;
          f.tenant = tenant;
          f.reason = "a reason long enough to make a torn write visible if one happened";
          log.Log(static_cast<Event>(i % kEventCount), f);
          if (i % 100 == 0) log.Message(Level::kError, "config_error", tenant);
        }
      });
    }
    for (std::thread& th : threads) th.join();
  }
  const std::string all = stream.str();
  ASSERT_FALSE(all.empty());
  ASSERT_EQ(all.back(), '\n');
  std::vector<absl::string_view> lines = absl::StrSplit(all, '\n', absl::SkipEmpty());
  EXPECT_EQ(lines.size(), static_cast<size_t>(kThreads * (kPerThread + kPerThread / 100)));
  std::set<int64_t> job_ids;
  for (absl::string_view line : lines) {
    const json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.is_object()) << line;
    if (j.contains("job_id")) job_ids.insert(std::stoll(j["job_id"].get<std::string>().substr(1)));
  }
  EXPECT_EQ(job_ids.size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST(EventLog, FileSinkWritesEachLineWhole) {
  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  common::FakeClock clock(kFixedTime);
  {
    EventLog log(clock, Opts(), EventLog::FileSink(file));
    log.Log(Event::kSucceeded, SomeJob());
    log.Message(Level::kInfo, "server_started", "listening on 127.0.0.1:0");
  }
  std::rewind(file);
  std::string contents;
  char buf[512];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), file)) > 0) contents.append(buf, n);
  std::fclose(file);

  std::vector<std::string> lines = absl::StrSplit(contents, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(json::parse(lines[0])["event"], "succeeded");
  EXPECT_EQ(json::parse(lines[1])["message"], "listening on 127.0.0.1:0");
  EXPECT_EQ(json::parse(lines[1])["ts"], "2026-11-29T22:49:12.257Z");
}

}  // namespace
}  // namespace rebound::log
