// Small hand-written fakes for engine tests: an in-memory store whose commits happen only when
// the test says so, and an executor whose attempts complete only when the test says so.
#ifndef REBOUND_TESTS_ENGINE_FAKES_H_
#define REBOUND_TESTS_ENGINE_FAKES_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/http/executor.h"
#include "server/store/job_store.h"

namespace rebound::testing {

// Thread-safe; commits are applied and acknowledged by CommitAll().
class FakeStore final : public store::JobStore {
 public:
  void Submit(std::vector<store::NewJob> jobs, absl::Time now, SubmitDone done) override {
    absl::MutexLock lock(&mu_);
    pending_.push_back([this, jobs = std::move(jobs), now, done = std::move(done)]() mutable {
      std::vector<store::SubmitResult> results;
      for (auto& j : jobs) results.push_back(Insert(std::move(j), now));
      return [results = std::move(results), done = std::move(done)]() mutable {
        std::move(done)(std::move(results));
      };
    });
  }
  void Apply(std::vector<store::Transition> ts, absl::Time now, WriteDone done) override {
    absl::MutexLock lock(&mu_);
    pending_.push_back([this, ts = std::move(ts), now, done = std::move(done)]() mutable {
      for (auto& t : ts) {
        auto& r = jobs_.at(t.job_id);
        r.state = t.state;
        r.attempt_count = t.attempt_count;
        r.budget_base = t.budget_base;
        r.throttled_count = t.throttled_count;
        r.next_attempt_at = t.next_attempt_at;
        r.first_attempt_at = t.first_attempt_at;
        r.last_decision = t.last_decision;
        r.last_http_status = t.last_http_status;
        r.wait_reason = t.wait_reason;
        r.waits_behind = t.waits_behind;
        r.updated_at = now;
        if (t.attempt) r.attempts.push_back(*t.attempt);
        purge_at_[t.job_id] = t.purge_at;
        ++writes_;
      }
      return [done = std::move(done)]() mutable { std::move(done)(absl::OkStatus()); };
    });
  }
  void SaveEndpointPause(store::EndpointPause pause, WriteDone done) override {
    absl::MutexLock lock(&mu_);
    pending_.push_back([this, pause = std::move(pause), done = std::move(done)]() mutable {
      std::string endpoint = pause.endpoint;
      pauses_.insert_or_assign(std::move(endpoint), std::move(pause));
      return [done = std::move(done)]() mutable { std::move(done)(absl::OkStatus()); };
    });
  }
  void DeleteEndpointPause(std::string endpoint, WriteDone done) override {
    absl::MutexLock lock(&mu_);
    pending_.push_back([this, endpoint = std::move(endpoint), done = std::move(done)]() mutable {
      pauses_.erase(endpoint);
      return [done = std::move(done)]() mutable { std::move(done)(absl::OkStatus()); };
    });
  }
  void SaveBudgetUsage(std::vector<store::BudgetUsage> usage, WriteDone done) override {
    absl::MutexLock lock(&mu_);
    pending_.push_back([this, usage = std::move(usage), done = std::move(done)]() mutable {
      for (store::BudgetUsage& u : usage) {
        std::pair<std::string, std::string> key{u.budget, u.scope};
        usage_.insert_or_assign(std::move(key), std::move(u));
      }
      return [done = std::move(done)]() mutable { std::move(done)(absl::OkStatus()); };
    });
  }
  absl::StatusOr<std::vector<store::BudgetUsage>> LoadBudgetUsage() override {
    absl::MutexLock lock(&mu_);
    std::vector<store::BudgetUsage> out;
    for (const auto& [key, u] : usage_) out.push_back(u);
    return out;
  }
  absl::StatusOr<std::vector<store::EndpointPause>> LoadEndpointPauses() override {
    absl::MutexLock lock(&mu_);
    std::vector<store::EndpointPause> out;
    for (const auto& [endpoint, pause] : pauses_) out.push_back(pause);
    return out;
  }
  absl::Status Flush() override { return absl::OkStatus(); }
  absl::StatusOr<common::JobRecord> Get(const std::string& tenant, common::JobId id,
                                        bool /*with_attempts*/) override {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end() || it->second.spec.tenant != tenant) return absl::NotFoundError("no");
    return it->second;
  }
  absl::StatusOr<common::JobSpec> LoadSpec(common::JobId id) override {
    absl::MutexLock lock(&mu_);
    ++spec_loads_;
    if (failing_loads_ > 0) {
      --failing_loads_;
      return absl::UnavailableError("database is locked");
    }
    return jobs_.at(id).spec;
  }
  // The next `n` LoadSpec calls fail (UNAVAILABLE).
  void FailNextLoads(int n) {
    absl::MutexLock lock(&mu_);
    failing_loads_ = n;
  }
  absl::StatusOr<store::ListPage> List(const std::string&, const store::ListFilter&, int,
                                       const std::string&) override {
    return absl::UnimplementedError("not needed by the engine");
  }
  absl::StatusOr<std::vector<store::ActiveJob>> Recover(absl::Time) override {
    absl::MutexLock lock(&mu_);
    std::vector<store::ActiveJob> out;
    for (auto& [id, r] : jobs_) {
      if (common::IsTerminal(r.state)) continue;
      if (r.state == common::JobState::kRunning) {
        r.state = common::JobState::kQueued;
        r.wait_reason = common::WaitReason::kNone;
        r.waits_behind = 0;
      }
      store::ActiveJob a;
      a.id = id;
      a.endpoint = r.spec.endpoint;
      a.policy = r.spec.policy;
      a.tenant = r.spec.tenant;
      a.ordering_key = r.spec.ordering_key;
      a.state = r.state;
      a.attempt_count = r.attempt_count;
      a.budget_base = r.budget_base;
      a.throttled_count = r.throttled_count;
      a.next_attempt_at = r.next_attempt_at;
      a.first_attempt_at = r.first_attempt_at;
      a.deadline = r.spec.deadline;
      a.wait_reason = r.wait_reason;
      a.waits_behind = r.waits_behind;
      a.priority = r.spec.priority;
      a.labels = r.spec.labels;
      out.push_back(std::move(a));
    }
    return out;
  }
  absl::StatusOr<int64_t> PurgeExpiredKeys(absl::Time) override { return 0; }
  absl::StatusOr<int64_t> PurgeEndedJobs(absl::Time, int) override { return 0; }
  absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> CountDeadLetters() override {
    absl::MutexLock lock(&mu_);
    std::map<std::string, int64_t> n;
    for (const auto& [id, r] : jobs_) {
      if (common::IsDeadLetter(r.state)) ++n[r.spec.endpoint];
    }
    return std::vector<std::pair<std::string, int64_t>>(n.begin(), n.end());
  }

