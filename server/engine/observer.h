// EngineObserver: what the engine tells the outside world about jobs, for metrics and logs.
//
// The engine stays free of Prometheus and of the log format: the app passes an observer that
// turns these calls into counter increments and JSON lines. Every method runs on the engine's
// loop thread (OnSubmitResults on the store's writer thread) and must be quick and non-blocking.
// The default implementations do nothing, so tests override only what they look at.
#ifndef REBOUND_SERVER_ENGINE_OBSERVER_H_
#define REBOUND_SERVER_ENGINE_OBSERVER_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "server/common/job.h"
#include "server/policy/policy.h"

namespace rebound::engine {

// Identifies a job in an event: everything a log line or a metric label may use. `endpoint` is
// the index into config.endpoints (-1 when the endpoint is not configured any more).
struct JobRef {
  common::JobId id = 0;
  int endpoint = -1;
  const std::string* tenant = nullptr;          // never null for a job the engine holds
  const std::string* correlation_id = nullptr;  // may be null (request not in memory)
  int attempt = 0;                              // attempts so far, over the job's life
};

// Per-endpoint job counts, for gauges.
struct EndpointGauges {
  int64_t queued = 0;               // ready to run, endpoint not paused
  int64_t blocked = 0;              // behind an earlier job of their ordering key
  int64_t running = 0;              // attempt decided or on the wire
  int64_t waiting_backoff = 0;      // WAITING_RETRY because of the policy's backoff
  int64_t waiting_retry_after = 0;  // WAITING_RETRY because the upstream said Retry-After
  int64_t waiting_paused = 0;       // ready, but the endpoint is paused (rate limited)
  int64_t in_flight = 0;            // attempts on the wire
  bool paused = false;
};

class EngineObserver {
 public:
  virtual ~EngineObserver() = default;

  // A submit committed: `created` new jobs, `deduplicated` existing ones returned.
  virtual void OnSubmitted(const common::JobSpec& /*spec*/, common::JobId /*id*/, int /*endpoint*/,
                           bool /*deduplicated*/) {}
  virtual void OnAttemptStarted(const JobRef& /*job*/) {}
  // An attempt ended; `decision` says what happens next (retry at, stop, success).
  virtual void OnAttemptFinished(const JobRef& /*job*/, const policy::Outcome& /*outcome*/,
                                 const policy::Decision& /*decision*/,
                                 absl::Duration /*attempt_duration*/) {}
  // A job reached a terminal state; `age` is submit (or replay) to now.
  virtual void OnFinished(const JobRef& /*job*/, common::JobState /*state*/, absl::Duration /*age*/,
                          const std::string& /*decision*/) {}
  virtual void OnReplayed(const JobRef& /*job*/) {}
  // The endpoint's queue is held until `until` (Retry-After of a rate-limited answer).
  virtual void OnEndpointPaused(int /*endpoint*/, absl::Time /*until*/) {}
  // Roughly once a second, from the loop.
  virtual void OnGauges(int /*endpoint*/, const EndpointGauges& /*gauges*/) {}
  // Dead-lettered jobs per endpoint changed by `delta` (FAILED/EXHAUSTED in, replay out).
  virtual void OnDeadLetterDelta(int /*endpoint*/, int64_t /*delta*/) {}
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_OBSERVER_H_
