// rebound-store-fill: bench-only tools for the retention scenario (docs/benchmarks.md,
// "Retention").
//
//   rebound-store-fill fill --db PATH --jobs N [--due M] [--keys K]
//     Creates (or extends) a store at PATH with N ended jobs, written straight with SQLite in
//     big transactions with journal_mode=OFF and synchronous=OFF: a bench fixture, never a way
//     to write a live store. The schema is the server's own (SqliteStore::Open creates it
//     first). Jobs ended over the last 7 days (90% SUCCEEDED, 10% FAILED), each with a 256-byte
//     body, one attempt and a 64-byte response; the newest K keep their idempotency key (a day
//     of traffic at 10M jobs a week), the M oldest are already past their purge time.
//
//   rebound-store-fill purge --db PATH [--submits N] [--step S] [--at DURATION]
//     Opens the store as the server does and measures, in one process and without gRPC, the
//     durable latency of single-job submits with no purge running, then while one thread
//     purges every job due at now + --at in steps of --step (as the server's maintenance pass
//     does), then the purge's rate and the space it returned. Prints one JSON line.
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "server/common/job.h"
#include "server/store/sqlite_store.h"

namespace {

using rebound::common::JobState;

int Fail(const std::string& what) {
  std::fprintf(stderr, "rebound-store-fill: %s\n", what.c_str());
  return 1;
}

bool Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) == SQLITE_OK) return true;
  std::fprintf(stderr, "rebound-store-fill: %s: %s\n", sql.c_str(), err != nullptr ? err : "?");
  sqlite3_free(err);
  return false;
}

