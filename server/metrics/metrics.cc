#include "server/metrics/metrics.h"

#include <array>
#include <cassert>
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
static_assert(static_cast<size_t>(common::WaitReason::kQuotaReserved) == kWaitingReasonCount);

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
// Index r - 1: common::WaitReason r (the proto names in lower case).
constexpr std::array<absl::string_view, kWaitingReasonCount> kWaitingReasonNames = {
    "backoff",      "retry_after",      "endpoint_paused", "circuit_open",    "rate_limited",
    "retry_budget", "ordering_blocked", "operator_paused", "quota_exhausted", "quota_reserved"};
constexpr std::array<absl::string_view, kCircuitStateCount> kCircuitToNames = {"closed",
                                                                               "half_open", "open"};
constexpr std::array<absl::string_view, 4> kGrpcTypeNames = {"unary", "client_stream",
                                                             "server_stream", "bidi_stream"};
static_assert(static_cast<size_t>(GrpcType::kBidiStream) + 1 == kGrpcTypeNames.size());
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

absl::string_view WaitingReasonName(common::WaitReason r) {
  const int i = static_cast<int>(r);
  return i >= 1 && i <= static_cast<int>(kWaitingReasonCount) ? kWaitingReasonNames[i - 1] : "";
}
absl::string_view CircuitToName(size_t state) {
  return state < kCircuitStateCount ? kCircuitToNames[state] : "";
}

void EndpointMetrics::RecordCircuitChange(int state) {
  if (state < 0 || state >= static_cast<int>(kCircuitStateCount)) return;
  circuit_state->Set(state);
  circuit_transitions[state]->Increment();
}

void EndpointMetrics::SetWaiting(common::WaitReason r, int64_t jobs) {
  const int i = static_cast<int>(r);
  if (i < 1 || i > static_cast<int>(kWaitingReasonCount)) return;
  jobs_waiting[i - 1]->Set(static_cast<double>(jobs));
}

CodeClass CodeClassOf(int http_status) {
  if (http_status == 429) return CodeClass::k429;
  if (http_status >= 200 && http_status < 300) return CodeClass::k2xx;
  if (http_status >= 300 && http_status < 400) return CodeClass::k3xx;
  if (http_status >= 400 && http_status < 500) return CodeClass::k4xx;
  if (http_status >= 500 && http_status < 600) return CodeClass::k5xx;
  return CodeClass::kNone;
}

absl::string_view GrpcTypeName(GrpcType t) { return kGrpcTypeNames[static_cast<size_t>(t)]; }

size_t GrpcMethodIndex(absl::string_view method) {
  if (!method.empty() && method.front() == '/') method.remove_prefix(1);
  const size_t slash = method.find('/');
  if (slash == absl::string_view::npos) return kGrpcMethodCount - 1;
  const absl::string_view service = method.substr(0, slash);
  const absl::string_view name = method.substr(slash + 1);
  for (size_t i = 0; i + 1 < kGrpcMethodCount; ++i) {
    if (kGrpcMethods[i].service == service && kGrpcMethods[i].method == name) return i;
  }
  return kGrpcMethodCount - 1;
}

size_t GrpcCodeIndex(int code) {
  return code >= 0 && code < static_cast<int>(kGrpcCodeCount) ? static_cast<size_t>(code)
                                                              : kGrpcUnknown;
}

absl::string_view GrpcCodeName(int code) { return kGrpcCodeNames[GrpcCodeIndex(code)]; }

