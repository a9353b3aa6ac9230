// Rebound's Prometheus metrics (DESIGN.md "Observability", STYLE.md "Metrics and logs").
//
// `Metrics` is built once from the configuration: every family is registered once and every
// series it can ever have is created up front, for every configured endpoint and every
// combination of the fixed enums below. Hot paths keep an `EndpointMetrics&` (or the
// `prometheus::Counter&` it points to) and never look a label up: an increment is one atomic add.
//
// Label values come only from configuration (endpoint names, `server.default_tenant`) and from
// the fixed enums of this header. No function here takes a free-form label value: the tenant of a
// request is mapped to the configured default tenant or to the literal "other" (TenantClassOf),
// so request data can never create a series.
//
// Worst-case series count (time series as Prometheus stores them; a histogram label set counts
// its buckets plus +Inf, _sum and _count):
//   per endpoint  kSeriesPerEndpoint = 244
//     counters    submitted 2 + deduplicated 2 + completed 5 + attempts 6x6 + retries 4
//                 + circuit_transitions 3 + retries_delayed 1 + throttles 3
//                 + rate_limit_headers_ignored 4                                      = 60
//     gauges      jobs 6 + dead_letter 1 + inflight 1 + circuit_state 1 + paused 1
//                 + jobs_waiting 10 + allowed_in_flight 1 + retries_in_flight 1
//                 + retry_budget 1 + operator_paused 1 + rate_limit_tokens 1
//                 + throttle_level 1 + pacing_allowed_in_flight 1 + quota_remaining 1 = 28
//     histograms  retry_after 19 + backoff_delay 19 + attempt_duration 18
//                 + job_duration 5 results x 20                                       = 156
//   global        kGlobalSeries = 658
//     rejected 5, store commit 16, store batch size 16, store jobs 3 (active, finished,
//     dead_letter) + store bytes 1 + store free bytes 1 + store purged 1, gRPC (15 methods)
//     started 15 + handled 15 x 17 codes = 255 + handling 15 x 20 = 300 + msg_received 15 +
//     msg_sent 15, build_info 1, watchers 1 (all in the registry given to Create)
//     + process metrics 6 (ProcessCollector, registered by MetricsServer)
//     + prometheus-cpp's own exposer_* metrics 7 (scrapes, bytes, a 3-quantile latency summary)
//   total = 244 x endpoints + 658; e.g. 10 endpoints: 3,098 series. WorstCaseSeries() computes
//   it; the tests check it against the registry and against the lines of a real /metrics scrape.
//
// rebound_rate_limit_tokens{endpoint} is -1 while the endpoint has no token bucket
// (endpoints[].rate_limit.rate 0, the default); select buckets with `>= 0`. It is not left
// absent: prometheus-cpp drops a family without series from the scrape, so servers without any
// bucket would not export the family at all (deploy/metrics.txt lists what every server
// exports), and a series that comes and goes with reloads breaks the created-up-front budget.
//
// rebound_circuit_state{endpoint}: 0 closed, 1 half-open, 2 open (engine::CircuitState).
//
// Thread-safety: every series is safe to update from any thread (prometheus-cpp atomics; a
// histogram takes its own small mutex). The registry passed to Create must outlive Metrics.
#ifndef REBOUND_SERVER_METRICS_METRICS_H_
#define REBOUND_SERVER_METRICS_METRICS_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/common/job.h"
#include "server/config/config.h"
#include "server/policy/policy.h"

