#include "server/http/request_builder.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/http/traceparent.h"

namespace rebound::http {

Request BuildRequest(const config::EndpointConfig& endpoint, const std::string& base_url,
                     const common::JobSpec& spec, absl::string_view idempotency_header,
                     absl::BitGenRef rng) {
  Request req;
  req.method = spec.method;
  req.url = spec.query.empty() ? absl::StrCat(base_url, spec.path)
                               : absl::StrCat(base_url, spec.path, "?", spec.query);
  req.headers.reserve(endpoint.headers.size() + spec.headers.size() + 2);
  for (const auto& h : endpoint.headers) req.headers.emplace_back(h.name, h.value);
  for (const auto& h : spec.headers) {
    if (absl::EqualsIgnoreCase(h.first, "traceparent") && ValidTraceparent(h.second)) {
      req.headers.emplace_back(h.first, NewChildTraceparent(h.second, rng));
    } else {
      req.headers.push_back(h);
    }
  }
  req.headers.emplace_back(std::string(idempotency_header), spec.idempotency_key);
  if (!spec.correlation_id.empty()) {
    req.headers.emplace_back("X-Correlation-Id", spec.correlation_id);
  }
  req.body = spec.body;
  req.connect_timeout = endpoint.connect_timeout;
  req.timeout = endpoint.timeout;
  req.max_response_bytes = endpoint.max_response_bytes;
  req.proxy = endpoint.proxy;
  return req;
}

}  // namespace rebound::http
