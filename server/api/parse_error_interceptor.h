// Turns a request that does not parse into INVALID_ARGUMENT with a message.
//
// gRPC 1.51's callback handlers (server_callback_handlers.h) answer a request whose protobuf
// parse failed with UNIMPLEMENTED and an empty message: the parse status is dropped on the way
// to the "unimplemented" reactor. A parse fails on bytes that are not protobuf, on a string
// field that is not valid UTF-8 (proto3 requires it), and on nesting deeper than protobuf's
// recursion limit (100), e.g. deeply nested unknown groups. Those are the caller's mistakes,
// and UNIMPLEMENTED would tell a client the method does not exist.
//
// The interceptor sees the parse result (POST_RECV_MESSAGE with no message) and rewrites the
// status that follows (PRE_SEND_STATUS) to INVALID_ARGUMENT naming the request type. Calls of
// unknown methods never reach a message hook, so they stay UNIMPLEMENTED. Install it before any
// interceptor that records statuses, so they record the rewritten one:
//   interceptors.push_back(api::MakeParseErrorInterceptorFactory());
// Thread-safe: gRPC creates one interceptor per call and runs its hooks one at a time.
#ifndef REBOUND_SERVER_API_PARSE_ERROR_INTERCEPTOR_H_
#define REBOUND_SERVER_API_PARSE_ERROR_INTERCEPTOR_H_

#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "grpcpp/support/server_interceptor.h"

namespace rebound::api {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeParseErrorInterceptorFactory();

// The INVALID_ARGUMENT message for an unparsable request of `method` ("/pkg.Service/Method").
std::string ParseErrorMessage(absl::string_view method);

}  // namespace rebound::api

#endif  // REBOUND_SERVER_API_PARSE_ERROR_INTERCEPTOR_H_
