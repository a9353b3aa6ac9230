#include "server/api/service.h"

#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/api/validation.h"
#include "server/http/traceparent.h"

namespace rebound::api {
namespace {

using common::JobState;

constexpr absl::string_view kTenantMetadata = "x-rebound-tenant";
constexpr size_t kMaxTenantBytes = 64;
constexpr absl::string_view kShuttingDown = "server is shutting down; retry on another replica";

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t nanos = absl::ToUnixNanos(t);
  out->set_seconds(nanos / 1'000'000'000);
  out->set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
}

bool HasTime(absl::Time t) { return t != absl::InfinitePast() && t != absl::InfiniteFuture(); }

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t us = absl::ToInt64Microseconds(d);
  out->set_seconds(us / 1'000'000);
  out->set_nanos(static_cast<int32_t>((us % 1'000'000) * 1000));
}

// The one place a wait becomes a JobWait (SyncJob.wait and SyncEvent.wait).
void SetWait(common::WaitReason reason, absl::Time until, common::JobId behind, v1::JobWait* out) {
  out->set_reason(static_cast<v1::WaitReason>(static_cast<int>(reason)));
  if (HasTime(until)) SetTime(until, out->mutable_until());
  if (behind != 0) out->set_behind_job_id(common::FormatJobId(behind));
}

v1::CircuitState ToProtoCircuit(engine::CircuitState c) {
  switch (c) {
    case engine::CircuitState::kClosed:
      return v1::CLOSED;
    case engine::CircuitState::kHalfOpen:
      return v1::HALF_OPEN;
    case engine::CircuitState::kOpen:
      return v1::OPEN;
  }
  return v1::CIRCUIT_STATE_UNSPECIFIED;
}

bool IsSecretHeader(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  for (absl::string_view s : {"authorization", "cookie", "api-key", "apikey", "api_key", "token",
                              "secret", "password", "session"}) {
    if (absl::StrContains(lower, s)) return true;
  }
  return false;
}

v1::SyncState ToProtoState(JobState s) { return static_cast<v1::SyncState>(static_cast<int>(s)); }

}  // namespace

v1::SyncEvent ToProto(const engine::JobEvent& e) {
  v1::SyncEvent out;
  out.set_job_id(common::FormatJobId(e.id));
  out.set_state(ToProtoState(e.state));
  out.set_attempt_count(e.attempt_count);
  out.set_decision(e.decision);
  if (HasTime(e.at)) SetTime(e.at, out.mutable_at());
  if (HasTime(e.next_attempt_at)) SetTime(e.next_attempt_at, out.mutable_next_attempt_at());
  out.set_last_http_status(e.last_http_status);
  if (e.wait_reason != common::WaitReason::kNone) {
    SetWait(e.wait_reason, e.wait_until, e.waits_behind, out.mutable_wait());
  }
  return out;
}

namespace {

absl::StatusOr<common::JobId> JobIdOf(const std::string& text) {
  if (text.empty()) return absl::InvalidArgumentError("job_id: is required");
  auto id = text.size() <= kMaxJobIdBytes ? common::ParseJobId(text) : std::nullopt;
  if (!id) {
    return absl::InvalidArgumentError(absl::StrCat("job_id: '", Echo(text), "' is not a job id"));
  }
  return *id;
}

// Streams a job's events. The engine holds the Sink; the Sink points at the reactor until
// gRPC is done with it, so a late event after the client left goes nowhere.
class WatchReactor final : public grpc::ServerWriteReactor<v1::SyncEvent> {
 public:
  class Sink final : public engine::WatchSink {
   public:
    explicit Sink(WatchReactor* r) : reactor_(r) {}
    void OnEvent(const engine::JobEvent& event) override {
      absl::MutexLock lock(&mu_);
      if (reactor_ != nullptr) reactor_->Enqueue(ToProto(event));
    }
    void OnEnd(absl::Status status) override {
      absl::MutexLock lock(&mu_);
      if (reactor_ != nullptr) reactor_->End(std::move(status));
    }
    bool Closed() const override {
      absl::MutexLock lock(&mu_);
      return reactor_ == nullptr;
    }
    void Detach() {
      absl::MutexLock lock(&mu_);
      reactor_ = nullptr;
    }

   private:
    mutable absl::Mutex mu_;
    WatchReactor* reactor_ ABSL_GUARDED_BY(mu_);
  };

  WatchReactor() : sink_(std::make_shared<Sink>(this)) {}
  std::shared_ptr<Sink> sink() { return sink_; }
  // Runs once gRPC is done with the stream (finished, cancelled or the client gone).
  void SetOnDone(absl::AnyInvocable<void() &&> on_done) { on_done_ = std::move(on_done); }

