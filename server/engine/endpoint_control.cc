// The operator's side of the endpoint gates (EndpointControl): status, pause and resume, and
// the holds other threads read.
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/engine/engine.h"

namespace rebound::engine {

EndpointStatus Engine::StatusOf(int16_t endpoint, absl::Time now) const {
  EndpointStatus s = endpoints_[endpoint].Status(now);
  s.name = endpoint_names_[endpoint];
  return s;
}

void Engine::WithEndpoint(std::string name, StatusDone done,
                          absl::AnyInvocable<void(int16_t, StatusDone) &&> fn) {
  auto answer = std::make_shared<StatusDone>(std::move(done));
  const bool posted = Post([this, name = std::move(name), answer, fn = std::move(fn)]() mutable {
    const int16_t endpoint = EndpointIndex(name);
    if (endpoint < 0) {
      return std::move(*answer)(
          absl::NotFoundError(absl::StrCat("endpoint '", name, "' is not configured")));
    }
    std::move(fn)(endpoint, std::move(*answer));
  });
  if (!posted) {
    std::move (*answer)(ShuttingDown());
  }
}

void Engine::GetEndpointStatus(std::string name, StatusDone done) {
  if (!name.empty()) {
    return WithEndpoint(std::move(name), std::move(done), [this](int16_t ep, StatusDone d) {
      std::move(d)(std::vector<EndpointStatus>{StatusOf(ep, clock_.Now())});
    });
  }
  auto answer = std::make_shared<StatusDone>(std::move(done));
  const bool posted = Post([this, answer] {
    const absl::Time now = clock_.Now();
    std::vector<EndpointStatus> all;
    all.reserve(config_->endpoints.size());
    for (const auto& ep : config_->endpoints) all.push_back(StatusOf(EndpointIndex(ep.name), now));
    std::move (*answer)(std::move(all));
  });
  if (!posted) {
    std::move (*answer)(ShuttingDown());
  }
}

void Engine::PauseEndpoint(std::string name, absl::Time until, std::string reason,
                           StatusDone done) {
  WithEndpoint(
      name, std::move(done),
      [this, name, until, reason = std::move(reason)](int16_t ep, StatusDone d) mutable {
        store::EndpointPause pause{name, until, std::move(reason), clock_.Now()};
        // Durable first: a pause announced for a maintenance window must survive a
        // restart in the middle of it.
        store_.SaveEndpointPause(pause, [this, ep, pause,
                                         d = std::move(d)](absl::Status s) mutable {
          PostWork(
              [this, ep, pause = std::move(pause), s = std::move(s), d = std::move(d)]() mutable {
                if (!s.ok()) return std::move(d)(s);
                endpoints_[ep].SetOperatorPause(pause.until, pause.reason, pause.paused_at);
                observer_->OnOperatorPause(ep, true, pause.until, pause.reason);
                std::move(d)(std::vector<EndpointStatus>{StatusOf(ep, clock_.Now())});
              },
              /*internal=*/true);
        });
      });
}

void Engine::ResumeEndpoint(std::string name, StatusDone done) {
  WithEndpoint(name, std::move(done), [this, name](int16_t ep, StatusDone d) mutable {
    if (!endpoints_[ep].OperatorPaused(clock_.Now())) {
      return std::move(d)(absl::FailedPreconditionError(
          absl::StrCat("endpoint '", name, "' is not paused by an operator")));
    }
    store_.DeleteEndpointPause(name, [this, ep, d = std::move(d)](absl::Status s) mutable {
      PostWork(
          [this, ep, s = std::move(s), d = std::move(d)]() mutable {
            if (!s.ok()) return std::move(d)(s);
            const absl::Time now = clock_.Now();
            if (endpoints_[ep].ClearOperatorPause(now)) {
              observer_->OnOperatorPause(ep, false, absl::InfiniteFuture(), "");
            }
            std::move(d)(std::vector<EndpointStatus>{StatusOf(ep, now)});
          },
          /*internal=*/true);
    });
  });
}

absl::Status Engine::RestoreOperatorPauses() {
  auto pauses = store_.LoadEndpointPauses();
  if (!pauses.ok()) return pauses.status();
  const absl::Time now = clock_.Now();
  for (store::EndpointPause& p : *pauses) {
    const int16_t ep = EndpointIndex(p.endpoint);
    // A pause of an endpoint no longer configured, or one that has ended, holds nothing.
    if (ep < 0 || p.until <= now) continue;
    endpoints_[ep].SetOperatorPause(p.until, p.reason, p.paused_at);
    observer_->OnOperatorPause(ep, true, p.until, p.reason);
  }
  return absl::OkStatus();
}

common::WaitReason Engine::EndpointWait(absl::string_view endpoint, bool retry,
                                        absl::Time* until) const {
  const int16_t ep = EndpointIndex(endpoint);
  absl::MutexLock lock(&holds_mu_);
  if (ep < 0 || static_cast<size_t>(ep) >= published_holds_.size()) {
    return common::WaitReason::kNone;
  }
  const Admission& hold = published_holds_[ep][retry ? 1 : 0];
  if (until != nullptr) *until = hold.until;
  return hold.reason;
}

common::WaitReason Engine::BudgetWait(absl::string_view endpoint, const common::JobSpec& job,
                                      common::Priority priority, absl::Time* until) const {
  const int16_t ep = EndpointIndex(endpoint);
  absl::MutexLock lock(&holds_mu_);
  if (ep < 0 || static_cast<size_t>(ep) >= published_lanes_.size()) {
    return common::WaitReason::kNone;
  }
  const PublishedLanes& lanes = published_lanes_[ep];
  if (lanes.holds.empty()) return common::WaitReason::kNone;
  std::vector<std::string> scopes;
  const std::string lane =
      LaneOf(job.tenant, &job.labels, lanes.fairness_label, lanes.split_bys, &scopes);
  for (const EndpointGate::LaneHold& h : lanes.holds) {
    if (h.lane != lane || h.priority != priority) continue;
    if (until != nullptr) *until = h.admission.until;
    return h.admission.reason;
  }
  return common::WaitReason::kNone;
}

std::vector<std::string> Engine::EndpointsWaiting(common::WaitReason reason) const {
  std::vector<std::string> names;
  absl::MutexLock lock(&holds_mu_);
  for (size_t i = 0; i < published_holds_.size(); ++i) {
    bool held = published_holds_[i][0].reason == reason || published_holds_[i][1].reason == reason;
    for (const EndpointGate::LaneHold& h : published_lanes_[i].holds) {
      held |= h.admission.reason == reason;
    }
    if (held) names.push_back(endpoint_names_[i]);
  }
  return names;
}

void Engine::OnHoldsChanged(int16_t endpoint) {
  const EndpointGate& gate = endpoints_[endpoint];
  {
    absl::MutexLock lock(&holds_mu_);
    published_holds_[endpoint] = {gate.hold(false), gate.hold(true)};
    published_lanes_[endpoint] = {gate.config().fairness_label, gate.split_bys(),
                                  gate.lane_holds()};
  }
  // Watchers are few: walk them rather than the endpoint's ready jobs.
  for (auto& [id, followers] : followers_) {
    if (followers.watchers.empty()) continue;
    Slot* slot = FindSlot(id);
    if (slot == nullptr || slot->endpoint != endpoint || slot->state != JobState::kQueued) continue;
    JobEvent wait;
    FillWait(*slot, &wait);
    const common::WaitReason reason = wait.wait_reason;
    Notify(*slot, reason == common::WaitReason::kNone
                      ? std::string("ready: its endpoint no longer holds it")
                      : absl::StrCat("waits: ", common::WaitReasonName(reason), " (endpoint '",
                                     endpoint_names_[endpoint], "')"));
  }
}

}  // namespace rebound::engine
