#include "server/app/app.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "rebound/build_info.h"
#include "rebound/v1/rebound.grpc.pb.h"
#include "server/api/parse_error_interceptor.h"
#include "server/metrics/grpc_interceptor.h"

namespace rebound::app {
namespace {

constexpr absl::Duration kPurgeEvery = absl::Minutes(1);
// Ended jobs deleted per store transaction, and pages returned per vacuum step: each step is
// one maintenance transaction of a few milliseconds, so traffic waits for at most one
// (docs/benchmarks.md, "Retention").
constexpr int kPurgeBatch = 64;
constexpr int kVacuumPages = 512;

// The longest retentions of any policy: jobs that ended before schema 2 get these (an
// upgrade never purges a job earlier than its policy would).
std::pair<absl::Duration, absl::Duration> LongestRetentions(const config::Config& cfg) {
  std::pair<absl::Duration, absl::Duration> longest{absl::ZeroDuration(), absl::ZeroDuration()};
  for (const auto& [name, p] : cfg.policies) {
    longest.first = std::max(longest.first, p->retention);
    longest.second = std::max(longest.second, p->dead_letter_retention);
  }
  return longest;
}

// Raises the soft RLIMIT_NOFILE to the hard limit, as servers holding many connections do (the
// usual soft default, 1024, is below a few endpoints' max_in_flight); returns the soft limit in
// force. Nothing here uses select(), which descriptors above 1024 would break.
int64_t RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur == RLIM_INFINITY) return INT64_MAX;
  return static_cast<int64_t>(limit.rlim_cur);
}

}  // namespace

App::App(std::shared_ptr<const config::Config> config, const common::Clock& clock)
    : config_(std::move(config)), clock_(clock) {}

absl::StatusOr<std::unique_ptr<App>> App::Create(std::shared_ptr<const config::Config> config,
                                                 const common::Clock& clock,
                                                 log::EventLog::Sink log_sink) {
  std::unique_ptr<App> app(new App(std::move(config), clock));
  app->configs_.push_back(app->config_);
  const config::Config& cfg = *app->config_;
  log::EventLog::Options log_options;
  log_options.min_level = log::ParseLevel(cfg.log.level).value_or(log::Level::kInfo);
  log_options.max_lines_per_second_per_event = static_cast<int>(cfg.log.max_lines_per_second);
  app->log_ = std::make_unique<log::EventLog>(
      clock, log_options, log_sink ? std::move(log_sink) : log::EventLog::StdoutSink());
  app->registry_ = std::make_shared<prometheus::Registry>();
  app->metrics_ =
      metrics::Metrics::Create(*app->registry_, cfg, build_info::kVersion, build_info::kRevision);
  app->telemetry_ = std::make_unique<Telemetry>(*app->metrics_, *app->log_);

  store::SqliteOptions store_options;
  store_options.path = cfg.store.path;
  store_options.synchronous = cfg.store.synchronous;
  store_options.max_batch = static_cast<int>(cfg.store.max_batch);
  store_options.quick_check = cfg.store.quick_check;
  store_options.max_file_bytes = static_cast<int64_t>(cfg.store.max_file_bytes);
  std::tie(store_options.legacy_retention, store_options.legacy_dead_letter_retention) =
      LongestRetentions(cfg);
  store_options.on_error = [](const absl::Status& s) {
    // Callers got a clean message; the statement and SQLite's words are for the operator.
    std::fprintf(stderr, "rebound: store error: %s\n", s.ToString().c_str());
  };
  metrics::Metrics* m = app->metrics_.get();
  store_options.on_commit = [m](absl::Duration took, size_t rows) {
    m->StoreCommitDuration().Observe(absl::ToDoubleSeconds(took));
    m->StoreBatchSize().Observe(static_cast<double>(rows));
  };
  auto store = store::SqliteStore::Open(store_options);
  if (!store.ok()) {
    return absl::Status(store.status().code(), absl::StrCat("store: ", store.status().message()));
  }
  app->store_ = *std::move(store);
  if (const auto av = app->store_->WriterPragma("auto_vacuum"); av.ok() && *av != "2") {
    std::fprintf(stderr,
                 "rebound: notice: %s was created without auto_vacuum=INCREMENTAL: purged jobs' "
                 "pages are reused but the file does not shrink (docs/operations.md, "
                 "\"Retention\", gives the one-time conversion)\n",
                 cfg.store.path.c_str());
  }
  // Every attempt in flight holds a connection, and a connection is a descriptor.
  int64_t in_flight = 0;
  for (const config::EndpointConfig& e : cfg.endpoints) in_flight += e.max_in_flight;
  const int64_t open_files = RaiseOpenFileLimit();
  const http::CurlExecutorOptions executor_options =
      http::CurlExecutorOptions::ForEndpoints(in_flight, open_files);
  if (in_flight > executor_options.max_total_connections) {
    std::fprintf(stderr,
                 "rebound: warning: the endpoints' max_in_flight add up to %lld, but the open-file "
                 "limit (RLIMIT_NOFILE %lld) leaves room for %d connections: attempts beyond them "
                 "wait inside libcurl for a connection; raise the limit (ulimit -n)\n",
                 static_cast<long long>(in_flight), static_cast<long long>(open_files),
                 executor_options.max_total_connections);
  }
  auto executor = http::CurlExecutor::Create(executor_options);
  if (!executor.ok()) return executor.status();
  app->executor_ = *std::move(executor);

  engine::EngineOptions engine_options;
  engine_options.observer = app->telemetry_.get();
  auto dead = app->store_->CountDeadLetters();
  if (!dead.ok()) return dead.status();
  engine_options.dead_letters_at_start.assign(cfg.endpoints.size(), 0);
  for (const auto& [endpoint, count] : *dead) {
    for (size_t i = 0; i < cfg.endpoints.size(); ++i) {
      if (cfg.endpoints[i].name == endpoint) engine_options.dead_letters_at_start[i] = count;
    }
  }
  app->engine_ = std::make_unique<engine::Engine>(app->config_, *app->store_, *app->executor_,
                                                  clock, std::move(engine_options));
  app->service_ = std::make_unique<api::ReboundService>(app->config_, *app->engine_, *app->engine_,
                                                        *app->store_, clock, app->metrics_.get(),
                                                        app->log_.get());
  return app;
}