  // Applies every queued write, then runs their callbacks. Returns how many ops committed.
  int CommitAll() {
    std::vector<Op> ops;
    std::vector<absl::AnyInvocable<void() &&>> callbacks;
    {
      absl::MutexLock lock(&mu_);
      ops.swap(pending_);
      for (auto& op : ops) callbacks.push_back(std::move(op)());
    }
    for (auto& cb : callbacks) std::move(cb)();
    return static_cast<int>(ops.size());
  }
  // The purge time the job's last transition carried.
  absl::Time PurgeAt(common::JobId id) {
    absl::MutexLock lock(&mu_);
    return purge_at_.at(id);
  }
  common::JobRecord Job(common::JobId id) {
    absl::MutexLock lock(&mu_);
    return jobs_.at(id);
  }
  int spec_loads() {
    absl::MutexLock lock(&mu_);
    return spec_loads_;
  }

 private:
  using Op = absl::AnyInvocable<absl::AnyInvocable<void() &&>() &&>;

  store::SubmitResult Insert(store::NewJob j, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    store::SubmitResult r;
    auto key = std::make_pair(j.spec.tenant, j.spec.idempotency_key);
    if (auto it = keys_.find(key); it != keys_.end()) {
      const auto& existing = jobs_.at(it->second);
      r.job_id = it->second;
      r.state = existing.state;
      if (existing.fingerprint == j.fingerprint) {
        r.deduplicated = true;
      } else {
        r.status = absl::AlreadyExistsError(absl::StrCat("used by ", it->second));
      }
      return r;
    }
    common::JobRecord rec;
    rec.id = next_id_++;
    rec.state = common::JobState::kQueued;  // the engine decides BLOCKED (and writes it)
    rec.spec = std::move(j.spec);
    rec.fingerprint = std::move(j.fingerprint);
    rec.created_at = now;
    keys_[key] = rec.id;
    r.job_id = rec.id;
    r.state = rec.state;
    jobs_[rec.id] = std::move(rec);
    return r;
  }

  absl::Mutex mu_;
  std::vector<Op> pending_ ABSL_GUARDED_BY(mu_);
  std::map<common::JobId, common::JobRecord> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, common::JobId> keys_ ABSL_GUARDED_BY(mu_);
  common::JobId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int writes_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<common::JobId, absl::Time> purge_at_ ABSL_GUARDED_BY(mu_);  // of the last transition
  std::map<std::string, store::EndpointPause> pauses_ ABSL_GUARDED_BY(mu_);  // by endpoint
  std::map<std::pair<std::string, std::string>, store::BudgetUsage> usage_ ABSL_GUARDED_BY(mu_);
  int spec_loads_ ABSL_GUARDED_BY(mu_) = 0;
  int failing_loads_ ABSL_GUARDED_BY(mu_) = 0;
};

// Attempts stay open until the test completes them; Poll() delivers completions.
class FakeExecutor final : public http::Executor {
 public:
  void Start(http::Request request, http::Done done) override {
    started_.push_back(Started{std::move(request), std::move(done)});
  }
  void Poll(absl::Duration) override {
    auto ready = std::move(completions_);
    completions_.clear();
    for (auto& c : ready) std::move(c)();
  }
  void Wakeup() override {}
  size_t InFlight() const override { return open(); }

  // Completes the oldest open attempt with `outcome` (delivered at the next Poll).
  const http::Request& CompleteNext(policy::Outcome outcome) {
    Started& s = started_.at(next_);
    ++next_;
    completions_.push_back([done = std::move(s.done), outcome = std::move(outcome)]() mutable {
      std::move(done)(std::move(outcome));
    });
    return s.request;
  }
  size_t started() const { return started_.size(); }
  size_t open() const { return started_.size() - next_; }
  const http::Request& request(size_t i) const { return started_.at(i).request; }

 private:
  struct Started {
    http::Request request;
    http::Done done;
  };
  std::vector<Started> started_;
  size_t next_ = 0;
  std::vector<absl::AnyInvocable<void() &&>> completions_;
};

inline policy::Outcome Status(int code, std::vector<std::pair<std::string, std::string>> h = {}) {
  policy::Outcome o;
  o.http_status = code;
  o.headers = std::move(h);
  return o;
}

}  // namespace rebound::testing

#endif  // REBOUND_TESTS_ENGINE_FAKES_H_
