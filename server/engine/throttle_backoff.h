// One endpoint's throttle backoff level: how far the wait after a rate-limited answer that names
// no time (no Retry-After, no reset header, as Canvas throttles) has escalated.
//
// Owned by the endpoint's gate; loop thread only; no clock of its own (times are parameters).
// The policy draws the wait (policy::Policy::throttle_backoff at the level this class gives);
// the gate pauses the endpoint for it.
//
// Escalation counts evidence, not answers: with 64 attempts in flight when an LMS's bucket runs
// dry, all 64 come back throttled within a few milliseconds, and they say once that the endpoint
// is over its limit. So a throttle raises the level only if its attempt was sent after the
// current backoff began (the earlier pause did not suffice); a throttle of an attempt already on
// the wire then gets the current level. Any answer the breaker counts as a success brings the
// level back to none.
#ifndef REBOUND_SERVER_ENGINE_THROTTLE_BACKOFF_H_
#define REBOUND_SERVER_ENGINE_THROTTLE_BACKOFF_H_

#include "absl/time/time.h"

namespace rebound::engine {

class ThrottleBackoff {
 public:
  // Levels stop rising here (the policy's backoff is capped at its max long before).
  static constexpr int kMaxLevel = 64;

  // The level a throttle of an attempt sent at `started` backs off at: one above the current
  // level if the attempt left after the current backoff began (or there is none), else the
  // current level. Always >= 1.
  int LevelFor(absl::Time started) const;
  // A backoff at `level` began at `now` (the throttle was decided then).
  void Begin(int level, absl::Time now);
  // An answer that was no throttle and no failure: the endpoint is within its limit again.
  void Reset();

  int level() const { return level_; }  // 0: none
  absl::Time since() const { return since_; }

 private:
  int level_ = 0;
  absl::Time since_ = absl::InfinitePast();
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_THROTTLE_BACKOFF_H_
