#include "server/engine/endpoint_gate.h"

#include <cassert>

namespace rebound::engine {

using common::JobState;
using common::WaitReason;

void EndpointGate::Configure(const config::EndpointConfig& endpoint, const config::Config& config) {
  config_ = &endpoint;
  default_policy_ = config.FindPolicy(endpoint.policy).get();
  // Config validation guarantees the policy exists; fall back for hand-built test configs.
  if (default_policy_ == nullptr) default_policy_ = config.FindPolicy("default").get();
  assert(default_policy_ != nullptr);
  base_url_ = endpoint.base_url;
}

Admission EndpointGate::Admit(absl::Time now, bool /*retry*/) const {
  if (paused_until_ > now) return {false, WaitReason::kEndpointPaused, paused_until_};
  if (in_flight_ >= config_->max_in_flight) return {false, WaitReason::kNone};
  return {};
}

void EndpointGate::OnStarted(bool /*retry*/) { ++in_flight_; }

void EndpointGate::OnFinished(bool /*retry*/, const policy::Outcome* /*outcome*/) {
  assert(in_flight_ > 0);
  --in_flight_;
}

bool EndpointGate::PauseUntil(absl::Time until) {
  if (until <= paused_until_) return false;
  paused_until_ = until;
  return true;
}

void EndpointGate::PushReady(common::JobId id, bool retry) {
  (retry ? retries_ : firsts_).push_back(Entry{id, next_seq_++});
}

bool EndpointGate::TakeAdmitted(absl::Time now, Ready* out) {
  // The older of the two fronts first; if the gate holds that kind, the other kind.
  const bool retry_older =
      !retries_.empty() && (firsts_.empty() || retries_.front().seq < firsts_.front().seq);
  for (const bool retry : {retry_older, !retry_older}) {
    std::deque<Entry>& q = retry ? retries_ : firsts_;
    if (q.empty() || !Admit(now, retry).admitted) continue;
    out->id = q.front().id;
    out->retry = retry;
    q.pop_front();
    return true;
  }
  return false;
}

void EndpointGate::Count(JobState state, bool retry_after, int sign) {
  count_[static_cast<int>(state)] += sign;
  if (state == JobState::kWaitingRetry && retry_after) waiting_retry_after_ += sign;
}

EndpointGauges EndpointGate::Gauges(absl::Time now) const {
  EndpointGauges g;
  g.paused = paused_until_ > now;
  g.blocked = CountOf(JobState::kBlocked);
  g.running = CountOf(JobState::kRunning);
  g.waiting_retry_after = waiting_retry_after_;
  g.waiting_backoff = CountOf(JobState::kWaitingRetry) - waiting_retry_after_;
  (g.paused ? g.waiting_paused : g.queued) = CountOf(JobState::kQueued);
  g.in_flight = in_flight_;
  return g;
}

absl::Time EndpointGate::NextWakeup(absl::Time now) const {
  if (HasReady() && paused_until_ > now) return paused_until_;
  return absl::InfiniteFuture();
}

}  // namespace rebound::engine
