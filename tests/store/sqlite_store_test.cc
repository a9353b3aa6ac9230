#include "server/store/sqlite_store.h"

#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/job.h"
#include "tests/store/job_store_conformance.h"

namespace rebound::store {
namespace {

using common::WaitReason;
using conformance::ApplyAndWait;
using conformance::BackendFactory;
using conformance::CommitCounts;
using conformance::Job;
using conformance::JobStoreBackend;
using conformance::JobStoreConformanceTest;
using conformance::kCallbackDeadline;
using conformance::kT0;
using conformance::ListAll;
using conformance::PendingApply;
using conformance::PendingSubmit;
using conformance::PendingWrite;
using conformance::Spec;
using conformance::SubmitOne;
using ::testing::HasSubstr;
using ::testing::Not;

// A database file in the test temp directory, removed (with its WAL and shm files) at the end.
class TempDb {
 public:
  TempDb() {
    static std::atomic<int> counter{0};
    path_ = absl::StrCat(::testing::TempDir(), "rebound_store_", getpid(), "_", counter++, ".db");
    Remove();
  }
  TempDb(const TempDb&) = delete;
  TempDb& operator=(const TempDb&) = delete;
  ~TempDb() { Remove(); }
  const std::string& path() const { return path_; }

 private:
  void Remove() {
    std::error_code ignored;
    for (const char* suffix : {"", "-wal", "-shm", ".lock"}) {
      std::filesystem::remove(path_ + suffix, ignored);
    }
  }
  std::string path_;
};

SqliteOptions Options(const std::string& path) {
  SqliteOptions options;
  options.path = path;
  return options;
}

std::unique_ptr<SqliteStore> OpenOrDie(const SqliteOptions& options) {
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

// A plain connection of the test's own, to look at (or interfere with) the file.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
    EXPECT_EQ(sqlite3_busy_timeout(db_, 60'000), SQLITE_OK);
  }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;
  ~RawDb() { EXPECT_EQ(sqlite3_close(db_), SQLITE_OK); }

  void Exec(const std::string& sql) {
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
        << sql << ": " << (err != nullptr ? err : "");
    sqlite3_free(err);
  }
  // The first column of the first row, as text.
  std::string Query(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    std::string result;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
        << sql << ": " << sqlite3_errmsg(db_);
    if (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      if (text != nullptr) result = reinterpret_cast<const char*>(text);
    }
    sqlite3_finalize(stmt);
    return result;
  }

 private:
  sqlite3* db_ = nullptr;
};

// --- The conformance suite, on SQLite ---

class SqliteBackend final : public JobStoreBackend {
 public:
  absl::StatusOr<std::unique_ptr<JobStore>> Open() override {
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(Options(db_.path()));
    if (!store.ok()) return store.status();
    return std::unique_ptr<JobStore>(*std::move(store));
  }
  std::optional<CommitCounts> Counts(JobStore& store) override {
    const SqliteStore::Stats stats = static_cast<SqliteStore&>(store).GetStats();
    return CommitCounts{stats.commits, stats.ops};
  }

 private:
  TempDb db_;
};

INSTANTIATE_TEST_SUITE_P(Sqlite, JobStoreConformanceTest,
                         ::testing::Values(BackendFactory{
                             "Sqlite", [] { return std::make_unique<SqliteBackend>(); }}),
                         conformance::BackendName);

// --- SQLite specifics ---

TEST(SqliteStore, OpenUsesWalAndFullSynchronousByDefault) {
  TempDb db;
  std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->WriterPragma("journal_mode").value_or("?"), "wal");
  EXPECT_EQ(store->WriterPragma("synchronous").value_or("?"), "2");  // FULL
  RawDb raw(db.path());
  EXPECT_EQ(raw.Query("PRAGMA journal_mode"), "wal");  // persistent in the file
  EXPECT_EQ(raw.Query("PRAGMA user_version"), "5");
  EXPECT_EQ(raw.Query("PRAGMA auto_vacuum"), "2");  // INCREMENTAL: purges can shrink the file
}

TEST(SqliteStore, ASecondStoreOnTheSameFileIsRefusedUntilTheFirstCloses) {
  TempDb db;
  std::unique_ptr<SqliteStore> first = OpenOrDie(Options(db.path()));
  ASSERT_NE(first, nullptr);
  auto second = SqliteStore::Open(Options(db.path()));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), ::testing::HasSubstr("in use by another"));
  first.reset();
  EXPECT_TRUE(SqliteStore::Open(Options(db.path())).ok());
}

TEST(SqliteStore, NormalSynchronousIsAnExplicitOptIn) {
  TempDb db;
  SqliteOptions options = Options(db.path());
  options.synchronous = "normal";
  std::unique_ptr<SqliteStore> store = OpenOrDie(options);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->WriterPragma("synchronous").value_or("?"), "1");  // NORMAL
}

TEST(SqliteStore, WriterPragmaAcceptsOnlyANameAndNoStatement) {
  TempDb db;
  std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->WriterPragma("synchronous = OFF").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->WriterPragma("synchronous").value_or("?"), "2");
}

TEST(SqliteStore, OpenRejectsInvalidOptions) {
  TempDb db;
  EXPECT_EQ(SqliteStore::Open(Options("")).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SqliteStore::Open(Options(":memory:")).status().code(),
            absl::StatusCode::kInvalidArgument);
  SqliteOptions off = Options(db.path());
  off.synchronous = "off";
  EXPECT_EQ(SqliteStore::Open(off).status().code(), absl::StatusCode::kInvalidArgument);
  SqliteOptions no_batch = Options(db.path());
  no_batch.max_batch = 0;
  EXPECT_EQ(SqliteStore::Open(no_batch).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SqliteStore, OpenRefusesAPathThatCannotBeOpened) {
  const std::string path = "/nonexistent-rebound-dir/sub/jobs.db";
  const absl::Status status = SqliteStore::Open(Options(path)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(path));
}

// A data directory the server's uid cannot write (a root-owned bind mount under the image's
// uid 10001): the error says which uid needs it and how to give it. Run in a child process,
// which drops root first when the test runs as root (root could write anyway).
TEST(SqliteStore, AnUnwritableDirectoryNamesTheUidThatNeedsIt) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "rebound_ro_", getpid());
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(
      dir, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
               std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
               std::filesystem::perms::others_exec);
  const bool root = geteuid() == 0;
  if (!root)
    std::filesystem::permissions(dir, std::filesystem::perms::owner_write,
                                 std::filesystem::perm_options::remove);
  const std::string path = dir + "/rebound.db";
  EXPECT_EXIT(
      {
        if (root && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(2);
        const absl::Status status = SqliteStore::Open(Options(path)).status();
        std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
        _exit(status.code() == absl::StatusCode::kFailedPrecondition ? 0 : 1);
      },
      ::testing::ExitedWithCode(0),
      "cannot open lock file .*/rebound\\.db\\.lock: Permission denied \\(the directory must be "
      "writable by uid [0-9]+, gid [0-9]+, which this process runs as: chown [0-9]+:[0-9]+ "
      ".*rebound_ro_[0-9]+, or run as the directory's owner");
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
  std::filesystem::remove_all(dir);
}

TEST(SqliteStore, OpenRefusesAFileThatIsNotADatabase) {
  TempDb db;
  {
    std::ofstream out(db.path());
    for (int i = 0; i < 200; ++i) out << "this is a text file, not a database\n";
  }
  const absl::Status status = SqliteStore::Open(Options(db.path())).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(db.path()));
}

