#include "server/engine/circuit_breaker.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace rebound::engine {

CircuitBreaker::CircuitBreaker(const config::CircuitBreakerConfig& config, absl::Time now)
    : changed_at_(now) {
  Configure(config, now);
}

std::optional<CircuitTransition> CircuitBreaker::Configure(
    const config::CircuitBreakerConfig& config, absl::Time now) {
  const bool window_changed = config.window != config_.window;
  config_ = config;
  // Bucket indices are only meaningful for one width; a width of zero would divide by zero.
  bucket_width_ = std::max(config_.window / kBuckets, absl::Nanoseconds(1));
  if (window_changed) ClearWindow();

  if (!config_.enabled) {
    ClearWindow();
    consecutive_openings_ = 0;
    if (state_ == CircuitState::kClosed) return std::nullopt;
    return MoveTo(CircuitState::kClosed, now, "circuit breaker disabled by configuration");
  }
  if (state_ == CircuitState::kOpen) {
    open_until_ = std::min(open_until_, opened_at_ + config_.max_open_duration);
  }
  if (state_ == CircuitState::kHalfOpen && probes_succeeded_ >= config_.half_open_probes) {
    ClearWindow();
    closed_at_ = now;
    return MoveTo(CircuitState::kClosed, now,
                  absl::StrCat(probes_succeeded_, " probes succeeded (half_open_probes lowered to ",
                               config_.half_open_probes, ")"));
  }
  return std::nullopt;
}

std::optional<CircuitTransition> CircuitBreaker::Advance(absl::Time now) {
  if (state_ != CircuitState::kOpen || now < open_until_) return std::nullopt;
  const absl::Duration was_open = open_until_ - opened_at_;
  return MoveTo(
      CircuitState::kHalfOpen, now,
      absl::StrCat("open period of ", absl::FormatDuration(was_open), " ended; letting up to ",
                   config_.half_open_probes, " probes through"));
}

bool CircuitBreaker::MayStart() const {
  switch (state_) {
    case CircuitState::kClosed:
      return true;
    case CircuitState::kOpen:
      return false;
    case CircuitState::kHalfOpen:
      return probes_started_ < config_.half_open_probes;
  }
  return false;
}

CircuitTicket CircuitBreaker::Start() {
  CircuitTicket ticket{generation_, state_ == CircuitState::kHalfOpen};
  if (ticket.probe) ++probes_started_;
  return ticket;
}

std::optional<CircuitTransition> CircuitBreaker::Finish(const CircuitTicket& ticket,
                                                        CircuitSignal signal, absl::Time now) {
  if (!config_.enabled || ticket.generation != generation_) return std::nullopt;
  const bool failure = signal == CircuitSignal::kFailure ||
                       (signal == CircuitSignal::kThrottle && config_.count_throttles);

  if (state_ == CircuitState::kHalfOpen) {
    if (!ticket.probe) return std::nullopt;
    if (failure) {
      return Open(now, signal == CircuitSignal::kThrottle ? "a half-open probe was throttled"
                                                          : "a half-open probe failed");
    }
    if (signal == CircuitSignal::kThrottle) {  // not counted: proves nothing either way
      --probes_started_;
      return std::nullopt;
    }
    ++probes_succeeded_;
    if (probes_succeeded_ < config_.half_open_probes) return std::nullopt;
    ClearWindow();
    closed_at_ = now;
    return MoveTo(CircuitState::kClosed, now,
                  absl::StrCat(probes_succeeded_, " of ", config_.half_open_probes,
                               " half-open probes succeeded"));
  }
  if (state_ != CircuitState::kClosed) return std::nullopt;

  const int64_t index = BucketIndex(now);
  Bucket& bucket = buckets_[static_cast<size_t>(index % kBuckets)];
  if (bucket.index != index) bucket = Bucket{index, 0, 0, 0};
  switch (signal) {
    case CircuitSignal::kSuccess:
      ++bucket.successes;
      break;
    case CircuitSignal::kFailure:
      ++bucket.failures;
      break;
    case CircuitSignal::kThrottle:
      ++bucket.throttles;
      break;
  }
  if (!failure) return std::nullopt;

  const Totals totals = WindowTotals(now);
  const int64_t throttles = config_.count_throttles ? totals.throttles : 0;
  const int64_t failures = totals.failures + throttles;
  const int64_t counted = totals.successes + failures;
  if (counted < config_.min_requests) return std::nullopt;
  const double ratio = static_cast<double>(failures) / static_cast<double>(counted);
  if (ratio < config_.failure_ratio) return std::nullopt;
  return Open(
      now, absl::StrFormat(
               "%d of %d attempts failed%s in the last %s (ratio %.2f >= %.2f)", failures, counted,
               throttles > 0 ? absl::StrCat(" (", throttles, " throttled)") : std::string(),
               absl::FormatDuration(config_.window), ratio, config_.failure_ratio));
}

