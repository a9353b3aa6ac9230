// From a ready job to its outcome: admission through the endpoint's gate, RUNNING, the
// request (read back from the store when it was not kept in memory), the HTTP call, and the
// policy's decision on its outcome. Also the budget of requests kept in memory.
#include <algorithm>
#include <cassert>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/engine/engine.h"
#include "server/http/request_builder.h"

namespace rebound::engine {
namespace {

constexpr size_t kLatenessSamples = 16384;
// Jobs retrying sooner than this keep their request in memory; later ones reload it from the
// store, so a million waiting jobs cost only their scheduling state.
constexpr absl::Duration kKeepSpecBelow = absl::Seconds(2);
// A request that could not be read from the store is tried again after this.
constexpr absl::Duration kReadRetry = absl::Seconds(1);

// Memory a request holds (its strings' contents; small-string capacity is not counted).
size_t SpecBytes(const common::JobSpec& s) {
  size_t n = sizeof(s) + s.tenant.size() + s.idempotency_key.size() + s.endpoint.size() +
             s.method.size() + s.path.size() + s.query.size() + s.body.size() +
             s.ordering_key.size() + s.correlation_id.size() + s.policy.size();
  for (const auto& [name, value] : s.headers) n += sizeof(name) * 2 + name.size() + value.size();
  for (const auto& [k, v] : s.labels) n += 64 + k.size() + v.size();  // 64: map node
  return n;
}

}  // namespace

void Engine::ReleaseSends(absl::Time now) {
  // Also while stopping: BeginAttempt gives them back once the grace is over.
  for (EndpointGate& gate : endpoints_) {
    JobId held = 0;
    while (gate.ReleaseSend(now, &held)) {
      Slot* slot = FindSlot(held);
      if (slot != nullptr && slot->state == JobState::kRunning) BeginAttempt(*slot, true);
    }
  }
}

void Engine::Dispatch(absl::Time now) {
  if (stopping_) return;
  EndpointGate::Ready next;
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    EndpointGate& gate = endpoints_[i];
    gate.Tick(now);
    while (gate.TakeAdmitted(now, &next)) {
      Slot* slot = FindSlot(next.id);
      if (slot == nullptr || slot->state != JobState::kQueued) continue;  // cancelled meanwhile
      DispatchOne(gate, *slot, next, now);
    }
    if (gate.RefreshHolds(now)) OnHoldsChanged(static_cast<int16_t>(i));
  }
}

void Engine::DispatchOne(EndpointGate& gate, Slot& slot, const EndpointGate::Ready& ready,
                         absl::Time now) {
  if (now > slot.deadline) {
    const std::string why = "stop: deadline passed before the next attempt";
    Persist(slot, JobState::kExhausted, why, [this, why](Slot* s) {
      if (s != nullptr) Finish(*s, why);
    });
    return;
  }
  if (slot.next_attempt_at != absl::InfinitePast()) {
    // Timer accuracy: due time to the attempt's beginning (RUNNING decided).
    RecordLateness(dispatch_lateness_, now - std::max(slot.next_attempt_at, gate.paused_until()));
  }
  slot.ticket = gate.OnStarted(ready, now);
  counters_.in_flight.fetch_add(1, std::memory_order_relaxed);
  ++slot.attempt_count;
  if (slot.first_attempt_at == absl::InfinitePast()) slot.first_attempt_at = now;
  std::string why = absl::StrCat("attempt ", slot.attempt_count, " started");
  // Never superseded: a cancel of a RUNNING job waits for the attempt's outcome.
  Persist(slot, JobState::kRunning, why, [this](Slot* s) {
    assert(s != nullptr);
    PrepareAttempt(*s);
  });
}

void Engine::PrepareAttempt(Slot& slot) {
  if (slot.spec != nullptr) return BeginAttempt(slot);
  // The request stayed in the store: read it off the loop (RUNNING is never superseded, so the
  // version still names this attempt when the read comes back).
  counters_.spec_loads.fetch_add(1, std::memory_order_relaxed);
  run_read_([this, id = slot.id, version = slot.version] {
    absl::StatusOr<common::JobSpec> spec = store_.LoadSpec(id);
    PostWork([this, id, version,
              spec = std::move(spec)]() mutable { OnSpecLoaded(id, version, std::move(spec)); },
             /*internal=*/true);
  });
}