namespace rebound::metrics {

// ---- Fixed label values ------------------------------------------------------------------------

// rebound_attempts_total{outcome}: how one attempt ended.
enum class Outcome { kSuccess, kRetryable, kRateLimited, kPermanent, kTransportError, kTimeout };
inline constexpr size_t kOutcomeCount = 6;
// "success", "retryable", "rate_limited", "permanent", "transport_error", "timeout".
absl::string_view OutcomeName(Outcome o);

// rebound_attempts_total{code_class}: the HTTP status class of an attempt's response.
enum class CodeClass { k2xx, k3xx, k4xx, k429, k5xx, kNone };
inline constexpr size_t kCodeClassCount = 6;
// "2xx", "3xx", "4xx", "429", "5xx", "none".
absl::string_view CodeClassName(CodeClass c);
// 0 (no response) -> kNone; 200..299 -> k2xx; 300..399 -> k3xx; 429 -> k429; other 400..499 ->
// k4xx; 500..599 -> k5xx. 1xx (never a final status from the executor) and anything outside
// 100..599 -> kNone: "none" means "no usable final HTTP status".
CodeClass CodeClassOf(int http_status);

// rebound_retries_total{reason}: why a retry was scheduled.
enum class RetryReason { kStatus, kTransport, kTimeout, kRateLimited };
inline constexpr size_t kRetryReasonCount = 4;
// "status", "transport", "timeout", "rate_limited".
absl::string_view RetryReasonName(RetryReason r);

// rebound_jobs_completed_total{result}, rebound_job_duration_seconds{result}.
enum class Result { kSucceeded, kFailed, kExhausted, kCancelled, kSuperseded };
inline constexpr size_t kResultCount = 5;
// "succeeded", "failed", "exhausted", "cancelled", "superseded".
absl::string_view ResultName(Result r);

// rebound_jobs_rejected_total{reason}: why a submit was refused before any job existed.
enum class RejectReason {
  kInvalid,
  kResourceExhausted,
  kUnauthenticated,
  kAlreadyExists,
  kUnavailable
};
inline constexpr size_t kRejectReasonCount = 5;
// "invalid", "resource_exhausted", "unauthenticated", "already_exists", "unavailable".
absl::string_view RejectReasonName(RejectReason r);

// rebound_store_jobs{class}: jobs the store holds. Finished: ended, not dead-lettered.
enum class StoreJobClass { kActive, kFinished, kDeadLetter };
inline constexpr size_t kStoreJobClassCount = 3;

// rebound_jobs{state}: non-terminal jobs by state, waiting split by what they wait for.
enum class JobGaugeState {
  kQueued,
  kBlocked,
  kRunning,
  kWaitingBackoff,
  kWaitingRetryAfter,
  kWaitingPaused,
};
inline constexpr size_t kJobGaugeStateCount = 6;
// "queued", "blocked", "running", "waiting_backoff", "waiting_retry_after", "waiting_paused".
absl::string_view JobGaugeStateName(JobGaugeState s);

// rebound_jobs_waiting{reason}: every common::WaitReason but kNone (ready, not held), by its
// proto name in lower case: "backoff", "retry_after", "endpoint_paused", "circuit_open",
// "rate_limited", "retry_budget", "ordering_blocked", "operator_paused". Index r - 1 is
// WaitReason r.
inline constexpr size_t kWaitingReasonCount = common::kWaitReasonCount - 1;
// "backoff", ... for WaitReason 1..8; "" for kNone.
absl::string_view WaitingReasonName(common::WaitReason r);

// rebound_circuit_transitions_total{to}: the state a circuit breaker moved to (index: the
// CircuitState value, 0 closed, 1 half-open, 2 open).
inline constexpr size_t kCircuitStateCount = 3;
// "closed", "half_open", "open" for 0, 1, 2.
absl::string_view CircuitToName(size_t state);

// The tenant label: the configured server.default_tenant, or "other" for any other tenant.
enum class TenantClass { kDefault, kOther };
inline constexpr size_t kTenantClassCount = 2;
inline constexpr absl::string_view kOtherTenant = "other";

// grpc_server_*{grpc_service, grpc_method, grpc_type}: the gRPC server metrics under the names
// and labels of go-grpc-prometheus (grpc-ecosystem), which stock gRPC dashboards and alerts use.
// grpc_type of a method: "unary", "client_stream", "server_stream" or "bidi_stream".
enum class GrpcType { kUnary, kClientStream, kServerStream, kBidiStream };
// "unary", "client_stream", "server_stream", "bidi_stream".
absl::string_view GrpcTypeName(GrpcType t);
struct GrpcMethod {
  absl::string_view service;  // grpc_service: "package.Service"
  absl::string_view method;   // grpc_method: the method's name within it
  GrpcType type;              // grpc_type
};
// The methods counted by name; any other method is counted as service "other", method "other"
// (the last entry). gRPC serves a method it does not know as a generic bidirectional stream.
inline constexpr std::array<GrpcMethod, 15> kGrpcMethods = {{
    {"rebound.v1.Rebound", "SubmitSync", GrpcType::kUnary},
    {"rebound.v1.Rebound", "SubmitSyncBatch", GrpcType::kUnary},
    {"rebound.v1.Rebound", "SubmitSyncStream", GrpcType::kBidiStream},
    {"rebound.v1.Rebound", "GetSync", GrpcType::kUnary},
    {"rebound.v1.Rebound", "WatchSync", GrpcType::kServerStream},
    {"rebound.v1.Rebound", "ListSyncs", GrpcType::kUnary},
    {"rebound.v1.Rebound", "CancelSync", GrpcType::kUnary},
    {"rebound.v1.Rebound", "ReplaySync", GrpcType::kUnary},
    {"rebound.v1.Rebound", "GetEndpointStatus", GrpcType::kUnary},
    {"rebound.v1.Rebound", "PauseEndpoint", GrpcType::kUnary},
    {"rebound.v1.Rebound", "ResumeEndpoint", GrpcType::kUnary},
    {"grpc.health.v1.Health", "Check", GrpcType::kUnary},
    {"grpc.health.v1.Health", "Watch", GrpcType::kServerStream},
    {"grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo", GrpcType::kBidiStream},
    {"other", "other", GrpcType::kBidiStream},
}};
inline constexpr size_t kGrpcMethodCount = kGrpcMethods.size();
// Index into kGrpcMethods of a method path as gRPC reports it ("/package.Service/Method"; the
// leading slash is optional); kGrpcMethodCount - 1 ("other") when not listed.
size_t GrpcMethodIndex(absl::string_view method);
// grpc_server_handled_total{grpc_code}: the canonical code names, "OK" .. "UNAUTHENTICATED".
inline constexpr size_t kGrpcCodeCount = 17;
// The name of a grpc::StatusCode value; codes outside 0..16 are reported as "UNKNOWN".
absl::string_view GrpcCodeName(int code);
// `code` clamped into 0..16 (out-of-range -> 2, UNKNOWN), for indexing.
size_t GrpcCodeIndex(int code);

// ---- Histogram buckets (seconds, except the batch size in rows) -------------------------------

namespace buckets {
inline constexpr std::array<double, 15> kAttemptDuration = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
// Retry-After values and backoff delays.
inline constexpr std::array<double, 16> kDelay = {0.01, 0.05, 0.1, 0.25, 0.5, 1,   2.5,  5,
                                                  10,   30,   60,  120,  300, 600, 1800, 3600};
inline constexpr std::array<double, 17> kJobDuration = {
    0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400};
inline constexpr std::array<double, 13> kStoreCommit = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
inline constexpr std::array<double, 13> kBatchSize = {1,   2,   4,   8,    16,   32,  64,
                                                      128, 256, 512, 1024, 2048, 4096};
inline constexpr std::array<double, 17> kGrpcHandling = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
}  // namespace buckets

// ---- Series counts ----------------------------------------------------------------------------

// Series of one histogram label set: its buckets, +Inf, _sum and _count.
constexpr size_t HistogramSeries(size_t bucket_count) { return bucket_count + 3; }

inline constexpr size_t kSeriesPerEndpoint =
    2 * kTenantClassCount + kResultCount + kOutcomeCount * kCodeClassCount +
    kRetryReasonCount                                           // counters
    + kCircuitStateCount + 1                                    // transitions, delayed
    + policy::kThrottleWaitCount + policy::kIgnoredReasonCount  // throttles, headers ignored
    + kJobGaugeStateCount + 4                                   // gauges
    + kWaitingReasonCount + 5  // jobs_waiting, allowed, retries, budget, operator, tokens
    + 3                        // throttle level, pacing allowed in flight, quota remaining
    + 2 * HistogramSeries(buckets::kDelay.size())                    // retry_after, backoff_delay
    + HistogramSeries(buckets::kAttemptDuration.size())              // attempt_duration
    + kResultCount * HistogramSeries(buckets::kJobDuration.size());  // job_duration
// Series of the registry given to Metrics::Create that do not depend on the endpoints.
inline constexpr size_t kRegistryGlobalSeries =
    kRejectReasonCount + HistogramSeries(buckets::kStoreCommit.size()) +
    HistogramSeries(buckets::kBatchSize.size()) + kStoreJobClassCount + 3 +
    kGrpcMethodCount * (3 + kGrpcCodeCount)  // started, msg_received, msg_sent; handled
    + kGrpcMethodCount * HistogramSeries(buckets::kGrpcHandling.size()) +
    2;  // + build_info, watchers
// process_cpu_seconds_total, process_{resident,virtual}_memory_bytes, process_{open,max}_fds,
// process_start_time_seconds.
inline constexpr size_t kProcessSeries = 6;
// prometheus::Exposer adds exposer_transferred_bytes_total, exposer_scrapes_total and the summary
// exposer_request_latencies (_count, _sum and 3 quantiles) to every scrape.
inline constexpr size_t kExposerSeries = 7;
inline constexpr size_t kGlobalSeries = kRegistryGlobalSeries + kProcessSeries + kExposerSeries;
static_assert(kSeriesPerEndpoint == 244, "update the series count in the header comment");
static_assert(kGlobalSeries == 658, "update the series count in the header comment");

// Per budget (config budgets[]): in flight, quota used, quota limit, tokens, scopes.
inline constexpr size_t kSeriesPerBudget = 5;

// Every series a server with `endpoint_count` endpoints and `budget_count` budgets can expose on
// /metrics (MetricsServer).
constexpr size_t WorstCaseSeries(size_t endpoint_count, size_t budget_count = 0) {
  return endpoint_count * kSeriesPerEndpoint + budget_count * kSeriesPerBudget + kGlobalSeries;
}

// The series of one budget (config budgets[], the `budget` label). Its scopes (one per value of
// split_by) are summed or reduced, so no label value ever comes from a job.
struct BudgetMetrics {
  std::string name;
  prometheus::Gauge* in_flight = nullptr;    // attempts in flight, all scopes
  prometheus::Gauge* quota_used = nullptr;   // the most one scope used of its current period
  prometheus::Gauge* quota_limit = nullptr;  // per scope and period; 0: no quota
  prometheus::Gauge* tokens = nullptr;       // the emptiest scope's bucket; -1: no bucket
  prometheus::Gauge* scopes = nullptr;       // scopes it keeps state for
};

// ---- Handles ----------------------------------------------------------------------------------

// Every series labelled with one endpoint, created up front. Arrays are indexed by the enums
// (static_cast<size_t>). The pointers stay valid as long as the registry; copying the struct is
// cheap and keeps pointing at the same series.
struct EndpointMetrics {
  std::string name;  // the endpoint's configured name (the `endpoint` label)

