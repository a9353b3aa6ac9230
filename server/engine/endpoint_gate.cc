#include "server/engine/endpoint_gate.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace rebound::engine {

using common::JobState;
using common::WaitReason;

namespace {

// The send bucket: the configured rate, a burst of 1 (see "Send pacing" in the header).
config::RateLimitConfig SendPacing(const config::RateLimitConfig& limit) {
  return config::RateLimitConfig{limit.rate, 1};
}

}  // namespace

CircuitSignal SignalOf(const policy::Outcome& outcome, policy::Action classification) {
  if (classification == policy::Action::kRateLimited) return CircuitSignal::kThrottle;
  if (outcome.error != policy::TransportError::kNone || outcome.http_status >= 500) {
    return CircuitSignal::kFailure;
  }
  return CircuitSignal::kSuccess;
}

void EndpointGate::Configure(const config::EndpointConfig& endpoint, const config::Config& config,
                             absl::Time now, int index, EngineObserver* observer) {
  config_ = &endpoint;
  default_policy_ = config.FindPolicy(endpoint.policy).get();
  // Config validation guarantees the policy exists; fall back for hand-built test configs.
  if (default_policy_ == nullptr) default_policy_ = config.FindPolicy("default").get();
  assert(default_policy_ != nullptr);
  base_url_ = endpoint.base_url;
  if (index >= 0) index_ = index;
  if (observer != nullptr) observer_ = observer;
  Report(breaker_.Configure(endpoint.circuit_breaker, now), now);
  budget_.Configure(endpoint.retry_budget);
  bucket_.Configure(endpoint.rate_limit, now);
  send_bucket_.Configure(SendPacing(endpoint.rate_limit), now);
  slow_start_.Configure(endpoint.slow_start);
  pacer_.Configure(endpoint.pacing);
}

void EndpointGate::SetBudgets(std::vector<Budget*> budgets) {
  split_bys_.clear();
  for (const Budget* b : budgets) split_bys_.push_back(b->config().split_by);
  budgets_ = std::move(budgets);
}

Admission EndpointGate::AdmitBudgets(const std::vector<std::string>& scopes,
                                     common::Priority priority, absl::Time now) const {
  for (size_t i = 0; i < budgets_.size() && i < scopes.size(); ++i) {
    const Admission a = budgets_[i]->Admit(scopes[i], priority, now);
    if (!a.admitted) return a;
  }
  return {};
}

Admission EndpointGate::BudgetWait(const ReadyJob& job, absl::Time now) const {
  if (budgets_.empty()) return {};
  std::vector<std::string> scopes;
  LaneOf(job.tenant, job.labels, config_->fairness_label, split_bys_, &scopes);
  return AdmitBudgets(scopes, job.priority, now);
}

void EndpointGate::Report(const std::optional<CircuitTransition>& t, absl::Time now) {
  if (!t.has_value()) return;
  if (t->to == CircuitState::kClosed) slow_start_.Begin(now);
  if (observer_ != nullptr) observer_->OnCircuitChanged(index_, t->from, t->to, t->why);
}

void EndpointGate::Tick(absl::Time now) {
  Report(breaker_.Advance(now), now);
  if (operator_paused_ && now >= operator_until_) operator_paused_ = false;  // expired
  const bool paused = OperatorPaused(now) || paused_until_ > now;
  if (was_paused_ && !paused) slow_start_.Begin(now);
  was_paused_ = paused;
}

Admission EndpointGate::Admit(absl::Time now, bool retry) const {
  if (OperatorPaused(now)) return {false, WaitReason::kOperatorPaused, operator_until_};
  if (paused_until_ > now) {
    return {false, pause_is_backoff_ ? WaitReason::kRateLimited : WaitReason::kEndpointPaused,
            paused_until_};
  }
  if (!breaker_.MayStart()) return {false, WaitReason::kCircuitOpen, breaker_.NextChange()};
  const int64_t max = config_->max_in_flight;
  if (in_flight_ >= slow_start_.Allowed(max, now)) {
    return {false, WaitReason::kNone, slow_start_.NextStep(max, now)};
  }
  // Until a completion brings a reading (or frees a place).
  if (in_flight_ >= pacer_.Allowed(max, now)) return {false, WaitReason::kRateLimited};
  if (retry && !budget_.MayStartRetry(in_flight_, retries_in_flight_)) {
    return {false, WaitReason::kRetryBudget};
  }
  if (bucket_.limited()) {
    const absl::Time next_token = bucket_.NextTokenAt(now);
    if (next_token > now) return {false, WaitReason::kRateLimited, next_token};
  }
  if (pacer_.NextStartAt() > now) return {false, WaitReason::kRateLimited, pacer_.NextStartAt()};
  return {};
}