TEST(SqliteStore, OpenRefusesASchemaNewerThanThisBuild) {
  TempDb db;
  {
    RawDb raw(db.path());
    raw.Exec("PRAGMA user_version = 99");
  }
  const absl::Status status = SqliteStore::Open(Options(db.path())).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("schema version 99 is newer than this build's (5); upgrade Rebound"));
  EXPECT_THAT(std::string(status.message()), HasSubstr(db.path()));
  // Refused before anything was written: the file still says 99.
  RawDb raw(db.path());
  EXPECT_EQ(raw.Query("PRAGMA user_version"), "99");
}

// What the store reported to on_error (the operator's log), shared with its callback.
class ErrorLog {
 public:
  // Makes `options` report here.
  void Attach(SqliteOptions& options) {
    options.on_error = [state = state_](const absl::Status& s) {
      absl::MutexLock lock(&state->mu);
      state->messages.push_back(std::string(s.message()));
    };
  }
  std::vector<std::string> Messages() const {
    absl::MutexLock lock(&state_->mu);
    return state_->messages;
  }

 private:
  struct State {
    mutable absl::Mutex mu;
    std::vector<std::string> messages ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// --- Retention and space ---

Transition To(JobId id, JobState state) {
  Transition t;
  t.job_id = id;
  t.state = state;
  return t;
}

// `n` jobs of `body_bytes` each, ended with purge time `purge_at`.
std::vector<JobId> EndedJobs(SqliteStore& store, int n, size_t body_bytes, absl::Time purge_at,
                             JobState state = JobState::kSucceeded) {
  std::vector<NewJob> jobs;
  for (int i = 0; i < n; ++i) {
    common::JobSpec spec = Spec("t", absl::StrCat("ended-", i, "-", absl::ToUnixSeconds(purge_at)));
    spec.body = std::string(body_bytes, 'x');
    jobs.push_back(Job(spec));
  }
  std::vector<JobId> ids;
  std::vector<Transition> ends;
  for (const SubmitResult& r : conformance::SubmitAndWait(store, std::move(jobs), kT0)) {
    EXPECT_TRUE(r.status.ok()) << r.status;
    ids.push_back(r.job_id);
    Transition t;
    t.job_id = r.job_id;
    t.state = state;
    t.purge_at = purge_at;
    t.last_response_body = std::string(body_bytes, 'r');
    ends.push_back(t);
  }
  EXPECT_TRUE(ApplyAndWait(store, ends, kT0).ok());
  return ids;
}

int64_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? -1 : static_cast<int64_t>(size);
}

TEST(SqliteStore, PurgedJobsSpaceIsReturnedToTheFilesystem) {
  TempDb db;
  std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
  ASSERT_NE(store, nullptr);
  const absl::Time purge_at = kT0 + absl::Hours(1);
  EndedJobs(*store, 2000, 4096, purge_at);
  const SubmitResult kept = SubmitOne(*store, Job(Spec("t", "kept")), kT0);
  ASSERT_TRUE(kept.status.ok());
  absl::StatusOr<StoreUsage> before = store->Usage();
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->finished_jobs, 2000);
  EXPECT_EQ(before->active_jobs, 1);
  EXPECT_TRUE(before->incremental_vacuum);
  EXPECT_GT(before->file_bytes, 2000 * 8192);

  int64_t purged = 0;
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<int64_t> n = store->PurgeEndedJobs(purge_at + absl::Seconds(1), 256);
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_LE(*n, 256);
    purged += *n;
    if (*n < 256) break;
  }
  EXPECT_EQ(purged, 2000);
  absl::StatusOr<StoreUsage> freed = store->Usage();
  ASSERT_TRUE(freed.ok()) << freed.status();
  EXPECT_GT(freed->free_bytes, 2000 * 4096);  // free, not yet returned

  int64_t steps = 0;
  for (; steps < 1000; ++steps) {
    absl::StatusOr<int64_t> pages = store->ReclaimSpace(512);
    ASSERT_TRUE(pages.ok()) << pages.status();
    EXPECT_LE(*pages, 512);  // bounded steps
    if (*pages < 512) break;
  }
  EXPECT_GT(steps, 1);
  absl::StatusOr<StoreUsage> after = store->Usage();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->free_bytes, 0);
  EXPECT_EQ(after->finished_jobs, 0);
  EXPECT_EQ(after->active_jobs, 1);
  EXPECT_LT(after->file_bytes, before->file_bytes / 10);
  store.reset();  // the last checkpoint truncates the file
  EXPECT_LT(FileSize(db.path()), before->file_bytes / 10);
  EXPECT_GT(FileSize(db.path()), 0);
}

TEST(SqliteStore, SubmitsQueuedBehindManyPurgeStepsGoFirst) {
  TempDb db;
  SqliteOptions options = Options(db.path());
  options.busy_timeout = absl::Seconds(60);
  std::unique_ptr<SqliteStore> store = OpenOrDie(options);
  ASSERT_NE(store, nullptr);
  const absl::Time purge_at = kT0 + absl::Hours(1);
  EndedJobs(*store, 3000, 64, purge_at);

  // Hold the write lock so that everything below queues up behind one blocked transaction.
  RawDb raw(db.path());
  raw.Exec("BEGIN IMMEDIATE");
  PendingSubmit pin(*store, {Job(Spec("t", "pin"))}, kT0);
  struct Shared {
    absl::Mutex mu;
    int steps_done ABSL_GUARDED_BY(mu) = 0;
    int steps_done_when_submitted ABSL_GUARDED_BY(mu) = -1;
  };
  auto shared = std::make_shared<Shared>();
  constexpr int kSteps = 30;
  std::vector<std::thread> purgers;
  for (int i = 0; i < kSteps; ++i) {
    purgers.emplace_back([&store, shared, purge_at] {
      absl::StatusOr<int64_t> n = store->PurgeEndedJobs(purge_at + absl::Seconds(1), 100);
      EXPECT_TRUE(n.ok()) << n.status();
      EXPECT_LE(n.value_or(0), 100);
      absl::MutexLock lock(&shared->mu);
      ++shared->steps_done;
    });
  }
  const absl::Time give_up = absl::Now() + kCallbackDeadline;
  while (store->GetStats().maintenance_waiting < kSteps && absl::Now() < give_up) {
    std::this_thread::yield();
  }
  ASSERT_EQ(store->GetStats().maintenance_waiting, kSteps);
  absl::Notification submitted;
  store->Submit({Job(Spec("t", "during"))}, kT0, [shared, &submitted](std::vector<SubmitResult> r) {
    EXPECT_TRUE(r.at(0).status.ok()) << r.at(0).status;
    absl::MutexLock lock(&shared->mu);
    shared->steps_done_when_submitted = shared->steps_done;
    submitted.Notify();
  });
  raw.Exec("COMMIT");

  ASSERT_EQ(pin.Wait().size(), 1u);
  ASSERT_TRUE(submitted.WaitForNotificationWithTimeout(kCallbackDeadline));
  for (std::thread& t : purgers) t.join();
  absl::MutexLock lock(&shared->mu);
  // The submit waited for no purge step at all, and the purge still went to its end.
  EXPECT_EQ(shared->steps_done_when_submitted, 0);
  EXPECT_EQ(shared->steps_done, kSteps);
  EXPECT_EQ(store->Usage().value_or(StoreUsage{}).finished_jobs, 0);
}

// Takes a database of this build back to what schema 4 looked like: without priorities and the
// budgets' usage.
void DowngradeToSchema4(const std::string& path) {
  RawDb raw(path);
  raw.Exec(
      "ALTER TABLE jobs DROP COLUMN priority; DROP TABLE budget_usage; PRAGMA user_version = 4");
}

// Takes a database of this build back to what schema 3 looked like: without the throttled count.
void DowngradeToSchema3(const std::string& path) {
  DowngradeToSchema4(path);
  RawDb raw(path);
  raw.Exec("ALTER TABLE jobs DROP COLUMN throttled_count; PRAGMA user_version = 3");
}

