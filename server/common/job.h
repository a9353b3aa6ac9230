// The job data model shared by the engine, the store and the API layer.
//
// Plain values; no behaviour beyond naming. A `JobSpec` is the immutable request as submitted;
// `JobRecord` adds the mutable lifecycle fields the store keeps; `AttemptRecord` is one
// outbound call. Ids are store-assigned 64-bit integers; the API shows them as strings
// (FormatJobId/ParseJobId).
#ifndef REBOUND_SERVER_COMMON_JOB_H_
#define REBOUND_SERVER_COMMON_JOB_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/common/priority.h"

namespace rebound::common {

using JobId = int64_t;

enum class JobState : int {
  kQueued = 1,
  kBlocked = 2,
  kRunning = 3,
  kWaitingRetry = 4,
  kSucceeded = 5,
  kFailed = 6,
  kExhausted = 7,
  kCancelled = 8,
};

// "QUEUED", "WAITING_RETRY", ... (the proto enum names).
absl::string_view JobStateName(JobState s);
std::optional<JobState> JobStateFromName(absl::string_view name);
bool IsTerminal(JobState s);
// FAILED or EXHAUSTED: the dead-letter set that ReplaySync accepts.
bool IsDeadLetter(JobState s);

// Why a job that is not running waits (the proto's WaitReason values). The store keeps a job's
// own reason (BACKOFF, RETRY_AFTER, ORDERING_BLOCKED), written with its transition; the others
// are the endpoint's, decided by its gate while the job is ready to run, and live in memory.
enum class WaitReason : int {
  kNone = 0,
  kBackoff = 1,          // the policy's backoff after a failed attempt
  kRetryAfter = 2,       // the upstream's Retry-After (or reset header) for this job
  kEndpointPaused = 3,   // the endpoint is paused by a rate-limited answer
  kCircuitOpen = 4,      // the endpoint's circuit breaker is open (or half-open and probing)
  kRateLimited = 5,      // the endpoint's token bucket is empty
  kRetryBudget = 6,      // a retry held back: the endpoint's retries in flight are at budget
  kOrderingBlocked = 7,  // behind an earlier job of its ordering key (waits_behind names it)
  kOperatorPaused = 8,   // an operator paused the endpoint (PauseEndpoint)
  kQuotaExhausted = 9,   // a budget's quota for the period is used up
  kQuotaReserved = 10,   // the rest of a budget's quota is kept for higher priorities
};
inline constexpr int kWaitReasonCount = 11;

// "BACKOFF", "RETRY_AFTER", ... (the proto enum names); "NONE" for kNone.
absl::string_view WaitReasonName(WaitReason r);
std::optional<WaitReason> WaitReasonFromName(absl::string_view name);

using Headers = std::vector<std::pair<std::string, std::string>>;

// One sync request as submitted. Immutable once accepted.
struct JobSpec {
  std::string tenant;
  std::string idempotency_key;
  std::string endpoint;
  std::string method;
  std::string path;
  std::string query;  // without '?'
  Headers headers;
  std::string body;
  std::string ordering_key;                      // empty: no ordering
  absl::Time deadline = absl::InfiniteFuture();  // no attempt starts after it
  std::map<std::string, std::string> labels;
  std::string correlation_id;
  std::string policy;  // empty: the endpoint's default
  // kUnspecified: the policy's. Not part of the fingerprint: it orders the work, it is not the
  // request's effect.
  Priority priority = Priority::kUnspecified;
};

// Stable digest of everything that defines the request's effect (tenant and key excluded:
// they are the scope). Equal fingerprints mean "the same request" for deduplication.
// Hex SHA-256; stable across restarts and versions.
std::string Fingerprint(const JobSpec& spec);

// One outbound call of a job.
struct AttemptRecord {
  int number = 0;  // 1-based, counted over the job's whole life (replays continue it)
  absl::Time started_at;
  absl::Duration duration;
  int http_status = 0;          // 0 when no response arrived
  std::string transport_error;  // "", "connect", "dns", "reset", "timeout", "tls", "other"
  std::string classification;   // "success", "retry", "rate_limited", "permanent"
  std::string decision;         // why the next step was chosen
  absl::Time next_attempt_at = absl::InfinitePast();  // InfinitePast: none
};

// A job as the store keeps it.
struct JobRecord {
  JobId id = 0;
  JobSpec spec;
  std::string fingerprint;
  JobState state = JobState::kQueued;
  int attempt_count = 0;    // attempts ever started
  int budget_base = 0;      // attempt_count when the current attempt budget began (replay resets)
  int throttled_count = 0;  // of the current budget's attempts, the rate-limited ones
  absl::Time created_at;
  absl::Time updated_at;
  absl::Time next_attempt_at = absl::InfinitePast();   // due time while WAITING_RETRY
  absl::Time first_attempt_at = absl::InfinitePast();  // of the current budget; max_elapsed
  std::string last_decision;
  int last_http_status = 0;
  // The job's own wait as last written (see WaitReason): BACKOFF or RETRY_AFTER while
  // WAITING_RETRY, ORDERING_BLOCKED while BLOCKED, else kNone.
  WaitReason wait_reason = WaitReason::kNone;
  JobId waits_behind = 0;               // ORDERING_BLOCKED: the job ahead in its key; else 0
  std::string last_response_body;       // bounded by the endpoint's max_response_bytes
  std::vector<AttemptRecord> attempts;  // filled only when asked for
};

std::string FormatJobId(JobId id);
std::optional<JobId> ParseJobId(absl::string_view text);

}  // namespace rebound::common

#endif  // REBOUND_SERVER_COMMON_JOB_H_