AttemptTicket EndpointGate::OnStarted(const Ready& ready, absl::Time now) {
  ++in_flight_;
  if (ready.retry) ++retries_in_flight_;
  const bool took = bucket_.TryTake(now);
  assert(took && "OnStarted without admission");
  (void)took;
  pacer_.OnStarted(now);
  AttemptTicket ticket{breaker_.Start(), ready.retry, now, {}};
  for (size_t i = 0; i < budgets_.size() && i < ready.scopes.size(); ++i) {
    budgets_[i]->OnStarted(ready.scopes[i], now);
    ticket.budgets.emplace_back(budgets_[i], ready.scopes[i]);
  }
  return ticket;
}

void EndpointGate::OnFinished(const AttemptTicket& ticket, const CircuitSignal* signal,
                              absl::Time now) {
  assert(in_flight_ > 0);
  --in_flight_;
  if (ticket.retry) --retries_in_flight_;
  for (const auto& [budget, scope] : ticket.budgets) budget->OnFinished(scope);
  pacer_.OnEnded(ticket.admitted);
  if (signal != nullptr) {
    if (*signal == CircuitSignal::kSuccess) throttle_.Reset();
    Report(breaker_.Finish(ticket.circuit, *signal, now), now);
  } else {
    breaker_.Abandon(ticket.circuit);
  }
}

bool EndpointGate::PauseUntil(absl::Time until, std::string cause, bool throttle_backoff) {
  if (until <= paused_until_) return false;
  paused_until_ = until;
  pause_cause_ = std::move(cause);
  pause_is_backoff_ = throttle_backoff;
  was_paused_ = true;
  return true;
}

void EndpointGate::SetOperatorPause(absl::Time until, std::string reason, absl::Time paused_at) {
  operator_paused_ = true;
  operator_until_ = until;
  operator_reason_ = std::move(reason);
  operator_paused_at_ = paused_at;
  was_paused_ = true;
}

bool EndpointGate::ClearOperatorPause(absl::Time now) {
  if (!OperatorPaused(now)) return false;
  operator_paused_ = false;
  return true;  // the next Tick sees the pause gone and begins slow start
}

absl::Time EndpointGate::SendDue(absl::Time now) const {
  if (send_held_.empty()) return absl::InfiniteFuture();
  // It has waited since it was held, or since the one before it left, whichever is later.
  const absl::Time since = std::min(std::max(send_held_.front().since, last_send_), now);
  return send_bucket_.NextTokenAt(since);
}

bool EndpointGate::ReleaseSend(absl::Time now, common::JobId* id) {
  const absl::Time due = SendDue(now);
  if (due > now || !send_bucket_.TryTake(due)) return false;
  last_send_ = due;
  *id = send_held_.front().id;
  send_held_.pop_front();
  return true;
}

void EndpointGate::PushReady(const ReadyJob& job, absl::Time since) {
  std::vector<std::string> scopes;
  const std::string lane =
      LaneOf(job.tenant, job.labels, config_->fairness_label, split_bys_, &scopes);
  ready_.Push(job.priority, lane, scopes, FairQueue::Item{job.id, next_seq_++, since, job.retry});
}

bool EndpointGate::TakeAdmitted(absl::Time now, Ready* out) {
  if (ready_.empty()) return false;
  const bool firsts = ready_.size() > ready_.retries() && Admit(now, false).admitted;
  bool retries = false;
  if (ready_.retries() > 0) {
    const Admission a = Admit(now, true);
    retries = a.admitted;
    const FairQueue::Item* head = ready_.FrontRetry();
    if (a.reason == WaitReason::kRetryBudget && head != nullptr && head->id != delayed_retry_) {
      delayed_retry_ = head->id;  // counted once per job held
      if (observer_ != nullptr) observer_->OnRetryDelayed(index_);
    }
  }
  const std::vector<std::string>* scopes = nullptr;
  const FairQueue::Item* item =
      ready_.Peek(firsts, retries, [&](const FairQueue::LaneInfo& lane, const FairQueue::Item&) {
        if (budgets_.empty()) return true;
        if (!AdmitBudgets(lane.scopes, lane.priority, now).admitted) return false;
        scopes = &lane.scopes;
        return true;
      });
  if (item == nullptr) return false;
  out->id = item->id;
  out->retry = item->retry;
  if (scopes != nullptr) {
    out->scopes = *scopes;
  } else {
    out->scopes.clear();
  }
  ready_.Pop();
  return true;
}

