#include "tests/client/fake_rebound.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace rebound::client {
namespace {

std::string MetadataValue(const grpc::ServerContext& context, const std::string& key,
                          bool* present) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(key);
  *present = it != metadata.end();
  return *present ? std::string(it->second.data(), it->second.size()) : std::string();
}

// What the real server answers for a name it has no endpoint for.
grpc::Status UnknownEndpoint(const std::string& name) {
  return grpc::Status(grpc::StatusCode::NOT_FOUND,
                      absl::StrCat("name: unknown endpoint '", name, "'"));
}

}  // namespace

void FakeRebound::FailAllWith(grpc::Status status) {
  absl::MutexLock lock(&mu_);
  fail_all_ = std::move(status);
}

void FakeRebound::SetSubmitAnswer(v1::SubmitSyncResponse response) {
  absl::MutexLock lock(&mu_);
  submit_answer_ = std::move(response);
}

void FakeRebound::AddJob(v1::SyncJob job) {
  absl::MutexLock lock(&mu_);
  jobs_.push_back(std::move(job));
}

void FakeRebound::SetWatch(std::vector<v1::SyncEvent> events, bool hold_open) {
  absl::MutexLock lock(&mu_);
  watch_events_ = std::move(events);
  watch_hold_open_ = hold_open;
}

void FakeRebound::SetListPages(std::vector<v1::ListSyncsResponse> pages) {
  absl::MutexLock lock(&mu_);
  list_pages_ = std::move(pages);
}

void FakeRebound::SetEndpoints(std::vector<v1::EndpointStatus> endpoints) {
  absl::MutexLock lock(&mu_);
  endpoints_ = std::move(endpoints);
}

void FakeRebound::Stop() {
  absl::MutexLock lock(&mu_);
  stopped_ = true;
}

std::vector<CallInfo> FakeRebound::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}
std::vector<v1::SyncRequest> FakeRebound::submitted() const {
  absl::MutexLock lock(&mu_);
  return submitted_;
}
std::vector<int> FakeRebound::batch_sizes() const {
  absl::MutexLock lock(&mu_);
  return batch_sizes_;
}
std::vector<int> FakeRebound::stream_sizes() const {
  absl::MutexLock lock(&mu_);
  return stream_sizes_;
}

std::vector<v1::SubmitSyncStreamRequest> FakeRebound::stream_items() const {
  absl::MutexLock lock(&mu_);
  return stream_items_;
}

std::vector<v1::SyncRequest> FakeRebound::batch_items() const {
  absl::MutexLock lock(&mu_);
  return batch_items_;
}
std::vector<std::string> FakeRebound::watched_ids() const {
  absl::MutexLock lock(&mu_);
  return watched_ids_;
}
std::vector<v1::ListSyncsRequest> FakeRebound::list_requests() const {
  absl::MutexLock lock(&mu_);
  return list_requests_;
}
std::vector<std::string> FakeRebound::job_ids_asked() const {
  absl::MutexLock lock(&mu_);
  return job_ids_asked_;
}

std::vector<std::string> FakeRebound::endpoint_names_asked() const {
  absl::MutexLock lock(&mu_);
  return endpoint_names_asked_;
}
std::vector<v1::PauseEndpointRequest> FakeRebound::pause_requests() const {
  absl::MutexLock lock(&mu_);
  return pause_requests_;
}

v1::EndpointStatus* FakeRebound::FindEndpoint(const std::string& name) {
  for (v1::EndpointStatus& e : endpoints_) {
    if (e.name() == name) return &e;
  }
  return nullptr;
}

grpc::Status FakeRebound::GetEndpointStatus(grpc::ServerContext* context,
                                            const v1::GetEndpointStatusRequest* request,
                                            v1::GetEndpointStatusResponse* response) {
  absl::MutexLock lock(&mu_);
  if (grpc::Status failure = Record(context, "GetEndpointStatus"); !failure.ok()) return failure;
  endpoint_names_asked_.push_back(request->name());
  if (request->name().empty()) {
    for (const v1::EndpointStatus& e : endpoints_) *response->add_endpoints() = e;
    return grpc::Status::OK;
  }
  const v1::EndpointStatus* e = FindEndpoint(request->name());
  if (e == nullptr) {
    return UnknownEndpoint(request->name());
  }
  *response->add_endpoints() = *e;
  return grpc::Status::OK;
}