  prometheus::Counter* submitted[kTenantClassCount] = {};
  prometheus::Counter* deduplicated[kTenantClassCount] = {};
  prometheus::Counter* completed[kResultCount] = {};
  prometheus::Counter* attempts[kOutcomeCount][kCodeClassCount] = {};
  prometheus::Counter* retries[kRetryReasonCount] = {};
  prometheus::Histogram* retry_after = nullptr;       // the Retry-After the upstream asked for
  prometheus::Histogram* backoff_delay = nullptr;     // the delay chosen before the next attempt
  prometheus::Histogram* attempt_duration = nullptr;  // one outbound call
  prometheus::Histogram* job_duration[kResultCount] = {};  // submit to terminal state
  prometheus::Gauge* jobs[kJobGaugeStateCount] = {};
  prometheus::Gauge* dead_letter = nullptr;    // FAILED + EXHAUSTED jobs kept
  prometheus::Gauge* inflight = nullptr;       // attempts in progress
  prometheus::Gauge* circuit_state = nullptr;  // 0 closed, 1 half-open, 2 open
  prometheus::Gauge* paused = nullptr;         // 1 while the endpoint is paused, else 0
  prometheus::Counter* circuit_transitions[kCircuitStateCount] = {};  // by the state entered
  prometheus::Counter* retries_delayed = nullptr;  // retries held back by the retry budget
  prometheus::Gauge* jobs_waiting[kWaitingReasonCount] = {};  // index: WaitReason - 1
  prometheus::Gauge* allowed_in_flight = nullptr;  // max_in_flight, lower while slow start ramps
  prometheus::Gauge* retries_in_flight = nullptr;  // retries on the wire
  prometheus::Gauge* retry_budget = nullptr;       // retries allowed in flight now
  prometheus::Gauge* operator_paused = nullptr;    // 1 while an operator pause holds the endpoint
  prometheus::Gauge* rate_limit_tokens = nullptr;  // token bucket level; -1: no bucket
  // Throttles retried, by what they wait for (index: policy::ThrottleWait - 1), and rate-limit
  // header values skipped, by reason (index: policy::IgnoredReason).
  prometheus::Counter* throttles[policy::kThrottleWaitCount] = {};
  prometheus::Counter* headers_ignored[policy::kIgnoredReasonCount] = {};
  prometheus::Gauge* throttle_level = nullptr;   // 0: no throttle backoff
  prometheus::Gauge* paced_in_flight = nullptr;  // what quota pacing allows in flight
  prometheus::Gauge* quota_remaining = nullptr;  // last remaining quota read; -1: none

