#include "client/client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/client/fake_rebound.h"

namespace rebound::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(server_.port(), 0); }

  std::unique_ptr<Client> Connect(ClientOptions options = {}) {
    options.target = server_.target();
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  static v1::SyncJob Job(const std::string& id, v1::SyncState state) {
    v1::SyncJob job;
    job.set_job_id(id);
    job.set_state(state);
    return job;
  }

  FakeServer server_;
  FakeRebound& fake_ = server_.fake();
};

TEST(FromGrpcStatusTest, KeepsEveryCodeAndTheMessage) {
  for (int code = 1; code <= 16; ++code) {
    const absl::Status status =
        FromGrpcStatus(grpc::Status(static_cast<grpc::StatusCode>(code), "why: because"));
    EXPECT_EQ(static_cast<int>(status.code()), code);
    EXPECT_EQ(status.message(), "why: because");
  }
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(ConnectTest, RejectsAnEmptyTargetAndNonPositiveTimeouts) {
  ClientOptions options;
  options.target = "";
  EXPECT_EQ(Client::Connect(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.target = "127.0.0.1:1";
  options.call_timeout = absl::ZeroDuration();
  EXPECT_EQ(Client::Connect(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(IsTerminalTest, OnlyTheFourEndStates) {
  EXPECT_TRUE(IsTerminal(v1::SUCCEEDED));
  EXPECT_TRUE(IsTerminal(v1::FAILED));
  EXPECT_TRUE(IsTerminal(v1::EXHAUSTED));
  EXPECT_TRUE(IsTerminal(v1::CANCELLED));
  EXPECT_FALSE(IsTerminal(v1::QUEUED));
  EXPECT_FALSE(IsTerminal(v1::BLOCKED));
  EXPECT_FALSE(IsTerminal(v1::RUNNING));
  EXPECT_FALSE(IsTerminal(v1::WAITING_RETRY));
  EXPECT_FALSE(IsTerminal(v1::SYNC_STATE_UNSPECIFIED));
}

TEST_F(ClientTest, SubmitReturnsTheServersAnswer) {
  v1::SubmitSyncResponse answer;
  answer.set_job_id("j12");
  answer.set_state(v1::SUCCEEDED);
  answer.set_deduplicated(true);
  fake_.SetSubmitAnswer(answer);
  std::unique_ptr<Client> client = Connect();
  v1::SyncRequest request;
  request.set_idempotency_key("k1");
  request.set_path("/api/v1/x");

  absl::StatusOr<v1::SubmitSyncResponse> response = client->Submit(request);

  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->job_id(), "j12");
  EXPECT_TRUE(response->deduplicated());
  ASSERT_EQ(fake_.submitted().size(), 1u);
  EXPECT_EQ(fake_.submitted()[0].idempotency_key(), "k1");
  EXPECT_EQ(fake_.submitted()[0].path(), "/api/v1/x");
}

TEST_F(ClientTest, ServerErrorsKeepTheirCodeAndMessage) {
  const std::vector<grpc::StatusCode> codes = {
      grpc::StatusCode::INVALID_ARGUMENT,   grpc::StatusCode::NOT_FOUND,
      grpc::StatusCode::ALREADY_EXISTS,     grpc::StatusCode::FAILED_PRECONDITION,
      grpc::StatusCode::RESOURCE_EXHAUSTED, grpc::StatusCode::UNAUTHENTICATED,
      grpc::StatusCode::PERMISSION_DENIED};
  std::unique_ptr<Client> client = Connect();
  for (grpc::StatusCode code : codes) {
    fake_.FailAllWith(grpc::Status(code, "request.path: must start with /api/v1/"));
    const absl::Status submitted = client->Submit(v1::SyncRequest()).status();
    EXPECT_EQ(static_cast<int>(submitted.code()), static_cast<int>(code));
    EXPECT_EQ(submitted.message(), "request.path: must start with /api/v1/");
    EXPECT_EQ(static_cast<int>(client->Get("j1").status().code()), static_cast<int>(code));
    EXPECT_EQ(
        static_cast<int>(client->Watch("j1", [](const v1::SyncEvent&) { return true; }).code()),
        static_cast<int>(code));
  }
}

TEST_F(ClientTest, SendsBearerTokenAndTenantOnEveryCall) {
  ClientOptions options;
  options.bearer_token = "s3cret";
  options.tenant = "district-9";
  std::unique_ptr<Client> client = Connect(options);

  ASSERT_TRUE(client->Submit(v1::SyncRequest()).ok());
  ASSERT_TRUE(client->Watch("j1", [](const v1::SyncEvent&) { return true; }).ok());

  const std::vector<CallInfo> calls = fake_.calls();
  ASSERT_EQ(calls.size(), 2u);
  for (const CallInfo& call : calls) {
    EXPECT_EQ(call.authorization, "Bearer s3cret") << call.method;
    EXPECT_EQ(call.tenant, "district-9") << call.method;
  }
}

TEST_F(ClientTest, SendsNoAuthMetadataWhenNoneIsConfigured) {
  std::unique_ptr<Client> client = Connect();
  ASSERT_TRUE(client->Submit(v1::SyncRequest()).ok());
  ASSERT_EQ(fake_.calls().size(), 1u);
  EXPECT_FALSE(fake_.calls()[0].has_authorization);
  EXPECT_FALSE(fake_.calls()[0].has_tenant);
}

TEST_F(ClientTest, UnaryCallsCarryADeadlineAndWatchNoneByDefault) {
  fake_.AddJob(Job("j1", v1::RUNNING));
  std::unique_ptr<Client> client = Connect();
  ASSERT_TRUE(client->Get("j1").ok());
  ASSERT_TRUE(client->Watch("j1", [](const v1::SyncEvent&) { return true; }).ok());
  ASSERT_TRUE(client
                  ->Watch(
                      "j1", [](const v1::SyncEvent&) { return true; }, absl::Seconds(30))
                  .ok());

  const std::vector<CallInfo> calls = fake_.calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_TRUE(calls[0].has_deadline);
  EXPECT_FALSE(calls[1].has_deadline);
  EXPECT_TRUE(calls[2].has_deadline);
}

TEST_F(ClientTest, SubmitBatchSendsItemsInOrderAndReturnsOneResultEach) {
  std::vector<v1::SyncRequest> requests(3);
  requests[0].set_idempotency_key("k1");
  requests[1].set_idempotency_key("reject-2");
  requests[2].set_idempotency_key("dup-3");
  std::unique_ptr<Client> client = Connect();

  absl::StatusOr<v1::SubmitSyncBatchResponse> response = client->SubmitBatch(requests);

  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->results_size(), 3);
  EXPECT_EQ(response->results(0).code(), 0);
  EXPECT_EQ(response->results(1).code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(response->results(2).result().deduplicated());
  const std::vector<v1::SyncRequest> sent = fake_.batch_items();
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[0].idempotency_key(), "k1");
  EXPECT_EQ(sent[2].idempotency_key(), "dup-3");
}

TEST_F(ClientTest, WatchDeliversEveryEventUntilTheServerCloses) {
  fake_.SetWatch(
      {Event("j1", v1::QUEUED, 0), Event("j1", v1::RUNNING, 1), Event("j1", v1::SUCCEEDED, 1)},
      /*hold_open=*/false);
  std::unique_ptr<Client> client = Connect();
  std::vector<v1::SyncState> seen;

  const absl::Status status = client->Watch("j1", [&seen](const v1::SyncEvent& event) {
    seen.push_back(event.state());
    return true;
  });

  EXPECT_TRUE(status.ok()) << status;
  EXPECT_THAT(seen, ElementsAre(v1::QUEUED, v1::RUNNING, v1::SUCCEEDED));
  EXPECT_THAT(fake_.watched_ids(), ElementsAre("j1"));
}

TEST_F(ClientTest, WatchStopsWhenTheCallbackReturnsFalse) {
  fake_.SetWatch(
      {Event("j1", v1::QUEUED, 0), Event("j1", v1::RUNNING, 1), Event("j1", v1::WAITING_RETRY, 1)},
      /*hold_open=*/true);
  std::unique_ptr<Client> client = Connect();
  int seen = 0;

  const absl::Status status = client->Watch("j1", [&seen](const v1::SyncEvent&) {
    ++seen;
    return false;
  });

  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(seen, 1);
}

TEST_F(ClientTest, AwaitReturnsTheJobOnceItIsTerminal) {
  // The stream stays open after the terminal event: Await must not wait for its end.
  fake_.SetWatch(
      {Event("j1", v1::QUEUED, 0), Event("j1", v1::RUNNING, 1), Event("j1", v1::SUCCEEDED, 1)},
      /*hold_open=*/true);
  v1::SyncJob job = Job("j1", v1::SUCCEEDED);
  job.add_attempts()->set_number(1);
  fake_.AddJob(job);
  std::unique_ptr<Client> client = Connect();

  absl::StatusOr<v1::SyncJob> awaited = client->Await("j1", absl::Seconds(60));

  ASSERT_TRUE(awaited.ok()) << awaited.status();
  EXPECT_EQ(awaited->state(), v1::SUCCEEDED);
  EXPECT_EQ(awaited->attempts_size(), 1);  // the job from GetSync, with its history
}

TEST_F(ClientTest, AwaitTimesOutWhenTheJobNeverEnds) {
  fake_.SetWatch({Event("j1", v1::QUEUED, 0), Event("j1", v1::RUNNING, 1)}, /*hold_open=*/true);
  std::unique_ptr<Client> client = Connect();

  absl::StatusOr<v1::SyncJob> awaited = client->Await("j1", absl::Milliseconds(200));

  EXPECT_EQ(awaited.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(awaited.status().message(), HasSubstr("RUNNING"));
}

TEST_F(ClientTest, AwaitIsUnavailableWhenTheStreamEndsBeforeTheJob) {
  fake_.SetWatch({Event("j1", v1::RUNNING, 1)}, /*hold_open=*/false);
  fake_.AddJob(Job("j1", v1::RUNNING));
  std::unique_ptr<Client> client = Connect();

  EXPECT_EQ(client->Await("j1", absl::Seconds(60)).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ClientTest, GetCancelAndReplayNameTheJob) {
  fake_.AddJob(Job("j7", v1::FAILED));
  std::unique_ptr<Client> client = Connect();

  EXPECT_EQ(client->Get("j7")->state(), v1::FAILED);
  EXPECT_EQ(client->Cancel("j7")->state(), v1::CANCELLED);
  EXPECT_EQ(client->Replay("j7")->state(), v1::QUEUED);
  EXPECT_EQ(client->Get("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(fake_.job_ids_asked(), ElementsAre("j7", "j7", "j7", "nope"));
}

TEST_F(ClientTest, ListPassesFiltersAndPageToken) {
  v1::ListSyncsResponse first;
  *first.add_jobs() = Job("j2", v1::QUEUED);
  first.set_next_page_token("p2");
  v1::ListSyncsResponse second;
  *second.add_jobs() = Job("j1", v1::QUEUED);
  fake_.SetListPages({first, second});
  std::unique_ptr<Client> client = Connect();
  v1::ListSyncsRequest request;
  request.add_states(v1::QUEUED);
  request.set_label("course=7");
  request.set_page_token("p2");

  absl::StatusOr<v1::ListSyncsResponse> page = client->List(request);

  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->jobs_size(), 1);
  EXPECT_EQ(page->jobs(0).job_id(), "j1");
  ASSERT_EQ(fake_.list_requests().size(), 1u);
  EXPECT_EQ(fake_.list_requests()[0].label(), "course=7");
}

TEST(ClientUnreachableTest, CallsFailUnavailableWhenNothingListens) {
  ClosedPort closed;
  ASSERT_NE(closed.port(), 0);
  ClientOptions options;
  options.target = closed.target();
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  ASSERT_TRUE(client.ok());

  EXPECT_EQ((*client)->Get("j1").status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace rebound::client