  void Enqueue(v1::SyncEvent event) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    queue_.push_back(std::move(event));
    if (!writing_) WriteNextLocked();
  }
  void End(absl::Status status) {
    absl::MutexLock lock(&mu_);
    ended_ = true;
    end_status_ = std::move(status);
    if (!writing_) FinishLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok || cancelled_) {
      if (!cancelled_) end_status_ = absl::CancelledError("client went away");
      FinishLocked();
      return;
    }
    if (!queue_.empty()) {
      WriteNextLocked();
    } else if (ended_) {
      FinishLocked();
    }
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;  // a write in progress may still complete OK: finish after it
    end_status_ = absl::CancelledError("cancelled by the client");
    if (!writing_) FinishLocked();
  }
  void OnDone() override {
    sink_->Detach();
    if (on_done_) std::move(on_done_)();
    delete this;
  }

 private:
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    current_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    StartWrite(&current_);
  }
  void FinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(ToGrpcStatus(end_status_));
  }

  std::shared_ptr<Sink> sink_;
  absl::AnyInvocable<void() &&> on_done_;
  absl::Mutex mu_;
  std::deque<v1::SyncEvent> queue_ ABSL_GUARDED_BY(mu_);
  v1::SyncEvent current_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status end_status_ ABSL_GUARDED_BY(mu_);
};

