// Rebound's configuration: one YAML file, parsed strictly into immutable structs.
//
// Built once at start-up (and again on reload), then shared read-only by every thread.
// Errors name the file, the key path and the problem, e.g.
//   "rebound.yaml: endpoints[2].rate_limit: unknown key 'qsp'".
// The full reference lives in README.md ("Configuration reference").
#ifndef REBOUND_SERVER_CONFIG_CONFIG_H_
#define REBOUND_SERVER_CONFIG_CONFIG_H_

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/policy/policy.h"

namespace rebound::config {

// Endpoints one process can know (configured plus added by reloads): the engine's endpoint table
// and the metric series are reserved for this many up front, and never reallocated. A config
// with more is refused when it is loaded (start-up, --check-config, reload).
inline constexpr size_t kMaxEndpoints = 1024;
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

  // nullptr when absent.
  const EndpointConfig* FindEndpoint(absl::string_view name) const;
  std::shared_ptr<const policy::Policy> FindPolicy(absl::string_view name) const;
};

// Parses YAML text. `source` names the file in error messages.
absl::StatusOr<Config> ParseConfig(absl::string_view yaml, absl::string_view source);
// Reads and parses a file (INVALID_ARGUMENT for content, NOT_FOUND/other for I/O).
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

}  // namespace rebound::config

#endif  // REBOUND_SERVER_CONFIG_CONFIG_H_
