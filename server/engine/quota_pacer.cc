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
  if (reset_at_ != absl::InfinitePast() && now >= reset_at_) return max_in_flight;
  const auto allowed = static_cast<int64_t>(std::floor(allowed_));
  return std::clamp<int64_t>(allowed, floor_in_flight, max_in_flight);
}

void QuotaPacer::OnStarted(absl::Time now) {
  if (spacing_ > absl::ZeroDuration() && now < reset_at_) {
    next_start_at_ = std::min(now + spacing_, reset_at_);
  } else {
    spacing_ = absl::ZeroDuration();
    next_start_at_ = absl::InfinitePast();
  }
}

void QuotaPacer::OnAnswer(const QuotaReading& reading, bool throttled, absl::Time started,
                          absl::Time now, int64_t in_flight, int64_t max_in_flight) {
  if (!config_.enabled) return;
  const double floor_in_flight = std::max(1, config_.min_in_flight);
  if (!reading.remaining) {
    if (throttled && mode_ == Mode::kPacing) {
      allowed_ = floor_in_flight;
      changed_at_ = now;
    } else if (mode_ == Mode::kPacing && ++silent_ >= kSilentAnswersOff) {
      mode_ = Mode::kOff;
      spacing_ = absl::ZeroDuration();
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
  reset_at_ = reading.reset_at.value_or(absl::InfinitePast());
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

  // Spreading: what remains (less what is on the wire) lasts until the reset.
  if (reset_at_ > now && r < low) {
    const double usable = r - static_cast<double>(in_flight) * cost_;
    if (usable < cost_) {
      spacing_ = absl::ZeroDuration();
      next_start_at_ = reset_at_;
    } else {
      spacing_ = (reset_at_ - now) / (usable / cost_);
      next_start_at_ = std::max(next_start_at_, std::min(now + spacing_, reset_at_));
    }
  } else {
    spacing_ = absl::ZeroDuration();
    next_start_at_ = absl::InfinitePast();
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
