#include "server/metrics/grpc_interceptor.h"

#include <chrono>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
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

using Labels = std::map<std::string, std::string>;

// The labels of a method of kGrpcMethods: grpc_service, grpc_method, grpc_type.
Labels Method(const std::string& service, const std::string& method, const std::string& type) {
  return {{"grpc_service", service}, {"grpc_method", method}, {"grpc_type", type}};
}
Labels With(Labels labels, const std::string& code) {
  labels.emplace("grpc_code", code);
  return labels;
}

// The value of the one series of `family` with exactly `labels` (a histogram: its count).
double Value(const prometheus::Registry& registry, const std::string& family,
             const Labels& labels) {
  for (const prometheus::MetricFamily& f : registry.Collect()) {
    if (f.name != family) continue;
    for (const prometheus::ClientMetric& m : f.metric) {
      Labels got;
      for (const auto& l : m.label) got[l.name] = l.value;
      if (got != labels) continue;
      return f.type == prometheus::MetricType::Histogram
                 ? static_cast<double>(m.histogram.sample_count)
                 : m.counter.value;
    }
  }
  ADD_FAILURE() << "no series " << family << " for " << labels.size() << " labels";
  return -1;
}

// Records the RPC type gRPC reports for each method it creates interceptors for.
class TypeRecorder final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    absl::MutexLock lock(&mu_);
    types_[info->method()] = info->type();
    return nullptr;  // no interceptor for this call
  }
  std::optional<grpc::experimental::ServerRpcInfo::Type> TypeOf(const std::string& method) {
    absl::MutexLock lock(&mu_);
    auto it = types_.find(method);
    if (it == types_.end()) return std::nullopt;
    return it->second;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, grpc::experimental::ServerRpcInfo::Type> types_ ABSL_GUARDED_BY(mu_);
};

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
    auto recorder = std::make_unique<TypeRecorder>();
    types_ = recorder.get();
    factories.push_back(std::move(recorder));
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
  TypeRecorder* types_ = nullptr;  // owned by the server
};

TEST_F(GrpcInterceptorTest, CountsARealUnaryRpcUnderTheGoGrpcPrometheusNames) {
  const Labels check = Method("grpc.health.v1.Health", "Check", "unary");
  ASSERT_TRUE(Check("").ok());
  ASSERT_TRUE(Check("").ok());
  const grpc::Status missing = Check("no.such.Service");
  ASSERT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND) << missing.error_message();

  // PRE_SEND_STATUS runs before the status leaves the server: counted before the client returns.
  EXPECT_EQ(Value(registry_, "grpc_server_started_total", check), 3);
  EXPECT_EQ(Value(registry_, "grpc_server_handled_total", With(check, "OK")), 2);
  EXPECT_EQ(Value(registry_, "grpc_server_handled_total", With(check, "NOT_FOUND")), 1);
  EXPECT_EQ(Value(registry_, "grpc_server_handled_total", With(check, "INTERNAL")), 0);
  EXPECT_EQ(Value(registry_, "grpc_server_handling_seconds", check), 3);
  EXPECT_EQ(Value(registry_, "grpc_server_msg_received_total", check), 3);
  EXPECT_EQ(Value(registry_, "grpc_server_msg_sent_total", check), 2);  // none with NOT_FOUND
  const Labels submit = Method("rebound.v1.Rebound", "SubmitSync", "unary");
  EXPECT_EQ(Value(registry_, "grpc_server_started_total", submit), 0);
  EXPECT_EQ(Value(registry_, "grpc_server_handled_total", With(submit, "OK")), 0);
  const Labels watch = Method("grpc.health.v1.Health", "Watch", "server_stream");
  EXPECT_EQ(Value(registry_, "grpc_server_handling_seconds", watch), 0);
  EXPECT_EQ(types_->TypeOf("/grpc.health.v1.Health/Check"),
            grpc::experimental::ServerRpcInfo::Type::UNARY);
}

TEST_F(GrpcInterceptorTest, CountsEveryMessageOfAServerStreamAndItsCancel) {
  const Labels watch = Method("grpc.health.v1.Health", "Watch", "server_stream");
  auto context = std::make_unique<grpc::ClientContext>();
  HealthCheckRequest req;
  std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> reader =
      stub_->Watch(context.get(), req);
  HealthCheckResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(resp.status(), HealthCheckResponse::SERVING);
  server_->GetHealthCheckService()->SetServingStatus(false);
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(resp.status(), HealthCheckResponse::NOT_SERVING);
  context->TryCancel();
  while (reader->Read(&resp)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);

  EXPECT_EQ(Value(registry_, "grpc_server_started_total", watch), 1);
  EXPECT_EQ(Value(registry_, "grpc_server_msg_received_total", watch), 1);
  EXPECT_EQ(Value(registry_, "grpc_server_msg_sent_total", watch), 2);
  // The server sees the cancel a moment after the client, and ends the call with the status its
  // handler chooses (gRPC's health service: UNKNOWN): wait for it, with a bound.
  auto handled = [&] {
    double sum = 0;
    for (int c = 0; c < static_cast<int>(kGrpcCodeCount); ++c) {
      sum +=
          Value(registry_, "grpc_server_handled_total", With(watch, std::string(GrpcCodeName(c))));
    }
    return sum;
  };
  for (int i = 0; i < 500 && handled() == 0; ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(handled(), 1);
  EXPECT_EQ(Value(registry_, "grpc_server_handled_total", With(watch, "OK")), 0);
  EXPECT_EQ(Value(registry_, "grpc_server_handling_seconds", watch), 1);
  EXPECT_EQ(types_->TypeOf("/grpc.health.v1.Health/Watch"),
            grpc::experimental::ServerRpcInfo::Type::SERVER_STREAMING);
}

TEST_F(GrpcInterceptorTest, CountsMethodsOutsideTheFixedListAsOtherBidiStreams) {
  const std::string method = "/made.up.Service/" + std::string(50, 'x');
  const grpc::Status s = CallGeneric(method);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED) << s.error_message();
  const Labels other = Method("other", "other", "bidi_stream");
  EXPECT_EQ(Value(registry_, "grpc_server_started_total", other), 1);
  EXPECT_EQ(Value(registry_, "grpc_server_handled_total", With(other, "UNIMPLEMENTED")), 1);
  EXPECT_EQ(Value(registry_, "grpc_server_handling_seconds", other), 1);
  // gRPC itself serves an unknown method as a generic bidirectional stream.
  EXPECT_EQ(types_->TypeOf(method), grpc::experimental::ServerRpcInfo::Type::BIDI_STREAMING);
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
