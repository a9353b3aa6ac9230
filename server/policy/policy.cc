#include "server/policy/policy.h"

#include <curl/curl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <limits>

#include "absl/random/distributions.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/policy/throttle_headers.h"

namespace rebound::policy {
namespace {

// Delta-seconds beyond this saturate instead of overflowing (about 31.7 years). The caller
// clamps with Limits::max_retry_after anyway; this only keeps the arithmetic finite.
constexpr absl::Duration kMaxRetryAfterDelta = absl::Seconds(1000000000);

// Debian 12's RE2 predates its absl::string_view API and takes re2::StringPiece.
bool PartialMatch(absl::string_view text, const RE2& re) {
  return RE2::PartialMatch(re2::StringPiece(text.data(), text.size()), re);
}

bool InRange(int status, const std::vector<StatusRange>& ranges) {
  return std::any_of(ranges.begin(), ranges.end(),
                     [status](const StatusRange& r) { return r.lo <= status && status <= r.hi; });
}

bool RuleMatches(const Rule& rule, const Outcome& outcome, size_t body_match_bytes) {
  if (!rule.statuses.empty() && !InRange(outcome.http_status, rule.statuses)) return false;
  if (rule.body_regex != nullptr) {
    absl::string_view body(outcome.body);
    body = body.substr(0, std::min(body.size(), body_match_bytes));
    if (!PartialMatch(body, *rule.body_regex)) return false;
  }
  if (!rule.header_name.empty()) {
    std::optional<absl::string_view> value = outcome.Header(rule.header_name);
    if (!value.has_value()) return false;
    if (rule.header_regex != nullptr && !PartialMatch(*value, *rule.header_regex)) {
      return false;
    }
  }
  return true;
}

// An outcome without an HTTP response is a transport failure, even if the executor forgot to
// say which one.
bool IsTransportFailure(const Outcome& outcome) {
  return outcome.error != TransportError::kNone || outcome.http_status == 0;
}

// "503" or "transport timeout": what the outcome was, for `why` texts.
std::string Subject(const Outcome& outcome) {
  if (!IsTransportFailure(outcome)) return absl::StrCat(outcome.http_status);
  TransportError e =
      outcome.error == TransportError::kNone ? TransportError::kOther : outcome.error;
  return absl::StrCat("transport ", TransportErrorName(e));
}

Action DefaultAction(int status) {
  if (status >= 200 && status <= 299) return Action::kSuccess;
  switch (status) {
    case 429:
      return Action::kRateLimited;
    case 408:
    case 500:
    case 502:
    case 503:
    case 504:
      return Action::kRetry;
    default:
      // Other 4xx, 3xx (redirects are never followed), 1xx, 501, 505+ and nonsense.
      return Action::kPermanent;
  }
}

int64_t Nanos(absl::Duration d) { return absl::ToInt64Nanoseconds(d); }

std::string FormatRfc3339Millis(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

// The transport detail (curl's message) makes a decision readable without the attempt row.
std::string WhyWithDetail(const Classification& c, const Outcome& outcome) {
  if (IsTransportFailure(outcome) && !outcome.error_detail.empty()) {
    return absl::StrCat(c.why, " (", outcome.error_detail, ")");
  }
  return c.why;
}

}  // namespace

absl::string_view ActionName(Action a) {
  switch (a) {
    case Action::kSuccess:
      return "success";
    case Action::kRetry:
      return "retry";
    case Action::kRateLimited:
      return "rate_limited";
    case Action::kPermanent:
      return "permanent";
  }
  return "unknown";
}

absl::string_view TransportErrorName(TransportError e) {
  switch (e) {
    case TransportError::kNone:
      return "";
    case TransportError::kConnect:
      return "connect";
    case TransportError::kDns:
      return "dns";
    case TransportError::kReset:
      return "reset";
    case TransportError::kTimeout:
      return "timeout";
    case TransportError::kTls:
      return "tls";
    case TransportError::kOther:
      return "other";
  }
  return "unknown";
}

absl::string_view IgnoredReasonName(IgnoredReason r) {
  switch (r) {
    case IgnoredReason::kUnparsable:
      return "unparsable";
    case IgnoredReason::kNegative:
      return "negative";
    case IgnoredReason::kPast:
      return "past";
    case IgnoredReason::kTooFarAhead:
      return "too_far_ahead";
  }
  return "unknown";
}

absl::string_view ThrottleWaitName(ThrottleWait w) {
  switch (w) {
    case ThrottleWait::kNone:
      return "";
    case ThrottleWait::kRetryAfter:
      return "retry_after";
    case ThrottleWait::kReset:
      return "reset";
    case ThrottleWait::kBackoff:
      return "backoff";
  }
  return "unknown";
}

absl::string_view JitterName(Jitter j) {
  switch (j) {
    case Jitter::kNone:
      return "none";
    case Jitter::kFull:
      return "full";
    case Jitter::kEqual:
      return "equal";
    case Jitter::kDecorrelated:
      return "decorrelated";
  }
  return "unknown";
}

std::optional<absl::string_view> Outcome::Header(absl::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (absl::EqualsIgnoreCase(name, lower_name)) return absl::string_view(value);
  }
  return std::nullopt;
}

Classification Classify(const Policy& policy, const Outcome& outcome,
                        const std::vector<Rule>* first) {
  for (const std::vector<Rule>* rules : {first, &policy.rules}) {
    if (rules == nullptr) continue;
    for (const Rule& rule : *rules) {
      if (RuleMatches(rule, outcome, policy.body_match_bytes)) {
        return {rule.action, absl::StrCat(Subject(outcome), " rule ", rule.name)};
      }
    }
  }
  if (IsTransportFailure(outcome)) return {Action::kRetry, Subject(outcome)};
  return {DefaultAction(outcome.http_status), absl::StrCat(outcome.http_status, " default")};
}

absl::Duration BaseBackoff(const Backoff& b, int n) {
  const absl::Duration max = std::max(b.max, absl::ZeroDuration());
  const int exponent = std::max(n, 1) - 1;
  // Computed in double nanoseconds: exact for the usual values (200ms * 2^k), and pow()
  // overflowing to +inf (attempt 1000) simply lands on the cap below.
  const double nanos =
      absl::ToDoubleNanoseconds(b.initial) * std::pow(b.multiplier, static_cast<double>(exponent));
  if (!(nanos < absl::ToDoubleNanoseconds(max))) return max;  // also catches NaN
  if (!(nanos > 0)) return absl::ZeroDuration();
  return absl::Nanoseconds(static_cast<int64_t>(nanos));
}

absl::Duration JitteredBackoff(const Backoff& b, int n, absl::Duration previous,
                               absl::BitGenRef rng) {
  const absl::Duration max = std::max(b.max, absl::ZeroDuration());
  switch (b.jitter) {
    case Jitter::kNone:
      return BaseBackoff(b, n);
    case Jitter::kFull: {
      const int64_t base = Nanos(BaseBackoff(b, n));
      return absl::Nanoseconds(absl::Uniform<int64_t>(absl::IntervalClosedClosed, rng, 0, base));
    }
    case Jitter::kEqual: {
      const int64_t half = Nanos(BaseBackoff(b, n)) / 2;
      return absl::Nanoseconds(half +
                               absl::Uniform<int64_t>(absl::IntervalClosedClosed, rng, 0, half));
    }
    case Jitter::kDecorrelated: {
      // AWS "decorrelated jitter": sleep = min(cap, random_between(base, sleep * 3)).
      const absl::Duration initial = std::clamp(b.initial, absl::ZeroDuration(), max);
      const absl::Duration prev = previous > absl::ZeroDuration() ? previous : initial;
      const int64_t lo = Nanos(initial);
      const int64_t hi = std::max(lo, Nanos(prev * 3));  // both saturate, never overflow
      const absl::Duration drawn =
          absl::Nanoseconds(absl::Uniform<int64_t>(absl::IntervalClosedClosed, rng, lo, hi));
      return std::min(max, drawn);
    }
  }
  return BaseBackoff(b, n);
}

std::optional<absl::Duration> ParseRetryAfter(absl::string_view value, absl::Time now) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return std::nullopt;

