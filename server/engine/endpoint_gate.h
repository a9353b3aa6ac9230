// EndpointGate: one per endpoint; decides whether the next attempt to the endpoint may start
// now, and holds the endpoint's ready jobs until it does.
//
// Loop thread only (the engine owns one per endpoint); no clock of its own: every time-dependent
// call takes `now`. Admission is asked before an attempt is counted, so a gate that refuses
// never spends an attempt: the engine takes admitted jobs (TakeAdmitted), calls OnStarted when
// it counts the attempt, and OnFinished when the attempt ends or is given back.
//
// The checks, in order; the first that refuses names the wait (docs/architecture.md, "Endpoint
// protection"):
//   1. operator pause (PauseEndpoint)                         OPERATOR_PAUSED
//   2. pause by a rate-limited answer: for the upstream's time  ENDPOINT_PAUSED
//      (Retry-After, reset header), or for the throttle backoff  RATE_LIMITED
//   3. circuit breaker open, or half-open with its probes out  CIRCUIT_OPEN
//   4. in-flight cap (lowered by slow start while it ramps)    (no wait reason: "ready")
//   5. in-flight cap lowered by quota pacing                    RATE_LIMITED
//   6. retry budget, for retries only                          RETRY_BUDGET
//   7. token bucket (a token is taken only on admission)       RATE_LIMITED
//   8. quota pacing's spacing of starts before a reset         RATE_LIMITED
//   9. each budget the endpoint names (budget.h), for the job's  QUOTA_EXHAUSTED,
//      scope and priority                                       QUOTA_RESERVED, RATE_LIMITED
// Checks 1-8 are the endpoint's and hold every job alike; 9 is asked per lane of the ready
// queue (fair_queue.h), so a scope out of quota holds back only its own jobs.
// Slow start begins when a pause ends or the breaker closes. The gate tells the observer about
// breaker transitions and about retries the budget holds back.
#ifndef REBOUND_SERVER_ENGINE_ENDPOINT_GATE_H_
#define REBOUND_SERVER_ENGINE_ENDPOINT_GATE_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "server/common/job.h"
#include "server/config/config.h"
#include "server/engine/budget.h"
#include "server/engine/circuit_breaker.h"
#include "server/engine/endpoint_status.h"
#include "server/engine/fair_queue.h"
#include "server/engine/observer.h"
#include "server/engine/quota_pacer.h"
#include "server/engine/retry_budget.h"
#include "server/engine/slow_start.h"
#include "server/engine/throttle_backoff.h"
#include "server/engine/token_bucket.h"
#include "server/policy/policy.h"

namespace rebound::engine {

// What an attempt carries from OnStarted to OnFinished.
struct AttemptTicket {
  CircuitTicket circuit;
  bool retry = false;
  absl::Time admitted = absl::InfinitePast();  // when OnStarted counted it
  // The budgets it counted in (owned by the engine, never freed) and its scope in each.
  std::vector<std::pair<Budget*, std::string>> budgets;
};

// A job to queue as ready (EndpointGate::PushReady).
struct ReadyJob {
  common::JobId id = 0;
  bool retry = false;  // its next attempt is a retry of its current budget
  common::Priority priority = common::Priority::kNormal;
  absl::string_view tenant;
  const std::map<std::string, std::string>* labels = nullptr;  // null: none
};

// What an attempt's outcome says about the endpoint (for the breaker): 5xx, timeouts and
// transport errors are failures; rate-limited outcomes (429, rate_limited rules) throttles;
// any other answer a success (the endpoint is up, whatever the job's fate).
CircuitSignal SignalOf(const policy::Outcome& outcome, policy::Action classification);

class EndpointGate {
 public:
  // A job taken off the ready queue. `retry`: its next attempt is a retry of its current
  // budget; `scopes`: its scope in each of the endpoint's budgets, for OnStarted.
  struct Ready {
    common::JobId id = 0;
    bool retry = false;
    std::vector<std::string> scopes;
  };

  // Takes the endpoint's settings, at start and on every reload (the gate keeps its state:
  // queue, in flight, pauses, the breaker's window). `endpoint` must live in `config`, which
  // must outlive its use. `index` and `observer` (not owned; may be null) name the gate in
  // what it reports.
  void Configure(const config::EndpointConfig& endpoint, const config::Config& config,
                 absl::Time now, int index = -1, EngineObserver* observer = nullptr);
  // The budgets it names (endpoints[].budgets, in order; owned by the engine), after Configure.
  // Jobs queued before keep the lanes they were put in: the engine queues them again
  // (DrainReady) when a reload may have changed how jobs are put in lanes.
  void SetBudgets(std::vector<Budget*> budgets);
  const std::vector<Budget*>& budgets() const { return budgets_; }
  // The split_by of each budget, in order (for LaneOf).
  const std::vector<std::string>& split_bys() const { return split_bys_; }
  const config::EndpointConfig& config() const { return *config_; }
  // The endpoint's policy (the config's "default" when the endpoint names none that exists).
  const policy::Policy* default_policy() const { return default_policy_; }
  const std::string& base_url() const { return base_url_; }

