#include "server/engine/engine.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/engine/store_reader.h"

namespace rebound::engine {
namespace {

// The store refused a write: the job's durable state is behind what the engine decided. Going
// on would act on undurable decisions (a lost or doubled grade), so stop the process; the
// next start recovers from the last committed state. (STYLE.md: fatal after start-up.)
[[noreturn]] void FatalStoreError(const absl::Status& status) {
  std::fprintf(stderr, "rebound: fatal: store write failed: %s\n", status.ToString().c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace

Engine::Engine(std::shared_ptr<const config::Config> config, store::JobStore& store,
               http::Executor& executor, const common::Clock& clock, EngineOptions options)
    : config_(std::move(config)),
      max_active_jobs_(static_cast<int64_t>(config_->server.max_active_jobs)),
      store_(store),
      executor_(executor),
      clock_(clock),
      rng_(options.rng_seed != 0 ? options.rng_seed : std::random_device{}()),
      spec_bytes_budget_(options.spec_bytes_budget),
      run_read_(std::move(options.run_read)),
      observer_(options.observer != nullptr ? options.observer : &null_observer_) {
  if (!run_read_) {
    reader_ = std::make_unique<StoreReader>();
    run_read_ = [reader = reader_.get()](absl::AnyInvocable<void() &&> fn) {
      reader->Run(std::move(fn));
    };
  }
  endpoints_.resize(config_->endpoints.size());
  assert(config_->endpoints.size() <= kMaxEndpoints);
  endpoint_names_.reserve(kMaxEndpoints);  // never reallocated: other threads read it
  for (const auto& ep : config_->endpoints) endpoint_names_.push_back(ep.name);
  endpoint_name_count_.store(endpoint_names_.size(), std::memory_order_release);
  const absl::Time now = clock_.Now();
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    endpoints_[i].Configure(config_->endpoints[i], *config_, now, static_cast<int>(i), observer_);
  }
  {
    absl::MutexLock lock(&holds_mu_);
    published_holds_.resize(endpoints_.size());
    published_lanes_.resize(endpoints_.size());
  }
  ConfigureBudgets(now);
  for (size_t i = 0; i < options.dead_letters_at_start.size() && i < endpoints_.size(); ++i) {
    observer_->OnDeadLetterDelta(static_cast<int>(i), options.dead_letters_at_start[i]);
  }
}

Engine::~Engine() = default;

void Engine::AssertOnLoop() const {
  assert(loop_thread_.load() == std::this_thread::get_id() ||
         loop_thread_.load() == std::thread::id());
}

// ---------------------------------------------------------------------------------------------
// Thread-safe entry points.

bool Engine::PostWork(absl::AnyInvocable<void() &&> fn, bool internal) {
  bool first = false;
  {
    absl::MutexLock lock(&post_mu_);
    if (closed_ || (closing_ && !internal)) return false;
    first = posted_.empty();
    posted_.push_back(std::move(fn));
  }
  // One wake-up per batch of posts (a commit of 64 one-job submits posts 64 times): the post
  // that found the queue empty woke the loop, and the loop takes the whole queue at once
  // (RunPosted) and looks at it again, under the lock, before it waits.
  if (first) executor_.Wakeup();
  return true;
}

void Engine::Submit(std::vector<store::NewJob> jobs, SubmitDone done) {
  const auto n = static_cast<int64_t>(jobs.size());
  const int64_t limit = max_active_jobs_.load(std::memory_order_relaxed);
  // Reserve room first; dedups and failures give it back after the commit.
  if (active_jobs_.fetch_add(n, std::memory_order_relaxed) + n > limit) {
    active_jobs_.fetch_sub(n, std::memory_order_relaxed);
    std::vector<store::SubmitResult> results(jobs.size());
    for (auto& r : results) {
      r.status = absl::ResourceExhaustedError(
          absl::StrCat("too many active jobs (limit ", limit, "); retry later"));
    }
    std::move(done)(std::move(results));
    return;
  }
  std::vector<std::shared_ptr<const common::JobSpec>> specs;
  specs.reserve(jobs.size());
  for (const auto& job : jobs) specs.push_back(std::make_shared<const common::JobSpec>(job.spec));
  store_.Submit(std::move(jobs), clock_.Now(),
                [this, n, specs = std::move(specs),
                 done = std::move(done)](std::vector<store::SubmitResult> results) mutable {
                  int64_t created = 0;
                  for (size_t i = 0; i < results.size(); ++i) {
                    const store::SubmitResult& r = results[i];
                    if (!r.status.ok()) continue;
                    created += r.deduplicated ? 0 : 1;
                    observer_->OnSubmitted(*specs[i], r.job_id, EndpointIndex(specs[i]->endpoint),
                                           r.deduplicated);
                  }
                  active_jobs_.fetch_sub(n - created, std::memory_order_relaxed);
                  if (created > 0) {
                    // Posted before `done` runs, so any later Cancel/Watch of these jobs finds
                    // them.
                    // If the loop has closed, the next start recovers them from the store.
                    PostWork(
                        [this, specs = std::move(specs), results]() mutable {
                          for (size_t i = 0; i < results.size(); ++i) {
                            if (results[i].status.ok() && !results[i].deduplicated) {
                              Adopt(std::move(specs[i]), results[i]);
                            }
                            if (i % 64 == 63) FireDueTimers();
                          }
                        },
                        /*internal=*/true);
                  }
                  std::move(done)(std::move(results));
                });
}

void Engine::Stop(absl::Duration grace) {
  Post([this, grace] {
    if (stopping_) return;
    stopping_ = true;
    stop_deadline_ = clock_.Now() + grace;
  });
}

EngineStats Engine::Stats() const {
  EngineStats s;
  s.active_jobs = active_jobs_.load(std::memory_order_relaxed);
  s.in_flight = counters_.in_flight.load(std::memory_order_relaxed);
  s.attempts_started = counters_.attempts_started.load(std::memory_order_relaxed);
  s.attempts_finished = counters_.attempts_finished.load(std::memory_order_relaxed);
  s.succeeded = counters_.succeeded.load(std::memory_order_relaxed);
  s.failed = counters_.failed.load(std::memory_order_relaxed);
  s.exhausted = counters_.exhausted.load(std::memory_order_relaxed);
  s.cancelled = counters_.cancelled.load(std::memory_order_relaxed);
  s.unroutable = counters_.unroutable.load(std::memory_order_relaxed);
  s.watchers = counters_.watchers.load(std::memory_order_relaxed);
  s.spec_bytes_held = counters_.spec_bytes_held.load(std::memory_order_relaxed);
  s.spec_loads = counters_.spec_loads.load(std::memory_order_relaxed);
  absl::MutexLock lock(&lateness_mu_);
  s.timer_lateness_us = dispatch_lateness_.us;
  s.start_lateness_us = start_lateness_.us;
  return s;
}

// ---------------------------------------------------------------------------------------------
// The loop.

absl::Status Engine::Recover() {
  AssertOnLoop();
  if (absl::Status s = RestoreOperatorPauses(); !s.ok()) return s;
  if (absl::Status s = RestoreBudgetUsage(); !s.ok()) return s;
  auto jobs = store_.Recover(clock_.Now());
  if (!jobs.ok()) return jobs.status();
  for (store::ActiveJob& a : *jobs) {
    Slot fresh;
    fresh.id = a.id;
    fresh.endpoint = EndpointIndex(a.endpoint);
    fresh.policy = fresh.endpoint >= 0 ? PolicyFor(fresh.endpoint, a.policy) : nullptr;
    fresh.named_policy = !a.policy.empty();
    fresh.config_generation = config_generation_;
    fresh.state = a.state == JobState::kRunning ? JobState::kQueued : a.state;
    fresh.attempt_count = a.attempt_count;
    fresh.budget_base = a.budget_base;
    fresh.throttled = a.throttled_count;
    fresh.next_attempt_at = a.next_attempt_at;
    fresh.first_attempt_at = a.first_attempt_at;
    fresh.deadline = a.deadline;
    fresh.waits_behind = a.waits_behind;
    fresh.retry_after_wait = a.wait_reason == common::WaitReason::kRetryAfter;
    fresh.tenant = InternTenant(a.tenant);
    fresh.ordering_scope = OrderingGate::ScopeOf(*fresh.tenant, a.ordering_key);
    fresh.since = a.created_at;
    SetPriorityAndLabels(fresh, a.priority, a.labels);
    Slot& slot = slots_.emplace(a.id, std::move(fresh)).first->second;
    Track(slot, +1);
    if (slot.endpoint < 0) {
      // Its endpoint was removed from the config: the job can never be sent, so it ends now,
      // blocked or not. It never holds its ordering key (nothing of it runs), so the key's next
      // job is released by the orphan pass below or by the key's runner as usual.
      FailUnroutable(slot, a.endpoint);
      continue;
    }
    // Oldest first: a job whose key already has a runner or blocked jobs waits behind them,
    // whatever the store holds (a BLOCKED decided after the submit may not have been written
    // before a crash).
    if (slot.state == JobState::kBlocked ||
        (!slot.ordering_scope.empty() && ordering_.Busy(slot.ordering_scope))) {
      Block(slot);
      continue;
    }
    MakeRunner(slot);
    if (slot.state == JobState::kWaitingRetry) {
      ArmTimer(slot);
    } else {
      Enqueue(slot);
    }
  }
  active_jobs_.store(static_cast<int64_t>(slots_.size()), std::memory_order_relaxed);
  // A crash between a job's end and its successor's release leaves a key with only blocked
  // jobs: release the first.
  for (const auto& scope : ordering_.Orphaned()) UnblockNext(scope);
  FlushWrites();
  return absl::OkStatus();
}

void Engine::Run() {
  while (true) {
    RunOnce(absl::Milliseconds(100));
    if (!stopping_) continue;
    // Attempts get the grace period; decided transitions are always committed and followed
    // through, so no caller is left without an answer.
    const bool attempts_done = counters_.in_flight.load() == 0 || clock_.Now() >= stop_deadline_;
    if (attempts_done && commits_outstanding_ == 0 && pending_writes_.empty()) break;
  }
  CloseLoop();
}

void Engine::CloseLoop() {
  {
    absl::MutexLock lock(&post_mu_);
    closing_ = true;  // entry points answer UNAVAILABLE from now on
  }
  // Work posted before the close runs, and what it decides is committed.
  const absl::Time give_up = clock_.Now() + absl::Seconds(30);
  while (true) {
    RunPosted();
    FlushWrites();
    bool idle = false;
    {
      absl::MutexLock lock(&post_mu_);
      idle = posted_.empty() && commits_outstanding_ == 0;
      if (idle) closed_ = true;
    }
    if (idle || clock_.Now() > give_up) break;
    executor_.Poll(absl::Milliseconds(10));
  }
  {
    absl::MutexLock lock(&post_mu_);
    closed_ = true;  // (already, unless the store stalled past give_up)
  }
  loop_closed_.store(true);
  const absl::Status stopped =
      absl::UnavailableError("server is shutting down; the job resumes when it restarts");
  for (auto& [id, f] : followers_) {
    for (auto& waiter : f.cancel_waiters) std::move(waiter)(stopped);
    for (auto& sink : f.watchers) {
      if (!sink->Closed()) sink->OnEnd(stopped);
    }
    counters_.watchers.fetch_sub(static_cast<int64_t>(f.watchers.size()));
  }
  followers_.clear();
}

void Engine::Track(const Slot& slot, int sign) {
  if (slot.endpoint < 0) return;
  endpoints_[slot.endpoint].Count(slot.state, slot.retry_after_wait, sign);
}

void Engine::SetState(Slot& slot, JobState state) {
  Track(slot, -1);
  slot.state = state;
  Track(slot, +1);
}

JobRef Engine::RefOf(const Slot& slot) const {
  JobRef ref;
  ref.id = slot.id;
  ref.endpoint = slot.endpoint;
  ref.tenant = slot.tenant;
  ref.correlation_id = slot.correlation_id.get();
  ref.attempt = slot.attempt_count;
  return ref;
}

void Engine::PublishGauges(absl::Time now) {
  if (now < next_gauges_) return;
  next_gauges_ = now + absl::Seconds(1);
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    observer_->OnGauges(static_cast<int>(i), endpoints_[i].Gauges(now));
  }
  for (size_t i = 0; i < budgets_.size(); ++i) {
    budgets_[i]->Sweep(now);
    observer_->OnBudgetGauges(static_cast<int>(i), budgets_[i]->Gauges(now));
  }
}

const std::string* Engine::InternTenant(const std::string& tenant) {
  return &*tenants_.insert(tenant).first;
}

void Engine::MakeRunner(Slot& slot) {
  if (slot.ordering_scope.empty()) return;
  slot.runner = true;
  ordering_.SetRunner(slot.ordering_scope, slot.id);
}

void Engine::Block(Slot& slot) {
  const JobId ahead = ordering_.Block(slot.ordering_scope, slot.id);
  if (slot.state == JobState::kBlocked && slot.waits_behind != 0) return;  // as stored
  slot.waits_behind = ahead;
  if (slot.state == JobState::kBlocked) return;  // (a store that kept no waits_behind)
  const std::string why = "waits for its ordering key";
  Persist(slot, JobState::kBlocked, why, [this, why](Slot* s) {
    if (s != nullptr) Notify(*s, why);
  });
}

void Engine::LeaveKeyQueue(Slot& slot) {
  JobId ahead = 0;
  const JobId behind = ordering_.Remove(slot.ordering_scope, slot.id, &ahead);
  Slot* next = behind != 0 ? FindSlot(behind) : nullptr;
  if (next == nullptr || next->state != JobState::kBlocked || next->waits_behind != slot.id) {
    return;
  }
  // The job that waited behind this one now waits behind the one ahead of it.
  next->waits_behind = ahead;
  Persist(*next, JobState::kBlocked, "waits for its ordering key", [](Slot*) {});
}

absl::Status Engine::ShuttingDown() {
  return absl::UnavailableError("server is shutting down; retry on another replica or later");
}

void Engine::RunOnce(absl::Duration max_wait) {
  if (loop_thread_.load() == std::thread::id()) loop_thread_ = std::this_thread::get_id();
  AssertOnLoop();
  RunPosted();
  const absl::Time now = clock_.Now();
  FireTimers(now);
  Dispatch(now);
  // Last before the wait, in which the requests leave: a paced send goes out at its token.
  ReleaseSends(clock_.Now());
  FlushWrites();
  PublishGauges(now);
  absl::Duration wait = std::min(max_wait, NextWakeup() - clock_.Now());
  {
    absl::MutexLock lock(&post_mu_);
    if (!posted_.empty()) wait = absl::ZeroDuration();
  }
  executor_.Poll(std::max(wait, absl::ZeroDuration()));
  // Completions queued writes; send them now rather than after the next wait.
  FlushWrites();
}

absl::Time Engine::NextWakeup() const {
  absl::Time next = absl::InfiniteFuture();
  if (!timers_.empty()) next = timers_.top().due;
  const absl::Time now = clock_.Now();
  for (const EndpointGate& gate : endpoints_) next = std::min(next, gate.NextWakeup(now));
  return next;
}

void Engine::RunPosted() {
  std::vector<absl::AnyInvocable<void() &&>> work;
  {
    absl::MutexLock lock(&post_mu_);
    work.swap(posted_);
  }
  for (auto& fn : work) {
    std::move(fn)();
    FireDueTimers();
  }
}

void Engine::FireDueTimers() {
  // A long turn (a burst of submits and commits) must not make due retries late.
  if (timers_.empty()) return;
  const absl::Time now = clock_.Now();
  if (timers_.top().due > now) return;
  FireTimers(now);
  Dispatch(now);
}

void Engine::FireTimers(absl::Time now) {
  while (!timers_.empty() && timers_.top().due <= now) {
    const Timer t = timers_.top();
    timers_.pop();
    Slot* slot = FindSlot(t.id);
    if (slot == nullptr || slot->version != t.version || slot->state != JobState::kWaitingRetry) {
      continue;  // superseded (cancelled, or re-armed)
    }
    // WAITING_RETRY -(due)-> RUNNING: the slot joins its endpoint's queue; the store keeps
    // WAITING_RETRY with a past due time until the attempt starts, which recovers the same way.
    Enqueue(*slot);
  }
}

void Engine::Adopt(std::shared_ptr<const common::JobSpec> spec, const store::SubmitResult& result) {
  Slot fresh;
  fresh.id = result.job_id;
  fresh.endpoint = EndpointIndex(spec->endpoint);
  fresh.policy = fresh.endpoint >= 0 ? PolicyFor(fresh.endpoint, spec->policy) : nullptr;
  fresh.named_policy = !spec->policy.empty();
  fresh.config_generation = config_generation_;
  fresh.state = result.state;
  fresh.deadline = spec->deadline;
  fresh.tenant = InternTenant(spec->tenant);
  fresh.ordering_scope = OrderingGate::ScopeOf(spec->tenant, spec->ordering_key);
  SetPriorityAndLabels(fresh, spec->priority, spec->labels);
  if (!spec->correlation_id.empty()) {
    fresh.correlation_id = std::make_unique<const std::string>(spec->correlation_id);
  }
  fresh.since = clock_.Now();
  Slot& slot = slots_.emplace(result.job_id, std::move(fresh)).first->second;
  Track(slot, +1);
  // (Validation refuses unknown endpoints; a job that slipped through never holds its key.)
  if (slot.endpoint < 0) return FailUnroutable(slot, spec->endpoint);
  // Within the budget the request stays in memory until dispatch; beyond it, in the store.
  if (SpecFits(*spec)) HoldSpec(slot, std::move(spec));
  // The engine alone decides BLOCKED; the store's answer (QUEUED or BLOCKED) is corrected.
  if (!slot.ordering_scope.empty() && ordering_.Busy(slot.ordering_scope)) return Block(slot);
  if (slot.state == JobState::kBlocked) return Unblock(slot);  // the store said BLOCKED
  MakeRunner(slot);
  Enqueue(slot);
}

void Engine::FailUnroutable(Slot& slot, absl::string_view endpoint) {
  assert(slot.endpoint < 0);
  counters_.unroutable.fetch_add(1, std::memory_order_relaxed);
  const std::string why =
      absl::StrCat("stop: endpoint '", endpoint,
                   "' is no longer configured; not sent (add the endpoint back and replay the job "
                   "to send it)");
  Persist(slot, JobState::kFailed, why, [this, why](Slot* s) {
    if (s != nullptr) Finish(*s, why);
  });
}

Engine::Slot* Engine::FindSlot(JobId id) {
  auto it = slots_.find(id);
  return it == slots_.end() ? nullptr : &it->second;
}

void Engine::Persist(Slot& slot, JobState state, std::string decision, Then then,
                     std::optional<common::AttemptRecord> attempt,
                     std::optional<std::string> response_body) {
  SetState(slot, state);
  const uint32_t version = ++slot.version;
  store::Transition t;
  t.job_id = slot.id;
  t.state = state;
  t.attempt_count = slot.attempt_count;
  t.budget_base = slot.budget_base;
  t.throttled_count = slot.throttled;
  t.next_attempt_at =
      state == JobState::kWaitingRetry ? slot.next_attempt_at : absl::InfinitePast();
  t.first_attempt_at = slot.first_attempt_at;
  t.last_decision = std::move(decision);
  t.last_http_status = slot.last_http_status;
  if (state == JobState::kBlocked) {
    t.wait_reason = common::WaitReason::kOrderingBlocked;
    t.waits_behind = slot.waits_behind;
  } else if (state == JobState::kWaitingRetry) {
    // Stored, so a Retry-After wait comes back as one after a restart.
    t.wait_reason =
        slot.retry_after_wait ? common::WaitReason::kRetryAfter : common::WaitReason::kBackoff;
  }
  t.last_response_body = std::move(response_body);
  t.attempt = std::move(attempt);
  if (common::IsTerminal(state)) {
    // A job whose endpoint is gone has no policy: the default one's retention keeps it.
    const policy::Policy* p =
        slot.policy != nullptr ? slot.policy : config_->FindPolicy("default").get();
    const absl::Duration keep = p == nullptr                  ? policy::Policy{}.retention
                                : common::IsDeadLetter(state) ? p->dead_letter_retention
                                                              : p->retention;
    t.purge_at = clock_.Now() + keep;
  }
  pending_writes_.push_back(std::move(t));
  pending_thens_.push_back(PendingThen{slot.id, version, std::move(then)});
}

void Engine::FlushBudgetUsage() {
  std::vector<store::BudgetUsage> usage;
  for (const auto& budget : budgets_) budget->TakeChanged(&usage);
  if (usage.empty()) return;
  ++commits_outstanding_;
  store_.SaveBudgetUsage(std::move(usage), [this](absl::Status status) {
    if (!status.ok()) FatalStoreError(status);
    PostWork([this] { --commits_outstanding_; }, /*internal=*/true);
  });
}

void Engine::FlushWrites() {
  FlushBudgetUsage();
  if (pending_writes_.empty()) return;
  std::vector<store::Transition> writes;
  writes.swap(pending_writes_);
  std::vector<PendingThen> thens;
  thens.swap(pending_thens_);
  ++commits_outstanding_;
  store_.Apply(std::move(writes), clock_.Now(),
               [this, thens = std::move(thens)](absl::Status status) mutable {
                 if (!status.ok()) FatalStoreError(status);
                 PostWork(
                     [this, thens = std::move(thens)]() mutable {
                       --commits_outstanding_;
                       for (size_t i = 0; i < thens.size(); ++i) {
                         PendingThen& p = thens[i];
                         Slot* slot = FindSlot(p.id);
                         if (slot != nullptr && slot->version != p.version) slot = nullptr;
                         std::move(p.then)(slot);
                         if (i % 64 == 63) FireDueTimers();
                       }
                     },
                     /*internal=*/true);
               });
}

void Engine::Finish(Slot& slot, const std::string& decision) {
  switch (slot.state) {
    case JobState::kSucceeded:
      counters_.succeeded.fetch_add(1, std::memory_order_relaxed);
      break;
    case JobState::kFailed:
      counters_.failed.fetch_add(1, std::memory_order_relaxed);
      break;
    case JobState::kExhausted:
      counters_.exhausted.fetch_add(1, std::memory_order_relaxed);
      break;
    case JobState::kCancelled:
      counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
      break;
    default:
      assert(false && "Finish on a non-terminal job");
  }
  Notify(slot, decision);
  observer_->OnFinished(RefOf(slot), slot.state, clock_.Now() - slot.since, decision);
  if (common::IsDeadLetter(slot.state)) observer_->OnDeadLetterDelta(slot.endpoint, +1);
  Track(slot, -1);
  std::vector<JobDone> waiters;
  if (slot.followed) {
    auto it = followers_.find(slot.id);
    for (auto& sink : it->second.watchers) {
      if (!sink->Closed()) sink->OnEnd(absl::OkStatus());
    }
    counters_.watchers.fetch_sub(static_cast<int64_t>(it->second.watchers.size()),
                                 std::memory_order_relaxed);
    waiters = std::move(it->second.cancel_waiters);
    followers_.erase(it);
  }
  const JobState final_state = slot.state;
  const JobId id = slot.id;
  const std::string scope = slot.runner ? slot.ordering_scope : std::string();
  DropSpec(slot);
  slots_.erase(id);  // `slot` is gone from here on
  active_jobs_.fetch_sub(1, std::memory_order_relaxed);
  for (auto& w : waiters) {
    if (final_state == JobState::kCancelled) {
      std::move(w)(absl::OkStatus());
    } else {
      std::move(w)(absl::FailedPreconditionError(
          absl::StrCat("job ", common::FormatJobId(id), " ended ",
                       common::JobStateName(final_state), " before it could be cancelled")));
    }
  }
  if (!scope.empty()) {  // only the key's runner hands the key on
    ordering_.ReleaseRunner(scope);
    UnblockNext(scope);
  }
}

void Engine::Enqueue(Slot& slot) {
  // Recover and Adopt end unroutable jobs before they can be queued, unblocked or armed; this
  // keeps data in the store from ever indexing endpoints_ out of range.
  if (slot.endpoint < 0) return FailUnroutable(slot, "(unknown)");
  SetState(slot, JobState::kQueued);
  endpoints_[slot.endpoint].PushReady(ReadyOf(slot), clock_.Now());
}

void Engine::SetPriorityAndLabels(Slot& slot, common::Priority priority,
                                  const std::map<std::string, std::string>& labels) {
  slot.priority = priority;
  if (!labels.empty())
    slot.labels = std::make_shared<const std::map<std::string, std::string>>(labels);
}

common::Priority Engine::PriorityOf(const Slot& slot) const {
  if (slot.priority != common::Priority::kUnspecified) return slot.priority;
  return slot.policy != nullptr ? slot.policy->priority : common::Priority::kNormal;
}

ReadyJob Engine::ReadyOf(const Slot& slot) const {
  return ReadyJob{slot.id, slot.NextIsRetry(), PriorityOf(slot), *slot.tenant, slot.labels.get()};
}

void Engine::ArmTimer(Slot& slot) {
  timers_.push(Timer{slot.next_attempt_at, timer_seq_++, slot.id, slot.version});
}

void Engine::UnblockNext(const std::string& scope) {
  while (const JobId id = ordering_.TakeNext(scope)) {
    Slot* slot = FindSlot(id);
    if (slot == nullptr || slot->state != JobState::kBlocked) continue;
    if (slot->endpoint < 0) {  // (not reached: see Enqueue) never the key's runner
      FailUnroutable(*slot, "(unknown)");
      continue;
    }
    return Unblock(*slot);
  }
}

void Engine::Unblock(Slot& slot) {
  MakeRunner(slot);
  const std::string why = "unblocked: the previous job of its ordering key finished";
  Persist(slot, JobState::kQueued, why, [this, why](Slot* s) {
    if (s == nullptr) return;
    Notify(*s, why);
    Enqueue(*s);
  });
}

}  // namespace rebound::engine
