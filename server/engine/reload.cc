// Endpoints and policies: the switch to a new config (Reload), and resolving a job's endpoint
// and policy against the current one.
#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/engine/engine.h"

namespace rebound::engine {

int16_t Engine::EndpointIndex(absl::string_view name) const {
  const size_t n = endpoint_name_count_.load(std::memory_order_acquire);
  for (size_t i = 0; i < n; ++i) {
    if (endpoint_names_[i] == name) return static_cast<int16_t>(i);
  }
  return -1;
}

void Engine::ResolvePolicy(Slot& slot, absl::string_view name) {
  slot.policy = PolicyFor(slot.endpoint, name);
  slot.config_generation = config_generation_;
}

void Engine::Reload(std::shared_ptr<const config::Config> config,
                    absl::AnyInvocable<void(absl::Status) &&> done) {
  auto answer = std::make_shared<absl::AnyInvocable<void(absl::Status) &&>>(std::move(done));
  const bool posted = Post([this, config = std::move(config), answer]() mutable {
    // Endpoints are matched by name: known ones take their new settings, new ones are appended
    // (in the new config's order), and none may go away (the caller checks).
    std::vector<int> index_of(config->endpoints.size(), -1);
    size_t appended = 0;
    for (size_t j = 0; j < config->endpoints.size(); ++j) {
      index_of[j] = EndpointIndex(config->endpoints[j].name);
      if (index_of[j] < 0) ++appended;
    }
    if (endpoints_.size() + appended > kMaxEndpoints) {
      return std::move(*answer)(absl::ResourceExhaustedError(
          absl::StrCat("endpoints: at most ", kMaxEndpoints, " in one process")));
    }
    retired_configs_.push_back(config_);
    config_ = std::move(config);
    ++config_generation_;
    for (size_t j = 0; j < config_->endpoints.size(); ++j) {
      if (index_of[j] < 0) {
        index_of[j] = static_cast<int>(endpoints_.size());
        endpoints_.emplace_back();
        endpoint_names_.push_back(config_->endpoints[j].name);
        endpoint_name_count_.store(endpoint_names_.size(), std::memory_order_release);
      }
      endpoints_[index_of[j]].Configure(config_->endpoints[j], *config_, clock_.Now(), index_of[j],
                                        observer_);
    }
    {
      absl::MutexLock lock(&holds_mu_);
      published_holds_.resize(endpoints_.size());
      published_lanes_.resize(endpoints_.size());
    }
    max_active_jobs_.store(static_cast<int64_t>(config_->server.max_active_jobs));
    // Every job not on the wire takes the new policy now; running ones after their attempt.
    for (auto& [id, slot] : slots_) {
      if (slot.state != JobState::kRunning && slot.endpoint >= 0 && slot.policy != nullptr) {
        ResolvePolicy(slot, slot.named_policy ? slot.policy->name : "");
      }
    }
    ConfigureBudgets(clock_.Now());
    std::move (*answer)(absl::OkStatus());
  });
  if (!posted) std::move (*answer)(absl::UnavailableError("the engine has stopped"));
}

void Engine::ConfigureBudgets(absl::Time now) {
  for (const config::BudgetConfig& b : config_->budgets) {
    auto it = std::find_if(budgets_.begin(), budgets_.end(),
                           [&](const auto& known) { return known->config().name == b.name; });
    if (it != budgets_.end()) {
      (*it)->Configure(b, now);
    } else {
      budgets_.push_back(std::make_unique<Budget>(b, now));
    }
  }
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    EndpointGate& gate = endpoints_[i];
    std::vector<Budget*> mine;
    for (const std::string& name : gate.config().budgets) {
      for (const auto& known : budgets_) {
        if (known->config().name == name) mine.push_back(known.get());
      }
    }
    gate.SetBudgets(std::move(mine));
    if (!gate.HasReady()) continue;
    // A reload may change how jobs are put in lanes (budgets, their split_by, the fairness
    // label) and their priorities (a policy's): the ready jobs are queued again, in their order,
    // each keeping when it became ready.
    std::vector<FairQueue::Item> ready;
    gate.DrainReady(&ready);
    for (const FairQueue::Item& item : ready) {
      Slot* slot = FindSlot(item.id);
      if (slot != nullptr && slot->state == JobState::kQueued) {
        gate.PushReady(ReadyOf(*slot), item.since);
      }
    }
  }
}

absl::Status Engine::RestoreBudgetUsage() {
  if (config_->budgets.empty()) return absl::OkStatus();
  absl::StatusOr<std::vector<store::BudgetUsage>> usage = store_.LoadBudgetUsage();
  if (!usage.ok()) return usage.status();
  const absl::Time now = clock_.Now();
  for (const store::BudgetUsage& u : *usage) {
    for (const auto& budget : budgets_) {
      if (budget->config().name == u.budget) budget->Restore(u.scope, u.period_start, u.used, now);
    }
  }
  return absl::OkStatus();
}

const policy::Policy* Engine::PolicyFor(int16_t endpoint, absl::string_view name) const {
  if (!name.empty()) {
    if (auto p = config_->FindPolicy(name)) return p.get();
  }
  return endpoints_[endpoint].default_policy();
}

}  // namespace rebound::engine