// Takes a database of this build back to what schema 2 looked like: without the wait columns,
// their indexes and the pause table, with the index of the store's old BLOCKED decision.
void DowngradeToSchema2(const std::string& path) {
  DowngradeToSchema3(path);
  RawDb raw(path);
  raw.Exec(
      "DROP TABLE endpoint_pauses; DROP INDEX jobs_waiting; DROP INDEX jobs_retry_due; "
      "ALTER TABLE jobs DROP COLUMN wait_reason; ALTER TABLE jobs DROP COLUMN waits_behind; "
      "CREATE INDEX jobs_active_by_ordering_key ON jobs (tenant, ordering_key) "
      "WHERE ordering_key <> '' AND state < 5; "
      "PRAGMA user_version = 2");
}

// The names of every table and index, as the file's schema lists them.
std::string SchemaObjects(const std::string& path) {
  RawDb raw(path);
  return raw.Query(
      "SELECT group_concat(type || ' ' || name, ', ') FROM (SELECT type, name FROM sqlite_schema "
      "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name)");
}

// Opens the older file at `path`, which upgrades it; expects it then at this build's version,
// with what a new file (made at `fresh`) has.
std::unique_ptr<SqliteStore> OpenUpgraded(const std::string& path, const std::string& fresh) {
  std::unique_ptr<SqliteStore> store = OpenOrDie(Options(path));
  if (store == nullptr) return nullptr;
  {
    RawDb raw(path);
    EXPECT_EQ(raw.Query("PRAGMA user_version"), "5");
  }
  { std::unique_ptr<SqliteStore> made = OpenOrDie(Options(fresh)); }
  EXPECT_EQ(SchemaObjects(path), SchemaObjects(fresh));
  return store;
}

TEST(SqliteStore, UpgradingFromSchema2ReadsOldJobsWithoutAWaitAndTakesNewWrites) {
  TempDb db, fresh;
  JobId queued = 0, waiting = 0, running = 0;
  {
    std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
    ASSERT_NE(store, nullptr);
    queued = SubmitOne(*store, Job(Spec("t", "queued")), kT0).job_id;
    waiting = SubmitOne(*store, Job(Spec("t", "waiting")), kT0).job_id;
    running = SubmitOne(*store, Job(Spec("t", "running")), kT0).job_id;
    Transition retry = To(waiting, JobState::kWaitingRetry);
    retry.attempt_count = 1;
    retry.next_attempt_at = kT0 + absl::Minutes(1);
    ASSERT_TRUE(ApplyAndWait(*store, {retry, To(running, JobState::kRunning)}, kT0).ok());
  }
  DowngradeToSchema2(db.path());
  {
    RawDb raw(db.path());
    ASSERT_EQ(raw.Query("SELECT COUNT(*) FROM pragma_table_info('jobs') WHERE name LIKE 'wait%'"),
              "0");
  }
  std::unique_ptr<SqliteStore> store = OpenUpgraded(db.path(), fresh.path());
  ASSERT_NE(store, nullptr);

  for (const JobId id : {queued, waiting, running}) {
    absl::StatusOr<JobRecord> got = store->Get("t", id, false);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->wait_reason, WaitReason::kNone);
    EXPECT_EQ(got->waits_behind, 0);
  }
  absl::StatusOr<std::vector<ActiveJob>> active = store->Recover(kT0 + absl::Minutes(2));
  ASSERT_TRUE(active.ok()) << active.status();
  ASSERT_EQ(active->size(), 3u);
  for (const ActiveJob& job : *active) EXPECT_EQ(job.wait_reason, WaitReason::kNone);

  // Writes of schema 3 work on the upgraded file.
  Transition retry_after = To(waiting, JobState::kWaitingRetry);
  retry_after.attempt_count = 2;
  retry_after.next_attempt_at = kT0 + absl::Hours(1);
  retry_after.wait_reason = WaitReason::kRetryAfter;
  ASSERT_TRUE(ApplyAndWait(*store, {retry_after}, kT0 + absl::Minutes(2)).ok());
  ListFilter filter;
  filter.wait_reason = WaitReason::kRetryAfter;
  filter.due_after = kT0 + absl::Minutes(2);
  const std::vector<JobRecord> listed = ListAll(*store, "t", filter);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].id, waiting);
  EXPECT_EQ(listed[0].wait_reason, WaitReason::kRetryAfter);
  EndpointPause pause;
  pause.endpoint = "canvas";
  pause.paused_at = kT0;
  ASSERT_TRUE(conformance::SaveEndpointPauseAndWait(*store, pause).ok());
  EXPECT_EQ(store->LoadEndpointPauses().value_or(std::vector<EndpointPause>{}).size(), 1u);
  EXPECT_TRUE(SubmitOne(*store, Job(Spec("t", "new")), kT0).status.ok());
}

TEST(SqliteStore, UpgradingFromSchema3ReadsOldJobsWithNoThrottledAttemptsAndKeepsNewCounts) {
  TempDb db, fresh;
  JobId waiting = 0;
  {
    std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
    ASSERT_NE(store, nullptr);
    waiting = SubmitOne(*store, Job(Spec("t", "waiting")), kT0).job_id;
    Transition retry = To(waiting, JobState::kWaitingRetry);
    retry.attempt_count = 3;
    retry.next_attempt_at = kT0 + absl::Minutes(1);
    retry.wait_reason = WaitReason::kRetryAfter;
    ASSERT_TRUE(ApplyAndWait(*store, {retry}, kT0).ok());
  }
  DowngradeToSchema3(db.path());
  std::unique_ptr<SqliteStore> store = OpenUpgraded(db.path(), fresh.path());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<JobRecord> got = store->Get("t", waiting, false);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->attempt_count, 3);
  EXPECT_EQ(got->throttled_count, 0);
  EXPECT_EQ(got->wait_reason, WaitReason::kRetryAfter);

  Transition throttled = To(waiting, JobState::kWaitingRetry);
  throttled.attempt_count = 4;
  throttled.throttled_count = 2;
  throttled.next_attempt_at = kT0 + absl::Minutes(3);
  ASSERT_TRUE(ApplyAndWait(*store, {throttled}, kT0 + absl::Minutes(2)).ok());
  got = store->Get("t", waiting, false);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->throttled_count, 2);
  absl::StatusOr<std::vector<ActiveJob>> active = store->Recover(kT0 + absl::Minutes(2));
  ASSERT_TRUE(active.ok()) << active.status();
  ASSERT_EQ(active->size(), 1u);
  EXPECT_EQ((*active)[0].throttled_count, 2);
}

TEST(SqliteStore, UpgradingFromSchema4ReadsOldJobsAtTheirPolicysPriorityAndKeepsBudgetUsage) {
  TempDb db, fresh;
  JobId old = 0;
  {
    std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
    ASSERT_NE(store, nullptr);
    common::JobSpec spec = Spec("t", "old");
    spec.labels = {{"district", "d1"}};
    old = SubmitOne(*store, Job(spec), kT0).job_id;
  }
  DowngradeToSchema4(db.path());
  std::unique_ptr<SqliteStore> store = OpenUpgraded(db.path(), fresh.path());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<JobRecord> got = store->Get("t", old, false);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->spec.priority, common::Priority::kUnspecified);
  absl::StatusOr<std::vector<ActiveJob>> active = store->Recover(kT0 + absl::Minutes(1));
  ASSERT_TRUE(active.ok()) << active.status();
  ASSERT_EQ(active->size(), 1u);
  EXPECT_EQ((*active)[0].labels.at("district"), "d1");

  common::JobSpec urgent = Spec("t", "new");
  urgent.priority = common::Priority::kHigh;
  const JobId id = SubmitOne(*store, Job(urgent), kT0).job_id;
  EXPECT_EQ(store->Get("t", id, false).value_or(JobRecord{}).spec.priority,
            common::Priority::kHigh);
  PendingWrite write;
  store->SaveBudgetUsage({BudgetUsage{"blackboard", "", kT0, 42}}, write.Callback());
  ASSERT_TRUE(write.Wait().ok());
  EXPECT_EQ(store->LoadBudgetUsage().value_or(std::vector<BudgetUsage>{}).size(), 1u);
}

