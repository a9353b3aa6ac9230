#include "server/metrics/metrics.h"

#include <array>
#include <string>
#include <utility>

#include "prometheus/labels.h"

namespace rebound::metrics {
namespace {

// The counts in metrics.h size the handle arrays: they must match the enums.
static_assert(static_cast<size_t>(Outcome::kTimeout) + 1 == kOutcomeCount);
static_assert(static_cast<size_t>(CodeClass::kNone) + 1 == kCodeClassCount);
static_assert(static_cast<size_t>(RetryReason::kRateLimited) + 1 == kRetryReasonCount);
static_assert(static_cast<size_t>(Result::kSuperseded) + 1 == kResultCount);
static_assert(static_cast<size_t>(RejectReason::kUnavailable) + 1 == kRejectReasonCount);
static_assert(static_cast<size_t>(JobGaugeState::kWaitingPaused) + 1 == kJobGaugeStateCount);
static_assert(static_cast<size_t>(TenantClass::kOther) + 1 == kTenantClassCount);

constexpr std::array<absl::string_view, kOutcomeCount> kOutcomeNames = {
    "success", "retryable", "rate_limited", "permanent", "transport_error", "timeout"};
constexpr std::array<absl::string_view, kCodeClassCount> kCodeClassNames = {"2xx", "3xx", "4xx",
                                                                            "429", "5xx", "none"};
constexpr std::array<absl::string_view, kRetryReasonCount> kRetryReasonNames = {
    "status", "transport", "timeout", "rate_limited"};
constexpr std::array<absl::string_view, kResultCount> kResultNames = {
    "succeeded", "failed", "exhausted", "cancelled", "superseded"};
constexpr std::array<absl::string_view, kRejectReasonCount> kRejectReasonNames = {
    "invalid", "resource_exhausted", "unauthenticated", "already_exists", "unavailable"};
constexpr std::array<absl::string_view, kJobGaugeStateCount> kJobGaugeStateNames = {
    "queued", "blocked", "running", "waiting_backoff", "waiting_retry_after", "waiting_paused"};
// grpc::StatusCode 0..16, in order.
constexpr std::array<absl::string_view, kGrpcCodeCount> kGrpcCodeNames = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};
constexpr int kGrpcUnknown = 2;

template <size_t N>
prometheus::Histogram::BucketBoundaries Bounds(const std::array<double, N>& b) {
  return prometheus::Histogram::BucketBoundaries(b.begin(), b.end());
}

std::string S(absl::string_view v) { return std::string(v); }

}  // namespace

absl::string_view OutcomeName(Outcome o) { return kOutcomeNames[static_cast<size_t>(o)]; }
absl::string_view CodeClassName(CodeClass c) { return kCodeClassNames[static_cast<size_t>(c)]; }
absl::string_view RetryReasonName(RetryReason r) {
  return kRetryReasonNames[static_cast<size_t>(r)];
}
absl::string_view ResultName(Result r) { return kResultNames[static_cast<size_t>(r)]; }
absl::string_view RejectReasonName(RejectReason r) {
  return kRejectReasonNames[static_cast<size_t>(r)];
}
absl::string_view JobGaugeStateName(JobGaugeState s) {
  return kJobGaugeStateNames[static_cast<size_t>(s)];
}

CodeClass CodeClassOf(int http_status) {
  if (http_status == 429) return CodeClass::k429;
  if (http_status >= 200 && http_status < 300) return CodeClass::k2xx;
  if (http_status >= 300 && http_status < 400) return CodeClass::k3xx;
  if (http_status >= 400 && http_status < 500) return CodeClass::k4xx;
  if (http_status >= 500 && http_status < 600) return CodeClass::k5xx;
  return CodeClass::kNone;
}

size_t GrpcMethodIndex(absl::string_view method) {
  if (!method.empty() && method.front() == '/') method.remove_prefix(1);
  for (size_t i = 0; i + 1 < kGrpcMethodCount; ++i) {
    if (kGrpcMethods[i] == method) return i;
  }
  return kGrpcMethodCount - 1;
}