// Answers a unary call at once; returns the reactor for the handler to return.
grpc::ServerUnaryReactor* Finished(grpc::ServerUnaryReactor* reactor, const absl::Status& status) {
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

void FillSubmitResponse(const store::SubmitResult& r, v1::SubmitSyncResponse* out) {
  out->set_job_id(common::FormatJobId(r.job_id));
  out->set_state(ToProtoState(r.state));
  out->set_deduplicated(r.deduplicated);
}

// One item's answer (BatchItemResult, SubmitSyncStreamResponse): its code and message, and the
// job for an accepted item or the existing one of ALREADY_EXISTS.
template <typename Item>
void FillItem(const absl::Status& status, const store::SubmitResult* r, Item* item) {
  item->set_code(static_cast<int32_t>(status.code()));
  item->set_message(std::string(status.message()));
  if (r != nullptr && (status.ok() || status.code() == absl::StatusCode::kAlreadyExists)) {
    FillSubmitResponse(*r, item->mutable_result());
  }
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

void ToProto(const common::JobRecord& job, bool with_details, v1::SyncJob* out) {
  out->set_job_id(common::FormatJobId(job.id));
  out->set_tenant(job.spec.tenant);
  v1::SyncRequest* req = out->mutable_request();
  req->set_idempotency_key(job.spec.idempotency_key);
  req->set_endpoint(job.spec.endpoint);
  req->set_method(job.spec.method);
  req->set_path(job.spec.path);
  req->set_query(job.spec.query);
  for (const auto& [name, value] : job.spec.headers) {
    auto* h = req->add_headers();
    h->set_name(name);
    h->set_value(IsSecretHeader(name) ? "[redacted]" : value);
  }
  if (with_details) req->set_body(job.spec.body);
  req->set_ordering_key(job.spec.ordering_key);
  if (HasTime(job.spec.deadline)) SetTime(job.spec.deadline, req->mutable_deadline());
  for (const auto& [k, v] : job.spec.labels) (*req->mutable_labels())[k] = v;
  req->set_correlation_id(job.spec.correlation_id);
  req->set_policy(job.spec.policy);
  req->set_priority(static_cast<v1::Priority>(static_cast<int>(job.spec.priority)));

  out->set_state(ToProtoState(job.state));
  out->set_attempt_count(job.attempt_count);
  out->set_throttled_attempts(job.throttled_count);
  if (HasTime(job.created_at)) SetTime(job.created_at, out->mutable_created_at());
  if (HasTime(job.updated_at)) SetTime(job.updated_at, out->mutable_updated_at());
  if (job.state == JobState::kWaitingRetry && HasTime(job.next_attempt_at)) {
    SetTime(job.next_attempt_at, out->mutable_next_attempt_at());
  }
  out->set_last_decision(job.last_decision);
  out->set_last_http_status(job.last_http_status);
  if (!with_details) return;
  out->set_last_response_body(job.last_response_body);
  for (const auto& a : job.attempts) {
    v1::Attempt* pa = out->add_attempts();
    pa->set_number(a.number);
    SetTime(a.started_at, pa->mutable_started_at());
    SetDuration(a.duration, pa->mutable_duration());
    pa->set_http_status(a.http_status);
    pa->set_transport_error(a.transport_error);
    pa->set_classification(a.classification);
    pa->set_decision(a.decision);
    if (HasTime(a.next_attempt_at)) SetTime(a.next_attempt_at, pa->mutable_next_attempt_at());
  }
}

void ToProto(const engine::EndpointStatus& s, absl::Time now, v1::EndpointStatus* out) {
  out->set_name(s.name);
  out->set_circuit_enabled(s.circuit_enabled);
  out->set_circuit(ToProtoCircuit(s.circuit));
  if (HasTime(s.circuit_changed_at))
    SetTime(s.circuit_changed_at, out->mutable_circuit_changed_at());
  if (s.circuit == engine::CircuitState::kOpen && HasTime(s.next_probe_at)) {
    SetTime(s.next_probe_at, out->mutable_next_probe_at());
  }
  out->set_window_requests(s.window_requests);
  out->set_window_failures(s.window_failures);
  out->set_window_throttles(s.window_throttles);
  if (HasTime(s.paused_until) && s.paused_until > now) {
    SetTime(s.paused_until, out->mutable_paused_until());
    out->set_pause_cause(s.pause_cause);
  }
  out->set_throttle_level(s.throttle_level);
  out->set_pacing_active(s.pacing_active);
  out->set_paced_in_flight(s.paced_in_flight);
  if (s.quota_remaining) out->set_quota_remaining(*s.quota_remaining);
  out->set_quota_low_water(s.quota_low_water);
  if (HasTime(s.quota_reset_at) && s.quota_reset_at > now) {
    SetTime(s.quota_reset_at, out->mutable_quota_reset_at());
  }
  if (HasTime(s.paced_until) && s.paced_until > now) {
    SetTime(s.paced_until, out->mutable_paced_until());
  }
  out->set_operator_paused(s.operator_paused);
  if (s.operator_paused) {
    if (HasTime(s.operator_paused_until)) {
      SetTime(s.operator_paused_until, out->mutable_operator_paused_until());
    }
    if (HasTime(s.operator_paused_at)) {
      SetTime(s.operator_paused_at, out->mutable_operator_paused_at());
    }
    out->set_operator_reason(s.operator_reason);
  }
  out->set_in_flight(s.in_flight);
  out->set_max_in_flight(s.max_in_flight);
  out->set_allowed_in_flight(s.allowed_in_flight);
  out->set_slow_start_level(s.slow_start_level);
  if (HasTime(s.slow_start_until) && s.slow_start_until > now) {
    SetTime(s.slow_start_until, out->mutable_slow_start_until());
  }
  out->set_rate(s.rate);
  out->set_burst(s.burst);
  out->set_tokens(s.tokens);
  out->set_retry_budget_enabled(s.retry_budget_enabled);
  out->set_retries_in_flight(s.retries_in_flight);
  out->set_retry_budget(s.retry_budget);
  for (int r = 1; r < common::kWaitReasonCount; ++r) {
    if (s.waiting[static_cast<size_t>(r)] == 0) continue;
    v1::WaitCount* w = out->add_waiting();
    w->set_reason(static_cast<v1::WaitReason>(r));
    w->set_count(s.waiting[static_cast<size_t>(r)]);
  }
  out->set_ready(s.ready);
  out->set_running(s.running);
  SetDuration(s.oldest_waiting_age, out->mutable_oldest_waiting_age());
  for (const engine::BudgetSnapshot& b : s.budgets) {
    v1::BudgetStatus* bs = out->add_budgets();
    bs->set_name(b.name);
    bs->set_split_by(b.split_by);
    bs->set_rate(b.rate);
    bs->set_burst(b.burst);
    bs->set_max_in_flight(b.max_in_flight);
    bs->set_quota_limit(b.quota_limit);
    if (b.quota_limit > 0 && HasTime(b.period_end)) SetTime(b.period_end, bs->mutable_period_end());
    bs->set_scope_count(static_cast<int64_t>(b.scopes));
    for (const engine::BudgetScopeSnapshot& sc : b.busiest) {
      v1::BudgetScope* scope = bs->add_busiest();
      scope->set_scope(sc.scope);
      scope->set_in_flight(sc.in_flight);
      if (sc.tokens >= 0) scope->set_tokens(sc.tokens);
      scope->set_quota_used(sc.quota_used);
    }
  }
}

common::Priority PriorityOf(const common::JobSpec& spec, const config::Config& config) {
  if (spec.priority != common::Priority::kUnspecified) return spec.priority;
  std::shared_ptr<const policy::Policy> policy;
  if (!spec.policy.empty()) policy = config.FindPolicy(spec.policy);
  if (policy == nullptr) {
    const config::EndpointConfig* endpoint = config.FindEndpoint(spec.endpoint);
    policy = config.FindPolicy(endpoint != nullptr ? endpoint->policy : "default");
  }
  return policy != nullptr ? policy->priority : common::Priority::kNormal;
}

std::optional<v1::JobWait> JobWaitOf(const common::JobRecord& job, common::Priority priority,
                                     absl::Time now, const engine::EndpointControl& endpoints) {
  using common::WaitReason;
  v1::JobWait wait;
  switch (job.state) {
    case JobState::kBlocked:
      SetWait(WaitReason::kOrderingBlocked, absl::InfiniteFuture(), job.waits_behind, &wait);
      return wait;
    case JobState::kWaitingRetry:
      if (job.next_attempt_at > now) {
        // A row written before wait reasons were stored reads kNone: it is a backoff.
        SetWait(job.wait_reason == WaitReason::kRetryAfter ? WaitReason::kRetryAfter
                                                           : WaitReason::kBackoff,
                job.next_attempt_at, 0, &wait);
        return wait;
      }
      break;  // due: ready to run, so the endpoint's gate decides
    case JobState::kQueued:
      break;
    default:
      return std::nullopt;
  }
  absl::Time until = absl::InfiniteFuture();
  WaitReason reason =
      endpoints.EndpointWait(job.spec.endpoint, job.attempt_count > job.budget_base, &until);
  if (reason == WaitReason::kNone) {
    reason = endpoints.BudgetWait(job.spec.endpoint, job.spec, priority, &until);
  }
  if (reason == WaitReason::kNone) return std::nullopt;
  SetWait(reason, until, 0, &wait);
  return wait;
}

ReboundService::ReboundService(std::shared_ptr<const config::Config> config, engine::Engine& engine,
                               engine::EndpointControl& endpoints, store::JobStore& store,
                               const common::Clock& clock, metrics::Metrics* metrics,
                               log::EventLog* log)
    : config_(std::move(config)),
      engine_(engine),
      endpoints_(endpoints),
      store_(store),
      clock_(clock),
      metrics_(metrics),
      log_(log) {}

void ReboundService::FillJob(const common::JobRecord& job, bool with_details, absl::Time now,
                             v1::SyncJob* out) const {
  ToProto(job, with_details, out);
  const common::Priority priority = PriorityOf(job.spec, *Config());
  if (auto wait = JobWaitOf(job, priority, now, endpoints_)) {
    *out->mutable_wait() = *std::move(wait);
  }
}

void ReboundService::Rejected(const absl::Status& status, absl::string_view tenant,
                              absl::string_view endpoint) const {
  if (metrics_ != nullptr) {
    metrics::RejectReason reason = metrics::RejectReason::kInvalid;
    switch (status.code()) {
      case absl::StatusCode::kResourceExhausted:
        reason = metrics::RejectReason::kResourceExhausted;
        break;
      case absl::StatusCode::kAlreadyExists:
        reason = metrics::RejectReason::kAlreadyExists;
        break;
      case absl::StatusCode::kUnavailable:
        reason = metrics::RejectReason::kUnavailable;
        break;
      case absl::StatusCode::kUnauthenticated:
        reason = metrics::RejectReason::kUnauthenticated;
        break;
      default:
        break;
    }
    metrics_->Rejected(reason).Increment();
  }
  if (log_ != nullptr) {
    log::JobFields f;
    f.tenant = tenant;
    f.endpoint = endpoint;
    const std::string reason =
        absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
    f.reason = reason;
    log_->Log(log::Event::kRejected, f);
  }
}

absl::StatusOr<store::NewJob> ReboundService::PrepareJob(const grpc::CallbackServerContext* ctx,
                                                         const config::Config& config,
                                                         const std::string& tenant,
                                                         const v1::SyncRequest& request,
                                                         absl::string_view field) {
  auto spec = ValidateSyncRequest(request, config, tenant, field);
  if (!spec.ok()) {
    Rejected(spec.status(), tenant, "");
    return spec.status();
  }
  ApplyTrace(ctx, &*spec);
  store::NewJob job;
  job.fingerprint = common::Fingerprint(*spec);
  job.spec = *std::move(spec);
  return job;
}

void ReboundService::ApplyTrace(const grpc::CallbackServerContext* ctx, common::JobSpec* spec) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("traceparent");
  if (it == md.end()) return;
  const absl::string_view parent(it->second.data(), it->second.size());
  if (!http::ValidTraceparent(parent)) return;
  if (spec->correlation_id.empty())
    spec->correlation_id = http::CorrelationIdFromTraceparent(parent);
  for (const auto& [name, value] : spec->headers) {
    if (absl::AsciiStrToLower(name) == "traceparent") return;  // the caller set its own
  }
  std::string child;
  {
    absl::MutexLock lock(&rng_mu_);
    child = http::NewChildTraceparent(parent, rng_);
  }
  spec->headers.emplace_back("traceparent", std::move(child));
}

absl::StatusOr<std::string> ReboundService::TenantOf(const grpc::CallbackServerContext* ctx) const {
  const auto& md = ctx->client_metadata();
  auto it = md.find(std::string(kTenantMetadata));
  if (it == md.end()) return Config()->server.default_tenant;
  std::string tenant(it->second.data(), it->second.size());
  const bool ok = !tenant.empty() && tenant.size() <= kMaxTenantBytes &&
                  std::all_of(tenant.begin(), tenant.end(), [](char c) {
                    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
                           c == '_' || c == '.';
                  });
  if (!ok) {
    return absl::InvalidArgumentError(
        "metadata x-rebound-tenant: 1-64 characters of [A-Za-z0-9_.-]");
  }
  return tenant;
}

absl::StatusOr<std::pair<std::string, common::JobId>> ReboundService::JobOf(
    const grpc::CallbackServerContext* ctx, const std::string& job_id) const {
  auto tenant = TenantOf(ctx);
  if (!tenant.ok()) return tenant.status();
  auto id = JobIdOf(job_id);
  if (!id.ok()) return id.status();
  return std::make_pair(*std::move(tenant), *id);
}

absl::StatusOr<std::string> ReboundService::SubmitterOf(
    const grpc::CallbackServerContext* ctx) const {
  if (!accepting_.load()) return absl::UnavailableError(kShuttingDown);
  return TenantOf(ctx);
}

grpc::ServerUnaryReactor* ReboundService::SubmitSync(grpc::CallbackServerContext* ctx,
                                                     const v1::SubmitSyncRequest* request,
                                                     v1::SubmitSyncResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  auto tenant = SubmitterOf(ctx);
  if (!tenant.ok()) {
    Rejected(tenant.status(), "", "");
    return Finished(reactor, tenant.status());
  }
  if (!request->has_request()) {
    const absl::Status missing = absl::InvalidArgumentError("request: is required");
    Rejected(missing, *tenant, "");
    return Finished(reactor, missing);
  }
  auto job = PrepareJob(ctx, *Config(), *tenant, request->request(), "request");
  if (!job.ok()) return Finished(reactor, job.status());
  std::vector<store::NewJob> jobs;
  jobs.push_back(*std::move(job));
  engine_.Submit(std::move(jobs),
                 [this, reactor, response, t = *tenant](std::vector<store::SubmitResult> results) {
                   const store::SubmitResult& r = results.at(0);
                   if (r.status.ok()) {
                     FillSubmitResponse(r, response);
                   } else {
                     Rejected(r.status, t, "");
                   }
                   reactor->Finish(ToGrpcStatus(r.status));
                 });
  return reactor;
}

// SubmitSyncStream: each client message is one job, each answer that job's result as soon as
// it is durable (engine commit callbacks arrive on the store's writer thread, in any order). At
// most `window` jobs are unanswered (in the commit, or answered and not yet written); at the
// window the reactor stops reading, so a client that sends faster than the store commits, or
// reads no answers, is held back by HTTP/2 flow control and costs the server a bounded amount.
// The reactor deletes itself in OnDone, which gRPC runs after Finish; Finish waits for every
// commit callback of the stream, so none can reach a deleted reactor.
class SubmitStreamReactor final
    : public grpc::ServerBidiReactor<v1::SubmitSyncStreamRequest, v1::SubmitSyncStreamResponse> {
 public:
  SubmitStreamReactor(ReboundService& service, const grpc::CallbackServerContext* ctx,
                      std::string tenant)
      : service_(service),
        ctx_(ctx),
        tenant_(std::move(tenant)),
        window_(service.Config()->server.stream_window) {
    absl::MutexLock lock(&mu_);
    ReadNextLocked();
  }

  void OnReadDone(bool ok) override {
    uint64_t sequence = 0;
    v1::SyncRequest request;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      if (!ok) {  // the client half-closed (or went away: OnCancel follows)
        half_closed_ = true;
        MaybeFinishLocked();
        return;
      }
      if (dropping_) return MaybeFinishLocked();
      if (!service_.accepting_.load()) {
        // Shutting down: what was read is answered, the rest is the client's to resubmit.
        end_status_ = absl::UnavailableError(
            "server is shutting down; resubmit the unanswered jobs on another replica or later");
        stopped_ = true;
        return MaybeFinishLocked();
      }
      ++unanswered_;
      sequence = request_.sequence();
      request = std::move(*request_.mutable_request());
    }
    // Outside the lock: the answer may come back at once (an invalid item, a full server).
    Submit(sequence, request);
    absl::MutexLock lock(&mu_);
    ReadNextLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    --unanswered_;
    if (!ok) {
      DropLocked(absl::CancelledError("the client went away"));
    } else if (!queue_.empty()) {
      WriteNextLocked();
    }
    ReadNextLocked();
    MaybeFinishLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    DropLocked(absl::CancelledError("cancelled by the client"));
    MaybeFinishLocked();
  }

  void OnDone() override { delete this; }

 private:
  // Jobs read while the stream's previous jobs are in the store's commit wait, and go to it
  // together when that commit is back: one store write (and one callback) per commit for the
  // stream, not one per job, as a batch would.
  void Submit(uint64_t sequence, const v1::SyncRequest& request) {
    auto job = service_.PrepareJob(ctx_, *service_.Config(), tenant_, request, "request");
    if (!job.ok()) return Answer(sequence, job.status(), nullptr);
    {
      absl::MutexLock lock(&mu_);
      waiting_.push_back(*std::move(job));
      waiting_sequences_.push_back(sequence);
      if (submitting_) return;
      submitting_ = true;
    }
    SubmitWaiting();
  }

  // Hands the waiting jobs to the engine; called with submitting_ set, not holding mu_.
  void SubmitWaiting() {
    std::vector<store::NewJob> jobs;
    std::vector<uint64_t> sequences;
    {
      absl::MutexLock lock(&mu_);
      jobs.swap(waiting_);
      sequences.swap(waiting_sequences_);
    }
    service_.engine_.Submit(std::move(jobs), [this, sequences = std::move(sequences)](
                                                 std::vector<store::SubmitResult> results) {
      for (size_t i = 0; i < results.size(); ++i) {
        const store::SubmitResult& r = results[i];
        if (!r.status.ok()) service_.Rejected(r.status, tenant_, "");
        Answer(sequences[i], r.status, &r);
      }
      {
        absl::MutexLock lock(&mu_);
        if (waiting_.empty()) {
          submitting_ = false;
          return;
        }
      }
      SubmitWaiting();
    });
  }

  void Answer(uint64_t sequence, const absl::Status& status, const store::SubmitResult* r) {
    v1::SubmitSyncStreamResponse answer;
    answer.set_sequence(sequence);
    FillItem(status, r, &answer);
    absl::MutexLock lock(&mu_);
    if (dropping_) {  // nobody reads answers any more
      --unanswered_;
      return MaybeFinishLocked();
    }
    queue_.push_back(std::move(answer));
    if (!writing_) WriteNextLocked();
  }

  void ReadNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (reading_ || half_closed_ || stopped_ || dropping_ || unanswered_ >= window_) return;
    reading_ = true;
    StartRead(&request_);
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    current_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    StartWrite(&current_);
  }

  // The client is gone: answers still to come are dropped as they arrive.
  void DropLocked(absl::Status why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (dropping_) return;
    dropping_ = true;
    end_status_ = std::move(why);
    unanswered_ -= queue_.size();
    queue_.clear();
  }

  // Finishes once nothing is outstanding: no read or write in progress and no commit callback
  // to come; OK only when the client half-closed and every job was answered.
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || reading_ || writing_ || unanswered_ > 0) return;
    if (!half_closed_ && !stopped_ && !dropping_) return;
    finished_ = true;
    Finish(ToGrpcStatus(end_status_));
  }

  ReboundService& service_;
  const grpc::CallbackServerContext* const ctx_;
  const std::string tenant_;
  const size_t window_;
  absl::Mutex mu_;
  v1::SubmitSyncStreamRequest request_ ABSL_GUARDED_BY(mu_);
  v1::SubmitSyncStreamResponse current_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::SubmitSyncStreamResponse> queue_ ABSL_GUARDED_BY(mu_);
  size_t unanswered_ ABSL_GUARDED_BY(mu_) = 0;               // read, and not yet written or dropped
  std::vector<store::NewJob> waiting_ ABSL_GUARDED_BY(mu_);  // for the commit in progress
  std::vector<uint64_t> waiting_sequences_ ABSL_GUARDED_BY(mu_);
  bool submitting_ ABSL_GUARDED_BY(mu_) = false;  // a submit of this stream is in the store
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool half_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;   // shutting down: read no more
  bool dropping_ ABSL_GUARDED_BY(mu_) = false;  // the client is gone
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status end_status_ ABSL_GUARDED_BY(mu_);
};