// A file at `path` holding one job ("t", "k"), closed again; its id (0 on failure).
JobId FileWithOneJob(const std::string& path) {
  std::unique_ptr<SqliteStore> store = OpenOrDie(Options(path));
  if (store == nullptr) return 0;
  return SubmitOne(*store, Job(Spec("t", "k")), kT0).job_id;
}

TEST(SqliteStore, AStoredPriorityThisBuildDoesNotKnowReadsAsThePolicys) {
  TempDb db;
  const JobId id = FileWithOneJob(db.path());
  ASSERT_NE(id, 0);
  {
    RawDb raw(db.path());
    raw.Exec("UPDATE jobs SET priority = 99");
  }
  std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Get("t", id, false).value_or(JobRecord{}).spec.priority,
            common::Priority::kUnspecified);
  absl::StatusOr<std::vector<ActiveJob>> active = store->Recover(kT0);
  ASSERT_TRUE(active.ok()) << active.status();
  EXPECT_EQ((*active)[0].priority, common::Priority::kUnspecified);
}

TEST(SqliteStore, UpgradingFromSchema1GivesEndedJobsTheLegacyRetention) {
  TempDb db;
  JobId done = 0, dead = 0;
  const absl::Time ended = kT0 + absl::Minutes(1);
  {
    std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
    ASSERT_NE(store, nullptr);
    done = SubmitOne(*store, Job(Spec("t", "done")), kT0).job_id;
    dead = SubmitOne(*store, Job(Spec("t", "dead")), kT0).job_id;
    ASSERT_TRUE(
        ApplyAndWait(*store, {To(done, JobState::kSucceeded), To(dead, JobState::kFailed)}, ended)
            .ok());
  }
  DowngradeToSchema2(db.path());
  {
    // Back to what schema 1 looked like.
    RawDb raw(db.path());
    raw.Exec(
        "DROP INDEX jobs_by_purge; DROP INDEX jobs_dead_letters; "
        "ALTER TABLE jobs DROP COLUMN purge_us; PRAGMA user_version = 1");
  }
  SqliteOptions options = Options(db.path());
  options.legacy_retention = absl::Hours(2);
  options.legacy_dead_letter_retention = absl::Hours(5);
  std::unique_ptr<SqliteStore> store = OpenOrDie(options);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->PurgeEndedJobs(ended + absl::Hours(2), 10).value_or(-1), 0);
  EXPECT_EQ(store->PurgeEndedJobs(ended + absl::Hours(2) + absl::Seconds(1), 10).value_or(-1), 1);
  EXPECT_FALSE(store->Get("t", done, false).ok());
  EXPECT_TRUE(store->Get("t", dead, false).ok());
  EXPECT_EQ(store->PurgeEndedJobs(ended + absl::Hours(5) + absl::Seconds(1), 10).value_or(-1), 1);
  RawDb raw(db.path());
  EXPECT_EQ(raw.Query("PRAGMA user_version"), "5");
}

// --- Wait filters: what they walk ---

// Whether a plan reads a whole table or index (a walk of a merge's subquery is not one).
bool ScansATable(const std::string& plan) {
  for (absl::string_view line : absl::StrSplit(plan, '\n')) {
    if (absl::StartsWith(line, "SCAN ") && !absl::StartsWith(line, "SCAN (subquery")) return true;
  }
  return false;
}

// Each wait filter walks a small index (jobs that wait, or WAITING_RETRY jobs by due time)
// rather than the tenant's jobs or all its retries; the filters that are not selective are terms
// on the rows walked.
TEST(SqliteStore, WaitFiltersWalkTheirSmallIndexesNotTheTenantsJobs) {
  TempDb db;
  std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
  ASSERT_NE(store, nullptr);
  const std::string token = [&] {
    for (int i = 0; i < 3; ++i) SubmitOne(*store, Job(Spec("t", absl::StrCat("k", i))), kT0);
    return store->List("t", {}, 1, "").value_or(ListPage{}).next_page_token;
  }();
  ASSERT_FALSE(token.empty());
  auto plan = [&](const ListFilter& filter, const std::string& page_token = "") {
    absl::StatusOr<std::string> text = store->ExplainList("t", filter, 50, page_token);
    EXPECT_TRUE(text.ok()) << text.status();
    std::cout << "[ plan     ] " << absl::StrReplaceAll(text.value_or(""), {{"\n", " | "}}) << "\n";
    return text.value_or("");
  };

  ListFilter own;
  own.wait_reason = WaitReason::kRetryAfter;
  own.due_after = kT0;
  EXPECT_THAT(plan(own), HasSubstr("USING INDEX jobs_waiting (tenant=? AND wait_reason=?)"));
  EXPECT_THAT(plan(own, token),
              HasSubstr("USING INDEX jobs_waiting (tenant=? AND wait_reason=? AND id<?)"));
  EXPECT_THAT(plan(own), Not(HasSubstr("TEMP B-TREE")));  // already newest first
  EXPECT_FALSE(ScansATable(plan(own)));

  ListFilter ready;
  ready.due_by = kT0;
  ready.endpoints = {"canvas", "moodle", "d2l"};
  ready.retries_only = true;
  const std::string ready_plan = plan(ready, token);
  EXPECT_THAT(ready_plan, HasSubstr("USING INDEX jobs_retry_due (tenant=? AND next_attempt_us<?)"));
  EXPECT_THAT(ready_plan,
              HasSubstr("USING INDEX jobs_retry_due (tenant=? AND next_attempt_us=?"));  // NULL
  EXPECT_THAT(ready_plan, HasSubstr("USING INDEX jobs_by_tenant_state (tenant=? AND state=? AND "
                                    "id<?)"));  // QUEUED
  EXPECT_FALSE(ScansATable(ready_plan));

  // Still waiting (most WAITING_RETRY jobs are): their state's walk, due time as a term.
  ListFilter waiting;
  waiting.due_after = kT0;
  EXPECT_THAT(plan(waiting), HasSubstr("USING INDEX jobs_by_tenant_state (tenant=? AND state=?)"));
  EXPECT_THAT(plan(waiting), Not(HasSubstr("jobs_retry_due")));
  EXPECT_FALSE(ScansATable(plan(waiting)));

  // An own reason of none is most jobs: the tenant's walk.
  ListFilter no_wait;
  no_wait.wait_reason = WaitReason::kNone;
  EXPECT_THAT(plan(no_wait), HasSubstr("USING INDEX jobs_by_tenant (tenant=?)"));

  // A label or an ordering key keeps its walk (or the planner takes the wait index: both are
  // small), the wait filters as terms.
  ListFilter keyed = own;
  keyed.ordering_key = "course-1";
  EXPECT_FALSE(ScansATable(plan(keyed)));
  ListFilter keyed_ready = ready;
  keyed_ready.ordering_key = "course-1";
  EXPECT_THAT(plan(keyed_ready),
              HasSubstr("USING INDEX jobs_by_ordering_key (tenant=? AND ordering_key=?)"));
  // Listing a key's jobs by state (the index of the store's old BLOCKED decision is gone).
  ListFilter key_blocked;
  key_blocked.ordering_key = "course-1";
  key_blocked.states = {JobState::kBlocked, JobState::kQueued};
  EXPECT_THAT(plan(key_blocked, token),
              HasSubstr("USING INDEX jobs_by_ordering_key (tenant=? AND ordering_key=? AND id<?)"));
  ListFilter labelled = ready;
  labelled.label_key = "course";
  labelled.label_value = "7";
  EXPECT_THAT(plan(labelled), HasSubstr("job_labels_by_value (key=? AND value=?)"));
  EXPECT_FALSE(ScansATable(plan(labelled)));

  // A filter that can match nothing asks SQLite nothing.
  ListFilter nothing = ready;
  nothing.states = {JobState::kRunning};
  EXPECT_EQ(plan(nothing), "");
}

