#include "client/client.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace rebound::client {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  // grpc::StatusCode and absl::StatusCode share the canonical numbering (0..16).
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

bool IsTerminal(v1::SyncState state) {
  switch (state) {
    case v1::SUCCEEDED:
    case v1::FAILED:
    case v1::EXHAUSTED:
    case v1::CANCELLED:
      return true;
    default:
      return false;
  }
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  if (options.target.empty()) return absl::InvalidArgumentError("target: must not be empty");
  if (options.call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("call_timeout: must be positive");
  }
  if (options.watch_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("watch_timeout: must be positive");
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      options.credentials ? options.credentials : grpc::InsecureChannelCredentials();
  std::shared_ptr<grpc::Channel> channel = grpc::CreateChannel(options.target, credentials);
  return std::unique_ptr<Client>(new Client(options, std::move(channel)));
}

Client::Client(ClientOptions options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::Rebound::NewStub(channel_)),
      health_stub_(grpc::health::v1::Health::NewStub(channel_)) {}

void Client::PrepareContext(grpc::ClientContext& context, absl::Duration timeout) const {
  if (timeout != absl::InfiniteDuration()) {
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
  if (!options_.bearer_token.empty()) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", options_.bearer_token));
  }
  if (!options_.tenant.empty()) context.AddMetadata("x-rebound-tenant", options_.tenant);
}

absl::StatusOr<v1::SubmitSyncResponse> Client::Submit(const v1::SyncRequest& request) const {
  grpc::ClientContext context;
  PrepareContext(context, options_.call_timeout);
  v1::SubmitSyncRequest rpc_request;
  *rpc_request.mutable_request() = request;
  v1::SubmitSyncResponse response;
  absl::Status status = FromGrpcStatus(stub_->SubmitSync(&context, rpc_request, &response));
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::SubmitSyncBatchResponse> Client::SubmitBatch(
    absl::Span<const v1::SyncRequest> requests) const {
  grpc::ClientContext context;
  PrepareContext(context, options_.call_timeout);
  v1::SubmitSyncBatchRequest rpc_request;
  rpc_request.mutable_requests()->Reserve(static_cast<int>(requests.size()));
  for (const v1::SyncRequest& request : requests) *rpc_request.add_requests() = request;
  v1::SubmitSyncBatchResponse response;
  absl::Status status = FromGrpcStatus(stub_->SubmitSyncBatch(&context, rpc_request, &response));
  if (!status.ok()) return status;
  return response;
}

absl::Status Client::SubmitStream(absl::Span<const v1::SyncRequest> requests, size_t window,
                                  const StreamResultCallback& on_result) const {
  if (window < 1) return absl::InvalidArgumentError("window: must be at least 1");
  grpc::ClientContext context;
  PrepareContext(context, absl::InfiniteDuration());
  std::unique_ptr<
      grpc::ClientReaderWriter<v1::SubmitSyncStreamRequest, v1::SubmitSyncStreamResponse>>
      stream = stub_->SubmitSyncStream(&context);
  // The writer runs on its own thread, `window` ahead of the answers read here; a stream may
  // have one reader and one writer at once.
  absl::Mutex mu;
  size_t answered = 0;
  bool reading_done = false;
  std::thread writer([&] {
    v1::SubmitSyncStreamRequest message;
    for (size_t i = 0; i < requests.size(); ++i) {
      {
        const auto room = [&] { return reading_done || i - answered < window; };
        absl::MutexLock lock(&mu);
        mu.Await(absl::Condition(&room));
        if (reading_done) return;  // the stream ended early
      }
      message.set_sequence(i);
      *message.mutable_request() = requests[i];
      if (!stream->Write(message)) return;  // the stream ended: Finish() tells why
    }
    stream->WritesDone();
  });
  v1::SubmitSyncStreamResponse answer;
  while (stream->Read(&answer)) {
    on_result(answer);
    absl::MutexLock lock(&mu);
    ++answered;
  }
  {
    absl::MutexLock lock(&mu);
    reading_done = true;
  }
  writer.join();
  absl::Status status = FromGrpcStatus(stream->Finish());
  if (status.ok() && answered != requests.size()) {
    status = absl::InternalError(absl::StrCat("server answered ", answered, " of ", requests.size(),
                                              " jobs and ended the stream"));
  }
  return status;
}

absl::StatusOr<v1::SyncJob> Client::Get(absl::string_view job_id) const {
  v1::GetSyncRequest rpc_request;
  rpc_request.set_job_id(std::string(job_id));
  return Unary(&v1::Rebound::Stub::GetSync, rpc_request);
}

absl::Status Client::Watch(absl::string_view job_id, const WatchCallback& on_event) const {
  return Watch(job_id, on_event, options_.watch_timeout);
}

absl::Status Client::Watch(absl::string_view job_id, const WatchCallback& on_event,
                           absl::Duration timeout) const {
  grpc::ClientContext context;
  PrepareContext(context, timeout);
  v1::WatchSyncRequest rpc_request;
  rpc_request.set_job_id(std::string(job_id));
  std::unique_ptr<grpc::ClientReader<v1::SyncEvent>> reader =
      stub_->WatchSync(&context, rpc_request);
  v1::SyncEvent event;
  bool stopped_by_caller = false;
  while (reader->Read(&event)) {
    if (!on_event(event)) {
      stopped_by_caller = true;
      context.TryCancel();
      // Finish() may be called only once no message is left to read; after the cancel the
      // remaining reads fail at once.
      while (reader->Read(&event)) {
      }
      break;
    }
  }
  grpc::Status status = reader->Finish();
  // The CANCELLED status of our own cancel is not an error of the watch.
  if (stopped_by_caller) return absl::OkStatus();
  return FromGrpcStatus(status);
}

absl::StatusOr<v1::SyncJob> Client::Await(absl::string_view job_id, absl::Duration timeout) const {
  v1::SyncState last_state = v1::SYNC_STATE_UNSPECIFIED;
  absl::Status watched = Watch(
      job_id,
      [&last_state](const v1::SyncEvent& event) {
        last_state = event.state();
        return !IsTerminal(last_state);
      },
      timeout);
  if (!IsTerminal(last_state)) {
    if (watched.code() == absl::StatusCode::kDeadlineExceeded) {
      return absl::DeadlineExceededError(absl::StrCat(job_id, " not terminal after ",
                                                      absl::FormatDuration(timeout), " (state ",
                                                      v1::SyncState_Name(last_state), ")"));
    }
    if (!watched.ok()) return watched;
    // The server closed the stream early (e.g. shutting down): the job may still have ended.
    absl::StatusOr<v1::SyncJob> job = Get(job_id);
    if (!job.ok() || IsTerminal(job->state())) return job;
    return absl::UnavailableError(absl::StrCat("watch of ", job_id,
                                               " ended before the job was terminal (state ",
                                               v1::SyncState_Name(job->state()), ")"));
  }
  // The events carry no attempt history; the job does.
  return Get(job_id);
}

absl::StatusOr<v1::ListSyncsResponse> Client::List(const v1::ListSyncsRequest& request) const {
  return Unary(&v1::Rebound::Stub::ListSyncs, request);
}

absl::StatusOr<v1::SyncJob> Client::Cancel(absl::string_view job_id) const {
  v1::CancelSyncRequest rpc_request;
  rpc_request.set_job_id(std::string(job_id));
  return Unary(&v1::Rebound::Stub::CancelSync, rpc_request);
}

absl::StatusOr<v1::SyncJob> Client::Replay(absl::string_view job_id) const {
  v1::ReplaySyncRequest rpc_request;
  rpc_request.set_job_id(std::string(job_id));
  return Unary(&v1::Rebound::Stub::ReplaySync, rpc_request);
}

absl::StatusOr<v1::GetEndpointStatusResponse> Client::GetEndpointStatus(
    absl::string_view name) const {
  v1::GetEndpointStatusRequest rpc_request;
  rpc_request.set_name(std::string(name));
  return Unary(&v1::Rebound::Stub::GetEndpointStatus, rpc_request);
}

absl::StatusOr<v1::EndpointStatus> Client::PauseEndpoint(
    const v1::PauseEndpointRequest& request) const {
  return Unary(&v1::Rebound::Stub::PauseEndpoint, request);
}

absl::StatusOr<v1::EndpointStatus> Client::ResumeEndpoint(absl::string_view name) const {
  v1::ResumeEndpointRequest rpc_request;
  rpc_request.set_name(std::string(name));
  return Unary(&v1::Rebound::Stub::ResumeEndpoint, rpc_request);
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Client::CheckHealth(
    absl::string_view service) const {
  grpc::ClientContext context;
  PrepareContext(context, options_.call_timeout);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(std::string(service));
  grpc::health::v1::HealthCheckResponse response;
  absl::Status status = FromGrpcStatus(health_stub_->Check(&context, request, &response));
  if (!status.ok()) return status;
  return response.status();
}

}  // namespace rebound::client
