// ReboundService: the rebound.v1 gRPC API on the callback API.
//
// Handlers validate, then hand work to the engine (submit, cancel, replay, watch) or read the
// store (get, list), or to the engine's endpoint controls (endpoint status, pause, resume); no
// handler waits for disk or network: submits complete from the store's commit callback. The
// service borrows the engine, its endpoint controls, the store and the clock; all must outlive
// the gRPC server. Thread-safe.
#ifndef REBOUND_SERVER_API_SERVICE_H_
#define REBOUND_SERVER_API_SERVICE_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "rebound/v1/rebound.grpc.pb.h"
#include "server/common/clock.h"
#include "server/common/job.h"
#include "server/config/config.h"
#include "server/engine/endpoint_status.h"
#include "server/engine/engine.h"
#include "server/log/event_log.h"
#include "server/metrics/metrics.h"
#include "server/store/job_store.h"

namespace rebound::api {

// The one place where absl::Status becomes grpc::Status.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Fills `out` from a stored job. Secret-looking request headers are redacted.
void ToProto(const common::JobRecord& job, bool with_details, v1::SyncJob* out);

// A WatchSync event from the engine's.
v1::SyncEvent ToProto(const engine::JobEvent& event);

// Fills `out` from an endpoint's status as of `now`: a Retry-After pause or a slow-start ramp that
// ended before `now` is left out, and the next probe is shown only while the circuit is open.
void ToProto(const engine::EndpointStatus& status, absl::Time now, v1::EndpointStatus* out);

// Why `job` waits at `now` (README "Why a job waits"): its own stored wait while it lasts
// (BACKOFF / RETRY_AFTER until next_attempt_at, ORDERING_BLOCKED behind waits_behind), else for
// a job ready to run the wait its endpoint's gate imposes, or else its budgets (for a job of
// `priority`). nullopt when it does not wait.
std::optional<v1::JobWait> JobWaitOf(const common::JobRecord& job, common::Priority priority,
                                     absl::Time now, const engine::EndpointControl& endpoints);

// A job's priority: as submitted, else its policy's (as the engine resolves it).
common::Priority PriorityOf(const common::JobSpec& spec, const config::Config& config);

// Adds to `filter` the store filter of ListSyncs(wait_reason = `reason`) at `now` (README "Why a
// job waits"): a job's own reason by its stored column, an endpoint's reason as the ready jobs
// of the endpoints whose gate holds them for it now. False when no job can match (no endpoint
// imposes it now, or the request's own endpoint or states exclude it): the answer is an empty
// page without a store query. `reason` is not kNone.
bool AddWaitFilter(common::WaitReason reason, absl::Time now,
                   const engine::EndpointControl& endpoints, store::ListFilter* filter);

class SubmitStreamReactor;

class ReboundService final : public v1::Rebound::CallbackService {
 public:
  // `metrics` and `log` may be null (tests); when given they must outlive the service.
  ReboundService(std::shared_ptr<const config::Config> config, engine::Engine& engine,
                 engine::EndpointControl& endpoints, store::JobStore& store,
                 const common::Clock& clock, metrics::Metrics* metrics = nullptr,
                 log::EventLog* log = nullptr);

  // Swaps the config used to validate requests (a reload). Thread-safe.
  void SetConfig(std::shared_ptr<const config::Config> config) {
    absl::MutexLock lock(&config_mu_);
    config_ = std::move(config);
  }

  // False during shutdown: new submits get UNAVAILABLE, everything else still answers.
  void SetAcceptingSubmits(bool accepting) { accepting_.store(accepting); }