void EndpointGate::Count(JobState state, bool retry_after, int sign) {
  count_[static_cast<int>(state)] += sign;
  if (state == JobState::kWaitingRetry && retry_after) waiting_retry_after_ += sign;
}

void EndpointGate::FillWaiting(absl::Time now,
                               std::array<int64_t, common::kWaitReasonCount>* waiting) const {
  auto& w = *waiting;
  w.fill(0);
  w[static_cast<int>(WaitReason::kBackoff)] =
      CountOf(JobState::kWaitingRetry) - waiting_retry_after_;
  w[static_cast<int>(WaitReason::kRetryAfter)] = waiting_retry_after_;
  w[static_cast<int>(WaitReason::kOrderingBlocked)] = CountOf(JobState::kBlocked);
  // Queued jobs: the queue may still hold entries of jobs cancelled meanwhile, so the exact
  // count is the state's; retries are those of the queue, at most that.
  const int64_t queued = CountOf(JobState::kQueued);
  const int64_t retries = std::min<int64_t>(static_cast<int64_t>(ready_.retries()), queued);
  for (const bool retry : {false, true}) {
    int64_t n = retry ? retries : queued - retries;
    const Admission a = Admit(now, retry);
    // Unless the endpoint holds the kind for a reason of its own (a pause, the breaker, ...),
    // those its budgets held at the last RefreshHolds wait for them; the rest are ready (or
    // wait only for a free place: kNone).
    if (a.admitted || a.reason == WaitReason::kNone) {
      const auto& held_by = retry ? tally_.retries : tally_.firsts;
      for (int r = 0; r < common::kWaitReasonCount; ++r) {
        const int64_t held = std::min(n, held_by[r]);
        w[r] += held;
        n -= held;
      }
    }
    w[static_cast<int>(a.admitted ? WaitReason::kNone : a.reason)] += n;
  }
}

EndpointGauges EndpointGate::Gauges(absl::Time now) const {
  EndpointGauges g;
  g.paused = paused_until_ > now || OperatorPaused(now);
  g.blocked = CountOf(JobState::kBlocked);
  g.running = CountOf(JobState::kRunning);
  g.waiting_retry_after = waiting_retry_after_;
  g.waiting_backoff = CountOf(JobState::kWaitingRetry) - waiting_retry_after_;
  (g.paused ? g.waiting_paused : g.queued) = CountOf(JobState::kQueued);
  g.in_flight = in_flight_;
  g.circuit = breaker_.state();
  g.operator_paused = OperatorPaused(now);
  g.allowed_in_flight = slow_start_.Allowed(config_->max_in_flight, now);
  g.tokens = bucket_.limited() ? bucket_.Tokens(now) : -1;
  g.retries_in_flight = retries_in_flight_;
  g.retry_budget = config_->retry_budget.enabled ? budget_.Allowed(in_flight_) : -1;
  g.throttle_level = throttle_.level();
  const QuotaPacerSnapshot qp = pacer_.Snapshot(config_->max_in_flight, now);
  g.paced_in_flight = qp.allowed_in_flight;
  g.quota_remaining = qp.remaining.value_or(-1);
  FillWaiting(now, &g.waiting);
  return g;
}

