// Test doubles for the client tests: FakeRebound, an in-process Rebound service that records
// requests and answers from a script, and FakeServer, a real gRPC server on 127.0.0.1:0 that
// serves it. Thread-safe: the script and the recordings are guarded by one mutex, since RPCs
// run on gRPC threads while the test thread (or a child process) waits.
#ifndef REBOUND_TESTS_CLIENT_FAKE_REBOUND_H_
#define REBOUND_TESTS_CLIENT_FAKE_REBOUND_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "rebound/v1/rebound.grpc.pb.h"

namespace rebound::client {

// Metadata and deadline of one call, as the server saw them.
struct CallInfo {
  std::string method;
  std::string authorization;  // empty when absent
  std::string tenant;         // x-rebound-tenant; empty when absent
  bool has_authorization = false;
  bool has_tenant = false;
  bool has_deadline = false;
};

class FakeRebound final : public v1::Rebound::Service {
 public:
  // --- The script. ---
  // Every RPC answers `status` (unless OK) before doing anything else.
  void FailAllWith(grpc::Status status);
  // SubmitSync's answer; by default {job_id "j1", QUEUED}.
  void SetSubmitAnswer(v1::SubmitSyncResponse response);
  // GetSync answers the job with that id (NOT_FOUND otherwise); CancelSync answers it
  // CANCELLED and ReplaySync QUEUED.
  void AddJob(v1::SyncJob job);
  // WatchSync writes `events`, then returns OK, or when `hold_open`, keeps the stream open
  // until the client cancels (or the server stops).
  void SetWatch(std::vector<v1::SyncEvent> events, bool hold_open);
  // ListSyncs answers pages[0] to an empty page token and pages[i] to the token
  // pages[i-1].next_page_token(); INVALID_ARGUMENT to any other token.
  void SetListPages(std::vector<v1::ListSyncsResponse> pages);
  // GetEndpointStatus answers these (all for an empty name, NOT_FOUND "name: unknown endpoint
  // 'x'" for another); PauseEndpoint marks one paused (until `until` when given) with its
  // reason and answers it; ResumeEndpoint clears that, FAILED_PRECONDITION when not paused.
  void SetEndpoints(std::vector<v1::EndpointStatus> endpoints);
  // SubmitSyncBatch and SubmitSyncStream answer every item themselves: an idempotency key
  // starting with "reject" gets INVALID_ARGUMENT "request.idempotency_key: rejected by the
  // fake", one starting with "dup" is deduplicated (SUCCEEDED), others are created QUEUED with
  // ids "b1", "b2", ...
  // SubmitSyncStream holds up to `hold` answers and sends them newest first (answers in any
  // order, as the real server may); 1 (the default) answers each job at once. A client whose
  // window is below `hold` waits forever: keep hold <= the client's window.
  void SetStreamHold(int hold);

  // Ends held-open watches; called by FakeServer before it shuts down.
  void Stop();

  // --- The recordings. ---
  std::vector<CallInfo> calls() const;
  std::vector<v1::SyncRequest> submitted() const;
  std::vector<int> batch_sizes() const;
  std::vector<v1::SyncRequest> batch_items() const;
  std::vector<int> stream_sizes() const;  // jobs read by each SubmitSyncStream
  std::vector<v1::SubmitSyncStreamRequest> stream_items() const;
  std::vector<std::string> watched_ids() const;
  std::vector<v1::ListSyncsRequest> list_requests() const;
  std::vector<std::string> job_ids_asked() const;         // GetSync, CancelSync, ReplaySync
  std::vector<std::string> endpoint_names_asked() const;  // GetEndpointStatus, ResumeEndpoint
  std::vector<v1::PauseEndpointRequest> pause_requests() const;

