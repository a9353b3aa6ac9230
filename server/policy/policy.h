// The pure retry-policy core: classify an attempt's outcome and decide what happens next.
//
// Nothing here does I/O, reads the clock or owns randomness: `now` and the random source are
// parameters (STYLE.md "Pure decision apart from effects"). The engine persists, schedules and
// counts what Decide() returns. All functions are thread-safe; Policy is immutable once built
// and shared (via shared_ptr) by every job that uses it.
#ifndef REBOUND_SERVER_POLICY_POLICY_H_
#define REBOUND_SERVER_POLICY_POLICY_H_

#include <array>
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
#include "server/common/priority.h"

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
  // Attempts in one budget (replay starts anew); rate-limited ones only with count_throttles.
  int max_attempts = 5;
  absl::Duration max_elapsed = absl::Hours(1);         // since the budget's first attempt
  absl::Duration max_retry_after = absl::Minutes(10);  // Retry-After above this is clamped
  // Rate-limited attempts in one budget: the job is EXHAUSTED at the max_throttled-th. A
  // throttle says the LMS is busy, not that the request is bad, so by default it does not
  // spend max_attempts (count_throttles: it does, as any retryable outcome).
  int max_throttled = 100;
  bool count_throttles = false;
};

struct Policy {
  std::string name;
  std::vector<Rule> rules;
  Backoff backoff;
  // The wait after a rate-limited answer that names no time (no Retry-After, no reset header,
  // as Canvas throttles): exponential per endpoint, the level rising with each throttle of an
  // attempt sent after the previous backoff began, back to the first after a success.
  Backoff throttle_backoff = {absl::Seconds(1), absl::Minutes(1), 2.0, Jitter::kEqual};
  Limits limits;
  size_t body_match_bytes = 4096;  // body rules see at most this many leading bytes
  // A rate_limited outcome pauses the whole endpoint until its Retry-After (or reset), or for
  // the throttle backoff when it names no time.
  bool pause_endpoint_on_rate_limit = true;
  // How long an ended job (its attempts, bodies and labels) is kept before it is purged:
  // SUCCEEDED and CANCELLED jobs for `retention`, dead letters (FAILED, EXHAUSTED) for
  // `dead_letter_retention`, or until a replay makes them active again. README explains the
  // defaults.
  absl::Duration retention = absl::Hours(24 * 7);
  absl::Duration dead_letter_retention = absl::Hours(24 * 30);
  // The priority of its jobs that name none (gradebook above attendance above telemetry):
  // higher ones start first at their endpoint, and budget quota reserves are kept for them.
  common::Priority priority = common::Priority::kNormal;
};

struct Classification {
  Action action = Action::kPermanent;
  std::string why;  // "503 default", "rule canvas-throttle", "transport timeout"
};

// `first` rules (an endpoint's: its own, then its preset's) in order, then the policy's, then
// DESIGN.md's defaults.
Classification Classify(const Policy& policy, const Outcome& outcome,
                        const std::vector<Rule>* first = nullptr);

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

// Why a rate-limit header value was skipped, bounded for a metric label (ThrottleSignals'
// `ignored` texts say more): not a number or date, negative, a reset in the past, too far ahead.
enum class IgnoredReason { kUnparsable, kNegative, kPast, kTooFarAhead };
inline constexpr size_t kIgnoredReasonCount = 4;
absl::string_view IgnoredReasonName(IgnoredReason r);  // "unparsable", "negative", "past", ...

// What a throttle (a rate-limited answer that is retried) waits for: the upstream's
// Retry-After, the reset its headers announce, or the policy's throttle backoff (no time named).
enum class ThrottleWait { kNone, kRetryAfter, kReset, kBackoff };
inline constexpr size_t kThrottleWaitCount = 3;      // the three waits, kNone excluded
absl::string_view ThrottleWaitName(ThrottleWait w);  // "retry_after", "reset", "backoff"; ""

// The quota an answer announced, read by its endpoint's throttle_headers: for pacing.
struct QuotaSignals {
  std::optional<double> remaining;
  std::optional<double> limit;
  std::optional<double> cost;
  std::optional<absl::Time> reset_at;
};

// Where a job stands when an attempt has just finished.
struct AttemptContext {
  int attempt = 1;              // attempts used in this budget, including this one
  int throttled = 0;            // of those before this one, how many were rate limited
  absl::Time first_attempt_at;  // of this budget
  absl::Time deadline = absl::InfiniteFuture();
  absl::Duration previous_delay = absl::ZeroDuration();
  // Which rate-limit headers the endpoint's answers carry; null: ThrottleHeaders' defaults.
  const ThrottleHeaders* throttle_headers = nullptr;
  // The endpoint's throttle backoff level for this outcome, if it is a throttle naming no time
  // (1: the first step; the gate's ThrottleBackoff says which).
  int throttle_level = 1;
  // Read the quota headers of every answer, successes included (the endpoint paces from them);
  // else only of the answers that are retried.
  bool read_quota = false;
  // The endpoint's classification rules (its own, then its preset's), tried before the
  // policy's; null: none.
  const std::vector<Rule>* endpoint_rules = nullptr;
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
  // The quota the answer announced (read for every answer with ctx.read_quota, else only for
  // retried ones), and how many of its rate-limit header values were skipped, by reason.
  QuotaSignals quota;
  std::array<int, kIgnoredReasonCount> ignored{};
  // For a throttle that is retried: what it waits for.
  ThrottleWait throttle_wait = ThrottleWait::kNone;
  // The outcome was rate limited: the attempt counts toward max_throttled (and toward
  // max_attempts only with count_throttles).
  bool throttled() const { return classification.action == Action::kRateLimited; }
  // The wait is the policy's throttle backoff at ctx.throttle_level (the upstream named no
  // time): the endpoint's level rises.
  bool throttle_backoff() const { return throttle_wait == ThrottleWait::kBackoff; }
  // Pause the endpoint until `pause_until` (rate limited and the policy asks for it). A pause
  // for the upstream's time ends when the job's retry is due; a throttle backoff pause holds
  // the endpoint while its jobs, due at once, wait in its queue (reason RATE_LIMITED).
  bool pause_endpoint = false;
  absl::Time pause_until = absl::InfinitePast();
  // e.g. "retry at 2026-11-29T10:00:01.2Z: 503 default, backoff 400ms",
  //      "retry at ...: 429 default, Retry-After 2s", "stop: 404 default permanent",
  //      "retry at ...: 403 rule canvas-throttle, throttle backoff 1.2s (level 1)".
  std::string reason;
};

Decision Decide(const Policy& policy, const Outcome& outcome, const AttemptContext& ctx,
                absl::Time now, absl::BitGenRef rng);

}  // namespace rebound::policy

#endif  // REBOUND_SERVER_POLICY_POLICY_H_