void CircuitBreaker::Abandon(const CircuitTicket& ticket) {
  if (ticket.generation != generation_ || !ticket.probe) return;
  --probes_started_;
}

absl::Time CircuitBreaker::NextChange() const {
  return state_ == CircuitState::kOpen ? open_until_ : absl::InfiniteFuture();
}

CircuitSnapshot CircuitBreaker::Snapshot(absl::Time now) const {
  CircuitSnapshot s;
  s.enabled = config_.enabled;
  s.state = state_;
  s.changed_at = changed_at_;
  if (state_ == CircuitState::kOpen) s.next_probe_at = open_until_;
  const Totals totals = WindowTotals(now);
  s.window_requests = totals.successes + totals.failures + totals.throttles;
  s.window_failures = totals.failures;
  s.window_throttles = totals.throttles;
  if (state_ == CircuitState::kHalfOpen) {
    s.probes_started = probes_started_;
    s.probes_succeeded = probes_succeeded_;
  }
  s.consecutive_openings = consecutive_openings_;
  return s;
}

int64_t CircuitBreaker::BucketIndex(absl::Time t) const {
  // Times before the epoch do not occur (clocks read real or test times after 1970).
  return std::max<int64_t>(0, (t - absl::UnixEpoch()) / bucket_width_);
}

CircuitBreaker::Totals CircuitBreaker::WindowTotals(absl::Time now) const {
  const int64_t current = BucketIndex(now);
  Totals totals;
  for (const Bucket& b : buckets_) {
    if (b.index < 0 || b.index > current || b.index <= current - kBuckets) continue;
    totals.successes += b.successes;
    totals.failures += b.failures;
    totals.throttles += b.throttles;
  }
  return totals;
}

void CircuitBreaker::ClearWindow() { buckets_.fill(Bucket{}); }

CircuitTransition CircuitBreaker::MoveTo(CircuitState to, absl::Time now, std::string why) {
  CircuitTransition t{state_, to, now, std::move(why)};
  state_ = to;
  changed_at_ = now;
  ++generation_;
  probes_started_ = 0;
  probes_succeeded_ = 0;
  return t;
}

CircuitTransition CircuitBreaker::Open(absl::Time now, std::string why) {
  // Consecutive: re-opened from half-open, or soon after the last close.
  const bool consecutive = state_ == CircuitState::kHalfOpen || now - closed_at_ < config_.window;
  consecutive_openings_ = consecutive ? consecutive_openings_ + 1 : 0;
  absl::Duration period = config_.open_duration;
  for (int i = 0; i < consecutive_openings_ && period < config_.max_open_duration; ++i) {
    period *= 2;
  }
  period = std::min(period, config_.max_open_duration);
  opened_at_ = now;
  open_until_ = now + period;
  ClearWindow();
  return MoveTo(
      CircuitState::kOpen, now,
      absl::StrCat(why, "; open for ", absl::FormatDuration(period),
                   consecutive_openings_ > 0
                       ? absl::StrCat(" (opening ", consecutive_openings_ + 1, " in a row)")
                       : std::string()));
}

}  // namespace rebound::engine