int Fill(const std::string& path, int64_t jobs, int64_t due, int64_t keys) {
  {
    // The server's schema, created (or migrated) by the server's own code.
    rebound::store::SqliteOptions options;
    options.path = path;
    options.quick_check = false;
    auto store = rebound::store::SqliteStore::Open(options);
    if (!store.ok()) return Fail(store.status().ToString());
  }
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) return Fail("cannot open " + path);
  const auto started = std::chrono::steady_clock::now();
  if (!Exec(db, "PRAGMA journal_mode = OFF") || !Exec(db, "PRAGMA synchronous = OFF") ||
      !Exec(db, "PRAGMA cache_size = -262144")) {
    return 1;
  }
  struct Stmt {
    sqlite3_stmt* s = nullptr;
    ~Stmt() { sqlite3_finalize(s); }
  } job, payload, response, attempt, key;
  const std::pair<Stmt*, const char*> statements[] = {
      {&job,
       "INSERT INTO jobs (tenant, state, endpoint, policy, ordering_key, attempt_count, "
       "budget_base, created_us, updated_us, finished_us, last_http_status, idem_key, "
       "fingerprint, method, path, query, correlation_id, last_decision, first_attempt_us, "
       "purge_us) VALUES ('default', ?1, 'lms', '', '', 1, 0, ?2, ?3, ?3, ?4, ?5, "
       "'0123456789abcdef0123456789abcdef', 'POST', '/api/v1/courses/7/grades', '', '', ?6, "
       "?2, ?7)"},
      {&payload, "INSERT INTO job_payloads (job_id, headers, body) VALUES (?1, x'0100', ?2)"},
      {&response, "INSERT INTO job_responses (job_id, body) VALUES (?1, ?2)"},
      {&attempt,
       "INSERT INTO attempts (job_id, number, started_us, duration_us, http_status, "
       "transport_error, classification, decision, next_attempt_us) VALUES (?1, 1, ?2, 12000, "
       "?3, '', ?4, ?5, NULL)"},
      {&key,
       "INSERT INTO idempotency (tenant, idem_key, job_id, fingerprint, expires_us) VALUES "
       "('default', ?1, ?2, '0123456789abcdef0123456789abcdef', ?3)"},
  };
  for (const auto& [stmt, sql] : statements) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt->s, nullptr) != SQLITE_OK) {
      return Fail(absl::StrCat(sql, ": ", sqlite3_errmsg(db)));
    }
  }
  const std::string body(256, 'b');
  const std::string answer(64, 'r');
  const int64_t now_us = absl::ToUnixMicros(absl::Now());
  const int64_t week_us = int64_t{7} * 24 * 3600 * 1'000'000;
  constexpr int64_t kPerTransaction = 200'000;
  auto step = [&](sqlite3_stmt* s) {
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE;
  };
  for (int64_t i = 0; i < jobs; ++i) {
    if (i % kPerTransaction == 0 && !Exec(db, "BEGIN")) return 1;
    // Oldest first: finished times spread over the last week, purge times a week later, the
    // `due` oldest a minute in the past.
    const int64_t finished = now_us - week_us + week_us * i / std::max<int64_t>(jobs, 1);
    const bool failed = i % 10 == 9;
    const int64_t purge = i < due ? now_us - 60'000'000 + i : finished + (failed ? 4 : 1) * week_us;
    const std::string idem = absl::StrFormat("fill-%012d", i);
    sqlite3_bind_int(job.s, 1, static_cast<int>(failed ? JobState::kFailed : JobState::kSucceeded));
    sqlite3_bind_int64(job.s, 2, finished - 50'000);
    sqlite3_bind_int64(job.s, 3, finished);
    sqlite3_bind_int(job.s, 4, failed ? 422 : 200);
    sqlite3_bind_text(job.s, 5, idem.data(), static_cast<int>(idem.size()), SQLITE_STATIC);
    const char* decision = failed ? "stop: 422 default permanent" : "success: 200 default";
    sqlite3_bind_text(job.s, 6, decision, -1, SQLITE_STATIC);
    sqlite3_bind_int64(job.s, 7, purge);
    if (!step(job.s)) return Fail(sqlite3_errmsg(db));
    const int64_t id = sqlite3_last_insert_rowid(db);
    sqlite3_bind_int64(payload.s, 1, id);
    sqlite3_bind_blob(payload.s, 2, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
    sqlite3_bind_int64(response.s, 1, id);
    sqlite3_bind_blob(response.s, 2, answer.data(), static_cast<int>(answer.size()), SQLITE_STATIC);
    sqlite3_bind_int64(attempt.s, 1, id);
    sqlite3_bind_int64(attempt.s, 2, finished - 12'000);
    sqlite3_bind_int(attempt.s, 3, failed ? 422 : 200);
    sqlite3_bind_text(attempt.s, 4, failed ? "permanent" : "success", -1, SQLITE_STATIC);
    sqlite3_bind_text(attempt.s, 5, decision, -1, SQLITE_STATIC);
    if (!step(payload.s) || !step(response.s) || !step(attempt.s)) {
      return Fail(sqlite3_errmsg(db));
    }
    if (i >= jobs - keys) {
      sqlite3_bind_text(key.s, 1, idem.data(), static_cast<int>(idem.size()), SQLITE_STATIC);
      sqlite3_bind_int64(key.s, 2, id);
      sqlite3_bind_int64(key.s, 3, finished);
      if (!step(key.s)) return Fail(sqlite3_errmsg(db));
    }
    if ((i + 1) % kPerTransaction == 0 || i + 1 == jobs) {
      if (!Exec(db, "COMMIT")) return 1;
      std::fprintf(stderr, "\rfilled %lld/%lld", static_cast<long long>(i + 1),
                   static_cast<long long>(jobs));
    }
  }
  for (Stmt* s : {&job, &payload, &response, &attempt, &key}) {
    sqlite3_finalize(s->s);
    s->s = nullptr;
  }
  if (!Exec(db, "PRAGMA journal_mode = WAL")) return 1;
  sqlite3_close(db);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("%s\n", nlohmann::json{{"jobs", jobs},
                                     {"due", due},
                                     {"keys", keys},
                                     {"seconds", seconds},
                                     {"rows_per_second", static_cast<double>(jobs) / seconds}}
                          .dump()
                          .c_str());
  return 0;
}

// Durable single-job submits, one after another; returns each one's latency in microseconds.
std::vector<double> TimedSubmits(rebound::store::SqliteStore& store, int n, const std::string& tag,
                                 const std::atomic<bool>* until_false = nullptr) {
  std::vector<double> us;
  for (int i = 0; i < n || (until_false != nullptr && until_false->load()); ++i) {
    if (until_false != nullptr && !until_false->load() && i >= n) break;
    rebound::store::NewJob job;
    job.spec.tenant = "default";
    job.spec.idempotency_key = absl::StrCat(tag, "-", i);
    job.spec.endpoint = "lms";
    job.spec.method = "POST";
    job.spec.path = "/api/v1/courses/7/grades";
    job.spec.body = std::string(256, 'b');
    job.fingerprint = rebound::common::Fingerprint(job.spec);
    absl::Notification done;
    const auto t0 = std::chrono::steady_clock::now();
    store.Submit({std::move(job)}, absl::Now(),
                 [&done](std::vector<rebound::store::SubmitResult>) { done.Notify(); });
    done.WaitForNotification();
    us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    if (until_false != nullptr && !until_false->load() && i + 1 >= n) break;
  }
  return us;
}

nlohmann::json Percentiles(std::vector<double> v) {
  if (v.empty()) return nlohmann::json::object();
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))]; };
  return {{"count", v.size()},
          {"p50_ms", at(0.5) / 1e3},
          {"p99_ms", at(0.99) / 1e3},
          {"max_ms", v.back() / 1e3}};
}

