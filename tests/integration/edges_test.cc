// Protocol and input edges against the real server: requests that do not parse, oversized fields,
// and proxy variables in the server's environment.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/support/silent_listener.h"

namespace rebound::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const ::testing::Environment* const kCurl =
    ::testing::AddGlobalTestEnvironment(new fakelms::CurlGlobalEnvironment);

constexpr size_t kHuge = 3 << 20;  // 3 MiB: under gRPC's 4 MiB message limit

// One call of `method` carrying `payload` as its only message, whatever the method's kind (the
// wire format of a unary and a streaming request is the same); returns the call's status.
grpc::Status RawCall(int port, const std::string& method, const std::string& payload) {
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call = stub.PrepareCall(&ctx, method, &cq);
  grpc::Slice slice(payload);
  grpc::ByteBuffer request(&slice, 1);
  grpc::Status status;
  void* tag = nullptr;
  bool ok = false;
  // One operation at a time: start, the message with the end of writes, then the status.
  call->StartCall(reinterpret_cast<void*>(1));
  const bool started = cq.Next(&tag, &ok) && ok;
  if (started) {
    call->WriteLast(request, grpc::WriteOptions(), reinterpret_cast<void*>(2));
    cq.Next(&tag, &ok);  // may fail when the server has already answered
  }
  call->Finish(&status, reinterpret_cast<void*>(3));
  const bool finished = cq.Next(&tag, &ok) && tag == reinterpret_cast<void*>(3);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  EXPECT_TRUE(started);
  EXPECT_TRUE(finished);
  return status;
}

// A length-delimited protobuf field: tag byte (field < 16) then a one- or two-byte length.
std::string Field(int number, const std::string& bytes) {
  std::string out(1, static_cast<char>((number << 3) | 2));
  if (bytes.size() < 0x80) {
    out.push_back(static_cast<char>(bytes.size()));
  } else {
    out.push_back(static_cast<char>((bytes.size() & 0x7f) | 0x80));
    out.push_back(static_cast<char>(bytes.size() >> 7));
  }
  return out + bytes;
}

TEST_F(IntegrationTest, InvalidUtf8InAStringFieldIsInvalidArgumentWithAMessage) {
  // SubmitSyncRequest{request: SyncRequest{idempotency_key: "k", ordering_key: "\xff\xfe"}}
  const std::string sync = Field(1, "k") + Field(8, "\xff\xfe");
  const grpc::Status status =
      RawCall(server_->port(), "/rebound.v1.Rebound/SubmitSync", Field(1, sync));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(),
              StartsWith("request: does not parse as rebound.v1.SubmitSyncRequest"));

  // A server-streaming method: WatchSyncRequest{job_id: "\xff"}.
  const grpc::Status watch =
      RawCall(server_->port(), "/rebound.v1.Rebound/WatchSync", Field(1, "\xff"));
  EXPECT_EQ(watch.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << watch.error_message();
  EXPECT_THAT(watch.error_message(), HasSubstr("rebound.v1.WatchSyncRequest"));

  // The metrics interceptor runs after the rewrite, so it counts what the client saw.
  const std::string url = absl::StrCat("http://127.0.0.1:", server_->metrics_port(), "/metrics");
  fakelms::HttpReply scrape = fakelms::HttpFetch("GET", url);
  if (scrape.code != CURLE_OK) scrape = fakelms::HttpFetch("GET", url);  // exposer drops, rarely
  EXPECT_THAT(scrape.body,
              HasSubstr("grpc_server_handled_total{grpc_code=\"INVALID_ARGUMENT\","
                        "grpc_method=\"SubmitSync\",grpc_service=\"rebound.v1.Rebound\","
                        "grpc_type=\"unary\"} 1\n"));
}

TEST_F(IntegrationTest, DeeplyNestedUnknownFieldsAreInvalidArgumentWithAMessage) {
  // 200 nested groups of an unknown field 15: past protobuf's recursion limit of 100.
  const std::string nested = std::string(200, '\x7b') + std::string(200, '\x7c');
  const grpc::Status status = RawCall(server_->port(), "/rebound.v1.Rebound/GetSync", nested);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("rebound.v1.GetSyncRequest"));
  // Shallow unknown groups parse (and are ignored): the job id is what is missing.
  const std::string shallow = std::string(5, '\x7b') + std::string(5, '\x7c');
  const grpc::Status ok = RawCall(server_->port(), "/rebound.v1.Rebound/GetSync", shallow);
  EXPECT_EQ(ok.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ok.error_message(), "job_id: is required");
}

TEST_F(IntegrationTest, AnUnknownMethodIsStillUnimplemented) {
  const grpc::Status status = RawCall(server_->port(), "/rebound.v1.Rebound/Nope", "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(IntegrationTest, AThreeMebibyteFieldIsInvalidArgumentWithAShortMessageNamingIt) {
  const std::string huge(kHuge, 'x');
  struct Case {
    std::function<void(v1::SyncRequest&)> mutate;
    const char* field;
  };
  const std::vector<Case> cases = {
      {[&](auto& r) { r.set_endpoint(huge); }, "request.endpoint: "},
      {[&](auto& r) { r.set_method(huge); }, "request.method: "},
      {[&](auto& r) { r.set_policy(huge); }, "request.policy: "},
      {[&](auto& r) { (*r.mutable_labels())[huge] = "v"; }, "request.labels["},
      {[&](auto& r) { r.set_idempotency_key(huge); }, "request.idempotency_key: "},
      {[&](auto& r) { r.set_ordering_key(huge); }, "request.ordering_key: "},
      {[&](auto& r) { r.set_correlation_id(huge); }, "request.correlation_id: "},
      {[&](auto& r) { r.set_query(huge); }, "request.query: "},
      {[&](auto& r) { r.set_path("/api/v1/" + huge); }, "request.path: "},
      {[&](auto& r) { r.add_headers()->set_name(huge); }, "request.headers[0]: "},
  };
  for (const auto& c : cases) {
    v1::SyncRequest r = Job("huge", "200");
    c.mutate(r);
    auto s = client().Submit(r);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << c.field << s.status();
    EXPECT_THAT(std::string(s.status().message()), StartsWith(c.field));
    EXPECT_LT(s.status().message().size(), 400u) << c.field;
  }
  // Lists and job ids too.
  auto job = client().Get(huge);
  EXPECT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(job.status().message().size(), 400u);
}

TEST_F(IntegrationTest, ProxyVariablesInTheServersEnvironmentDoNotRerouteUpstreamCalls) {
  SilentListener proxy;
  ASSERT_TRUE(proxy.ok());
  server_.reset();  // stops it; start again with the variables in its environment only
  auto server = ServerProcess::Start(
      dir_, config_path_,
      {absl::StrCat("http_proxy=", proxy.url()), absl::StrCat("HTTPS_PROXY=", proxy.url()),
       absl::StrCat("ALL_PROXY=", proxy.url())});
  ASSERT_TRUE(server.ok()) << server.status() << "\n" << ServerLog();
  server_ = *std::move(server);
  const v1::SyncJob job = Run(Job("k-proxy", "200"));
  EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.last_decision();
  EXPECT_EQ(KeyStats("k-proxy")["attempts"], 1);
  EXPECT_FALSE(proxy.Contacted());
}

}  // namespace
}  // namespace rebound::testing
