#include "server/api/validation.h"

#include <curl/curl.h>

#include <algorithm>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace rebound::api {
namespace {

constexpr size_t kMaxPathBytes = 2048;
constexpr size_t kMaxQueryBytes = 8192;
constexpr size_t kMaxCorrelationIdBytes = 128;
constexpr size_t kMaxLabelKeyBytes = 63;
constexpr size_t kMaxLabelValueBytes = 256;

absl::Status Invalid(absl::string_view field, absl::string_view sub, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ".", sub, ": ", problem));
}

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::StrContains("!#$%&'*+-.^_`|~", c);
}

bool HasControl(absl::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

// Header values may contain tabs but never CR, LF or NUL (no header injection).
bool BadHeaderValue(absl::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && u != '\t') || u == 0x7f;
  });
}

struct CurlUrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
using CurlUrl = std::unique_ptr<CURLU, CurlUrlDeleter>;

std::string Part(CURLU* u, CURLUPart part) {
  char* out = nullptr;
  if (curl_url_get(u, part, &out, CURLU_DEFAULT_PORT) != CURLUE_OK || out == nullptr) return "";
  std::string s(out);
  curl_free(out);
  return s;
}

}  // namespace

absl::Status CheckPath(const config::EndpointConfig& endpoint, absl::string_view path,
                       absl::string_view query) {
  if (path.empty() || path[0] != '/') return absl::InvalidArgumentError("must start with '/'");
  if (path.size() > kMaxPathBytes) {
    return absl::InvalidArgumentError(absl::StrCat("longer than ", kMaxPathBytes, " bytes"));
  }
  if (absl::StartsWith(path, "//")) return absl::InvalidArgumentError("must not start with '//'");
  if (HasControl(path) || absl::StrContains(path, ' ')) {
    return absl::InvalidArgumentError("contains a control character or space");
  }
  for (absl::string_view bad : {"..", "@", "\\", "#", "?", "//"}) {
    if (absl::StrContains(path, bad)) {
      return absl::InvalidArgumentError(absl::StrCat("must not contain '", bad, "'"));
    }
  }
  const std::string lower = absl::AsciiStrToLower(path);
  // Encoded dots, slashes, backslashes, NUL, CR/LF, a second level of encoding (%25) and
  // overlong UTF-8 forms of '.' and '/' (%c0, %c1): an upstream that decodes them could be led
  // outside the prefix.
  for (absl::string_view bad : {"%2e", "%2f", "%5c", "%00", "%0d", "%0a", "%25", "%c0", "%c1"}) {
    if (absl::StrContains(lower, bad)) {
      return absl::InvalidArgumentError(
          absl::StrCat("must not contain the encoded character '", bad, "'"));
    }
  }
  const bool allowed = std::any_of(
      endpoint.allowed_path_prefixes.begin(), endpoint.allowed_path_prefixes.end(),
      [&](const std::string& prefix) {
        if (prefix.empty() || !absl::StartsWith(path, prefix)) return false;
        // Whole segments: "/api/v1" admits "/api/v1/x", not "/api/v1-internal".
        return prefix.back() == '/' || path.size() == prefix.size() || path[prefix.size()] == '/';
      });
  if (!allowed) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' is outside the endpoint's allowed prefixes (",
                     absl::StrJoin(endpoint.allowed_path_prefixes, ", "), ")"));
  }

  // Parse base and full URL with curl itself, so validation and transfer agree.
  CurlUrl base(curl_url());
  CurlUrl full(curl_url());
  if (!base || !full) return absl::ResourceExhaustedError("out of memory");
  if (curl_url_set(base.get(), CURLUPART_URL, endpoint.base_url.c_str(), 0) != CURLUE_OK) {
    return absl::InvalidArgumentError("endpoint base_url does not parse");
  }
  std::string url = absl::StrCat(endpoint.base_url, path);
  if (!query.empty()) absl::StrAppend(&url, "?", query);
  if (curl_url_set(full.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    return absl::InvalidArgumentError("does not form a valid URL with the endpoint's base_url");
  }
  for (CURLUPart part : {CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT, CURLUPART_USER}) {
    if (Part(base.get(), part) != Part(full.get(), part)) {
      return absl::InvalidArgumentError("would leave the endpoint's scheme, host or port");
    }
  }
  std::string base_path = Part(base.get(), CURLUPART_PATH);
  if (base_path == "/") base_path.clear();
  if (Part(full.get(), CURLUPART_PATH) != absl::StrCat(base_path, path)) {
    return absl::InvalidArgumentError("is not kept as given by the URL parser");
  }
  return absl::OkStatus();
}

