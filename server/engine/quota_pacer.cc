#include "server/engine/quota_pacer.h"

#include <algorithm>
#include <cmath>

namespace rebound::engine {
namespace {

// Answers in a row without a remaining quota after which a pacing endpoint is taken to have
// stopped announcing one (its readings would only grow stale).
constexpr int kSilentAnswersOff = 16;
// Weight of a new cost in the running mean.
constexpr double kCostWeight = 0.2;

}  // namespace

double QuotaPacer::LowWater() const {
  if (config_.low_water > 0) return config_.low_water;
  return config_.low_water_ratio * limit_seen_;
}

int64_t QuotaPacer::Allowed(int64_t max_in_flight, absl::Time now) const {
  const int64_t floor_in_flight = std::min<int64_t>(config_.min_in_flight, max_in_flight);
  if (!config_.enabled || mode_ == Mode::kOff) return max_in_flight;
  if (mode_ == Mode::kProbe) {
    return config_.start_in_flight > 0 ? std::min<int64_t>(config_.start_in_flight, max_in_flight)
                                       : max_in_flight;
  }
  if (reset_at_ != absl::InfinitePast() && now >= reset_at_) return max_in_flight;  // turned
  const auto allowed = static_cast<int64_t>(std::floor(allowed_));
  return std::clamp<int64_t>(allowed, floor_in_flight, max_in_flight);
}

void QuotaPacer::ExpireWindow(absl::Time now) {
  if (reset_at_ == absl::InfinitePast() || now < reset_at_) return;
  // The window turned: what the readings said is over; nothing is limited until the next one.
  mode_ = Mode::kOff;
  starts_.clear();
  reset_at_ = absl::InfinitePast();
  next_start_at_ = absl::InfinitePast();
}

void QuotaPacer::Space(absl::Time now) {
  next_start_at_ = absl::InfinitePast();
  if (reset_at_ == absl::InfinitePast()) return;
  if (window_left_ < cost_) {
    next_start_at_ = reset_at_;  // nothing left: wait for the reset
  } else if (window_left_ < LowWater()) {
    // n requests left: one every (time to the reset) / (n + 1), the last before the reset.
    next_start_at_ = std::min(reset_at_, now + (reset_at_ - now) / (window_left_ / cost_ + 1));
  }
}

void QuotaPacer::OnStarted(absl::Time now) {
  if (!config_.enabled || mode_ != Mode::kPacing) return;
  starts_.push_back(now);
  ExpireWindow(now);
  if (reset_at_ == absl::InfinitePast()) return;
  window_left_ -= cost_;
  Space(now);
}

void QuotaPacer::OnEnded(absl::Time started) {
  auto it = std::lower_bound(starts_.begin(), starts_.end(), started);
  if (it != starts_.end() && *it == started) starts_.erase(it);
}

void QuotaPacer::OnAnswer(const QuotaReading& reading, bool throttled, absl::Time started,
                          absl::Time now, int64_t in_flight, int64_t max_in_flight) {
  if (!config_.enabled) return;
  ExpireWindow(now);
  const double floor_in_flight = std::max(1, config_.min_in_flight);
  if (!reading.remaining) {
    if (throttled && mode_ == Mode::kPacing) {
      allowed_ = floor_in_flight;
      changed_at_ = now;
    } else if (mode_ == Mode::kProbe) {
      mode_ = Mode::kOff;  // the endpoint announces no quota
    } else if (mode_ == Mode::kPacing && ++silent_ >= kSilentAnswersOff) {
      mode_ = Mode::kOff;
      starts_.clear();
      reset_at_ = absl::InfinitePast();
      next_start_at_ = absl::InfinitePast();
    } else if (mode_ == Mode::kPacing && !throttled && started > changed_at_ &&
               allowed_ < static_cast<double>(max_in_flight)) {
      allowed_ += 1;
      changed_at_ = now;
    }
    return;
  }
  silent_ = 0;
  const double r = *reading.remaining;
  if (mode_ != Mode::kPacing) {
    mode_ = Mode::kPacing;
    allowed_ = std::max<double>(floor_in_flight, static_cast<double>(in_flight + 1));
    changed_at_ = now;
  }
  if (reading.limit) {
    limit_seen_ = *reading.limit;
  } else {
    limit_seen_ = std::max(limit_seen_, r + reading.cost.value_or(0));
  }
  if (reading.cost) {
    cost_ = cost_known_ ? cost_ + kCostWeight * (*reading.cost - cost_) : *reading.cost;
    cost_known_ = true;
  }
  remaining_ = r;
  const double low = LowWater();
  const auto max = static_cast<double>(max_in_flight);

  // Concurrency: one change per round trip.
  if (throttled) {
    allowed_ = floor_in_flight;
    changed_at_ = now;
  } else if (started > changed_at_) {
    double next = allowed_;
    if (r < low) {
      next = std::max(floor_in_flight, std::floor(allowed_ / 2));
    } else if (r >= 2 * low) {
      next = std::min(max, std::max(allowed_ + 1, allowed_ * 1.5));
    } else {
      next = std::min(max, allowed_ + 1);
    }
    if (next != allowed_) {
      allowed_ = next;
      changed_at_ = now;
    }
  }

  // The window: what this reading leaves, less the starts after this request's (not counted
  // by the upstream yet).
  if (reading.reset_at && *reading.reset_at > now) {
    const auto sent_after = static_cast<double>(
        starts_.end() - std::upper_bound(starts_.begin(), starts_.end(), started));
    const double left = r - sent_after * cost_;
    if (reset_at_ == absl::InfinitePast()) {
      reset_at_ = *reading.reset_at;
      window_left_ = left;
    } else {
      window_left_ = std::min(window_left_, left);
    }
    Space(now);
  }
}

QuotaPacerSnapshot QuotaPacer::Snapshot(int64_t max_in_flight, absl::Time now) const {
  QuotaPacerSnapshot s;
  s.active = config_.enabled && mode_ == Mode::kPacing;
  s.allowed_in_flight = Allowed(max_in_flight, now);
  s.level = max_in_flight > 0
                ? static_cast<double>(s.allowed_in_flight) / static_cast<double>(max_in_flight)
                : 1.0;
  s.remaining = remaining_;
  s.low_water = LowWater();
  if (next_start_at_ > now) s.next_start_at = next_start_at_;
  if (reset_at_ > now) s.reset_at = reset_at_;
  return s;
}

}  // namespace rebound::engine