// --- Stored data this build did not write ---

// Whatever a pause row holds (an endpoint no longer configured, times far out of any sane range,
// an end before its start, a time stored as text), it is returned as it is, never a crash: the
// engine decides what to make of it.
TEST(SqliteStore, StoredPausesAreReturnedAsTheyAreWhateverTheyHold) {
  TempDb db;
  { std::unique_ptr<SqliteStore> made = OpenOrDie(Options(db.path())); }
  {
    RawDb raw(db.path());
    raw.Exec(
        "INSERT INTO endpoint_pauses VALUES ('gone', -9223372036854775807, 'old', "
        "9223372036854775806); "
        "INSERT INTO endpoint_pauses VALUES ('ended-before-it-began', 10, '', 20); "
        "INSERT INTO endpoint_pauses VALUES ('forever', 9223372036854775807, 'x', "
        "-9223372036854775808); "
        "INSERT INTO endpoint_pauses VALUES ('text', 'soon', 'r', 'yesterday'); "
        "INSERT INTO endpoint_pauses VALUES ('', NULL, 'nameless', 0)");
  }
  std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
  ASSERT_NE(store, nullptr);
  absl::StatusOr<std::vector<EndpointPause>> pauses = store->LoadEndpointPauses();
  ASSERT_TRUE(pauses.ok()) << pauses.status();
  ASSERT_EQ(pauses->size(), 5u);
  const std::vector<EndpointPause>& p = *pauses;  // by endpoint name
  EXPECT_EQ(p[0].endpoint, "");
  EXPECT_EQ(p[0].until, absl::InfiniteFuture());
  EXPECT_EQ(p[1].endpoint, "ended-before-it-began");
  EXPECT_EQ(p[1].until, absl::FromUnixMicros(10));
  EXPECT_EQ(p[1].paused_at, absl::FromUnixMicros(20));
  EXPECT_EQ(p[2].endpoint, "forever");
  EXPECT_EQ(p[2].until, absl::InfiniteFuture());
  EXPECT_EQ(p[2].paused_at, absl::InfinitePast());
  EXPECT_EQ(p[3].endpoint, "gone");
  EXPECT_EQ(p[3].until, absl::FromUnixMicros(-9223372036854775807));
  EXPECT_EQ(p[3].paused_at, absl::FromUnixMicros(9223372036854775806));
  EXPECT_EQ(p[3].reason, "old");
  EXPECT_EQ(p[4].endpoint, "text");  // text reads as 0
  EXPECT_EQ(p[4].until, absl::UnixEpoch());
  // And the store still writes over them.
  ASSERT_TRUE(conformance::DeleteEndpointPauseAndWait(*store, "gone").ok());
  EXPECT_EQ(store->LoadEndpointPauses().value_or(std::vector<EndpointPause>{}).size(), 4u);
}

// A wait reason this build does not know (a damaged row) reads as none; the job stays readable.
TEST(SqliteStore, AnUnknownStoredWaitReasonReadsAsNone) {
  TempDb db;
  const JobId id = FileWithOneJob(db.path());
  ASSERT_NE(id, 0);
  {
    RawDb raw(db.path());
    raw.Exec(
        absl::StrCat("UPDATE jobs SET state = 2, wait_reason = 99, waits_behind = -5 "
                     "WHERE id = ",
                     id));
  }
  std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
  ASSERT_NE(store, nullptr);
  absl::StatusOr<JobRecord> got = store->Get("t", id, false);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->wait_reason, WaitReason::kNone);
  EXPECT_EQ(got->waits_behind, -5);
  EXPECT_EQ(ListAll(*store, "t").size(), 1u);
  absl::StatusOr<std::vector<ActiveJob>> active = store->Recover(kT0);
  ASSERT_TRUE(active.ok()) << active.status();
  ASSERT_EQ(active->size(), 1u);
  EXPECT_EQ(active->front().wait_reason, WaitReason::kNone);
}

// --- Damaged files ---

TEST(SqliteStore, AnEmptyFileWhereAStoreExistedIsRefused) {
  TempDb db;
  {
    std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(SubmitOne(*store, Job(Spec("t", "k")), kT0).status.ok());
  }
  std::filesystem::resize_file(db.path(), 0);
  const absl::Status status = SqliteStore::Open(Options(db.path())).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("is empty (0 bytes)"));
  EXPECT_THAT(std::string(status.message()), HasSubstr(db.path() + ".lock"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("Restore it from a backup"));
  EXPECT_EQ(FileSize(db.path()), 0);  // nothing was written over it

  // The documented way to start empty on purpose.
  std::filesystem::remove(db.path() + ".lock");
  EXPECT_NE(OpenOrDie(Options(db.path())), nullptr);
}

TEST(SqliteStore, AnEmptyFileThatNeverHeldAStoreOpensAsANewStore) {
  TempDb db;
  { std::ofstream touch(db.path()); }
  std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(SubmitOne(*store, Job(Spec("t", "k")), kT0).status.ok());
}

// Overwrites the root page of index `index` with zeros, as a disk or a careless copy might.
void ZeroIndexRoot(const std::string& path, const std::string& index) {
  int64_t page = 0, page_size = 0;
  {
    RawDb raw(path);
    page = std::stoll(raw.Query("SELECT rootpage FROM sqlite_schema WHERE name = '" + index + "'"));
    page_size = std::stoll(raw.Query("PRAGMA page_size"));
  }
  ASSERT_GT(page, 1);
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good());
  f.seekp((page - 1) * page_size);
  const std::string zeros(static_cast<size_t>(page_size), '\0');
  f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  ASSERT_TRUE(f.good());
}

// A store of 500 ended jobs whose jobs_by_tenant index has a zeroed root page.
void WriteStoreWithADamagedIndex(const std::string& path) {
  {
    std::unique_ptr<SqliteStore> store = OpenOrDie(Options(path));
    ASSERT_NE(store, nullptr);
    EndedJobs(*store, 500, 16, kT0 + absl::Hours(1));
  }
  ZeroIndexRoot(path, "jobs_by_tenant");
}

TEST(SqliteStore, AZeroedIndexPageIsRefusedAtOpenByQuickCheck) {
  TempDb db;
  WriteStoreWithADamagedIndex(db.path());
  const absl::Status status = SqliteStore::Open(Options(db.path())).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("failed PRAGMA quick_check"));
  EXPECT_THAT(std::string(status.message()), HasSubstr(db.path()));
  EXPECT_THAT(std::string(status.message()), HasSubstr("restore it from a backup"));
}

TEST(SqliteStore, WithoutQuickCheckADamagedIndexFailsSubmitsWithoutSqlInTheMessage) {
  TempDb db;
  WriteStoreWithADamagedIndex(db.path());
  SqliteOptions options = Options(db.path());
  options.quick_check = false;
  ErrorLog log;
  log.Attach(options);
  std::unique_ptr<SqliteStore> store = OpenOrDie(options);
  ASSERT_NE(store, nullptr);
  const SubmitResult r = SubmitOne(*store, Job(Spec("t", "after-damage")), kT0);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDataLoss) << r.status;
  EXPECT_EQ(r.status.message(),
            "store: the database file is damaged; the operator must restore it (see the server "
            "log)");
  const std::vector<std::string> logged = log.Messages();
  ASSERT_FALSE(logged.empty());
  EXPECT_THAT(logged.front(), HasSubstr("malformed"));
}

