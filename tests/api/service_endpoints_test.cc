// ReboundService on a real gRPC server (127.0.0.1, ephemeral port) over a real SqliteStore on a
// temp file and a real (idle) Engine, with the endpoint gates scripted by FakeEndpointControl:
// the endpoint RPCs, and the wait that GetSync and ListSyncs show.
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/api/service.h"
#include "server/config/config.h"
#include "server/engine/engine.h"
#include "server/http/curl_executor.h"
#include "server/store/sqlite_store.h"
#include "tests/api/fake_endpoint_control.h"
#include "tests/support/child_process.h"

namespace rebound::api {
namespace {

using common::WaitReason;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr char kConfig[] = R"(
server:
  grpc_listen: 127.0.0.1:0
  metrics_listen: 127.0.0.1:0
store:
  path: unused.db
policies:
  - name: default
    backoff: {initial: 1s, max: 10s}
    limits: {max_attempts: 5}
endpoints:
  - name: canvas
    base_url: http://127.0.0.1:9
    allowed_path_prefixes: [/api/v1/]
    policy: default
  - name: moodle
    base_url: http://127.0.0.1:9
    allowed_path_prefixes: [/api/v1/]
    policy: default
)";

engine::EndpointStatus Status(const std::string& name) {
  engine::EndpointStatus s;
  s.name = name;
  s.max_in_flight = 16;
  s.allowed_in_flight = 16;
  return s;
}

class ServiceEndpointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cfg = config::ParseConfig(kConfig, "test.yaml");
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    config_ = std::make_shared<const config::Config>(*std::move(cfg));
    store::SqliteOptions options;
    options.path = dir_.File("rebound.db");
    auto store = store::SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto executor = http::CurlExecutor::Create({});
    ASSERT_TRUE(executor.ok()) << executor.status();
    executor_ = *std::move(executor);
    engine_ = std::make_unique<engine::Engine>(config_, *store_, *executor_, clock_);
    gates_.SetStatuses({Status("canvas"), Status("moodle")});
    service_ = std::make_unique<ReboundService>(config_, *engine_, gates_, *store_, clock_);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port_, 0);
    stub_ = v1::Rebound::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  // A job stored directly (the engine's loop does not run), QUEUED.
  common::JobId Store(const std::string& endpoint, const std::string& key) {
    common::JobSpec spec;
    spec.tenant = config_->server.default_tenant;
    spec.idempotency_key = key;
    spec.endpoint = endpoint;
    spec.method = "PUT";
    spec.path = "/api/v1/x";
    std::vector<store::NewJob> jobs(1);
    jobs[0].fingerprint = common::Fingerprint(spec);
    jobs[0].spec = spec;
    absl::Notification done;
    common::JobId id = 0;
    store_->Submit(std::move(jobs), clock_.Now(), [&](std::vector<store::SubmitResult> r) {
      id = r.at(0).job_id;
      done.Notify();
    });
    done.WaitForNotification();
    return id;
  }

  v1::SyncJob Get(common::JobId id) {
    grpc::ClientContext ctx;
    v1::GetSyncRequest req;
    req.set_job_id(common::FormatJobId(id));
    v1::SyncJob job;
    const grpc::Status s = stub_->GetSync(&ctx, req, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }

  grpc::Status List(v1::WaitReason reason, v1::ListSyncsResponse* out) {
    grpc::ClientContext ctx;
    v1::ListSyncsRequest req;
    req.set_wait_reason(reason);
    return stub_->ListSyncs(&ctx, req, out);
  }

  testing::TempDir dir_{"rebound-service-endpoints"};
  common::FakeClock clock_;
  std::shared_ptr<const config::Config> config_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<http::CurlExecutor> executor_;
  std::unique_ptr<engine::Engine> engine_;
  testing::FakeEndpointControl gates_;
  std::unique_ptr<ReboundService> service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Rebound::Stub> stub_;
};

