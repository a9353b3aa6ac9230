// What an endpoint's gate shows about itself (GetEndpointStatus, reboundctl endpoints), and the
// operator's controls over it (PauseEndpoint / ResumeEndpoint).
//
// EndpointControl is what the API layer needs of the engine: the engine implements it, the
// service borrows it, and tests of the service can pass their own.
#ifndef REBOUND_SERVER_ENGINE_ENDPOINT_STATUS_H_
#define REBOUND_SERVER_ENGINE_ENDPOINT_STATUS_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/common/job.h"

namespace rebound::engine {

// The values are rebound_circuit_state's: 0 closed, 1 half-open, 2 open.
enum class CircuitState : int { kClosed = 0, kHalfOpen = 1, kOpen = 2 };
absl::string_view CircuitStateName(CircuitState s);  // "CLOSED", "HALF_OPEN", "OPEN"

// A budget the endpoint names (config budgets[], engine/budget.h), and its busiest scopes.
struct BudgetScopeSnapshot {
  std::string scope;
  int in_flight = 0;
  double tokens = -1;  // -1: no bucket
  int64_t quota_used = 0;
};

struct BudgetSnapshot {
  std::string name;
  std::string split_by;
  double rate = 0;
  int64_t burst = 0;
  int max_in_flight = 0;
  int64_t quota_limit = 0;
  absl::Time period_end = absl::InfiniteFuture();  // of the current quota period
  size_t scopes = 0;                               // scopes with state, all of them
  std::vector<BudgetScopeSnapshot> busiest;        // at most `max_scopes` of them
};

struct EndpointStatus {
  std::string name;
  // Circuit breaker (config endpoints[].circuit_breaker).
  bool circuit_enabled = true;
  CircuitState circuit = CircuitState::kClosed;
  absl::Time circuit_changed_at = absl::InfinitePast();
  absl::Time next_probe_at = absl::InfinitePast();  // open: when it turns half-open
  int64_t window_requests = 0;                      // outcomes in the sliding window
  int64_t window_failures = 0;
  int64_t window_throttles = 0;  // counted apart (429, rate_limited rules)
  // Pause by a rate-limited answer (for its Retry-After or reset, or for the throttle
  // backoff): until when, and the decision that set it.
  absl::Time paused_until = absl::InfinitePast();
  std::string pause_cause;
  // The throttle backoff's level (0: none; it rises with throttles that name no time and
  // returns to 0 with a success).
  int throttle_level = 0;
  // Quota pacing (config endpoints[].pacing): whether the answers' quota paces the endpoint,
  // the in-flight it allows, the last remaining quota read and the low-water mark, the reset
  // announced, and the next start when starts are spaced before it.
  bool pacing_active = false;
  int64_t paced_in_flight = 0;
  std::optional<double> quota_remaining;
  double quota_low_water = 0;
  absl::Time quota_reset_at = absl::InfinitePast();
  absl::Time paced_until = absl::InfinitePast();
  // Operator pause (PauseEndpoint); persisted.
  bool operator_paused = false;
  absl::Time operator_paused_until = absl::InfiniteFuture();  // InfiniteFuture: until resumed
  absl::Time operator_paused_at = absl::InfinitePast();
  std::string operator_reason;
  // Concurrency: attempts on the wire, the configured cap, and the cap slow start allows now.
  int64_t in_flight = 0;
  int64_t max_in_flight = 0;
  int64_t allowed_in_flight = 0;
  double slow_start_level = 1.0;                       // allowed / max while ramping; 1 when not
  absl::Time slow_start_until = absl::InfinitePast();  // end of the ramp; past: not ramping
  // Token bucket (config endpoints[].rate_limit); rate 0: none.
  double rate = 0;
  int64_t burst = 0;
  double tokens = 0;
  // Retry budget (config endpoints[].retry_budget).
  bool retry_budget_enabled = true;
  int64_t retries_in_flight = 0;
  int64_t retry_budget = 0;  // retries allowed in flight now
  // Jobs of this endpoint that wait, by reason (index: common::WaitReason), and the rest.
  std::array<int64_t, common::kWaitReasonCount> waiting{};
  int64_t ready = 0;    // queued and free to start (waiting only for a free slot or the loop)
  int64_t running = 0;  // attempt decided or on the wire
  // How long the oldest job that is not running has waited (since submit, replay or its last
  // attempt); zero when none waits.
  absl::Duration oldest_waiting_age = absl::ZeroDuration();
  // The budgets it names, in order (endpoints[].budgets).
  std::vector<BudgetSnapshot> budgets;
};

class EndpointControl {
 public:
  using StatusDone = absl::AnyInvocable<void(absl::StatusOr<std::vector<EndpointStatus>>) &&>;
  virtual ~EndpointControl() = default;

  // One endpoint (NOT_FOUND naming it), or every endpoint in config order when `name` is empty.
  // `done` may run on any thread.
  virtual void GetEndpointStatus(std::string name, StatusDone done) = 0;
  // Holds the endpoint's jobs (OPERATOR_PAUSED; no attempt is spent) until `until`
  // (InfiniteFuture: until resumed). Durable before `done` reports the new status; a second
  // pause replaces the first. Attempts already on the wire finish.
  virtual void PauseEndpoint(std::string name, absl::Time until, std::string reason,
                             StatusDone done) = 0;
  // Lifts an operator pause (FAILED_PRECONDITION when none); slow start applies.
  virtual void ResumeEndpoint(std::string name, StatusDone done) = 0;

  // Thread-safe and never blocking (a snapshot the loop refreshes): the wait the endpoint's
  // gate imposes now on a job that is ready to run (`retry`: a retry of its current budget),
  // and until when where known (InfiniteFuture when unknown). kNone: it may start.
  virtual common::WaitReason EndpointWait(absl::string_view endpoint, bool retry,
                                          absl::Time* until) const = 0;
  // The same snapshot for a ready job that its endpoint does not hold: the wait its budgets
  // impose on it (by its tenant, labels and `priority`), as the last dispatch pass found its
  // lane: QUOTA_EXHAUSTED, QUOTA_RESERVED or RATE_LIMITED; kNone when none holds it.
  virtual common::WaitReason BudgetWait(absl::string_view endpoint, const common::JobSpec& job,
                                        common::Priority priority, absl::Time* until) const = 0;
  // Endpoints whose gate holds ready jobs for `reason` now (same snapshot).
  virtual std::vector<std::string> EndpointsWaiting(common::WaitReason reason) const = 0;
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_ENDPOINT_STATUS_H_