  void RecordSubmitted(TenantClass t) { submitted[Index(t)]->Increment(); }
  void RecordDeduplicated(TenantClass t) { deduplicated[Index(t)]->Increment(); }
  // One finished attempt: rebound_attempts_total and rebound_attempt_duration_seconds.
  void RecordAttempt(Outcome outcome, CodeClass code_class, absl::Duration duration) {
    attempts[Index(outcome)][Index(code_class)]->Increment();
    attempt_duration->Observe(absl::ToDoubleSeconds(duration));
  }
  // A retry was scheduled `delay` from now (rebound_retries_total, backoff_delay_seconds).
  void RecordRetry(RetryReason reason, absl::Duration delay) {
    retries[Index(reason)]->Increment();
    backoff_delay->Observe(absl::ToDoubleSeconds(delay));
  }
  // The upstream sent Retry-After (as received, after clamping).
  void RecordRetryAfter(absl::Duration value) {
    retry_after->Observe(absl::ToDoubleSeconds(value));
  }
  // A job reached a terminal result `duration` after it was submitted.
  void RecordCompleted(Result result, absl::Duration duration) {
    completed[Index(result)]->Increment();
    job_duration[Index(result)]->Observe(absl::ToDoubleSeconds(duration));
  }
  // rebound_jobs{state}: a job entered, left, or moved between non-terminal states.
  void JobEntered(JobGaugeState s) { jobs[Index(s)]->Increment(); }
  void JobLeft(JobGaugeState s) { jobs[Index(s)]->Decrement(); }
  void JobMoved(JobGaugeState from, JobGaugeState to) {
    JobLeft(from);
    JobEntered(to);
  }
  void SetPaused(bool p) { paused->Set(p ? 1 : 0); }
  void SetOperatorPaused(bool p) { operator_paused->Set(p ? 1 : 0); }
  // The breaker entered `state` (0 closed, 1 half-open, 2 open): the gauge follows at once and
  // the transition is counted.
  void RecordCircuitChange(int state);
  // rebound_jobs_waiting{reason}; kNone is not a series (ignored).
  void SetWaiting(common::WaitReason r, int64_t jobs);
  // The token bucket's level; any negative value (no bucket) is exported as -1.
  void SetTokens(double tokens) { rate_limit_tokens->Set(tokens < 0 ? -1 : tokens); }

