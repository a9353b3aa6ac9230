// The entry points that ask about one job (Cancel, Replay, Watch, Unwatch) and the followers
// they leave on it (cancel waiters, watchers). A job not in memory has ended (or is unknown):
// its record is read off the loop (run_read_), and the answer is decided back on the loop, after
// looking again, since the job may have been adopted or replayed meanwhile.
#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/engine/engine.h"

namespace rebound::engine {
namespace {

// The answer of an entry point, shared between the posted work and the caller so the caller can
// still answer when the loop refuses the work.
std::shared_ptr<Engine::JobDone> Shared(Engine::JobDone done) {
  return std::make_shared<Engine::JobDone>(std::move(done));
}

absl::Status NotReplayable(common::JobId id, common::JobState state) {
  return absl::FailedPreconditionError(
      absl::StrCat("job ", common::FormatJobId(id), " is ", common::JobStateName(state),
                   "; only FAILED or EXHAUSTED jobs can be replayed"));
}

}  // namespace

Engine::Slot* Engine::FindOwned(const std::string& tenant, JobId id) {
  Slot* slot = FindSlot(id);
  return slot != nullptr && *slot->tenant == tenant ? slot : nullptr;
}

void Engine::ReadJob(std::string tenant, JobId id, ReadDone then) {
  run_read_([this, tenant = std::move(tenant), id, then = std::move(then)]() mutable {
    auto rec = store_.Get(tenant, id, /*with_attempts=*/false);
    auto shared = std::make_shared<ReadDone>(std::move(then));
    const bool posted = PostWork(
        [shared, rec = std::move(rec)]() mutable { std::move (*shared)(std::move(rec), true); },
        /*internal=*/true);
    if (!posted) std::move (*shared)(ShuttingDown(), false);
  });
}

void Engine::Cancel(std::string tenant, JobId id, JobDone done_fn) {
  auto answer = Shared(std::move(done_fn));
  const bool posted = Post([this, tenant = std::move(tenant), id, answer]() mutable {
    if (Slot* slot = FindOwned(tenant, id)) return CancelSlot(*slot, std::move(*answer));
    ReadJob(tenant, id,
            [this, tenant, id, done = std::move(*answer)](absl::StatusOr<common::JobRecord> rec,
                                                          bool on_loop) mutable {
              if (on_loop) {
                if (Slot* slot = FindOwned(tenant, id)) return CancelSlot(*slot, std::move(done));
              }
              if (!rec.ok()) return std::move(done)(rec.status());
              std::move(done)(absl::FailedPreconditionError(absl::StrCat(
                  "job ", common::FormatJobId(id), " is already ", common::JobStateName(rec->state),
                  "; only unfinished jobs can be cancelled")));
            });
  });
  if (!posted) std::move (*answer)(ShuttingDown());
}

void Engine::CancelSlot(Slot& slot, JobDone done) {
  if (common::IsTerminal(slot.state)) {
    return std::move(done)(absl::FailedPreconditionError(absl::StrCat(
        "job ", common::FormatJobId(slot.id), " is already ", common::JobStateName(slot.state))));
  }
  if (slot.state == JobState::kRunning) {
    // The attempt is on the wire; its outcome decides (a success is a success).
    slot.cancel_requested = true;
    FollowersOf(slot).cancel_waiters.push_back(std::move(done));
    return;
  }
  if (slot.state == JobState::kBlocked) LeaveKeyQueue(slot);
  FollowersOf(slot).cancel_waiters.push_back(std::move(done));
  Persist(slot, JobState::kCancelled, "cancelled by request", [this](Slot* s) {
    if (s != nullptr) Finish(*s, "cancelled by request");
  });
}

void Engine::Replay(std::string tenant, JobId id, JobDone done_fn) {
  auto answer = Shared(std::move(done_fn));
  const bool posted = Post([this, tenant = std::move(tenant), id, answer]() mutable {
    if (Slot* slot = FindOwned(tenant, id)) {
      return std::move(*answer)(NotReplayable(id, slot->state));
    }
    ReadJob(tenant, id,
            [this, tenant, id, done = std::move(*answer)](absl::StatusOr<common::JobRecord> rec,
                                                          bool on_loop) mutable {
              if (!on_loop) return std::move(done)(ShuttingDown());
              // Replayed (or adopted) while the record was read: the one in memory answers.
              if (Slot* slot = FindOwned(tenant, id)) {
                return std::move(done)(NotReplayable(id, slot->state));
              }
              if (!rec.ok()) return std::move(done)(rec.status());
              if (!common::IsDeadLetter(rec->state)) {
                return std::move(done)(NotReplayable(id, rec->state));
              }
              ReplayRecord(id, *std::move(rec), std::move(done));
            });
  });
  if (!posted) std::move (*answer)(ShuttingDown());
}

void Engine::ReplayRecord(JobId id, common::JobRecord rec, JobDone done) {
  const int16_t ep = EndpointIndex(rec.spec.endpoint);
  if (ep < 0) {
    return std::move(done)(absl::FailedPreconditionError(
        absl::StrCat("endpoint '", rec.spec.endpoint, "' is no longer configured")));
  }
  const int64_t limit = max_active_jobs_.load(std::memory_order_relaxed);
  if (active_jobs_.fetch_add(1, std::memory_order_relaxed) + 1 > limit) {
    active_jobs_.fetch_sub(1, std::memory_order_relaxed);
    return std::move(done)(absl::ResourceExhaustedError(
        absl::StrCat("too many active jobs (limit ", limit, "); retry later")));
  }
  Slot fresh;
  fresh.id = id;
  fresh.endpoint = ep;
  fresh.named_policy = !rec.spec.policy.empty();
  fresh.policy = PolicyFor(ep, rec.spec.policy);
  fresh.config_generation = config_generation_;
  fresh.state = JobState::kFailed;  // what the store holds until the replay commits
  fresh.attempt_count = rec.attempt_count;
  fresh.budget_base = rec.attempt_count;
  fresh.last_http_status = rec.last_http_status;
  fresh.deadline = rec.spec.deadline;
  fresh.tenant = InternTenant(rec.spec.tenant);
  fresh.ordering_scope = OrderingGate::ScopeOf(*fresh.tenant, rec.spec.ordering_key);
  SetPriorityAndLabels(fresh, rec.spec.priority, rec.spec.labels);
  if (!rec.spec.correlation_id.empty()) {
    fresh.correlation_id = std::make_unique<const std::string>(rec.spec.correlation_id);
  }
  fresh.since = clock_.Now();
  Slot& slot = slots_.emplace(id, std::move(fresh)).first->second;
  Track(slot, +1);
  if (SpecFits(rec.spec)) {
    HoldSpec(slot, std::make_shared<const common::JobSpec>(std::move(rec.spec)));
  }
  // Within its ordering key, a replayed job waits for the key's running job, ahead of the
  // key's other waiting jobs (it was submitted before them).
  const bool wait_for_key =
      !slot.ordering_scope.empty() && ordering_.HasRunner(slot.ordering_scope);
  if (wait_for_key) {
    slot.waits_behind = ordering_.BlockFirst(slot.ordering_scope, slot.id);
  } else {
    MakeRunner(slot);
  }
  const std::string why = wait_for_key
                              ? "replayed: attempt budget renewed; waits for its ordering key"
                              : "replayed: attempt budget renewed";
  Persist(slot, wait_for_key ? JobState::kBlocked : JobState::kQueued, why,
          [this, why, ref = RefOf(slot), done = std::move(done)](Slot* s) mutable {
            // The replay is durable even when a later change (cancel, unblock) superseded
            // this step: the job has left the dead letters either way.
            ref.correlation_id = nullptr;
            observer_->OnReplayed(ref);
            observer_->OnDeadLetterDelta(ref.endpoint, -1);
            if (s != nullptr) {
              Notify(*s, why);
              if (s->state != JobState::kBlocked) Enqueue(*s);
            }
            std::move(done)(absl::OkStatus());  // durable either way
          });
}

void Engine::Watch(std::string tenant, JobId id, std::shared_ptr<WatchSink> sink) {
  const bool posted = Post([this, tenant = std::move(tenant), id, sink]() mutable {
    if (Slot* slot = FindOwned(tenant, id)) return Follow(*slot, std::move(sink));
    ReadJob(tenant, id,
            [this, tenant, id, sink = std::move(sink)](absl::StatusOr<common::JobRecord> rec,
                                                       bool on_loop) mutable {
              if (on_loop) {
                if (Slot* slot = FindOwned(tenant, id)) return Follow(*slot, std::move(sink));
              }
              // Terminal (or unknown): one event, then the end.
              if (!rec.ok()) return sink->OnEnd(rec.status());
              JobEvent event;
              event.id = id;
              event.state = rec->state;
              event.attempt_count = rec->attempt_count;
              event.decision = rec->last_decision;
              event.at = rec->updated_at;
              event.next_attempt_at = rec->next_attempt_at;
              event.last_http_status = rec->last_http_status;
              sink->OnEvent(event);
              sink->OnEnd(absl::OkStatus());
            });
  });
  if (!posted) sink->OnEnd(ShuttingDown());
}

void Engine::Follow(Slot& slot, std::shared_ptr<WatchSink> sink) {
  // A terminal state decided but not yet committed is announced by Finish, after the commit: a
  // watcher must never learn of an end the store does not hold yet.
  if (!common::IsTerminal(slot.state)) sink->OnEvent(EventOf(slot, ""));
  FollowersOf(slot).watchers.push_back(std::move(sink));
  counters_.watchers.fetch_add(1, std::memory_order_relaxed);
}

void Engine::Unwatch(JobId id, std::shared_ptr<const WatchSink> sink) {
  Post([this, id, sink = std::move(sink)] {
    auto it = followers_.find(id);
    if (it == followers_.end()) return;  // the job ended: its watchers are gone already
    auto& ws = it->second.watchers;
    const auto gone =
        std::remove_if(ws.begin(), ws.end(), [&sink](const auto& w) { return w == sink; });
    counters_.watchers.fetch_sub(ws.end() - gone, std::memory_order_relaxed);
    ws.erase(gone, ws.end());
    if (ws.empty() && it->second.cancel_waiters.empty()) {
      followers_.erase(it);
      if (Slot* slot = FindSlot(id); slot != nullptr) slot->followed = false;
    }
  });
}

Engine::Followers& Engine::FollowersOf(Slot& slot) {
  slot.followed = true;
  return followers_[slot.id];
}

void Engine::Notify(Slot& slot, const std::string& decision) {
  if (!slot.followed) return;
  auto& ws = followers_[slot.id].watchers;
  if (ws.empty()) return;
  const JobEvent event = EventOf(slot, decision);
  const auto closed =
      std::remove_if(ws.begin(), ws.end(), [](const auto& w) { return w->Closed(); });
  counters_.watchers.fetch_sub(ws.end() - closed, std::memory_order_relaxed);
  ws.erase(closed, ws.end());
  for (auto& w : ws) w->OnEvent(event);
}

JobEvent Engine::EventOf(const Slot& slot, std::string decision) const {
  JobEvent e;
  e.id = slot.id;
  e.state = slot.state == JobState::kQueued && slot.next_attempt_at != absl::InfinitePast()
                ? JobState::kWaitingRetry
                : slot.state;
  e.attempt_count = slot.attempt_count;
  e.decision = std::move(decision);
  e.at = clock_.Now();
  e.next_attempt_at =
      e.state == JobState::kWaitingRetry ? slot.next_attempt_at : absl::InfinitePast();
  e.last_http_status = slot.last_http_status;
  FillWait(slot, &e);
  return e;
}

void Engine::FillWait(const Slot& slot, JobEvent* event) const {
  switch (slot.state) {
    case JobState::kWaitingRetry:
      event->wait_reason =
          slot.retry_after_wait ? common::WaitReason::kRetryAfter : common::WaitReason::kBackoff;
      event->wait_until = slot.next_attempt_at;
      break;
    case JobState::kBlocked:
      event->wait_reason = common::WaitReason::kOrderingBlocked;
      event->waits_behind = slot.waits_behind;
      break;
    case JobState::kQueued:
      if (slot.endpoint >= 0) {
        const EndpointGate& gate = endpoints_[slot.endpoint];
        Admission hold = gate.hold(slot.NextIsRetry());
        if (hold.reason == common::WaitReason::kNone) {
          hold = gate.BudgetWait(ReadyOf(slot), clock_.Now());
          if (hold.admitted) hold = Admission{};
        }
        event->wait_reason = hold.reason;
        event->wait_until = hold.until;
      }
      break;
    default:
      break;
  }
}

}  // namespace rebound::engine
