// One endpoint's slow start (config endpoints[].slow_start): after a pause ends (rate limited or
// operator) or the breaker closes, the in-flight cap grows linearly from 1 to max_in_flight over
// `window` instead of releasing every ready job at once.
//
// Owned by the endpoint's gate; loop thread only, no locks, no clock: every call takes `now`.
// The cap itself (max_in_flight) stays the gate's and is passed in, so a reload of it applies at
// once. Arithmetic is exact (absl::Duration integer ticks): no rounding in the ramp.
#ifndef REBOUND_SERVER_ENGINE_SLOW_START_H_
#define REBOUND_SERVER_ENGINE_SLOW_START_H_

#include <cstdint>

#include "absl/time/time.h"
#include "server/config/config.h"

namespace rebound::engine {

// What the gate copies into EndpointStatus.
struct SlowStartSnapshot {
  int64_t allowed_in_flight = 0;
  double level = 1.0;                       // allowed / max while ramping; 1 when not
  absl::Time until = absl::InfinitePast();  // end of the ramp; past: not ramping
};

class SlowStart {
 public:
  explicit SlowStart(const config::SlowStartConfig& config) : window_(config.window) {}

  // A reload. A ramp under way keeps its start and ends at start + the new window (window 0
  // ends it now).
  void Configure(const config::SlowStartConfig& config);

  // Starts (or restarts, from 1) a ramp at `now`. Nothing when the window is 0.
  void Begin(absl::Time now);

  bool Ramping(absl::Time now) const { return now < until_; }
  // The in-flight cap now: max(1, ceil(max_in_flight x elapsed / window)) while ramping,
  // max_in_flight otherwise.
  int64_t Allowed(int64_t max_in_flight, absl::Time now) const;
  // How far the ramp has gone, elapsed / window in [0, 1]; 1 when not ramping.
  double Level(absl::Time now) const;
  // End of the current or last ramp; InfinitePast when none ever began.
  absl::Time Until() const { return until_; }
  // The first nanosecond at which Allowed() grows past its value at `now`; InfiniteFuture when
  // it will not grow (not ramping, or already at max_in_flight). For the loop's wake-up.
  absl::Time NextStep(int64_t max_in_flight, absl::Time now) const;
  SlowStartSnapshot Snapshot(int64_t max_in_flight, absl::Time now) const;

 private:
  absl::Duration window_;
  absl::Time start_ = absl::InfinitePast();
  absl::Time until_ = absl::InfinitePast();
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_SLOW_START_H_
