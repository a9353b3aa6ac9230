#include "server/store/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <limits>
#include <unordered_map>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "server/common/status_macros.h"

namespace rebound::store {
namespace {

using common::AttemptRecord;
using common::FormatJobId;
using common::Headers;
using common::IsTerminal;
using common::JobSpec;

// 1: the first schema. 2: jobs.purge_us (retention of ended jobs) and the partial indexes that
// purge and count by it; new files are created with auto_vacuum=INCREMENTAL. 3: each job's own
// wait (jobs.wait_reason, waits_behind) and the operators' endpoint pauses. 4: the rate-limited
// attempts of each job's current budget (jobs.throttled_count). 5: each job's priority
// (jobs.priority) and the quota budgets have used in their current period (budget_usage).
constexpr int kSchemaVersion = 5;
constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;
constexpr int kPurgeChunk = 5000;  // keys deleted per transaction, so submits interleave
constexpr size_t kMaxIdleReaders = 8;

// The schema's partial indexes and the queries that use them say `state < 5` for "not
// terminal"; SQLite matches those terms textually, so the literal appears in both places.
static_assert(static_cast<int>(JobState::kQueued) < 5 && static_cast<int>(JobState::kBlocked) < 5 &&
                  static_cast<int>(JobState::kRunning) < 5 &&
                  static_cast<int>(JobState::kWaitingRetry) < 5,
              "non-terminal states must be < 5");
static_assert(static_cast<int>(JobState::kSucceeded) >= 5 &&
                  static_cast<int>(JobState::kFailed) >= 5 &&
                  static_cast<int>(JobState::kExhausted) >= 5 &&
                  static_cast<int>(JobState::kCancelled) >= 5,
              "terminal states must be >= 5");
constexpr int kMinState = 1;
constexpr int kMaxState = 8;

// Schema 1, as a new file starts; the migrations below bring it to kSchemaVersion, in order.
// Hot, small columns come first in `jobs`; request payloads live in job_payloads and the last
// response in job_responses, so scans (Recover, List) read dense pages. Times are microseconds
// since the Unix epoch; NULL is the field's "none" value (see EncodeTime for the infinities).
constexpr char kSchema[] = R"sql(
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant TEXT NOT NULL,
  state INTEGER NOT NULL,
  endpoint TEXT NOT NULL,
  policy TEXT NOT NULL,
  ordering_key TEXT NOT NULL,
  attempt_count INTEGER NOT NULL,
  budget_base INTEGER NOT NULL,
  next_attempt_us INTEGER,
  first_attempt_us INTEGER,
  deadline_us INTEGER,
  created_us INTEGER NOT NULL,
  updated_us INTEGER NOT NULL,
  finished_us INTEGER,
  last_http_status INTEGER NOT NULL,
  idem_key TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  query TEXT NOT NULL,
  correlation_id TEXT NOT NULL,
  last_decision TEXT NOT NULL
);
CREATE INDEX jobs_by_tenant ON jobs (tenant, id);
CREATE INDEX jobs_by_tenant_state ON jobs (tenant, state, id);
CREATE INDEX jobs_active ON jobs (id) WHERE state < 5;
CREATE INDEX jobs_by_ordering_key ON jobs (tenant, ordering_key, id) WHERE ordering_key <> '';
CREATE INDEX jobs_active_by_ordering_key ON jobs (tenant, ordering_key)
  WHERE ordering_key <> '' AND state < 5;
CREATE TABLE job_payloads (
  job_id INTEGER PRIMARY KEY,
  headers BLOB NOT NULL,
  body BLOB NOT NULL
);
CREATE TABLE job_responses (
  job_id INTEGER PRIMARY KEY,
  body BLOB NOT NULL
);
CREATE TABLE job_labels (
  job_id INTEGER NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (job_id, key)
) WITHOUT ROWID;
CREATE INDEX job_labels_by_value ON job_labels (key, value, job_id);
CREATE TABLE attempts (
  job_id INTEGER NOT NULL,
  number INTEGER NOT NULL,
  started_us INTEGER NOT NULL,
  duration_us INTEGER NOT NULL,
  http_status INTEGER NOT NULL,
  transport_error TEXT NOT NULL,
  classification TEXT NOT NULL,
  decision TEXT NOT NULL,
  next_attempt_us INTEGER,
  PRIMARY KEY (job_id, number)
) WITHOUT ROWID;
CREATE TABLE idempotency (
  tenant TEXT NOT NULL,
  idem_key TEXT NOT NULL,
  job_id INTEGER NOT NULL,
  fingerprint TEXT NOT NULL,
  expires_us INTEGER,
  PRIMARY KEY (tenant, idem_key)
) WITHOUT ROWID;
CREATE INDEX idempotency_by_expiry ON idempotency (expires_us) WHERE expires_us IS NOT NULL;
)sql";

// Schema 1 -> 2. Ended jobs get a purge time (NULL: keep); `state IN (6, 7)` is the dead-letter
// set, spelled as the partial index and CountDeadLetters/Usage spell it. The backfill binds
// the legacy retentions (?1 ended, ?2 dead letters, microseconds).
constexpr char kMigration2[] = R"sql(
ALTER TABLE jobs ADD COLUMN purge_us INTEGER;
CREATE INDEX jobs_by_purge ON jobs (purge_us) WHERE purge_us IS NOT NULL;
CREATE INDEX jobs_dead_letters ON jobs (endpoint) WHERE state IN (6, 7);
)sql";
constexpr char kBackfill2[] =
    "UPDATE jobs SET purge_us = COALESCE(finished_us, updated_us) + "
    "CASE WHEN state IN (6, 7) THEN ?2 ELSE ?1 END WHERE state >= 5";
static_assert(static_cast<int>(JobState::kFailed) == 6 &&
                  static_cast<int>(JobState::kExhausted) == 7,
              "the dead-letter partial index says state IN (6, 7)");

// Schema 2 -> 3. A job's own wait (common::WaitReason, 0 = none) and the job it waits behind,
// written with each transition; existing jobs read back with none. One row per paused endpoint
// (until_us NULL: until resumed). For ListFilter's wait filters, two small partial indexes: the
// jobs that wait for a reason of their own, and WAITING_RETRY jobs by due time (only retrying
// jobs pay for either; a job that succeeds at once never enters them). The index that served the
// store's own BLOCKED decision at submit goes: BLOCKED is the engine's, written as a transition
// (listing by ordering key keeps jobs_by_ordering_key).
constexpr char kMigration3[] = R"sql(
ALTER TABLE jobs ADD COLUMN wait_reason INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN waits_behind INTEGER NOT NULL DEFAULT 0;
CREATE TABLE endpoint_pauses (
  endpoint TEXT PRIMARY KEY,
  until_us INTEGER,
  reason TEXT NOT NULL,
  paused_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX jobs_waiting ON jobs (tenant, wait_reason, id) WHERE wait_reason <> 0;
CREATE INDEX jobs_retry_due ON jobs (tenant, next_attempt_us) WHERE state = 4;
DROP INDEX jobs_active_by_ordering_key;
)sql";
static_assert(static_cast<int>(common::WaitReason::kNone) == 0,
              "schema 3 defaults wait_reason to 0 = none");

// Schema 3 -> 4. Rate-limited attempts of the current budget, which max_throttled bounds apart
// from max_attempts. Jobs written before read back with none: their throttles were counted as
// attempts, so none is counted twice.
constexpr char kMigration4[] = R"sql(
ALTER TABLE jobs ADD COLUMN throttled_count INTEGER NOT NULL DEFAULT 0;
)sql";

// Schema 4 -> 5. A job's priority as submitted (0: its policy's), and what each budget's quota
// has used in its current period (budgets[].quota), so a restart grants no period's quota
// twice. Rows are the engine's: written as it counts, read back at start, judged by it.
constexpr char kMigration5[] = R"sql(
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
CREATE TABLE budget_usage (
  budget TEXT NOT NULL,
  scope TEXT NOT NULL,
  period_us INTEGER NOT NULL,
  used INTEGER NOT NULL,
  PRIMARY KEY (budget, scope)
) WITHOUT ROWID;
)sql";
static_assert(static_cast<int>(common::Priority::kUnspecified) == 0,
              "schema 5 defaults priority to 0 = unspecified");

// The columns a JobRecord is read from, in JobCol order.
constexpr char kJobColumns[] =
    "j.id, j.tenant, j.state, j.endpoint, j.policy, j.ordering_key, j.attempt_count, "
    "j.budget_base, j.next_attempt_us, j.first_attempt_us, j.deadline_us, j.created_us, "
    "j.updated_us, j.last_http_status, j.idem_key, j.fingerprint, j.method, j.path, j.query, "
    "j.correlation_id, j.last_decision, j.wait_reason, j.waits_behind, j.throttled_count, "
    "j.priority, p.headers";
enum JobCol {
  kColId,
  kColTenant,
  kColState,
  kColEndpoint,
  kColPolicy,
  kColOrderingKey,
  kColAttemptCount,
  kColBudgetBase,
  kColNextAttempt,
  kColFirstAttempt,
  kColDeadline,
  kColCreated,
  kColUpdated,
  kColLastHttpStatus,
  kColIdemKey,
  kColFingerprint,
  kColMethod,
  kColPath,
  kColQuery,
  kColCorrelationId,
  kColLastDecision,
  kColWaitReason,
  kColWaitsBehind,
  kColThrottled,
  kColPriority,
  kColHeaders,
  kColBody,      // Get/LoadSpec only
  kColResponse,  // Get only
};

// --- Errors ---

absl::StatusCode CodeFor(int rc) {
  switch (rc & 0xff) {
    // The store cannot write now: the caller should retry later or elsewhere. Never
    // RESOURCE_EXHAUSTED, which is the engine's "too many active jobs, back off".
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_NOMEM:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_NOTADB:
    case SQLITE_AUTH:
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_CORRUPT:
      return absl::StatusCode::kDataLoss;
    case SQLITE_TOOBIG:
      return absl::StatusCode::kInvalidArgument;
    default:
      return absl::StatusCode::kInternal;
  }
}

// Marks a status as a SQLite failure; the payload is the clean message callers see instead.
constexpr absl::string_view kSqliteFailure = "type.rebound.dev/store.SqliteFailure";

std::string CallerMessage(int rc) {
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return "store: cannot write, the disk or database is full; retry later";
    case SQLITE_IOERR:
      return "store: cannot write, I/O error; retry later";
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return "store: busy; retry later";
    case SQLITE_NOMEM:
      return "store: out of memory; retry later";
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return "store: the database file is damaged; the operator must restore it (see the server "
             "log)";
    default:
      return "store: internal error (see the server log)";
  }
}

absl::Status SqliteFailure(int rc, std::string detail) {
  absl::Status s(CodeFor(rc), std::move(detail));
  s.SetPayload(kSqliteFailure, absl::Cord(CallerMessage(rc)));
  return s;
}

absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  return SqliteFailure(rc, absl::StrCat("sqlite: ", what, ": ",
                                        db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
}

// Adds the database path to errors of Open, so the operator knows which file is meant.
absl::Status AtPath(const absl::Status& s, absl::string_view path) {
  return absl::Status(s.code(), absl::StrCat("SQLite database '", path, "': ", s.message()));
}

// --- Handles ---

struct DbCloser {
  void operator()(sqlite3* db) const {
    // Fails only while statements are alive: every owner finalizes them first.
    [[maybe_unused]] const int rc = sqlite3_close(db);
    assert(rc == SQLITE_OK);
  }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

struct StmtFinalizer {
  // sqlite3_finalize repeats the last step's error, which its caller already handled.
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

absl::StatusOr<StmtPtr> Prepare(sqlite3* db, absl::string_view sql, bool persistent = true) {
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                                    persistent ? SQLITE_PREPARE_PERSISTENT : 0, &raw, nullptr);
  StmtPtr stmt(raw);
  if (rc != SQLITE_OK) return SqliteError(db, rc, absl::StrCat("prepare \"", sql, "\""));
  if (stmt == nullptr) return absl::InternalError(absl::StrCat("empty statement \"", sql, "\""));
  return stmt;
}

absl::Status ExecScript(sqlite3* db, const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return absl::OkStatus();
  absl::Status s =
      SqliteFailure(rc, absl::StrCat("sqlite: ", err != nullptr ? err : sqlite3_errstr(rc)));
  sqlite3_free(err);
  return s;
}

// --- Values ---

// Finite times are microseconds since the epoch; the infinities get the int64 extremes, so a
// column whose "none" is one infinity can still hold the other one.
int64_t EncodeTime(absl::Time t) {
  if (t == absl::InfiniteFuture()) return std::numeric_limits<int64_t>::max();
  if (t == absl::InfinitePast()) return std::numeric_limits<int64_t>::min();
  return absl::ToUnixMicros(t);
}

absl::Time DecodeTime(int64_t v) {
  if (v == std::numeric_limits<int64_t>::max()) return absl::InfiniteFuture();
  if (v == std::numeric_limits<int64_t>::min()) return absl::InfinitePast();
  return absl::FromUnixMicros(v);
}

// Unknown values (a newer version's, or damage) read as unspecified: the policy's priority.
common::Priority DecodePriority(int64_t v) {
  if (v < 0 || v >= common::kPriorityCount) return common::Priority::kUnspecified;
  return static_cast<common::Priority>(v);
}

// The reasons this build knows; another value (a damaged row) reads as none: it only informs,
// and must not make the job unreadable.
common::WaitReason DecodeWaitReason(int64_t v) {
  if (v < 0 || v >= common::kWaitReasonCount) return common::WaitReason::kNone;
  return static_cast<common::WaitReason>(v);
}

absl::StatusOr<JobState> DecodeState(int64_t v) {
  if (v < kMinState || v > kMaxState) {
    return absl::DataLossError(absl::StrCat("stored job state ", v, " is not valid"));
  }
  return static_cast<JobState>(v);
}

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

bool GetVarint(absl::string_view* in, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in->empty()) return false;
    const auto byte = static_cast<unsigned char>(in->front());
    in->remove_prefix(1);
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

bool GetBytes(absl::string_view* in, std::string* out) {
  uint64_t n = 0;
  if (!GetVarint(in, &n) || n > in->size()) return false;
  out->assign(in->data(), n);
  in->remove_prefix(n);
  return true;
}

// Headers keep their order and duplicates: a format byte, a count, then length-prefixed
// name/value pairs (binary-safe).
constexpr char kHeadersFormat = 1;

std::string EncodeHeaders(const Headers& headers) {
  std::string out(1, kHeadersFormat);
  PutVarint(&out, headers.size());
  for (const auto& [name, value] : headers) {
    PutVarint(&out, name.size());
    out.append(name);
    PutVarint(&out, value.size());
    out.append(value);
  }
  return out;
}

absl::Status DecodeHeaders(absl::string_view in, Headers* out) {
  const absl::Status corrupt = absl::DataLossError("stored request headers are corrupt");
  if (in.empty() || in.front() != kHeadersFormat) return corrupt;
  in.remove_prefix(1);
  uint64_t count = 0;
  if (!GetVarint(&in, &count) || count > in.size()) return corrupt;
  out->clear();
  out->reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    std::pair<std::string, std::string> header;
    if (!GetBytes(&in, &header.first) || !GetBytes(&in, &header.second)) return corrupt;
    out->push_back(std::move(header));
  }
  return in.empty() ? absl::OkStatus() : corrupt;
}

constexpr absl::string_view kPageTokenPrefix = "v1:";

std::string EncodePageToken(JobId last_id) {
  return absl::WebSafeBase64Escape(absl::StrCat(kPageTokenPrefix, last_id));
}

absl::StatusOr<JobId> DecodePageToken(const std::string& token) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw)) {
    return absl::InvalidArgumentError("page_token is not valid");
  }
  absl::string_view text = raw;
  JobId id = 0;
  if (!absl::ConsumePrefix(&text, kPageTokenPrefix) || !absl::SimpleAtoi(text, &id) || id <= 0) {
    return absl::InvalidArgumentError("page_token is not valid");
  }
  return id;
}

absl::Status JobNotFound(JobId id) {
  return absl::NotFoundError(absl::StrCat("job ", FormatJobId(id), " not found"));
}

// One use of a prepared statement: binds parameters in order (1, 2, ...), steps, reads
// columns, and resets the statement when it goes out of scope. Strings are bound without a
// copy, so they must outlive the last Step().
class Run {
 public:
  Run(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;
  // sqlite3_reset repeats the last step's error, which Step() already reported.
  ~Run() { sqlite3_reset(stmt_); }

  Run& Int(int64_t v) { return Check(sqlite3_bind_int64(stmt_, ++index_, v)); }
  Run& Null() { return Check(sqlite3_bind_null(stmt_, ++index_)); }
  Run& Text(absl::string_view v) {
    if (v.size() > static_cast<size_t>(INT_MAX)) return Check(SQLITE_TOOBIG);
    // A null pointer would bind SQL NULL; an empty string must stay an empty string.
    return Check(sqlite3_bind_text(stmt_, ++index_, v.empty() ? "" : v.data(),
                                   static_cast<int>(v.size()), SQLITE_STATIC));
  }
  Run& Blob(absl::string_view v) {
    if (v.size() > static_cast<size_t>(INT_MAX)) return Check(SQLITE_TOOBIG);
    return Check(sqlite3_bind_blob(stmt_, ++index_, v.empty() ? "" : v.data(),
                                   static_cast<int>(v.size()), SQLITE_STATIC));
  }
  // `none` (the field's "not set" value) is stored as NULL.
  Run& Time(absl::Time t, absl::Time none) { return t == none ? Null() : Int(EncodeTime(t)); }

  // True for a row, false when done.
  absl::StatusOr<bool> Step() {
    if (bind_rc_ != SQLITE_OK) {
      return SqliteError(db_, bind_rc_, absl::StrCat("bind \"", sqlite3_sql(stmt_), "\""));
    }
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, absl::StrCat("\"", sqlite3_sql(stmt_), "\""));
  }
  absl::Status Exec() { return Step().status(); }

  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  int64_t GetInt(int col) const { return sqlite3_column_int64(stmt_, col); }
  int GetInt32(int col) const { return sqlite3_column_int(stmt_, col); }
  std::string GetStr(int col) const {
    // Text and blobs alike: column_blob does no conversion and keeps embedded NULs.
    const void* p = sqlite3_column_blob(stmt_, col);
    const int n = sqlite3_column_bytes(stmt_, col);
    return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), n);
  }
  absl::Time GetTime(int col, absl::Time none) const {
    return IsNull(col) ? none : DecodeTime(GetInt(col));
  }

 private:
  Run& Check(int rc) {
    if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
    return *this;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int index_ = 0;
  int bind_rc_ = SQLITE_OK;
};

absl::StatusOr<DbPtr> OpenConnection(const std::string& path, int flags,
                                     absl::Duration busy_timeout) {
  sqlite3* raw = nullptr;
  // NOMUTEX: each connection is used by one thread at a time (the writer, or a pool lease).
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  DbPtr db(raw);  // a handle is returned even on failure, and must be closed
  if (rc != SQLITE_OK) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open SQLite database '", path,
                     "': ", raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  const int64_t ms = absl::ToInt64Milliseconds(busy_timeout);
  const int timeout = static_cast<int>(std::clamp<int64_t>(ms, 0, INT_MAX));
  if (const int brc = sqlite3_busy_timeout(db.get(), timeout); brc != SQLITE_OK) {
    return AtPath(SqliteError(db.get(), brc, "busy_timeout"), path);
  }
  return db;
}

absl::StatusOr<std::string> QueryText(sqlite3* db, absl::string_view sql) {
  REBOUND_ASSIGN_OR_RETURN(StmtPtr stmt, Prepare(db, sql, /*persistent=*/false));
  Run run(db, stmt.get());
  REBOUND_ASSIGN_OR_RETURN(const bool row, run.Step());
  if (!row) return absl::InternalError(absl::StrCat("\"", sql, "\" returned no row"));
  return run.GetStr(0);
}

absl::Status ReadJobRow(const Run& r, bool with_body, JobRecord* out) {
  out->id = r.GetInt(kColId);
  JobSpec& spec = out->spec;
  spec.tenant = r.GetStr(kColTenant);
  REBOUND_ASSIGN_OR_RETURN(out->state, DecodeState(r.GetInt(kColState)));
  spec.endpoint = r.GetStr(kColEndpoint);
  spec.policy = r.GetStr(kColPolicy);
  spec.ordering_key = r.GetStr(kColOrderingKey);
  out->attempt_count = r.GetInt32(kColAttemptCount);
  out->budget_base = r.GetInt32(kColBudgetBase);
  out->next_attempt_at = r.GetTime(kColNextAttempt, absl::InfinitePast());
  out->first_attempt_at = r.GetTime(kColFirstAttempt, absl::InfinitePast());
  spec.deadline = r.GetTime(kColDeadline, absl::InfiniteFuture());
  out->created_at = r.GetTime(kColCreated, absl::UnixEpoch());
  out->updated_at = r.GetTime(kColUpdated, absl::UnixEpoch());
  out->last_http_status = r.GetInt32(kColLastHttpStatus);
  spec.idempotency_key = r.GetStr(kColIdemKey);
  out->fingerprint = r.GetStr(kColFingerprint);
  spec.method = r.GetStr(kColMethod);
  spec.path = r.GetStr(kColPath);
  spec.query = r.GetStr(kColQuery);
  spec.correlation_id = r.GetStr(kColCorrelationId);
  out->last_decision = r.GetStr(kColLastDecision);
  out->wait_reason = DecodeWaitReason(r.GetInt(kColWaitReason));
  out->waits_behind = r.GetInt(kColWaitsBehind);
  out->throttled_count = r.GetInt32(kColThrottled);
  spec.priority = DecodePriority(r.GetInt(kColPriority));
  if (r.IsNull(kColHeaders)) return absl::DataLossError("stored request headers are missing");
  REBOUND_RETURN_IF_ERROR(DecodeHeaders(r.GetStr(kColHeaders), &spec.headers));
  if (with_body) spec.body = r.GetStr(kColBody);
  return absl::OkStatus();
}

}  // namespace

// --- Ops ---

struct SqliteStore::Op {
  enum class Kind { kSubmit, kApply, kPause, kUsage, kTask };
  Kind kind = Kind::kTask;
  absl::Time now;
  std::vector<NewJob> jobs;
  SubmitDone submit_done;
  std::vector<Transition> transitions;
  EndpointPause pause;  // kPause: saved, or with `resume` only its endpoint's is deleted
  bool resume = false;
  std::vector<BudgetUsage> usage;  // kUsage
  Task task;
  bool maintenance = false;  // Task only: the lowest lane, alone in its transaction
  WriteDone write_done;      // Apply, Pause and Task
  // Outcomes, delivered only if the batch commits.
  std::vector<SubmitResult> results;
  absl::Status status;

  size_t Rows() const {
    switch (kind) {
      case Kind::kSubmit:
        return std::max<size_t>(1, jobs.size());
      case Kind::kApply:
        return std::max<size_t>(1, transitions.size());
      case Kind::kUsage:
        return std::max<size_t>(1, usage.size());
      case Kind::kPause:
      case Kind::kTask:
        break;
    }
    return 1;
  }
};

// --- Writer: the write connection and its prepared statements ---

class SqliteStore::Writer {
 public:
  static absl::StatusOr<std::unique_ptr<Writer>> Create(DbPtr db) {
    auto w = std::unique_ptr<Writer>(new Writer(std::move(db)));
    REBOUND_RETURN_IF_ERROR(w->PrepareAll());
    return w;
  }

  sqlite3* db() const { return db_.get(); }

  absl::Status Begin() {
    // A ROLLBACK that failed earlier left a transaction open: retry it, or BEGIN fails forever.
    Rollback();
    return Run(db(), begin_.get()).Exec();
  }
  absl::Status Commit() { return Run(db(), commit_.get()).Exec(); }

