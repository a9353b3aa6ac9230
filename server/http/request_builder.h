// Request assembly: what one attempt of a job sends upstream. Pure (randomness injected), so
// the engine only decides *when* an attempt starts, and this file *what* it sends.
#ifndef REBOUND_SERVER_HTTP_REQUEST_BUILDER_H_
#define REBOUND_SERVER_HTTP_REQUEST_BUILDER_H_

#include <string>

#include "absl/random/bit_gen_ref.h"
#include "absl/strings/string_view.h"
#include "server/common/job.h"
#include "server/config/config.h"
#include "server/http/executor.h"

namespace rebound::http {

// The request of one attempt of `spec` to `endpoint`:
// - URL: base_url + path, plus "?" + query when there is one;
// - headers: the endpoint's headers, then the job's (a valid `traceparent` is replaced by a
//   child of it: every attempt is its own span under the caller's trace), then
//   `idempotency_header: spec.idempotency_key`, then X-Correlation-Id when the job has one;
// - body, timeouts, response cap and proxy from the endpoint.
Request BuildRequest(const config::EndpointConfig& endpoint, const std::string& base_url,
                     const common::JobSpec& spec, absl::string_view idempotency_header,
                     absl::BitGenRef rng);

}  // namespace rebound::http

#endif  // REBOUND_SERVER_HTTP_REQUEST_BUILDER_H_