EndpointMetrics& Metrics::AddEndpoint(const std::string& name) {
  // Reserved up front: adding never moves the series other threads are using.
  assert(endpoints_.size() < kMaxEndpoints);
  const std::string tenant_values[kTenantClassCount] = {default_tenant_, S(kOtherTenant)};
  EndpointMetrics e;
  e.name = name;
  const prometheus::Labels base = {{"endpoint", name}};
  auto with = [&base](const char* key, absl::string_view value) {
    prometheus::Labels l = base;
    l.emplace(key, S(value));
    return l;
  };
  for (size_t t = 0; t < kTenantClassCount; ++t) {
    e.submitted[t] = &f_submitted_->Add(with("tenant", tenant_values[t]));
    e.deduplicated[t] = &f_deduplicated_->Add(with("tenant", tenant_values[t]));
  }
  for (size_t r = 0; r < kResultCount; ++r) {
    e.completed[r] = &f_completed_->Add(with("result", kResultNames[r]));
    e.job_duration[r] =
        &f_job_duration_->Add(with("result", kResultNames[r]), Bounds(buckets::kJobDuration));
  }
  for (size_t o = 0; o < kOutcomeCount; ++o) {
    for (size_t c = 0; c < kCodeClassCount; ++c) {
      prometheus::Labels l = with("outcome", kOutcomeNames[o]);
      l.emplace("code_class", S(kCodeClassNames[c]));
      e.attempts[o][c] = &f_attempts_->Add(l);
    }
  }
  for (size_t r = 0; r < kRetryReasonCount; ++r) {
    e.retries[r] = &f_retries_->Add(with("reason", kRetryReasonNames[r]));
  }
  e.retry_after = &f_retry_after_->Add(base, Bounds(buckets::kDelay));
  e.backoff_delay = &f_backoff_->Add(base, Bounds(buckets::kDelay));
  e.attempt_duration = &f_attempt_duration_->Add(base, Bounds(buckets::kAttemptDuration));
  for (size_t s = 0; s < kJobGaugeStateCount; ++s) {
    e.jobs[s] = &f_jobs_->Add(with("state", kJobGaugeStateNames[s]));
  }
  e.dead_letter = &f_dead_letter_->Add(base);
  e.inflight = &f_inflight_->Add(base);
  e.circuit_state = &f_circuit_->Add(base);
  e.paused = &f_paused_->Add(base);
  for (size_t c = 0; c < kCircuitStateCount; ++c) {
    e.circuit_transitions[c] = &f_circuit_transitions_->Add(with("to", kCircuitToNames[c]));
  }
  e.retries_delayed = &f_retries_delayed_->Add(base);
  for (size_t r = 0; r < kWaitingReasonCount; ++r) {
    e.jobs_waiting[r] = &f_jobs_waiting_->Add(with("reason", kWaitingReasonNames[r]));
  }
  e.allowed_in_flight = &f_allowed_in_flight_->Add(base);
  e.retries_in_flight = &f_retries_in_flight_->Add(base);
  e.retry_budget = &f_retry_budget_->Add(base);
  e.operator_paused = &f_operator_paused_->Add(base);
  e.rate_limit_tokens = &f_tokens_->Add(base);
  e.rate_limit_tokens->Set(-1);  // no bucket until the engine reports one
  for (size_t w = 0; w < policy::kThrottleWaitCount; ++w) {
    e.throttles[w] = &f_throttles_->Add(
        with("wait", policy::ThrottleWaitName(static_cast<policy::ThrottleWait>(w + 1))));
  }
  for (size_t r = 0; r < policy::kIgnoredReasonCount; ++r) {
    e.headers_ignored[r] = &f_headers_ignored_->Add(
        with("reason", policy::IgnoredReasonName(static_cast<policy::IgnoredReason>(r))));
  }
  e.throttle_level = &f_throttle_level_->Add(base);
  e.paced_in_flight = &f_paced_in_flight_->Add(base);
  e.quota_remaining = &f_quota_remaining_->Add(base);
  e.quota_remaining->Set(-1);  // no reading until the engine reports one
  endpoints_.push_back(std::move(e));
  endpoint_count_.store(endpoints_.size(), std::memory_order_release);
  return endpoints_.back();
}