EndpointStatus EndpointGate::Status(absl::Time now) const {
  EndpointStatus s;
  const CircuitSnapshot c = breaker_.Snapshot(now);
  s.circuit_enabled = c.enabled;
  s.circuit = c.state;
  s.circuit_changed_at = c.changed_at;
  s.next_probe_at = c.next_probe_at;
  s.window_requests = c.window_requests;
  s.window_failures = c.window_failures;
  s.window_throttles = c.window_throttles;
  if (paused_until_ > now) {
    s.paused_until = paused_until_;
    s.pause_cause = pause_cause_;
  }
  s.throttle_level = throttle_.level();
  const QuotaPacerSnapshot qp = pacer_.Snapshot(config_->max_in_flight, now);
  s.pacing_active = qp.active;
  s.paced_in_flight = qp.allowed_in_flight;
  s.quota_remaining = qp.remaining;
  s.quota_low_water = qp.low_water;
  s.quota_reset_at = qp.reset_at;
  s.paced_until = qp.next_start_at;
  s.operator_paused = OperatorPaused(now);
  if (s.operator_paused) {
    s.operator_paused_until = operator_until_;
    s.operator_paused_at = operator_paused_at_;
    s.operator_reason = operator_reason_;
  }
  s.in_flight = in_flight_;
  s.max_in_flight = config_->max_in_flight;
  const SlowStartSnapshot ss = slow_start_.Snapshot(config_->max_in_flight, now);
  s.allowed_in_flight = ss.allowed_in_flight;
  s.slow_start_level = ss.level;
  s.slow_start_until = ss.until;
  const TokenBucketSnapshot tb = bucket_.Snapshot(now);
  s.rate = tb.rate;
  s.burst = tb.burst;
  s.tokens = tb.tokens;
  const RetryBudgetSnapshot rb = budget_.Snapshot(in_flight_, retries_in_flight_);
  s.retry_budget_enabled = rb.enabled;
  s.retries_in_flight = rb.retries_in_flight;
  s.retry_budget = rb.enabled ? rb.budget : 0;
  FillWaiting(now, &s.waiting);
  s.ready = s.waiting[static_cast<int>(WaitReason::kNone)];
  s.running = CountOf(JobState::kRunning);
  const absl::Time oldest = ready_.OldestSince();
  constexpr size_t kScopesShown = 20;
  for (const Budget* b : budgets_) s.budgets.push_back(b->Snapshot(now, kScopesShown));
  if (oldest < now) s.oldest_waiting_age = now - oldest;
  return s;
}

bool EndpointGate::RefreshHolds(absl::Time now) {
  // The budgets' holds: a scan of the lane heads (budgets are per lane, and a dispatch pass
  // that stopped at the in-flight cap has not asked them all).
  tally_.Clear();
  std::vector<LaneHold> holds;
  if (!budgets_.empty()) {
    ready_.ForEachLane(true, true, [&](const FairQueue::LaneInfo& lane, const FairQueue::Item&) {
      const Admission b = AdmitBudgets(lane.scopes, lane.priority, now);
      if (b.admitted) return;
      const int r = static_cast<int>(b.reason);
      tally_.firsts[r] += static_cast<int64_t>(lane.firsts);
      tally_.retries[r] += static_cast<int64_t>(lane.retries);
      tally_.until = std::min(tally_.until, b.until);
      if (holds.size() < kMaxLaneHolds) {
        holds.push_back(LaneHold{lane.key, lane.priority, b});
      }
    });
  }
  bool changed = holds.size() != lane_holds_.size();
  for (size_t i = 0; !changed && i < holds.size(); ++i) {
    changed = holds[i].lane != lane_holds_[i].lane ||
              holds[i].priority != lane_holds_[i].priority ||
              holds[i].admission.reason != lane_holds_[i].admission.reason;
  }
  lane_holds_ = std::move(holds);
  for (const bool retry : {false, true}) {
    const bool queued = retry ? ready_.retries() > 0 : ready_.size() > ready_.retries();
    Admission a = queued ? Admit(now, retry) : Admission{};
    if (a.admitted || a.reason == WaitReason::kNone) a = Admission{};
    Admission& h = holds_[retry ? 1 : 0];
    changed |= h.reason != a.reason;
    h = a;  // `until` moves with every token: not a change worth telling
  }
  return changed;
}

absl::Time EndpointGate::NextWakeup(absl::Time now) const {
  absl::Time next = absl::InfiniteFuture();
  for (const bool retry : {false, true}) {
    const bool queued = retry ? ready_.retries() > 0 : ready_.size() > ready_.retries();
    if (!queued) continue;
    const Admission a = Admit(now, retry);
    // An admitted job is dispatched this turn; a hold without a time ends with a completion.
    if (!a.admitted && a.until != absl::InfiniteFuture()) next = std::min(next, a.until);
    // Lanes a budget held at the last RefreshHolds, when the endpoint admits the kind.
    if (a.admitted) next = std::min(next, tally_.until);
  }
  next = std::min(next, std::max(SendDue(now), now));
  return std::max(next, now);
}

}  // namespace rebound::engine
