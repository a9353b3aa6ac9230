#include "server/api/validation.h"

#include <curl/curl.h>

#include <algorithm>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "server/common/status_macros.h"

namespace rebound::api {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view sub, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ".", sub, ": ", problem));
}

// "is 3145728 bytes; at most 256": the one wording of every size refusal.
std::string TooLong(size_t size, size_t max) {
  return absl::StrCat("is ", size, " bytes; at most ", max);
}

// TooLong when `value` is; checked before anything else looks at the value.
absl::Status CheckLength(absl::string_view field, absl::string_view sub, absl::string_view value,
                         size_t max) {
  if (value.size() <= max) return absl::OkStatus();
  return Invalid(field, sub, TooLong(value.size(), max));
}

// Header names a job may not send (README "Security"). Chosen from what upstream frameworks and
// proxies honour: method overrides (Rails/Rack, Express method-override, ASP.NET Core, Symfony,
// OData), URL rewrites (IIS URL Rewrite and the frameworks that trust it: X-Original-URL,
// X-Rewrite-URL), host, scheme, port, prefix and client address as set by a reverse proxy
// (Forwarded, X-Forwarded-*, X-Real-IP and friends: Spring's ForwardedHeaderFilter, Symfony's
// trusted headers, Rack, Moodle's and Canvas's proxy settings), the CGI `Proxy` header
// (httpoxy: PHP and other CGI stacks turn it into HTTP_PROXY), and headers that belong to the
// connection rather than the request (TE, Upgrade, HTTP2-Settings: request smuggling and h2c).
constexpr absl::string_view kDeniedHeaders[] = {
    // method override
    "x-http-method-override", "x-http-method", "x-method-override",
    // path / URL rewrite
    "x-original-url", "x-rewrite-url", "x-original-uri", "x-override-url",
    // host, scheme and client address claimed by a proxy
    "forwarded", "x-host", "x-http-host-override", "x-original-host", "x-real-ip", "x-client-ip",
    "true-client-ip", "x-cluster-client-ip", "x-originating-ip", "cf-connecting-ip",
    "fastly-client-ip", "front-end-https", "x-url-scheme",
    // httpoxy
    "proxy",
    // the connection's own headers
    "te", "trailer", "upgrade", "keep-alive", "proxy-connection", "proxy-authorization",
    "http2-settings"};
// Whole families: every X-Forwarded-* (Host, Proto, Port, Prefix, For, Server, Ssl, Uri, ...)
// and Envoy's internal headers (x-envoy-original-path, retry and routing controls).
constexpr absl::string_view kDeniedHeaderPrefixes[] = {"x-forwarded-", "x-envoy-"};

// One decoding of `s` must give plain bytes: a '%' is always followed by two hex digits
// (%u002e is IIS's own encoding), and the decoded bytes hold no control character, no further
// percent-encoding (double encoding: %252e) and no overlong UTF-8 (%c0%ae is '.').
absl::Status CheckPercentEncoding(absl::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') continue;
    if (i + 2 >= s.size() || !absl::ascii_isxdigit(static_cast<unsigned char>(s[i + 1])) ||
        !absl::ascii_isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      return absl::InvalidArgumentError(
          "has a '%' not followed by two hex digits (malformed or %u encoding)");
    }
  }
  int length = 0;
  // Callers bound `s` to a few KiB, so the int length cannot overflow.
  char* raw = curl_easy_unescape(nullptr, s.data(), static_cast<int>(s.size()), &length);
  if (raw == nullptr) return absl::ResourceExhaustedError("out of memory");
  const std::string decoded(raw, static_cast<size_t>(length));
  curl_free(raw);
  if (HasControlCharacter(decoded)) {
    return absl::InvalidArgumentError("percent-encodes a control character (such as %0d or %0a)");
  }
  for (size_t i = 0; i < decoded.size(); ++i) {
    const auto u = static_cast<unsigned char>(decoded[i]);
    const auto next = i + 1 < decoded.size() ? static_cast<unsigned char>(decoded[i + 1]) : 0x80;
    if (decoded[i] == '%' && i + 2 < decoded.size() &&
        absl::ascii_isxdigit(static_cast<unsigned char>(decoded[i + 1])) &&
        absl::ascii_isxdigit(static_cast<unsigned char>(decoded[i + 2]))) {
      return absl::InvalidArgumentError("is percent-encoded twice (such as %252e)");
    }
    // Lead bytes of UTF-8 forms longer than needed: C0/C1 xx, E0 80-9F xx, F0 80-8F xx xx.
    if (u == 0xc0 || u == 0xc1 || (u == 0xe0 && next < 0xa0) || (u == 0xf0 && next < 0x90)) {
      return absl::InvalidArgumentError(
          "percent-encodes an overlong UTF-8 sequence (such as %c0%ae)");
    }
  }
  return absl::OkStatus();
}

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::StrContains("!#$%&'*+-.^_`|~", c);
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

