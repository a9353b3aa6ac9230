// Endpoints and policies: the switch to a new config (Reload), and resolving a job's endpoint
// and policy against the current one.
#include <utility>

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
    }
    max_active_jobs_.store(static_cast<int64_t>(config_->server.max_active_jobs));
    // Every job not on the wire takes the new policy now; running ones after their attempt.
    for (auto& [id, slot] : slots_) {
      if (slot.state != JobState::kRunning && slot.endpoint >= 0 && slot.policy != nullptr) {
        ResolvePolicy(slot, slot.named_policy ? slot.policy->name : "");
      }
    }
    std::move (*answer)(absl::OkStatus());
  });
  if (!posted) std::move (*answer)(absl::UnavailableError("the engine has stopped"));
}

const policy::Policy* Engine::PolicyFor(int16_t endpoint, absl::string_view name) const {
  if (!name.empty()) {
    if (auto p = config_->FindPolicy(name)) return p.get();
  }
  return endpoints_[endpoint].default_policy();
}

}  // namespace rebound::engine