// --- A full store ---

TEST(SqliteStore, AFullDatabaseFailsSubmitsAsUnavailableWithACleanMessage) {
  TempDb db;
  SqliteOptions options = Options(db.path());
  options.max_file_bytes = 256 * 1024;
  std::unique_ptr<SqliteStore> store = OpenOrDie(options);
  ASSERT_NE(store, nullptr);
  absl::Status failed;
  int accepted = 0;
  for (int i = 0; i < 200 && failed.ok(); ++i) {
    common::JobSpec spec = Spec("t", absl::StrCat("fill-", i));
    spec.body = std::string(8192, 'b');
    const SubmitResult r = SubmitOne(*store, Job(spec), kT0);
    if (r.status.ok()) {
      ++accepted;
    } else {
      failed = r.status;
    }
  }
  EXPECT_GT(accepted, 0);
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;
  EXPECT_EQ(failed.message(), "store: cannot write, the disk or database is full; retry later");
  // What was acknowledged is still there, and a small write that fits still succeeds.
  EXPECT_EQ(ListAll(*store, "t").size(), static_cast<size_t>(accepted));
}

// Submits stop at 7/8 of store.max_file_bytes: the work already accepted keeps the last eighth
// for its attempts and results, so a full store stops intake before it stops the engine (a
// refused transition is fatal).
TEST(SqliteStore, AFullStoreStillTakesTheTransitionsOfTheJobsItAccepted) {
  TempDb db;
  SqliteOptions options = Options(db.path());
  options.max_file_bytes = 256 * 1024;
  std::unique_ptr<SqliteStore> store = OpenOrDie(options);
  ASSERT_NE(store, nullptr);
  std::vector<JobId> ids;
  absl::Status refused;
  for (int i = 0; i < 400 && refused.ok(); ++i) {
    common::JobSpec spec = Spec("t", absl::StrCat("fill-", i));
    spec.body = std::string(1000, 'b');
    const SubmitResult r = SubmitOne(*store, Job(spec), kT0);
    if (r.status.ok()) {
      ids.push_back(r.job_id);
    } else {
      refused = r.status;
    }
  }
  ASSERT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  ASSERT_GT(ids.size(), 20u);
  // Every accepted job still gets its attempt and a terminal result with a small body.
  for (size_t i = 0; i < ids.size(); ++i) {
    Transition done;
    done.job_id = ids[i];
    done.state = JobState::kSucceeded;
    done.attempt_count = 1;
    done.last_http_status = 200;
    done.last_response_body = "{\"ok\":true}";
    common::AttemptRecord attempt;
    attempt.number = 1;
    attempt.started_at = kT0;
    attempt.http_status = 200;
    attempt.classification = "success";
    attempt.decision = "2xx: success";
    done.attempt = attempt;
    const absl::Status applied = ApplyAndWait(*store, {done}, kT0 + absl::Seconds(1));
    ASSERT_TRUE(applied.ok()) << "job " << i << " of " << ids.size() << ": " << applied;
  }
  // Intake is still refused, and the file kept to its cap.
  common::JobSpec late = Spec("t", "late");
  late.body = std::string(1000, 'b');
  EXPECT_EQ(SubmitOne(*store, Job(late), kT0).status.code(), absl::StatusCode::kUnavailable);
  EXPECT_LE(std::filesystem::file_size(db.path()), 256u * 1024u);
}

TEST(SqliteStore, ASubmitThatFindsTheStoreFullDoesNotFailATransitionInItsTransaction) {
  TempDb db;
  SqliteOptions options = Options(db.path());
  options.max_file_bytes = 256 * 1024;
  std::unique_ptr<SqliteStore> store = OpenOrDie(options);
  ASSERT_NE(store, nullptr);
  const SubmitResult first = SubmitOne(*store, Job(Spec("t", "first")), kT0);
  ASSERT_TRUE(first.status.ok()) << first.status;
  auto big = [](absl::string_view key) {
    common::JobSpec spec = Spec("t", key);
    spec.body = std::string(512 * 1024, 'b');  // more than the whole cap
    return Job(spec);
  };
  // Queued from a callback, the two share one transaction (see the test above).
  struct Batch {
    std::optional<PendingSubmit> too_big;
    std::optional<PendingApply> apply;
    absl::Notification enqueued;
  };
  auto batch = std::make_shared<Batch>();
  SqliteStore* s = store.get();
  const JobId id = first.job_id;
  store->Submit({Job(Spec("t", "pin"))}, kT0, [=](std::vector<SubmitResult>) {
    batch->too_big.emplace(*s, std::vector<NewJob>{big("big")}, kT0);
    Transition running;
    running.job_id = id;
    running.state = JobState::kRunning;
    running.attempt_count = 1;
    batch->apply.emplace(*s, std::vector<Transition>{running}, kT0);
    batch->enqueued.Notify();
  });
  ASSERT_TRUE(batch->enqueued.WaitForNotificationWithTimeout(kCallbackDeadline));
  const std::vector<SubmitResult> refused = batch->too_big->Wait();
  const absl::Status applied = batch->apply->Wait();
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].status.code(), absl::StatusCode::kUnavailable) << refused[0].status;
  EXPECT_EQ(refused[0].status.message(),
            "store: cannot write, the disk or database is full; retry later");
  EXPECT_TRUE(applied.ok()) << applied;
  absl::StatusOr<common::JobRecord> got = store->Get("t", id, false);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state, JobState::kRunning);
  EXPECT_EQ(got->attempt_count, 1);
  EXPECT_EQ(ListAll(*store, "t").size(), 2u);  // first and pin; the big one left nothing
}

TEST(SqliteStore, ReopenAfterCloseKeepsDataAndNewIdsKeepGrowing) {
  TempDb db;
  std::vector<JobId> ids;
  const NewJob first = Job(Spec("t", "k0"));
  {
    std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 3; ++i) {
      const SubmitResult r = SubmitOne(*store, Job(Spec("t", absl::StrCat("k", i))), kT0);
      ASSERT_TRUE(r.status.ok()) << r.status;
      ids.push_back(r.job_id);
    }
    Transition done;
    done.job_id = ids[2];
    done.state = JobState::kSucceeded;
    done.last_response_body = "ok";
    ASSERT_TRUE(ApplyAndWait(*store, {done}, kT0 + absl::Seconds(1)).ok());
  }
  std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(ListAll(*store, "t").size(), 3u);
  absl::StatusOr<common::JobRecord> done = store->Get("t", ids[2], true);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state, JobState::kSucceeded);
  EXPECT_EQ(done->last_response_body, "ok");
  const SubmitResult again = SubmitOne(*store, first, kT0 + absl::Minutes(1));
  EXPECT_TRUE(again.deduplicated);
  EXPECT_EQ(again.job_id, ids[0]);
  const SubmitResult fresh = SubmitOne(*store, Job(Spec("t", "k-new")), kT0 + absl::Minutes(1));
  ASSERT_TRUE(fresh.status.ok()) << fresh.status;
  EXPECT_GT(fresh.job_id, ids[2]);
}