TEST_F(ServiceEndpointsTest, GetEndpointStatusOneOrAll) {
  {
    grpc::ClientContext ctx;
    v1::GetEndpointStatusRequest req;
    v1::GetEndpointStatusResponse resp;
    ASSERT_TRUE(stub_->GetEndpointStatus(&ctx, req, &resp).ok());
    ASSERT_THAT(resp.endpoints(), SizeIs(2));
    EXPECT_EQ(resp.endpoints(0).name(), "canvas");
    EXPECT_EQ(resp.endpoints(1).name(), "moodle");
    EXPECT_EQ(resp.endpoints(1).circuit(), v1::CLOSED);
    EXPECT_EQ(resp.endpoints(1).max_in_flight(), 16);
  }
  {
    grpc::ClientContext ctx;
    v1::GetEndpointStatusRequest req;
    req.set_name("moodle");
    v1::GetEndpointStatusResponse resp;
    ASSERT_TRUE(stub_->GetEndpointStatus(&ctx, req, &resp).ok());
    ASSERT_THAT(resp.endpoints(), SizeIs(1));
    EXPECT_EQ(resp.endpoints(0).name(), "moodle");
  }
  {
    grpc::ClientContext ctx;
    v1::GetEndpointStatusRequest req;
    req.set_name("blackboard");
    v1::GetEndpointStatusResponse resp;
    const grpc::Status s = stub_->GetEndpointStatus(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(s.error_message(), "name: unknown endpoint 'blackboard'");
  }
}

TEST_F(ServiceEndpointsTest, PauseForADurationThenResume) {
  grpc::ClientContext ctx;
  v1::PauseEndpointRequest req;
  req.set_name("canvas");
  req.mutable_duration()->set_seconds(600);
  req.set_reason("LMS maintenance");
  v1::EndpointStatus resp;
  const grpc::Status s = stub_->PauseEndpoint(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(resp.operator_paused());
  EXPECT_EQ(resp.operator_paused_until().seconds(),
            absl::ToUnixSeconds(clock_.Now() + absl::Minutes(10)));
  EXPECT_EQ(resp.operator_reason(), "LMS maintenance");
  ASSERT_THAT(gates_.pauses(), SizeIs(1));
  EXPECT_EQ(gates_.pauses()[0].until, clock_.Now() + absl::Minutes(10));

  grpc::ClientContext rctx;
  v1::ResumeEndpointRequest rreq;
  rreq.set_name("canvas");
  v1::EndpointStatus rresp;
  ASSERT_TRUE(stub_->ResumeEndpoint(&rctx, rreq, &rresp).ok());
  EXPECT_FALSE(rresp.operator_paused());
  // The engine's refusal reaches the caller as it is.
  grpc::ClientContext again;
  const grpc::Status twice = stub_->ResumeEndpoint(&again, rreq, &rresp);
  EXPECT_EQ(twice.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(ServiceEndpointsTest, BadPauseNeverReachesTheEngine) {
  grpc::ClientContext ctx;
  v1::PauseEndpointRequest req;
  req.set_name("canvas");
  req.mutable_until()->set_seconds(absl::ToUnixSeconds(clock_.Now()) - 1);
  v1::EndpointStatus resp;
  const grpc::Status s = stub_->PauseEndpoint(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("until: "));
  grpc::ClientContext rctx;
  v1::ResumeEndpointRequest rreq;
  rreq.set_name("nope");
  EXPECT_EQ(stub_->ResumeEndpoint(&rctx, rreq, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(gates_.pauses(), IsEmpty());
  EXPECT_THAT(gates_.resumes(), IsEmpty());
}

TEST_F(ServiceEndpointsTest, GetSyncShowsTheEndpointsWaitForAReadyJob) {
  const common::JobId held = Store("canvas", "k1");
  const common::JobId free = Store("moodle", "k2");
  gates_.SetWait("canvas", false, {WaitReason::kCircuitOpen, clock_.Now() + absl::Seconds(30)});
  const v1::SyncJob job = Get(held);
  ASSERT_EQ(job.state(), v1::QUEUED);
  EXPECT_EQ(job.wait().reason(), v1::CIRCUIT_OPEN);
  EXPECT_EQ(job.wait().until().seconds(), absl::ToUnixSeconds(clock_.Now()) + 30);
  EXPECT_FALSE(Get(free).has_wait());
}

TEST_F(ServiceEndpointsTest, ListByAnEndpointReasonNobodyImposesIsEmpty) {
  Store("canvas", "k1");
  Store("moodle", "k2");
  v1::ListSyncsResponse resp;
  ASSERT_TRUE(List(v1::CIRCUIT_OPEN, &resp).ok());
  EXPECT_THAT(resp.jobs(), IsEmpty());
  EXPECT_TRUE(resp.next_page_token().empty());
  // Without the filter both jobs list, each with its wait.
  gates_.SetWait("moodle", false, {WaitReason::kRateLimited, absl::InfiniteFuture()});
  ASSERT_TRUE(List(v1::WAIT_REASON_UNSPECIFIED, &resp).ok());
  ASSERT_THAT(resp.jobs(), SizeIs(2));
  EXPECT_EQ(resp.jobs(0).request().endpoint(), "moodle");  // newest first
  EXPECT_EQ(resp.jobs(0).wait().reason(), v1::RATE_LIMITED);
  EXPECT_FALSE(resp.jobs(1).has_wait());
}

TEST_F(ServiceEndpointsTest, ListRefusesAnUnknownWaitReason) {
  v1::ListSyncsResponse resp;
  const grpc::Status s = List(static_cast<v1::WaitReason>(99), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("wait_reason: 99"));
}

}  // namespace
}  // namespace rebound::api