  template <typename E>
  static constexpr size_t Index(E e) {
    return static_cast<size_t>(e);
  }
};

// Every grpc_server_* series of one entry of kGrpcMethods, created up front.
struct GrpcMethodMetrics {
  prometheus::Counter* started = nullptr;             // grpc_server_started_total
  prometheus::Counter* handled[kGrpcCodeCount] = {};  // grpc_server_handled_total{grpc_code}
  prometheus::Histogram* handling = nullptr;          // grpc_server_handling_seconds
  prometheus::Counter* msg_received = nullptr;        // grpc_server_msg_received_total
  prometheus::Counter* msg_sent = nullptr;            // grpc_server_msg_sent_total

  // The call ended with `code` (a grpc::StatusCode value) after `seconds`.
  void RecordHandled(int code, double seconds) {
    handled[GrpcCodeIndex(code)]->Increment();
    handling->Observe(seconds);
  }
};

// Endpoints one process can know (configured plus added by reloads); config refuses more.
inline constexpr size_t kMaxEndpoints = config::kMaxEndpoints;

class Metrics {
 public:
  // Registers every family in `registry` and creates every series for `config.endpoints` (in
  // that order: endpoint(i) is config.endpoints[i]) and config.server.default_tenant.
  // rebound_build_info{version, revision} is set to 1. `registry` must outlive the result.
  static std::unique_ptr<Metrics> Create(prometheus::Registry& registry,
                                         const config::Config& config, absl::string_view version,
                                         absl::string_view revision);

  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Endpoints known so far (config.endpoints, then any added by a reload). Thread-safe.
  size_t endpoint_count() const { return endpoint_count_.load(std::memory_order_acquire); }
  // Creates every series of a new endpoint (a config reload added it) at index
  // endpoint_count(). One thread at a time (the reload); at most kMaxEndpoints in all.
  EndpointMetrics& AddEndpoint(const std::string& name);
  // `index` is the position in config.endpoints; must be < endpoint_count().
  EndpointMetrics& endpoint(size_t index) { return endpoints_[index]; }
  const EndpointMetrics& endpoint(size_t index) const { return endpoints_[index]; }
  // By name, for set-up code; nullptr when not configured. Not for hot paths (linear search).
  EndpointMetrics* FindEndpoint(absl::string_view name);
  // Budgets known so far, in the engine's order (config.budgets, then those a reload added).
  // AddBudget as AddEndpoint: one thread at a time, never moving what others use.
  size_t budget_count() const { return budget_count_.load(std::memory_order_acquire); }
  BudgetMetrics& AddBudget(const config::BudgetConfig& budget);
  BudgetMetrics& budget(size_t index) { return budgets_[index]; }