  // --- The service. ---
  grpc::Status SubmitSync(grpc::ServerContext* context, const v1::SubmitSyncRequest* request,
                          v1::SubmitSyncResponse* response) override;
  grpc::Status SubmitSyncBatch(grpc::ServerContext* context,
                               const v1::SubmitSyncBatchRequest* request,
                               v1::SubmitSyncBatchResponse* response) override;
  grpc::Status SubmitSyncStream(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::SubmitSyncStreamResponse, v1::SubmitSyncStreamRequest>* stream)
      override;
  grpc::Status GetSync(grpc::ServerContext* context, const v1::GetSyncRequest* request,
                       v1::SyncJob* response) override;
  grpc::Status WatchSync(grpc::ServerContext* context, const v1::WatchSyncRequest* request,
                         grpc::ServerWriter<v1::SyncEvent>* writer) override;
  grpc::Status ListSyncs(grpc::ServerContext* context, const v1::ListSyncsRequest* request,
                         v1::ListSyncsResponse* response) override;
  grpc::Status CancelSync(grpc::ServerContext* context, const v1::CancelSyncRequest* request,
                          v1::SyncJob* response) override;
  grpc::Status ReplaySync(grpc::ServerContext* context, const v1::ReplaySyncRequest* request,
                          v1::SyncJob* response) override;
  grpc::Status GetEndpointStatus(grpc::ServerContext* context,
                                 const v1::GetEndpointStatusRequest* request,
                                 v1::GetEndpointStatusResponse* response) override;
  grpc::Status PauseEndpoint(grpc::ServerContext* context, const v1::PauseEndpointRequest* request,
                             v1::EndpointStatus* response) override;
  grpc::Status ResumeEndpoint(grpc::ServerContext* context,
                              const v1::ResumeEndpointRequest* request,
                              v1::EndpointStatus* response) override;

 private:
  // Records the call and returns the scripted failure, if any.
  grpc::Status Record(grpc::ServerContext* context, const char* method)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  grpc::Status AnswerJob(grpc::ServerContext* context, const char* method,
                         const std::string& job_id, std::optional<v1::SyncState> new_state,
                         v1::SyncJob* response);
  // A batch or stream item's answer (see SetStreamHold's comment).
  template <typename Item>
  void AnswerItem(const v1::SyncRequest& item, Item* result) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The scripted endpoint of that name, or null.
  v1::EndpointStatus* FindEndpoint(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  grpc::Status fail_all_ ABSL_GUARDED_BY(mu_);
  v1::SubmitSyncResponse submit_answer_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::SyncJob> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::SyncEvent> watch_events_ ABSL_GUARDED_BY(mu_);
  bool watch_hold_open_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<v1::ListSyncsResponse> list_pages_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int next_batch_id_ ABSL_GUARDED_BY(mu_) = 1;
  int stream_hold_ ABSL_GUARDED_BY(mu_) = 1;

  std::vector<CallInfo> calls_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::SyncRequest> submitted_ ABSL_GUARDED_BY(mu_);
  std::vector<int> batch_sizes_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::SyncRequest> batch_items_ ABSL_GUARDED_BY(mu_);
  std::vector<int> stream_sizes_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::SubmitSyncStreamRequest> stream_items_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> watched_ids_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ListSyncsRequest> list_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> job_ids_asked_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::EndpointStatus> endpoints_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> endpoint_names_asked_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::PauseEndpointRequest> pause_requests_ ABSL_GUARDED_BY(mu_);
};

// A real gRPC server serving a FakeRebound on 127.0.0.1, on a port the kernel picks, with
// gRPC's default grpc.health.v1 service (the empty service name SERVING).
class FakeServer {
 public:
  FakeServer();
  ~FakeServer();
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  // 0 when the server could not start.
  int port() const { return port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  FakeRebound& fake() { return service_; }
  // The server's grpc.health.v1 service: SetServingStatus() scripts its answers.
  grpc::HealthCheckServiceInterface& health() { return *server_->GetHealthCheckService(); }

 private:
  FakeRebound service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

// A TCP port on 127.0.0.1 that is bound but not listening, so connecting to it is refused;
// held for the object's lifetime so nothing else takes it.
class ClosedPort {
 public:
  ClosedPort();
  ~ClosedPort();
  ClosedPort(const ClosedPort&) = delete;
  ClosedPort& operator=(const ClosedPort&) = delete;

  int port() const { return port_; }  // 0 on failure
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A job event, for scripting watches.
v1::SyncEvent Event(const std::string& job_id, v1::SyncState state, int attempts);

}  // namespace rebound::client

#endif  // REBOUND_TESTS_CLIENT_FAKE_REBOUND_H_
