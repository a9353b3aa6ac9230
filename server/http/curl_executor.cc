#include "server/http/curl_executor.h"

#include <curl/curl.h>

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace rebound::http {
namespace {

// Response headers kept per attempt; curl itself bounds their total size.
constexpr size_t kMaxResponseHeaders = 256;

policy::Outcome Failure(std::string detail) {
  policy::Outcome outcome;
  outcome.error = policy::TransportError::kOther;
  outcome.error_detail = std::move(detail);
  return outcome;
}

// Milliseconds for curl's timeouts, where 0 would mean "no timeout": an infinite duration maps
// to 0, anything else to at least 1ms.
long TimeoutOptionMs(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return 0;
  const int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(d, absl::Milliseconds(1)));
  return static_cast<long>(std::clamp<int64_t>(ms, 1, LONG_MAX));
}

// A method token curl can put on the request line as it is.
bool IsValidMethod(absl::string_view method) {
  return !method.empty() && method.size() <= 16 &&
         std::all_of(method.begin(), method.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

bool HasLineBreak(absl::string_view s) {
  return s.find_first_of("\r\n") != absl::string_view::npos;
}

bool IsValidHeader(absl::string_view name, absl::string_view value) {
  return !name.empty() && name.find_first_of(":\r\n \t") == absl::string_view::npos &&
         !HasLineBreak(value);
}

// One attempt's easy handle and everything curl points into while it runs. Pooled: the handle
// is reset and reused by later attempts.
struct Transfer {
  Transfer() = default;
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;
  ~Transfer() {
    curl_slist_free_all(header_list);
    if (easy != nullptr) curl_easy_cleanup(easy);
  }

  CURL* easy = nullptr;
  Request request;  // owns the body curl sends (CURLOPT_POSTFIELDS does not copy)
  Done done;
  curl_slist* header_list = nullptr;
  std::vector<std::pair<std::string, std::string>> response_headers;
  std::string body;
  char error[CURL_ERROR_SIZE] = {};
};

}  // namespace

policy::TransportError TransportErrorFromCurlCode(int curl_code) {
  using policy::TransportError;
  switch (static_cast<CURLcode>(curl_code)) {
    case CURLE_OK:
      return TransportError::kNone;
    case CURLE_COULDNT_CONNECT:
      return TransportError::kConnect;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return TransportError::kDns;
    case CURLE_OPERATION_TIMEDOUT:
      return TransportError::kTimeout;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
      return TransportError::kReset;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED:
      return TransportError::kTls;
    default:
      return TransportError::kOther;
  }
}

struct CurlExecutor::Impl {
  Impl(const CurlExecutorOptions& opts, CURLM* m) : options(opts), multi(m) {}
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    idle.clear();
    curl_multi_cleanup(multi);
  }

  std::unique_ptr<Transfer> Acquire();
  void Release(std::unique_ptr<Transfer> transfer);
  // Sets every option for `t->request`; returns an error text, or empty on success.
  std::string Configure(Transfer& t);
  static policy::Outcome BuildOutcome(Transfer& t, CURLcode result);
  static size_t OnHeader(char* data, size_t size, size_t count, void* transfer);
  static size_t OnBody(char* data, size_t size, size_t count, void* transfer);

  const CurlExecutorOptions options;
  CURLM* const multi;
  std::vector<std::unique_ptr<Transfer>> idle;
  std::unordered_map<Transfer*, std::unique_ptr<Transfer>> active;
  // Attempts that failed before reaching curl; completed by the next Poll().
  std::vector<std::pair<Done, policy::Outcome>> failed;
  bool shutting_down = false;
};

std::unique_ptr<Transfer> CurlExecutor::Impl::Acquire() {
  if (!idle.empty()) {
    std::unique_ptr<Transfer> t = std::move(idle.back());
    idle.pop_back();
    return t;
  }
  auto t = std::make_unique<Transfer>();
  t->easy = curl_easy_init();
  if (t->easy == nullptr) return nullptr;
  return t;
}

void CurlExecutor::Impl::Release(std::unique_ptr<Transfer> t) {
  if (idle.size() >= options.max_pooled_handles) return;  // `t` frees its handle
  t->request = Request{};
  t->done = nullptr;
  t->response_headers.clear();
  t->body.clear();
  idle.push_back(std::move(t));
}

std::string CurlExecutor::Impl::Configure(Transfer& t) {
  const Request& r = t.request;
  if (!IsValidMethod(r.method)) return absl::StrCat("invalid method '", r.method, "'");
  curl_easy_reset(t.easy);
  curl_slist_free_all(t.header_list);
  t.header_list = nullptr;
  t.error[0] = '\0';

  bool has_content_type = false;
  auto add_header = [&t](const std::string& line) {
    curl_slist* next = curl_slist_append(t.header_list, line.c_str());
    if (next == nullptr) return false;
    t.header_list = next;
    return true;
  };
  for (const auto& [name, value] : r.headers) {
    if (!IsValidHeader(name, value)) return absl::StrCat("invalid header '", name, "'");
    has_content_type = has_content_type || absl::EqualsIgnoreCase(name, "content-type");
    // "Name;" is curl's spelling of a header with an empty value.
    if (!add_header(value.empty() ? absl::StrCat(name, ";") : absl::StrCat(name, ": ", value))) {
      return "out of memory";
    }
  }
  // No "Expect: 100-continue" round trip before a body.
  if (!add_header("Expect:")) return "out of memory";

  const bool sends_body =
      !r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH";
  // Without this curl would label every body application/x-www-form-urlencoded.
  if (sends_body && !has_content_type && !add_header("Content-Type:")) return "out of memory";

  CURLcode rc = CURLE_OK;
  auto set = [&rc, &t](CURLoption option, auto value) {
    if (rc == CURLE_OK) rc = curl_easy_setopt(t.easy, option, value);
  };
  set(CURLOPT_URL, r.url.c_str());
  set(CURLOPT_PROTOCOLS_STR, "http,https");
  set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  set(CURLOPT_FOLLOWLOCATION, 0L);
  // "" disables proxies, the environment's included; a configured proxy is used for every host
  // ("" for NOPROXY also overrides no_proxy from the environment).
  set(CURLOPT_PROXY, r.proxy.c_str());
  set(CURLOPT_NOPROXY, "");
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_CONNECTTIMEOUT_MS, TimeoutOptionMs(r.connect_timeout));
  set(CURLOPT_TIMEOUT_MS, TimeoutOptionMs(r.timeout));
  set(CURLOPT_USERAGENT, options.user_agent.c_str());
  set(CURLOPT_HTTPHEADER, t.header_list);
  set(CURLOPT_ERRORBUFFER, t.error);
  set(CURLOPT_PRIVATE, static_cast<void*>(&t));
  set(CURLOPT_HEADERFUNCTION, &Impl::OnHeader);
  set(CURLOPT_HEADERDATA, static_cast<void*>(&t));
  set(CURLOPT_WRITEFUNCTION, &Impl::OnBody);
  set(CURLOPT_WRITEDATA, static_cast<void*>(&t));
  if (sends_body) {
    set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
    set(CURLOPT_POSTFIELDS, r.body.c_str());
    if (r.method != "POST") set(CURLOPT_CUSTOMREQUEST, r.method.c_str());
  } else if (r.method == "HEAD") {
    set(CURLOPT_NOBODY, 1L);
  } else if (r.method != "GET") {
    set(CURLOPT_CUSTOMREQUEST, r.method.c_str());
  }
  if (rc != CURLE_OK) return absl::StrCat("curl_easy_setopt: ", curl_easy_strerror(rc));
  return "";
}

