#include "server/common/job.h"

#include <openssl/evp.h>

#include <array>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace rebound::common {
namespace {

constexpr std::array<std::pair<JobState, absl::string_view>, 8> kStateNames = {{
    {JobState::kQueued, "QUEUED"},
    {JobState::kBlocked, "BLOCKED"},
    {JobState::kRunning, "RUNNING"},
    {JobState::kWaitingRetry, "WAITING_RETRY"},
    {JobState::kSucceeded, "SUCCEEDED"},
    {JobState::kFailed, "FAILED"},
    {JobState::kExhausted, "EXHAUSTED"},
    {JobState::kCancelled, "CANCELLED"},
}};

constexpr std::array<std::pair<WaitReason, absl::string_view>, kWaitReasonCount> kWaitNames = {{
    {WaitReason::kNone, "NONE"},
    {WaitReason::kBackoff, "BACKOFF"},
    {WaitReason::kRetryAfter, "RETRY_AFTER"},
    {WaitReason::kEndpointPaused, "ENDPOINT_PAUSED"},
    {WaitReason::kCircuitOpen, "CIRCUIT_OPEN"},
    {WaitReason::kRateLimited, "RATE_LIMITED"},
    {WaitReason::kRetryBudget, "RETRY_BUDGET"},
    {WaitReason::kOrderingBlocked, "ORDERING_BLOCKED"},
    {WaitReason::kOperatorPaused, "OPERATOR_PAUSED"},
    {WaitReason::kQuotaExhausted, "QUOTA_EXHAUSTED"},
    {WaitReason::kQuotaReserved, "QUOTA_RESERVED"},
}};

// Feeds length-prefixed fields so that ("ab","c") and ("a","bc") differ.
class Digest {
 public:
  Digest() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Digest() { EVP_MD_CTX_free(ctx_); }
  Digest(const Digest&) = delete;
  Digest& operator=(const Digest&) = delete;

  void Field(absl::string_view s) {
    const std::string len = absl::StrCat(s.size(), ":");
    EVP_DigestUpdate(ctx_, len.data(), len.size());
    EVP_DigestUpdate(ctx_, s.data(), s.size());
  }
  std::string HexFinal() {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, out, &n);
    return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(out), n));
  }

 private:
  EVP_MD_CTX* ctx_;
};

}  // namespace

absl::string_view JobStateName(JobState s) {
  for (const auto& [state, name] : kStateNames) {
    if (state == s) return name;
  }
  return "UNKNOWN";
}

std::optional<JobState> JobStateFromName(absl::string_view name) {
  for (const auto& [state, n] : kStateNames) {
    if (n == name) return state;
  }
  return std::nullopt;
}

absl::string_view WaitReasonName(WaitReason r) {
  for (const auto& [reason, name] : kWaitNames) {
    if (reason == r) return name;
  }
  return "UNKNOWN";
}

std::optional<WaitReason> WaitReasonFromName(absl::string_view name) {
  for (const auto& [reason, n] : kWaitNames) {
    if (n == name) return reason;
  }
  return std::nullopt;
}

bool IsTerminal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kExhausted ||
         s == JobState::kCancelled;
}

bool IsDeadLetter(JobState s) { return s == JobState::kFailed || s == JobState::kExhausted; }

std::string Fingerprint(const JobSpec& spec) {
  Digest d;
  d.Field("rebound.fingerprint.v1");
  d.Field(spec.endpoint);
  d.Field(spec.method);
  d.Field(spec.path);
  d.Field(spec.query);
  // traceparent is per call (tracing), not part of what the request does: a retried submit
  // with a new trace must still deduplicate.
  std::vector<const std::pair<std::string, std::string>*> headers;
  for (const auto& h : spec.headers) {
    if (!absl::EqualsIgnoreCase(h.first, "traceparent")) headers.push_back(&h);
  }
  d.Field(absl::StrCat(headers.size()));
  for (const auto* h : headers) {
    d.Field(h->first);
    d.Field(h->second);
  }
  d.Field(spec.body);
  d.Field(spec.ordering_key);
  d.Field(spec.policy);
  d.Field(spec.deadline == absl::InfiniteFuture()
              ? std::string("none")
              : absl::StrCat(absl::ToUnixMillis(spec.deadline)));
  return d.HexFinal();
}

std::string FormatJobId(JobId id) { return absl::StrCat("j", id); }

std::optional<JobId> ParseJobId(absl::string_view text) {
  if (text.size() < 2 || text[0] != 'j') return std::nullopt;
  JobId id = 0;
  if (!absl::SimpleAtoi(text.substr(1), &id) || id <= 0) return std::nullopt;
  return id;
}

}  // namespace rebound::common
