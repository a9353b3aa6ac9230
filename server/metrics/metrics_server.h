// The /metrics HTTP endpoint: prometheus-cpp's Exposer (civetweb) on server.metrics_listen,
// serving a registry plus the process metrics (ProcessCollector) in Prometheus text format.
// prometheus-cpp adds its own exposer_* metrics (scrape count, bytes, latency summary) to each
// scrape; they are counted in WorstCaseSeries (metrics.h).
#ifndef REBOUND_SERVER_METRICS_METRICS_SERVER_H_
#define REBOUND_SERVER_METRICS_METRICS_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "server/metrics/process_collector.h"

namespace rebound::metrics {

// civetweb serves one connection per worker thread, and a worker waits for a request's headers
// up to its request timeout (civetweb's default: 30 s). With prometheus-cpp's default of 2
// threads, two idle or half-open connections held every scrape for 30 s. Enough workers that a
// few stray connections leave one free for the scraper, and a timeout well under Prometheus's
// default scrape timeout (10 s), so even a burst of idle connections delays a scrape by at most
// one timeout instead of failing it.
inline constexpr int kMetricsThreads = 8;
inline constexpr absl::Duration kMetricsRequestTimeout = absl::Seconds(3);

class MetricsServer {
 public:
  // Listens on `listen` ("host:port"; port 0 picks a free one, see port()) and serves
  // `registry` and the process metrics on /metrics. UNAVAILABLE naming server.metrics_listen when
  // the address cannot be bound or parsed.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, std::shared_ptr<prometheus::Registry> registry);

  // Stops listening; a scrape in progress finishes first. May take up to ~2 s: civetweb's
  // listener thread notices the stop at its next poll timeout.
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The bound TCP port (the first one, if civetweb bound several).
  int port() const { return port_; }

 private:
  MetricsServer() = default;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<ProcessCollector> process_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

}  // namespace rebound::metrics

#endif  // REBOUND_SERVER_METRICS_METRICS_SERVER_H_