BudgetMetrics& Metrics::AddBudget(const config::BudgetConfig& budget) {
  assert(budgets_.size() < config::kMaxBudgets);
  const prometheus::Labels l = {{"budget", budget.name}};
  BudgetMetrics b;
  b.name = budget.name;
  b.in_flight = &f_budget_in_flight_->Add(l);
  b.quota_used = &f_budget_quota_used_->Add(l);
  b.quota_limit = &f_budget_quota_limit_->Add(l);
  b.quota_limit->Set(static_cast<double>(budget.quota.limit));
  b.tokens = &f_budget_tokens_->Add(l);
  b.tokens->Set(budget.rate_limit.rate > 0 ? static_cast<double>(budget.rate_limit.burst) : -1);
  b.scopes = &f_budget_scopes_->Add(l);
  budgets_.push_back(std::move(b));
  budget_count_.store(budgets_.size(), std::memory_order_release);
  return budgets_.back();
}

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
  m->f_submitted_ =
      &prometheus::BuildCounter()
           .Name("rebound_jobs_submitted_total")
           .Help("Jobs accepted, by endpoint and tenant (configured default or other).")
           .Register(registry);
  m->f_deduplicated_ =
      &prometheus::BuildCounter()
           .Name("rebound_jobs_deduplicated_total")
           .Help("Submits answered with an existing job (same idempotency key and request).")
           .Register(registry);
  auto& rejected = prometheus::BuildCounter()
                       .Name("rebound_jobs_rejected_total")
                       .Help("Submits refused before a job existed, by reason.")
                       .Register(registry);
  m->f_completed_ = &prometheus::BuildCounter()
                         .Name("rebound_jobs_completed_total")
                         .Help("Jobs that reached a terminal result.")
                         .Register(registry);
  m->f_attempts_ = &prometheus::BuildCounter()
                        .Name("rebound_attempts_total")
                        .Help("Outbound attempts, by outcome and HTTP status class.")
                        .Register(registry);
  m->f_retries_ = &prometheus::BuildCounter()
                       .Name("rebound_retries_total")
                       .Help("Retries scheduled, by reason.")
                       .Register(registry);
  m->f_retry_after_ = &prometheus::BuildHistogram()
                           .Name("rebound_retry_after_seconds")
                           .Help("Retry-After values sent by upstreams.")
                           .Register(registry);
  m->f_backoff_ = &prometheus::BuildHistogram()
                       .Name("rebound_backoff_delay_seconds")
                       .Help("Delay chosen before the next attempt of a job.")
                       .Register(registry);
  m->f_attempt_duration_ = &prometheus::BuildHistogram()
                                .Name("rebound_attempt_duration_seconds")
                                .Help("Duration of one outbound attempt.")
                                .Register(registry);
  m->f_job_duration_ = &prometheus::BuildHistogram()
                            .Name("rebound_job_duration_seconds")
                            .Help("Time from submit to terminal result.")
                            .Register(registry);
  m->f_jobs_ = &prometheus::BuildGauge()
                    .Name("rebound_jobs")
                    .Help("Non-terminal jobs, by state (waiting split by what it waits for).")
                    .Register(registry);
  m->f_dead_letter_ = &prometheus::BuildGauge()
                           .Name("rebound_dead_letter_jobs")
                           .Help("Jobs in a dead-letter state (FAILED or EXHAUSTED).")
                           .Register(registry);
  m->f_inflight_ = &prometheus::BuildGauge()
                        .Name("rebound_endpoint_inflight")
                        .Help("Attempts in progress against the endpoint.")
                        .Register(registry);
  m->f_circuit_ = &prometheus::BuildGauge()
                       .Name("rebound_circuit_state")
                       .Help("Circuit breaker state: 0 closed, 1 half-open, 2 open.")
                       .Register(registry);
  m->f_paused_ = &prometheus::BuildGauge()
                      .Name("rebound_endpoint_paused")
                      .Help("1 while the endpoint is paused (rate limited), else 0.")
                      .Register(registry);
  m->f_circuit_transitions_ =
      &prometheus::BuildCounter()
           .Name("rebound_circuit_transitions_total")
           .Help("Circuit breaker state changes, by the state entered (closed, half_open, open).")
           .Register(registry);
  m->f_retries_delayed_ =
      &prometheus::BuildCounter()
           .Name("rebound_retries_delayed_total")
           .Help("Retries held back by the endpoint's retry budget (once per hold of a job).")
           .Register(registry);
  m->f_jobs_waiting_ =
      &prometheus::BuildGauge()
           .Name("rebound_jobs_waiting")
           .Help("Jobs that are not running and wait, by why they wait (the job's wait reason).")
           .Register(registry);
  m->f_allowed_in_flight_ =
      &prometheus::BuildGauge()
           .Name("rebound_endpoint_allowed_in_flight")
           .Help(
               "Attempts the endpoint may have in flight now: max_in_flight, lower during "
               "slow start.")
           .Register(registry);
  m->f_retries_in_flight_ = &prometheus::BuildGauge()
                                 .Name("rebound_retries_in_flight")
                                 .Help("Retries (attempts after the first) in flight.")
                                 .Register(registry);
  m->f_retry_budget_ = &prometheus::BuildGauge()
                            .Name("rebound_retry_budget")
                            .Help("Retries the endpoint's retry budget allows in flight now.")
                            .Register(registry);
  m->f_operator_paused_ =
      &prometheus::BuildGauge()
           .Name("rebound_endpoint_operator_paused")
           .Help("1 while an operator pause (PauseEndpoint) holds the endpoint, else 0.")
           .Register(registry);
  m->f_tokens_ = &prometheus::BuildGauge()
                      .Name("rebound_rate_limit_tokens")
                      .Help("Tokens in the endpoint's token bucket; -1: no rate limit configured.")
                      .Register(registry);
  m->f_throttles_ = &prometheus::BuildCounter()
                         .Name("rebound_throttles_total")
                         .Help(
                             "Rate-limited answers retried, by what the retry waits for: "
                             "retry_after, reset (announced by headers) or backoff (the "
                             "throttle backoff: no time named).")
                         .Register(registry);
  m->f_headers_ignored_ =
      &prometheus::BuildCounter()
           .Name("rebound_rate_limit_headers_ignored_total")
           .Help(
               "Rate-limit header values skipped, by reason (unparsable, negative, past, "
               "too_far_ahead).")
           .Register(registry);
  m->f_throttle_level_ = &prometheus::BuildGauge()
                              .Name("rebound_throttle_level")
                              .Help("The endpoint's throttle backoff level; 0: none.")
                              .Register(registry);
  m->f_paced_in_flight_ =
      &prometheus::BuildGauge()
           .Name("rebound_pacing_allowed_in_flight")
           .Help(
               "Attempts quota pacing allows in flight now (max_in_flight when it does not "
               "limit).")
           .Register(registry);
  m->f_quota_remaining_ =
      &prometheus::BuildGauge()
           .Name("rebound_quota_remaining")
           .Help("The remaining quota the endpoint's last answer announced; -1: none yet.")
           .Register(registry);
  auto& commit = prometheus::BuildHistogram()
                     .Name("rebound_store_commit_duration_seconds")
                     .Help("Duration of one store transaction (group commit).")
                     .Register(registry);
  auto& batch = prometheus::BuildHistogram()
                    .Name("rebound_store_batch_size")
                    .Help("Rows written per store commit.")
                    .Register(registry);
  auto& store_jobs = prometheus::BuildGauge()
                         .Name("rebound_store_jobs")
                         .Help("Jobs in the store by class: active, finished, dead_letter.")
                         .Register(registry);
  auto& store_bytes = prometheus::BuildGauge()
                          .Name("rebound_store_bytes")
                          .Help("Size of the store's database file (pages in use or free).")
                          .Register(registry);
  auto& store_free_bytes = prometheus::BuildGauge()
                               .Name("rebound_store_free_bytes")
                               .Help("Free pages in the database file, not yet reclaimed.")
                               .Register(registry);
  auto& store_purged = prometheus::BuildCounter()
                           .Name("rebound_store_purged_total")
                           .Help("Ended jobs purged from the store after their retention.")
                           .Register(registry);
  // The gRPC server metrics of go-grpc-prometheus, names, labels and help texts alike.
  auto& grpc_started = prometheus::BuildCounter()
                           .Name("grpc_server_started_total")
                           .Help("Total number of RPCs started on the server.")
                           .Register(registry);
  auto& grpc_handled = prometheus::BuildCounter()
                           .Name("grpc_server_handled_total")
                           .Help(
                               "Total number of RPCs completed on the server, regardless of "
                               "success or failure.")
                           .Register(registry);
  auto& grpc_handling = prometheus::BuildHistogram()
                            .Name("grpc_server_handling_seconds")
                            .Help(
                                "Histogram of response latency (seconds) of gRPC that had been "
                                "application-level handled by the server.")
                            .Register(registry);
  auto& grpc_received = prometheus::BuildCounter()
                            .Name("grpc_server_msg_received_total")
                            .Help("Total number of RPC stream messages received on the server.")
                            .Register(registry);
  auto& grpc_sent = prometheus::BuildCounter()
                        .Name("grpc_server_msg_sent_total")
                        .Help("Total number of gRPC stream messages sent by the server.")
                        .Register(registry);
  auto& watchers = prometheus::BuildGauge()
                       .Name("rebound_watchers")
                       .Help("WatchSync streams open (bounded by server.max_watchers).")
                       .Register(registry);
  auto& build_info = prometheus::BuildGauge()
                         .Name("rebound_build_info")
                         .Help("Always 1; the labels name the running build.")
                         .Register(registry);

  m->f_budget_in_flight_ = &prometheus::BuildGauge()
                                .Name("rebound_budget_in_flight")
                                .Help("Attempts in flight counted by the budget, all its scopes.")
                                .Register(registry);
  m->f_budget_quota_used_ =
      &prometheus::BuildGauge()
           .Name("rebound_budget_quota_used")
           .Help(
               "Quota used in the current period by the budget's busiest scope (split_by "
               "value).")
           .Register(registry);
  m->f_budget_quota_limit_ = &prometheus::BuildGauge()
                                  .Name("rebound_budget_quota_limit")
                                  .Help("The budget's quota per scope and period; 0: no quota.")
                                  .Register(registry);
  m->f_budget_tokens_ =
      &prometheus::BuildGauge()
           .Name("rebound_budget_tokens")
           .Help("Tokens in the emptiest scope's bucket; -1: the budget has no bucket.")
           .Register(registry);
  m->f_budget_scopes_ = &prometheus::BuildGauge()
                             .Name("rebound_budget_scopes")
                             .Help("Scopes (values of split_by) the budget keeps state for.")
                             .Register(registry);

  // Series: every one created now.
  m->endpoints_.reserve(kMaxEndpoints);
  for (const config::EndpointConfig& ec : config.endpoints) m->AddEndpoint(ec.name);
  m->budgets_.reserve(config::kMaxBudgets);
  for (const config::BudgetConfig& b : config.budgets) m->AddBudget(b);

  for (size_t r = 0; r < kRejectReasonCount; ++r) {
    m->rejected_[r] = &rejected.Add({{"reason", S(kRejectReasonNames[r])}});
  }
  m->store_commit_duration_ = &commit.Add({}, Bounds(buckets::kStoreCommit));
  m->store_batch_size_ = &batch.Add({}, Bounds(buckets::kBatchSize));
  constexpr std::array<absl::string_view, kStoreJobClassCount> kStoreJobClassNames = {
      "active", "finished", "dead_letter"};
  for (size_t c = 0; c < kStoreJobClassCount; ++c) {
    m->store_jobs_[c] = &store_jobs.Add({{"class", S(kStoreJobClassNames[c])}});
  }
  m->store_bytes_ = &store_bytes.Add({});
  m->store_free_bytes_ = &store_free_bytes.Add({});
  m->store_purged_ = &store_purged.Add({});
  m->watchers_ = &watchers.Add({});
  for (size_t i = 0; i < kGrpcMethodCount; ++i) {
    const prometheus::Labels labels = {{"grpc_service", S(kGrpcMethods[i].service)},
                                       {"grpc_method", S(kGrpcMethods[i].method)},
                                       {"grpc_type", S(GrpcTypeName(kGrpcMethods[i].type))}};
    GrpcMethodMetrics& g = m->grpc_[i];
    g.started = &grpc_started.Add(labels);
    for (size_t c = 0; c < kGrpcCodeCount; ++c) {
      prometheus::Labels with_code = labels;
      with_code.emplace("grpc_code", S(kGrpcCodeNames[c]));
      g.handled[c] = &grpc_handled.Add(with_code);
    }
    g.handling = &grpc_handling.Add(labels, Bounds(buckets::kGrpcHandling));
    g.msg_received = &grpc_received.Add(labels);
    g.msg_sent = &grpc_sent.Add(labels);
  }
  build_info.Add({{"version", S(version)}, {"revision", S(revision)}}).Set(1);
  return m;
}

}  // namespace rebound::metrics
