// gRPC server metrics: an interceptor that counts and times every call under the names and labels
// of go-grpc-prometheus, so stock gRPC dashboards and alerts work unchanged:
//   grpc_server_started_total{grpc_service, grpc_method, grpc_type}
//   grpc_server_handled_total{grpc_service, grpc_method, grpc_type, grpc_code}
//   grpc_server_handling_seconds{grpc_service, grpc_method, grpc_type}   (histogram)
//   grpc_server_msg_received_total, grpc_server_msg_sent_total{grpc_service, grpc_method,
//   grpc_type}
//
// Install on the builder before BuildAndStart():
//   std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> f;
//   f.push_back(metrics::MakeGrpcInterceptorFactory(metrics));
//   builder.experimental().SetInterceptorCreators(std::move(f));
//
// The method is one of kGrpcMethods (anything else: service and method "other"); grpc_code is
// the canonical name of the status sent. A call is started when the interceptor is created (the
// call's arrival); handling time runs from then to PRE_SEND_STATUS. A call that ends without
// sending a status (cancelled by the client before the handler finished) is counted as handled
// with CANCELLED when gRPC destroys it. Every message the server reads counts as received and
// every message it writes as sent (a unary call: one of each when it succeeds).
// `metrics` must outlive the server.
#ifndef REBOUND_SERVER_METRICS_GRPC_INTERCEPTOR_H_
#define REBOUND_SERVER_METRICS_GRPC_INTERCEPTOR_H_

#include <memory>

#include "grpcpp/support/server_interceptor.h"
#include "server/metrics/metrics.h"

namespace rebound::metrics {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeGrpcInterceptorFactory(
    Metrics& metrics);

}  // namespace rebound::metrics

#endif  // REBOUND_SERVER_METRICS_GRPC_INTERCEPTOR_H_