size_t GrpcCodeIndex(int code) {
  return code >= 0 && code < static_cast<int>(kGrpcCodeCount) ? static_cast<size_t>(code)
                                                              : kGrpcUnknown;
}

absl::string_view GrpcCodeName(int code) { return kGrpcCodeNames[GrpcCodeIndex(code)]; }

EndpointMetrics* Metrics::FindEndpoint(absl::string_view name) {
  for (EndpointMetrics& e : endpoints_) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

std::unique_ptr<Metrics> Metrics::Create(prometheus::Registry& registry,
                                         const config::Config& config, absl::string_view version,
                                         absl::string_view revision) {
  std::unique_ptr<Metrics> m(new Metrics());
  m->default_tenant_ = config.server.default_tenant;

  // Families: registered once each.
  auto& submitted =
      prometheus::BuildCounter()
          .Name("rebound_jobs_submitted_total")
          .Help("Jobs accepted, by endpoint and tenant (configured default or other).")
          .Register(registry);
  auto& deduplicated =
      prometheus::BuildCounter()
          .Name("rebound_jobs_deduplicated_total")
          .Help("Submits answered with an existing job (same idempotency key and request).")
          .Register(registry);
  auto& rejected = prometheus::BuildCounter()
                       .Name("rebound_jobs_rejected_total")
                       .Help("Submits refused before a job existed, by reason.")
                       .Register(registry);
  auto& completed = prometheus::BuildCounter()
                        .Name("rebound_jobs_completed_total")
                        .Help("Jobs that reached a terminal result.")
                        .Register(registry);
  auto& attempts = prometheus::BuildCounter()
                       .Name("rebound_attempts_total")
                       .Help("Outbound attempts, by outcome and HTTP status class.")
                       .Register(registry);
  auto& retries = prometheus::BuildCounter()
                      .Name("rebound_retries_total")
                      .Help("Retries scheduled, by reason.")
                      .Register(registry);
  auto& retry_after = prometheus::BuildHistogram()
                          .Name("rebound_retry_after_seconds")
                          .Help("Retry-After values sent by upstreams.")
                          .Register(registry);
  auto& backoff = prometheus::BuildHistogram()
                      .Name("rebound_backoff_delay_seconds")
                      .Help("Delay chosen before the next attempt of a job.")
                      .Register(registry);
  auto& attempt_duration = prometheus::BuildHistogram()
                               .Name("rebound_attempt_duration_seconds")
                               .Help("Duration of one outbound attempt.")
                               .Register(registry);
  auto& job_duration = prometheus::BuildHistogram()
                           .Name("rebound_job_duration_seconds")
                           .Help("Time from submit to terminal result.")
                           .Register(registry);
  auto& jobs = prometheus::BuildGauge()
                   .Name("rebound_jobs")
                   .Help("Non-terminal jobs, by state (waiting split by what it waits for).")
                   .Register(registry);
  auto& dead_letter = prometheus::BuildGauge()
                          .Name("rebound_dead_letter_jobs")
                          .Help("Jobs in a dead-letter state (FAILED or EXHAUSTED).")
                          .Register(registry);
  auto& inflight = prometheus::BuildGauge()
                       .Name("rebound_endpoint_inflight")
                       .Help("Attempts in progress against the endpoint.")
                       .Register(registry);
  auto& circuit = prometheus::BuildGauge()
                      .Name("rebound_circuit_state")
                      .Help(
                          "Circuit breaker state: 0 closed, 1 half-open, 2 open (no breaker yet: "
                          "always 0).")
                      .Register(registry);
  auto& paused = prometheus::BuildGauge()
                     .Name("rebound_endpoint_paused")
                     .Help("1 while the endpoint is paused (rate limited), else 0.")
                     .Register(registry);
  auto& commit = prometheus::BuildHistogram()
                     .Name("rebound_store_commit_duration_seconds")
                     .Help("Duration of one store transaction (group commit).")
                     .Register(registry);
  auto& batch = prometheus::BuildHistogram()
                    .Name("rebound_store_batch_size")
                    .Help("Rows written per store commit.")
                    .Register(registry);
  auto& grpc_requests = prometheus::BuildCounter()
                            .Name("rebound_grpc_server_requests_total")
                            .Help("gRPC calls handled, by method and status code.")
                            .Register(registry);
  auto& grpc_handling = prometheus::BuildHistogram()
                            .Name("rebound_grpc_server_handling_seconds")
                            .Help("Time from the start of a gRPC call to its status.")
                            .Register(registry);
  auto& build_info = prometheus::BuildGauge()
                         .Name("rebound_build_info")
                         .Help("Always 1; the labels name the running build.")
                         .Register(registry);

  // Series: every one created now.
  m->endpoints_.reserve(config.endpoints.size());
  const std::string tenant_values[kTenantClassCount] = {m->default_tenant_, S(kOtherTenant)};
  for (const config::EndpointConfig& ec : config.endpoints) {
    EndpointMetrics e;
    e.name = ec.name;
    const prometheus::Labels base = {{"endpoint", ec.name}};
    auto with = [&base](const char* key, absl::string_view value) {
      prometheus::Labels l = base;
      l.emplace(key, S(value));
      return l;
    };
    for (size_t t = 0; t < kTenantClassCount; ++t) {
      e.submitted[t] = &submitted.Add(with("tenant", tenant_values[t]));
      e.deduplicated[t] = &deduplicated.Add(with("tenant", tenant_values[t]));
    }
    for (size_t r = 0; r < kResultCount; ++r) {
      e.completed[r] = &completed.Add(with("result", kResultNames[r]));
      e.job_duration[r] =
          &job_duration.Add(with("result", kResultNames[r]), Bounds(buckets::kJobDuration));
    }
    for (size_t o = 0; o < kOutcomeCount; ++o) {
      for (size_t c = 0; c < kCodeClassCount; ++c) {
        prometheus::Labels l = with("outcome", kOutcomeNames[o]);
        l.emplace("code_class", S(kCodeClassNames[c]));
        e.attempts[o][c] = &attempts.Add(l);
      }
    }
    for (size_t r = 0; r < kRetryReasonCount; ++r) {
      e.retries[r] = &retries.Add(with("reason", kRetryReasonNames[r]));
    }
    e.retry_after = &retry_after.Add(base, Bounds(buckets::kDelay));
    e.backoff_delay = &backoff.Add(base, Bounds(buckets::kDelay));
    e.attempt_duration = &attempt_duration.Add(base, Bounds(buckets::kAttemptDuration));
    for (size_t s = 0; s < kJobGaugeStateCount; ++s) {
      e.jobs[s] = &jobs.Add(with("state", kJobGaugeStateNames[s]));
    }
    e.dead_letter = &dead_letter.Add(base);
    e.inflight = &inflight.Add(base);
    e.circuit_state = &circuit.Add(base);
    e.paused = &paused.Add(base);
    m->endpoints_.push_back(std::move(e));
  }

  for (size_t r = 0; r < kRejectReasonCount; ++r) {
    m->rejected_[r] = &rejected.Add({{"reason", S(kRejectReasonNames[r])}});
  }
  m->store_commit_duration_ = &commit.Add({}, Bounds(buckets::kStoreCommit));
  m->store_batch_size_ = &batch.Add({}, Bounds(buckets::kBatchSize));
  for (size_t i = 0; i < kGrpcMethodCount; ++i) {
    const std::string method = S(kGrpcMethods[i]);
    for (size_t c = 0; c < kGrpcCodeCount; ++c) {
      m->grpc_requests_[i][c] =
          &grpc_requests.Add({{"method", method}, {"code", S(kGrpcCodeNames[c])}});
    }
    m->grpc_handling_[i] = &grpc_handling.Add({{"method", method}}, Bounds(buckets::kGrpcHandling));
  }
  build_info.Add({{"version", S(version)}, {"revision", S(revision)}}).Set(1);
  return m;
}

}  // namespace rebound::metrics
