// CurlExecutor: the real http::Executor, on libcurl's multi interface.
//
// One CURLM drives every attempt; its connection cache is shared by all transfers, so
// connections to an upstream are kept alive and reused. Easy handles are pooled and reset
// between attempts. Redirects are never followed (a 3xx is reported as it is), only http and
// https are allowed, response bodies are cut at Request::max_response_bytes (the rest is read and
// dropped), proxy environment variables are ignored (only Request::proxy is used), and curl's
// errors are mapped to policy::TransportError.
//
// Threads: Start(), Poll(), InFlight() and the destructor run on the engine's loop thread;
// Wakeup() may be called from any thread while the executor is alive. Completion callbacks run
// inside Poll() (or the destructor) on the loop thread and may call Start() again.
//
// libcurl must be initialised once per process before Create(): curl_global_init() belongs in
// main (STYLE.md "Avoid"); tests call it from a gtest global environment. It is not called here.
#ifndef REBOUND_SERVER_HTTP_CURL_EXECUTOR_H_
#define REBOUND_SERVER_HTTP_CURL_EXECUTOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/http/executor.h"
#include "server/policy/policy.h"

namespace rebound::http {

// Connection limits. The endpoints' max_in_flight caps are what bounds concurrency: a connection
// limit below their sum would queue attempts inside curl, unseen by the endpoint gate, where a
// paced send leaves late together with later ones (so the upstream sees a burst) and the wait
// counts toward the attempt's timeout. ForEndpoints() sizes the limits from those caps.
struct CurlExecutorOptions {
  // Open connections, over all hosts (CURLMOPT_MAX_TOTAL_CONNECTIONS). Attempts beyond it wait
  // inside curl for a free connection; that wait counts toward Request::timeout. 0: no limit.
  int max_total_connections = 0;
  // Open connections to one host (CURLMOPT_MAX_HOST_CONNECTIONS). 0: no limit.
  int max_host_connections = 0;
  // Idle connections kept for reuse (CURLMOPT_MAXCONNECTS).
  int max_idle_connections = 256;
  // Easy handles kept for reuse after their attempt; more are freed.
  size_t max_pooled_handles = 256;
  // Sent unless the request carries its own User-Agent header.
  std::string user_agent = "rebound/0.1";

  // For endpoints whose max_in_flight caps add up to `total_in_flight`, in a process that may
  // open `open_file_limit` descriptors (RLIMIT_NOFILE): every capped attempt gets a connection
  // and keeps it for reuse (idle pool = the caps' sum, at least 256), no per-host limit, and a
  // total that leaves kReservedDescriptors for the store, gRPC and the metrics server. When the
  // caps need more than that total, the excess waits inside curl (see above): the caller warns.
  static constexpr int64_t kReservedDescriptors = 256;
  static CurlExecutorOptions ForEndpoints(int64_t total_in_flight, int64_t open_file_limit);
};

class CurlExecutor final : public Executor {
 public:
  // InvalidArgument for negative limits; Internal when libcurl cannot create its multi handle.
  static absl::StatusOr<std::unique_ptr<CurlExecutor>> Create(const CurlExecutorOptions& options);

  // Every attempt still in progress completes with TransportError::kOther, "executor shut down".
  ~CurlExecutor() override;
  CurlExecutor(const CurlExecutor&) = delete;
  CurlExecutor& operator=(const CurlExecutor&) = delete;

  // A request that cannot even be started (bad method or header, handle exhaustion) completes
  // with TransportError::kOther from the next Poll(), like any other attempt.
  void Start(Request request, Done done) override;
  // Waits up to `max_wait` (a sub-millisecond wait rounds up to 1ms; zero does not wait), less
  // when curl has a timer due, then runs every finished attempt's callback.
  void Poll(absl::Duration max_wait) override;
  void Wakeup() override;
  size_t InFlight() const override;

 private:
  struct Impl;
  explicit CurlExecutor(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

// How a libcurl result code (a CURLcode) is reported: CURLE_OK -> kNone, connect -> kConnect,
// resolve -> kDns, timeout -> kTimeout, send/receive failures and empty or cut replies ->
// kReset, TLS failures -> kTls, anything else -> kOther.
policy::TransportError TransportErrorFromCurlCode(int curl_code);

}  // namespace rebound::http

#endif  // REBOUND_SERVER_HTTP_CURL_EXECUTOR_H_