grpc::ServerBidiReactor<v1::SubmitSyncStreamRequest, v1::SubmitSyncStreamResponse>*
ReboundService::SubmitSyncStream(grpc::CallbackServerContext* ctx) {
  auto tenant = SubmitterOf(ctx);
  if (!tenant.ok()) {
    Rejected(tenant.status(), "", "");
    // A reactor that only finishes: gRPC still runs its OnDone.
    class Refused final : public grpc::ServerBidiReactor<v1::SubmitSyncStreamRequest,
                                                         v1::SubmitSyncStreamResponse> {
     public:
      explicit Refused(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
      void OnDone() override { delete this; }
    };
    return new Refused(tenant.status());
  }
  return new SubmitStreamReactor(*this, ctx, *std::move(tenant));
}

grpc::ServerUnaryReactor* ReboundService::SubmitSyncBatch(grpc::CallbackServerContext* ctx,
                                                          const v1::SubmitSyncBatchRequest* request,
                                                          v1::SubmitSyncBatchResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  auto tenant = SubmitterOf(ctx);
  if (!tenant.ok()) {
    Rejected(tenant.status(), "", "");
    return Finished(reactor, tenant.status());
  }
  const auto n = static_cast<size_t>(request->requests_size());
  if (n == 0 || n > Config()->server.max_batch_size) {
    Rejected(absl::InvalidArgumentError("requests: batch size"), *tenant, "");
    return Finished(reactor, absl::InvalidArgumentError(
                                 absl::StrCat("requests: ", n, " items; a batch holds 1 to ",
                                              Config()->server.max_batch_size)));
  }
  // Invalid items are answered on their own; the valid ones go to the store together.
  std::vector<store::NewJob> jobs;
  std::vector<int> job_index;  // request index of each job
  jobs.reserve(n);
  const std::shared_ptr<const config::Config> config = Config();
  for (size_t i = 0; i < n; ++i) {
    auto* item = response->add_results();
    auto job = PrepareJob(ctx, *config, *tenant, request->requests(static_cast<int>(i)),
                          absl::StrCat("requests[", i, "]"));
    if (!job.ok()) {
      FillItem(job.status(), nullptr, item);
      continue;
    }
    jobs.push_back(*std::move(job));
    job_index.push_back(static_cast<int>(i));
  }
  if (jobs.empty()) {
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  engine_.Submit(std::move(jobs),
                 [this, reactor, response, t = *tenant,
                  job_index = std::move(job_index)](std::vector<store::SubmitResult> results) {
                   for (size_t j = 0; j < results.size(); ++j) {
                     const store::SubmitResult& r = results[j];
                     if (!r.status.ok()) Rejected(r.status, t, "");
                     FillItem(r.status, &r, response->mutable_results(job_index[j]));
                   }
                   reactor->Finish(grpc::Status::OK);
                 });
  return reactor;
}

grpc::ServerUnaryReactor* ReboundService::GetSync(grpc::CallbackServerContext* ctx,
                                                  const v1::GetSyncRequest* request,
                                                  v1::SyncJob* response) {
  auto* reactor = ctx->DefaultReactor();
  auto job_ref = JobOf(ctx, request->job_id());
  if (!job_ref.ok()) return Finished(reactor, job_ref.status());
  const auto& [tenant, id] = *job_ref;
  auto job = store_.Get(tenant, id, /*with_attempts=*/true);
  if (job.ok()) FillJob(*job, /*with_details=*/true, clock_.Now(), response);
  return Finished(reactor, job.status());
}

grpc::ServerWriteReactor<v1::SyncEvent>* ReboundService::WatchSync(
    grpc::CallbackServerContext* ctx, const v1::WatchSyncRequest* request) {
  auto* reactor = new WatchReactor();
  auto job_ref = JobOf(ctx, request->job_id());
  if (!job_ref.ok()) {
    reactor->End(job_ref.status());
    return reactor;
  }
  const auto& [tenant, id] = *job_ref;
  if (absl::Status s = AcquireWatcher(tenant); !s.ok()) {
    reactor->End(std::move(s));
    return reactor;
  }
  // The engine lets go of the sink as soon as the stream is done, not at the job's next event.
  reactor->SetOnDone([this, tenant = tenant, id = id, sink = reactor->sink()]() mutable {
    ReleaseWatcher(tenant);
    engine_.Unwatch(id, std::move(sink));
  });
  engine_.Watch(tenant, id, reactor->sink());
  return reactor;
}

absl::Status ReboundService::AcquireWatcher(const std::string& tenant) {
  const config::ServerConfig& limits = Config()->server;
  absl::MutexLock lock(&watch_mu_);
  if (watchers_ >= static_cast<int64_t>(limits.max_watchers)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many WatchSync streams open on this server (server.max_watchers = ",
                     limits.max_watchers, "); close one, or poll GetSync"));
  }
  int64_t& mine = watchers_by_tenant_[tenant];
  if (mine >= static_cast<int64_t>(limits.max_watchers_per_tenant)) {
    if (mine == 0) watchers_by_tenant_.erase(tenant);
    return absl::ResourceExhaustedError(absl::StrCat(
        "too many WatchSync streams open for this tenant (server.max_watchers_per_tenant = ",
        limits.max_watchers_per_tenant, "); close one, or poll GetSync"));
  }
  ++mine;
  ++watchers_;
  if (metrics_ != nullptr) metrics_->Watchers().Set(static_cast<double>(watchers_));
  return absl::OkStatus();
}

void ReboundService::ReleaseWatcher(const std::string& tenant) {
  absl::MutexLock lock(&watch_mu_);
  --watchers_;
  if (metrics_ != nullptr) metrics_->Watchers().Set(static_cast<double>(watchers_));
  auto it = watchers_by_tenant_.find(tenant);
  if (it != watchers_by_tenant_.end() && --it->second <= 0) watchers_by_tenant_.erase(it);
}

grpc::ServerUnaryReactor* ReboundService::ListSyncs(grpc::CallbackServerContext* ctx,
                                                    const v1::ListSyncsRequest* request,
                                                    v1::ListSyncsResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  auto tenant = TenantOf(ctx);
  if (!tenant.ok()) return Finished(reactor, tenant.status());
  auto filter = ValidateListRequest(*request, *Config());
  if (!filter.ok()) return Finished(reactor, filter.status());
  const common::WaitReason reason = static_cast<common::WaitReason>(request->wait_reason());
  const absl::Time now = clock_.Now();
  if (reason != common::WaitReason::kNone && !AddWaitFilter(reason, now, endpoints_, &*filter)) {
    return Finished(reactor, absl::OkStatus());  // no job can wait for it now: an empty page
  }
  auto page = store_.List(*tenant, *filter, request->page_size(), request->page_token());
  if (page.ok()) {
    for (const auto& job : page->jobs) {
      FillJob(job, /*with_details=*/false, now, response->add_jobs());
    }
    response->set_next_page_token(page->next_page_token);
  }
  return Finished(reactor, page.status());
}

bool AddWaitFilter(common::WaitReason reason, absl::Time now,
                   const engine::EndpointControl& endpoints, store::ListFilter* filter) {
  using common::WaitReason;
  switch (reason) {
    case WaitReason::kBackoff:
    case WaitReason::kRetryAfter:
      filter->wait_reason = reason;  // stored with WAITING_RETRY; only while it lasts
      filter->due_after = now;
      return true;
    case WaitReason::kOrderingBlocked:
      filter->wait_reason = reason;
      return true;
    default:
      break;
  }
  // The endpoint's reasons: jobs ready to run (QUEUED, or WAITING_RETRY that is due) on the
  // endpoints whose gate holds them back for `reason` now.
  std::vector<JobState> ready;
  for (JobState s : {JobState::kQueued, JobState::kWaitingRetry}) {
    if (filter->states.empty() || absl::c_linear_search(filter->states, s)) ready.push_back(s);
  }
  filter->endpoints = endpoints.EndpointsWaiting(reason);
  if (!filter->endpoint.empty() && !absl::c_linear_search(filter->endpoints, filter->endpoint)) {
    return false;
  }
  if (ready.empty() || filter->endpoints.empty()) return false;
  filter->states = std::move(ready);
  filter->due_by = now;
  filter->retries_only = reason == WaitReason::kRetryBudget;
  return true;
}

void ReboundService::FinishWithJob(grpc::ServerUnaryReactor* reactor, absl::Status status,
                                   const std::string& tenant, common::JobId id,
                                   v1::SyncJob* response) {
  if (!status.ok()) {
    reactor->Finish(ToGrpcStatus(status));
    return;
  }
  auto job = store_.Get(tenant, id, /*with_attempts=*/false);
  if (job.ok()) FillJob(*job, /*with_details=*/false, clock_.Now(), response);
  reactor->Finish(ToGrpcStatus(job.status()));
}

grpc::ServerUnaryReactor* ReboundService::CancelSync(grpc::CallbackServerContext* ctx,
                                                     const v1::CancelSyncRequest* request,
                                                     v1::SyncJob* response) {
  auto* reactor = ctx->DefaultReactor();
  auto job_ref = JobOf(ctx, request->job_id());
  if (!job_ref.ok()) return Finished(reactor, job_ref.status());
  const auto& [tenant, id] = *job_ref;
  engine_.Cancel(tenant, id, [this, reactor, response, t = tenant, i = id](absl::Status s) {
    FinishWithJob(reactor, std::move(s), t, i, response);
  });
  return reactor;
}

grpc::ServerUnaryReactor* ReboundService::ReplaySync(grpc::CallbackServerContext* ctx,
                                                     const v1::ReplaySyncRequest* request,
                                                     v1::SyncJob* response) {
  auto* reactor = ctx->DefaultReactor();
  auto job_ref = JobOf(ctx, request->job_id());
  if (!job_ref.ok()) return Finished(reactor, job_ref.status());
  const auto& [tenant, id] = *job_ref;
  if (!accepting_.load()) return Finished(reactor, absl::UnavailableError(kShuttingDown));
  engine_.Replay(tenant, id, [this, reactor, response, t = tenant, i = id](absl::Status s) {
    FinishWithJob(reactor, std::move(s), t, i, response);
  });
  return reactor;
}

}  // namespace rebound::api

