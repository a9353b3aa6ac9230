// gRPC server metrics: an interceptor counting every call by method and status code
// (rebound_grpc_server_requests_total{method, code}) and timing it
// (rebound_grpc_server_handling_seconds{method}).
//
// Install on the builder before BuildAndStart():
//   std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> f;
//   f.push_back(metrics::MakeGrpcInterceptorFactory(metrics));
//   builder.experimental().SetInterceptorCreators(std::move(f));
//
// The method label is one of kGrpcMethods (anything else: "other"); the code label is the
// canonical name of the status sent. Handling time runs from the interceptor's creation (the
// call's arrival) to PRE_SEND_STATUS. A call that ends without sending a status (cancelled by
// the client before the handler finished) is counted as CANCELLED when gRPC destroys it.
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
