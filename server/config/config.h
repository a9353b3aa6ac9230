// Rebound's configuration: one YAML file, parsed strictly into immutable structs.
//
// Built once at start-up (and again on reload), then shared read-only by every thread.
// Errors name the file, the key path and the problem, e.g.
//   "rebound.yaml: endpoints[2].rate_limit: unknown key 'qsp'".
// The full reference lives in README.md ("Configuration reference").
#ifndef REBOUND_SERVER_CONFIG_CONFIG_H_
#define REBOUND_SERVER_CONFIG_CONFIG_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/common/priority.h"
#include "server/policy/policy.h"
#include "server/policy/throttle_headers.h"

namespace rebound::config {

// Endpoints one process can know (configured plus added by reloads): the engine's endpoint table
// and the metric series are reserved for this many up front, and never reallocated. A config
// with more is refused when it is loaded (start-up, --check-config, reload).
inline constexpr size_t kMaxEndpoints = 1024;
// Budgets one process can know (configured plus added by reloads), as endpoints.
inline constexpr size_t kMaxBudgets = 1024;
// Bytes of an endpoint or policy name (they become metric label values and appear in messages).
inline constexpr size_t kMaxNameBytes = 128;

struct ServerConfig {
  std::string grpc_listen = "127.0.0.1:50051";
  std::string metrics_listen = "127.0.0.1:9464";
  std::string default_tenant = "default";  // until authentication arrives
  size_t max_batch_size = 500;             // items per SubmitSyncBatch
  size_t max_body_bytes = 1 << 20;         // request body per job
  size_t max_headers = 32;                 // headers per job
  size_t max_header_bytes = 8192;          // one header's name + value
  size_t max_key_length = 256;             // idempotency key, ordering key
  size_t max_labels = 16;
  size_t max_active_jobs = 2'000'000;  // non-terminal jobs; beyond: RESOURCE_EXHAUSTED
  // WatchSync streams open at once (~18 KB each), in all and per tenant; beyond:
  // RESOURCE_EXHAUSTED.
  size_t max_watchers = 4096;
  size_t max_watchers_per_tenant = 1024;
  // Jobs of one SubmitSyncStream waiting for their commit or for their answer to be sent; at
  // the window the server stops reading that stream (HTTP/2 flow control pushes back).
  size_t stream_window = 512;
  absl::Duration shutdown_grace = absl::Seconds(10);
};

struct StoreConfig {
  std::string path = "rebound.db";
  // "full" (default: an acknowledged submit survives power loss) or "normal" (faster; the last
  // commits can be lost on power loss, not on a process crash).
  std::string synchronous = "full";
  size_t max_batch = 1024;  // writes per group commit
  // PRAGMA quick_check at start-up: refuse a damaged file instead of serving from it. Reads
  // the whole file (docs/operations.md: seconds per million jobs).
  bool quick_check = true;
  // Cap on the database file; 0: none. Writes past it are refused as on a full disk
  // (submits get UNAVAILABLE), leaving room on a shared volume.
  size_t max_file_bytes = 0;
};

struct LogConfig {
  std::string level = "info";  // debug | info | warn | error
  // Per event type (submitted, attempt_finished, ...): lines beyond this in a second are
  // dropped and counted ("suppressed" on the next line), so a retry storm cannot flood the
  // log pipeline.
  size_t max_lines_per_second = 1000;
};

struct Header {
  std::string name;
  std::string value;    // resolved at load time (from value, value_from_env or value_from_file)
  bool secret = false;  // redacted in logs and API answers
};

// Endpoint protection (DESIGN.md "Endpoint protection"; README "Configuration reference"):
// decided by the endpoint's gate before an attempt is counted, so no wait spends an attempt.

// endpoints[].circuit_breaker: closed -> open when, over the last `window`, at least
// `min_requests` attempts ended and failures / (failures + successes) >= failure_ratio.
// Failures: transport errors, timeouts, 5xx. Throttling outcomes (429, rate_limited rules)
// are counted apart and, unless count_throttles, are neither. Open for open_duration, doubled
// for each consecutive opening (from half-open, or within `window` of closing) up to
// max_open_duration; then half-open: half_open_probes attempts are let through, and the
// breaker closes when all of them succeed, re-opens at the first failure.
struct CircuitBreakerConfig {
  bool enabled = true;
  double failure_ratio = 0.5;  // (0, 1]
  int min_requests = 20;       // >= 1
  absl::Duration window = absl::Seconds(10);
  absl::Duration open_duration = absl::Seconds(2);
  absl::Duration max_open_duration = absl::Seconds(30);  // >= open_duration
  int half_open_probes = 3;                              // >= 1
  bool count_throttles = false;
};

// endpoints[].retry_budget (as Envoy's retry budget): retries in flight at most
// max(min_retries, ratio * attempts in flight). A retry over budget waits (RETRY_BUDGET);
// first attempts are not held by it. Never dropped.
struct RetryBudgetConfig {
  bool enabled = true;
  double ratio = 0.2;  // [0, 1]
  int min_retries =
      10;  // >= 0 (Envoy: 3; higher here: a restart makes every recovered job a retry)
};

// endpoints[].rate_limit: a token bucket beside max_in_flight; `rate` attempts per second
// refill it, up to `burst`. rate 0: no bucket.
struct RateLimitConfig {
  double rate = 0;  // >= 0
  int burst = 0;    // >= 1 when rate > 0; 0 in YAML means max(1, ceil(rate))
};

// endpoints[].slow_start: after a pause ends (rate limited or operator) or the breaker
// closes, the allowed in-flight grows linearly from 1 to max_in_flight over `window`
// instead of releasing every ready job at once. window 0: off.
struct SlowStartConfig {
  absl::Duration window = absl::Seconds(5);
};

// endpoints[].pacing: slowing dispatch down from the quota the answers announce, before the LMS
// throttles (engine/quota_pacer.h). It acts only on answers that carry a remaining quota.
struct PacingConfig {
  bool enabled = true;
  double low_water = 0;           // quota units; 0: low_water_ratio of the limit
  double low_water_ratio = 0.25;  // of the limit header, or of the largest remaining seen
  int min_in_flight = 1;
  // Attempts allowed in flight before the first answer has announced a quota; 0: no limit.
  // Canvas's preset sets 1: a first burst of max_in_flight parallel requests would spend the
  // bucket on up-front costs before any answer tells how full it is.
  int start_in_flight = 0;
};

// budgets[].quota: attempts allowed per period (e.g. Blackboard's 10,000 REST calls a day).
// Periods are fixed windows: they begin at whole multiples of `period` since the unix epoch,
// shifted by `offset` (a 24h period begins at UTC midnight + offset). The count is persisted, so
// a restart within a period does not grant its quota again.
struct QuotaConfig {
  int64_t limit = 0;  // attempts per period; 0: no quota
  absl::Duration period = absl::Hours(24);
  absl::Duration offset = absl::ZeroDuration();  // [0, period)
  // reserve[p]: the share of the limit that only jobs of priority p or higher may use. A job of
  // priority p may start while used < limit x (1 - the reserves of the priorities above p);
  // otherwise it waits QUOTA_RESERVED. Index: common::Priority; LOW's is always 0.
  std::array<double, common::kPriorityCount> reserve = {};
};

// budgets[]: a limit shared by the endpoints that name it (endpoints[].budgets), and split by a
// job label (or the tenant) when one credential, application or district has its own: each
// value of `split_by` then has a budget of its own with these settings. Each is a gate beside
// the endpoint's own (engine/budget.h): a job waits RATE_LIMITED (rate, max_in_flight) or
// QUOTA_EXHAUSTED / QUOTA_RESERVED (quota) without spending an attempt.
struct BudgetConfig {
  std::string name;
  RateLimitConfig rate_limit;  // rate, burst; rate 0: no bucket
  int max_in_flight = 0;       // attempts in flight across its endpoints; 0: no cap
  QuotaConfig quota;
  // A label key (the job's value of it, "" when it has none), or "tenant"; empty: not split.
  std::string split_by;
};

struct EndpointConfig {
  std::string name;
  std::string base_url;  // scheme://host[:port][/base-path], http or https only
  std::vector<std::string> allowed_path_prefixes;  // a job's path must start with one
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration timeout = absl::Seconds(30);  // whole attempt
  size_t max_response_bytes = 64 * 1024;       // body bytes kept per attempt
  int max_in_flight = 64;                      // concurrent attempts against this endpoint
  std::string policy = "default";              // default policy name
  std::vector<Header> headers;                 // sent on every attempt
  // http(s)://host[:port] of a forward proxy for this endpoint's attempts; empty: direct.
  // Proxy environment variables (http_proxy, HTTPS_PROXY, ALL_PROXY) are always ignored.
  std::string proxy;
  CircuitBreakerConfig circuit_breaker;
  RetryBudgetConfig retry_budget;
  RateLimitConfig rate_limit;
  SlowStartConfig slow_start;
  // Which rate-limit headers its answers carry and what they mean (endpoints[].throttle_headers;
  // policy/throttle_headers.h has the defaults).
  policy::ThrottleHeaders throttle_headers;
  PacingConfig pacing;
  // endpoints[].preset: an LMS's documented answers (policy/presets.h): its rules and its
  // throttle_headers (unless the endpoint gives its own). Empty: none.
  std::string preset;
  // Classification rules tried before the policy's: the endpoint's own `rules`, then its
  // preset's.
  std::vector<policy::Rule> rules;
  // Names of budgets (Config::budgets) every attempt of this endpoint also needs.
  std::vector<std::string> budgets;
  // Within a priority, ready jobs take turns by tenant and, when set, by this label's value
  // (e.g. "district"), so one backfill cannot hold back another's few jobs (engine/fair_queue.h).
  std::string fairness_label;
};

struct Config {
  std::string source;  // file name, for messages
  ServerConfig server;
  StoreConfig store;
  LogConfig log;
  absl::Duration idempotency_retention = absl::Hours(24);
  std::string idempotency_header = "Idempotency-Key";
  std::vector<EndpointConfig> endpoints;
  std::map<std::string, std::shared_ptr<const policy::Policy>> policies;
  std::vector<BudgetConfig> budgets;

  // nullptr when absent.
  const EndpointConfig* FindEndpoint(absl::string_view name) const;
  const BudgetConfig* FindBudget(absl::string_view name) const;
  std::shared_ptr<const policy::Policy> FindPolicy(absl::string_view name) const;
};

// Parses YAML text. `source` names the file in error messages.
absl::StatusOr<Config> ParseConfig(absl::string_view yaml, absl::string_view source);
// Reads and parses a file (INVALID_ARGUMENT for content, NOT_FOUND/other for I/O).
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

}  // namespace rebound::config

#endif  // REBOUND_SERVER_CONFIG_CONFIG_H_