void Engine::OnSpecLoaded(JobId id, uint32_t version, absl::StatusOr<common::JobSpec> spec) {
  Slot* slot = FindSlot(id);
  if (slot == nullptr || slot->version != version || slot->state != JobState::kRunning) return;
  if (spec.ok()) {
    HoldSpec(*slot, std::make_shared<const common::JobSpec>(*std::move(spec)));
    if (slot->correlation_id == nullptr && !slot->spec->correlation_id.empty()) {
      slot->correlation_id = std::make_unique<const std::string>(slot->spec->correlation_id);
    }
    return BeginAttempt(*slot);
  }
  // A cancel asked meanwhile ends the job as BeginAttempt would, without the request.
  if (slot->cancel_requested) return BeginAttempt(*slot);
  // Nothing was sent: give the attempt back and try again shortly (a read can fail for a
  // moment, e.g. SQLITE_BUSY); the job is not lost and the loop never waited for the read.
  GiveBackAttempt(*slot);
  slot->next_attempt_at = clock_.Now() + kReadRetry;
  slot->retry_after_wait = false;
  Persist(*slot, JobState::kWaitingRetry,
          absl::StrCat("the request could not be read from the store (", spec.status().message(),
                       "); next attempt in ", absl::FormatDuration(kReadRetry)),
          [this](Slot* s) {
            if (s != nullptr) ArmTimer(*s);
          });
}

void Engine::GiveBackAttempt(Slot& slot) {
  --slot.attempt_count;
  endpoints_[slot.endpoint].OnFinished(slot.ticket, nullptr, clock_.Now());
  counters_.in_flight.fetch_sub(1, std::memory_order_relaxed);
}

void Engine::BeginAttempt(Slot& slot, bool send_token) {
  const bool too_late = stopping_ && clock_.Now() >= stop_deadline_;
  if (!slot.cancel_requested && !too_late) {
    EndpointGate& gate = endpoints_[slot.endpoint];
    if (!send_token && gate.paces_sends()) return gate.HoldForSend(slot.id, clock_.Now());
    Notify(slot, absl::StrCat("attempt ", slot.attempt_count, " started"));
    StartAttempt(slot);
    return;
  }
  // No request left: the attempt is given back, and the job is cancelled or put back.
  GiveBackAttempt(slot);
  if (slot.cancel_requested) {
    const std::string why = "cancelled by request before the attempt started";
    Persist(slot, JobState::kCancelled, why, [this, why](Slot* c) {
      if (c != nullptr) Finish(*c, why);
    });
  } else {
    Persist(slot, JobState::kQueued, "shutdown: attempt not started; runs after restart",
            [](Slot*) {});
  }
}

void Engine::StartAttempt(Slot& slot) {
  const EndpointGate& gate = endpoints_[slot.endpoint];
  assert(slot.spec != nullptr);
  http::Request req = http::BuildRequest(gate.config(), gate.base_url(), *slot.spec,
                                         config_->idempotency_header, rng_);
  const absl::Time started = clock_.Now();
  if (slot.next_attempt_at != absl::InfinitePast()) {
    // A pause of the endpoint (Retry-After) moves the due time on purpose.
    RecordLateness(start_lateness_, started - std::max(slot.next_attempt_at, gate.paused_until()));
    slot.next_attempt_at = absl::InfinitePast();
  }
  counters_.attempts_started.fetch_add(1, std::memory_order_relaxed);
  observer_->OnAttemptStarted(RefOf(slot));
  executor_.Start(std::move(req), [this, id = slot.id, started](policy::Outcome outcome) mutable {
    OnOutcome(id, started, std::move(outcome));
  });
}

