// Turns an API SyncRequest into a JobSpec, or says exactly which field is wrong.
//
// Pure apart from libcurl's URL parser (and percent-decoder), which is used so that what is
// validated here is what the transfer will use (DESIGN.md "Security"). Thread-safe.
//
// Every string field of a request is bounded (README "API"), and a value echoed in an error is
// escaped and cut (Echo), so no request makes an error message, its gRPC trailer or its
// `rejected` log line large, and no control character in it reaches a log or a terminal.
#ifndef REBOUND_SERVER_API_VALIDATION_H_
#define REBOUND_SERVER_API_VALIDATION_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "rebound/v1/rebound.pb.h"
#include "server/common/job.h"
#include "server/config/config.h"
#include "server/store/job_store.h"

namespace rebound::api {

// Bounds of the request fields that have no configuration key (README "API"). Keys, headers,
// labels per job and the body are bounded by server.max_* instead.
inline constexpr size_t kMaxPathBytes = 2048;
inline constexpr size_t kMaxQueryBytes = 8192;
inline constexpr size_t kMaxMethodBytes = 16;
inline constexpr size_t kMaxCorrelationIdBytes = 128;
inline constexpr size_t kMaxLabelKeyBytes = 63;
inline constexpr size_t kMaxLabelValueBytes = 256;
inline constexpr size_t kMaxJobIdBytes = 64;
inline constexpr size_t kMaxPageTokenBytes = 128;
inline constexpr size_t kMaxPauseReasonBytes = 512;
// The longest operator pause with an end (PauseEndpoint until / duration); an open-ended pause
// has no `until` at all.
inline constexpr absl::Duration kMaxPause = absl::Hours(24 * 366);
// Bytes of a caller's value quoted in an error message; the rest is cut (Echo).
inline constexpr size_t kMaxEchoBytes = 64;

// `value` as it may appear inside an error message: at most kMaxEchoBytes of it, with control
// characters, quotes and non-ASCII bytes C-escaped, then "... (N bytes)" when it was cut. Every
// value of a request that an error repeats goes through here.
std::string Echo(absl::string_view value);

// True when `s` holds a C0 control character (CR, LF, ESC, NUL, ...), DEL, or a C1 control
// (U+0080..U+009F, UTF-8 encoded): characters that can forge log lines or drive a terminal.
// Identifiers (keys, correlation id, labels) refuse them.
bool HasControlCharacter(absl::string_view s);

// True for a header name that upstream frameworks or proxies read as a routing, method, host,
// scheme or client-address override (X-HTTP-Method-Override, X-Original-URL, X-Forwarded-*,
// Forwarded, ...), or that belongs to the connection (TE, Upgrade, Proxy-*): a job may not send
// them (README "Security"). Case-insensitive.
bool IsDeniedHeader(absl::string_view name);

// INVALID_ARGUMENT with a message that starts with the field path, e.g.
// "request.path: '/admin' is outside the endpoint's allowed prefixes (/api/v1/)".
// `field` is the request's own path in the RPC ("request" or "requests[3]").
absl::StatusOr<common::JobSpec> ValidateSyncRequest(const v1::SyncRequest& request,
                                                    const config::Config& config,
                                                    absl::string_view tenant,
                                                    absl::string_view field);

// The filter of a ListSyncs request, or INVALID_ARGUMENT naming the field (states, endpoint,
// ordering_key, label, page_size, page_token).
absl::StatusOr<store::ListFilter> ValidateListRequest(const v1::ListSyncsRequest& request,
                                                      const config::Config& config);

// The wait reason of a ListSyncs request (kNone when unset), or INVALID_ARGUMENT naming
// wait_reason.
absl::StatusOr<common::WaitReason> ValidateWaitReason(const v1::ListSyncsRequest& request);

// The endpoint a GetEndpointStatus, PauseEndpoint or ResumeEndpoint request names: `name`
// bounded like every name (INVALID_ARGUMENT), and configured (NOT_FOUND naming it). Empty is
// INVALID_ARGUMENT unless `empty_ok` (GetEndpointStatus: every endpoint).
absl::Status ValidateEndpointName(absl::string_view name, const config::Config& config,
                                  bool empty_ok);

// An operator pause as asked for (PauseEndpoint).
struct PauseRequest {
  std::string name;
  absl::Time until = absl::InfiniteFuture();  // InfiniteFuture: until resumed
  std::string reason;
};
// A PauseEndpoint request checked at `now`: the name as ValidateEndpointName; `until` or
// `duration`, not both, ending after `now` and within kMaxPause of it; `reason` at most
// kMaxPauseReasonBytes without control characters. Errors name the field.
absl::StatusOr<PauseRequest> ValidatePauseRequest(const v1::PauseEndpointRequest& request,
                                                  const config::Config& config, absl::Time now);

// Checks a job path against an endpoint: no "..", no "//", no '@', no backslash, no control
// characters, no percent-encoded dot, slash, backslash or control character, no double,
// malformed or overlong-UTF-8 percent-encoding; then base_url + path parsed by curl must keep
// the endpoint's scheme, host and port and land under an allowed prefix. Returns the path
// problem (without a field name) or OK.
absl::Status CheckPath(const config::EndpointConfig& endpoint, absl::string_view path,
                       absl::string_view query);

// Checks a query string (without '?'): bounded, no control characters, spaces or '#', and its
// percent-encoding decodes once to plain bytes (no encoded control character such as %0d%0a, no
// double encoding such as %252e, no %u002e, no overlong UTF-8 such as %c0%ae). Returns the
// problem (without a field name) or OK.
absl::Status CheckQuery(absl::string_view query);

}  // namespace rebound::api

#endif  // REBOUND_SERVER_API_VALIDATION_H_