  // --- Admission --------------------------------------------------------------------------
  // Changes that time makes by itself: the breaker's open period ending, a pause ending (slow
  // start begins). Call before taking jobs in each dispatch pass.
  void Tick(absl::Time now);
  // Whether an attempt (`retry` or first) may start now. No side effect.
  Admission Admit(absl::Time now, bool retry) const;
  // The attempt is counted and goes on the wire (after TakeAdmitted gave the job): takes a
  // token, counts a half-open probe and a retry in flight, and counts it in its budgets.
  AttemptTicket OnStarted(const Ready& ready, absl::Time now);
  // The wait of a ready job by its budgets alone (check 9), for what watchers see.
  Admission BudgetWait(const ReadyJob& job, absl::Time now) const;
  // The attempt ended; `signal` null: it was given back before it left.
  void OnFinished(const AttemptTicket& ticket, const CircuitSignal* signal, absl::Time now);
  int in_flight() const { return in_flight_; }

  // A rate-limited answer holds the endpoint until `until`: the upstream's time (Retry-After,
  // a reset header), or with `throttle_backoff` the policy's throttle backoff, which the gate
  // then shows as RATE_LIMITED. `cause` is the decision, for the status. Returns true when
  // that moved the pause later.
  bool PauseUntil(absl::Time until, std::string cause, bool throttle_backoff = false);
  absl::Time paused_until() const { return paused_until_; }
  // The throttle backoff level for a throttle naming no time of an attempt sent at `started`
  // (ThrottleBackoff::LevelFor), and the backoff the policy drew for it beginning at `now`.
  int ThrottleLevel(absl::Time started) const { return throttle_.LevelFor(started); }
  void OnThrottleBackoff(int level, absl::Time now) { throttle_.Begin(level, now); }
  // The quota an answer announced, for pacing (QuotaPacer::OnAnswer); call after OnFinished
  // with the attempt's ticket.
  void OnQuota(const QuotaReading& reading, bool throttled, const AttemptTicket& ticket,
               absl::Time now) {
    pacer_.OnAnswer(reading, throttled, ticket.admitted, now, in_flight_, config_->max_in_flight);
  }
  // An operator's pause (persisted by the engine): until `until` (InfiniteFuture: until
  // resumed). A second one replaces the first.
  void SetOperatorPause(absl::Time until, std::string reason, absl::Time paused_at);
  // Lifts the operator pause (slow start begins); false when there was none.
  bool ClearOperatorPause(absl::Time now);
  bool OperatorPaused(absl::Time now) const { return operator_paused_ && now < operator_until_; }

  // --- Ready queue ------------------------------------------------------------------------
  // One FairQueue (fair_queue.h): higher priority first, lanes (tenant, fairness label, budget
  // scopes) in turn, FIFO within a lane, where first attempts and retries wait apart (the older
  // front first) so that a gate holding retries only (retry budget) lets first attempts pass.
  // `since`: when the job became ready.
  void PushReady(const ReadyJob& job, absl::Time since);
  bool HasReady() const { return !ready_.empty(); }
  size_t ReadySize() const { return ready_.size(); }
  // Takes off the queue the next ready job whose attempt the endpoint (Admit) and its budgets
  // allow now; false when none. The entry may be stale (the job was cancelled meanwhile): the
  // caller checks and skips it.
  bool TakeAdmitted(absl::Time now, Ready* out);
  // Empties the ready queue into `out` (oldest first, with when each became ready), for
  // queueing again.
  void DrainReady(std::vector<FairQueue::Item>* out) { ready_.Drain(out); }
  // The lanes whose head a budget refuses, as the last RefreshHolds found them (at most
  // kMaxLaneHolds), for the view other threads read (GetSync's wait).
  struct LaneHold {
    std::string lane;
    common::Priority priority;
    Admission admission;
  };
  static constexpr size_t kMaxLaneHolds = 256;
  const std::vector<LaneHold>& lane_holds() const { return lane_holds_; }

  // --- Send pacing ------------------------------------------------------------------------
  // The token bucket is charged at admission, but a request leaves only once its RUNNING is
  // committed, and a group commit hands many admitted attempts back at once. A second bucket
  // paces the sends themselves: an attempt of a paced endpoint waits here, in order, and the
  // engine releases the ones whose tokens are due right before the loop waits in the executor,
  // where the requests leave.
  //
  // The send bucket has the configured rate and a burst of 1: sends leave at most one per
  // 1/rate. The configured burst is thus spent at admission only, and at the upstream it is the
  // allowance for the variation of the delay from send to arrival (a new connection's
  // handshake, the network, a busy upstream): with that variation up to (burst - 1) / rate, the
  // upstream sees at most burst + rate x T requests in any window T, as configured. A token is
  // taken as of the moment it came due while an attempt waited for it, so a loop that wakes a
  // little late (waits are whole milliseconds) loses no rate.
  bool paces_sends() const { return send_bucket_.limited(); }
  void HoldForSend(common::JobId id, absl::Time now) { send_held_.push_back(Held{id, now}); }
  // The oldest held attempt, with its send token taken, when one is due; false otherwise.
  bool ReleaseSend(absl::Time now, common::JobId* id);

