#include "server/metrics/metrics_server.h"

#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace rebound::metrics {

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen, std::shared_ptr<prometheus::Registry> registry) {
  if (registry == nullptr) return absl::InvalidArgumentError("MetricsServer: no registry");
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->registry_ = std::move(registry);
  server->process_ = std::make_shared<ProcessCollector>();
  // civetweb reports a bad or busy address by throwing (CivetException); stop it here.
  try {
    server->exposer_ = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", listen, "num_threads", absl::StrCat(kMetricsThreads),
        "request_timeout_ms", absl::StrCat(absl::ToInt64Milliseconds(kMetricsRequestTimeout))});
    const std::vector<int> ports = server->exposer_->GetListeningPorts();
    if (ports.empty()) {
      return absl::UnavailableError(
          absl::StrCat("server.metrics_listen: no port bound on '", listen, "'"));
    }
    server->port_ = ports.front();
    server->exposer_->RegisterCollectable(server->registry_);
    server->exposer_->RegisterCollectable(server->process_);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("server.metrics_listen: cannot listen on '", listen, "': ", e.what()));
  }
  return server;
}

MetricsServer::~MetricsServer() {
  // The exposer holds weak pointers only; stop it before the collectables go.
  exposer_.reset();
}

}  // namespace rebound::metrics
