// Job mixes of the load generator: which fake-lms script the i-th job carries, and what the run
// must show for it afterwards (bench/verify.h checks that).
//
// A mix is a pure function of the job's index, so a run is reproducible and the checker needs no
// record of what was sent: it recomputes the expectation from the key's index. Thread-safe.
#ifndef REBOUND_BENCH_MIX_H_
#define REBOUND_BENCH_MIX_H_

#include <cstdint>
#include <optional>
#include <string_view>

namespace rebound::bench {

enum class Mix {
  kHealthy,   // every job: 200
  kFlaky,     // 60% 200, 15% 503,200, 10% 502,503,200, 10% 429:ra=1,200, 5% 400
  kRetrying,  // every job: 503,200
  kFar,       // every job: 503, then waits for a retry far in the future (policy "far")
  // For rebound-loadgen --endpoints 50 (job i on endpoint i % 50): the jobs of the endpoints
  // whose number is 2 mod 5 carry the flaky mix (by i / 50), every other job 200.
  kProtection,
};

inline constexpr uint64_t kProtectionEndpoints = 50;

// The state a job must end in (or, for kWaiting, settle in) once the run is over.
enum class Final { kSucceeded, kFailed, kWaiting };

struct Expectation {
  const char* script;  // fake-lms script, sent as the job's query "script=<script>"
  Final final_state;
  int attempts;    // upstream requests the key must see (exactly)
  int effects;     // fake-lms effects for the key: 1 for a success, else 0
  int min_gap_ms;  // minimum time between attempt 1 and 2 (a Retry-After floor); 0: none
};

std::optional<Mix> ParseMix(std::string_view name);
std::string_view MixName(Mix mix);

// What job number `index` (0-based) of `mix` carries and must show.
const Expectation& ExpectationFor(Mix mix, uint64_t index);

}  // namespace rebound::bench

#endif  // REBOUND_BENCH_MIX_H_