absl::StatusOr<common::JobSpec> ValidateSyncRequest(const v1::SyncRequest& request,
                                                    const config::Config& config,
                                                    absl::string_view tenant,
                                                    absl::string_view field) {
  const config::ServerConfig& limits = config.server;
  common::JobSpec spec;
  spec.tenant = std::string(tenant);

  if (request.idempotency_key().empty()) return Invalid(field, "idempotency_key", "is required");
  if (request.idempotency_key().size() > limits.max_key_length) {
    return Invalid(field, "idempotency_key",
                   absl::StrCat("longer than ", limits.max_key_length, " bytes"));
  }
  if (HasControl(request.idempotency_key())) {
    return Invalid(field, "idempotency_key", "contains a control character");
  }
  spec.idempotency_key = request.idempotency_key();

  if (request.endpoint().empty()) return Invalid(field, "endpoint", "is required");
  const config::EndpointConfig* endpoint = config.FindEndpoint(request.endpoint());
  if (endpoint == nullptr) {
    return Invalid(field, "endpoint", absl::StrCat("unknown endpoint '", request.endpoint(), "'"));
  }
  spec.endpoint = request.endpoint();

  const std::string method = absl::AsciiStrToUpper(request.method());
  if (method != "GET" && method != "POST" && method != "PUT" && method != "PATCH" &&
      method != "DELETE") {
    return Invalid(field, "method",
                   absl::StrCat("'", request.method(), "' is not GET, POST, PUT, PATCH or DELETE"));
  }
  spec.method = method;

  if (request.query().size() > kMaxQueryBytes) {
    return Invalid(field, "query", absl::StrCat("longer than ", kMaxQueryBytes, " bytes"));
  }
  if (HasControl(request.query()) || absl::StrContains(request.query(), ' ') ||
      absl::StrContains(request.query(), '#')) {
    return Invalid(field, "query", "contains a control character, space or '#'");
  }
  if (absl::Status s = CheckPath(*endpoint, request.path(), request.query()); !s.ok()) {
    return Invalid(field, "path", s.message());
  }
  spec.path = request.path();
  spec.query = request.query();

  if (static_cast<size_t>(request.headers_size()) > limits.max_headers) {
    return Invalid(field, "headers", absl::StrCat("more than ", limits.max_headers, " headers"));
  }
  for (int i = 0; i < request.headers_size(); ++i) {
    const auto& h = request.headers(i);
    const std::string sub = absl::StrCat("headers[", i, "]");
    if (h.name().empty() || !std::all_of(h.name().begin(), h.name().end(), IsTokenChar)) {
      return Invalid(field, sub + ".name", "is not a valid header name");
    }
    if (BadHeaderValue(h.value())) {
      return Invalid(field, sub + ".value", "contains CR, LF or another control character");
    }
    if (h.name().size() + h.value().size() > limits.max_header_bytes) {
      return Invalid(field, sub, absl::StrCat("longer than ", limits.max_header_bytes, " bytes"));
    }
    const std::string lower = absl::AsciiStrToLower(h.name());
    bool reserved = lower == "host" || lower == "content-length" || lower == "connection" ||
                    lower == "transfer-encoding" || lower == "expect" ||
                    lower == "x-correlation-id" ||
                    lower == absl::AsciiStrToLower(config.idempotency_header);
    for (const auto& eh : endpoint->headers) {
      reserved = reserved || lower == absl::AsciiStrToLower(eh.name);
    }
    if (reserved) {
      return Invalid(field, sub + ".name",
                     absl::StrCat("'", h.name(), "' is set by Rebound or by the endpoint"));
    }
    spec.headers.emplace_back(h.name(), h.value());
  }

  if (request.body().size() > limits.max_body_bytes) {
    return Invalid(
        field, "body",
        absl::StrCat(request.body().size(), " bytes is over the limit of ", limits.max_body_bytes));
  }
  spec.body = request.body();

  if (request.ordering_key().size() > limits.max_key_length) {
    return Invalid(field, "ordering_key",
                   absl::StrCat("longer than ", limits.max_key_length, " bytes"));
  }
  spec.ordering_key = request.ordering_key();

  if (request.has_deadline()) {
    const auto& d = request.deadline();
    if (d.seconds() <= 0 || d.seconds() > 253402300799 || d.nanos() < 0 || d.nanos() > 999999999) {
      return Invalid(field, "deadline", "is not a valid timestamp");
    }
    spec.deadline = absl::FromUnixSeconds(d.seconds()) + absl::Nanoseconds(d.nanos());
  }

  if (static_cast<size_t>(request.labels_size()) > limits.max_labels) {
    return Invalid(field, "labels", absl::StrCat("more than ", limits.max_labels, " labels"));
  }
  for (const auto& [key, value] : request.labels()) {
    const bool good_key = !key.empty() && key.size() <= kMaxLabelKeyBytes &&
                          std::all_of(key.begin(), key.end(), [](char c) {
                            return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
                                   c == '-' || c == '.';
                          });
    if (!good_key) {
      return Invalid(field, absl::StrCat("labels[", key, "]"),
                     "keys are 1-63 characters of [A-Za-z0-9_.-]");
    }
    if (value.size() > kMaxLabelValueBytes || HasControl(value)) {
      return Invalid(field, absl::StrCat("labels[", key, "]"),
                     "values are at most 256 bytes without control characters");
    }
    spec.labels[key] = value;
  }

  if (request.correlation_id().size() > kMaxCorrelationIdBytes ||
      BadHeaderValue(request.correlation_id())) {
    return Invalid(field, "correlation_id", "must be at most 128 bytes without control characters");
  }
  spec.correlation_id = request.correlation_id();

  if (!request.policy().empty() && config.FindPolicy(request.policy()) == nullptr) {
    return Invalid(field, "policy", absl::StrCat("unknown policy '", request.policy(), "'"));
  }
  spec.policy = request.policy();
  return spec;
}

}  // namespace rebound::api
