// What an upstream's answer says about its rate limit, read from its headers: one pure parser
// for every form LMS APIs use (docs/presets.md lists which LMS sends which).
//
//  - Retry-After (RFC 9110 section 10.2.3): delta-seconds or an HTTP-date.
//  - A reset time in a named header, in the form the endpoint configures: seconds until the
//    reset (D2L's X-Rate-Limit-Reset, the IETF drafts' RateLimit-Reset), a unix timestamp in
//    seconds (Clever's X-RateLimit-Reset), or a date (HTTP-date or RFC 3339).
//  - Remaining quota, the limit and the request's cost in named headers (Canvas's
//    X-Rate-Limit-Remaining and X-Request-Cost, D2L's X-Rate-Limit-Remaining).
//  - The IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers): since draft 08
//    `RateLimit: "name";r=<remaining>;t=<seconds to reset>` and `RateLimit-Policy:
//    "name";q=<quota>;w=<window seconds>`; draft 07's `RateLimit: limit=L, remaining=R,
//    reset=T`; drafts up to 06 used the separate RateLimit-Limit / -Remaining / -Reset fields,
//    which are plain named headers here.
//
// Nothing here reads the clock: `now` is a parameter. A value that cannot be used (not a
// number, negative, a reset in the past, an unknown date) is skipped and its reason reported,
// never guessed at.
#ifndef REBOUND_SERVER_POLICY_THROTTLE_HEADERS_H_
#define REBOUND_SERVER_POLICY_THROTTLE_HEADERS_H_

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/policy/policy.h"

namespace rebound::policy {

// How a reset header writes its time.
enum class ResetForm {
  kDeltaSeconds,  // seconds until the reset, e.g. "30" or "1.5"
  kUnixSeconds,   // seconds since 1970-01-01T00:00:00Z, e.g. "1796140800"
  kDate,          // an HTTP-date ("Tue, 01 Dec 2026 17:00:00 GMT") or RFC 3339
};
absl::string_view ResetFormName(ResetForm form);  // "delta_seconds", "unix_seconds", "date"
std::optional<ResetForm> ParseResetForm(absl::string_view name);

struct ResetHeader {
  std::string name;  // lower-case
  ResetForm form = ResetForm::kDeltaSeconds;
};

// Which headers an endpoint's answers carry, and what they mean. Names are lower-case. The
// first usable value of each list wins.
struct ThrottleHeaders {
  bool retry_after = true;  // read Retry-After
  bool ietf = true;         // read the RateLimit and RateLimit-Policy fields
  std::vector<ResetHeader> reset = {{"ratelimit-reset", ResetForm::kDeltaSeconds}};
  std::vector<std::string> remaining = {"ratelimit-remaining", "x-ratelimit-remaining",
                                        "x-rate-limit-remaining"};
  std::vector<std::string> limit = {"ratelimit-limit", "x-ratelimit-limit", "x-rate-limit-limit"};
  std::vector<std::string> cost = {"x-request-cost"};
};

// What one answer said. Times are absolute; nothing is clamped yet (Decide clamps waits by the
// policy's max_retry_after).
struct ThrottleSignals {
  std::optional<absl::Time> retry_after_at;  // from Retry-After
  std::optional<absl::Time> reset_at;        // from a reset header or RateLimit's reset
  std::optional<double> remaining;           // quota units left before the reset
  std::optional<double> limit;               // quota units per window
  std::optional<double> cost;                // what this request cost
  std::optional<absl::Duration> window;      // RateLimit-Policy's w
  // One "<header>: <why>" per value skipped, e.g. "x-ratelimit-reset: in the past", and the
  // count of each reason.
  std::vector<std::string> ignored;
  std::array<int, kIgnoredReasonCount> ignored_by_reason{};

  // When the upstream says a request may be sent again: Retry-After if given, else the reset.
  std::optional<absl::Time> RetryAt() const { return retry_after_at ? retry_after_at : reset_at; }
};

ThrottleSignals ReadThrottleSignals(const Outcome& outcome, const ThrottleHeaders& headers,
                                    absl::Time now);

// One reset value in `form`, relative to `now`; an error text when it cannot be used.
struct ParsedTime {
  std::optional<absl::Time> at;
  std::string error;  // "not a number", "negative", "in the past", "not a date", ...
};
ParsedTime ParseResetValue(absl::string_view value, ResetForm form, absl::Time now);

}  // namespace rebound::policy

#endif  // REBOUND_SERVER_POLICY_THROTTLE_HEADERS_H_