  // With store.max_file_bytes (`pages` > 0): submits may grow the file only to 7/8 of the cap,
  // so the work already accepted keeps the last eighth for its attempts and transitions, and a
  // full store stops intake before it stops the engine (whose refused writes are fatal).
  // The full cap is already set (at Open, before the schema is written): this keeps both texts.
  void SetPageCap(int64_t pages) {
    if (pages <= 0) return;
    full_cap_ = absl::StrCat("PRAGMA max_page_count = ", pages);
    submit_cap_ = absl::StrCat("PRAGMA max_page_count = ", std::max<int64_t>(1, pages - pages / 8));
  }
  // Switches between the two caps (a no-op without a cap, or when already there). SQLite keeps
  // the limit at the file's current size if that is larger: submits then reuse free pages only.
  absl::Status CapForSubmits(bool submits) {
    if (full_cap_.empty() || submits == submit_capped_) return absl::OkStatus();
    REBOUND_RETURN_IF_ERROR(ExecScript(db(), (submits ? submit_cap_ : full_cap_).c_str()));
    submit_capped_ = submits;
    return absl::OkStatus();
  }
  void Rollback() {
    // After some errors SQLite has already rolled back; a second ROLLBACK would fail.
    if (sqlite3_get_autocommit(db()) != 0) return;
    const absl::Status s = Run(db(), rollback_.get()).Exec();
    // If this fails too, the next Begin() tries again; its error reaches that batch's ops.
    static_cast<void>(s);
  }

  absl::Status ExecSubmit(Op& op) {
    op.results.clear();
    op.results.reserve(op.jobs.size());
    for (const NewJob& job : op.jobs) {
      SubmitResult result;
      REBOUND_RETURN_IF_ERROR(SubmitOne(job, op.now, &result));
      op.results.push_back(std::move(result));
    }
    return absl::OkStatus();
  }

  // An unknown job id fails the op (op.status) before any of its rows is written; SQLite
  // errors fail the whole batch (the return value).
  absl::Status ExecApply(Op& op) {
    struct Current {
      JobState state;
      std::string tenant;
      std::string idem_key;
    };
    std::vector<Current> current;
    current.reserve(op.transitions.size());
    for (const Transition& t : op.transitions) {
      Run probe(db(), probe_job_.get());
      probe.Int(t.job_id);
      REBOUND_ASSIGN_OR_RETURN(const bool found, probe.Step());
      if (!found) {
        op.status = JobNotFound(t.job_id);
        return absl::OkStatus();
      }
      REBOUND_ASSIGN_OR_RETURN(const JobState state, DecodeState(probe.GetInt(0)));
      current.push_back(Current{state, probe.GetStr(1), probe.GetStr(2)});
    }
    // The same job may appear twice in one op: track the state each transition leaves.
    std::unordered_map<JobId, JobState> latest;
    const int64_t now_us = EncodeTime(op.now);
    for (size_t i = 0; i < op.transitions.size(); ++i) {
      const Transition& t = op.transitions[i];
      JobState old_state = current[i].state;
      if (op.transitions.size() > 1) {
        auto [it, inserted] = latest.try_emplace(t.job_id, t.state);
        if (!inserted) {
          old_state = it->second;
          it->second = t.state;
        }
      }
      const bool terminal = IsTerminal(t.state);
      {
        Run q(db(), update_job_.get());
        q.Int(static_cast<int>(t.state))
            .Int(t.attempt_count)
            .Int(t.budget_base)
            .Time(t.next_attempt_at, absl::InfinitePast())
            .Time(t.first_attempt_at, absl::InfinitePast())
            .Text(t.last_decision)
            .Int(t.last_http_status)
            .Int(now_us);
        if (terminal) {
          q.Int(now_us);
        } else {
          q.Null();
        }
        // Only an ended job can have a purge time: a replay (or a confused caller) clears it.
        q.Time(terminal ? t.purge_at : absl::InfiniteFuture(), absl::InfiniteFuture());
        q.Int(static_cast<int>(t.wait_reason)).Int(t.waits_behind).Int(t.throttled_count);
        q.Int(t.job_id);
        REBOUND_RETURN_IF_ERROR(q.Exec());
      }
      if (t.last_response_body.has_value()) {
        Run q(db(), upsert_response_.get());
        q.Int(t.job_id).Blob(*t.last_response_body);
        REBOUND_RETURN_IF_ERROR(q.Exec());
      }
      if (t.attempt.has_value()) {
        const AttemptRecord& a = *t.attempt;
        Run q(db(), upsert_attempt_.get());
        q.Int(t.job_id)
            .Int(a.number)
            .Int(EncodeTime(a.started_at))
            .Int(absl::ToInt64Microseconds(a.duration))
            .Int(a.http_status)
            .Text(a.transport_error)
            .Text(a.classification)
            .Text(a.decision)
            .Time(a.next_attempt_at, absl::InfinitePast());
        REBOUND_RETURN_IF_ERROR(q.Exec());
      }
      // Ending starts the key's retention clock; leaving a terminal state (replay) stops it.
      const std::string& key = current[i].idem_key;
      if (!key.empty() && (terminal || IsTerminal(old_state))) {
        Run q(db(), set_key_expiry_.get());
        if (terminal) {
          q.Int(now_us);
        } else {
          q.Null();
        }
        q.Text(current[i].tenant).Text(key).Int(t.job_id);
        REBOUND_RETURN_IF_ERROR(q.Exec());
      }
    }
    op.status = absl::OkStatus();
    return absl::OkStatus();
  }

  absl::Status ExecUsage(Op& op) {
    for (const BudgetUsage& u : op.usage) {
      Run q(db(), upsert_usage_.get());
      q.Text(u.budget).Text(u.scope).Int(EncodeTime(u.period_start)).Int(u.used);
      REBOUND_RETURN_IF_ERROR(q.Exec());
    }
    op.status = absl::OkStatus();
    return absl::OkStatus();
  }

  absl::Status ExecPause(Op& op) {
    const EndpointPause& p = op.pause;
    if (op.resume) {
      Run q(db(), delete_pause_.get());
      q.Text(p.endpoint);
      REBOUND_RETURN_IF_ERROR(q.Exec());
    } else {
      Run q(db(), upsert_pause_.get());
      q.Text(p.endpoint)
          .Time(p.until, absl::InfiniteFuture())
          .Text(p.reason)
          .Int(EncodeTime(p.paused_at));
      REBOUND_RETURN_IF_ERROR(q.Exec());
    }
    op.status = absl::OkStatus();
    return absl::OkStatus();
  }

  // The labels of the active jobs in `jobs` (sorted by id): budgets and fair turns are scoped
  // by them. One pass, in job order.
  absl::Status RecoverLabels(std::vector<ActiveJob>* jobs) {
    REBOUND_ASSIGN_OR_RETURN(
        StmtPtr select,
        Prepare(db(),
                "SELECT l.job_id, l.key, l.value FROM jobs j JOIN job_labels l ON l.job_id = j.id "
                "WHERE j.state < 5 ORDER BY l.job_id",
                /*persistent=*/false));
    Run r(db(), select.get());
    auto it = jobs->begin();
    for (;;) {
      REBOUND_ASSIGN_OR_RETURN(const bool row, r.Step());
      if (!row) break;
      const JobId id = r.GetInt(0);
      it = std::lower_bound(it, jobs->end(), id,
                            [](const ActiveJob& j, JobId v) { return j.id < v; });
      if (it == jobs->end()) break;
      if (it->id == id) it->labels.emplace(r.GetStr(1), r.GetStr(2));
    }
    return absl::OkStatus();
  }

  // Re-queues RUNNING jobs and returns every non-terminal job, by id. One pass over the
  // partial index of active jobs; the few RUNNING ones are then updated by id.
  absl::Status Recover(absl::Time now, std::vector<ActiveJob>* out) {
    REBOUND_ASSIGN_OR_RETURN(
        StmtPtr select,
        Prepare(db(),
                "SELECT id, endpoint, policy, tenant, ordering_key, state, attempt_count, "
                "budget_base, next_attempt_us, first_attempt_us, deadline_us, created_us, "
                "wait_reason, waits_behind, throttled_count, priority FROM jobs WHERE state < 5 "
                "ORDER BY id",
                /*persistent=*/false));
    std::vector<size_t> running;
    {
      Run r(db(), select.get());
      for (;;) {
        REBOUND_ASSIGN_OR_RETURN(const bool row, r.Step());
        if (!row) break;
        ActiveJob job;
        job.id = r.GetInt(0);
        job.endpoint = r.GetStr(1);
        job.policy = r.GetStr(2);
        job.tenant = r.GetStr(3);
        job.ordering_key = r.GetStr(4);
        REBOUND_ASSIGN_OR_RETURN(job.state, DecodeState(r.GetInt(5)));
        job.attempt_count = r.GetInt32(6);
        job.budget_base = r.GetInt32(7);
        job.next_attempt_at = r.GetTime(8, absl::InfinitePast());
        job.first_attempt_at = r.GetTime(9, absl::InfinitePast());
        job.deadline = r.GetTime(10, absl::InfiniteFuture());
        job.created_at = r.GetTime(11, absl::UnixEpoch());
        job.wait_reason = DecodeWaitReason(r.GetInt(12));
        job.waits_behind = r.GetInt(13);
        job.throttled_count = r.GetInt32(14);
        job.priority = DecodePriority(r.GetInt(15));
        if (job.state == JobState::kRunning) running.push_back(out->size());
        out->push_back(std::move(job));
      }
    }
    REBOUND_RETURN_IF_ERROR(RecoverLabels(out));
    if (running.empty()) return absl::OkStatus();
    REBOUND_ASSIGN_OR_RETURN(
        StmtPtr requeue,
        Prepare(db(),
                "UPDATE jobs SET state = ?1, updated_us = ?2, wait_reason = ?3, waits_behind = 0 "
                "WHERE id = ?4",
                /*persistent=*/false));
    for (const size_t i : running) {
      ActiveJob& job = (*out)[i];
      Run q(db(), requeue.get());
      q.Int(static_cast<int>(JobState::kQueued))
          .Int(EncodeTime(now))
          .Int(static_cast<int>(common::WaitReason::kNone))
          .Int(job.id);
      REBOUND_RETURN_IF_ERROR(q.Exec());
      job.state = JobState::kQueued;
      job.wait_reason = common::WaitReason::kNone;
      job.waits_behind = 0;
    }
    return absl::OkStatus();
  }

  // Deletes up to `limit` jobs due for purge, each with everything that refers to it.
  absl::Status PurgeJobs(absl::Time now, int limit, int64_t* deleted) {
    struct Due {
      JobId id;
      std::string tenant, idem_key;
    };
    std::vector<Due> due;
    {
      Run q(db(), due_purges_.get());
      q.Int(EncodeTime(now)).Int(limit);
      for (;;) {
        REBOUND_ASSIGN_OR_RETURN(const bool row, q.Step());
        if (!row) break;
        due.push_back(Due{q.GetInt(0), q.GetStr(1), q.GetStr(2)});
      }
    }
    for (const Due& d : due) {
      for (sqlite3_stmt* stmt : {delete_attempts_.get(), delete_labels_.get(),
                                 delete_payload_.get(), delete_response_.get()}) {
        Run q(db(), stmt);
        q.Int(d.id);
        REBOUND_RETURN_IF_ERROR(q.Exec());
      }
      if (!d.idem_key.empty()) {
        Run q(db(), delete_key_.get());
        q.Text(d.tenant).Text(d.idem_key).Int(d.id);
        REBOUND_RETURN_IF_ERROR(q.Exec());
      }
      Run q(db(), delete_job_.get());
      q.Int(d.id);
      REBOUND_RETURN_IF_ERROR(q.Exec());
    }
    *deleted = static_cast<int64_t>(due.size());
    return absl::OkStatus();
  }

