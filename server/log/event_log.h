// EventLog: structured job-event logs, one JSON object per line (Kubernetes convention).
//
// Every line is built as a JSON object and serialized by nlohmann::json (STYLE.md "Metrics and
// logs": never hand-escaped). Shape, in this order, unset fields omitted:
//
//   {"ts":"2026-11-29T22:49:12.257Z","level":"info","event":"attempt_finished","job_id":"j123",
//    "tenant":"acme","endpoint":"canvas","attempt":2,"http_status":503,
//    "transport_error":"timeout","classification":"retry","latency_ms":812.5,"delay_ms":1500.0,
//    "delay_cause":"retry_after","correlation_id":"...","traceparent":"00-...","reason":"...",
//    "message":"...","suppressed":4}
//
// Secrets: the API takes no request headers and no bodies at all, so Authorization, cookies,
// configured secret headers and request/response bodies cannot be logged by construction.
// `reason` carries decision texts and curl error messages, never header values or bodies.
//
// Flood control: each Event (and all Message() lines together) has its own token bucket of
// `max_lines_per_second_per_event`, refilled from the injected clock. A retry storm can fill
// its own event's budget but cannot silence other events. Dropped lines are counted, and the
// next line emitted for that event carries "suppressed": N, so nothing is hidden silently.
//
// Thread-safe: Log() and Message() may be called from the engine loop and gRPC threads at
// once. Sink calls are serialized (one call per whole line), so a sink needs no lock of its
// own and lines never interleave. Lines from different threads may reach the sink a few
// microseconds out of `ts` order; lines from one thread keep their order.
#ifndef REBOUND_SERVER_LOG_EVENT_LOG_H_
#define REBOUND_SERVER_LOG_EVENT_LOG_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"

namespace rebound::log {

enum class Level { kDebug, kInfo, kWarn, kError };

absl::string_view LevelName(Level level);  // "debug", "info", "warn", "error"
// Case-insensitive; accepts "warning" for kWarn. nullopt for anything else.
std::optional<Level> ParseLevel(absl::string_view text);

// Job and server events. Default levels (DefaultLevel()):
//   debug: attempt_started (attempt_finished repeats its fields plus the result)
//   info:  submitted, deduplicated, attempt_finished, retry_scheduled, waiting, succeeded,
//          cancelled, replayed, server_started, server_stopping, circuit_changed (the caller
//          logs a breaker opening at warn), operator_paused, operator_resumed
//   warn:  failed, exhausted (dead letters), rejected
enum class Event {
  kSubmitted,
  kDeduplicated,
  kAttemptStarted,
  kAttemptFinished,
  kRetryScheduled,
  kWaiting,
  kSucceeded,
  kFailed,
  kExhausted,
  kCancelled,
  kReplayed,
  kRejected,
  kServerStarted,
  kServerStopping,
  kCircuitChanged,   // an endpoint's circuit breaker changed state (endpoint, reason)
  kOperatorPaused,   // an operator paused an endpoint (endpoint, reason)
  kOperatorResumed,  // an operator pause ended (endpoint)
};
inline constexpr int kEventCount = static_cast<int>(Event::kOperatorResumed) + 1;

absl::string_view EventName(Event event);  // snake_case: "attempt_started", ...
Level DefaultLevel(Event event);

// What one job-event line says. Zero / empty / nullopt means "unset": the field is omitted.
// Views must outlive the Log() call only. An infinite duration is written as null.
struct JobFields {
  int64_t job_id = 0;  // written as "j<id>" (common::FormatJobId)
  absl::string_view tenant;
  absl::string_view endpoint;
  absl::string_view correlation_id;
  int attempt = 0;                        // 1-based attempt number
  int http_status = 0;                    // 0: no response
  absl::string_view transport_error;      // "connect", "dns", "reset", "timeout", "tls", "other"
  absl::string_view classification;       // "success", "retry", "rate_limited", "permanent"
  std::optional<absl::Duration> latency;  // written as latency_ms (double)
  std::optional<absl::Duration> delay;    // written as delay_ms (double)
  absl::string_view delay_cause;          // "backoff", "retry_after", "endpoint_paused"
  absl::string_view reason;               // waiting reason, decision text or curl message
  absl::string_view traceparent;          // W3C traceparent sent upstream
};

class EventLog {
 public:
  // Receives one whole line, ending in '\n'. Calls are serialized by EventLog.
  using Sink = std::function<void(absl::string_view line)>;

  struct Options {
    // Lines below this level are dropped before any other work.
    Level min_level = Level::kInfo;
    // Token-bucket rate (and burst) per event type, refilled continuously. 0: no cap.
    int max_lines_per_second_per_event = 1000;
  };

  // One fwrite + fflush per line on `file` (not owned; must outlive the sink).
  static Sink FileSink(std::FILE* file);
  // The Kubernetes default: FileSink(stdout).
  static Sink StdoutSink();
  // Writes and flushes `out` (not owned; must outlive the sink).
  static Sink OstreamSink(std::ostream* out);

  // `clock` must outlive the EventLog.
  EventLog(const common::Clock& clock, Options options, Sink sink = StdoutSink());

  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Cheap check so callers can skip building fields for lines that would be dropped.
  bool Enabled(Level level) const { return level >= options_.min_level; }

  void Log(Level level, Event event, const JobFields& fields);
  void Log(Event event, const JobFields& fields) { Log(DefaultLevel(event), event, fields); }

  // A lifecycle line (server started, stopping, config errors): ts, level, event, message.
  // All Message() lines share one rate bucket.
  void Message(Level level, absl::string_view event, absl::string_view message);

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time refilled_at;
    int64_t suppressed = 0;  // dropped since the last emitted line
  };
  static constexpr int kMessageBucket = kEventCount;

  // Spends a token from bucket `index`. On success returns the dropped count to report
  // (resetting it) and sets *now; on failure counts the drop and returns nullopt.
  std::optional<int64_t> Admit(int index, absl::Time* now);
  void Write(const std::string& line);

  const common::Clock& clock_;
  const Options options_;
  const double rate_;  // tokens per second; <= 0: uncapped

  absl::Mutex mu_;
  Bucket buckets_[kEventCount + 1] ABSL_GUARDED_BY(mu_);

  absl::Mutex write_mu_;  // never held together with mu_
  Sink sink_ ABSL_GUARDED_BY(write_mu_);
};

}  // namespace rebound::log

#endif  // REBOUND_SERVER_LOG_EVENT_LOG_H_