void Engine::OnOutcome(JobId id, absl::Time started, policy::Outcome outcome) {
  if (loop_closed_.load()) {
    // Too late to persist: the job stays RUNNING in the store and runs again after restart
    // with the same idempotency key.
    counters_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  Slot* found = FindSlot(id);
  assert(found != nullptr && found->state == JobState::kRunning);
  Slot& slot = *found;
  EndpointGate& gate = endpoints_[slot.endpoint];
  counters_.in_flight.fetch_sub(1, std::memory_order_relaxed);
  counters_.attempts_finished.fetch_add(1, std::memory_order_relaxed);

  const absl::Time now = clock_.Now();
  policy::AttemptContext ctx;
  ctx.attempt = slot.attempt_count - slot.budget_base;
  ctx.throttled = slot.throttled;
  ctx.throttle_level = gate.ThrottleLevel(started);
  ctx.read_quota = gate.config().pacing.enabled;
  ctx.endpoint_rules = &gate.config().rules;
  ctx.first_attempt_at = slot.first_attempt_at;
  ctx.deadline = slot.deadline;
  ctx.previous_delay = slot.previous_delay;
  ctx.throttle_headers = &gate.config().throttle_headers;
  const policy::Decision d = policy::Decide(*slot.policy, outcome, ctx, now, rng_);
  const CircuitSignal signal = SignalOf(outcome, d.classification.action);
  gate.OnFinished(slot.ticket, &signal, now);
  gate.OnQuota(d.quota, d.throttled(), slot.ticket, now);
  if (d.throttled()) ++slot.throttled;
  if (d.throttle_backoff()) gate.OnThrottleBackoff(ctx.throttle_level, now);
  // This attempt was decided by the policy it started with; the next one uses the current.
  if (slot.config_generation != config_generation_) {
    ResolvePolicy(slot, slot.named_policy ? slot.policy->name : "");
  }

  common::AttemptRecord rec;
  rec.number = slot.attempt_count;
  rec.started_at = started;
  rec.duration = now - started;
  rec.http_status = outcome.http_status;
  rec.transport_error = std::string(policy::TransportErrorName(outcome.error));
  rec.classification = std::string(policy::ActionName(d.classification.action));
  rec.decision = d.reason;
  slot.last_http_status = outcome.http_status;

  JobState next = JobState::kFailed;
  std::string why = d.reason;
  switch (d.kind) {
    case policy::Decision::Kind::kSucceed:
      next = JobState::kSucceeded;
      break;
    case policy::Decision::Kind::kFail:
      next = JobState::kFailed;
      break;
    case policy::Decision::Kind::kExhaust:
      next = JobState::kExhausted;
      break;
    case policy::Decision::Kind::kRetry:
      next = JobState::kWaitingRetry;
      break;
  }
  if (d.pause_endpoint && gate.PauseUntil(d.pause_until, d.reason, d.throttle_backoff())) {
    observer_->OnEndpointPaused(slot.endpoint, gate.paused_until());
  }
  if (slot.cancel_requested && next != JobState::kSucceeded) {
    next = JobState::kCancelled;
    why = absl::StrCat("cancelled by request after attempt ", slot.attempt_count, " (", d.reason,
                       ")");
    rec.decision = why;
  }
  {
    // Observers see what happens next: a retry of a job being cancelled is no retry.
    policy::Decision effective = d;
    if (next == JobState::kCancelled) {
      effective.kind = policy::Decision::Kind::kFail;
      effective.reason = why;
    }
    observer_->OnAttemptFinished(RefOf(slot), outcome, effective, now - started);
  }
  if (next == JobState::kWaitingRetry) {
    rec.next_attempt_at = d.next_attempt_at;
    slot.next_attempt_at = d.next_attempt_at;
    // Decorrelated jitter builds on the error backoff only; a throttle's wait is not one.
    if (!d.throttled()) slot.previous_delay = d.delay;
    slot.retry_after_wait =
        !d.throttle_backoff() && d.retry_after.has_value() && *d.retry_after >= d.delay;
    // A long wait, or a request read back beyond the budget: back to the store with it.
    if (d.delay >= kKeepSpecBelow ||
        static_cast<size_t>(counters_.spec_bytes_held.load()) > spec_bytes_budget_) {
      DropSpec(slot);
    }
  }
  Persist(
      slot, next, why,
      [this, why](Slot* s) {
        if (s == nullptr) return;
        if (common::IsTerminal(s->state)) {
          Finish(*s, why);
        } else {
          Notify(*s, why);
          ArmTimer(*s);
        }
      },
      std::move(rec), std::move(outcome.body));
}

bool Engine::SpecFits(const common::JobSpec& spec) const {
  return static_cast<size_t>(counters_.spec_bytes_held.load(std::memory_order_relaxed)) +
             SpecBytes(spec) <=
         spec_bytes_budget_;
}

void Engine::HoldSpec(Slot& slot, std::shared_ptr<const common::JobSpec> spec) {
  DropSpec(slot);
  counters_.spec_bytes_held.fetch_add(static_cast<int64_t>(SpecBytes(*spec)),
                                      std::memory_order_relaxed);
  slot.spec = std::move(spec);
}

void Engine::DropSpec(Slot& slot) {
  if (slot.spec == nullptr) return;
  counters_.spec_bytes_held.fetch_sub(static_cast<int64_t>(SpecBytes(*slot.spec)),
                                      std::memory_order_relaxed);
  slot.spec.reset();
}

void Engine::LatenessSamples::Add(int64_t v) {
  if (us.size() < kLatenessSamples) {
    us.push_back(v);
  } else {
    us[next] = v;
    next = (next + 1) % kLatenessSamples;
  }
}

void Engine::RecordLateness(LatenessSamples& samples, absl::Duration lateness) {
  absl::MutexLock lock(&lateness_mu_);
  samples.Add(absl::ToInt64Microseconds(lateness));
}

}  // namespace rebound::engine
