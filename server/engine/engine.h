// Engine: the single event loop that owns every non-terminal job's scheduling state.
//
// Threads: the loop thread runs RunOnce()/Run(); everything else reaches the engine only
// through the thread-safe entry points (Submit, Cancel, Replay, Watch, Post, Stop), which hand
// work to the loop. There is no lock per job and no thread per job: in-memory state is touched
// by the loop only. The loop sleeps inside the HTTP executor's Poll() (libcurl multi), which
// Post() interrupts with Wakeup().
//
// Durability rule (DESIGN.md "Job lifecycle"): each transition is written to the store, and the
// next action (start the HTTP call, arm the retry timer, tell watchers, answer the caller) is
// taken only in the store's commit callback. The store group-commits, so many jobs share one
// commit.
//
// Ownership: the engine borrows the store, executor and clock (they must outlive it) and
// shares the immutable config.
//
// Pieces: each endpoint's EndpointGate (endpoint_gate.h) decides whether its next attempt may
// start and holds its ready jobs; the OrderingGate (ordering_gate.h) holds ordering keys;
// http::BuildRequest (server/http/request_builder.h) assembles what an attempt sends. The
// class is split by concern: engine.cc (the loop, recovery, persistence, ordering keys),
// attempts.cc (dispatch to outcome, requests kept in memory), job_requests.cc (Cancel,
// Replay, Watch and their followers), reload.cc (config switch, endpoint and policy lookup).
#ifndef REBOUND_SERVER_ENGINE_ENGINE_H_
#define REBOUND_SERVER_ENGINE_ENGINE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/container/node_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/common/job.h"
#include "server/config/config.h"
#include "server/engine/budget.h"
#include "server/engine/endpoint_gate.h"
#include "server/engine/endpoint_status.h"
#include "server/engine/observer.h"
#include "server/engine/ordering_gate.h"
#include "server/http/executor.h"
#include "server/policy/policy.h"
#include "server/store/job_store.h"

namespace rebound::engine {

using common::JobId;
using common::JobState;

class StoreReader;

// One state change of a job, as watchers see it.
struct JobEvent {
  JobId id = 0;
  JobState state = JobState::kQueued;
  int attempt_count = 0;
  std::string decision;
  absl::Time at;
  absl::Time next_attempt_at = absl::InfinitePast();
  int last_http_status = 0;
  // Why it waits (kNone while ready or running), until when where known, and for
  // ORDERING_BLOCKED the job ahead of it.
  common::WaitReason wait_reason = common::WaitReason::kNone;
  absl::Time wait_until = absl::InfiniteFuture();
  JobId waits_behind = 0;
};

// A WatchSync subscriber. OnEvent runs on the loop thread and must not block; the engine calls
// OnEnd once after the terminal event (or with an error). Closed() lets the engine drop a
// subscriber whose client went away.
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  virtual void OnEvent(const JobEvent& event) = 0;
  virtual void OnEnd(absl::Status status) = 0;
  virtual bool Closed() const = 0;
};

// Endpoints one process can know (configured plus added by reloads); config refuses more.
inline constexpr size_t kMaxEndpoints = config::kMaxEndpoints;

struct EngineOptions {
  uint64_t rng_seed = 0;  // 0: seeded from std::random_device
  // Told about every job event (metrics, logs); not owned; null: nobody listens.
  EngineObserver* observer = nullptr;
  // Dead-lettered jobs per endpoint already in the store at start (index = config.endpoints).
  std::vector<int64_t> dead_letters_at_start;
  // Bytes of requests (body, headers, path) that waiting jobs may keep in memory, in all. A job
  // whose request does not fit keeps only its scheduling state and reads the request back from
  // the store when it is dispatched. Attempts on the wire always hold theirs (bounded by the
  // endpoints' max_in_flight).
  size_t spec_bytes_budget = 64 << 20;
  // Runs a store read (LoadSpec at dispatch) off the loop; null: the engine's own reader
  // thread. Tests pass one that runs it at once.
  std::function<void(absl::AnyInvocable<void() &&>)> run_read;
};

