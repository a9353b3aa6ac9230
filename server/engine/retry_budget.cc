#include "server/engine/retry_budget.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace rebound::engine {

int64_t RetryBudget::Allowed(int64_t in_flight) const {
  if (!config_.enabled) return std::numeric_limits<int64_t>::max();
  // The product of a decimal ratio and a count lands a few ulps below the integer it means
  // (0.29 * 100 == 28.999999999999996); the slack is far below one retry for any real count.
  const double share = config_.ratio * static_cast<double>(std::max<int64_t>(in_flight, 0));
  const auto floored = static_cast<int64_t>(std::floor(share + 1e-9));
  return std::max<int64_t>(config_.min_retries, floored);
}

}  // namespace rebound::engine