grpc::Status FakeRebound::PauseEndpoint(grpc::ServerContext* context,
                                        const v1::PauseEndpointRequest* request,
                                        v1::EndpointStatus* response) {
  absl::MutexLock lock(&mu_);
  if (grpc::Status failure = Record(context, "PauseEndpoint"); !failure.ok()) return failure;
  pause_requests_.push_back(*request);
  v1::EndpointStatus* e = FindEndpoint(request->name());
  if (e == nullptr) {
    return UnknownEndpoint(request->name());
  }
  e->set_operator_paused(true);
  e->set_operator_reason(request->reason());
  if (request->has_until()) {
    *e->mutable_operator_paused_until() = request->until();
  } else {
    e->clear_operator_paused_until();
  }
  *response = *e;
  return grpc::Status::OK;
}

grpc::Status FakeRebound::ResumeEndpoint(grpc::ServerContext* context,
                                         const v1::ResumeEndpointRequest* request,
                                         v1::EndpointStatus* response) {
  absl::MutexLock lock(&mu_);
  if (grpc::Status failure = Record(context, "ResumeEndpoint"); !failure.ok()) return failure;
  endpoint_names_asked_.push_back(request->name());
  v1::EndpointStatus* e = FindEndpoint(request->name());
  if (e == nullptr) {
    return UnknownEndpoint(request->name());
  }
  if (!e->operator_paused()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat(request->name(), " is not paused"));
  }
  e->set_operator_paused(false);
  e->clear_operator_paused_until();
  e->clear_operator_reason();
  *response = *e;
  return grpc::Status::OK;
}

grpc::Status FakeRebound::Record(grpc::ServerContext* context, const char* method) {
  CallInfo call;
  call.method = method;
  call.authorization = MetadataValue(*context, "authorization", &call.has_authorization);
  call.tenant = MetadataValue(*context, "x-rebound-tenant", &call.has_tenant);
  call.has_deadline = context->deadline() != std::chrono::system_clock::time_point::max();
  calls_.push_back(std::move(call));
  return fail_all_;
}

grpc::Status FakeRebound::SubmitSync(grpc::ServerContext* context,
                                     const v1::SubmitSyncRequest* request,
                                     v1::SubmitSyncResponse* response) {
  absl::MutexLock lock(&mu_);
  if (grpc::Status failure = Record(context, "SubmitSync"); !failure.ok()) return failure;
  submitted_.push_back(request->request());
  if (submit_answer_.job_id().empty()) {
    response->set_job_id("j1");
    response->set_state(v1::QUEUED);
  } else {
    *response = submit_answer_;
  }
  return grpc::Status::OK;
}

grpc::Status FakeRebound::SubmitSyncBatch(grpc::ServerContext* context,
                                          const v1::SubmitSyncBatchRequest* request,
                                          v1::SubmitSyncBatchResponse* response) {
  absl::MutexLock lock(&mu_);
  if (grpc::Status failure = Record(context, "SubmitSyncBatch"); !failure.ok()) return failure;
  batch_sizes_.push_back(request->requests_size());
  for (const v1::SyncRequest& item : request->requests()) {
    batch_items_.push_back(item);
    AnswerItem(item, response->add_results());
  }
  return grpc::Status::OK;
}

template <typename Item>
void FakeRebound::AnswerItem(const v1::SyncRequest& item, Item* result) {
  if (absl::StartsWith(item.idempotency_key(), "reject")) {
    result->set_code(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
    result->set_message("request.idempotency_key: rejected by the fake");
    return;
  }
  const bool duplicate = absl::StartsWith(item.idempotency_key(), "dup");
  result->mutable_result()->set_job_id(absl::StrCat("b", next_batch_id_++));
  result->mutable_result()->set_state(duplicate ? v1::SUCCEEDED : v1::QUEUED);
  result->mutable_result()->set_deduplicated(duplicate);
}

void FakeRebound::SetStreamHold(int hold) {
  absl::MutexLock lock(&mu_);
  stream_hold_ = hold;
}

grpc::Status FakeRebound::SubmitSyncStream(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::SubmitSyncStreamResponse, v1::SubmitSyncStreamRequest>* stream) {
  size_t hold = 1;
  {
    absl::MutexLock lock(&mu_);
    if (grpc::Status failure = Record(context, "SubmitSyncStream"); !failure.ok()) return failure;
    hold = static_cast<size_t>(std::max(1, stream_hold_));
    stream_sizes_.push_back(0);
  }
  std::vector<v1::SubmitSyncStreamResponse> held;
  auto send_held = [&] {
    for (auto it = held.rbegin(); it != held.rend(); ++it) stream->Write(*it);
    held.clear();
  };
  v1::SubmitSyncStreamRequest item;
  while (stream->Read(&item)) {
    v1::SubmitSyncStreamResponse answer;
    answer.set_sequence(item.sequence());
    {
      absl::MutexLock lock(&mu_);
      ++stream_sizes_.back();
      stream_items_.push_back(item);
      AnswerItem(item.request(), &answer);
    }
    held.push_back(std::move(answer));
    if (held.size() >= hold) send_held();
  }
  send_held();
  return grpc::Status::OK;
}

grpc::Status FakeRebound::AnswerJob(grpc::ServerContext* context, const char* method,
                                    const std::string& job_id,
                                    std::optional<v1::SyncState> new_state, v1::SyncJob* response) {
  absl::MutexLock lock(&mu_);
  if (grpc::Status failure = Record(context, method); !failure.ok()) return failure;
  job_ids_asked_.push_back(job_id);
  for (const v1::SyncJob& job : jobs_) {
    if (job.job_id() != job_id) continue;
    *response = job;
    if (new_state.has_value()) response->set_state(*new_state);
    return grpc::Status::OK;
  }
  return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("job ", job_id, " not found"));
}

