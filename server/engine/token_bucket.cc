#include "server/engine/token_bucket.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace rebound::engine {

TokenBucket::TokenBucket(const config::RateLimitConfig& config, absl::Time now) {
  Configure(config, now);
}

void TokenBucket::Configure(const config::RateLimitConfig& config, absl::Time now) {
  const bool was_limited = limited();
  const double kept = was_limited ? Tokens(now) : 0;
  rate_ = std::max(config.rate, 0.0);
  if (!limited()) {
    burst_ = 0;
    return;
  }
  burst_ = config.burst > 0 ? config.burst
                            : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(rate_)));
  anchor_ = now;
  base_ = was_limited ? std::min(kept, static_cast<double>(burst_)) : static_cast<double>(burst_);
  taken_ = 0;
}

double TokenBucket::Level(absl::Time t) const {
  const absl::Duration elapsed = std::max(t - anchor_, absl::ZeroDuration());
  return base_ + rate_ * absl::FDivDuration(elapsed, absl::Seconds(1)) -
         static_cast<double>(taken_);
}

bool TokenBucket::TryTake(absl::Time now) {
  if (!limited()) return true;
  if (Level(now) >= static_cast<double>(burst_)) {  // full: restart the count from here
    anchor_ = now;
    base_ = static_cast<double>(burst_);
    taken_ = 0;
  }
  if (Level(now) < 1) return false;
  ++taken_;
  return true;
}

double TokenBucket::Tokens(absl::Time now) const {
  if (!limited()) return std::numeric_limits<double>::infinity();
  return std::min(Level(now), static_cast<double>(burst_));
}

absl::Time TokenBucket::NextTokenAt(absl::Time now) const {
  if (!limited() || Level(now) >= 1) return now;
  // Estimate from the anchor, then settle on the exact nanosecond: Level is monotonic in t, and
  // the estimate is off by a few nanoseconds at most.
  const double seconds = (static_cast<double>(taken_) + 1 - base_) / rate_;
  absl::Time t = anchor_ + absl::Nanoseconds(std::ceil(seconds * 1e9));
  if (t <= now) t = now + absl::Nanoseconds(1);
  for (int i = 0; i < 1000 && Level(t) < 1; ++i) t += absl::Nanoseconds(1);
  for (int i = 0;
       i < 1000 && t - absl::Nanoseconds(1) > now && Level(t - absl::Nanoseconds(1)) >= 1; ++i) {
    t -= absl::Nanoseconds(1);
  }
  return t;
}

TokenBucketSnapshot TokenBucket::Snapshot(absl::Time now) const {
  if (!limited()) return {};
  return {rate_, burst_, Tokens(now)};
}

}  // namespace rebound::engine