TEST(SqliteStore, AFailedTransactionFailsItsSubmitsAndCommitsItsTransitionsWithoutThem) {
  TempDb db;
  SqliteOptions options = Options(db.path());
  ErrorLog log;
  log.Attach(options);
  std::unique_ptr<SqliteStore> store = OpenOrDie(options);
  ASSERT_NE(store, nullptr);
  const SubmitResult existing = SubmitOne(*store, Job(Spec("t", "existing")), kT0);
  ASSERT_TRUE(existing.status.ok()) << existing.status;
  RawDb raw(db.path());
  raw.Exec(
      "CREATE TRIGGER poison BEFORE INSERT ON jobs WHEN NEW.path = '/poison' "
      "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END");
  auto at = [](absl::string_view key, absl::string_view path) {
    common::JobSpec spec = Spec("t", key);
    spec.path = std::string(path);
    return Job(spec);
  };

  // Calls enqueued by a callback are all queued before the writer takes its next batch, so
  // these three share one transaction.
  struct Batch {
    std::optional<PendingSubmit> good;
    std::optional<PendingSubmit> poisoned;
    std::optional<PendingApply> apply;
    absl::Notification enqueued;
  };
  auto batch = std::make_shared<Batch>();
  SqliteStore* s = store.get();
  const JobId existing_id = existing.job_id;
  store->Submit({at("pin", "/pin")}, kT0, [=](std::vector<SubmitResult>) {
    batch->good.emplace(*s, std::vector<NewJob>{at("a", "/good-a")}, kT0);
    batch->poisoned.emplace(*s, std::vector<NewJob>{at("b", "/good-b"), at("c", "/poison")}, kT0);
    Transition running;
    running.job_id = existing_id;
    running.state = JobState::kRunning;
    batch->apply.emplace(*s, std::vector<Transition>{running}, kT0);
    batch->enqueued.Notify();
  });
  ASSERT_TRUE(batch->enqueued.WaitForNotificationWithTimeout(kCallbackDeadline));

  const std::vector<SubmitResult> good = batch->good->Wait();
  const std::vector<SubmitResult> poisoned = batch->poisoned->Wait();
  const absl::Status applied = batch->apply->Wait();
  ASSERT_EQ(good.size(), 1u);
  ASSERT_EQ(poisoned.size(), 2u);
  const absl::Status error = poisoned[1].status;
  EXPECT_FALSE(error.ok());
  // The caller sees a clean message; the operator's log gets SQLite's words and the statement.
  EXPECT_EQ(error.message(), "store: internal error (see the server log)");
  {
    const std::vector<std::string> logged = log.Messages();
    ASSERT_EQ(logged.size(), 1u);
    EXPECT_THAT(logged.front(), HasSubstr("poisoned row"));
    EXPECT_THAT(logged.front(), HasSubstr("INSERT INTO jobs"));
  }
  EXPECT_EQ(poisoned[0].status, error);
  EXPECT_EQ(good[0].status, error);
  // The transition ran again in a transaction of its own, without the submits: a bad submit
  // never fails the engine's writes (which would stop the process).
  EXPECT_TRUE(applied.ok()) << applied;

  EXPECT_EQ(raw.Query("SELECT count(*) FROM jobs WHERE path IN ('/good-a', '/good-b', "
                      "'/poison')"),
            "0");
  EXPECT_EQ(raw.Query("SELECT count(*) FROM idempotency WHERE idem_key IN ('a', 'b', 'c')"), "0");
  absl::StatusOr<common::JobRecord> moved = store->Get("t", existing.job_id, false);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->state, JobState::kRunning);
  const absl::Status flushed = store->Flush();
  EXPECT_EQ(flushed.code(), error.code());
  EXPECT_THAT(std::string(flushed.message()), HasSubstr("poisoned row"));
  EXPECT_EQ(store->GetStats().failed_batches, 1);

  // Earlier commits are intact and the store goes on.
  raw.Exec("DROP TRIGGER poison");
  EXPECT_TRUE(SubmitOne(*store, at("pin", "/pin"), kT0).deduplicated);
  const SubmitResult retried = SubmitOne(*store, at("a", "/good-a"), kT0);
  EXPECT_TRUE(retried.status.ok()) << retried.status;
  EXPECT_FALSE(retried.deduplicated);
  EXPECT_TRUE(store->Flush().ok());
}