std::string Echo(absl::string_view value) {
  std::string out = absl::CHexEscape(value.substr(0, kMaxEchoBytes));
  if (value.size() > kMaxEchoBytes) absl::StrAppend(&out, "... (", value.size(), " bytes)");
  return out;
}

bool HasControlCharacter(absl::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u < 0x20 || u == 0x7f) return true;
    // U+0080..U+009F are C2 80..C2 9F in UTF-8.
    if (u == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9f &&
        static_cast<unsigned char>(s[i + 1]) >= 0x80) {
      return true;
    }
  }
  return false;
}

bool IsDeniedHeader(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  for (absl::string_view denied : kDeniedHeaders) {
    if (lower == denied) return true;
  }
  for (absl::string_view prefix : kDeniedHeaderPrefixes) {
    if (absl::StartsWith(lower, prefix)) return true;
  }
  return false;
}

absl::Status CheckQuery(absl::string_view query) {
  if (query.size() > kMaxQueryBytes) {
    return absl::InvalidArgumentError(TooLong(query.size(), kMaxQueryBytes));
  }
  if (HasControlCharacter(query) || absl::StrContains(query, ' ') ||
      absl::StrContains(query, '#')) {
    return absl::InvalidArgumentError("contains a control character, space or '#'");
  }
  return CheckPercentEncoding(query);
}

