// SqliteStore: the embedded JobStore backend (DESIGN.md "Storage").
//
// One SQLite file in WAL mode. A single writer thread owns the write connection and its prepared
// statements: Submit(), Apply() and the endpoint-pause writes only enqueue; the writer takes
// everything queued (up to `max_batch` rows), runs it in one BEGIN IMMEDIATE ... COMMIT (group
// commit: no waiting for more work, so batches grow with load) and then runs the `done`
// callbacks on the writer thread. Transitions (and pause writes) have their own lane ahead of
// submits, so a due retry's RUNNING write does not queue behind a burst of submits; within each
// lane, order is enqueue order. Maintenance (PurgeEndedJobs, ReclaimSpace) has a third, lowest
// lane: each such step runs alone in its own transaction, when the other lanes are empty or
// after it has been passed over a few times, so a long purge neither starves nor holds up
// traffic for more than one bounded step. If the transaction fails, it is rolled back and every
// op of that batch gets the error; earlier commits are untouched. Reads (Get, LoadSpec, List,
// LoadEndpointPauses) run on the caller's thread on a small pool of read connections; WAL lets
// them proceed while the writer commits. Recover(), PurgeExpiredKeys(), PurgeEndedJobs() and
// ReclaimSpace() run on the writer thread and block the caller until done.
//
// Errors: a SQLite failure reaches callers of the writes and of the reads with a clean message
// (no SQL text, no file path) and a code that says what to do: UNAVAILABLE when the store cannot
// write now (disk or database full, I/O error, busy: retry later or elsewhere), DATA_LOSS when
// the file is damaged. The detailed error (statement and SQLite's message) goes to `on_error`.
//
// Thread-safe. Callbacks must not call Flush(), Recover(), PurgeExpiredKeys(), PurgeEndedJobs(),
// ReclaimSpace() or WriterPragma() (they wait for the writer thread they run on); they may call
// Submit()/Apply(). The destructor commits everything enqueued, runs its callbacks, then closes
// the database.
//
// Store-specific behaviour beyond the JobStore contract:
// - An empty idempotency key does not deduplicate (the job is always inserted).
// - A transition from a terminal state back to a non-terminal one (replay) stops the key's
//   retention clock again, so the key of a running job is never purged.
// - ListFilter with a label key and an empty label value matches any value of that key.
// - A stored wait reason this build does not know reads as kNone (it only informs).
#ifndef REBOUND_SERVER_STORE_SQLITE_STORE_H_
#define REBOUND_SERVER_STORE_SQLITE_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/store/job_store.h"

namespace rebound::store {

struct SqliteOptions {
  std::string path;                  // database file; created when missing
  std::string synchronous = "full";  // "full": a COMMIT survives power loss; "normal": opt-in
  int max_batch = 1024;              // rows (jobs or transitions) per transaction, at most
  absl::Duration busy_timeout = absl::Seconds(5);  // waiting for another process' lock
  // Called on the writer thread after each transaction with its duration and rows (metrics).
  std::function<void(absl::Duration, size_t rows)> on_commit;
  // Called with the detailed error (SQL and SQLite's message) whenever a SQLite failure is
  // returned to a caller with a clean message; any thread. For the operator's log.
  std::function<void(const absl::Status&)> on_error;
  // Run `PRAGMA quick_check` at Open and refuse a damaged file (FAILED_PRECONDITION). Costs a
  // read of the whole file (docs/operations.md gives the time per million jobs).
  bool quick_check = true;
  // Cap on the database's size (PRAGMA max_page_count); 0: none. A write past it fails as on a
  // full disk: UNAVAILABLE. Leaves room for the WAL and other files on a shared volume.
  int64_t max_file_bytes = 0;
  // Schema migration 1 -> 2 only: jobs that ended before the upgrade had no purge time; they
  // get finished time + this (ended jobs) or + `legacy_dead_letter_retention` (FAILED,
  // EXHAUSTED). The app passes the longest retention of its policies, so an upgrade never
  // purges a job earlier than its policy would.
  absl::Duration legacy_retention = absl::Hours(24 * 7);
  absl::Duration legacy_dead_letter_retention = absl::Hours(24 * 30);
};

// What the store holds, for the gauges (SqliteStore::Usage).
struct StoreUsage {
  int64_t active_jobs = 0;          // not terminal
  int64_t finished_jobs = 0;        // terminal and not dead-lettered
  int64_t dead_letter_jobs = 0;     // FAILED or EXHAUSTED
  int64_t file_bytes = 0;           // pages in use or free, as the database file holds them
  int64_t free_bytes = 0;           // free pages (ReclaimSpace returns them to the filesystem)
  bool incremental_vacuum = false;  // auto_vacuum=INCREMENTAL (else free pages are only reused)
};

class SqliteStore final : public JobStore {
 public:
  // Counters of the writer since Open.
  struct Stats {
    int64_t commits = 0;              // successful transactions
    int64_t failed_batches = 0;       // transactions rolled back
    int64_t ops = 0;                  // Submit/Apply/internal calls run (committed or not)
    int64_t rows = 0;                 // their jobs + transitions
    int64_t maintenance_waiting = 0;  // maintenance steps queued now (not yet taken)
  };

