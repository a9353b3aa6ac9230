// Turns an API SyncRequest into a JobSpec, or says exactly which field is wrong.
//
// Pure apart from libcurl's URL parser, which is used so that what is validated here is what
// the transfer will use (DESIGN.md "Security"). Thread-safe.
#ifndef REBOUND_SERVER_API_VALIDATION_H_
#define REBOUND_SERVER_API_VALIDATION_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "rebound/v1/rebound.pb.h"
#include "server/common/job.h"
#include "server/config/config.h"

namespace rebound::api {

// INVALID_ARGUMENT with a message that starts with the field path, e.g.
// "request.path: '/admin' is outside the endpoint's allowed prefixes (/api/v1/)".
// `field` is the request's own path in the RPC ("request" or "requests[3]").
absl::StatusOr<common::JobSpec> ValidateSyncRequest(const v1::SyncRequest& request,
                                                    const config::Config& config,
                                                    absl::string_view tenant,
                                                    absl::string_view field);

// Checks a job path against an endpoint: no "..", no "//", no '@', no backslash, no control
// characters, no percent-encoded dot or slash; then base_url + path parsed by curl must keep
// the endpoint's scheme, host and port and land under an allowed prefix. Returns the path
// problem (without a field name) or OK.
absl::Status CheckPath(const config::EndpointConfig& endpoint, absl::string_view path,
                       absl::string_view query);

}  // namespace rebound::api

#endif  // REBOUND_SERVER_API_VALIDATION_H_