grpc::Status FakeRebound::GetSync(grpc::ServerContext* context, const v1::GetSyncRequest* request,
                                  v1::SyncJob* response) {
  return AnswerJob(context, "GetSync", request->job_id(), std::nullopt, response);
}

grpc::Status FakeRebound::CancelSync(grpc::ServerContext* context,
                                     const v1::CancelSyncRequest* request, v1::SyncJob* response) {
  return AnswerJob(context, "CancelSync", request->job_id(), v1::CANCELLED, response);
}

grpc::Status FakeRebound::ReplaySync(grpc::ServerContext* context,
                                     const v1::ReplaySyncRequest* request, v1::SyncJob* response) {
  return AnswerJob(context, "ReplaySync", request->job_id(), v1::QUEUED, response);
}

grpc::Status FakeRebound::WatchSync(grpc::ServerContext* context,
                                    const v1::WatchSyncRequest* request,
                                    grpc::ServerWriter<v1::SyncEvent>* writer) {
  std::vector<v1::SyncEvent> events;
  bool hold_open = false;
  {
    absl::MutexLock lock(&mu_);
    if (grpc::Status failure = Record(context, "WatchSync"); !failure.ok()) return failure;
    watched_ids_.push_back(request->job_id());
    events = watch_events_;
    hold_open = watch_hold_open_;
  }
  for (const v1::SyncEvent& event : events) {
    if (!writer->Write(event)) return grpc::Status::CANCELLED;
  }
  if (hold_open) {
    // The sync API has no cancellation callback, so look at IsCancelled() now and then; this
    // only bounds how soon the handler ends after the client went away, never a test result.
    absl::MutexLock lock(&mu_);
    while (!stopped_ && !context->IsCancelled()) {
      mu_.AwaitWithTimeout(absl::Condition(&stopped_), absl::Milliseconds(5));
    }
  }
  return grpc::Status::OK;
}

grpc::Status FakeRebound::ListSyncs(grpc::ServerContext* context,
                                    const v1::ListSyncsRequest* request,
                                    v1::ListSyncsResponse* response) {
  absl::MutexLock lock(&mu_);
  if (grpc::Status failure = Record(context, "ListSyncs"); !failure.ok()) return failure;
  list_requests_.push_back(*request);
  std::string token;  // the token that asks for page i
  for (const v1::ListSyncsResponse& page : list_pages_) {
    if (request->page_token() == token) {
      *response = page;
      return grpc::Status::OK;
    }
    token = page.next_page_token();
  }
  if (request->page_token().empty()) return grpc::Status::OK;  // no pages: no jobs
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_token: unknown");
}

FakeServer::FakeServer() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(&service_);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr) port_ = 0;
}

FakeServer::~FakeServer() {
  service_.Stop();
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_->Wait();
  }
}

ClosedPort::ClosedPort() {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd_ < 0) return;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return;
  }
  port_ = ntohs(address.sin_port);  // bound, never listen()ed: connections are refused
}

ClosedPort::~ClosedPort() {
  if (fd_ >= 0) ::close(fd_);
}

v1::SyncEvent Event(const std::string& job_id, v1::SyncState state, int attempts) {
  v1::SyncEvent event;
  event.set_job_id(job_id);
  event.set_state(state);
  event.set_attempt_count(attempts);
  event.mutable_at()->set_seconds(1'800'000'000 + attempts);
  return event;
}

}  // namespace rebound::client