  // Opens (creating when missing) the database, migrates the schema, sets WAL and the
  // synchronous level, and starts the writer thread. INVALID_ARGUMENT for bad options;
  // FAILED_PRECONDITION when the file cannot be opened or used (bad directory, not a database,
  // WAL unavailable, schema newer than this build, quick_check failed, or an empty file where
  // `<path>.lock` records that a store existed: a truncated or replaced database would
  // otherwise start empty, every job and key silently gone); the message names the path and
  // says what to do.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(const SqliteOptions& options);

  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;
  ~SqliteStore() override;

  void Submit(std::vector<NewJob> jobs, absl::Time now, SubmitDone done) override;
  void Apply(std::vector<Transition> transitions, absl::Time now, WriteDone done) override;
  void SaveEndpointPause(EndpointPause pause, WriteDone done) override;
  void SaveBudgetUsage(std::vector<BudgetUsage> usage, WriteDone done) override;
  void DeleteEndpointPause(std::string endpoint, WriteDone done) override;
  // Returns the most recent failed transaction's error not yet returned by an earlier Flush
  // (per-op results such as NOT_FOUND or ALREADY_EXISTS are not errors here).
  absl::Status Flush() override;

  absl::StatusOr<JobRecord> Get(const std::string& tenant, JobId id, bool with_attempts) override;
  absl::StatusOr<common::JobSpec> LoadSpec(JobId id) override;
  absl::StatusOr<ListPage> List(const std::string& tenant, const ListFilter& filter, int page_size,
                                const std::string& page_token) override;
  // SQLite's plan for that List call (EXPLAIN QUERY PLAN, one line per step; empty when the
  // filters exclude every job without a query). For tests and diagnostics.
  absl::StatusOr<std::string> ExplainList(const std::string& tenant, const ListFilter& filter,
                                          int page_size, const std::string& page_token);
  absl::StatusOr<std::vector<ActiveJob>> Recover(absl::Time now) override;
  absl::StatusOr<std::vector<EndpointPause>> LoadEndpointPauses() override;
  absl::StatusOr<std::vector<BudgetUsage>> LoadBudgetUsage() override;
  absl::StatusOr<int64_t> PurgeExpiredKeys(absl::Time cutoff) override;
  absl::StatusOr<int64_t> PurgeEndedJobs(absl::Time now, int limit) override;
  // Returns up to `max_pages` free pages to the filesystem (PRAGMA incremental_vacuum) in one
  // maintenance step; how many pages were free before it. 0 without auto_vacuum=INCREMENTAL
  // (databases created before schema 2: docs/operations.md gives the one-time conversion).
  absl::StatusOr<int64_t> ReclaimSpace(int max_pages);
  // Counts jobs by class and the file's size, on a read connection (a scan of the jobs' smallest
  // index: about a second per 10 million jobs; call it from a maintenance thread).
  absl::StatusOr<StoreUsage> Usage();
  absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> CountDeadLetters() override;

  Stats GetStats() const;
  // Value of `PRAGMA <name>` on the write connection (e.g. "synchronous" -> "2"). For tests and
  // diagnostics; `name` must be an identifier.
  absl::StatusOr<std::string> WriterPragma(absl::string_view name);

 private:
  class Writer;
  class ReadPool;
  struct Op;
  using Task = absl::AnyInvocable<absl::Status(Writer&)>;

  SqliteStore(std::unique_ptr<Writer> writer, std::unique_ptr<ReadPool> reads, int max_batch);

  void Enqueue(Op op);
  // Runs `task` inside a writer transaction and waits for the commit. A maintenance task has
  // the lowest lane and a transaction of its own.
  absl::Status RunOnWriter(Task task, bool maintenance = false);
  // The caller's view of an error: SQLite's text goes to on_error, the caller gets a clean one.
  absl::Status ForCaller(const absl::Status& s) const;
  void WriterLoop();
  // Executes a batch in one transaction; on error nothing of it is kept. Without
  // `with_submits`, its submits are left out (they are not run, and get no results).
  absl::Status RunBatch(std::vector<Op>& batch, bool with_submits);
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static int LaneOf(const Op& op);

  const std::unique_ptr<Writer> writer_;  // used only by the writer thread after Open
  const std::unique_ptr<ReadPool> reads_;
  const int max_batch_;
  std::function<void(absl::Duration, size_t rows)> on_commit_;
  std::function<void(const absl::Status&)> on_error_;
  int lock_fd_ = -1;  // flock()ed <path>.lock: one process per database file

  // Two lanes, each FIFO. Transitions (and tasks) go first, so a retry's RUNNING write does not
  // wait behind a backlog of submits; that is safe because a job's transitions are only ever
  // written after its submit has committed. Index 0: submits, 1: transitions, pause writes and
  // tasks, 2: maintenance.
  struct Lane {
    std::vector<Op> queue;  // ops from `head` on are waiting
    size_t head = 0;
    uint64_t enqueued = 0;  // ops ever enqueued
    uint64_t finished = 0;  // ops whose callbacks have run
    bool empty() const;
    void DropTaken();  // after moving ops out from `head`
  };
  // Submits, transitions (urgent), maintenance steps (purge, vacuum): sqlite_store.cc's kLane
  // names.
  static constexpr int kLaneCount = 3;
  bool AllLanesEmpty() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  mutable absl::Mutex mu_;
  Lane lanes_[kLaneCount] ABSL_GUARDED_BY(mu_);
  int maintenance_passed_over_ ABSL_GUARDED_BY(mu_) = 0;  // batches run while it waited
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;
};

}  // namespace rebound::store

#endif  // REBOUND_SERVER_STORE_SQLITE_STORE_H_
