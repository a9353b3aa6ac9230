#include "server/metrics/grpc_interceptor.h"

#include <chrono>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/config/config.h"
#include "server/metrics/metrics.h"

namespace rebound::metrics {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;

// The value of rebound_grpc_server_requests_total{method, code} in `registry`.
double Requests(const prometheus::Registry& registry, const std::string& method,
                const std::string& code) {
  for (const prometheus::MetricFamily& f : registry.Collect()) {
    if (f.name != "rebound_grpc_server_requests_total") continue;
    for (const prometheus::ClientMetric& m : f.metric) {
      std::map<std::string, std::string> labels;
      for (const auto& l : m.label) labels[l.name] = l.value;
      if (labels["method"] == method && labels["code"] == code) return m.counter.value;
    }
  }
  ADD_FAILURE() << "no series for " << method << " " << code;
  return -1;
}

// rebound_grpc_server_handling_seconds{method}: observations.
uint64_t Handled(const prometheus::Registry& registry, const std::string& method) {
  for (const prometheus::MetricFamily& f : registry.Collect()) {
    if (f.name != "rebound_grpc_server_handling_seconds") continue;
    for (const prometheus::ClientMetric& m : f.metric) {
      if (m.label.size() == 1 && m.label[0].value == method) return m.histogram.sample_count;
    }
  }
  ADD_FAILURE() << "no handling series for " << method;
  return 0;
}

class GrpcInterceptorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    metrics_ = Metrics::Create(registry_, config::Config{}, "v", "r");
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    // Answers every method no other service has with UNIMPLEMENTED (its default reactor).
    builder.RegisterCallbackGenericService(&generic_service_);
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> factories;
    factories.push_back(MakeGrpcInterceptorFactory(*metrics_));
    builder.experimental().SetInterceptorCreators(std::move(factories));
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    server_->GetHealthCheckService()->SetServingStatus(true);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
    stub_ = Health::NewStub(channel_);
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  grpc::Status Check(const std::string& service) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    HealthCheckRequest req;
    req.set_service(service);
    HealthCheckResponse resp;
    return stub_->Check(&ctx, req, &resp);
  }

  // A unary call of `method` through the generic stub.
  grpc::Status CallGeneric(const std::string& method) {
    grpc::GenericStub generic(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Slice payload(std::string("x"));
    grpc::ByteBuffer request(&payload, 1);
    grpc::ByteBuffer response;
    std::promise<grpc::Status> done;
    generic.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                      [&done](grpc::Status s) { done.set_value(std::move(s)); });
    return done.get_future().get();
  }

  prometheus::Registry registry_;
  std::unique_ptr<Metrics> metrics_;
  grpc::CallbackGenericService generic_service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Health::Stub> stub_;
};

TEST_F(GrpcInterceptorTest, CountsARealRpcByMethodAndStatusCode) {
  const std::string check = "grpc.health.v1.Health/Check";
  ASSERT_TRUE(Check("").ok());
  ASSERT_TRUE(Check("").ok());
  const grpc::Status missing = Check("no.such.Service");
  ASSERT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND) << missing.error_message();

  // PRE_SEND_STATUS runs before the status leaves the server: counted before the client returns.
  EXPECT_EQ(Requests(registry_, check, "OK"), 2);
  EXPECT_EQ(Requests(registry_, check, "NOT_FOUND"), 1);
  EXPECT_EQ(Requests(registry_, check, "INTERNAL"), 0);
  EXPECT_EQ(Requests(registry_, "rebound.v1.Rebound/SubmitSync", "OK"), 0);
  EXPECT_EQ(Requests(registry_, "other", "OK"), 0);
  EXPECT_EQ(Handled(registry_, check), 3u);
  EXPECT_EQ(Handled(registry_, "grpc.health.v1.Health/Watch"), 0u);
}

TEST_F(GrpcInterceptorTest, CountsMethodsOutsideTheFixedListAsOther) {
  const grpc::Status s = CallGeneric("/made.up.Service/" + std::string(50, 'x'));
  ASSERT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED) << s.error_message();
  EXPECT_EQ(Requests(registry_, "other", "UNIMPLEMENTED"), 1);
  EXPECT_EQ(Handled(registry_, "other"), 1u);
}

TEST_F(GrpcInterceptorTest, CreatesNoSeriesForRequests) {
  const size_t before = registry_.Collect().size();
  size_t series_before = 0;
  for (const auto& f : registry_.Collect()) series_before += f.metric.size();
  ASSERT_TRUE(Check("").ok());
  ASSERT_FALSE(Check("made.up.Service").ok());
  ASSERT_FALSE(CallGeneric("/made.up.Service/Method").ok());
  size_t series_after = 0;
  for (const auto& f : registry_.Collect()) series_after += f.metric.size();
  EXPECT_EQ(registry_.Collect().size(), before);
  EXPECT_EQ(series_after, series_before);
}

}  // namespace
}  // namespace rebound::metrics
