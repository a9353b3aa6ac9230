#include "server/app/telemetry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace rebound::app {
namespace {

bool Valid(int endpoint, const metrics::Metrics& m) {
  return endpoint >= 0 && static_cast<size_t>(endpoint) < m.endpoint_count();
}

std::string FormatUtc(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

}  // namespace

metrics::Outcome OutcomeOf(const policy::Outcome& outcome, policy::Action action) {
  if (outcome.error == policy::TransportError::kTimeout) return metrics::Outcome::kTimeout;
  if (outcome.error != policy::TransportError::kNone || outcome.http_status == 0) {
    return metrics::Outcome::kTransportError;
  }
  switch (action) {
    case policy::Action::kSuccess:
      return metrics::Outcome::kSuccess;
    case policy::Action::kRetry:
      return metrics::Outcome::kRetryable;
    case policy::Action::kRateLimited:
      return metrics::Outcome::kRateLimited;
    case policy::Action::kPermanent:
      return metrics::Outcome::kPermanent;
  }
  return metrics::Outcome::kPermanent;
}

metrics::RetryReason RetryReasonOf(const policy::Outcome& outcome, policy::Action action) {
  if (action == policy::Action::kRateLimited) return metrics::RetryReason::kRateLimited;
  if (outcome.error == policy::TransportError::kTimeout) return metrics::RetryReason::kTimeout;
  if (outcome.error != policy::TransportError::kNone || outcome.http_status == 0) {
    return metrics::RetryReason::kTransport;
  }
  return metrics::RetryReason::kStatus;
}

log::JobFields Telemetry::FieldsOf(const engine::JobRef& job) const {
  log::JobFields f;
  f.job_id = job.id;
  if (job.tenant != nullptr) f.tenant = *job.tenant;
  if (Valid(job.endpoint, metrics_)) f.endpoint = metrics_.endpoint(job.endpoint).name;
  if (job.correlation_id != nullptr) f.correlation_id = *job.correlation_id;
  f.attempt = job.attempt;
  return f;
}

void Telemetry::OnSubmitted(const common::JobSpec& spec, common::JobId id, int endpoint,
                            bool deduplicated) {
  if (Valid(endpoint, metrics_)) {
    (deduplicated ? metrics_.Deduplicated(endpoint, spec.tenant)
                  : metrics_.Submitted(endpoint, spec.tenant))
        .Increment();
  }
  log::JobFields f;
  f.job_id = id;
  f.tenant = spec.tenant;
  f.endpoint = spec.endpoint;
  f.correlation_id = spec.correlation_id;
  log_.Log(deduplicated ? log::Event::kDeduplicated : log::Event::kSubmitted, f);
}

void Telemetry::OnAttemptStarted(const engine::JobRef& job) {
  if (!log_.Enabled(log::DefaultLevel(log::Event::kAttemptStarted))) return;
  log_.Log(log::Event::kAttemptStarted, FieldsOf(job));
}

void Telemetry::OnAttemptFinished(const engine::JobRef& job, const policy::Outcome& outcome,
                                  const policy::Decision& decision, absl::Duration duration) {
  const policy::Action action = decision.classification.action;
  const bool retry_after_won = !decision.throttle_backoff() && decision.retry_after.has_value() &&
                               *decision.retry_after >= decision.delay;
  // A throttle backoff that pauses the endpoint leaves the job due at once: its wait is the
  // pause's.
  const absl::Duration wait =
      decision.pause_until > decision.next_attempt_at
          ? std::max(decision.delay, decision.pause_until - decision.next_attempt_at)
          : decision.delay;
  if (Valid(job.endpoint, metrics_)) {
    metrics::EndpointMetrics& m = metrics_.endpoint(job.endpoint);
    m.RecordAttempt(OutcomeOf(outcome, action), metrics::CodeClassOf(outcome.http_status),
                    duration);
    if (decision.retry_after.has_value()) m.RecordRetryAfter(*decision.retry_after);
    if (decision.kind == policy::Decision::Kind::kRetry) {
      m.RecordRetry(RetryReasonOf(outcome, action), wait);
      if (decision.throttle_wait != policy::ThrottleWait::kNone) {
        m.throttles[static_cast<size_t>(decision.throttle_wait) - 1]->Increment();
      }
    }
    for (size_t r = 0; r < policy::kIgnoredReasonCount; ++r) {
      if (decision.ignored[r] > 0) m.headers_ignored[r]->Increment(decision.ignored[r]);
    }
  }
  log::JobFields f = FieldsOf(job);
  f.http_status = outcome.http_status;
  f.transport_error = policy::TransportErrorName(outcome.error);
  f.classification = policy::ActionName(action);
  f.latency = duration;
  if (outcome.error != policy::TransportError::kNone) f.reason = outcome.error_detail;
  log_.Log(log::Event::kAttemptFinished, f);
  if (decision.kind == policy::Decision::Kind::kRetry) {
    f.latency.reset();
    f.delay = wait;
    f.delay_cause = decision.throttle_backoff() ? "throttle_backoff"
                    : retry_after_won           ? "retry_after"
                                                : "backoff";
    f.reason = decision.reason;
    log_.Log(log::Event::kRetryScheduled, f);
  }
}

void Telemetry::OnFinished(const engine::JobRef& job, common::JobState state, absl::Duration age,
                           const std::string& decision) {
  metrics::Result result = metrics::Result::kFailed;
  log::Event event = log::Event::kFailed;
  switch (state) {
    case common::JobState::kSucceeded:
      result = metrics::Result::kSucceeded;
      event = log::Event::kSucceeded;
      break;
    case common::JobState::kExhausted:
      result = metrics::Result::kExhausted;
      event = log::Event::kExhausted;
      break;
    case common::JobState::kCancelled:
      result = metrics::Result::kCancelled;
      event = log::Event::kCancelled;
      break;
    default:
      break;
  }
  if (Valid(job.endpoint, metrics_)) metrics_.endpoint(job.endpoint).RecordCompleted(result, age);
  log::JobFields f = FieldsOf(job);
  f.latency = age;
  f.reason = decision;
  log_.Log(event, f);
}

void Telemetry::OnReplayed(const engine::JobRef& job) {
  log_.Log(log::Event::kReplayed, FieldsOf(job));
}

void Telemetry::OnEndpointPaused(int endpoint, absl::Time until) {
  if (!Valid(endpoint, metrics_)) return;
  metrics_.endpoint(endpoint).SetPaused(true);
  log::JobFields f;
  f.endpoint = metrics_.endpoint(endpoint).name;
  f.delay_cause = "endpoint_paused";
  const std::string reason =
      absl::StrCat("endpoint paused until ", FormatUtc(until), ": the upstream rate-limited");
  f.reason = reason;
  log_.Log(log::Event::kWaiting, f);
}

void Telemetry::OnCircuitChanged(int endpoint, engine::CircuitState from, engine::CircuitState to,
                                 const std::string& why) {
  if (!Valid(endpoint, metrics_)) return;
  metrics::EndpointMetrics& m = metrics_.endpoint(endpoint);
  m.RecordCircuitChange(static_cast<int>(to));
  log::JobFields f;
  f.endpoint = m.name;
  const std::string reason = absl::StrCat("circuit ", engine::CircuitStateName(from), " -> ",
                                          engine::CircuitStateName(to), ": ", why);
  f.reason = reason;
  log_.Log(to == engine::CircuitState::kOpen ? log::Level::kWarn : log::Level::kInfo,
           log::Event::kCircuitChanged, f);
}

void Telemetry::OnRetryDelayed(int endpoint) {
  if (!Valid(endpoint, metrics_)) return;
  metrics_.endpoint(endpoint).retries_delayed->Increment();
}

void Telemetry::OnOperatorPause(int endpoint, bool paused, absl::Time until,
                                const std::string& reason) {
  if (!Valid(endpoint, metrics_)) return;
  metrics::EndpointMetrics& m = metrics_.endpoint(endpoint);
  m.SetOperatorPaused(paused);
  log::JobFields f;
  f.endpoint = m.name;
  std::string text;
  if (paused) {
    text = absl::StrCat("paused by an operator ",
                        until == absl::InfiniteFuture() ? std::string("until resumed")
                                                        : absl::StrCat("until ", FormatUtc(until)),
                        reason.empty() ? "" : ": ", reason);
  } else {
    text = "operator pause lifted";
  }
  f.reason = text;
  log_.Log(paused ? log::Event::kOperatorPaused : log::Event::kOperatorResumed, f);
}

void Telemetry::OnBudgetGauges(int budget, const engine::BudgetGauges& g) {
  if (budget < 0 || static_cast<size_t>(budget) >= metrics_.budget_count()) return;
  metrics::BudgetMetrics& m = metrics_.budget(static_cast<size_t>(budget));
  m.in_flight->Set(static_cast<double>(g.in_flight));
  m.quota_used->Set(static_cast<double>(g.quota_used));
  m.quota_limit->Set(static_cast<double>(g.quota_limit));
  m.tokens->Set(g.tokens);
  m.scopes->Set(static_cast<double>(g.scopes));
}

void Telemetry::OnGauges(int endpoint, const engine::EndpointGauges& g) {
  if (!Valid(endpoint, metrics_)) return;
  metrics::EndpointMetrics& m = metrics_.endpoint(endpoint);
  using S = metrics::JobGaugeState;
  auto set = [&m](S state, int64_t value) {
    m.jobs[metrics::EndpointMetrics::Index(state)]->Set(static_cast<double>(value));
  };
  set(S::kQueued, g.queued);
  set(S::kBlocked, g.blocked);
  set(S::kRunning, g.running);
  set(S::kWaitingBackoff, g.waiting_backoff);
  set(S::kWaitingRetryAfter, g.waiting_retry_after);
  set(S::kWaitingPaused, g.waiting_paused);
  m.inflight->Set(static_cast<double>(g.in_flight));
  m.SetPaused(g.paused);
  m.circuit_state->Set(static_cast<double>(static_cast<int>(g.circuit)));
  m.SetOperatorPaused(g.operator_paused);
  m.allowed_in_flight->Set(static_cast<double>(g.allowed_in_flight));
  m.SetTokens(g.tokens);
  m.retries_in_flight->Set(static_cast<double>(g.retries_in_flight));
  m.retry_budget->Set(static_cast<double>(g.retry_budget));
  m.throttle_level->Set(g.throttle_level);
  m.paced_in_flight->Set(static_cast<double>(g.paced_in_flight));
  m.quota_remaining->Set(g.quota_remaining < 0 ? -1 : g.quota_remaining);
  for (int r = 1; r < common::kWaitReasonCount; ++r) {
    m.SetWaiting(static_cast<common::WaitReason>(r), g.waiting[static_cast<size_t>(r)]);
  }
}

void Telemetry::OnDeadLetterDelta(int endpoint, int64_t delta) {
  if (!Valid(endpoint, metrics_)) return;
  metrics_.endpoint(endpoint).dead_letter->Increment(static_cast<double>(delta));
}

}  // namespace rebound::app