size_t CurlExecutor::Impl::OnHeader(char* data, size_t size, size_t count, void* transfer) {
  auto* t = static_cast<Transfer*>(transfer);
  const size_t n = size * count;
  absl::string_view line(data, n);
  if (absl::StartsWith(line, "HTTP/")) {
    // A status line: a new response begins (after a 1xx); keep only the final one's headers.
    t->response_headers.clear();
    return n;
  }
  const bool continuation = !line.empty() && (line[0] == ' ' || line[0] == '\t');
  line = absl::StripAsciiWhitespace(line);
  if (line.empty()) return n;
  if (continuation) {  // obsolete line folding: part of the previous header's value
    if (!t->response_headers.empty())
      absl::StrAppend(&t->response_headers.back().second, " ", line);
    return n;
  }
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos || t->response_headers.size() >= kMaxResponseHeaders) {
    return n;
  }
  t->response_headers.emplace_back(
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon))),
      std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  return n;
}

size_t CurlExecutor::Impl::OnBody(char* data, size_t size, size_t count, void* transfer) {
  auto* t = static_cast<Transfer*>(transfer);
  const size_t n = size * count;
  const size_t limit = t->request.max_response_bytes;
  if (t->body.size() < limit) t->body.append(data, std::min(n, limit - t->body.size()));
  return n;  // the rest is dropped, not refused: returning less would abort the transfer
}