// Counters read by tests, benchmarks and (later) metrics; a consistent snapshot.
struct EngineStats {
  int64_t active_jobs = 0;
  int64_t in_flight = 0;
  int64_t attempts_started = 0;
  int64_t attempts_finished = 0;
  int64_t succeeded = 0;
  int64_t failed = 0;
  int64_t exhausted = 0;
  int64_t cancelled = 0;
  // Jobs ended FAILED because their endpoint is not configured (removed before a restart);
  // also counted in `failed`.
  int64_t unroutable = 0;
  int64_t watchers = 0;  // WatchSync subscribers held by the engine
  // Requests held in memory (see EngineOptions::spec_bytes_budget), and reads of dropped ones.
  int64_t spec_bytes_held = 0;
  int64_t spec_loads = 0;
  // |actual start - due time| of attempts that came from a timer, in microseconds: the last
  // few thousand samples, for the timer-accuracy benchmark.
  std::vector<int64_t> timer_lateness_us;
  // The same for the moment the request leaves, after RUNNING is committed (so it includes the
  // group commit's fsync under load).
  std::vector<int64_t> start_lateness_us;
};

class Engine final : public EndpointControl {
 public:
  using SubmitDone = absl::AnyInvocable<void(std::vector<store::SubmitResult>) &&>;
  // OK once the change is durable; the caller reads the job back from the store if needed.
  using JobDone = absl::AnyInvocable<void(absl::Status) &&>;

