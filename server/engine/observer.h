// EngineObserver: what the engine tells the outside world about jobs, for metrics and logs.
//
// The engine stays free of Prometheus and of the log format: the app passes an observer that
// turns these calls into counter increments and JSON lines. Every method runs on the engine's
// loop thread (OnSubmitResults on the store's writer thread) and must be quick and non-blocking.
// The default implementations do nothing, so tests override only what they look at.
#ifndef REBOUND_SERVER_ENGINE_OBSERVER_H_
#define REBOUND_SERVER_ENGINE_OBSERVER_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "server/common/job.h"
#include "server/engine/endpoint_status.h"
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

// A budget's state, for gauges (its scopes summed or reduced).
struct BudgetGauges {
  int64_t in_flight = 0;    // all scopes
  int64_t quota_used = 0;   // the busiest scope, this period
  int64_t quota_limit = 0;  // per scope and period (its config); 0: no quota
  double tokens = -1;       // the emptiest scope's bucket; -1: no bucket
  int64_t scopes = 0;
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
  bool paused = false;              // rate-limited or operator pause in force
  // The gate (see EndpointStatus for the meaning of each).
  CircuitState circuit = CircuitState::kClosed;
  bool operator_paused = false;
  int64_t allowed_in_flight = 0;  // max_in_flight, lower while slow start ramps
  double tokens = -1;             // token bucket level; -1: no bucket
  int64_t retries_in_flight = 0;
  int64_t retry_budget = 0;
  int throttle_level = 0;       // the throttle backoff's level; 0: none
  int64_t paced_in_flight = 0;  // what quota pacing allows (max_in_flight: no limit)
  double quota_remaining = -1;  // the last remaining quota read; -1: none
  // Jobs waiting by reason (index: common::WaitReason; kNone: ready, not held).
  std::array<int64_t, common::kWaitReasonCount> waiting{};
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
  // The endpoint's circuit breaker changed state; `why` e.g. "12 of 20 attempts failed in 10s".
  virtual void OnCircuitChanged(int /*endpoint*/, CircuitState /*from*/, CircuitState /*to*/,
                                const std::string& /*why*/) {}
  // A retry was held back by the endpoint's retry budget (counted once per hold of a job).
  virtual void OnRetryDelayed(int /*endpoint*/) {}
  // An operator paused (`paused`, until `until`, InfiniteFuture: until resumed) or resumed
  // the endpoint.
  virtual void OnOperatorPause(int /*endpoint*/, bool /*paused*/, absl::Time /*until*/,
                               const std::string& /*reason*/) {}
  // Roughly once a second, from the loop.
  virtual void OnGauges(int /*endpoint*/, const EndpointGauges& /*gauges*/) {}
  // Once a second per budget (index: the engine's order, config.budgets then reload additions).
  virtual void OnBudgetGauges(int /*budget*/, const BudgetGauges& /*gauges*/) {}
  // Dead-lettered jobs per endpoint changed by `delta` (FAILED/EXHAUSTED in, replay out).
  virtual void OnDeadLetterDelta(int /*endpoint*/, int64_t /*delta*/) {}
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_OBSERVER_H_