  // PRAGMA incremental_vacuum(max_pages): returns free pages at the end of the file to the
  // filesystem (at the next checkpoint, in WAL mode). `reclaimed`: pages it took off the free
  // list (0 when the file was not created with auto_vacuum=INCREMENTAL).
  absl::Status Vacuum(int max_pages, int64_t* reclaimed) {
    *reclaimed = 0;
    REBOUND_ASSIGN_OR_RETURN(const int64_t before, FreePages());
    if (before == 0) return absl::OkStatus();
    REBOUND_ASSIGN_OR_RETURN(
        StmtPtr vacuum, Prepare(db(), absl::StrCat("PRAGMA incremental_vacuum(", max_pages, ")"),
                                /*persistent=*/false));
    {
      Run q(db(), vacuum.get());
      for (;;) {
        REBOUND_ASSIGN_OR_RETURN(const bool row, q.Step());
        if (!row) break;
      }
    }
    REBOUND_ASSIGN_OR_RETURN(const int64_t after, FreePages());
    *reclaimed = before - after;
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> FreePages() {
    REBOUND_ASSIGN_OR_RETURN(const std::string text, QueryText(db(), "PRAGMA freelist_count"));
    int64_t n = 0;
    if (!absl::SimpleAtoi(text, &n)) {
      return absl::InternalError(absl::StrCat("freelist_count is '", text, "'"));
    }
    return n;
  }

  absl::Status PurgeChunk(absl::Time cutoff, int limit, int64_t* deleted) {
    Run q(db(), purge_keys_.get());
    q.Int(EncodeTime(cutoff)).Int(limit);
    REBOUND_RETURN_IF_ERROR(q.Exec());
    *deleted = sqlite3_changes64(db());
    return absl::OkStatus();
  }

 private:
  explicit Writer(DbPtr db) : db_(std::move(db)) {}

  absl::Status PrepareAll() {
    const std::pair<StmtPtr*, const char*> statements[] = {
        {&begin_, "BEGIN IMMEDIATE"},
        {&commit_, "COMMIT"},
        {&rollback_, "ROLLBACK"},
        {&idem_lookup_,
         "SELECT i.job_id, i.fingerprint, j.state FROM idempotency i "
         "LEFT JOIN jobs j ON j.id = i.job_id WHERE i.tenant = ?1 AND i.idem_key = ?2"},
        {&insert_job_,
         "INSERT INTO jobs (tenant, state, endpoint, policy, ordering_key, attempt_count, "
         "budget_base, deadline_us, created_us, updated_us, last_http_status, idem_key, "
         "fingerprint, method, path, query, correlation_id, last_decision, priority) "
         "VALUES (?1, ?2, ?3, ?4, ?5, 0, 0, ?6, ?7, ?7, 0, ?8, ?9, ?10, ?11, ?12, ?13, '', ?14)"},
        {&insert_payload_, "INSERT INTO job_payloads (job_id, headers, body) VALUES (?1, ?2, ?3)"},
        {&insert_label_, "INSERT INTO job_labels (job_id, key, value) VALUES (?1, ?2, ?3)"},
        {&insert_key_,
         "INSERT INTO idempotency (tenant, idem_key, job_id, fingerprint, expires_us) "
         "VALUES (?1, ?2, ?3, ?4, NULL)"},
        {&probe_job_, "SELECT state, tenant, idem_key FROM jobs WHERE id = ?1"},
        {&update_job_,
         "UPDATE jobs SET state = ?1, attempt_count = ?2, budget_base = ?3, "
         "next_attempt_us = ?4, first_attempt_us = ?5, last_decision = ?6, "
         "last_http_status = ?7, updated_us = ?8, finished_us = ?9, purge_us = ?10, "
         "wait_reason = ?11, waits_behind = ?12, throttled_count = ?13 WHERE id = ?14"},
        {&upsert_response_, "INSERT OR REPLACE INTO job_responses (job_id, body) VALUES (?1, ?2)"},
        {&upsert_attempt_,
         "INSERT OR REPLACE INTO attempts (job_id, number, started_us, duration_us, "
         "http_status, transport_error, classification, decision, next_attempt_us) "
         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
        {&set_key_expiry_,
         "UPDATE idempotency SET expires_us = ?1 WHERE tenant = ?2 AND idem_key = ?3 "
         "AND job_id = ?4"},
        {&purge_keys_,
         "DELETE FROM idempotency WHERE (tenant, idem_key) IN (SELECT tenant, idem_key FROM "
         "idempotency WHERE expires_us < ?1 LIMIT ?2)"},
        // `state >= 5`: whatever a purge time says, an active job is never deleted.
        {&due_purges_,
         "SELECT id, tenant, idem_key FROM jobs INDEXED BY jobs_by_purge WHERE purge_us IS NOT "
         "NULL AND purge_us < ?1 AND state >= 5 ORDER BY purge_us LIMIT ?2"},
        {&delete_attempts_, "DELETE FROM attempts WHERE job_id = ?1"},
        {&delete_labels_, "DELETE FROM job_labels WHERE job_id = ?1"},
        {&delete_payload_, "DELETE FROM job_payloads WHERE job_id = ?1"},
        {&delete_response_, "DELETE FROM job_responses WHERE job_id = ?1"},
        {&delete_key_,
         "DELETE FROM idempotency WHERE tenant = ?1 AND idem_key = ?2 AND job_id = ?3"},
        {&delete_job_, "DELETE FROM jobs WHERE id = ?1"},
        {&upsert_pause_,
         "INSERT OR REPLACE INTO endpoint_pauses (endpoint, until_us, reason, paused_us) "
         "VALUES (?1, ?2, ?3, ?4)"},
        {&delete_pause_, "DELETE FROM endpoint_pauses WHERE endpoint = ?1"},
        {&upsert_usage_,
         "INSERT OR REPLACE INTO budget_usage (budget, scope, period_us, used) "
         "VALUES (?1, ?2, ?3, ?4)"},
    };
    for (const auto& [stmt, sql] : statements) {
      REBOUND_ASSIGN_OR_RETURN(*stmt, Prepare(db(), sql));
    }
    return absl::OkStatus();
  }

  absl::Status SubmitOne(const NewJob& job, absl::Time now, SubmitResult* out) {
    const JobSpec& spec = job.spec;
    if (!spec.idempotency_key.empty()) {
      Run q(db(), idem_lookup_.get());
      q.Text(spec.tenant).Text(spec.idempotency_key);
      REBOUND_ASSIGN_OR_RETURN(const bool found, q.Step());
      if (found) {
        out->job_id = q.GetInt(0);
        if (q.IsNull(2)) {
          out->status = absl::DataLossError(absl::StrCat("idempotency key '", spec.idempotency_key,
                                                         "' names job ", FormatJobId(out->job_id),
                                                         ", which does not exist"));
          return absl::OkStatus();
        }
        absl::StatusOr<JobState> state = DecodeState(q.GetInt(2));
        if (!state.ok()) {
          out->status = state.status();
          return absl::OkStatus();
        }
        out->state = *state;
        if (q.GetStr(1) == job.fingerprint) {
          out->deduplicated = true;
        } else {
          out->status = absl::AlreadyExistsError(
              absl::StrCat("idempotency key '", spec.idempotency_key, "' is already used by job ",
                           FormatJobId(out->job_id), " with a different request"));
        }
        return absl::OkStatus();
      }
    }

    // Always QUEUED: whether it waits for its ordering key is the engine's to decide and write.
    const JobState state = JobState::kQueued;
    {
      Run q(db(), insert_job_.get());
      q.Text(spec.tenant)
          .Int(static_cast<int>(state))
          .Text(spec.endpoint)
          .Text(spec.policy)
          .Text(spec.ordering_key)
          .Time(spec.deadline, absl::InfiniteFuture())
          .Int(EncodeTime(now))
          .Text(spec.idempotency_key)
          .Text(job.fingerprint)
          .Text(spec.method)
          .Text(spec.path)
          .Text(spec.query)
          .Text(spec.correlation_id)
          .Int(static_cast<int>(spec.priority));
      REBOUND_RETURN_IF_ERROR(q.Exec());
    }
    const JobId id = sqlite3_last_insert_rowid(db());
    {
      const std::string headers = EncodeHeaders(spec.headers);
      Run q(db(), insert_payload_.get());
      q.Int(id).Blob(headers).Blob(spec.body);
      REBOUND_RETURN_IF_ERROR(q.Exec());
    }
    for (const auto& [key, value] : spec.labels) {
      Run q(db(), insert_label_.get());
      q.Int(id).Text(key).Text(value);
      REBOUND_RETURN_IF_ERROR(q.Exec());
    }
    if (!spec.idempotency_key.empty()) {
      Run q(db(), insert_key_.get());
      q.Text(spec.tenant).Text(spec.idempotency_key).Int(id).Text(job.fingerprint);
      REBOUND_RETURN_IF_ERROR(q.Exec());
    }
    out->job_id = id;
    out->state = state;
    return absl::OkStatus();
  }

  DbPtr db_;  // first member: closed after every statement below is finalized
  std::string full_cap_, submit_cap_;  // empty: no cap
  bool submit_capped_ = false;
  StmtPtr begin_, commit_, rollback_;
  StmtPtr upsert_usage_;
  StmtPtr idem_lookup_, insert_job_, insert_payload_, insert_label_, insert_key_;
  StmtPtr probe_job_, update_job_, upsert_response_, upsert_attempt_, set_key_expiry_;
  StmtPtr purge_keys_, due_purges_, delete_attempts_, delete_labels_, delete_payload_;
  StmtPtr delete_response_, delete_key_, delete_job_, upsert_pause_, delete_pause_;
};

// --- ReadPool: read connections with their own prepared statements ---

namespace {

// A read connection with the statements it has prepared (one thread at a time).
class ReadConn {
 public:
  explicit ReadConn(DbPtr db) : db_(std::move(db)) {}
  sqlite3* db() const { return db_.get(); }

  // A statement prepared once per connection and reused.
  absl::StatusOr<sqlite3_stmt*> Stmt(const std::string& sql) {
    auto it = stmts_.find(sql);
    if (it == stmts_.end()) {
      REBOUND_ASSIGN_OR_RETURN(StmtPtr stmt, Prepare(db(), sql));
      it = stmts_.emplace(sql, std::move(stmt)).first;
    }
    return it->second.get();
  }
  absl::Status Exec(const std::string& sql) {
    REBOUND_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Stmt(sql));
    return Run(db(), stmt).Exec();
  }

 private:
  DbPtr db_;  // first member: closed after the statements are finalized
  std::unordered_map<std::string, StmtPtr> stmts_;
};

}  // namespace

class SqliteStore::ReadPool {
 public:
  // Returns its connection to the pool when destroyed.
  class Lease {
   public:
    Lease(ReadPool* pool, std::unique_ptr<ReadConn> conn) : pool_(pool), conn_(std::move(conn)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (conn_ != nullptr) pool_->Release(std::move(conn_));
    }
    ReadConn& operator*() const { return *conn_; }

   private:
    ReadPool* pool_;
    std::unique_ptr<ReadConn> conn_;
  };

  ReadPool(std::string path, absl::Duration busy_timeout)
      : path_(std::move(path)), busy_timeout_(busy_timeout) {}

  absl::StatusOr<Lease> Acquire() {
    {
      absl::MutexLock lock(&mu_);
      if (!idle_.empty()) {
        std::unique_ptr<ReadConn> conn = std::move(idle_.back());
        idle_.pop_back();
        return Lease(this, std::move(conn));
      }
    }
    REBOUND_ASSIGN_OR_RETURN(DbPtr db, OpenConnection(path_, SQLITE_OPEN_READWRITE, busy_timeout_));
    // Reads only: a bug cannot write behind the writer's back.
    REBOUND_RETURN_IF_ERROR(ExecScript(db.get(), "PRAGMA query_only = 1"));
    return Lease(this, std::make_unique<ReadConn>(std::move(db)));
  }

 private:
  void Release(std::unique_ptr<ReadConn> conn) {
    // A connection left inside a transaction (a failed COMMIT) is not reused.
    if (sqlite3_get_autocommit(conn->db()) == 0) {
      if (!conn->Exec("ROLLBACK").ok() || sqlite3_get_autocommit(conn->db()) == 0) return;
    }
    absl::MutexLock lock(&mu_);
    if (idle_.size() < kMaxIdleReaders) idle_.push_back(std::move(conn));
  }

