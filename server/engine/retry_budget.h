// One endpoint's retry budget (config endpoints[].retry_budget), as Envoy's retry budget and
// gRPC's retry throttling: retries in flight at most max(min_retries, floor(ratio x attempts in
// flight)).
//
// Owned by the endpoint's gate; loop thread only. It holds only its config: the gate counts the
// attempts and the retries on the wire and passes them in. First attempts are never held by it
// (the gate asks only for retries); a retry over budget waits (RETRY_BUDGET), never dropped.
//
// Counting convention: `in_flight` and `retries_in_flight` are the attempts on the wire *before*
// the retry being admitted starts; it is admitted when retries_in_flight < Allowed(in_flight).
// This is Envoy's: its budget compares the active retries with a share of the active requests
// at the moment the retry would be created, before it is counted. Counting the candidate in
// in_flight would let a retry vouch for itself: with ratio 1 every retry would pass.
#ifndef REBOUND_SERVER_ENGINE_RETRY_BUDGET_H_
#define REBOUND_SERVER_ENGINE_RETRY_BUDGET_H_

#include <cstdint>

#include "server/config/config.h"

namespace rebound::engine {

// What the gate copies into EndpointStatus.
struct RetryBudgetSnapshot {
  bool enabled = true;
  int64_t retries_in_flight = 0;
  int64_t budget = 0;  // retries allowed in flight now (Allowed(in_flight))
};

class RetryBudget {
 public:
  explicit RetryBudget(const config::RetryBudgetConfig& config) : config_(config) {}

  // A reload: the budget has no state of its own, the new numbers apply at once.
  void Configure(const config::RetryBudgetConfig& config) { config_ = config; }

  // Retries allowed in flight with `in_flight` attempts (retries included) on the wire:
  // max(min_retries, floor(ratio * in_flight)); INT64_MAX when disabled. The product is taken
  // as the decimal ratio means it (0.29 x 100 is 29, not the 28.999... of binary floating
  // point).
  int64_t Allowed(int64_t in_flight) const;
  // Whether one more retry may start now (see the counting convention above).
  bool MayStartRetry(int64_t in_flight, int64_t retries_in_flight) const {
    return retries_in_flight < Allowed(in_flight);
  }
  RetryBudgetSnapshot Snapshot(int64_t in_flight, int64_t retries_in_flight) const {
    return {config_.enabled, retries_in_flight, Allowed(in_flight)};
  }

 private:
  config::RetryBudgetConfig config_;
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_RETRY_BUDGET_H_
