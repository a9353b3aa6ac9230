// FakeEndpointControl: an engine::EndpointControl answered from a script, for tests of the API
// layer without the engine's gates. Records what it was asked. Thread-safe (gRPC threads call
// it while the test thread scripts and reads it).
#ifndef REBOUND_TESTS_API_FAKE_ENDPOINT_CONTROL_H_
#define REBOUND_TESTS_API_FAKE_ENDPOINT_CONTROL_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/engine/endpoint_status.h"

namespace rebound::testing {

class FakeEndpointControl final : public engine::EndpointControl {
 public:
  struct Wait {
    common::WaitReason reason = common::WaitReason::kNone;
    absl::Time until = absl::InfiniteFuture();
  };
  struct PauseCall {
    std::string name;
    absl::Time until;
    std::string reason;
  };

  // The endpoints known, in order; GetEndpointStatus answers them.
  void SetStatuses(std::vector<engine::EndpointStatus> statuses) {
    absl::MutexLock lock(&mu_);
    statuses_ = std::move(statuses);
  }
  // What EndpointWait answers for `endpoint` (first attempts and retries apart) and which
  // endpoints EndpointsWaiting lists for `wait.reason`.
  void SetWait(const std::string& endpoint, bool retry, Wait wait) {
    absl::MutexLock lock(&mu_);
    waits_[{endpoint, retry}] = wait;
  }
  void SetWaiting(common::WaitReason reason, std::vector<std::string> endpoints) {
    absl::MutexLock lock(&mu_);
    waiting_[reason] = std::move(endpoints);
  }
  std::vector<PauseCall> pauses() const {
    absl::MutexLock lock(&mu_);
    return pauses_;
  }
  std::vector<std::string> resumes() const {
    absl::MutexLock lock(&mu_);
    return resumes_;
  }
  // (endpoint, retry) of every EndpointWait call.
  std::vector<std::pair<std::string, bool>> wait_calls() const {
    absl::MutexLock lock(&mu_);
    return wait_calls_;
  }

  void GetEndpointStatus(std::string name, StatusDone done) override {
    std::move(done)(Find(name));
  }
  void PauseEndpoint(std::string name, absl::Time until, std::string reason,
                     StatusDone done) override {
    {
      absl::MutexLock lock(&mu_);
      pauses_.push_back({name, until, reason});
      for (auto& s : statuses_) {
        if (s.name != name) continue;
        s.operator_paused = true;
        s.operator_paused_until = until;
        s.operator_reason = reason;
      }
    }
    std::move(done)(Find(name));
  }
  void ResumeEndpoint(std::string name, StatusDone done) override {
    {
      absl::MutexLock lock(&mu_);
      resumes_.push_back(name);
      for (auto& s : statuses_) {
        if (s.name == name && !s.operator_paused) {
          std::move(done)(absl::FailedPreconditionError(absl::StrCat(name, " is not paused")));
          return;
        }
        if (s.name == name) s.operator_paused = false;
      }
    }
    std::move(done)(Find(name));
  }
  common::WaitReason EndpointWait(absl::string_view endpoint, bool retry,
                                  absl::Time* until) const override {
    absl::MutexLock lock(&mu_);
    wait_calls_.emplace_back(std::string(endpoint), retry);
    auto it = waits_.find({std::string(endpoint), retry});
    if (it == waits_.end()) return common::WaitReason::kNone;
    *until = it->second.until;
    return it->second.reason;
  }
  // The budget wait of a job of `tenant` at `endpoint` (SetBudgetWait), whatever its labels.
  common::WaitReason BudgetWait(absl::string_view endpoint, const common::JobSpec& job,
                                common::Priority priority, absl::Time* until) const override {
    absl::MutexLock lock(&mu_);
    budget_wait_calls_.emplace_back(std::string(endpoint), priority);
    auto it = budget_waits_.find({std::string(endpoint), job.tenant});
    if (it == budget_waits_.end()) return common::WaitReason::kNone;
    *until = it->second.until;
    return it->second.reason;
  }
  void SetBudgetWait(const std::string& endpoint, const std::string& tenant, Wait wait) {
    absl::MutexLock lock(&mu_);
    budget_waits_[{endpoint, tenant}] = wait;
  }
  std::vector<std::pair<std::string, common::Priority>> budget_wait_calls() const {
    absl::MutexLock lock(&mu_);
    return budget_wait_calls_;
  }
  std::vector<std::string> EndpointsWaiting(common::WaitReason reason) const override {
    absl::MutexLock lock(&mu_);
    auto it = waiting_.find(reason);
    return it == waiting_.end() ? std::vector<std::string>{} : it->second;
  }

 private:
  absl::StatusOr<std::vector<engine::EndpointStatus>> Find(const std::string& name) const {
    absl::MutexLock lock(&mu_);
    if (name.empty()) return statuses_;
    for (const auto& s : statuses_) {
      if (s.name == name) return std::vector<engine::EndpointStatus>{s};
    }
    return absl::NotFoundError(absl::StrCat("no endpoint ", name));
  }

  mutable absl::Mutex mu_;
  std::vector<engine::EndpointStatus> statuses_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, bool>, Wait> waits_ ABSL_GUARDED_BY(mu_);
  std::map<common::WaitReason, std::vector<std::string>> waiting_ ABSL_GUARDED_BY(mu_);
  std::vector<PauseCall> pauses_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> resumes_ ABSL_GUARDED_BY(mu_);
  mutable std::vector<std::pair<std::string, bool>> wait_calls_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, Wait> budget_waits_ ABSL_GUARDED_BY(mu_);
  mutable std::vector<std::pair<std::string, common::Priority>> budget_wait_calls_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace rebound::testing

#endif  // REBOUND_TESTS_API_FAKE_ENDPOINT_CONTROL_H_
