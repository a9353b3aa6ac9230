#include "server/engine/slow_start.h"

#include <algorithm>

namespace rebound::engine {

void SlowStart::Configure(const config::SlowStartConfig& config) {
  window_ = config.window;
  if (start_ == absl::InfinitePast()) return;
  until_ = window_ > absl::ZeroDuration() ? start_ + window_ : std::min(until_, start_);
}

void SlowStart::Begin(absl::Time now) {
  if (window_ <= absl::ZeroDuration()) return;
  start_ = now;
  until_ = now + window_;
}

int64_t SlowStart::Allowed(int64_t max_in_flight, absl::Time now) const {
  if (!Ramping(now) || max_in_flight <= 1) return max_in_flight;
  const absl::Duration elapsed = std::max(now - start_, absl::ZeroDuration());
  // ceil(max x elapsed / window), in whole Duration ticks.
  absl::Duration remainder;
  const int64_t quotient = absl::IDivDuration(elapsed * max_in_flight, window_, &remainder);
  const int64_t allowed = quotient + (remainder > absl::ZeroDuration() ? 1 : 0);
  return std::clamp<int64_t>(allowed, 1, max_in_flight);
}

double SlowStart::Level(absl::Time now) const {
  if (!Ramping(now)) return 1.0;
  const absl::Duration elapsed = std::max(now - start_, absl::ZeroDuration());
  return std::clamp(absl::FDivDuration(elapsed, window_), 0.0, 1.0);
}

absl::Time SlowStart::NextStep(int64_t max_in_flight, absl::Time now) const {
  const int64_t allowed = Allowed(max_in_flight, now);
  if (!Ramping(now) || allowed >= max_in_flight) return absl::InfiniteFuture();
  // Allowed exceeds `allowed` once max x elapsed > allowed x window, i.e. one nanosecond past
  // floor(allowed x window / max) (in nanoseconds).
  absl::Duration unused;
  const int64_t ns =
      absl::IDivDuration(window_ * allowed, absl::Nanoseconds(max_in_flight), &unused);
  return std::min(start_ + absl::Nanoseconds(ns + 1), until_);
}

SlowStartSnapshot SlowStart::Snapshot(int64_t max_in_flight, absl::Time now) const {
  SlowStartSnapshot s;
  s.allowed_in_flight = Allowed(max_in_flight, now);
  s.until = until_;
  if (Ramping(now) && max_in_flight > 0) {
    s.level = static_cast<double>(s.allowed_in_flight) / static_cast<double>(max_in_flight);
  }
  return s;
}

}  // namespace rebound::engine
