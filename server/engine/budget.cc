#include "server/engine/budget.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace rebound::engine {

using common::Priority;
using common::WaitReason;

Budget::Budget(const config::BudgetConfig& config, absl::Time now) { Configure(config, now); }

void Budget::Configure(const config::BudgetConfig& config, absl::Time now) {
  config_ = config;
  for (auto& [name, scope] : scopes_) scope.bucket.Configure(config_.rate_limit, now);
}

std::string ScopeOf(absl::string_view split_by, absl::string_view tenant,
                    const std::map<std::string, std::string>* labels) {
  if (split_by.empty()) return "";
  if (split_by == "tenant") return std::string(tenant);
  if (labels == nullptr) return "";
  const auto it = labels->find(std::string(split_by));
  return it == labels->end() ? "" : it->second;
}

std::string LaneOf(absl::string_view tenant, const std::map<std::string, std::string>* labels,
                   absl::string_view fairness_label, const std::vector<std::string>& split_bys,
                   std::vector<std::string>* scopes) {
  scopes->clear();
  std::string key(tenant);
  if (fairness_label.empty() && split_bys.empty()) return key;
  // Label values hold no control characters (api/validation.cc): \x1f separates. (Were a
  // tenant to hold one, two lanes might share turns; the scopes themselves are kept apart.)
  key.push_back('\x1f');
  if (!fairness_label.empty()) key += ScopeOf(fairness_label, tenant, labels);
  for (const std::string& split_by : split_bys) {
    scopes->push_back(ScopeOf(split_by, tenant, labels));
    key.push_back('\x1f');
    key += scopes->back();
  }
  return key;
}

absl::Time Budget::PeriodStart(absl::Time t) const {
  const absl::Duration period = config_.quota.period;
  const absl::Time base = absl::UnixEpoch() + config_.quota.offset;
  // Floor division: absl::Floor rounds toward negative infinity, also before `base`.
  return base + absl::Floor(t - base, period);
}

int64_t Budget::UsedNow(const Scope& s, absl::Time now) const {
  return s.period_start == PeriodStart(now) ? s.used : 0;
}

int64_t Budget::AllowedFor(Priority priority) const {
  if (priority == Priority::kUnspecified) priority = Priority::kNormal;
  double reserved = 0;
  for (int p = static_cast<int>(priority) + 1; p < common::kPriorityCount; ++p) {
    reserved += config_.quota.reserve[p];
  }
  return static_cast<int64_t>(
      std::floor(static_cast<double>(config_.quota.limit) * (1 - reserved) + 1e-9));
}

Admission Budget::Admit(absl::string_view scope, Priority priority, absl::Time now) const {
  const auto it = scopes_.find(scope);
  const Scope* s = it == scopes_.end() ? nullptr : &it->second;
  if (config_.quota.limit > 0) {
    const int64_t used = s == nullptr ? 0 : UsedNow(*s, now);
    const absl::Time renewed = PeriodStart(now) + config_.quota.period;
    if (used >= config_.quota.limit) return {false, WaitReason::kQuotaExhausted, renewed};
    if (used >= AllowedFor(priority)) return {false, WaitReason::kQuotaReserved, renewed};
  }
  if (s == nullptr) return {};  // a new scope: nothing in flight, a full bucket
  if (config_.max_in_flight > 0 && s->in_flight >= config_.max_in_flight) {
    return {false, WaitReason::kRateLimited};  // until a completion
  }
  if (s->bucket.limited()) {
    const absl::Time next = s->bucket.NextTokenAt(now);
    if (next > now) return {false, WaitReason::kRateLimited, next};
  }
  return {};
}

Budget::Scope& Budget::ScopeAt(absl::string_view scope, absl::Time now) {
  auto it = scopes_.find(scope);
  if (it == scopes_.end()) {
    it = scopes_.try_emplace(std::string(scope), config_.rate_limit, now).first;
  }
  return it->second;
}

void Budget::OnStarted(absl::string_view scope, absl::Time now) {
  Scope& s = ScopeAt(scope, now);
  ++s.in_flight;
  s.bucket.TryTake(now);
  if (config_.quota.limit == 0) return;
  const absl::Time period = PeriodStart(now);
  if (s.period_start != period) {
    s.period_start = period;
    s.used = 0;
  }
  ++s.used;
  if (!s.changed) {
    s.changed = true;
    changed_.emplace_back(scope);
  }
}

void Budget::OnFinished(absl::string_view scope) {
  const auto it = scopes_.find(scope);
  if (it != scopes_.end() && it->second.in_flight > 0) --it->second.in_flight;
}

void Budget::Restore(absl::string_view scope, absl::Time period_start, int64_t used,
                     absl::Time now) {
  if (config_.quota.limit == 0 || period_start != PeriodStart(now) || used <= 0) return;
  Scope& s = ScopeAt(scope, now);
  s.period_start = period_start;
  s.used = std::max(s.used, used);
}

void Budget::TakeChanged(std::vector<store::BudgetUsage>* out) {
  for (std::string& name : changed_) {
    const auto it = scopes_.find(name);
    if (it == scopes_.end()) continue;
    it->second.changed = false;
    out->push_back(store::BudgetUsage{config_.name, std::move(name), it->second.period_start,
                                      it->second.used});
  }
  changed_.clear();
}

void Budget::Sweep(absl::Time now) {
  const int64_t burst = config_.rate_limit.burst;
  absl::erase_if(scopes_, [&](const auto& entry) {
    const Scope& s = entry.second;
    return s.in_flight == 0 && !s.changed && UsedNow(s, now) == 0 &&
           (!s.bucket.limited() || s.bucket.Tokens(now) >= static_cast<double>(burst));
  });
}

BudgetGauges Budget::Gauges(absl::Time now) const {
  BudgetGauges g;
  g.scopes = static_cast<int64_t>(scopes_.size());
  g.quota_limit = config_.quota.limit;
  if (config_.rate_limit.rate > 0) g.tokens = static_cast<double>(config_.rate_limit.burst);
  for (const auto& [name, s] : scopes_) {
    g.in_flight += s.in_flight;
    g.quota_used = std::max(g.quota_used, UsedNow(s, now));
    if (s.bucket.limited()) g.tokens = std::min(g.tokens, s.bucket.Tokens(now));
  }
  return g;
}

BudgetSnapshot Budget::Snapshot(absl::Time now, size_t max_scopes) const {
  BudgetSnapshot b;
  b.name = config_.name;
  b.split_by = config_.split_by;
  b.rate = config_.rate_limit.rate;
  b.burst = config_.rate_limit.burst;
  b.max_in_flight = config_.max_in_flight;
  b.quota_limit = config_.quota.limit;
  if (b.quota_limit > 0) b.period_end = PeriodStart(now) + config_.quota.period;
  b.scopes = scopes_.size();
  for (const auto& [name, s] : scopes_) {
    b.busiest.push_back(BudgetScopeSnapshot{
        name, s.in_flight, s.bucket.limited() ? s.bucket.Tokens(now) : -1, UsedNow(s, now)});
  }
  // The busiest first (most quota used, then most in flight), then by name: a stable view.
  std::sort(b.busiest.begin(), b.busiest.end(), [](const auto& x, const auto& y) {
    if (x.quota_used != y.quota_used) return x.quota_used > y.quota_used;
    if (x.in_flight != y.in_flight) return x.in_flight > y.in_flight;
    return x.scope < y.scope;
  });
  if (b.busiest.size() > max_scopes) b.busiest.resize(max_scopes);
  return b;
}

}  // namespace rebound::engine
