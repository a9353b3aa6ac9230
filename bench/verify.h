// Verify: after a load run, checks what Rebound and the fake upstream say about every job of the
// run against the mix's expectations (bench/mix.h).
//
//  - lost:            a submitted key that ListSyncs does not return at all;
//  - not settled:     a job that is not in its expected state class (terminal, or WAITING_RETRY
//                     for the "far" mix);
//  - wrong state:     SUCCEEDED expected but FAILED seen, and so on;
//  - effects:         fake-lms effects per key: exactly 1 for a succeeded key, 0 for a 400;
//  - attempts:        upstream requests per key equal the script's length (an extra one is a
//                     duplicate delivery); a permanent failure (400) is attempted exactly once;
//  - early retries:   the gap between attempt 1 and 2 of a Retry-After key is at least the
//                     Retry-After (1000 ms);
//  - key header:      the Idempotency-Key header was on every attempt.
//
// Reads the whole fake-lms ledger in one GET, so it is for runs of up to kMaxVerifyJobs jobs.
// Runs on the calling thread; returns an error only when it cannot read (RPC or HTTP failure).
#ifndef REBOUND_BENCH_VERIFY_H_
#define REBOUND_BENCH_VERIFY_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/mix.h"
#include "client/client.h"
#include "nlohmann/json.hpp"

namespace rebound::bench {

inline constexpr uint64_t kMaxVerifyJobs = 100000;

struct VerifyOptions {
  std::string endpoint;    // the run's endpoint (ListSyncs filter)
  std::string key_prefix;  // key of job i is key_prefix + i
  uint64_t jobs = 0;
  Mix mix = Mix::kHealthy;
  std::string lms_url;  // fake-lms base URL, e.g. http://127.0.0.1:8080
};

struct VerifyReport {
  uint64_t listed = 0;  // jobs of the run that ListSyncs returned
  std::map<std::string, uint64_t> by_state;
  uint64_t lost = 0;
  uint64_t not_settled = 0;
  uint64_t wrong_state = 0;
  uint64_t succeeded_keys = 0;
  uint64_t succeeded_with_one_effect = 0;
  uint64_t effect_mismatch = 0;            // any key whose effects differ from the expectation
  uint64_t attempts_mismatch = 0;          // upstream attempts differ from the script's length
  uint64_t rebound_attempts_mismatch = 0;  // Rebound's attempt_count differs from fake-lms's
  uint64_t permanent_keys = 0;
  uint64_t permanent_retried = 0;  // a 400 key attempted more than once
  uint64_t retry_after_keys = 0;
  uint64_t early_retries = 0;          // gap below the Retry-After
  double min_retry_after_gap_ms = -1;  // smallest gap seen on a Retry-After key; -1: none
  uint64_t missing_key_header = 0;
  uint64_t upstream_repeats = 0;  // fake-lms "repeats" over the run's keys
  // Attempt 2 arrival minus attempt 1 arrival at fake-lms, over keys with 2+ attempts: the
  // retry delay as the upstream sees it (backoff or Retry-After, plus every lateness).
  std::vector<double> first_retry_gaps_ms;
  std::vector<std::string> examples;  // the first few problems, for a human

  bool ok() const {
    return lost == 0 && not_settled == 0 && wrong_state == 0 && effect_mismatch == 0 &&
           attempts_mismatch == 0 && rebound_attempts_mismatch == 0 && permanent_retried == 0 &&
           early_retries == 0 && missing_key_header == 0;
  }
  nlohmann::json ToJson() const;
  // {"count", "p50", "p99", "max"} of first_retry_gaps_ms.
  nlohmann::json GapSummary() const;
};

absl::StatusOr<VerifyReport> Verify(const client::Client& client, const VerifyOptions& options);

}  // namespace rebound::bench

#endif  // REBOUND_BENCH_VERIFY_H_
