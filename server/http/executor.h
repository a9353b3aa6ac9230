// http::Executor: performs outbound attempts. Driven by the engine's single loop.
//
// Start() and Poll() are called only from the loop thread; Wakeup() from any thread. Completion
// callbacks run inside Poll(), on the loop thread. The real implementation (CurlExecutor) uses
// libcurl's multi interface: connection reuse, no redirects, bounded bodies, mapped transport
// errors. Tests use a small fake.
#ifndef REBOUND_SERVER_HTTP_EXECUTOR_H_
#define REBOUND_SERVER_HTTP_EXECUTOR_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "server/policy/policy.h"

namespace rebound::http {

struct Request {
  std::string method;  // GET, POST, PUT, PATCH, DELETE
  std::string url;     // already validated and assembled by the caller
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration timeout = absl::Seconds(30);
  size_t max_response_bytes = 64 * 1024;  // body bytes kept; the rest is read and dropped
  // Proxy URL for this attempt; empty: connect directly. The environment's http_proxy,
  // HTTPS_PROXY, ALL_PROXY and no_proxy are never consulted, so a variable set for another
  // program cannot reroute upstream traffic (credentials included) through a stranger.
  std::string proxy;
};

using Done = absl::AnyInvocable<void(policy::Outcome) &&>;

class Executor {
 public:
  virtual ~Executor() = default;
  // Begins an attempt; `done` is called exactly once, from a later Poll(). An attempt still in
  // progress when the executor is destroyed completes with TransportError::kOther.
  virtual void Start(Request request, Done done) = 0;
  // Waits up to `max_wait` for network activity or Wakeup(), then runs completions.
  virtual void Poll(absl::Duration max_wait) = 0;
  // Interrupts a Poll() in progress (thread-safe).
  virtual void Wakeup() = 0;
  // Attempts in progress.
  virtual size_t InFlight() const = 0;
};

}  // namespace rebound::http

#endif  // REBOUND_SERVER_HTTP_EXECUTOR_H_