  const std::string path_;
  const absl::Duration busy_timeout_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<ReadConn>> idle_ ABSL_GUARDED_BY(mu_);
};

// --- Open / close ---

namespace {

// What `<path>.lock` holds once a store has been created at `path` (empty before).
constexpr absl::string_view kStoreMarker = "rebound store\n";

// A 0-byte database where the lock file says a store existed (or beside a WAL that holds its
// last commits) is a truncated or replaced file: opening it would start an empty store and
// silently drop every job and key.
absl::Status RefuseTruncatedDatabase(const std::string& path, const std::string& lock_path,
                                     int lock_fd) {
  struct stat db {};
  if (stat(path.c_str(), &db) != 0 || db.st_size != 0) return absl::OkStatus();
  char marker[32] = {};
  const ssize_t n = pread(lock_fd, marker, sizeof(marker), 0);
  const bool had_store = n > 0;
  struct stat wal {};
  const std::string wal_path = path + "-wal";
  const bool has_wal = stat(wal_path.c_str(), &wal) == 0 && wal.st_size > 0;
  if (!had_store && !has_wal) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "SQLite database '", path, "' is empty (0 bytes), but ",
      had_store ? absl::StrCat(lock_path, " records that a store was created there")
                : absl::StrCat(wal_path, " holds commits of a store"),
      ": the file was truncated or replaced, and starting would lose every job and idempotency "
      "key. Restore it from a backup; to start an empty store on purpose, delete ",
      path, ", ", wal_path, " and ", lock_path));
}

absl::Status MarkStoreCreated(int lock_fd, const std::string& lock_path) {
  struct stat st {};
  if (fstat(lock_fd, &st) == 0 && st.st_size > 0) return absl::OkStatus();
  if (pwrite(lock_fd, kStoreMarker.data(), kStoreMarker.size(), 0) !=
          static_cast<ssize_t>(kStoreMarker.size()) ||
      fsync(lock_fd) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot write ", lock_path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// PRAGMA quick_check: every page and index entry is well formed (not that indexes match their
// tables row by row, which integrity_check adds at several times the cost).
absl::Status QuickCheck(sqlite3* db, const std::string& path) {
  const absl::StatusOr<std::string> result = QueryText(db, "PRAGMA quick_check(1)");
  if (result.ok() && *result == "ok") return absl::OkStatus();
  const std::string problem = result.ok() ? *result : std::string(result.status().message());
  return absl::FailedPreconditionError(absl::StrCat(
      "SQLite database '", path, "' failed PRAGMA quick_check (", problem,
      "): the file is damaged. Stop here: restore it from a backup (docs/operations.md, "
      "\"A damaged database\"); store.quick_check: false skips this check"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(const SqliteOptions& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("SQLite path is empty");
  if (options.path == ":memory:" || absl::StartsWith(options.path, "file:")) {
    return absl::InvalidArgumentError(
        absl::StrCat("SQLite path '", options.path, "' must name a file (WAL needs one)"));
  }
  const char* synchronous = nullptr;
  if (options.synchronous == "full") {
    synchronous = "PRAGMA synchronous = FULL";
  } else if (options.synchronous == "normal") {
    synchronous = "PRAGMA synchronous = NORMAL";
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "synchronous must be \"full\" or \"normal\", not \"", options.synchronous, "\""));
  }
  if (options.max_file_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_file_bytes must not be negative, not ", options.max_file_bytes));
  }
  if (options.max_batch < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch must be at least 1, not ", options.max_batch));
  }

  // One process per database file: two engines on one file would both run its jobs. The lock
  // is held for the store's life and released by the kernel if the process dies.
  const std::string lock_path = options.path + ".lock";
  const int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) {
    const int err = errno;
    std::string hint;
    if (err == EACCES || err == EPERM) {
      // Typically a bind mount owned by root while the image runs as uid 10001.
      std::string dir = std::filesystem::path(lock_path).parent_path().string();
      if (dir.empty()) dir = ".";
      hint =
          absl::StrCat(" (the directory must be writable by uid ", geteuid(), ", gid ", getegid(),
                       ", which this process runs as: chown ", geteuid(), ":", getegid(), " ", dir,
                       ", or run as the directory's owner, e.g. docker run --user)");
    }
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open lock file ", lock_path, ": ", std::strerror(err), hint));
  }
  if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    close(lock_fd);
    return absl::FailedPreconditionError(
        err == EWOULDBLOCK
            ? absl::StrCat("SQLite database '", options.path,
                           "' is in use by another rebound-server (", lock_path, " is locked)")
            : absl::StrCat("cannot lock ", lock_path, ": ", std::strerror(err)));
  }
  struct LockGuard {
    int fd;
    ~LockGuard() {
      if (fd >= 0) close(fd);
    }
  } lock_guard{lock_fd};
  REBOUND_RETURN_IF_ERROR(RefuseTruncatedDatabase(options.path, lock_path, lock_fd));

  REBOUND_ASSIGN_OR_RETURN(DbPtr db,
                           OpenConnection(options.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                          options.busy_timeout));
  sqlite3* raw = db.get();
  // Only a new file takes it (before WAL mode writes the first page); an older file keeps
  // auto_vacuum=NONE until the one-time VACUUM in docs/operations.md.
  if (absl::Status s = ExecScript(raw, "PRAGMA auto_vacuum = INCREMENTAL"); !s.ok()) {
    return AtPath(s, options.path);
  }
  absl::StatusOr<std::string> mode = QueryText(raw, "PRAGMA journal_mode = WAL");
  if (!mode.ok()) return AtPath(mode.status(), options.path);
  if (*mode != "wal") {
    return absl::FailedPreconditionError(absl::StrCat(
        "SQLite database '", options.path, "': journal_mode is '", *mode, "', WAL is required"));
  }
  if (absl::Status s = ExecScript(raw, synchronous); !s.ok()) return AtPath(s, options.path);
  if (absl::Status s = ExecScript(raw, "PRAGMA temp_store = MEMORY"); !s.ok()) {
    return AtPath(s, options.path);
  }
  if (options.quick_check) REBOUND_RETURN_IF_ERROR(QuickCheck(raw, options.path));
  int64_t max_pages = 0;
  if (options.max_file_bytes > 0) {
    absl::StatusOr<std::string> page_size = QueryText(raw, "PRAGMA page_size");
    int64_t bytes = 0;
    if (!page_size.ok()) return AtPath(page_size.status(), options.path);
    if (!absl::SimpleAtoi(*page_size, &bytes) || bytes <= 0) bytes = 4096;
    max_pages = std::max<int64_t>(1, options.max_file_bytes / bytes);
    if (absl::Status s =
            ExecScript(raw, absl::StrCat("PRAGMA max_page_count = ", max_pages).c_str());
        !s.ok()) {
      return AtPath(s, options.path);
    }
  }

  // Schema: created in one transaction, versioned by user_version.
  absl::Status schema = [&]() -> absl::Status {
    REBOUND_RETURN_IF_ERROR(ExecScript(raw, "BEGIN IMMEDIATE"));
    absl::Status s = [&]() -> absl::Status {
      REBOUND_ASSIGN_OR_RETURN(const std::string text, QueryText(raw, "PRAGMA user_version"));
      int version = 0;
      if (!absl::SimpleAtoi(text, &version)) {
        return absl::InternalError(absl::StrCat("user_version is '", text, "'"));
      }
      if (version > kSchemaVersion) {
        return absl::FailedPreconditionError(absl::StrCat("schema version ", version,
                                                          " is newer than this build's (",
                                                          kSchemaVersion, "); upgrade Rebound"));
      }
      if (version == 0) REBOUND_RETURN_IF_ERROR(ExecScript(raw, kSchema));
      if (version < 2) {
        REBOUND_RETURN_IF_ERROR(ExecScript(raw, kMigration2));
        REBOUND_ASSIGN_OR_RETURN(StmtPtr backfill, Prepare(raw, kBackfill2, /*persistent=*/false));
        Run q(raw, backfill.get());
        q.Int(absl::ToInt64Microseconds(options.legacy_retention))
            .Int(absl::ToInt64Microseconds(options.legacy_dead_letter_retention));
        REBOUND_RETURN_IF_ERROR(q.Exec());
      }
      if (version < 3) REBOUND_RETURN_IF_ERROR(ExecScript(raw, kMigration3));
      if (version < 4) REBOUND_RETURN_IF_ERROR(ExecScript(raw, kMigration4));
      if (version < 5) REBOUND_RETURN_IF_ERROR(ExecScript(raw, kMigration5));
      if (version < kSchemaVersion) {
        REBOUND_RETURN_IF_ERROR(
            ExecScript(raw, absl::StrCat("PRAGMA user_version = ", kSchemaVersion).c_str()));
      }
      return ExecScript(raw, "COMMIT");
    }();
    if (!s.ok() && sqlite3_get_autocommit(raw) == 0) {
      static_cast<void>(ExecScript(raw, "ROLLBACK"));  // the original error is what matters
    }
    return s;
  }();
  if (!schema.ok()) return AtPath(schema, options.path);
  if (absl::Status s = MarkStoreCreated(lock_fd, lock_path); !s.ok()) return s;

  absl::StatusOr<std::unique_ptr<Writer>> writer = Writer::Create(std::move(db));
  if (!writer.ok()) return AtPath(writer.status(), options.path);
  (*writer)->SetPageCap(max_pages);
  auto reads = std::make_unique<ReadPool>(options.path, options.busy_timeout);
  {
    // Fail at Open, not at the first read, when readers cannot open the file.
    absl::StatusOr<ReadPool::Lease> probe = reads->Acquire();
    if (!probe.ok()) return AtPath(probe.status(), options.path);
  }
  auto store = std::unique_ptr<SqliteStore>(
      new SqliteStore(*std::move(writer), std::move(reads), options.max_batch));
  store->lock_fd_ = std::exchange(lock_guard.fd, -1);
  store->on_commit_ = options.on_commit;
  store->on_error_ = options.on_error;
  store->thread_ = std::thread([s = store.get()] { s->WriterLoop(); });
  return store;
}

SqliteStore::SqliteStore(std::unique_ptr<Writer> writer, std::unique_ptr<ReadPool> reads,
                         int max_batch)
    : writer_(std::move(writer)), reads_(std::move(reads)), max_batch_(max_batch) {}

SqliteStore::~SqliteStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (lock_fd_ >= 0) close(lock_fd_);  // after the writer's last commit
  // Members go in reverse order: read connections close first, then the writer's, whose close
  // checkpoints the WAL into the database file.
}

// --- Writes ---

namespace {
constexpr int kSubmitLane = 0;
constexpr int kUrgentLane = 1;
constexpr int kMaintenanceLane = 2;
// A waiting maintenance step runs after at most this many traffic batches, so a purge makes
// progress under constant load while each traffic batch waits for at most one step.
constexpr int kMaxMaintenancePassedOver = 4;
}  // namespace

int SqliteStore::LaneOf(const Op& op) {
  if (op.kind == Op::Kind::kSubmit) return kSubmitLane;
  return op.maintenance ? kMaintenanceLane : kUrgentLane;
}

absl::Status SqliteStore::ForCaller(const absl::Status& s) const {
  const auto clean = s.GetPayload(kSqliteFailure);
  if (!clean.has_value()) return s;
  if (on_error_) on_error_(s);
  return absl::Status(s.code(), std::string(*clean));
}

void SqliteStore::Enqueue(Op op) {
  absl::MutexLock lock(&mu_);
  Lane& lane = lanes_[LaneOf(op)];
  lane.queue.push_back(std::move(op));
  ++lane.enqueued;
}

void SqliteStore::Submit(std::vector<NewJob> jobs, absl::Time now, SubmitDone done) {
  Op op;
  op.kind = Op::Kind::kSubmit;
  op.now = now;
  op.jobs = std::move(jobs);
  op.submit_done = std::move(done);
  Enqueue(std::move(op));
}

void SqliteStore::Apply(std::vector<Transition> transitions, absl::Time now, WriteDone done) {
  Op op;
  op.kind = Op::Kind::kApply;
  op.now = now;
  op.transitions = std::move(transitions);
  op.write_done = std::move(done);
  Enqueue(std::move(op));
}

