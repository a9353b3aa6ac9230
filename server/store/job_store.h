// JobStore: the durable record of jobs, attempts and idempotency keys.
//
// Writes are group-committed: Submit(), Apply(), SaveEndpointPause(), DeleteEndpointPause() and
// SaveBudgetUsage()
// enqueue work and return at once; a writer drains everything queued, runs it in one
// transaction, commits, and only then calls each `done` callback (on the store's writer thread:
// callbacks must be quick and must not call back into the store's write methods
// synchronously... they may enqueue more). A callback that reports OK means the data is
// durable. Reads are synchronous and thread-safe.
//
// One interface, several backends: SQLite now (sqlite_store.h), PostgreSQL with several
// replicas leasing due jobs later. The conformance suite in tests/store runs on every backend.
#ifndef REBOUND_SERVER_STORE_JOB_STORE_H_
#define REBOUND_SERVER_STORE_JOB_STORE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/job.h"

namespace rebound::store {

using common::JobId;
using common::JobRecord;
using common::JobState;

struct NewJob {
  common::JobSpec spec;
  std::string fingerprint;  // common::Fingerprint(spec)
};

struct SubmitResult {
  // OK (created or deduplicated); ALREADY_EXISTS when the key is taken by a different request
  // (message names the existing job id); another code when the write failed.
  absl::Status status;
  JobId job_id = 0;  // set for OK and ALREADY_EXISTS
  JobState state = JobState::kQueued;
  bool deduplicated = false;
};

// A change to one job, written by the engine (the only writer of job state).
struct Transition {
  JobId job_id = 0;
  JobState state = JobState::kQueued;
  int attempt_count = 0;
  int budget_base = 0;
  int throttled_count = 0;  // rate-limited attempts of the current budget
  absl::Time next_attempt_at = absl::InfinitePast();
  absl::Time first_attempt_at = absl::InfinitePast();
  std::string last_decision;
  int last_http_status = 0;
  std::optional<std::string> last_response_body;  // replaced when present
  std::optional<common::AttemptRecord> attempt;   // appended when present
  // The job's own wait (common::WaitReason): BACKOFF or RETRY_AFTER with WAITING_RETRY,
  // ORDERING_BLOCKED (and the job ahead in its key) with BLOCKED, else kNone / 0.
  common::WaitReason wait_reason = common::WaitReason::kNone;
  JobId waits_behind = 0;
  // When a terminal job (with its attempts, bodies, labels and idempotency key) may be purged;
  // InfiniteFuture: never. Decided by the engine from the job's policy; the store records it.
  // A non-terminal transition (replay) leaves it InfiniteFuture, so an active job is never
  // purged.
  absl::Time purge_at = absl::InfiniteFuture();
};

// What the engine keeps in memory for a job that is not terminal: small on purpose, so a
// million waiting jobs fit in little memory. The spec is read again (LoadSpec) at dispatch.
struct ActiveJob {
  JobId id = 0;
  std::string endpoint;
  std::string policy;  // empty: endpoint default
  std::string tenant;
  std::string ordering_key;
  JobState state = JobState::kQueued;
  int attempt_count = 0;
  int budget_base = 0;
  int throttled_count = 0;
  absl::Time next_attempt_at = absl::InfinitePast();
  absl::Time first_attempt_at = absl::InfinitePast();
  absl::Time deadline = absl::InfiniteFuture();
  absl::Time created_at;
  common::WaitReason wait_reason = common::WaitReason::kNone;  // as last written
  JobId waits_behind = 0;
  common::Priority priority = common::Priority::kUnspecified;  // as submitted
  // Budgets and fair turns are scoped by labels (config budgets[].split_by, fairness_label).
  std::map<std::string, std::string> labels;
};

struct ListFilter {
  std::vector<JobState> states;  // empty: all
  std::string endpoint;          // empty: all
  std::string ordering_key;
  std::string label_key;  // with label_value: jobs carrying that label
  std::string label_value;
  // --- Wait filters (ListSyncs wait_reason); every one that is set must hold ---
  // The job's own stored wait reason equals this (kNone: jobs with no own wait).
  std::optional<common::WaitReason> wait_reason;
  // The job's endpoint is one of these (ANDed with `endpoint` when both are set); empty: all.
  std::vector<std::string> endpoints;
  // WAITING_RETRY jobs: due strictly after `due_after` (still in their own wait) / at or
  // before `due_by` (their wait is over: the endpoint's gate decides). QUEUED jobs match
  // `due_by` and never `due_after`; jobs in any other state match neither. A WAITING_RETRY job
  // without a due time counts as due at InfinitePast. InfinitePast / InfiniteFuture: not checked.
  absl::Time due_after = absl::InfinitePast();
  absl::Time due_by = absl::InfiniteFuture();
  bool retries_only = false;  // attempt_count > budget_base: a retry of the current budget
};

// An operator's pause of an endpoint (PauseEndpoint), kept until resumed or `until` passes.
// The store keeps at most one per endpoint name and returns what it holds as it is: a pause of
// an endpoint no longer configured, or one whose `until` has passed, is the engine's to ignore.
struct EndpointPause {
  std::string endpoint;
  absl::Time until = absl::InfiniteFuture();  // InfiniteFuture: until ResumeEndpoint
  std::string reason;                         // the operator's words, e.g. "LMS maintenance"
  absl::Time paused_at;
};

// What a budget's quota has used in a period (config budgets[].quota), per scope (the value
// of its split_by; "" when it is not split). The engine writes it as it counts attempts and
// reads it back at start; the store keeps one row per (budget, scope) as it is given.
struct BudgetUsage {
  std::string budget;
  std::string scope;
  absl::Time period_start;
  int64_t used = 0;
};

struct ListPage {
  std::vector<JobRecord> jobs;  // newest first, without attempts or bodies
  std::string next_page_token;  // empty: no more
};

class JobStore {
 public:
  using SubmitDone = absl::AnyInvocable<void(std::vector<SubmitResult>) &&>;
  using WriteDone = absl::AnyInvocable<void(absl::Status) &&>;

