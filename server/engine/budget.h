// Budget: a limit that several endpoints share, or that one credential, application or
// district has to itself (config budgets[]): a token bucket, a cap on attempts in flight and a
// quota per period, with a share of the quota kept for higher priorities. Split by a label (or
// the tenant), it keeps one such state per value of it: a scope.
//
// Each budget is a gate of its own beside the endpoints' gates: an endpoint's gate asks every
// budget it names before an attempt starts (EndpointGate::TakeAdmitted), so a job refused by a
// budget waits (RATE_LIMITED, QUOTA_EXHAUSTED, QUOTA_RESERVED) without spending an attempt.
// Owned by the engine; loop thread only, no locks, no clock: every call takes `now`.
//
// Quota periods are fixed windows (config.h QuotaConfig). What each scope's quota used in its
// period is persisted by the engine (TakeChanged, store::BudgetUsage) and restored at start
// (Restore), so a restart within a period grants nothing twice.
#ifndef REBOUND_SERVER_ENGINE_BUDGET_H_
#define REBOUND_SERVER_ENGINE_BUDGET_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/common/job.h"
#include "server/config/config.h"
#include "server/engine/endpoint_status.h"
#include "server/engine/observer.h"
#include "server/engine/token_bucket.h"
#include "server/store/job_store.h"

namespace rebound::engine {

// A gate's answer for the next attempt of a ready job.
struct Admission {
  bool admitted = true;
  // When not admitted: the wait (ENDPOINT_PAUSED, ...), or kNone when only an in-flight cap
  // holds the job (it is "ready": a completion frees a place).
  common::WaitReason reason = common::WaitReason::kNone;
  // When to ask again; InfiniteFuture: on a completion (or unknown).
  absl::Time until = absl::InfiniteFuture();
};

// The scope of a job in a budget split by `split_by`: its value of that label ("" when it has
// none), its tenant for "tenant", "" when `split_by` is empty. `labels` may be null (none).
std::string ScopeOf(absl::string_view split_by, absl::string_view tenant,
                    const std::map<std::string, std::string>* labels);

// A job's lane (fair_queue.h) at an endpoint whose fairness label is `fairness_label` and whose
// budgets split by `split_bys`: its tenant, its value of the fairness label, its scope in each
// budget. Sets `*scopes` (one per budget) and returns the key. Loop and API threads alike.
std::string LaneOf(absl::string_view tenant, const std::map<std::string, std::string>* labels,
                   absl::string_view fairness_label, const std::vector<std::string>& split_bys,
                   std::vector<std::string>* scopes);

class Budget {
 public:
  Budget(const config::BudgetConfig& config, absl::Time now);
  // A reload: scopes keep what they used; buckets keep their tokens (capped at the new burst).
  void Configure(const config::BudgetConfig& config, absl::Time now);
  const config::BudgetConfig& config() const { return config_; }

  // Whether an attempt of `priority` in `scope` may start now. No side effect. The order:
  // quota (QUOTA_EXHAUSTED, then QUOTA_RESERVED), attempts in flight, tokens (RATE_LIMITED).
  Admission Admit(absl::string_view scope, common::Priority priority, absl::Time now) const;
  // The attempt is counted: takes a token and a unit of quota, counts it in flight.
  void OnStarted(absl::string_view scope, absl::Time now);
  // It ended (or was given back before it left: the quota it took stays spent, as the LMS
  // may have seen it; a give-back happens only when nothing was sent, rarely).
  void OnFinished(absl::string_view scope);

  // What the store kept (a row of LoadBudgetUsage): applied when it is of the current period.
  void Restore(absl::string_view scope, absl::Time period_start, int64_t used, absl::Time now);
  // The scopes whose quota count changed since the last call, as rows to persist.
  void TakeChanged(std::vector<store::BudgetUsage>* out);

  // Forgets scopes with nothing to remember: none in flight, a full bucket, nothing used in
  // the current period, nothing waiting to be persisted. Keeps memory bounded by the scopes
  // in use.
  void Sweep(absl::Time now);
  BudgetSnapshot Snapshot(absl::Time now, size_t max_scopes) const;
  BudgetGauges Gauges(absl::Time now) const;

  // The start of the quota period holding `t`.
  absl::Time PeriodStart(absl::Time t) const;

 private:
  struct Scope {
    explicit Scope(const config::RateLimitConfig& rate, absl::Time now) : bucket(rate, now) {}
    TokenBucket bucket;
    int in_flight = 0;
    absl::Time period_start = absl::InfinitePast();
    int64_t used = 0;  // in the period beginning at period_start
    bool changed = false;
  };
  // Quota used in the current period.
  int64_t UsedNow(const Scope& s, absl::Time now) const;
  // The most of the quota a job of `priority` may see used before it waits QUOTA_RESERVED.
  int64_t AllowedFor(common::Priority priority) const;
  Scope& ScopeAt(absl::string_view scope, absl::Time now);

  config::BudgetConfig config_;
  absl::flat_hash_map<std::string, Scope> scopes_;
  std::vector<std::string> changed_;  // scopes with `changed` set, in order
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_BUDGET_H_