  Engine(std::shared_ptr<const config::Config> config, store::JobStore& store,
         http::Executor& executor, const common::Clock& clock, EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // --- Loop thread only -------------------------------------------------------------------
  // Loads every non-terminal job from the store (RUNNING ones come back QUEUED). Call once,
  // before the first RunOnce.
  absl::Status Recover();
  // One turn: runs posted work, fires due timers, dispatches ready jobs, then waits in the
  // executor for at most `max_wait` (bounded by the next timer) and runs completions.
  void RunOnce(absl::Duration max_wait);
  // Runs turns until Stop() and the drain finish, then closes the loop: posted work still
  // queued is run, and whatever still waits on the engine (cancel waiters, watchers) is
  // answered UNAVAILABLE. Attempts still on the wire stay RUNNING in the store and are
  // re-queued at the next start; their late outcomes are ignored.
  void Run();
  // The earliest time the engine has something to do (timer or paused endpoint reopening);
  // InfiniteFuture when idle. Tests on a fake clock use it with RunOnce(ZeroDuration()).
  absl::Time NextWakeup() const;

  // --- Any thread -------------------------------------------------------------------------
  // Switches to `config` on the loop: endpoints are matched by name (every known one must still
  // be there: the caller checks); new ones are appended in the config's order; endpoint
  // settings, policies and limits apply to the next attempt of every job; an attempt on the wire
  // is decided by the policy it started with. `done` runs on the loop once switched (or with
  // UNAVAILABLE when the loop has closed).
  void Reload(std::shared_ptr<const config::Config> config,
              absl::AnyInvocable<void(absl::Status) &&> done);
  // Runs `fn` on the loop. Returns false (and drops `fn`) once the loop has closed.
  bool Post(absl::AnyInvocable<void() &&> fn) { return PostWork(std::move(fn), false); }
  // Jobs must already be validated. `done` runs once the jobs are durable (or failed), on a
  // store thread. RESOURCE_EXHAUSTED per item when max_active_jobs would be exceeded.
  void Submit(std::vector<store::NewJob> jobs, SubmitDone done);
  // Cancels a non-terminal job. A job whose attempt is in flight is cancelled when that
  // attempt ends (unless it succeeded: the effect happened). FAILED_PRECONDITION if terminal.
  void Cancel(std::string tenant, JobId id, JobDone done);
  // Dead-lettered job back to QUEUED with a fresh attempt budget. FAILED_PRECONDITION unless
  // FAILED or EXHAUSTED.
  void Replay(std::string tenant, JobId id, JobDone done);
  // Sends the job's current state, then every change until terminal.
  void Watch(std::string tenant, JobId id, std::shared_ptr<WatchSink> sink);
  // Drops `sink` (given to Watch for `id`) now, rather than at the job's next event: its client
  // went away. Unknown sinks are ignored.
  void Unwatch(JobId id, std::shared_ptr<const WatchSink> sink);
  // Stops dispatching new attempts; Run() returns when in-flight attempts have finished and
  // their outcomes are persisted, or when `grace` has passed (unfinished attempts stay RUNNING
  // in the store and are re-queued at the next start).
  void Stop(absl::Duration grace);
  EngineStats Stats() const;

  // --- EndpointControl (endpoint_control.cc; any thread) -----------------------------------
  void GetEndpointStatus(std::string name, StatusDone done) override;
  void PauseEndpoint(std::string name, absl::Time until, std::string reason,
                     StatusDone done) override;
  void ResumeEndpoint(std::string name, StatusDone done) override;
  common::WaitReason EndpointWait(absl::string_view endpoint, bool retry,
                                  absl::Time* until) const override;
  common::WaitReason BudgetWait(absl::string_view endpoint, const common::JobSpec& job,
                                common::Priority priority, absl::Time* until) const override;
  std::vector<std::string> EndpointsWaiting(common::WaitReason reason) const override;

  int64_t ActiveJobs() const { return active_jobs_.load(std::memory_order_relaxed); }

 private:
  // The answer to a request the stopping loop can no longer serve.
  static absl::Status ShuttingDown();

  struct Slot {
    JobId id = 0;
    uint32_t version = 0;  // bumped on every decided transition; stale callbacks compare it
    int16_t endpoint = -1;
    const policy::Policy* policy = nullptr;  // owned by config_
    JobState state = JobState::kQueued;
    int attempt_count = 0;
    int budget_base = 0;
    int throttled = 0;  // rate-limited attempts of the current budget
    int last_http_status = 0;
    bool cancel_requested = false;
    bool runner = false;     // the one job of its ordering key allowed to run
    JobId waits_behind = 0;  // BLOCKED: the job just ahead of it in its key's queue
    absl::Time next_attempt_at = absl::InfinitePast();
    absl::Time first_attempt_at = absl::InfinitePast();
    absl::Time deadline = absl::InfiniteFuture();
    absl::Duration previous_delay = absl::ZeroDuration();
    absl::Time since;                     // submitted or replayed: the job duration's start
    bool followed = false;                // has an entry in followers_
    bool retry_after_wait = false;        // WAITING_RETRY set by the upstream's Retry-After
    bool named_policy = false;            // the job named its policy (else: endpoint default)
    uint32_t config_generation = 0;       // of `policy`; re-resolved after a reload
    const std::string* tenant = nullptr;  // interned in tenants_
    std::string ordering_scope;  // tenant + '\n' + ordering key; empty without ordering key
    std::shared_ptr<const common::JobSpec> spec;  // kept while queued/running, dropped waiting
    // For log lines when `spec` has been dropped; null when the job has none.
    std::unique_ptr<const std::string> correlation_id;
    AttemptTicket ticket;  // RUNNING: what the endpoint's gate gave the attempt
    common::Priority priority = common::Priority::kUnspecified;  // as submitted
    // Its labels, when it has any: budgets and fair turns are scoped by them.
    std::shared_ptr<const std::map<std::string, std::string>> labels;
    // The next attempt is a retry of the current attempt budget (not the budget's first).
    bool NextIsRetry() const { return attempt_count - budget_base > 0; }
  };

  // Who waits on a job: rare, so kept beside the slots rather than in each of them.
  struct Followers {
    std::vector<JobDone> cancel_waiters;
    std::vector<std::shared_ptr<WatchSink>> watchers;
  };

  struct Timer {
    absl::Time due;
    uint64_t seq;
    JobId id;
    uint32_t version;
    bool operator>(const Timer& o) const { return due != o.due ? due > o.due : seq > o.seq; }
  };

  // Runs after the commit with the slot, or with nullptr when a later transition superseded
  // this one (or the job is gone): callers that owe an answer still give it.
  using Then = absl::AnyInvocable<void(Slot*) &&>;
  struct PendingThen {
    JobId id;
    uint32_t version;
    Then then;
  };

  // `internal`: the engine's own follow-up work (commit callbacks), accepted while closing.
  bool PostWork(absl::AnyInvocable<void() &&> fn, bool internal);
  void RunPosted();
  void FireTimers(absl::Time now);
  // Fires and dispatches due timers now, between pieces of a long turn.
  void FireDueTimers();
  void Dispatch(absl::Time now);
  void DispatchOne(EndpointGate& gate, Slot& slot, const EndpointGate::Ready& ready,
                   absl::Time now);
  // Budgets (budget.h) from config_: known ones (by name) take their new settings, new ones are
  // added; none is ever freed (tickets of attempts on the wire point at them). Then each gate
  // is given its own, and its ready jobs are queued again (a reload may have changed their
  // lanes or priorities).
  void ConfigureBudgets(absl::Time now);
  // Loads what budgets' quotas used in their current period (Recover).
  absl::Status RestoreBudgetUsage();
  // Persists the budgets' changed quota counts beside the transitions (FlushWrites).
  void FlushBudgetUsage();
  // What a new slot (submit, recovery, replay) keeps of its job for budgets and turns.
  static void SetPriorityAndLabels(Slot& slot, common::Priority priority,
                                   const std::map<std::string, std::string>& labels);
  // The job's priority: as submitted, else its policy's.
  common::Priority PriorityOf(const Slot& slot) const;
  ReadyJob ReadyOf(const Slot& slot) const;
  // After RUNNING committed: reads the request when it is not in memory, then BeginAttempt.
  void PrepareAttempt(Slot& slot);
  void OnSpecLoaded(JobId id, uint32_t version, absl::StatusOr<common::JobSpec> spec);
  // Starts the attempt (an endpoint that paces its sends holds it until ReleaseSends gives it
  // a send token: `send_token`), or gives it back (cancel requested, shutdown grace over).
  void BeginAttempt(Slot& slot, bool send_token = false);
  // Starts the held attempts whose send tokens are due (see EndpointGate::HoldForSend).
  void ReleaseSends(absl::Time now);
  // Undoes DispatchOne's accounting of an attempt that never left.
  void GiveBackAttempt(Slot& slot);
  void StartAttempt(Slot& slot);
  // Requests in memory are counted against spec_bytes_budget_.
  bool SpecFits(const common::JobSpec& spec) const;
  void HoldSpec(Slot& slot, std::shared_ptr<const common::JobSpec> spec);
  void DropSpec(Slot& slot);
  void OnOutcome(JobId id, absl::Time started, policy::Outcome outcome);
  void Adopt(std::shared_ptr<const common::JobSpec> spec, const store::SubmitResult& result);
  Slot* FindSlot(JobId id);
  // The job if it is in memory and belongs to `tenant`.
  Slot* FindOwned(const std::string& tenant, JobId id);
  // Reads a job's record off the loop (run_read_), then runs `then` on the loop with it
  // (`on_loop` true); once the loop has closed, on the reader with UNAVAILABLE (`on_loop` false).
  using ReadDone = absl::AnyInvocable<void(absl::StatusOr<common::JobRecord>, bool on_loop) &&>;
  void ReadJob(std::string tenant, JobId id, ReadDone then);
  // Cancel, Replay and Watch once the job is found (in memory, or its record read).
  void CancelSlot(Slot& slot, JobDone done);
  void ReplayRecord(JobId id, common::JobRecord rec, JobDone done);
  void Follow(Slot& slot, std::shared_ptr<WatchSink> sink);
  // Decides a transition: updates the slot now, queues the write, and runs `then` after the
  // commit unless a later transition superseded this one.
  void Persist(Slot& slot, JobState state, std::string decision, Then then,
               std::optional<common::AttemptRecord> attempt = std::nullopt,
               std::optional<std::string> response_body = std::nullopt);
  // Sends every transition decided this turn to the store as one group.
  void FlushWrites();
  // After a terminal transition committed: tells watchers and waiters, frees the slot.
  void Finish(Slot& slot, const std::string& decision);
  void Notify(Slot& slot, const std::string& decision);
  void Enqueue(Slot& slot);
  void ArmTimer(Slot& slot);
  void UnblockNext(const std::string& scope);
  // A blocked `slot` takes its key: QUEUED once durable.
  void Unblock(Slot& slot);
  // Ends a job whose endpoint (named `endpoint`) is not configured: FAILED, never sent again.
  void FailUnroutable(Slot& slot, absl::string_view endpoint);
  // Marks `slot` as its ordering key's runner (no-op without an ordering key).
  void MakeRunner(Slot& slot);
  // Queues `slot` behind its key's runner and earlier blocked jobs; persists BLOCKED (with the
  // job just ahead) unless the store holds it already.
  void Block(Slot& slot);
  // Takes a blocked `slot` out of its key's queue (cancelled); the job that waited right behind
  // it is re-persisted waiting behind the one ahead.
  void LeaveKeyQueue(Slot& slot);
  const std::string* InternTenant(const std::string& tenant);
  Followers& FollowersOf(Slot& slot);
  void CloseLoop();
  struct LatenessSamples {
    std::vector<int64_t> us;
    size_t next = 0;
    void Add(int64_t v);
  };
  void RecordLateness(LatenessSamples& samples, absl::Duration lateness);
  JobEvent EventOf(const Slot& slot, std::string decision) const;
  int16_t EndpointIndex(absl::string_view name) const;
  const policy::Policy* PolicyFor(int16_t endpoint, absl::string_view name) const;
  // Sets slot.policy (and its generation) from the current config.
  void ResolvePolicy(Slot& slot, absl::string_view name);
  void AssertOnLoop() const;
  // Every change of a slot's state goes through these, so the per-endpoint counts stay exact.
  void SetState(Slot& slot, JobState state);
  void Track(const Slot& slot, int sign);
  JobRef RefOf(const Slot& slot) const;
  void PublishGauges(absl::Time now);
  // The wait of a job as watchers and the API see it (its own, or its endpoint's when ready).
  void FillWait(const Slot& slot, JobEvent* event) const;
  // An endpoint's holds changed (EndpointGate::RefreshHolds): publishes them to other threads
  // and tells the watchers of its ready jobs.
  void OnHoldsChanged(int16_t endpoint);
  // Loads persisted operator pauses into the gates (Recover).
  absl::Status RestoreOperatorPauses();
  // The status of one gate (loop thread).
  EndpointStatus StatusOf(int16_t endpoint, absl::Time now) const;
  // Posts `fn(endpoint index)` to the loop for a known endpoint, else answers NOT_FOUND.
  void WithEndpoint(std::string name, StatusDone done,
                    absl::AnyInvocable<void(int16_t, StatusDone) &&> fn);

  // Current config (loop thread), and every earlier one: slots whose attempt is on the wire may
  // still point at an old policy, so old configs stay alive (they are small).
  std::shared_ptr<const config::Config> config_;
  std::vector<std::shared_ptr<const config::Config>> retired_configs_;
  uint32_t config_generation_ = 0;
  std::atomic<int64_t> max_active_jobs_;
  store::JobStore& store_;
  http::Executor& executor_;
  const common::Clock& clock_;
  std::mt19937_64 rng_;
  const size_t spec_bytes_budget_;
  std::function<void(absl::AnyInvocable<void() &&>)> run_read_;

  // Loop-owned state.
  // node_hash_map: a million waiting jobs cost one allocation each, with no half-empty array of
  // large slots and no doubling copy of them when the table grows.
  absl::node_hash_map<JobId, Slot> slots_;
  absl::flat_hash_map<JobId, Followers> followers_;
  absl::node_hash_set<std::string> tenants_;      // interned tenant names (stable addresses)
  std::vector<EndpointGate> endpoints_;           // by endpoint index
  std::vector<std::unique_ptr<Budget>> budgets_;  // every budget ever configured
  // Endpoint names by index, append-only (capacity kMaxEndpoints, never reallocated): any
  // thread may read the first endpoint_name_count_ of them; the loop appends on a reload.
  std::vector<std::string> endpoint_names_;
  std::atomic<size_t> endpoint_name_count_{0};
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  uint64_t timer_seq_ = 0;
  OrderingGate ordering_;
  std::vector<store::Transition> pending_writes_;
  std::vector<PendingThen> pending_thens_;
  int64_t commits_outstanding_ = 0;  // write groups sent whose thens have not run yet
  EngineObserver null_observer_;
  EngineObserver* observer_;
  absl::Time next_gauges_ = absl::InfinitePast();
  bool stopping_ = false;
  absl::Time stop_deadline_ = absl::InfiniteFuture();

  std::atomic<int64_t> active_jobs_{0};

  struct Counters {
    std::atomic<int64_t> in_flight{0};
    std::atomic<int64_t> attempts_started{0};
    std::atomic<int64_t> attempts_finished{0};
    std::atomic<int64_t> succeeded{0};
    std::atomic<int64_t> failed{0};
    std::atomic<int64_t> exhausted{0};
    std::atomic<int64_t> cancelled{0};
    std::atomic<int64_t> unroutable{0};
    std::atomic<int64_t> watchers{0};
    std::atomic<int64_t> spec_bytes_held{0};
    std::atomic<int64_t> spec_loads{0};
  };
  Counters counters_;
  mutable absl::Mutex lateness_mu_;
  LatenessSamples dispatch_lateness_ ABSL_GUARDED_BY(lateness_mu_);
  LatenessSamples start_lateness_ ABSL_GUARDED_BY(lateness_mu_);

  absl::Mutex post_mu_;
  std::vector<absl::AnyInvocable<void() &&>> posted_ ABSL_GUARDED_BY(post_mu_);
  // Closing: the loop drains its own commits but takes no new outside work (entry points answer
  // UNAVAILABLE). Closed: Run() has returned; nothing posted runs any more.
  bool closing_ ABSL_GUARDED_BY(post_mu_) = false;
  bool closed_ ABSL_GUARDED_BY(post_mu_) = false;
  std::atomic<bool> loop_closed_{false};
  std::atomic<std::thread::id> loop_thread_{};

  // The gates' holds as other threads read them (EndpointWait), by endpoint index.
  mutable absl::Mutex holds_mu_;
  std::vector<std::array<Admission, 2>> published_holds_ ABSL_GUARDED_BY(holds_mu_);
  // The lanes a budget held at the last pass, and what puts a job in a lane, by endpoint.
  struct PublishedLanes {
    std::string fairness_label;
    std::vector<std::string> split_bys;
    std::vector<EndpointGate::LaneHold> holds;
  };
  std::vector<PublishedLanes> published_lanes_ ABSL_GUARDED_BY(holds_mu_);

  // The default run_read (store_reader.h). Last member: stopped first.
  std::unique_ptr<StoreReader> reader_;
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_ENGINE_H_