absl::Status CheckPath(const config::EndpointConfig& endpoint, absl::string_view path,
                       absl::string_view query) {
  if (path.empty() || path[0] != '/') return absl::InvalidArgumentError("must start with '/'");
  if (path.size() > kMaxPathBytes) {
    return absl::InvalidArgumentError(TooLong(path.size(), kMaxPathBytes));
  }
  if (absl::StartsWith(path, "//")) return absl::InvalidArgumentError("must not start with '//'");
  if (HasControlCharacter(path) || absl::StrContains(path, ' ')) {
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
  if (absl::Status s = CheckPercentEncoding(path); !s.ok()) return s;
  const bool allowed = std::any_of(
      endpoint.allowed_path_prefixes.begin(), endpoint.allowed_path_prefixes.end(),
      [&](const std::string& prefix) {
        if (prefix.empty() || !absl::StartsWith(path, prefix)) return false;
        // Whole segments: "/api/v1" admits "/api/v1/x", not "/api/v1-internal".
        return prefix.back() == '/' || path.size() == prefix.size() || path[prefix.size()] == '/';
      });
  if (!allowed) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", Echo(path), "' is outside the endpoint's allowed prefixes (",
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

  // Sizes first, so that no check after these (and no message) handles an unbounded value.
  struct Bound {
    absl::string_view sub;
    absl::string_view value;
    size_t max;
  };
  for (const Bound& b : {
           Bound{"idempotency_key", request.idempotency_key(), limits.max_key_length},
           Bound{"endpoint", request.endpoint(), config::kMaxNameBytes},
           Bound{"method", request.method(), kMaxMethodBytes},
           Bound{"path", request.path(), kMaxPathBytes},
           Bound{"query", request.query(), kMaxQueryBytes},
           Bound{"body", request.body(), limits.max_body_bytes},
           Bound{"ordering_key", request.ordering_key(), limits.max_key_length},
           Bound{"correlation_id", request.correlation_id(), kMaxCorrelationIdBytes},
           Bound{"policy", request.policy(), config::kMaxNameBytes},
       }) {
    REBOUND_RETURN_IF_ERROR(CheckLength(field, b.sub, b.value, b.max));
  }

  if (request.idempotency_key().empty()) return Invalid(field, "idempotency_key", "is required");
  if (HasControlCharacter(request.idempotency_key())) {
    return Invalid(field, "idempotency_key", "contains a control character");
  }
  spec.idempotency_key = request.idempotency_key();

  if (request.endpoint().empty()) return Invalid(field, "endpoint", "is required");
  const config::EndpointConfig* endpoint = config.FindEndpoint(request.endpoint());
  if (endpoint == nullptr) {
    return Invalid(field, "endpoint",
                   absl::StrCat("unknown endpoint '", Echo(request.endpoint()), "'"));
  }
  spec.endpoint = request.endpoint();

  const std::string method = absl::AsciiStrToUpper(request.method());
  if (method != "GET" && method != "POST" && method != "PUT" && method != "PATCH" &&
      method != "DELETE") {
    return Invalid(
        field, "method",
        absl::StrCat("'", Echo(request.method()), "' is not GET, POST, PUT, PATCH or DELETE"));
  }
  spec.method = method;

  if (absl::Status s = CheckQuery(request.query()); !s.ok()) {
    return Invalid(field, "query", s.message());
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
    if (h.name().size() + h.value().size() > limits.max_header_bytes) {
      return Invalid(field, sub,
                     TooLong(h.name().size() + h.value().size(), limits.max_header_bytes));
    }
    if (h.name().empty() || !std::all_of(h.name().begin(), h.name().end(), IsTokenChar)) {
      return Invalid(field, sub + ".name", "is not a valid header name");
    }
    if (BadHeaderValue(h.value())) {
      return Invalid(field, sub + ".value", "contains CR, LF or another control character");
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
                     absl::StrCat("'", Echo(h.name()), "' is set by Rebound or by the endpoint"));
    }
    if (IsDeniedHeader(h.name())) {
      return Invalid(field, sub + ".name",
                     absl::StrCat("'", Echo(h.name()),
                                  "' can override the upstream's routing, method, host or client "
                                  "address, or belongs to the connection; it is never forwarded"));
    }
    spec.headers.emplace_back(h.name(), h.value());
  }

  spec.body = request.body();

  if (HasControlCharacter(request.ordering_key())) {
    return Invalid(field, "ordering_key", "contains a control character");
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
      return Invalid(field, absl::StrCat("labels[", Echo(key), "]"),
                     "keys are 1-63 characters of [A-Za-z0-9_.-]");
    }
    if (value.size() > kMaxLabelValueBytes || HasControlCharacter(value)) {
      return Invalid(field, absl::StrCat("labels[", key, "]"),
                     "values are at most 256 bytes without control characters");
    }
    spec.labels[key] = value;
  }

  if (HasControlCharacter(request.correlation_id())) {
    return Invalid(field, "correlation_id", "contains a control character");
  }
  spec.correlation_id = request.correlation_id();

  if (!request.policy().empty() && config.FindPolicy(request.policy()) == nullptr) {
    return Invalid(field, "policy", absl::StrCat("unknown policy '", Echo(request.policy()), "'"));
  }
  spec.policy = request.policy();

  const int priority = request.priority();
  if (priority < 0 || priority >= common::kPriorityCount) {
    return Invalid(field, "priority",
                   absl::StrCat(priority, " is not a priority (LOW, NORMAL, HIGH)"));
  }
  spec.priority = static_cast<common::Priority>(priority);
  return spec;
}

