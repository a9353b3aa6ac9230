#include "server/engine/throttle_backoff.h"

#include <algorithm>

namespace rebound::engine {

int ThrottleBackoff::LevelFor(absl::Time started) const {
  if (level_ == 0 || started > since_) return std::min(level_ + 1, kMaxLevel);
  return level_;
}

void ThrottleBackoff::Begin(int level, absl::Time now) {
  level_ = std::clamp(std::max(level_, level), 1, kMaxLevel);
  since_ = std::max(since_, now);
}

void ThrottleBackoff::Reset() {
  level_ = 0;
  since_ = absl::InfinitePast();
}

}  // namespace rebound::engine
