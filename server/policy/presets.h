// LMS presets: what one LMS's documentation says about its answers, as classification rules and
// the rate-limit headers to read (endpoints[].preset). docs/presets.md gives, per LMS, the pages
// each preset follows and what it does about them; an endpoint's own `rules` and
// `throttle_headers` go on top.
//
// Only what the vendor documents is here: a preset reads no vendor header its LMS does not send
// (Retry-After, HTTP's own, is always read), and never reclassifies an answer the built-in
// defaults already read as the LMS means it.
#ifndef REBOUND_SERVER_POLICY_PRESETS_H_
#define REBOUND_SERVER_POLICY_PRESETS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/policy/policy.h"
#include "server/policy/throttle_headers.h"

namespace rebound::policy {

struct Preset {
  std::string name;
  // Tried before the policy's rules (an endpoint's own rules come before these).
  std::vector<Rule> rules;
  // The endpoint's throttle_headers unless it gives its own.
  ThrottleHeaders throttle_headers;
  // The endpoint's pacing.start_in_flight unless it gives its own (0: no limit).
  int start_in_flight = 0;
};

// The preset of that name, or null.
const Preset* FindPreset(absl::string_view name);
// "blackboard, canvas, classlink, ...": the names in order, for messages.
std::string PresetNames();

}  // namespace rebound::policy

#endif  // REBOUND_SERVER_POLICY_PRESETS_H_