  // The tenant label class of a request's tenant: kDefault iff it equals server.default_tenant.
  TenantClass TenantClassOf(absl::string_view tenant) const {
    return tenant == default_tenant_ ? TenantClass::kDefault : TenantClass::kOther;
  }
  // rebound_jobs_{submitted,deduplicated}_total{endpoint, tenant} for a request's tenant: one of
  // the two pre-created series (the raw tenant is compared, never used as a label).
  prometheus::Counter& Submitted(size_t endpoint_index, absl::string_view tenant) {
    return *endpoints_[endpoint_index].submitted[EndpointMetrics::Index(TenantClassOf(tenant))];
  }
  prometheus::Counter& Deduplicated(size_t endpoint_index, absl::string_view tenant) {
    return *endpoints_[endpoint_index].deduplicated[EndpointMetrics::Index(TenantClassOf(tenant))];
  }

  prometheus::Counter& Rejected(RejectReason reason) {
    return *rejected_[EndpointMetrics::Index(reason)];
  }
  prometheus::Histogram& StoreCommitDuration() { return *store_commit_duration_; }
  prometheus::Histogram& StoreBatchSize() { return *store_batch_size_; }
  // rebound_store_jobs{class}, rebound_store_bytes, rebound_store_free_bytes: what the store
  // holds, set by the app's maintenance thread; rebound_store_purged_total: ended jobs purged.
  prometheus::Gauge& StoreJobs(StoreJobClass c) { return *store_jobs_[EndpointMetrics::Index(c)]; }
  prometheus::Gauge& StoreBytes() { return *store_bytes_; }
  prometheus::Gauge& StoreFreeBytes() { return *store_free_bytes_; }
  prometheus::Counter& StorePurged() { return *store_purged_; }
  // rebound_watchers: WatchSync streams open now.
  prometheus::Gauge& Watchers() { return *watchers_; }