  // --- What it shows -----------------------------------------------------------------------
  // A job of this endpoint entered (+1) or left (-1) `state`; `retry_after` for a
  // WAITING_RETRY set by the upstream's Retry-After.
  void Count(common::JobState state, bool retry_after, int sign);
  int64_t CountOf(common::JobState state) const { return count_[static_cast<int>(state)]; }
  EndpointGauges Gauges(absl::Time now) const;
  // Everything but the name; waiting counts and the oldest wait included.
  EndpointStatus Status(absl::Time now) const;
  // The endpoint's wait for a ready job of that kind now (kNone: none, or only the in-flight
  // cap), with until when, and the lanes its budgets hold (a scan of the lane heads, when it
  // names budgets). Records them; returns true when a kind's wait or a lane's hold changed
  // since the last call (the engine then tells watchers and refreshes what other threads read).
  bool RefreshHolds(absl::Time now);
  const Admission& hold(bool retry) const { return holds_[retry ? 1 : 0]; }

  // The earliest time after `now` at which the gate would admit a queued job it holds now;
  // InfiniteFuture when nothing waits on time (a queue held by the in-flight cap or the retry
  // budget waits for a completion, which wakes the loop anyway).
  absl::Time NextWakeup(absl::Time now) const;

 private:
  // What the last RefreshHolds found the budgets refusing: jobs by reason and kind.
  struct Tally {
    std::array<int64_t, common::kWaitReasonCount> firsts = {};
    std::array<int64_t, common::kWaitReasonCount> retries = {};
    absl::Time until = absl::InfiniteFuture();  // the earliest refusal's end
    void Clear() { *this = Tally{}; }
  };
  Admission AdmitBudgets(const std::vector<std::string>& scopes, common::Priority priority,
                         absl::Time now) const;

  void Report(const std::optional<CircuitTransition>& t, absl::Time now);
  // Jobs waiting by reason: the queued ones split by the gate's holds, and the job's own.
  void FillWaiting(absl::Time now, std::array<int64_t, common::kWaitReasonCount>* waiting) const;

  const config::EndpointConfig* config_ = nullptr;
  const policy::Policy* default_policy_ = nullptr;
  std::string base_url_;
  int index_ = -1;
  EngineObserver* observer_ = nullptr;
  std::vector<Budget*> budgets_;
  std::vector<std::string> split_bys_;
  FairQueue ready_;
  Tally tally_;
  std::vector<LaneHold> lane_holds_;
  uint64_t next_seq_ = 0;
  int in_flight_ = 0;
  int retries_in_flight_ = 0;
  absl::Time paused_until_ = absl::InfinitePast();
  std::string pause_cause_;
  bool pause_is_backoff_ = false;  // the pause is a throttle backoff (RATE_LIMITED)
  ThrottleBackoff throttle_;
  bool operator_paused_ = false;
  absl::Time operator_until_ = absl::InfiniteFuture();
  absl::Time operator_paused_at_ = absl::InfinitePast();
  std::string operator_reason_;
  // A pause was in force at the last Tick: its end begins slow start.
  bool was_paused_ = false;
  CircuitBreaker breaker_{config::CircuitBreakerConfig{}, absl::UnixEpoch()};
  RetryBudget budget_{config::RetryBudgetConfig{}};
  TokenBucket bucket_{config::RateLimitConfig{}, absl::UnixEpoch()};
  TokenBucket send_bucket_{config::RateLimitConfig{}, absl::UnixEpoch()};
  struct Held {
    common::JobId id;
    absl::Time since;  // when it began to wait
  };
  std::deque<Held> send_held_;  // admitted, committed, waiting for a send token
  // The time the last send token was taken as of (see ReleaseSend).
  absl::Time last_send_ = absl::InfinitePast();
  // When the oldest held attempt's token is (or was) due; InfiniteFuture when none is held.
  absl::Time SendDue(absl::Time now) const;
  SlowStart slow_start_{config::SlowStartConfig{}};
  QuotaPacer pacer_{config::PacingConfig{}};
  // The retry at the head of the queue that the budget was last counted holding back.
  common::JobId delayed_retry_ = 0;
  Admission holds_[2];  // last RefreshHolds: [0] first attempts, [1] retries
  // Jobs of this endpoint by state (index: JobState), and those waiting on a Retry-After.
  int64_t count_[9] = {};
  int64_t waiting_retry_after_ = 0;
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_ENDPOINT_GATE_H_
