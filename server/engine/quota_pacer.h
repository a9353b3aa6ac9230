// One endpoint's pacing from the quota its answers announce (remaining units, the limit, a
// request's cost, the reset), so dispatch slows down *before* the LMS throttles.
//
// Owned by the endpoint's gate; loop thread only; no clock of its own (times are parameters).
// The gate asks it two things before an attempt starts: how many attempts may be in flight now
// (Allowed), and when the next may start (NextStartAt). Both hold a job without spending an
// attempt; the gate shows the wait as RATE_LIMITED.
//
// Concurrency (every quota, with or without a reset): each answer carrying a remaining quota is
// a reading. Below the low-water mark the allowed concurrency halves, at most once per round
// trip (only an answer to an attempt sent after the last change counts, as for the throttle
// backoff: answers to attempts that were on the wire together say one thing); at or above it,
// the concurrency grows by one per round trip, and by half per round trip at or above twice
// the mark. A throttle sets it to its minimum (while readings come). This is what Canvas's bucket
// needs: each parallel request holds an up-front cost until it finishes (so concurrency itself
// drains the bucket), and the quota comes back at a fixed outflow, which no header announces; the
// concurrency settles where the requests' cost flows in as fast as the bucket leaks.
// Until an answer carries a remaining quota, nothing is limited, except that with
// pacing.start_in_flight the endpoint's first attempts go at most that many at once until the
// first answer (a probe): an answer without a quota then ends the probe. While pacing, an answer
// without one that is no throttle counts as room (one more per round trip); after 16 in a row,
// pacing stops.
//
// A window (a quota with a reset time, e.g. D2L's credits): from the first reading that
// announces a reset until that reset, the pacer keeps an estimate of what is left, the lowest
// the readings give less what was sent after each answered request left (the upstream has not
// counted those yet), and takes each start off it. Below the mark, starts are spaced so what is
// left lasts until the reset; with less than one request's cost left, the next start waits for
// the reset. At the reset the window's readings are over: nothing is limited until the next
// reading begins another.
//
// The low-water mark is `pacing.low_water` units, or `pacing.low_water_ratio` of the limit: the
// limit header's value, or, where the LMS sends none (Canvas), the largest quota seen remaining.
#ifndef REBOUND_SERVER_ENGINE_QUOTA_PACER_H_
#define REBOUND_SERVER_ENGINE_QUOTA_PACER_H_

#include <cstdint>
#include <deque>
#include <optional>

#include "absl/time/time.h"
#include "server/config/config.h"
#include "server/policy/policy.h"

namespace rebound::engine {

// What one answer said about the quota.
using QuotaReading = policy::QuotaSignals;

struct QuotaPacerSnapshot {
  bool active = false;            // readings arrive and pace the endpoint
  int64_t allowed_in_flight = 0;  // what pacing allows now (max_in_flight when not limiting)
  double level = 1.0;             // allowed / max_in_flight
  std::optional<double> remaining;
  double low_water = 0;
  absl::Time next_start_at = absl::InfinitePast();  // spreading: the next start, if later
  absl::Time reset_at = absl::InfinitePast();
};

class QuotaPacer {
 public:
  explicit QuotaPacer(const config::PacingConfig& config) : config_(config) {}
  // A reload: the new settings apply from the next reading; the state stays.
  void Configure(const config::PacingConfig& config) { config_ = config; }

  // Attempts allowed in flight at `now`, at most `max_in_flight`. Once the announced reset has
  // passed, the reading is stale (the window turned): nothing is limited until the next one.
  int64_t Allowed(int64_t max_in_flight, absl::Time now) const;
  // The earliest time the next attempt may start (InfinitePast: now).
  absl::Time NextStartAt() const { return next_start_at_; }
  // An attempt starts at `now` (admitted); it ends (answered or given back) with OnEnded(the
  // same time).
  void OnStarted(absl::Time now);
  void OnEnded(absl::Time started);
  // The answer to an attempt started at `started`, decided at `now` (after OnEnded), with
  // `in_flight` attempts still on the wire. `throttled`: it was rate limited.
  void OnAnswer(const QuotaReading& reading, bool throttled, absl::Time started, absl::Time now,
                int64_t in_flight, int64_t max_in_flight);

  QuotaPacerSnapshot Snapshot(int64_t max_in_flight, absl::Time now) const;

 private:
  enum class Mode { kProbe, kOff, kPacing };
  double LowWater() const;

  config::PacingConfig config_;
  Mode mode_ = Mode::kProbe;  // kOff at once when start_in_flight is 0
  double allowed_ = 1;  // kPacing: the allowed concurrency (fractional while it grows by half)
  absl::Time changed_at_ = absl::InfinitePast();  // when `allowed_` last changed
  std::optional<double> remaining_;
  double limit_seen_ = 0;  // the limit header's, else the largest remaining seen
  double cost_ = 1;        // running mean of the requests' cost (1 until one is announced)
  bool cost_known_ = false;
  absl::Time reset_at_ = absl::InfinitePast();  // the current window's reset; past: none
  double window_left_ = 0;                      // the estimate of what is left until it
  absl::Time next_start_at_ = absl::InfinitePast();
  // Start times of the attempts on the wire, oldest first, while pacing (a paced endpoint has
  // few in flight).
  std::deque<absl::Time> starts_;
  // Ends the window estimate once its reset has passed.
  void ExpireWindow(absl::Time now);
  // Spaces the next start from `now` by what the window estimate leaves.
  void Space(absl::Time now);
  int silent_ = 0;  // kPacing: answers in a row without a remaining quota
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_QUOTA_PACER_H_