  // grpc_server_*; `method_index` from GrpcMethodIndex, `code` a grpc::StatusCode value.
  GrpcMethodMetrics& GrpcServer(size_t method_index) { return grpc_[method_index]; }

  const std::string& default_tenant() const { return default_tenant_; }

 private:
  Metrics() = default;

  std::string default_tenant_;
  std::vector<EndpointMetrics> endpoints_;  // capacity kMaxEndpoints: never reallocated
  std::atomic<size_t> endpoint_count_{0};
  std::vector<BudgetMetrics> budgets_;  // capacity kMaxBudgets: never reallocated
  std::atomic<size_t> budget_count_{0};
  prometheus::Family<prometheus::Gauge>* f_budget_in_flight_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_budget_quota_used_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_budget_quota_limit_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_budget_tokens_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_budget_scopes_ = nullptr;
  prometheus::Family<prometheus::Counter>* f_submitted_ = nullptr;
  prometheus::Family<prometheus::Counter>* f_deduplicated_ = nullptr;
  prometheus::Family<prometheus::Counter>* f_completed_ = nullptr;
  prometheus::Family<prometheus::Counter>* f_attempts_ = nullptr;
  prometheus::Family<prometheus::Counter>* f_retries_ = nullptr;
  prometheus::Family<prometheus::Histogram>* f_retry_after_ = nullptr;
  prometheus::Family<prometheus::Histogram>* f_backoff_ = nullptr;
  prometheus::Family<prometheus::Histogram>* f_attempt_duration_ = nullptr;
  prometheus::Family<prometheus::Histogram>* f_job_duration_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_jobs_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_dead_letter_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_inflight_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_circuit_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_paused_ = nullptr;
  prometheus::Family<prometheus::Counter>* f_circuit_transitions_ = nullptr;
  prometheus::Family<prometheus::Counter>* f_retries_delayed_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_jobs_waiting_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_allowed_in_flight_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_retries_in_flight_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_retry_budget_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_operator_paused_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_tokens_ = nullptr;
  prometheus::Family<prometheus::Counter>* f_throttles_ = nullptr;
  prometheus::Family<prometheus::Counter>* f_headers_ignored_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_throttle_level_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_paced_in_flight_ = nullptr;
  prometheus::Family<prometheus::Gauge>* f_quota_remaining_ = nullptr;
  prometheus::Counter* rejected_[kRejectReasonCount] = {};
  prometheus::Histogram* store_commit_duration_ = nullptr;
  prometheus::Histogram* store_batch_size_ = nullptr;
  GrpcMethodMetrics grpc_[kGrpcMethodCount];
  prometheus::Gauge* store_jobs_[kStoreJobClassCount] = {};
  prometheus::Gauge* store_bytes_ = nullptr;
  prometheus::Gauge* store_free_bytes_ = nullptr;
  prometheus::Counter* store_purged_ = nullptr;
  prometheus::Gauge* watchers_ = nullptr;
};

}  // namespace rebound::metrics

#endif  // REBOUND_SERVER_METRICS_METRICS_H_