  if (std::all_of(value.begin(), value.end(), absl::ascii_isdigit)) {
    uint64_t seconds = 0;
    // SimpleAtoi fails only on overflow here: the value is all digits.
    if (!absl::SimpleAtoi(value, &seconds) ||
        seconds > static_cast<uint64_t>(absl::ToInt64Seconds(kMaxRetryAfterDelta))) {
      return kMaxRetryAfterDelta;
    }
    return absl::Seconds(static_cast<int64_t>(seconds));
  }
  const std::optional<absl::Time> t = ParseHttpDate(value);
  if (!t) return std::nullopt;
  return std::max(*t - now, absl::ZeroDuration());
}

std::optional<absl::Time> ParseHttpDate(absl::string_view value) {
  value = absl::StripAsciiWhitespace(value);
  // A bare number ("30", "-5", "+3", "1.5") is not an HTTP-date; don't let curl_getdate's
  // leniency read it as one.
  absl::string_view digits = value;
  if (!digits.empty() && (digits.front() == '-' || digits.front() == '+')) digits.remove_prefix(1);
  const size_t dot = digits.find('.');
  const absl::string_view whole = digits.substr(0, dot);
  const absl::string_view fraction =
      dot == absl::string_view::npos ? absl::string_view() : digits.substr(dot + 1);
  const auto all_digits = [](absl::string_view s) {
    return std::all_of(s.begin(), s.end(), absl::ascii_isdigit);
  };
  if (!whole.empty() && all_digits(whole) && all_digits(fraction)) return std::nullopt;

  const std::string text(value);  // curl_getdate needs a NUL-terminated string
  const time_t t = curl_getdate(text.c_str(), nullptr);
  if (t == -1) return std::nullopt;
  return absl::FromTimeT(t);
}