namespace rebound::api {
namespace {

// Answers a PauseEndpoint or ResumeEndpoint with the one endpoint's new status.
engine::EndpointControl::StatusDone AnswerOne(grpc::ServerUnaryReactor* reactor, absl::Time now,
                                              v1::EndpointStatus* response) {
  return [reactor, now, response](absl::StatusOr<std::vector<engine::EndpointStatus>> statuses) {
    if (statuses.ok() && statuses->size() != 1) {
      statuses = absl::InternalError("the engine answered no endpoint status");
    }
    if (statuses.ok()) api::ToProto(statuses->front(), now, response);
    reactor->Finish(ToGrpcStatus(statuses.status()));
  };
}

}  // namespace

grpc::ServerUnaryReactor* ReboundService::GetEndpointStatus(
    grpc::CallbackServerContext* ctx, const v1::GetEndpointStatusRequest* request,
    v1::GetEndpointStatusResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (absl::Status s = ValidateEndpointName(request->name(), *Config(), /*empty_ok=*/true);
      !s.ok()) {
    return Finished(reactor, s);
  }
  endpoints_.GetEndpointStatus(request->name(),
                               [reactor, response, now = clock_.Now()](
                                   absl::StatusOr<std::vector<engine::EndpointStatus>> statuses) {
                                 if (statuses.ok()) {
                                   for (const auto& s : *statuses)
                                     ToProto(s, now, response->add_endpoints());
                                 }
                                 reactor->Finish(ToGrpcStatus(statuses.status()));
                               });
  return reactor;
}

grpc::ServerUnaryReactor* ReboundService::PauseEndpoint(grpc::CallbackServerContext* ctx,
                                                        const v1::PauseEndpointRequest* request,
                                                        v1::EndpointStatus* response) {
  auto* reactor = ctx->DefaultReactor();
  const absl::Time now = clock_.Now();
  auto pause = ValidatePauseRequest(*request, *Config(), now);
  if (!pause.ok()) return Finished(reactor, pause.status());
  endpoints_.PauseEndpoint(std::move(pause->name), pause->until, std::move(pause->reason),
                           AnswerOne(reactor, now, response));
  return reactor;
}

grpc::ServerUnaryReactor* ReboundService::ResumeEndpoint(grpc::CallbackServerContext* ctx,
                                                         const v1::ResumeEndpointRequest* request,
                                                         v1::EndpointStatus* response) {
  auto* reactor = ctx->DefaultReactor();
  if (absl::Status s = ValidateEndpointName(request->name(), *Config(), /*empty_ok=*/false);
      !s.ok()) {
    return Finished(reactor, s);
  }
  endpoints_.ResumeEndpoint(request->name(), AnswerOne(reactor, clock_.Now(), response));
  return reactor;
}

}  // namespace rebound::api
