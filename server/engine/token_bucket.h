// One endpoint's token bucket (config endpoints[].rate_limit), beside max_in_flight: `rate`
// tokens a second refill it continuously up to `burst`; an attempt starts only with a token.
//
// Owned by the endpoint's gate; loop thread only, no locks, no clock: every call takes `now`.
// It starts full. rate 0: no bucket (every take succeeds). burst 0 means max(1, ceil(rate)),
// as in the config.
//
// Precision: the level is computed from a fixed anchor (the last time the bucket was full or
// reconfigured) as base + rate x (now - anchor) - tokens taken since, with whole tokens counted
// as integers; no per-take rounding accumulates, so a million takes at any rate give the count
// the rate allows over the interval, to within one. What refills a full bucket is lost, as the
// burst means: with burst 1, a take that comes later than its token loses that lateness's
// refill (the loop waking 1 ms late at 1 token/s loses 0.1%).
#ifndef REBOUND_SERVER_ENGINE_TOKEN_BUCKET_H_
#define REBOUND_SERVER_ENGINE_TOKEN_BUCKET_H_

#include <cstdint>

#include "absl/time/time.h"
#include "server/config/config.h"

namespace rebound::engine {

// What the gate copies into EndpointStatus (all 0 when there is no bucket).
struct TokenBucketSnapshot {
  double rate = 0;
  int64_t burst = 0;
  double tokens = 0;
};

class TokenBucket {
 public:
  TokenBucket(const config::RateLimitConfig& config, absl::Time now);

  // A reload. The tokens already in the bucket are kept (capped at the new burst); a bucket that
  // did not exist starts full.
  void Configure(const config::RateLimitConfig& config, absl::Time now);

  bool limited() const { return rate_ > 0; }
  // Takes a token if one is there. Always true without a bucket.
  bool TryTake(absl::Time now);
  // Tokens in the bucket now, fraction included; +infinity without a bucket.
  double Tokens(absl::Time now) const;
  // The first nanosecond at or after `now` at which TryTake succeeds: `now` when a token is
  // there (or there is no bucket). Exact: TryTake(NextTokenAt(now)) succeeds and a nanosecond
  // earlier it fails.
  absl::Time NextTokenAt(absl::Time now) const;
  TokenBucketSnapshot Snapshot(absl::Time now) const;

 private:
  // base_ + rate_ x (t - anchor_) - taken_, not capped at the burst.
  double Level(absl::Time t) const;

  double rate_ = 0;
  int64_t burst_ = 0;
  absl::Time anchor_;
  double base_ = 0;    // tokens at anchor_
  int64_t taken_ = 0;  // tokens taken since anchor_
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_TOKEN_BUCKET_H_
