// Client: the C++ client library of the Rebound API (proto/rebound/v1/rebound.proto).
//
// One `Client` owns one gRPC channel and its stubs (the API's and grpc.health.v1's). It is
// thread-safe: every method is const, may be called from any number of threads at once, and keeps
// no per-call state in the object (gRPC channels and stubs are thread-safe). Share one Client per
// process and target.
//
// Every method returns absl::Status / absl::StatusOr. A gRPC status is converted to an
// absl::Status in one place (FromGrpcStatus) with its code and message preserved, so callers
// act on the API's codes (DESIGN.md "API"): INVALID_ARGUMENT (fix the input), NOT_FOUND,
// ALREADY_EXISTS, FAILED_PRECONDITION, RESOURCE_EXHAUSTED (back off), UNAUTHENTICATED,
// PERMISSION_DENIED; UNAVAILABLE when the server cannot be reached (retry the call).
//
// Connect() does not wait for a connection: the channel connects on the first call, and a call
// made while nothing listens fails fast with UNAVAILABLE.
#ifndef REBOUND_CLIENT_CLIENT_H_
#define REBOUND_CLIENT_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "rebound/v1/rebound.grpc.pb.h"

namespace rebound::client {

struct ClientOptions {
  // gRPC target: "host:port" or any gRPC target URI.
  std::string target = "127.0.0.1:50051";
  // When not empty, sent on every call as "authorization: Bearer <token>".
  std::string bearer_token;
  // When not empty, sent on every call as "x-rebound-tenant".
  std::string tenant;
  // Deadline of every unary call (Submit, Get, List, ...). Must be positive; may be infinite.
  absl::Duration call_timeout = absl::Seconds(30);
  // Deadline of Watch when none is given: none, since a watch lasts as long as its job.
  absl::Duration watch_timeout = absl::InfiniteDuration();
  // Channel credentials; insecure (plaintext) when null.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
};

// Converts a gRPC status to an absl::Status, keeping code and message. The only conversion.
absl::Status FromGrpcStatus(const grpc::Status& status);

// SUCCEEDED, FAILED, EXHAUSTED and CANCELLED: no further state change happens by itself.
bool IsTerminal(v1::SyncState state);

class Client {
 public:
  // Returns false to stop watching.
  using WatchCallback = std::function<bool(const v1::SyncEvent&)>;

  // Creates the channel. INVALID_ARGUMENT for an empty target or a non-positive timeout.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options);

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // One job. `deduplicated` is set when the same key and request already made a job.
  absl::StatusOr<v1::SubmitSyncResponse> Submit(const v1::SyncRequest& request) const;
  // Several jobs in one call; one result per item, in order. The call fails as a whole only
  // for errors that concern the batch (e.g. too many items, UNAVAILABLE); item errors are in
  // the results.
  absl::StatusOr<v1::SubmitSyncBatchResponse> SubmitBatch(
      absl::Span<const v1::SyncRequest> requests) const;
  // Many jobs over one SubmitSyncStream, at most `window` (>= 1) unanswered at once; job i is
  // sent with sequence i. `on_result` runs on the calling thread for each job's answer as it
  // arrives, in any order. OK once every job is answered; otherwise the stream's error (the
  // jobs without an answer may or may not have been accepted: resubmitting them is safe, the
  // idempotency key deduplicates). No deadline: a stream lasts as long as its jobs take.
  using StreamResultCallback = std::function<void(const v1::SubmitSyncStreamResponse&)>;
  absl::Status SubmitStream(absl::Span<const v1::SyncRequest> requests, size_t window,
                            const StreamResultCallback& on_result) const;
  // One job with its attempt history.
  absl::StatusOr<v1::SyncJob> Get(absl::string_view job_id) const;
  // Calls `on_event` for the job's current state and then for every change, on the calling
  // thread, until the server closes the stream (OK once the job is terminal) or `on_event`
  // returns false (OK). Uses options.watch_timeout, or `timeout`, as the deadline
  // (DEADLINE_EXCEEDED when it passes).
  absl::Status Watch(absl::string_view job_id, const WatchCallback& on_event) const;
  absl::Status Watch(absl::string_view job_id, const WatchCallback& on_event,
                     absl::Duration timeout) const;
  // Waits up to `timeout` for the job to be terminal and returns it (as Get does).
  // DEADLINE_EXCEEDED when it is not terminal in time; UNAVAILABLE when the server ended the
  // watch before the job was terminal.
  absl::StatusOr<v1::SyncJob> Await(absl::string_view job_id, absl::Duration timeout) const;
  // One page of jobs, newest first; follow `next_page_token` for more.
  absl::StatusOr<v1::ListSyncsResponse> List(const v1::ListSyncsRequest& request) const;
  // FAILED_PRECONDITION when the job is already terminal.
  absl::StatusOr<v1::SyncJob> Cancel(absl::string_view job_id) const;
  // Re-queues a FAILED or EXHAUSTED job; FAILED_PRECONDITION otherwise.
  absl::StatusOr<v1::SyncJob> Replay(absl::string_view job_id) const;
  // grpc.health.v1.Health/Check of `service` ("" asks about the server as a whole; the Rebound
  // server also answers "rebound.v1.Rebound"). The serving status as the server reports it;
  // NOT_FOUND for a service name the server does not know, UNAVAILABLE when it cannot be
  // reached.
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> CheckHealth(
      absl::string_view service) const;
  // One endpoint's protection state, or every endpoint's when `name` is empty (NOT_FOUND for an
  // endpoint the server does not have).
  absl::StatusOr<v1::GetEndpointStatusResponse> GetEndpointStatus(absl::string_view name) const;
  // Operator pause of an endpoint (until `request.until`, for `request.duration`, or until
  // resumed); the endpoint's new status.
  absl::StatusOr<v1::EndpointStatus> PauseEndpoint(const v1::PauseEndpointRequest& request) const;
  // Lifts an operator pause; FAILED_PRECONDITION when the endpoint is not paused.
  absl::StatusOr<v1::EndpointStatus> ResumeEndpoint(absl::string_view name) const;

  const ClientOptions& options() const { return options_; }

 private:
  Client(ClientOptions options, std::shared_ptr<grpc::Channel> channel);

  // Sets the deadline (when finite) and the auth/tenant metadata of one call.
  void PrepareContext(grpc::ClientContext& context, absl::Duration timeout) const;
  // One unary call of the API with options.call_timeout.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Unary(grpc::Status (v1::Rebound::Stub::*method)(grpc::ClientContext*,
                                                                           const Request&,
                                                                           Response*),
                                 const Request& request) const {
    grpc::ClientContext context;
    PrepareContext(context, options_.call_timeout);
    Response response;
    absl::Status status = FromGrpcStatus((stub_.get()->*method)(&context, request, &response));
    if (!status.ok()) return status;
    return response;
  }

  const ClientOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v1::Rebound::Stub> stub_;
  const std::unique_ptr<grpc::health::v1::Health::Stub> health_stub_;
};

}  // namespace rebound::client

#endif  // REBOUND_CLIENT_CLIENT_H_
