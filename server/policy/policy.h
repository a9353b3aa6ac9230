// The pure retry-policy core: classify an attempt's outcome and decide what happens next.
//
// Nothing here does I/O, reads the clock or owns randomness: `now` and the random source are
// parameters (STYLE.md "Pure decision apart from effects"). The engine persists, schedules and
// counts what Decide() returns. All functions are thread-safe; Policy is immutable once built
// and shared (via shared_ptr) by every job that uses it.
#ifndef REBOUND_SERVER_POLICY_POLICY_H_
#define REBOUND_SERVER_POLICY_POLICY_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "re2/re2.h"

namespace rebound::policy {

// What an outcome means.
enum class Action { kSuccess, kRetry, kRateLimited, kPermanent };
absl::string_view ActionName(Action a);  // "success", "retry", "rate_limited", "permanent"

// Why no HTTP response arrived.
enum class TransportError { kNone, kConnect, kDns, kReset, kTimeout, kTls, kOther };
absl::string_view TransportErrorName(TransportError e);  // "", "connect", "dns", ...

// The result of one outbound call, as the HTTP executor reports it.
struct Outcome {
  int http_status = 0;  // 0 when a transport error happened
  TransportError error = TransportError::kNone;
  std::string error_detail;  // curl's message, for logs and the decision text
  // Response headers, names lower-cased, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // the first bytes of the body, already bounded by the executor
  absl::Duration latency;

  // First header value with that (lower-case) name, or nullopt.
  std::optional<absl::string_view> Header(absl::string_view lower_name) const;
};

struct StatusRange {
  int lo = 0;
  int hi = 0;  // inclusive
};

// One classification rule. Every present condition must hold; the first matching rule wins.
struct Rule {
  std::string name;                         // for decisions, e.g. "canvas-throttle" or "rules[0]"
  std::vector<StatusRange> statuses;        // empty: any status (including transport errors' 0)
  std::shared_ptr<const RE2> body_regex;    // null: not checked; matched (partial) on the body
  std::string header_name;                  // lower-case; empty: not checked
  std::shared_ptr<const RE2> header_regex;  // null: the header's presence is enough
  Action action = Action::kRetry;
};

enum class Jitter { kNone, kFull, kEqual, kDecorrelated };
absl::string_view JitterName(Jitter j);

struct Backoff {
  absl::Duration initial = absl::Milliseconds(200);
  absl::Duration max = absl::Seconds(30);
  double multiplier = 2.0;
  Jitter jitter = Jitter::kFull;
};

struct Limits {
  int max_attempts = 5;                         // attempts in one budget (replay starts anew)
  absl::Duration max_elapsed = absl::Hours(1);  // since the budget's first attempt
  absl::Duration max_retry_after = absl::Minutes(10);  // Retry-After above this is clamped
};

struct Policy {
  std::string name;
  std::vector<Rule> rules;
  Backoff backoff;
  Limits limits;
  size_t body_match_bytes = 4096;  // body rules see at most this many leading bytes
  // A rate_limited outcome pauses the whole endpoint until its Retry-After.
  bool pause_endpoint_on_rate_limit = true;
  // How long an ended job (its attempts, bodies and labels) is kept before it is purged:
  // SUCCEEDED and CANCELLED jobs for `retention`, dead letters (FAILED, EXHAUSTED) for
  // `dead_letter_retention`, or until a replay makes them active again. README explains the
  // defaults.
  absl::Duration retention = absl::Hours(24 * 7);
  absl::Duration dead_letter_retention = absl::Hours(24 * 30);
};

struct Classification {
  Action action = Action::kPermanent;
  std::string why;  // "503 default", "rule canvas-throttle", "transport timeout"
};

// Policy rules in order, then DESIGN.md's defaults.
Classification Classify(const Policy& policy, const Outcome& outcome);

// The n-th (1-based) backoff before jitter: min(max, initial * multiplier^(n-1)).
absl::Duration BaseBackoff(const Backoff& b, int n);

// Backoff with jitter for the n-th retry. `previous` is the last delay chosen (decorrelated
// jitter builds on it; zero for the first retry). Result is in [0, b.max].
absl::Duration JitteredBackoff(const Backoff& b, int n, absl::Duration previous,
                               absl::BitGenRef rng);

// Retry-After as delta-seconds or HTTP-date, relative to `now`. Garbage and negative values
// give nullopt; dates in the past give zero.
std::optional<absl::Duration> ParseRetryAfter(absl::string_view value, absl::Time now);

// An HTTP-date (IMF-fixdate, and the obsolete RFC 850 and asctime forms RFC 9110 asks
// recipients to accept), or nullopt; a bare number, signed or not, is never read as one.
std::optional<absl::Time> ParseHttpDate(absl::string_view value);

struct ThrottleHeaders;  // throttle_headers.h

// Where a job stands when an attempt has just finished.
struct AttemptContext {
  int attempt = 1;              // attempts used in this budget, including this one
  absl::Time first_attempt_at;  // of this budget
  absl::Time deadline = absl::InfiniteFuture();
  absl::Duration previous_delay = absl::ZeroDuration();
  // Which rate-limit headers the endpoint's answers carry; null: ThrottleHeaders' defaults.
  const ThrottleHeaders* throttle_headers = nullptr;
};

struct Decision {
  enum class Kind { kSucceed, kRetry, kFail, kExhaust };
  Kind kind = Kind::kFail;
  Classification classification;
  absl::Time next_attempt_at = absl::InfinitePast();  // for kRetry
  absl::Duration delay = absl::ZeroDuration();        // for kRetry
  // The upstream's own wait, clamped by max_retry_after, if it gave one: Retry-After, else
  // (for a rate-limited answer) the reset its rate-limit headers announce.
  std::optional<absl::Duration> retry_after;
  // Pause the endpoint until `next_attempt_at` (rate limited and the policy asks for it).
  bool pause_endpoint = false;
  // e.g. "retry at 2026-11-29T10:00:01.2Z: 503 default, backoff 400ms",
  //      "retry at ...: 429 default, Retry-After 2s", "stop: 404 default permanent".
  std::string reason;
};

Decision Decide(const Policy& policy, const Outcome& outcome, const AttemptContext& ctx,
                absl::Time now, absl::BitGenRef rng);

}  // namespace rebound::policy

#endif  // REBOUND_SERVER_POLICY_POLICY_H_