TEST(SqliteStore, ABusyDatabaseFailsTheBatchAsUnavailableAndFlushReportsItOnce) {
  TempDb db;
  SqliteOptions options = Options(db.path());
  options.busy_timeout = absl::Milliseconds(20);
  std::unique_ptr<SqliteStore> store = OpenOrDie(options);
  ASSERT_NE(store, nullptr);
  RawDb raw(db.path());
  raw.Exec("BEGIN IMMEDIATE");  // another process holds the write lock
  const SubmitResult blocked = SubmitOne(*store, Job(Spec("t", "k1")), kT0);
  EXPECT_EQ(blocked.status.code(), absl::StatusCode::kUnavailable) << blocked.status;
  raw.Exec("COMMIT");

  EXPECT_EQ(store->Flush().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(store->Flush().ok());
  const SubmitResult later = SubmitOne(*store, Job(Spec("t", "k1")), kT0);
  EXPECT_TRUE(later.status.ok()) << later.status;
  EXPECT_FALSE(later.deduplicated);
}

TEST(SqliteStore, AnEmptyIdempotencyKeyNeverDeduplicates) {
  TempDb db;
  std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
  ASSERT_NE(store, nullptr);
  const NewJob job = Job(Spec("t", ""));
  const SubmitResult a = SubmitOne(*store, job, kT0);
  const SubmitResult b = SubmitOne(*store, job, kT0);
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  EXPECT_FALSE(b.deduplicated);
  EXPECT_NE(a.job_id, b.job_id);
}

TEST(SqliteStore, CallbacksRunInEnqueueOrderWithinSubmitsAndWithinTransitions) {
  TempDb db;
  std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
  ASSERT_NE(store, nullptr);
  struct Order {
    absl::Mutex mu;
    std::vector<int> seen;
  };
  auto order = std::make_shared<Order>();
  constexpr int kCalls = 500;
  for (int i = 0; i < kCalls; ++i) {
    if (i % 2 == 0) {
      store->Submit({Job(Spec("t", absl::StrCat("k", i)))}, kT0,
                    [order, i](std::vector<SubmitResult>) {
                      absl::MutexLock lock(&order->mu);
                      order->seen.push_back(i);
                    });
    } else {
      Transition unknown;
      unknown.job_id = 1'000'000 + i;
      store->Apply({unknown}, kT0, [order, i](absl::Status) {
        absl::MutexLock lock(&order->mu);
        order->seen.push_back(i);
      });
    }
  }
  ASSERT_TRUE(store->Flush().ok());
  absl::MutexLock lock(&order->mu);
  ASSERT_EQ(order->seen.size(), static_cast<size_t>(kCalls));
  // Transitions may overtake submits (they have their own lane); each kind keeps its order.
  int last[2] = {-1, -1};
  for (int i : order->seen) {
    EXPECT_GT(i, last[i % 2]) << "out of order within its kind";
    last[i % 2] = i;
  }
}

// CPU time of the whole process (every thread) so far.
absl::Duration ProcessCpu() {
  rusage usage{};
  EXPECT_EQ(getrusage(RUSAGE_SELF, &usage), 0);
  return absl::DurationFromTimeval(usage.ru_utime) + absl::DurationFromTimeval(usage.ru_stime);
}

// Counts callbacks; notifies when all came.
struct Tally {
  explicit Tally(int n) : remaining(n) {}
  void Done(bool ok) {
    if (!ok) failed.fetch_add(1);
    if (remaining.fetch_sub(1) == 1) done.Notify();
  }
  std::atomic<int> remaining;
  std::atomic<int> failed{0};
  absl::Notification done;
};

// Measures end-to-end throughput and CPU with one job per call (as SubmitSync does) from
// several threads, then each job's RUNNING and SUCCEEDED transitions one call each (the worst
// case for the engine). Reports the figures; asserts only correctness and group commit.
TEST(SqliteStore, GroupCommittedThroughputAndCpuPerJob) {
  TempDb db;
  std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
  ASSERT_NE(store, nullptr);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  constexpr int kTotal = kThreads * kPerThread;
  std::vector<std::vector<NewJob>> jobs(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      common::JobSpec spec = Spec("t", absl::StrCat("thread-", t, "-job-", i));
      spec.labels = {{"course", absl::StrCat(i % 50)}};
      if (i % 4 == 0) spec.ordering_key = absl::StrCat("course-", i % 50);
      jobs[t].push_back(Job(spec));
    }
  }
  std::vector<std::vector<JobId>> ids(kThreads, std::vector<JobId>(kPerThread));

  auto submitted = std::make_shared<Tally>(kTotal);
  auto wall = std::chrono::steady_clock::now();
  absl::Duration cpu = ProcessCpu();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::vector<NewJob> one;
        one.push_back(std::move(jobs[t][i]));
        JobId* id = &ids[t][i];  // each callback writes its own slot; Tally publishes them
        store->Submit(std::move(one), kT0, [submitted, id](std::vector<SubmitResult> r) {
          const bool ok = r.size() == 1 && r[0].status.ok();
          if (ok) *id = r[0].job_id;
          submitted->Done(ok);
        });
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_TRUE(submitted->done.WaitForNotificationWithTimeout(kCallbackDeadline));
  const double submit_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall).count();
  const absl::Duration submit_cpu = ProcessCpu() - cpu;
  EXPECT_EQ(submitted->failed.load(), 0);
  ASSERT_TRUE(store->Flush().ok());
  const SqliteStore::Stats after_submits = store->GetStats();
  EXPECT_LT(after_submits.commits * 4, after_submits.ops);

  auto applied = std::make_shared<Tally>(2 * kTotal);
  wall = std::chrono::steady_clock::now();
  cpu = ProcessCpu();
  for (int i = 0; i < kPerThread; ++i) {
    for (int t = 0; t < kThreads; ++t) {
      common::AttemptRecord attempt;
      attempt.number = 1;
      attempt.started_at = kT0 + absl::Seconds(1);
      attempt.decision = "in flight";
      Transition running;
      running.job_id = ids[t][i];
      running.state = JobState::kRunning;
      running.attempt_count = 1;
      running.first_attempt_at = attempt.started_at;
      running.attempt = attempt;
      Transition done = running;
      done.state = JobState::kSucceeded;
      done.attempt->http_status = 200;
      done.attempt->duration = absl::Milliseconds(30);
      done.attempt->classification = "success";
      done.attempt->decision = "done";
      done.last_http_status = 200;
      done.last_decision = "success";
      done.last_response_body = R"({"ok":true})";
      store->Apply({std::move(running)}, kT0 + absl::Seconds(1),
                   [applied](absl::Status s) { applied->Done(s.ok()); });
      store->Apply({std::move(done)}, kT0 + absl::Seconds(2),
                   [applied](absl::Status s) { applied->Done(s.ok()); });
    }
  }
  ASSERT_TRUE(applied->done.WaitForNotificationWithTimeout(kCallbackDeadline));
  const double apply_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall).count();
  const absl::Duration apply_cpu = ProcessCpu() - cpu;
  EXPECT_EQ(applied->failed.load(), 0);
  ASSERT_TRUE(store->Flush().ok());
  const SqliteStore::Stats stats = store->GetStats();

  std::cout << "[ measure  ] submit: " << kTotal << " single-job calls from " << kThreads
            << " threads in " << submit_seconds
            << " s = " << static_cast<int64_t>(kTotal / submit_seconds) << " jobs/s, "
            << absl::ToDoubleMicroseconds(submit_cpu / kTotal) << " us CPU/job, "
            << after_submits.commits << " commits\n"
            << "[ measure  ] apply: " << 2 * kTotal << " single-transition calls in "
            << apply_seconds << " s = " << static_cast<int64_t>(2 * kTotal / apply_seconds)
            << " transitions/s, " << absl::ToDoubleMicroseconds(apply_cpu / kTotal)
            << " us CPU/job (RUNNING + SUCCEEDED), " << stats.commits - after_submits.commits
            << " commits\n";
  RecordProperty("submits_per_second", static_cast<int>(kTotal / submit_seconds));
  RecordProperty("submit_cpu_us_per_job",
                 static_cast<int>(absl::ToDoubleMicroseconds(submit_cpu / kTotal)));
  RecordProperty("apply_cpu_us_per_job",
                 static_cast<int>(absl::ToDoubleMicroseconds(apply_cpu / kTotal)));

  absl::StatusOr<common::JobRecord> last = store->Get("t", ids[kThreads - 1][kPerThread - 1], true);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->state, JobState::kSucceeded);
  EXPECT_EQ(last->attempts.size(), 1u);
}

// Measures Recover over many WAITING_RETRY jobs; reports the rate, asserts correctness.
TEST(SqliteStore, RecoverReadsManyWaitingJobsQuickly) {
  TempDb db;
  std::unique_ptr<SqliteStore> store = OpenOrDie(Options(db.path()));
  ASSERT_NE(store, nullptr);
  constexpr int kJobs = 50'000;
  constexpr int kPerCall = 1000;
  std::vector<JobId> ids;
  for (int base = 0; base < kJobs; base += kPerCall) {
    std::vector<NewJob> jobs;
    for (int i = base; i < base + kPerCall; ++i) {
      jobs.push_back(Job(Spec(absl::StrCat("tenant-", i % 7), absl::StrCat("k", i))));
    }
    PendingSubmit pending(*store, std::move(jobs), kT0);
    for (const SubmitResult& r : pending.Wait()) {
      ASSERT_TRUE(r.status.ok()) << r.status;
      ids.push_back(r.job_id);
    }
  }
  ASSERT_EQ(ids.size(), static_cast<size_t>(kJobs));
  for (int base = 0; base < kJobs; base += kPerCall) {
    std::vector<Transition> waits;
    for (int i = base; i < base + kPerCall; ++i) {
      Transition t;
      t.job_id = ids[i];
      t.state = JobState::kWaitingRetry;
      t.attempt_count = 1;
      t.first_attempt_at = kT0;
      t.next_attempt_at = kT0 + absl::Seconds(i);
      waits.push_back(t);
    }
    ASSERT_TRUE(ApplyAndWait(*store, std::move(waits), kT0).ok());
  }
  // A few finished jobs that Recover must skip.
  for (int i = 0; i < 10; ++i) {
    Transition done;
    done.job_id = ids[i * 1000];
    done.state = JobState::kSucceeded;
    ASSERT_TRUE(ApplyAndWait(*store, {done}, kT0).ok());
  }

  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<ActiveJob>> active = store->Recover(kT0 + absl::Hours(1));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(active.ok()) << active.status();
  ASSERT_EQ(active->size(), static_cast<size_t>(kJobs - 10));
  EXPECT_EQ(active->back().id, ids.back());
  EXPECT_EQ(active->back().next_attempt_at, kT0 + absl::Seconds(kJobs - 1));
  EXPECT_EQ(active->back().state, JobState::kWaitingRetry);
  const double rate = active->size() / seconds;
  std::cout << "[ measure  ] Recover: " << active->size() << " WAITING_RETRY jobs in "
            << seconds * 1000 << " ms = " << static_cast<int64_t>(rate) << " jobs/s\n";
  RecordProperty("recover_jobs_per_second", static_cast<int>(rate));
}

}  // namespace
}  // namespace rebound::store
