// A job's priority: the proto's Priority values, shared by the job model, the pure policy core
// (a policy's default priority) and the engine (which starts higher priorities first and keeps
// budget quota reserves for them). Header only, so the policy core depends on nothing else.
#ifndef REBOUND_SERVER_COMMON_PRIORITY_H_
#define REBOUND_SERVER_COMMON_PRIORITY_H_

#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace rebound::common {

// kUnspecified: the job's policy's priority.
enum class Priority : int { kUnspecified = 0, kLow = 1, kNormal = 2, kHigh = 3 };
inline constexpr int kPriorityCount = 4;

// "LOW", "NORMAL", "HIGH" (the proto names); "UNSPECIFIED" for kUnspecified.
inline absl::string_view PriorityName(Priority p) {
  switch (p) {
    case Priority::kLow:
      return "LOW";
    case Priority::kNormal:
      return "NORMAL";
    case Priority::kHigh:
      return "HIGH";
    case Priority::kUnspecified:
      break;
  }
  return "UNSPECIFIED";
}

// A set priority from its name in any case ("high" as the config writes it); nullopt otherwise.
inline std::optional<Priority> PriorityFromName(absl::string_view name) {
  for (const Priority p : {Priority::kLow, Priority::kNormal, Priority::kHigh}) {
    if (absl::EqualsIgnoreCase(PriorityName(p), name)) return p;
  }
  return std::nullopt;
}

}  // namespace rebound::common

#endif  // REBOUND_SERVER_COMMON_PRIORITY_H_