  virtual ~JobStore() = default;

  // Inserts jobs, always as QUEUED with no wait reason (ordering keys are the engine's: it
  // writes BLOCKED as a transition), deduplicating by (tenant, idempotency key) — also within
  // the batch. One result per job, in order; a deduplicated one carries the existing job's
  // current state.
  virtual void Submit(std::vector<NewJob> jobs, absl::Time now, SubmitDone done) = 0;

  // Applies transitions in order, in one group commit with whatever else is queued. A backend
  // may commit transitions ahead of submits enqueued earlier (never ahead of each other): a
  // job's transitions are only written after its submit has committed.
  // Terminal transitions also start the idempotency key's retention clock at `now`.
  virtual void Apply(std::vector<Transition> transitions, absl::Time now, WriteDone done) = 0;

  // Records an operator's pause, replacing the one of the same endpoint, group-committed with
  // whatever else is queued; `done` runs after the commit, on the writer thread (as Apply's).
  virtual void SaveEndpointPause(EndpointPause pause, WriteDone done) = 0;
  // Replaces the rows of the given (budget, scope) pairs.
  virtual void SaveBudgetUsage(std::vector<BudgetUsage> usage, WriteDone done) = 0;
  // Forgets the pause of `endpoint` (ResumeEndpoint); OK also when there was none.
  virtual void DeleteEndpointPause(std::string endpoint, WriteDone done) = 0;

  // Blocks until everything enqueued so far is committed (or failed). For shutdown and tests.
  virtual absl::Status Flush() = 0;

  // --- Reads (synchronous, thread-safe) ---
  // NOT_FOUND when the job does not exist or belongs to another tenant.
  virtual absl::StatusOr<JobRecord> Get(const std::string& tenant, JobId id,
                                        bool with_attempts) = 0;
  // The request of a job, for dispatch (no tenant check: engine-internal).
  virtual absl::StatusOr<common::JobSpec> LoadSpec(JobId id) = 0;
  virtual absl::StatusOr<ListPage> List(const std::string& tenant, const ListFilter& filter,
                                        int page_size, const std::string& page_token) = 0;

  // Start-up recovery: every job that is not terminal, oldest first, with its wait reason as
  // last written. RUNNING jobs (outcome unknown) come back as QUEUED with no wait reason and are
  // persisted so; WAITING_RETRY keep their due time and reason (RETRY_AFTER stays RETRY_AFTER).
  virtual absl::StatusOr<std::vector<ActiveJob>> Recover(absl::Time now) = 0;

  // Every operator pause the store holds (synchronous, thread-safe), by endpoint name.
  virtual absl::StatusOr<std::vector<EndpointPause>> LoadEndpointPauses() = 0;
  // Every row SaveBudgetUsage wrote, as written.
  virtual absl::StatusOr<std::vector<BudgetUsage>> LoadBudgetUsage() = 0;

  // Dead-lettered (FAILED or EXHAUSTED) jobs per endpoint name, for the gauge at start-up.
  virtual absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> CountDeadLetters() = 0;

  // Forgets idempotency keys of jobs that ended before `cutoff`. Returns how many.
  virtual absl::StatusOr<int64_t> PurgeExpiredKeys(absl::Time cutoff) = 0;

  // Deletes at most `limit` terminal jobs whose purge_at is before `now`, each with its
  // attempts, bodies, labels and idempotency key (so a purged job's key never deduplicates to
  // a job that is gone), in one transaction that does not hold up submits and transitions
  // queued meanwhile. Returns how many jobs. Callers loop until it returns less than `limit`.
  virtual absl::StatusOr<int64_t> PurgeEndedJobs(absl::Time now, int limit) = 0;
};

}  // namespace rebound::store

#endif  // REBOUND_SERVER_STORE_JOB_STORE_H_
