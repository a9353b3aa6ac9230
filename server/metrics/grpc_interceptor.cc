#include "server/metrics/grpc_interceptor.h"

#include <atomic>
#include <chrono>

#include "grpcpp/support/interceptor.h"
#include "grpcpp/support/status.h"

namespace rebound::metrics {
namespace {

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(Metrics& metrics, size_t method_index)
      : metrics_(metrics), method_index_(method_index), start_(std::chrono::steady_clock::now()) {}

  ~MetricsInterceptor() override { Record(grpc::StatusCode::CANCELLED); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  // Counts the call once: the first status seen wins.
  void Record(int code) {
    if (recorded_.exchange(true, std::memory_order_relaxed)) return;
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start_;
    metrics_.GrpcServerRequests(method_index_, code).Increment();
    metrics_.GrpcServerHandling(method_index_).Observe(elapsed.count());
  }

  Metrics& metrics_;
  const size_t method_index_;
  const std::chrono::steady_clock::time_point start_;
  std::atomic<bool> recorded_{false};
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(Metrics& metrics) : metrics_(metrics) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const char* method = info->method();
    return new MetricsInterceptor(metrics_, GrpcMethodIndex(method == nullptr ? "" : method));
  }

 private:
  Metrics& metrics_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeGrpcInterceptorFactory(
    Metrics& metrics) {
  return std::make_unique<MetricsInterceptorFactory>(metrics);
}

}  // namespace rebound::metrics