App::~App() { Shutdown(); }

absl::Status App::Start() {
  if (absl::Status s = engine_->Recover(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("recovery: ", s.message()));
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  auto metrics_server = metrics::MetricsServer::Start(config_->server.metrics_listen, registry_);
  if (!metrics_server.ok()) return metrics_server.status();
  metrics_server_ = *std::move(metrics_server);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config_->server.grpc_listen, grpc::InsecureServerCredentials(),
                           &grpc_port_);
  builder.RegisterService(service_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  // First, so the metrics record the INVALID_ARGUMENT it turns an unparsable request into.
  interceptors.push_back(api::MakeParseErrorInterceptorFactory());
  interceptors.push_back(metrics::MakeGrpcInterceptorFactory(*metrics_));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || grpc_port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", config_->server.grpc_listen, " (server.grpc_listen)"));
  }
  // grpc.health.v1 answers the empty service name and the API's own name alike (clients and
  // probes ask for either); any other name is NOT_FOUND. Both say NOT_SERVING until the loops
  // run, and again from the start of Shutdown().
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus(false);
  health->SetServingStatus(v1::Rebound::service_full_name(), false);
  loop_thread_ = std::thread([this] { engine_->Run(); });
  maintenance_thread_ = std::thread([this] { MaintenanceLoop(); });
  health->SetServingStatus(true);  // every service name registered above
  return absl::OkStatus();
}

absl::Status App::Reload(std::shared_ptr<const config::Config> next) {
  const config::Config& cur = *config_;
  auto restart = [](absl::string_view key) {
    return absl::FailedPreconditionError(
        absl::StrCat(key, " cannot change without a restart; the running config stays"));
  };
  // Endpoints may be added (and reordered); removing or renaming one needs a restart: its jobs,
  // queue and metric series are keyed by it.
  std::vector<std::string> added;
  for (const auto& ep : next->endpoints) {
    if (metrics_->FindEndpoint(ep.name) == nullptr) added.push_back(ep.name);
  }
  for (const auto& ep : cur.endpoints) {
    if (next->FindEndpoint(ep.name) == nullptr) {
      return restart(absl::StrCat("endpoints: removing '", ep.name, "'"));
    }
  }
  if (metrics_->endpoint_count() + added.size() > metrics::kMaxEndpoints) {
    return absl::ResourceExhaustedError("endpoints: too many for one process");
  }
  // Budgets too: known ones keep their series (and the engine their state), new ones are
  // appended in the new config's order, as the engine appends them.
  std::vector<const config::BudgetConfig*> added_budgets;
  for (const config::BudgetConfig& b : next->budgets) {
    bool known = false;
    for (size_t i = 0; i < metrics_->budget_count() && !known; ++i) {
      known = metrics_->budget(i).name == b.name;
    }
    if (!known) added_budgets.push_back(&b);
  }
  if (metrics_->budget_count() + added_budgets.size() > config::kMaxBudgets) {
    return absl::ResourceExhaustedError("budgets: too many for one process");
  }
  if (next->server.grpc_listen != cur.server.grpc_listen) return restart("server.grpc_listen");
  if (next->server.metrics_listen != cur.server.metrics_listen) {
    return restart("server.metrics_listen");
  }
  if (next->server.default_tenant != cur.server.default_tenant) {
    return restart("server.default_tenant");
  }
  if (next->store.path != cur.store.path || next->store.synchronous != cur.store.synchronous ||
      next->store.max_batch != cur.store.max_batch ||
      next->store.max_file_bytes != cur.store.max_file_bytes) {
    return restart("store");
  }
  if (next->log.level != cur.log.level ||
      next->log.max_lines_per_second != cur.log.max_lines_per_second) {
    return restart("log");
  }
  configs_.push_back(next);
  // Series first: the engine appends the same new endpoints, in the same order, and may report
  // on them as soon as it has.
  for (const std::string& name : added) metrics_->AddEndpoint(name);
  for (const config::BudgetConfig* b : added_budgets) metrics_->AddBudget(*b);
  absl::Notification switched;
  absl::Status engine_status;
  engine_->Reload(next, [&](absl::Status s) {
    engine_status = std::move(s);
    switched.Notify();
  });
  if (!switched.WaitForNotificationWithTimeout(absl::Seconds(10))) {
    return absl::DeadlineExceededError("the engine did not take the new config in 10 s");
  }
  if (!engine_status.ok()) return engine_status;
  service_->SetConfig(next);
  absl::MutexLock lock(&config_mu_);
  config_ = std::move(next);
  return absl::OkStatus();
}

