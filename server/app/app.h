// App: the one place that knows every concrete type. Builds the store, the HTTP executor, the
// engine and the gRPC server from a config, runs them, and stops them in order.
//
// Create() returns an error (not a crash) for anything the environment can cause: an unopenable
// store, an unbindable port. Start/Shutdown/Wait are called from one controlling thread (main).
#ifndef REBOUND_SERVER_APP_APP_H_
#define REBOUND_SERVER_APP_APP_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "prometheus/registry.h"
#include "server/api/service.h"
#include "server/app/telemetry.h"
#include "server/common/clock.h"
#include "server/config/config.h"
#include "server/engine/engine.h"
#include "server/http/curl_executor.h"
#include "server/log/event_log.h"
#include "server/metrics/metrics.h"
#include "server/metrics/metrics_server.h"
#include "server/store/sqlite_store.h"

namespace rebound::app {

class App {
 public:
  // `log_sink` receives the JSON log lines (stdout when empty).
  static absl::StatusOr<std::unique_ptr<App>> Create(std::shared_ptr<const config::Config> config,
                                                     const common::Clock& clock,
                                                     log::EventLog::Sink log_sink = {});
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  // Recovers jobs, starts the engine loop and the gRPC server. grpc.health.v1 then answers
  // SERVING for the empty service name and for "rebound.v1.Rebound", NOT_FOUND for others.
  absl::Status Start();
  // Graceful stop: health NOT_SERVING (both names) and new submits UNAVAILABLE at once; in-flight
  // attempts get up to server.shutdown_grace to finish; every outcome is persisted; then the gRPC
  // server and the store close. Idempotent.
  void Shutdown();
  // Applies a new config without a restart: endpoints added or changed, policies, limits and
  // the idempotency header. Removing or renaming an endpoint, listen addresses, store, log and
  // default tenant need a restart: FAILED_PRECONDITION naming the key, and the running config
  // stays in force.
  absl::Status Reload(std::shared_ptr<const config::Config> next);
  int grpc_port() const { return grpc_port_; }
  // Before Shutdown() only.
  int metrics_port() const { return metrics_server_ != nullptr ? metrics_server_->port() : 0; }
  engine::Engine& engine() { return *engine_; }
  log::EventLog& log() { return *log_; }

 private:
  App(std::shared_ptr<const config::Config> config, const common::Clock& clock);
  void MaintenanceLoop();
  // One pass: ended jobs past their retention, then free pages, then the store gauges.
  void PurgeEndedJobs();

  std::shared_ptr<const config::Config> CurrentConfig() const {
    absl::MutexLock lock(&config_mu_);
    return config_;
  }

  mutable absl::Mutex config_mu_;
  // The one in force. Written by Reload (main thread); other threads use CurrentConfig().
  std::shared_ptr<const config::Config> config_;
  // Every config ever in force: components that were built on one may keep references into it.
  std::vector<std::shared_ptr<const config::Config>> configs_;
  const common::Clock& clock_;
  // Declared (so built) before the engine and destroyed after it: the engine reports to them.
  std::unique_ptr<log::EventLog> log_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<metrics::Metrics> metrics_;
  std::unique_ptr<Telemetry> telemetry_;
  std::unique_ptr<metrics::MetricsServer> metrics_server_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<http::CurlExecutor> executor_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<api::ReboundService> service_;
  std::unique_ptr<grpc::Server> server_;
  int grpc_port_ = 0;
  std::thread loop_thread_;
  std::thread maintenance_thread_;
  absl::Notification stop_maintenance_;
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace rebound::app

#endif  // REBOUND_SERVER_APP_APP_H_