void SqliteStore::SaveEndpointPause(EndpointPause pause, WriteDone done) {
  Op op;
  op.kind = Op::Kind::kPause;
  op.pause = std::move(pause);
  op.write_done = std::move(done);
  Enqueue(std::move(op));
}

void SqliteStore::SaveBudgetUsage(std::vector<BudgetUsage> usage, WriteDone done) {
  Op op;
  op.kind = Op::Kind::kUsage;
  op.usage = std::move(usage);
  op.write_done = std::move(done);
  Enqueue(std::move(op));
}

void SqliteStore::DeleteEndpointPause(std::string endpoint, WriteDone done) {
  Op op;
  op.kind = Op::Kind::kPause;
  op.pause.endpoint = std::move(endpoint);
  op.resume = true;
  op.write_done = std::move(done);
  Enqueue(std::move(op));
}

absl::Status SqliteStore::RunOnWriter(Task task, bool maintenance) {
  absl::Notification done;
  absl::Status result;
  Op op;
  op.kind = Op::Kind::kTask;
  op.task = std::move(task);
  op.maintenance = maintenance;
  op.write_done = [&](absl::Status s) {
    result = std::move(s);
    done.Notify();
  };
  Enqueue(std::move(op));
  done.WaitForNotification();
  return result;
}

absl::Status SqliteStore::Flush() {
  absl::MutexLock lock(&mu_);
  struct Target {
    const SqliteStore* store;
    uint64_t ops[kLaneCount];
  } target{this, {}};
  for (int l = 0; l < kLaneCount; ++l) target.ops[l] = lanes_[l].enqueued;
  mu_.Await(absl::Condition(
      +[](Target* t) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        for (int l = 0; l < kLaneCount; ++l) {
          if (t->store->lanes_[l].finished < t->ops[l]) return false;
        }
        return true;
      },
      &target));
  absl::Status error = std::move(last_error_);
  last_error_ = absl::OkStatus();
  return error;
}

bool SqliteStore::Lane::empty() const { return head == queue.size(); }

bool SqliteStore::AllLanesEmpty() const {
  for (const Lane& lane : lanes_) {
    if (!lane.empty()) return false;
  }
  return true;
}

bool SqliteStore::HasWorkOrStopping() const { return !AllLanesEmpty() || stopping_; }

void SqliteStore::Lane::DropTaken() {
  // Drop the taken prefix once it is most of the vector: amortized O(1) per op even when the
  // backlog never drains.
  if (head == queue.size() || 2 * head >= queue.size()) {
    queue.erase(queue.begin(), queue.begin() + static_cast<ptrdiff_t>(head));
    head = 0;
  }
}

void SqliteStore::WriterLoop() {
  std::vector<Op> batch;
  for (;;) {
    size_t rows = 0;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &SqliteStore::HasWorkOrStopping));
      if (AllLanesEmpty()) return;  // stopping, done
      Lane& low = lanes_[kMaintenanceLane];
      const bool traffic = !lanes_[kUrgentLane].empty() || !lanes_[kSubmitLane].empty();
      if (!low.empty() && (!traffic || maintenance_passed_over_ >= kMaxMaintenancePassedOver)) {
        // One maintenance step, alone: its transaction's length is its own bound.
        batch.push_back(std::move(low.queue[low.head]));
        ++low.head;
        low.DropTaken();
        rows = 1;
        maintenance_passed_over_ = 0;
      } else {
        if (!low.empty()) ++maintenance_passed_over_;
        // Transitions first, then submits, up to max_batch rows (an op is never split; at
        // least one is taken). With transitions waiting, submits only top the batch up a
        // little, so the transaction, and the wait of the next transition, stay short.
        const bool urgent = !lanes_[kUrgentLane].empty();
        const size_t submit_budget = static_cast<size_t>(urgent ? max_batch_ / 4 : max_batch_);
        for (int l : {kUrgentLane, kSubmitLane}) {
          Lane& lane = lanes_[l];
          const size_t limit = l == kUrgentLane ? static_cast<size_t>(max_batch_) : submit_budget;
          size_t lane_rows = 0;
          size_t end = lane.head;
          while (end < lane.queue.size()) {
            const size_t r = lane.queue[end].Rows();
            if (!batch.empty() && lane_rows + r > limit) break;  // the first op always goes
            lane_rows += r;
            batch.push_back(std::move(lane.queue[end]));
            ++end;
          }
          rows += lane_rows;
          lane.head = end;
          lane.DropTaken();
        }
      }
    }

    const auto started = std::chrono::steady_clock::now();
    const absl::Status status = RunBatch(batch, /*with_submits=*/true);
    const bool only_tasks = std::all_of(batch.begin(), batch.end(),
                                        [](const Op& op) { return op.kind == Op::Kind::kTask; });
    // A failed batch that mixed submits with transitions runs again without its submits: a
    // submit that meets a full store (or a bad row) must not fail the engine's writes, which
    // would stop the process. Submits lose nothing (none was acknowledged). Batches with tasks
    // are not run twice: a task's output is not safe to produce twice.
    absl::Status others = status;
    size_t committed_rows = status.ok() ? rows : 0;
    bool rerun = false;
    if (!status.ok()) {
      size_t submit_rows = 0;
      bool has_task = false;
      for (const Op& op : batch) {
        if (op.kind == Op::Kind::kSubmit) submit_rows += op.Rows();
        if (op.kind == Op::Kind::kTask) has_task = true;
      }
      rerun = !has_task && submit_rows > 0 && submit_rows < rows;
      if (rerun) {
        others = RunBatch(batch, /*with_submits=*/false);
        if (others.ok()) committed_rows = rows - submit_rows;
      }
    }
    if (on_commit_ && committed_rows > 0 && !only_tasks) {  // recovery and purges: no traffic
      on_commit_(absl::FromChrono(std::chrono::steady_clock::now() - started), committed_rows);
    }

    // Callers of Submit/Apply get a clean message; the detail goes to on_error (once per
    // transaction) and to Flush() via last_error_.
    const bool has_traffic = !only_tasks;
    const absl::Status caller_status = status.ok() || !has_traffic ? status : ForCaller(status);
    const absl::Status others_status = !rerun ? caller_status : ForCaller(others);
    // Callbacks run outside the lock, in batch order, after the commit made them durable.
    for (Op& op : batch) {
      switch (op.kind) {
        case Op::Kind::kSubmit:
          if (!status.ok()) {
            op.results.assign(op.jobs.size(), SubmitResult{});
            for (SubmitResult& r : op.results) r.status = caller_status;
          }
          if (op.submit_done) std::move(op.submit_done)(std::move(op.results));
          break;
        case Op::Kind::kApply:
        case Op::Kind::kPause:
        case Op::Kind::kUsage:
        case Op::Kind::kTask:
          if (op.write_done) {
            // Tasks (recovery, purges, pragmas) answer the operator's code paths: the detail.
            std::move(op.write_done)(others.ok()                  ? op.status
                                     : op.kind == Op::Kind::kTask ? others
                                                                  : others_status);
          }
          break;
      }
    }

    const size_t ops = batch.size();
    uint64_t finished[kLaneCount] = {};
    for (const Op& op : batch) ++finished[LaneOf(op)];
    batch.clear();  // callbacks' captures are released outside the lock
    absl::MutexLock lock(&mu_);
    for (int l = 0; l < kLaneCount; ++l) lanes_[l].finished += finished[l];
    stats_.ops += static_cast<int64_t>(ops);
    stats_.rows += static_cast<int64_t>(rows);
    if (status.ok()) {
      ++stats_.commits;
    } else {
      ++stats_.failed_batches;
      last_error_ = status;
      if (others.ok() && committed_rows > 0) ++stats_.commits;  // the batch without its submits
    }
  }
}

absl::Status SqliteStore::RunBatch(std::vector<Op>& batch, bool with_submits) {
  REBOUND_RETURN_IF_ERROR(writer_->Begin());
  absl::Status status = writer_->CapForSubmits(false);
  for (Op& op : batch) {
    if (!status.ok()) break;  // (the cap's switch, or the previous op)
    switch (op.kind) {
      case Op::Kind::kSubmit:
        if (!with_submits) continue;
        // Submits come after the transitions in a batch (lane order): one switch per batch.
        status = writer_->CapForSubmits(true);
        if (status.ok()) status = writer_->ExecSubmit(op);
        break;
      case Op::Kind::kApply:
        status = writer_->ExecApply(op);
        break;
      case Op::Kind::kPause:
        status = writer_->ExecPause(op);
        break;
      case Op::Kind::kUsage:
        status = writer_->ExecUsage(op);
        break;
      case Op::Kind::kTask:
        status = op.task(*writer_);
        break;
    }
  }
  if (status.ok()) status = writer_->Commit();
  if (!status.ok()) writer_->Rollback();
  return status;
}

absl::StatusOr<std::vector<ActiveJob>> SqliteStore::Recover(absl::Time now) {
  std::vector<ActiveJob> jobs;
  REBOUND_RETURN_IF_ERROR(RunOnWriter([&jobs, now](Writer& w) { return w.Recover(now, &jobs); }));
  return jobs;
}

absl::StatusOr<int64_t> SqliteStore::PurgeExpiredKeys(absl::Time cutoff) {
  int64_t total = 0;
  for (;;) {
    int64_t deleted = 0;
    REBOUND_RETURN_IF_ERROR(RunOnWriter(
        [&deleted, cutoff](Writer& w) { return w.PurgeChunk(cutoff, kPurgeChunk, &deleted); }));
    total += deleted;
    if (deleted < kPurgeChunk) return total;
  }
}

absl::StatusOr<int64_t> SqliteStore::PurgeEndedJobs(absl::Time now, int limit) {
  if (limit < 1) return absl::InvalidArgumentError("purge limit must be at least 1");
  int64_t deleted = 0;
  REBOUND_RETURN_IF_ERROR(
      RunOnWriter([&deleted, now, limit](Writer& w) { return w.PurgeJobs(now, limit, &deleted); },
                  /*maintenance=*/true));
  return deleted;
}

absl::StatusOr<int64_t> SqliteStore::ReclaimSpace(int max_pages) {
  if (max_pages < 1) return absl::InvalidArgumentError("max_pages must be at least 1");
  int64_t reclaimed = 0;
  REBOUND_RETURN_IF_ERROR(
      RunOnWriter([&reclaimed, max_pages](Writer& w) { return w.Vacuum(max_pages, &reclaimed); },
                  /*maintenance=*/true));
  return reclaimed;
}

SqliteStore::Stats SqliteStore::GetStats() const {
  absl::MutexLock lock(&mu_);
  Stats stats = stats_;
  const Lane& low = lanes_[kMaintenanceLane];
  stats.maintenance_waiting = static_cast<int64_t>(low.queue.size() - low.head);
  return stats;
}

absl::StatusOr<std::string> SqliteStore::WriterPragma(absl::string_view name) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
      })) {
    return absl::InvalidArgumentError(absl::StrCat("'", name, "' is not a pragma name"));
  }
  std::string value;
  const std::string sql = absl::StrCat("PRAGMA ", name);
  REBOUND_RETURN_IF_ERROR(RunOnWriter([&value, &sql](Writer& w) -> absl::Status {
    REBOUND_ASSIGN_OR_RETURN(value, QueryText(w.db(), sql));
    return absl::OkStatus();
  }));
  return value;
}

// --- Reads ---

namespace {

// Runs `body` inside one read transaction, so its queries see one snapshot.
template <typename T, typename F>
absl::StatusOr<T> InReadTransaction(ReadConn& conn, F body) {
  REBOUND_RETURN_IF_ERROR(conn.Exec("BEGIN"));
  absl::StatusOr<T> result = body();
  // Ending a read transaction only releases the snapshot; a failure leaves the connection in
  // a transaction, which the pool then discards.
  const absl::Status end = conn.Exec("COMMIT");
  if (result.ok() && !end.ok()) return end;
  return result;
}

absl::Status ReadLabels(ReadConn& conn, JobId id, std::map<std::string, std::string>* labels) {
  REBOUND_ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                           conn.Stmt("SELECT key, value FROM job_labels WHERE job_id = ?1"));
  Run q(conn.db(), stmt);
  q.Int(id);
  labels->clear();
  for (;;) {
    REBOUND_ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) return absl::OkStatus();
    labels->emplace(q.GetStr(0), q.GetStr(1));
  }
}