void App::MaintenanceLoop() {
  while (!stop_maintenance_.WaitForNotificationWithTimeout(kPurgeEvery)) {
    auto purged = store_->PurgeExpiredKeys(clock_.Now() - CurrentConfig()->idempotency_retention);
    if (!purged.ok()) {
      std::fprintf(stderr, "rebound: idempotency key purge failed: %s\n",
                   purged.status().ToString().c_str());
    }
    PurgeEndedJobs();
  }
}

void App::PurgeEndedJobs() {
  // Bounded steps on the store's maintenance lane, so submits and transitions pass between
  // them; a shutdown stops the pass between two steps.
  for (;;) {
    const absl::StatusOr<int64_t> n = store_->PurgeEndedJobs(clock_.Now(), kPurgeBatch);
    if (!n.ok()) {
      std::fprintf(stderr, "rebound: purge of ended jobs failed: %s\n",
                   n.status().ToString().c_str());
      break;
    }
    metrics_->StorePurged().Increment(static_cast<double>(*n));
    if (*n < kPurgeBatch || stop_maintenance_.HasBeenNotified()) break;
  }
  for (;;) {
    const absl::StatusOr<int64_t> pages = store_->ReclaimSpace(kVacuumPages);
    if (!pages.ok()) {
      std::fprintf(stderr, "rebound: reclaiming free pages failed: %s\n",
                   pages.status().ToString().c_str());
      break;
    }
    if (*pages < kVacuumPages || stop_maintenance_.HasBeenNotified()) break;
  }
  const absl::StatusOr<store::StoreUsage> usage = store_->Usage();
  if (!usage.ok()) {
    std::fprintf(stderr, "rebound: reading store usage failed: %s\n",
                 usage.status().ToString().c_str());
    return;
  }
  metrics_->StoreJobs(metrics::StoreJobClass::kActive).Set(static_cast<double>(usage->active_jobs));
  metrics_->StoreJobs(metrics::StoreJobClass::kFinished)
      .Set(static_cast<double>(usage->finished_jobs));
  metrics_->StoreJobs(metrics::StoreJobClass::kDeadLetter)
      .Set(static_cast<double>(usage->dead_letter_jobs));
  metrics_->StoreBytes().Set(static_cast<double>(usage->file_bytes));
  metrics_->StoreFreeBytes().Set(static_cast<double>(usage->free_bytes));
}

void App::Shutdown() {
  {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (server_ != nullptr) {
    server_->GetHealthCheckService()->SetServingStatus(false);  // "" and rebound.v1.Rebound
    service_->SetAcceptingSubmits(false);
  }
  // The exposer's HTTP server needs up to ~2 s to notice its stop (civetweb's poll quantum):
  // let that overlap the drain instead of adding to it.
  std::thread stop_metrics([this] { metrics_server_.reset(); });
  if (loop_thread_.joinable()) {
    engine_->Stop(config_->server.shutdown_grace);
    loop_thread_.join();
  }
  // Attempts still on the wire past the grace are abandoned now, while the engine (whose
  // callbacks they complete into) is alive; their jobs stay RUNNING and rerun after restart.
  executor_.reset();
  if (maintenance_thread_.joinable()) {
    stop_maintenance_.Notify();
    maintenance_thread_.join();
  }
  if (store_ != nullptr) {
    if (absl::Status s = store_->Flush(); !s.ok()) {
      std::fprintf(stderr, "rebound: final store flush failed: %s\n", s.ToString().c_str());
    }
  }
  if (server_ != nullptr) {
    // Watch streams and pending calls get a short moment, then are cancelled.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_->Wait();
  }
  stop_metrics.join();
}

}  // namespace rebound::app