policy::Outcome CurlExecutor::Impl::BuildOutcome(Transfer& t, CURLcode result) {
  policy::Outcome outcome;
  curl_off_t total_us = 0;
  curl_easy_getinfo(t.easy, CURLINFO_TOTAL_TIME_T, &total_us);
  outcome.latency = absl::Microseconds(total_us);
  if (result == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
    outcome.http_status = static_cast<int>(status);
    outcome.headers = std::move(t.response_headers);
    outcome.body = std::move(t.body);
  } else {
    outcome.error = TransportErrorFromCurlCode(result);
    outcome.error_detail = t.error[0] != '\0' ? t.error : curl_easy_strerror(result);
  }
  return outcome;
}

CurlExecutorOptions CurlExecutorOptions::ForEndpoints(int64_t total_in_flight,
                                                      int64_t open_file_limit) {
  CurlExecutorOptions o;
  const int64_t usable = std::max<int64_t>(64, open_file_limit - kReservedDescriptors);
  o.max_total_connections = static_cast<int>(std::min<int64_t>(usable, INT_MAX));
  o.max_host_connections = 0;
  o.max_idle_connections = static_cast<int>(
      std::min<int64_t>(std::max<int64_t>(total_in_flight, 256), o.max_total_connections));
  return o;
}

absl::StatusOr<std::unique_ptr<CurlExecutor>> CurlExecutor::Create(
    const CurlExecutorOptions& options) {
  if (options.max_total_connections < 0 || options.max_host_connections < 0 ||
      options.max_idle_connections < 0) {
    return absl::InvalidArgumentError("CurlExecutorOptions: connection limits must be >= 0");
  }
  CURLM* multi = curl_multi_init();
  if (multi == nullptr) return absl::InternalError("curl_multi_init failed");
  auto impl = std::make_unique<Impl>(options, multi);
  CURLMcode rc = curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                                   static_cast<long>(options.max_total_connections));
  if (rc == CURLM_OK) {
    rc = curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                           static_cast<long>(options.max_host_connections));
  }
  if (rc == CURLM_OK) {
    rc = curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS,
                           static_cast<long>(options.max_idle_connections));
  }
  if (rc != CURLM_OK) {
    return absl::InternalError(absl::StrCat("curl_multi_setopt: ", curl_multi_strerror(rc)));
  }
  return std::unique_ptr<CurlExecutor>(new CurlExecutor(std::move(impl)));
}

