#include "server/log/event_log.h"

#include <algorithm>
#include <cassert>
#include <ostream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "server/common/job.h"

namespace rebound::log {
namespace {

// Keeps fields in insertion order so ts, level and event lead every line.
using Json = nlohmann::ordered_json;

std::string Str(absl::string_view s) { return std::string(s.data(), s.size()); }

void PutString(Json& j, const char* key, absl::string_view value) {
  if (!value.empty()) j[key] = Str(value);
}

Json Header(absl::Time now, Level level, absl::string_view event) {
  Json j = Json::object();
  // RFC 3339, UTC, milliseconds (truncated): 2026-11-29T22:49:12.257Z
  j["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", now, absl::UTCTimeZone());
  j["level"] = Str(LevelName(level));
  j["event"] = Str(event);
  return j;
}

std::string Dump(const Json& j) {
  // Compact, UTF-8 kept as is, invalid UTF-8 replaced by U+FFFD instead of throwing. Control
  // characters (including newlines) are escaped, so a line never breaks.
  std::string line = j.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
  line += '\n';
  return line;
}

}  // namespace

absl::string_view LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "unknown";
}

std::optional<Level> ParseLevel(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "debug") return Level::kDebug;
  if (lower == "info") return Level::kInfo;
  if (lower == "warn" || lower == "warning") return Level::kWarn;
  if (lower == "error") return Level::kError;
  return std::nullopt;
}

absl::string_view EventName(Event event) {
  switch (event) {
    case Event::kSubmitted:
      return "submitted";
    case Event::kDeduplicated:
      return "deduplicated";
    case Event::kAttemptStarted:
      return "attempt_started";
    case Event::kAttemptFinished:
      return "attempt_finished";
    case Event::kRetryScheduled:
      return "retry_scheduled";
    case Event::kWaiting:
      return "waiting";
    case Event::kSucceeded:
      return "succeeded";
    case Event::kFailed:
      return "failed";
    case Event::kExhausted:
      return "exhausted";
    case Event::kCancelled:
      return "cancelled";
    case Event::kReplayed:
      return "replayed";
    case Event::kRejected:
      return "rejected";
    case Event::kServerStarted:
      return "server_started";
    case Event::kServerStopping:
      return "server_stopping";
    case Event::kCircuitChanged:
      return "circuit_changed";
    case Event::kOperatorPaused:
      return "operator_paused";
    case Event::kOperatorResumed:
      return "operator_resumed";
  }
  return "unknown";
}

Level DefaultLevel(Event event) {
  switch (event) {
    case Event::kAttemptStarted:
      return Level::kDebug;
    case Event::kFailed:
    case Event::kExhausted:
    case Event::kRejected:
      return Level::kWarn;
    case Event::kSubmitted:
    case Event::kDeduplicated:
    case Event::kAttemptFinished:
    case Event::kRetryScheduled:
    case Event::kWaiting:
    case Event::kSucceeded:
    case Event::kCancelled:
    case Event::kReplayed:
    case Event::kServerStarted:
    case Event::kServerStopping:
    case Event::kCircuitChanged:
    case Event::kOperatorPaused:
    case Event::kOperatorResumed:
      return Level::kInfo;
  }
  return Level::kInfo;
}

EventLog::Sink EventLog::FileSink(std::FILE* file) {
  return [file](absl::string_view line) {
    // One fwrite per line: stdio locks the FILE per call, so even writers that bypass this
    // EventLog cannot split a line.
    std::fwrite(line.data(), 1, line.size(), file);
    std::fflush(file);
  };
}

EventLog::Sink EventLog::StdoutSink() { return FileSink(stdout); }

EventLog::Sink EventLog::OstreamSink(std::ostream* out) {
  return [out](absl::string_view line) {
    out->write(line.data(), static_cast<std::streamsize>(line.size()));
    out->flush();
  };
}

EventLog::EventLog(const common::Clock& clock, Options options, Sink sink)
    : clock_(clock),
      options_(options),
      rate_(static_cast<double>(std::max(0, options.max_lines_per_second_per_event))),
      sink_(sink ? std::move(sink) : StdoutSink()) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  for (Bucket& b : buckets_) {
    b.tokens = rate_;
    b.refilled_at = now;
  }
}

std::optional<int64_t> EventLog::Admit(int index, absl::Time* now) {
  assert(index >= 0 && index <= kMessageBucket);
  absl::MutexLock lock(&mu_);
  *now = clock_.Now();
  Bucket& b = buckets_[index];
  if (rate_ > 0) {
    const absl::Duration elapsed = *now - b.refilled_at;
    if (elapsed > absl::ZeroDuration()) {
      b.tokens = std::min(rate_, b.tokens + rate_ * absl::ToDoubleSeconds(elapsed));
    }
    b.refilled_at = *now;  // a clock that stepped back re-anchors instead of refilling
    if (b.tokens < 1) {
      ++b.suppressed;
      return std::nullopt;
    }
    b.tokens -= 1;
  }
  return std::exchange(b.suppressed, 0);
}

void EventLog::Write(const std::string& line) {
  absl::MutexLock lock(&write_mu_);
  sink_(line);
}

void EventLog::Log(Level level, Event event, const JobFields& f) {
  if (!Enabled(level)) return;
  absl::Time now;
  const std::optional<int64_t> suppressed = Admit(static_cast<int>(event), &now);
  if (!suppressed.has_value()) return;

  Json j = Header(now, level, EventName(event));
  if (f.job_id != 0) j["job_id"] = common::FormatJobId(f.job_id);
  PutString(j, "tenant", f.tenant);
  PutString(j, "endpoint", f.endpoint);
  if (f.attempt != 0) j["attempt"] = f.attempt;
  if (f.http_status != 0) j["http_status"] = f.http_status;
  PutString(j, "transport_error", f.transport_error);
  PutString(j, "classification", f.classification);
  if (f.latency.has_value()) j["latency_ms"] = absl::ToDoubleMilliseconds(*f.latency);
  if (f.delay.has_value()) j["delay_ms"] = absl::ToDoubleMilliseconds(*f.delay);
  PutString(j, "delay_cause", f.delay_cause);
  PutString(j, "correlation_id", f.correlation_id);
  PutString(j, "traceparent", f.traceparent);
  PutString(j, "reason", f.reason);
  if (*suppressed > 0) j["suppressed"] = *suppressed;
  Write(Dump(j));
}

void EventLog::Message(Level level, absl::string_view event, absl::string_view message) {
  if (!Enabled(level)) return;
  absl::Time now;
  const std::optional<int64_t> suppressed = Admit(kMessageBucket, &now);
  if (!suppressed.has_value()) return;

  Json j = Header(now, level, event);
  PutString(j, "message", message);
  if (*suppressed > 0) j["suppressed"] = *suppressed;
  Write(Dump(j));
}

}  // namespace rebound::log