  grpc::ServerUnaryReactor* SubmitSync(grpc::CallbackServerContext* ctx,
                                       const v1::SubmitSyncRequest* request,
                                       v1::SubmitSyncResponse* response) override;
  grpc::ServerUnaryReactor* SubmitSyncBatch(grpc::CallbackServerContext* ctx,
                                            const v1::SubmitSyncBatchRequest* request,
                                            v1::SubmitSyncBatchResponse* response) override;
  grpc::ServerBidiReactor<v1::SubmitSyncStreamRequest, v1::SubmitSyncStreamResponse>*
  SubmitSyncStream(grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* GetSync(grpc::CallbackServerContext* ctx,
                                    const v1::GetSyncRequest* request,
                                    v1::SyncJob* response) override;
  grpc::ServerWriteReactor<v1::SyncEvent>* WatchSync(grpc::CallbackServerContext* ctx,
                                                     const v1::WatchSyncRequest* request) override;
  grpc::ServerUnaryReactor* ListSyncs(grpc::CallbackServerContext* ctx,
                                      const v1::ListSyncsRequest* request,
                                      v1::ListSyncsResponse* response) override;
  grpc::ServerUnaryReactor* CancelSync(grpc::CallbackServerContext* ctx,
                                       const v1::CancelSyncRequest* request,
                                       v1::SyncJob* response) override;
  grpc::ServerUnaryReactor* ReplaySync(grpc::CallbackServerContext* ctx,
                                       const v1::ReplaySyncRequest* request,
                                       v1::SyncJob* response) override;
  grpc::ServerUnaryReactor* GetEndpointStatus(grpc::CallbackServerContext* ctx,
                                              const v1::GetEndpointStatusRequest* request,
                                              v1::GetEndpointStatusResponse* response) override;
  grpc::ServerUnaryReactor* PauseEndpoint(grpc::CallbackServerContext* ctx,
                                          const v1::PauseEndpointRequest* request,
                                          v1::EndpointStatus* response) override;
  grpc::ServerUnaryReactor* ResumeEndpoint(grpc::CallbackServerContext* ctx,
                                           const v1::ResumeEndpointRequest* request,
                                           v1::EndpointStatus* response) override;

 private:
  // The caller's tenant: `x-rebound-tenant` metadata, else the configured default. (No
  // authentication yet: this scopes data, it does not protect it.)
  absl::StatusOr<std::string> TenantOf(const grpc::CallbackServerContext* ctx) const;
  // The caller's tenant and the job id it names (INVALID_ARGUMENT naming job_id).
  absl::StatusOr<std::pair<std::string, common::JobId>> JobOf(
      const grpc::CallbackServerContext* ctx, const std::string& job_id) const;
  // TenantOf, or UNAVAILABLE while shutting down: for calls that create work.
  absl::StatusOr<std::string> SubmitterOf(const grpc::CallbackServerContext* ctx) const;
  // Counts and logs a refused submit (the status message names the field; no body is logged).
  void Rejected(const absl::Status& status, absl::string_view tenant,
                absl::string_view endpoint) const;
  // W3C trace context from the call's `traceparent` metadata: the job carries a child
  // traceparent header upstream, and the trace id becomes the correlation id when none is set.
  void ApplyTrace(const grpc::CallbackServerContext* ctx, common::JobSpec* spec);
  // The job `request` asks for, validated (an error names `field` and is counted as a
  // rejection), with the call's trace applied.
  absl::StatusOr<store::NewJob> PrepareJob(const grpc::CallbackServerContext* ctx,
                                           const config::Config& config, const std::string& tenant,
                                           const v1::SyncRequest& request, absl::string_view field);
  friend class SubmitStreamReactor;
  // Counts a WatchSync stream of `tenant`, or RESOURCE_EXHAUSTED past server.max_watchers or
  // server.max_watchers_per_tenant. Each OK is matched by one ReleaseWatcher.
  absl::Status AcquireWatcher(const std::string& tenant);
  void ReleaseWatcher(const std::string& tenant);
  // Answers a cancel or replay once the engine is done: reads the job back.
  void FinishWithJob(grpc::ServerUnaryReactor* reactor, absl::Status status,
                     const std::string& tenant, common::JobId id, v1::SyncJob* response);
  // ToProto, plus the job's wait at `now`.
  void FillJob(const common::JobRecord& job, bool with_details, absl::Time now,
               v1::SyncJob* out) const;

  std::shared_ptr<const config::Config> Config() const {
    absl::MutexLock lock(&config_mu_);
    return config_;
  }

  mutable absl::Mutex config_mu_;
  std::shared_ptr<const config::Config> config_ ABSL_GUARDED_BY(config_mu_);
  engine::Engine& engine_;
  engine::EndpointControl& endpoints_;
  store::JobStore& store_;
  const common::Clock& clock_;
  metrics::Metrics* const metrics_;
  log::EventLog* const log_;
  absl::Mutex rng_mu_;
  absl::BitGen rng_ ABSL_GUARDED_BY(rng_mu_);
  std::atomic<bool> accepting_{true};
  absl::Mutex watch_mu_;
  int64_t watchers_ ABSL_GUARDED_BY(watch_mu_) = 0;
  absl::flat_hash_map<std::string, int64_t> watchers_by_tenant_ ABSL_GUARDED_BY(watch_mu_);
};

}  // namespace rebound::api

#endif  // REBOUND_SERVER_API_SERVICE_H_
