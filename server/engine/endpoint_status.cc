#include "server/engine/endpoint_status.h"

namespace rebound::engine {

absl::string_view CircuitStateName(CircuitState s) {
  switch (s) {
    case CircuitState::kClosed:
      return "CLOSED";
    case CircuitState::kHalfOpen:
      return "HALF_OPEN";
    case CircuitState::kOpen:
      return "OPEN";
  }
  return "UNKNOWN";
}

}  // namespace rebound::engine