Decision Decide(const Policy& policy, const Outcome& outcome, const AttemptContext& ctx,
                absl::Time now, absl::BitGenRef rng) {
  Decision d;
  d.classification = Classify(policy, outcome, ctx.endpoint_rules);
  const std::string why = WhyWithDetail(d.classification, outcome);
  const bool retried =
      d.classification.action == Action::kRetry || d.classification.action == Action::kRateLimited;
  std::optional<ThrottleHeaders> defaults;  // built only for a caller that names none
  std::optional<ThrottleSignals> read;
  if (retried || ctx.read_quota) {
    read = ReadThrottleSignals(
        outcome, ctx.throttle_headers != nullptr ? *ctx.throttle_headers : defaults.emplace(), now);
    d.quota = {read->remaining, read->limit, read->cost, read->reset_at};
    d.ignored = read->ignored_by_reason;
  }

  switch (d.classification.action) {
    case Action::kSuccess:
      d.kind = Decision::Kind::kSucceed;
      d.reason = absl::StrCat("succeeded: ", why);
      return d;
    case Action::kPermanent:
      d.kind = Decision::Kind::kFail;
      d.reason = absl::StrCat("stop: ", why, " permanent");
      return d;
    case Action::kRetry:
    case Action::kRateLimited:
      break;
  }

  // Checked before drawing any jitter: a spent budget needs no delay.
  const bool throttle = d.throttled();
  const Limits& limits = policy.limits;
  // Attempts that count toward max_attempts, this one included when it counts.
  const int counted = limits.count_throttles ? ctx.attempt : ctx.attempt - ctx.throttled - throttle;
  if ((!throttle || limits.count_throttles) && counted >= limits.max_attempts) {
    d.kind = Decision::Kind::kExhaust;
    d.reason = absl::StrCat("stop: attempts exhausted (", counted, "/", limits.max_attempts,
                            ") after ", why);
    return d;
  }
  if (throttle && ctx.throttled + 1 >= limits.max_throttled) {
    d.kind = Decision::Kind::kExhaust;
    d.reason = absl::StrCat("stop: throttled ", ctx.throttled + 1, " times (max_throttled ",
                            limits.max_throttled, ") after ", why);
    return d;
  }

  const ThrottleSignals& signals = *read;
  // Retry-After answers any retryable outcome (a 503 may carry one); a reset time, only a
  // throttle: a normal answer's quota headers say when the window turns, not when to retry.
  std::optional<absl::Time> upstream_at = signals.retry_after_at;
  absl::string_view upstream_source = "Retry-After";
  if (!upstream_at && throttle && signals.reset_at) {
    upstream_at = signals.reset_at;
    upstream_source = "rate-limit reset";
  }
  if (upstream_at) {
    d.retry_after =
        std::min(std::max(*upstream_at - now, absl::ZeroDuration()), limits.max_retry_after);
  }

  // How long the job waits, and what says so.
  absl::Duration wait;
  std::string wait_text;
  if (!throttle) {
    // The error backoff is drawn for the attempts that count (a throttle between two 503s
    // does not lengthen it); the upstream's Retry-After is a floor, never a ceiling.
    const absl::Duration backoff =
        JitteredBackoff(policy.backoff, std::max(counted, 1), ctx.previous_delay, rng);
    wait = backoff;
    wait_text = absl::StrCat("backoff ", absl::FormatDuration(backoff));
    if (d.retry_after && *d.retry_after > backoff) {
      wait = *d.retry_after;
      wait_text = absl::StrCat(upstream_source, " ", absl::FormatDuration(wait));
    }
  } else if (d.retry_after && *d.retry_after > absl::ZeroDuration()) {
    // A throttle waits for the time the upstream names, not on the error backoff.
    wait = *d.retry_after;
    wait_text = absl::StrCat(upstream_source, " ", absl::FormatDuration(wait));
    d.throttle_wait = signals.retry_after_at ? ThrottleWait::kRetryAfter : ThrottleWait::kReset;
  } else {
    // No time named (or "now", which a throttle cannot mean): the throttle backoff.
    d.throttle_wait = ThrottleWait::kBackoff;
    const int level = std::max(ctx.throttle_level, 1);
    wait = JitteredBackoff(policy.throttle_backoff, level, absl::ZeroDuration(), rng);
    wait_text =
        absl::StrCat("throttle backoff ", absl::FormatDuration(wait), " (level ", level, ")");
  }
  const absl::Time until = now + wait;

  if (until > ctx.first_attempt_at + limits.max_elapsed) {
    d.kind = Decision::Kind::kExhaust;
    d.reason = absl::StrCat("stop: max_elapsed ", absl::FormatDuration(limits.max_elapsed),
                            " would be exceeded after ", why);
    return d;
  }
  if (until > ctx.deadline) {
    d.kind = Decision::Kind::kExhaust;
    d.reason = absl::StrCat("stop: deadline would pass after ", why);
    return d;
  }

  d.kind = Decision::Kind::kRetry;
  d.pause_endpoint =
      throttle && policy.pause_endpoint_on_rate_limit && (d.throttle_backoff() || d.retry_after);
  if (d.pause_endpoint) d.pause_until = until;
  // A throttle backoff that pauses the endpoint holds the job in the endpoint's queue: due at
  // once, it goes when the gate lets the endpoint's traffic resume, in its turn.
  d.delay = d.throttle_backoff() && d.pause_endpoint ? absl::ZeroDuration() : wait;
  d.next_attempt_at = now + d.delay;
  d.reason = absl::StrCat("retry at ", FormatRfc3339Millis(until), ": ", why, ", ", wait_text);
  return d;
}

}  // namespace rebound::policy