int Purge(const std::string& path, int submits, absl::Duration at, int step) {
  rebound::store::SqliteOptions options;
  options.path = path;
  options.quick_check = false;
  auto opened = rebound::store::SqliteStore::Open(options);
  if (!opened.ok()) return Fail(opened.status().ToString());
  rebound::store::SqliteStore& store = **opened;
  auto before = store.Usage();
  if (!before.ok()) return Fail(before.status().ToString());

  const std::vector<double> quiet = TimedSubmits(store, submits, "quiet");

  std::atomic<bool> purging{true};
  int64_t purged = 0;
  double purge_seconds = 0;
  std::thread purger([&] {
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      auto n = store.PurgeEndedJobs(absl::Now() + at, step);
      if (!n.ok()) {
        Fail(n.status().ToString());
        break;
      }
      purged += *n;
      if (*n < step) break;
    }
    purge_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    purging = false;
  });
  // Submits for as long as the purge runs (at least `submits` of them).
  const std::vector<double> during = TimedSubmits(store, submits, "during", &purging);
  purger.join();

  const auto t1 = std::chrono::steady_clock::now();
  int64_t pages = 0;
  for (;;) {
    auto n = store.ReclaimSpace(512);
    if (!n.ok()) return Fail(n.status().ToString());
    pages += *n;
    if (*n < 512) break;
  }
  const double vacuum_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  const auto t2 = std::chrono::steady_clock::now();
  auto after = store.Usage();
  if (!after.ok()) return Fail(after.status().ToString());
  const double usage_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t2).count();
  std::printf("%s\n",
              nlohmann::json{{"jobs_before", before->finished_jobs + before->dead_letter_jobs},
                             {"purged", purged},
                             {"purge_seconds", purge_seconds},
                             {"purged_per_second",
                              static_cast<double>(purged) / std::max(purge_seconds, 1e-9)},
                             {"submit_quiet", Percentiles(quiet)},
                             {"submit_during_purge", Percentiles(during)},
                             {"vacuum_pages", pages},
                             {"vacuum_seconds", vacuum_seconds},
                             {"file_bytes_before", before->file_bytes},
                             {"file_bytes_after", after->file_bytes},
                             {"usage_seconds", usage_seconds}}
                  .dump()
                  .c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Bench fixtures for the retention scenario (docs/benchmarks.md)"};
  app.require_subcommand(1);
  std::string db;
  int64_t jobs = 0, due = 0, keys = 1'430'000;
  int submits = 2000;
  int step = 64;
  std::string at = "0s";
  auto* fill = app.add_subcommand("fill", "write N ended jobs in bulk");
  fill->add_option("--db", db, "database path")->required();
  fill->add_option("--jobs", jobs, "ended jobs to write")->required();
  fill->add_option("--due", due, "of them, already past their purge time");
  fill->add_option("--keys", keys, "of them, the newest that keep their idempotency key");
  auto* purge = app.add_subcommand("purge", "measure a purge and submits beside it");
  purge->add_option("--db", db, "database path")->required();
  purge->add_option("--submits", submits, "submits measured in each phase");
  purge->add_option("--step", step, "jobs per purge transaction (the server's kPurgeBatch)");
  purge->add_option("--at", at, "purge as if it were now + this (e.g. 24h)");
  CLI11_PARSE(app, argc, argv);
  if (fill->parsed()) return Fill(db, jobs, due, std::min(keys, jobs));
  absl::Duration offset;
  if (!absl::ParseDuration(at, &offset)) return Fail("--at: not a duration: " + at);
  return Purge(db, submits, offset, std::max(step, 1));
}