absl::Status ReadAttempts(ReadConn& conn, JobId id, std::vector<AttemptRecord>* attempts) {
  REBOUND_ASSIGN_OR_RETURN(
      sqlite3_stmt * stmt,
      conn.Stmt("SELECT number, started_us, duration_us, http_status, transport_error, "
                "classification, decision, next_attempt_us FROM attempts WHERE job_id = ?1 "
                "ORDER BY number"));
  Run q(conn.db(), stmt);
  q.Int(id);
  attempts->clear();
  for (;;) {
    REBOUND_ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) return absl::OkStatus();
    AttemptRecord a;
    a.number = q.GetInt32(0);
    a.started_at = DecodeTime(q.GetInt(1));
    a.duration = absl::Microseconds(q.GetInt(2));
    a.http_status = q.GetInt32(3);
    a.transport_error = q.GetStr(4);
    a.classification = q.GetStr(5);
    a.decision = q.GetStr(6);
    a.next_attempt_at = q.GetTime(7, absl::InfinitePast());
    attempts->push_back(std::move(a));
  }
}

// The job with its request body (and last response when `with_response`), without labels.
absl::StatusOr<JobRecord> ReadJob(ReadConn& conn, JobId id, bool with_response) {
  const std::string sql =
      with_response
          ? absl::StrCat("SELECT ", kJobColumns,
                         ", p.body, r.body FROM jobs j LEFT JOIN job_payloads p ON p.job_id = "
                         "j.id LEFT JOIN job_responses r ON r.job_id = j.id WHERE j.id = ?1")
          : absl::StrCat("SELECT ", kJobColumns,
                         ", p.body FROM jobs j LEFT JOIN job_payloads p ON p.job_id = j.id "
                         "WHERE j.id = ?1");
  REBOUND_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn.Stmt(sql));
  Run q(conn.db(), stmt);
  q.Int(id);
  REBOUND_ASSIGN_OR_RETURN(const bool row, q.Step());
  if (!row) return JobNotFound(id);
  JobRecord job;
  REBOUND_RETURN_IF_ERROR(ReadJobRow(q, /*with_body=*/true, &job));
  if (with_response) job.last_response_body = q.GetStr(kColResponse);
  return job;
}

}  // namespace

absl::StatusOr<JobRecord> SqliteStore::Get(const std::string& tenant, JobId id,
                                           bool with_attempts) {
  absl::StatusOr<JobRecord> result = [&]() -> absl::StatusOr<JobRecord> {
    REBOUND_ASSIGN_OR_RETURN(ReadPool::Lease lease, reads_->Acquire());
    ReadConn& conn = *lease;
    return InReadTransaction<JobRecord>(conn, [&]() -> absl::StatusOr<JobRecord> {
      REBOUND_ASSIGN_OR_RETURN(JobRecord job, ReadJob(conn, id, /*with_response=*/true));
      // Another tenant's job looks exactly like a missing one.
      if (job.spec.tenant != tenant) return JobNotFound(id);
      REBOUND_RETURN_IF_ERROR(ReadLabels(conn, id, &job.spec.labels));
      if (with_attempts) REBOUND_RETURN_IF_ERROR(ReadAttempts(conn, id, &job.attempts));
      return job;
    });
  }();
  // A SQLite failure reaches the caller with a clean message; on_error gets the detail.
  if (!result.ok()) return ForCaller(result.status());
  return result;
}

absl::StatusOr<common::JobSpec> SqliteStore::LoadSpec(JobId id) {
  absl::StatusOr<JobSpec> result = [&]() -> absl::StatusOr<JobSpec> {
    REBOUND_ASSIGN_OR_RETURN(ReadPool::Lease lease, reads_->Acquire());
    ReadConn& conn = *lease;
    return InReadTransaction<JobSpec>(conn, [&]() -> absl::StatusOr<JobSpec> {
      REBOUND_ASSIGN_OR_RETURN(JobRecord job, ReadJob(conn, id, /*with_response=*/false));
      REBOUND_RETURN_IF_ERROR(ReadLabels(conn, id, &job.spec.labels));
      return std::move(job.spec);
    });
  }();
  // A SQLite failure reaches the caller with a clean message; on_error gets the detail.
  if (!result.ok()) return ForCaller(result.status());
  return result;
}

absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> SqliteStore::CountDeadLetters() {
  absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> result =
      [&]() -> absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> {
    REBOUND_ASSIGN_OR_RETURN(ReadPool::Lease lease, reads_->Acquire());
    ReadConn& conn = *lease;
    REBOUND_ASSIGN_OR_RETURN(
        sqlite3_stmt * stmt,
        conn.Stmt(absl::StrCat("SELECT endpoint, COUNT(*) FROM jobs WHERE state IN (",
                               static_cast<int>(JobState::kFailed), ", ",
                               static_cast<int>(JobState::kExhausted), ") GROUP BY endpoint")));
    Run run(conn.db(), stmt);
    std::vector<std::pair<std::string, int64_t>> counts;
    for (;;) {
      REBOUND_ASSIGN_OR_RETURN(const bool row, run.Step());
      if (!row) break;
      counts.emplace_back(run.GetStr(0), run.GetInt(1));
    }
    return counts;
  }();
  // A SQLite failure reaches the caller with a clean message; on_error gets the detail.
  if (!result.ok()) return ForCaller(result.status());
  return result;
}

absl::StatusOr<std::vector<EndpointPause>> SqliteStore::LoadEndpointPauses() {
  absl::StatusOr<std::vector<EndpointPause>> result =
      [&]() -> absl::StatusOr<std::vector<EndpointPause>> {
    REBOUND_ASSIGN_OR_RETURN(ReadPool::Lease lease, reads_->Acquire());
    ReadConn& conn = *lease;
    REBOUND_ASSIGN_OR_RETURN(
        sqlite3_stmt * stmt,
        conn.Stmt("SELECT endpoint, until_us, reason, paused_us FROM endpoint_pauses "
                  "ORDER BY endpoint"));
    Run run(conn.db(), stmt);
    std::vector<EndpointPause> pauses;
    for (;;) {
      REBOUND_ASSIGN_OR_RETURN(const bool row, run.Step());
      if (!row) break;
      // As stored: any integer decodes to a time, and the engine judges names and times.
      EndpointPause p;
      p.endpoint = run.GetStr(0);
      p.until = run.GetTime(1, absl::InfiniteFuture());
      p.reason = run.GetStr(2);
      p.paused_at = run.GetTime(3, absl::UnixEpoch());
      pauses.push_back(std::move(p));
    }
    return pauses;
  }();
  // A SQLite failure reaches the caller with a clean message; on_error gets the detail.
  if (!result.ok()) return ForCaller(result.status());
  return result;
}

absl::StatusOr<std::vector<BudgetUsage>> SqliteStore::LoadBudgetUsage() {
  absl::StatusOr<std::vector<BudgetUsage>> result =
      [&]() -> absl::StatusOr<std::vector<BudgetUsage>> {
    REBOUND_ASSIGN_OR_RETURN(ReadPool::Lease lease, reads_->Acquire());
    ReadConn& conn = *lease;
    REBOUND_ASSIGN_OR_RETURN(
        sqlite3_stmt * stmt,
        conn.Stmt(
            "SELECT budget, scope, period_us, used FROM budget_usage ORDER BY budget, scope"));
    Run run(conn.db(), stmt);
    std::vector<BudgetUsage> usage;
    for (;;) {
      REBOUND_ASSIGN_OR_RETURN(const bool row, run.Step());
      if (!row) break;
      // As stored: the engine ignores budgets no longer configured and periods that are over.
      BudgetUsage u;
      u.budget = run.GetStr(0);
      u.scope = run.GetStr(1);
      u.period_start = run.GetTime(2, absl::UnixEpoch());
      u.used = run.GetInt(3);
      usage.push_back(std::move(u));
    }
    return usage;
  }();
  if (!result.ok()) return ForCaller(result.status());
  return result;
}

absl::StatusOr<StoreUsage> SqliteStore::Usage() {
  absl::StatusOr<StoreUsage> result = [&]() -> absl::StatusOr<StoreUsage> {
    REBOUND_ASSIGN_OR_RETURN(ReadPool::Lease lease, reads_->Acquire());
    ReadConn& conn = *lease;
    return InReadTransaction<StoreUsage>(conn, [&]() -> absl::StatusOr<StoreUsage> {
      auto number = [&](const std::string& sql) -> absl::StatusOr<int64_t> {
        REBOUND_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn.Stmt(sql));
        Run q(conn.db(), stmt);
        REBOUND_ASSIGN_OR_RETURN(const bool row, q.Step());
        if (!row) return absl::InternalError(absl::StrCat("\"", sql, "\" returned no row"));
        return q.GetInt(0);
      };
      StoreUsage u;
      // The first two walk small partial indexes (INDEXED BY: the planner would rather scan a
      // covering index of every job); the total counts the smallest index's cells.
      REBOUND_ASSIGN_OR_RETURN(
          u.active_jobs,
          number("SELECT COUNT(*) FROM jobs INDEXED BY jobs_active WHERE state < 5"));
      REBOUND_ASSIGN_OR_RETURN(
          u.dead_letter_jobs,
          number("SELECT COUNT(*) FROM jobs INDEXED BY jobs_dead_letters WHERE state IN (6, 7)"));
      REBOUND_ASSIGN_OR_RETURN(const int64_t total, number("SELECT COUNT(*) FROM jobs"));
      u.finished_jobs = total - u.active_jobs - u.dead_letter_jobs;
      REBOUND_ASSIGN_OR_RETURN(const int64_t page_size, number("PRAGMA page_size"));
      REBOUND_ASSIGN_OR_RETURN(const int64_t pages, number("PRAGMA page_count"));
      REBOUND_ASSIGN_OR_RETURN(const int64_t free_pages, number("PRAGMA freelist_count"));
      REBOUND_ASSIGN_OR_RETURN(const int64_t auto_vacuum, number("PRAGMA auto_vacuum"));
      u.file_bytes = pages * page_size;
      u.free_bytes = free_pages * page_size;
      u.incremental_vacuum = auto_vacuum == 2;
      return u;
    });
  }();
  if (!result.ok()) return ForCaller(result.status());
  return result;
}

