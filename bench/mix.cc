#include "bench/mix.h"

namespace rebound::bench {
namespace {

constexpr Expectation kOk{"200", Final::kSucceeded, 1, 1, 0};
constexpr Expectation kRetryOnce{"503,200", Final::kSucceeded, 2, 1, 0};
constexpr Expectation kRetryTwice{"502,503,200", Final::kSucceeded, 3, 1, 0};
constexpr Expectation kRateLimited{"429:ra=1,200", Final::kSucceeded, 2, 1, 1000};
constexpr Expectation kPermanent{"400", Final::kFailed, 1, 0, 0};
constexpr Expectation kFarRetry{"503", Final::kWaiting, 1, 0, 0};

// The flaky mix in blocks of 20 consecutive indexes, so every prefix of the run has (almost)
// the same proportions: 12 x 200 (60%), 3 x 503,200 (15%), 2 x 502,503,200 (10%),
// 2 x 429:ra=1,200 (10%), 1 x 400 (5%).
const Expectation& Flaky(uint64_t index) {
  const uint64_t slot = index % 20;
  if (slot < 12) return kOk;
  if (slot < 15) return kRetryOnce;
  if (slot < 17) return kRetryTwice;
  if (slot < 19) return kRateLimited;
  return kPermanent;
}

}  // namespace

std::optional<Mix> ParseMix(std::string_view name) {
  if (name == "healthy") return Mix::kHealthy;
  if (name == "flaky") return Mix::kFlaky;
  if (name == "retrying") return Mix::kRetrying;
  if (name == "far") return Mix::kFar;
  if (name == "protection") return Mix::kProtection;
  return std::nullopt;
}

std::string_view MixName(Mix mix) {
  switch (mix) {
    case Mix::kHealthy:
      return "healthy";
    case Mix::kFlaky:
      return "flaky";
    case Mix::kRetrying:
      return "retrying";
    case Mix::kFar:
      return "far";
    case Mix::kProtection:
      return "protection";
  }
  return "?";
}

const Expectation& ExpectationFor(Mix mix, uint64_t index) {
  switch (mix) {
    case Mix::kHealthy:
      return kOk;
    case Mix::kFlaky:
      return Flaky(index);
    case Mix::kRetrying:
      return kRetryOnce;
    case Mix::kFar:
      return kFarRetry;
    case Mix::kProtection:
      return (index % kProtectionEndpoints) % 5 == 2 ? Flaky(index / kProtectionEndpoints) : kOk;
  }
  return kOk;
}

}  // namespace rebound::bench