CurlExecutor::CurlExecutor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CurlExecutor::~CurlExecutor() {
  Impl& s = *impl_;
  s.shutting_down = true;
  // Callbacks may Start() again; those attempts fail at once and are completed by the next
  // round of this loop.
  while (!s.active.empty() || !s.failed.empty()) {
    std::vector<std::pair<Done, policy::Outcome>> finished = std::move(s.failed);
    s.failed.clear();
    for (auto& [raw, transfer] : s.active) {
      curl_multi_remove_handle(s.multi, transfer->easy);
      finished.emplace_back(std::move(transfer->done), Failure("executor shut down"));
    }
    s.active.clear();
    for (auto& [done, outcome] : finished) std::move(done)(std::move(outcome));
  }
}

void CurlExecutor::Start(Request request, Done done) {
  Impl& s = *impl_;
  if (s.shutting_down) {
    s.failed.emplace_back(std::move(done), Failure("executor shut down"));
    return;
  }
  std::unique_ptr<Transfer> t = s.Acquire();
  if (t == nullptr) {
    s.failed.emplace_back(std::move(done), Failure("curl_easy_init failed"));
    return;
  }
  t->request = std::move(request);
  t->done = std::move(done);
  std::string error = s.Configure(*t);
  if (error.empty()) {
    const CURLMcode rc = curl_multi_add_handle(s.multi, t->easy);
    if (rc == CURLM_OK) {
      Transfer* key = t.get();
      s.active.emplace(key, std::move(t));
      return;
    }
    error = absl::StrCat("curl_multi_add_handle: ", curl_multi_strerror(rc));
  }
  s.failed.emplace_back(std::move(t->done), Failure(std::move(error)));
  s.Release(std::move(t));
}

void CurlExecutor::Poll(absl::Duration max_wait) {
  Impl& s = *impl_;
  int64_t wait_ms = 0;
  if (s.failed.empty() && max_wait > absl::ZeroDuration()) {
    // Round up: a sub-millisecond wait must neither become 0 (a caller looping on it would
    // spin) nor grow much beyond what was asked.
    wait_ms = absl::ToInt64Milliseconds(absl::Ceil(max_wait, absl::Milliseconds(1)));
    wait_ms = std::clamp<int64_t>(wait_ms, 1, INT_MAX);
    long curl_ms = -1;
    if (curl_multi_timeout(s.multi, &curl_ms) == CURLM_OK && curl_ms >= 0) {
      wait_ms = std::min<int64_t>(wait_ms, curl_ms);
    }
  }
  // Errors here leave nothing to do but go on: transfers report their own failures.
  if (wait_ms > 0) curl_multi_poll(s.multi, nullptr, 0, static_cast<int>(wait_ms), nullptr);
  int running = 0;
  curl_multi_perform(s.multi, &running);

  // Collect every finished attempt before running any callback: callbacks may Start() new
  // attempts, which must not disturb this loop.
  std::vector<std::pair<Done, policy::Outcome>> finished = std::move(s.failed);
  s.failed.clear();
  int queued = 0;
  while (CURLMsg* msg = curl_multi_info_read(s.multi, &queued)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* easy = msg->easy_handle;
    const CURLcode result = msg->data.result;  // `msg` dies with the removal below
    void* raw = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &raw);
    curl_multi_remove_handle(s.multi, easy);
    auto node = s.active.extract(static_cast<Transfer*>(raw));
    assert(!node.empty());
    if (node.empty()) continue;
    std::unique_ptr<Transfer> t = std::move(node.mapped());
    policy::Outcome outcome = Impl::BuildOutcome(*t, result);
    finished.emplace_back(std::move(t->done), std::move(outcome));
    s.Release(std::move(t));
  }
  for (auto& [done, outcome] : finished) std::move(done)(std::move(outcome));
}

void CurlExecutor::Wakeup() { curl_multi_wakeup(impl_->multi); }

size_t CurlExecutor::InFlight() const { return impl_->active.size() + impl_->failed.size(); }

}  // namespace rebound::http