absl::StatusOr<store::ListFilter> ValidateListRequest(const v1::ListSyncsRequest& request,
                                                      const config::Config& config) {
  const auto invalid = [](absl::string_view field, absl::string_view problem) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
  };
  store::ListFilter filter;
  for (int s : request.states()) {
    if (s < static_cast<int>(common::JobState::kQueued) ||
        s > static_cast<int>(common::JobState::kCancelled)) {
      return invalid("states", absl::StrCat(s, " is not a job state"));
    }
    filter.states.push_back(static_cast<common::JobState>(s));
  }
  struct Bound {
    absl::string_view field;
    absl::string_view value;
    size_t max;
  };
  for (const Bound& b : {
           Bound{"endpoint", request.endpoint(), config::kMaxNameBytes},
           Bound{"ordering_key", request.ordering_key(), config.server.max_key_length},
           Bound{"label", request.label(), kMaxLabelKeyBytes + 1 + kMaxLabelValueBytes},
           Bound{"page_token", request.page_token(), kMaxPageTokenBytes},
       }) {
    if (b.value.size() > b.max) {
      return invalid(b.field, TooLong(b.value.size(), b.max));
    }
  }
  filter.endpoint = request.endpoint();
  filter.ordering_key = request.ordering_key();
  if (!request.label().empty()) {
    const auto eq = request.label().find('=');
    if (eq == std::string::npos || eq == 0) return invalid("label", "expected key=value");
    filter.label_key = request.label().substr(0, eq);
    filter.label_value = request.label().substr(eq + 1);
  }
  if (request.page_size() < 0) return invalid("page_size", "must not be negative");
  if (absl::Status s = ValidateWaitReason(request).status(); !s.ok()) return s;
  return filter;
}

absl::StatusOr<common::WaitReason> ValidateWaitReason(const v1::ListSyncsRequest& request) {
  const int r = request.wait_reason();
  if (r < 0 || r >= common::kWaitReasonCount) {
    return absl::InvalidArgumentError(absl::StrCat("wait_reason: ", r, " is not a wait reason"));
  }
  return static_cast<common::WaitReason>(r);
}

absl::Status ValidateEndpointName(absl::string_view name, const config::Config& config,
                                  bool empty_ok) {
  if (name.size() > config::kMaxNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("name: ", TooLong(name.size(), config::kMaxNameBytes)));
  }
  if (name.empty()) {
    return empty_ok ? absl::OkStatus() : absl::InvalidArgumentError("name: is required");
  }
  if (config.FindEndpoint(name) == nullptr) {
    return absl::NotFoundError(absl::StrCat("name: unknown endpoint '", Echo(name), "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<PauseRequest> ValidatePauseRequest(const v1::PauseEndpointRequest& request,
                                                  const config::Config& config, absl::Time now) {
  const auto invalid = [](absl::string_view field, absl::string_view problem) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
  };
  if (request.reason().size() > kMaxPauseReasonBytes) {
    return invalid("reason", TooLong(request.reason().size(), kMaxPauseReasonBytes));
  }
  if (absl::Status s = ValidateEndpointName(request.name(), config, /*empty_ok=*/false); !s.ok()) {
    return s;
  }
  if (HasControlCharacter(request.reason())) {
    return invalid("reason", "has a control character");
  }
  PauseRequest out;
  out.name = request.name();
  out.reason = request.reason();
  if (request.has_until() && request.has_duration()) {
    return invalid("until", "give until or duration, not both");
  }
  if (request.has_until()) {
    const auto& u = request.until();
    if (u.seconds() <= 0 || u.seconds() > 253402300799 || u.nanos() < 0 || u.nanos() > 999999999) {
      return invalid("until", "is not a valid timestamp");
    }
    out.until = absl::FromUnixSeconds(u.seconds()) + absl::Nanoseconds(u.nanos());
    if (out.until <= now) {
      return invalid("until", absl::StrCat(absl::FormatTime(absl::RFC3339_full, out.until,
                                                            absl::UTCTimeZone()),
                                           " is not in the future"));
    }
    if (out.until - now > kMaxPause) {
      return invalid("until", absl::StrCat("is more than ", absl::FormatDuration(kMaxPause),
                                           " ahead; omit it to pause until resumed"));
    }
  } else if (request.has_duration()) {
    const auto& d = request.duration();
    // Duration's own range: |seconds| <= 315576000000, nanos of the same sign.
    if (d.seconds() < 0 || d.nanos() < 0 || d.nanos() > 999999999 ||
        (d.seconds() == 0 && d.nanos() == 0)) {
      return invalid("duration", "must be positive");
    }
    const absl::Duration length = absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
    if (length > kMaxPause) {
      return invalid("duration", absl::StrCat("is longer than ", absl::FormatDuration(kMaxPause),
                                              "; omit it to pause until resumed"));
    }
    out.until = now + length;
  }
  return out;
}

}  // namespace rebound::api
