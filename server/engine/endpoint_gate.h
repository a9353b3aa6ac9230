// EndpointGate: one per endpoint; decides whether the next attempt to the endpoint may start
// now, and holds the endpoint's ready jobs until it does.
//
// Loop thread only (the engine owns one per endpoint); no clock of its own: every time-dependent
// call takes `now`. Admission is asked before an attempt is counted, so a gate that refuses
// never spends an attempt: the engine calls Admit (through TakeAdmitted), then OnStarted when
// it counts the attempt, and OnFinished when the attempt ends or is given back.
//
// What it checks today: the pause set by a rate-limited answer (Retry-After), then the
// in-flight cap. The rest of the protection (operator pause, circuit breaker, retry budget,
// token bucket, slow start) goes into Admit/OnStarted/OnFinished in that order.
#ifndef REBOUND_SERVER_ENGINE_ENDPOINT_GATE_H_
#define REBOUND_SERVER_ENGINE_ENDPOINT_GATE_H_

#include <cstdint>
#include <deque>
#include <string>

#include "absl/time/time.h"
#include "server/common/job.h"
#include "server/config/config.h"
#include "server/engine/observer.h"
#include "server/policy/policy.h"

namespace rebound::engine {

// The gate's answer for the next attempt of a ready job.
struct Admission {
  bool admitted = true;
  // When not admitted: the endpoint's wait (ENDPOINT_PAUSED, ...), or kNone when only the
  // in-flight cap holds the job (it is "ready": a completion frees a place).
  common::WaitReason reason = common::WaitReason::kNone;
  // When to ask again; InfiniteFuture: on a completion (or unknown).
  absl::Time until = absl::InfiniteFuture();
};

class EndpointGate {
 public:
  // A job in the ready queue. `retry`: its next attempt is a retry of its current budget.
  struct Ready {
    common::JobId id = 0;
    bool retry = false;
  };

  // Takes the endpoint's settings, at start and on every reload (the gate keeps its state:
  // queue, in flight, pause). `endpoint` must live in `config`, which must outlive its use.
  void Configure(const config::EndpointConfig& endpoint, const config::Config& config);
  const config::EndpointConfig& config() const { return *config_; }
  // The endpoint's policy (the config's "default" when the endpoint names none that exists).
  const policy::Policy* default_policy() const { return default_policy_; }
  const std::string& base_url() const { return base_url_; }

  // --- Admission --------------------------------------------------------------------------
  // Whether an attempt (`retry` or first) may start now. No side effect.
  Admission Admit(absl::Time now, bool retry) const;
  // The attempt is counted and goes on the wire (after Admit said yes).
  void OnStarted(bool retry);
  // The attempt ended with `outcome`, or was given back before it left (`outcome` null).
  void OnFinished(bool retry, const policy::Outcome* outcome);
  int in_flight() const { return in_flight_; }

  // The upstream asked to hold the endpoint until `until` (Retry-After of a rate-limited
  // answer). Returns true when that moved the pause later.
  bool PauseUntil(absl::Time until);
  absl::Time paused_until() const { return paused_until_; }

  // --- Ready queue ------------------------------------------------------------------------
  // First attempts and retries are queued apart, FIFO within each and, as long as both are
  // admitted, taken oldest first across the two (one sequence number), so a gate that holds
  // retries only (retry budget) lets first attempts pass.
  void PushReady(common::JobId id, bool retry);
  bool HasReady() const { return !firsts_.empty() || !retries_.empty(); }
  size_t ReadySize() const { return firsts_.size() + retries_.size(); }
  // Takes off the queue the oldest ready job whose attempt Admit allows now; false when none.
  // The entry may be stale (the job was cancelled meanwhile): the caller checks and skips it.
  bool TakeAdmitted(absl::Time now, Ready* out);

  // --- Counts and gauges -------------------------------------------------------------------
  // A job of this endpoint entered (+1) or left (-1) `state`; `retry_after` for a
  // WAITING_RETRY set by the upstream's Retry-After.
  void Count(common::JobState state, bool retry_after, int sign);
  int64_t CountOf(common::JobState state) const { return count_[static_cast<int>(state)]; }
  EndpointGauges Gauges(absl::Time now) const;

  // The earliest time after `now` at which the gate would admit a queued job it holds now;
  // InfiniteFuture when nothing waits on time (a queue held by the in-flight cap waits for a
  // completion, which wakes the loop anyway).
  absl::Time NextWakeup(absl::Time now) const;

 private:
  struct Entry {
    common::JobId id;
    uint64_t seq;
  };

  const config::EndpointConfig* config_ = nullptr;
  const policy::Policy* default_policy_ = nullptr;
  std::string base_url_;
  std::deque<Entry> firsts_;
  std::deque<Entry> retries_;
  uint64_t next_seq_ = 0;
  int in_flight_ = 0;
  absl::Time paused_until_ = absl::InfinitePast();
  // Jobs of this endpoint by state (index: JobState), and those waiting on a Retry-After.
  int64_t count_[9] = {};
  int64_t waiting_retry_after_ = 0;
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_ENDPOINT_GATE_H_
