// WatchSync streams are bounded per tenant and in all (server.max_watchers_per_tenant,
// server.max_watchers), and a cancelled stream is let go at once (issue 12 item 3). Real server,
// raw gRPC streams so that several stay open at the same time.
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "rebound/v1/rebound.grpc.pb.h"
#include "tests/integration/harness.h"

namespace rebound::testing {
namespace {

const ::testing::Environment* const kCurl =
    ::testing::AddGlobalTestEnvironment(new fakelms::CurlGlobalEnvironment);

constexpr int kPerTenant = 3;
constexpr int kTotal = 4;

// One open WatchSync stream.
struct Stream {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::SyncEvent>> reader;
};

class WatchLimitsTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    ASSERT_TRUE(server_->process().Stop(absl::Seconds(20)).ok());
    std::ifstream in(config_path_);
    std::string cfg((std::istreambuf_iterator<char>(in)), {});
    const std::string grace = "  shutdown_grace: 2s\n";
    ASSERT_NE(cfg.find(grace), std::string::npos);
    cfg.replace(cfg.find(grace), grace.size(),
                absl::StrCat(grace, "  max_watchers: ", kTotal,
                             "\n  max_watchers_per_tenant: ", kPerTenant, "\n"));
    std::ofstream(config_path_, std::ios::trunc) << cfg;
    ASSERT_NO_FATAL_FAILURE(StartServer());
    stub_ = v1::Rebound::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                                     grpc::InsecureChannelCredentials()));
  }

  // A job of `tenant` that stays unfinished for the whole test (its upstream hangs).
  std::string HangingJob(const std::string& tenant, const std::string& key) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("x-rebound-tenant", tenant);
    v1::SubmitSyncRequest req;
    *req.mutable_request() = Job(key, "hang");
    req.mutable_request()->set_endpoint("slow");
    v1::SubmitSyncResponse resp;
    const grpc::Status s = stub_->SubmitSync(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.job_id();
  }

  // Opens a stream; returns it once its first event arrived, or the status it ended with.
  std::unique_ptr<Stream> Open(const std::string& tenant, const std::string& job_id,
                               grpc::Status* ended) {
    auto stream = std::make_unique<Stream>();
    stream->ctx.AddMetadata("x-rebound-tenant", tenant);
    stream->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::WatchSyncRequest req;
    req.set_job_id(job_id);
    stream->reader = stub_->WatchSync(&stream->ctx, req);
    v1::SyncEvent event;
    if (stream->reader->Read(&event)) {
      EXPECT_EQ(event.job_id(), job_id);
      return stream;
    }
    *ended = stream->reader->Finish();
    return nullptr;
  }

  double WatchersGauge() {
    const fakelms::HttpReply r = fakelms::HttpFetch(
        "GET", absl::StrCat("http://127.0.0.1:", server_->metrics_port(), "/metrics"));
    for (absl::string_view line : absl::StrSplit(r.body, '\n')) {
      double v = 0;
      if (absl::ConsumePrefix(&line, "rebound_watchers ") && absl::SimpleAtod(line, &v)) return v;
    }
    ADD_FAILURE() << "no rebound_watchers in /metrics (HTTP " << r.status << ")";
    return -1;
  }

  static void CancelAll(std::vector<std::unique_ptr<Stream>>& streams) {
    for (auto& s : streams) s->ctx.TryCancel();
    for (auto& s : streams) {
      EXPECT_EQ(s->reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
    }
    streams.clear();
  }

  std::unique_ptr<v1::Rebound::Stub> stub_;
};

TEST_F(WatchLimitsTest, BoundedPerTenantAndInAllAndFreedOnCancel) {
  const std::string mine = HangingJob("district-a", "wl-a");
  const std::string theirs = HangingJob("district-b", "wl-b");
  std::vector<std::unique_ptr<Stream>> open;
  grpc::Status ended;
  for (int i = 0; i < kPerTenant; ++i) {
    auto s = Open("district-a", mine, &ended);
    ASSERT_NE(s, nullptr) << i << ": " << ended.error_message();
    open.push_back(std::move(s));
  }
  // One more of the same tenant: refused, naming the bound.
  ASSERT_EQ(Open("district-a", mine, &ended), nullptr);
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(ended.error_message(), ::testing::HasSubstr("server.max_watchers_per_tenant = 3"));
  // Another tenant still has room until the server-wide bound.
  auto other = Open("district-b", theirs, &ended);
  ASSERT_NE(other, nullptr) << ended.error_message();
  open.push_back(std::move(other));
  ASSERT_EQ(Open("district-b", theirs, &ended), nullptr);
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(ended.error_message(), ::testing::HasSubstr("server.max_watchers = 4"));
  EXPECT_EQ(WatchersGauge(), kTotal);

  // Cancelled streams give their room back at once (the jobs have not moved).
  CancelAll(open);
  double gauge = -1;
  for (int i = 0; i < 200 && (gauge = WatchersGauge()) != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(gauge, 0);
  for (int i = 0; i < kPerTenant; ++i) {
    auto s = Open("district-a", mine, &ended);
    ASSERT_NE(s, nullptr) << "after cancel, " << i << ": " << ended.error_message();
    open.push_back(std::move(s));
  }
  CancelAll(open);
}

}  // namespace
}  // namespace rebound::testing