namespace {

// One List statement: its text (statements are cached per read connection by text, so the
// shapes are kept few) and its parameters in the order the text names them.
struct ListQuery {
  struct Param {
    bool is_text;
    std::string text;
    int64_t number;
  };
  std::string sql;
  std::vector<Param> params;
  int page_size = 0;             // jobs per page; the statement returns one more, if there is one
  bool matches_nothing = false;  // the filters exclude every job: there is no statement
};

constexpr int kQueuedState = static_cast<int>(JobState::kQueued);
constexpr int kWaitingRetryState = static_cast<int>(JobState::kWaitingRetry);
// jobs_retry_due is a partial index on `state = 4`; the queries that use it spell the literal.
static_assert(kWaitingRetryState == 4, "jobs_retry_due says state = 4");

// How a term on WAITING_RETRY rows' due time is written (ListFilter::due_by, due_after).
enum class DueForm {
  kRow,    // checked on each row: (NULL or <= due_by) and > due_after
  kRange,  // a range of jobs_retry_due: <= due_by and > due_after (NULL rows not included)
  kNull,   // jobs_retry_due's rows without a due time (due at InfinitePast)
};

// Shapes, in order of preference: (a) a label or ordering key: that index (the existing walk);
// (b) an own wait reason: jobs_waiting, which holds only jobs that wait; (c) states (explicit or
// implied by a due filter): each state's newest page through jobs_by_tenant_state, or for
// WAITING_RETRY due by a time, jobs_retry_due's range of due jobs, merged; (d) the tenant's jobs
// newest first. Every other filter is a term on the rows walked.
ListQuery BuildListQuery(const std::string& tenant, const ListFilter& filter, int page_size,
                         JobId before) {
  ListQuery query;
  query.page_size = page_size;
  auto text = [&query](absl::string_view v) {
    query.params.push_back(ListQuery::Param{true, std::string(v), 0});
  };
  auto number = [&query](int64_t v) { query.params.push_back(ListQuery::Param{false, "", v}); };

  // Distinct states, so the number of statement shapes stays small.
  std::vector<int> states;
  for (const JobState s : filter.states) states.push_back(static_cast<int>(s));
  std::sort(states.begin(), states.end());
  states.erase(std::unique(states.begin(), states.end()), states.end());
  // A due filter holds only for WAITING_RETRY jobs and (due_by) QUEUED ones: it narrows the
  // states to those.
  const bool due_by = filter.due_by != absl::InfiniteFuture();
  const bool due_after = filter.due_after != absl::InfinitePast();
  if (due_by || due_after) {
    std::vector<int> allowed;
    if (!due_after) allowed.push_back(kQueuedState);
    allowed.push_back(kWaitingRetryState);
    if (!states.empty()) {
      std::vector<int> both;
      std::set_intersection(states.begin(), states.end(), allowed.begin(), allowed.end(),
                            std::back_inserter(both));
      allowed = std::move(both);
    }
    states = std::move(allowed);
    if (states.empty()) {
      query.matches_nothing = true;
      return query;
    }
  }
  const auto has_state = [&states](int s) {
    return std::binary_search(states.begin(), states.end(), s);
  };
  // Distinct endpoints, padded to a power of two by repeating the last (IN lists of few sizes).
  std::vector<std::string> endpoints = filter.endpoints;
  std::sort(endpoints.begin(), endpoints.end());
  endpoints.erase(std::unique(endpoints.begin(), endpoints.end()), endpoints.end());
  if (!endpoints.empty()) {
    size_t padded = 1;
    while (padded < endpoints.size()) padded *= 2;
    endpoints.resize(padded, endpoints.back());
  }
  const bool own_wait =
      filter.wait_reason.has_value() && *filter.wait_reason != common::WaitReason::kNone;
  const bool by_label = !filter.label_key.empty() && !filter.label_value.empty();
  const absl::string_view id_column = by_label ? "l.job_id" : "j.id";

  // The terms on `table`'s rows ("" or "j.") that every shape applies. `state`: the one state
  // the rows walked have, or 0 when they may have any of `states`.
  auto common_terms = [&](absl::string_view table, absl::string_view id, int state, DueForm due) {
    std::string terms;
    if (!filter.endpoint.empty()) {
      absl::StrAppend(&terms, " AND ", table, "endpoint = ?");
      text(filter.endpoint);
    }
    if (!endpoints.empty()) {
      absl::StrAppend(&terms, " AND ", table, "endpoint IN (?");
      for (size_t i = 1; i < endpoints.size(); ++i) absl::StrAppend(&terms, ", ?");
      absl::StrAppend(&terms, ")");
      for (const std::string& e : endpoints) text(e);
    }
    if (!filter.ordering_key.empty()) {
      absl::StrAppend(&terms, " AND ", table, "ordering_key = ? AND ", table, "ordering_key <> ''");
      text(filter.ordering_key);
    }
    if (filter.wait_reason.has_value()) {
      absl::StrAppend(&terms, " AND ", table, "wait_reason = ?");
      number(static_cast<int>(*filter.wait_reason));
      // The partial index's condition, spelled as jobs_waiting spells it.
      if (own_wait) absl::StrAppend(&terms, " AND ", table, "wait_reason <> 0");
    }
    if (filter.retries_only) {
      absl::StrAppend(&terms, " AND ", table, "attempt_count > ", table, "budget_base");
    }
    const bool retry_rows =
        state == 0 ? has_state(kWaitingRetryState) : state == kWaitingRetryState;
    if ((due_by || due_after) && retry_rows) {
      std::vector<std::string> due_terms;
      if (due == DueForm::kNull) {
        due_terms.push_back(absl::StrCat(table, "next_attempt_us IS NULL"));
      } else {
        if (due_after) {
          due_terms.push_back(absl::StrCat(table, "next_attempt_us > ?"));
          number(EncodeTime(filter.due_after));
        }
        if (due_by) {
          due_terms.push_back(due == DueForm::kRange
                                  ? absl::StrCat(table, "next_attempt_us <= ?")
                                  : absl::StrCat("(", table, "next_attempt_us IS NULL OR ", table,
                                                 "next_attempt_us <= ?)"));
          number(EncodeTime(filter.due_by));
        }
      }
      const std::string joined = absl::StrJoin(due_terms, " AND ");
      if (state == 0 && has_state(kQueuedState)) {
        // Rows of both states: QUEUED ones are due whatever their due time column says.
        absl::StrAppend(&terms, " AND (", table, "state = ", kQueuedState, " OR (", joined, "))");
      } else {
        absl::StrAppend(&terms, " AND ", joined);
      }
    }
    if (before > 0) {
      absl::StrAppend(&terms, " AND ", id, " < ?");
      number(before);
    }
    return terms;
  };

  std::string& sql = query.sql;
  sql = absl::StrCat("SELECT ", kJobColumns, " FROM ");
  const bool by_index_of_key = !filter.label_key.empty() || !filter.ordering_key.empty();
  if (!by_index_of_key && !own_wait && !states.empty()) {
    // By state: each state's newest page, merged. Left to itself the planner walks every job
    // of the tenant newest first, checking each one's state: a scan of the whole store when the
    // asked-for states are rare or empty.
    absl::StrAppend(&sql, "jobs j LEFT JOIN job_payloads p ON p.job_id = j.id WHERE j.id IN (");
    bool first = true;
    auto member = [&](absl::string_view index, int state, DueForm due) {
      if (!first) absl::StrAppend(&sql, " UNION ALL ");
      first = false;
      absl::StrAppend(&sql, "SELECT id FROM (SELECT id FROM jobs INDEXED BY ", index,
                      " WHERE tenant = ? AND state = ");
      text(tenant);
      if (due == DueForm::kRow) {
        absl::StrAppend(&sql, "?");
        number(state);
      } else {
        absl::StrAppend(&sql, state);  // the partial index's literal
      }
      absl::StrAppend(&sql, common_terms("", "id", state, due), " ORDER BY id DESC LIMIT ?)");
      number(page_size + 1);
    };
    for (const int state : states) {
      if (state == kWaitingRetryState && due_by) {
        // Due retries are few next to those still waiting: a range of the due-time index.
        member("jobs_retry_due", state, DueForm::kRange);
        if (!due_after) member("jobs_retry_due", state, DueForm::kNull);
      } else {
        member("jobs_by_tenant_state", state, DueForm::kRow);
      }
    }
    absl::StrAppend(&sql, ")");
  } else {
    if (by_label) {
      absl::StrAppend(&sql,
                      "job_labels l CROSS JOIN jobs j ON j.id = l.job_id AND l.key = ? "
                      "AND l.value = ?");
      text(filter.label_key);
      text(filter.label_value);
    } else if (!filter.label_key.empty()) {
      absl::StrAppend(&sql, "jobs j JOIN job_labels l ON l.job_id = j.id AND l.key = ?");
      text(filter.label_key);
    } else if (own_wait && filter.ordering_key.empty()) {
      // Only jobs that wait are in it: a walk of those with this reason, newest first.
      absl::StrAppend(&sql, "jobs j INDEXED BY jobs_waiting");
    } else {
      absl::StrAppend(&sql, "jobs j");
    }
    absl::StrAppend(&sql, " LEFT JOIN job_payloads p ON p.job_id = j.id WHERE j.tenant = ?");
    text(tenant);
    if (!states.empty()) {
      absl::StrAppend(&sql, " AND j.state IN (?");
      for (size_t i = 1; i < states.size(); ++i) absl::StrAppend(&sql, ", ?");
      absl::StrAppend(&sql, ")");
      for (const int st : states) number(st);
    }
    absl::StrAppend(&sql, common_terms("j.", id_column, 0, DueForm::kRow));
  }
  absl::StrAppend(&sql, " ORDER BY ", id_column, " DESC LIMIT ?");
  number(page_size + 1);  // one more than asked: is there a next page?
  return query;
}

void BindAll(Run& q, const ListQuery& query) {
  for (const ListQuery::Param& param : query.params) {
    if (param.is_text) {
      q.Text(param.text);
    } else {
      q.Int(param.number);
    }
  }
}

// page_size as List takes it (<= 0: the default; at most kMaxPageSize) and the page's start.
absl::StatusOr<ListQuery> ListQueryFor(const std::string& tenant, const ListFilter& filter,
                                       int page_size, const std::string& page_token) {
  if (page_size <= 0) page_size = kDefaultPageSize;
  page_size = std::min(page_size, kMaxPageSize);
  JobId before = 0;  // 0: from the newest
  if (!page_token.empty()) {
    REBOUND_ASSIGN_OR_RETURN(before, DecodePageToken(page_token));
  }
  return BuildListQuery(tenant, filter, page_size, before);
}

}  // namespace

absl::StatusOr<ListPage> SqliteStore::List(const std::string& tenant, const ListFilter& filter,
                                           int page_size, const std::string& page_token) {
  absl::StatusOr<ListPage> result = [&]() -> absl::StatusOr<ListPage> {
    REBOUND_ASSIGN_OR_RETURN(const ListQuery query,
                             ListQueryFor(tenant, filter, page_size, page_token));
    if (query.matches_nothing) return ListPage{};
    REBOUND_ASSIGN_OR_RETURN(ReadPool::Lease lease, reads_->Acquire());
    ReadConn& conn = *lease;
    return InReadTransaction<ListPage>(conn, [&]() -> absl::StatusOr<ListPage> {
      REBOUND_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn.Stmt(query.sql));
      ListPage page;
      {
        Run q(conn.db(), stmt);
        BindAll(q, query);
        for (;;) {
          REBOUND_ASSIGN_OR_RETURN(const bool row, q.Step());
          if (!row) break;
          if (page.jobs.size() == static_cast<size_t>(query.page_size)) {
            page.next_page_token = EncodePageToken(page.jobs.back().id);
            break;
          }
          JobRecord job;
          REBOUND_RETURN_IF_ERROR(ReadJobRow(q, /*with_body=*/false, &job));
          page.jobs.push_back(std::move(job));
        }
      }
      for (JobRecord& job : page.jobs) {
        REBOUND_RETURN_IF_ERROR(ReadLabels(conn, job.id, &job.spec.labels));
      }
      return page;
    });
  }();
  // A SQLite failure reaches the caller with a clean message; on_error gets the detail.
  if (!result.ok()) return ForCaller(result.status());
  return result;
}

absl::StatusOr<std::string> SqliteStore::ExplainList(const std::string& tenant,
                                                     const ListFilter& filter, int page_size,
                                                     const std::string& page_token) {
  absl::StatusOr<std::string> result = [&]() -> absl::StatusOr<std::string> {
    REBOUND_ASSIGN_OR_RETURN(const ListQuery query,
                             ListQueryFor(tenant, filter, page_size, page_token));
    if (query.matches_nothing) return std::string();
    REBOUND_ASSIGN_OR_RETURN(ReadPool::Lease lease, reads_->Acquire());
    ReadConn& conn = *lease;
    REBOUND_ASSIGN_OR_RETURN(StmtPtr stmt, Prepare(conn.db(), "EXPLAIN QUERY PLAN " + query.sql,
                                                   /*persistent=*/false));
    Run q(conn.db(), stmt.get());
    BindAll(q, query);
    std::vector<std::string> lines;
    for (;;) {
      REBOUND_ASSIGN_OR_RETURN(const bool row, q.Step());
      if (!row) break;
      lines.push_back(q.GetStr(3));  // id, parent, notused, detail
    }
    return absl::StrJoin(lines, "\n");
  }();
  if (!result.ok()) return ForCaller(result.status());
  return result;
}

}  // namespace rebound::store
