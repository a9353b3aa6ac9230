// One endpoint's circuit breaker (config endpoints[].circuit_breaker): closed / open / half-open
// over a sliding window of outcomes.
//
// Owned by the endpoint's gate; loop thread only, no locks. It reads no clock: every call that
// depends on time takes `now`. It decides nothing about jobs: the gate asks MayStart() before it
// counts an attempt, calls Start() when it admits one and Finish() with the attempt's outcome,
// and logs / counts the transitions these calls return.
//
// Rules (the config struct's comment is the contract):
// - Closed: outcomes fall into a window of kBuckets time buckets of window/kBuckets each, so an
//   outcome ages out between 0.9 x window and window after it was recorded. When a failure is
//   recorded and the window holds at least min_requests counted outcomes with
//   failures / counted >= failure_ratio, the breaker opens. Counted: successes and failures;
//   throttles too when count_throttles (then as failures). Throttles are always tallied apart.
// - Open: no attempt may start. The open period is open_duration doubled for each consecutive
//   opening (an opening from half-open, or from closed within `window` of the last close),
//   capped at max_open_duration. Advance(now) turns it half-open when the period has passed.
// - Half-open: at most half_open_probes attempts may start; it closes when that many probes
//   have succeeded and re-opens at the first probe that fails. A throttled probe (not counted)
//   proves nothing: its slot is given back. Closing empties the window.
// - Every transition starts a new generation. Start() hands out a ticket carrying it; Finish()
//   of a ticket from an earlier generation is ignored (a slow attempt started while closed must
//   not decide a half-open probe, and one started before the breaker opened must not count
//   after it closed again).
// - enabled=false: always closed, nothing recorded.
#ifndef REBOUND_SERVER_ENGINE_CIRCUIT_BREAKER_H_
#define REBOUND_SERVER_ENGINE_CIRCUIT_BREAKER_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "server/config/config.h"
#include "server/engine/endpoint_status.h"

namespace rebound::engine {

// What an attempt's outcome says about the endpoint, as the gate classifies it: 5xx, timeouts
// and transport errors are kFailure; 429 and rate_limited rules kThrottle; any other answer
// (2xx, and 4xx that are the job's fault) kSuccess: the endpoint is up.
enum class CircuitSignal { kSuccess, kFailure, kThrottle };

struct CircuitTransition {
  CircuitState from = CircuitState::kClosed;
  CircuitState to = CircuitState::kClosed;
  absl::Time at = absl::InfinitePast();
  // For logs and operators, e.g. "12 of 20 attempts failed in the last 10s (ratio 0.60 >=
  // 0.50); open for 2s".
  std::string why;
};

// Handed out by Start(), given back to Finish() or Abandon().
struct CircuitTicket {
  uint64_t generation = 0;
  bool probe = false;  // started while half-open
};

// What the gate copies into EndpointStatus.
struct CircuitSnapshot {
  bool enabled = true;
  CircuitState state = CircuitState::kClosed;
  absl::Time changed_at = absl::InfinitePast();
  absl::Time next_probe_at = absl::InfinitePast();  // open: when it turns half-open
  int64_t window_requests = 0;                      // outcomes in the window, throttles included
  int64_t window_failures = 0;                      // failures (throttles not included)
  int64_t window_throttles = 0;                     // throttles
  int probes_started = 0;                           // half-open: probes let through so far
  int probes_succeeded = 0;
  int consecutive_openings = 0;  // 0: the last opening used open_duration as is
};

class CircuitBreaker {
 public:
  static constexpr int kBuckets = 10;

  CircuitBreaker(const config::CircuitBreakerConfig& config, absl::Time now);

  // A reload. Keeps the state and, when `window` is unchanged, the window's counts (a new
  // window length cannot reuse the buckets: they are emptied). An open period already running
  // is shortened to the new max_open_duration if that is shorter. Disabling closes the breaker;
  // a half-open breaker whose probes already meet a lowered half_open_probes closes. Returns
  // the transition when there is one.
  std::optional<CircuitTransition> Configure(const config::CircuitBreakerConfig& config,
                                             absl::Time now);

  // Open -> half-open once the open period has passed. Call before MayStart() in each
  // admission pass and when the loop wakes at NextChange().
  std::optional<CircuitTransition> Advance(absl::Time now);

  // Whether an attempt may start now, as of the last Advance(): closed yes, open no, half-open
  // while fewer than half_open_probes probes are out or done.
  bool MayStart() const;
  // Records an admitted attempt (a probe when half-open). Call only when MayStart().
  CircuitTicket Start();
  // The attempt's outcome. Returns the transition it caused, if any.
  std::optional<CircuitTransition> Finish(const CircuitTicket& ticket, CircuitSignal signal,
                                          absl::Time now);
  // The attempt ended with nothing to say about the endpoint (cancelled, shut down): a probe's
  // slot is given back.
  void Abandon(const CircuitTicket& ticket);

  // When the state next changes by itself: the end of the open period; InfiniteFuture when
  // not open.
  absl::Time NextChange() const;
  CircuitState state() const { return state_; }
  CircuitSnapshot Snapshot(absl::Time now) const;

 private:
  struct Bucket {
    int64_t index = -1;  // which bucket_width_-long slice of time it holds
    int64_t successes = 0;
    int64_t failures = 0;
    int64_t throttles = 0;
  };
  struct Totals {
    int64_t successes = 0;
    int64_t failures = 0;
    int64_t throttles = 0;
  };

  int64_t BucketIndex(absl::Time t) const;
  Totals WindowTotals(absl::Time now) const;
  void ClearWindow();
  CircuitTransition MoveTo(CircuitState to, absl::Time now, std::string why);
  CircuitTransition Open(absl::Time now, std::string why);

  config::CircuitBreakerConfig config_;
  absl::Duration bucket_width_;
  std::array<Bucket, kBuckets> buckets_{};

  CircuitState state_ = CircuitState::kClosed;
  uint64_t generation_ = 0;
  absl::Time changed_at_;
  absl::Time opened_at_ = absl::InfinitePast();
  absl::Time open_until_ = absl::InfinitePast();
  absl::Time closed_at_ = absl::InfinitePast();  // last close from half-open
  int consecutive_openings_ = 0;
  int probes_started_ = 0;  // this half-open period, abandoned and throttled ones given back
  int probes_succeeded_ = 0;
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_CIRCUIT_BREAKER_H_
