// rebound-server: flags -> config -> App -> run until SIGTERM/SIGINT -> graceful stop.
#include <curl/curl.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"
#include "rebound/build_info.h"
#include "server/app/app.h"
#include "server/common/clock.h"
#include "server/config/config.h"

namespace {

// One JSON line with the engine's counters and timer accuracy, printed at shutdown (read by
// bench/run.sh).
nlohmann::json Percentiles(std::vector<int64_t> samples) {
  std::sort(samples.begin(), samples.end());
  auto pct = [&](double q) -> int64_t {
    if (samples.empty()) return 0;
    return samples[std::min(samples.size() - 1, static_cast<size_t>(q * samples.size()))];
  };
  return {{"count", samples.size()},
          {"p50", pct(0.50)},
          {"p99", pct(0.99)},
          {"max", samples.empty() ? 0 : samples.back()}};
}

// Written whole under a temporary name, then renamed: readers never see half a number.
void WritePortFile(const std::string& path, int port) {
  if (path.empty()) return;
  const std::string tmp = path + ".tmp";
  if (FILE* f = std::fopen(tmp.c_str(), "w")) {
    std::fprintf(f, "%d\n", port);
    std::fclose(f);
    std::rename(tmp.c_str(), path.c_str());
  } else {
    std::fprintf(stderr, "rebound-server: cannot write port file %s\n", path.c_str());
  }
}

void PrintEngineStats(const rebound::engine::EngineStats& stats) {
  nlohmann::json j = {
      {"event", "engine_stats"},
      {"attempts_started", stats.attempts_started},
      {"attempts_finished", stats.attempts_finished},
      {"succeeded", stats.succeeded},
      {"failed", stats.failed},
      {"exhausted", stats.exhausted},
      {"cancelled", stats.cancelled},
      // FAILED at start-up: their endpoint was removed from the config (docs/operations.md).
      {"failed_endpoint_not_configured", stats.unroutable},
      // Requests read back from the store at dispatch (beyond the in-memory byte budget).
      {"spec_loads", stats.spec_loads},
      {"active_jobs", stats.active_jobs},
      // Due time -> attempt begun (RUNNING decided): the loop's timer accuracy.
      {"timer_lateness_us", Percentiles(stats.timer_lateness_us)},
      // Due time -> request on the wire (after RUNNING is durable).
      {"start_lateness_us", Percentiles(stats.start_lateness_us)},
  };
  std::printf("%s\n", j.dump().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's Abseil is built with Mutex deadlock detection on: a lock-order graph updated on
  // every Lock and every Mutex destroyed, 2-3% of the server's CPU on the one-job-per-call
  // path (perf). The unit and sanitizer tests keep it; the server does not pay for it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  CLI::App cli{"rebound-server: durable retries of LMS sync calls"};
  std::string config_path = "config/rebound.yaml";
  std::string check_path;
  std::string port_file;
  std::string metrics_port_file;
  bool version = false;
  cli.add_option("-c,--config", config_path, "YAML config file")->capture_default_str();
  cli.add_option("--check-config", check_path, "Validate FILE and exit (0 valid, 1 invalid)");
  cli.add_option("--port-file", port_file,
                 "Write the bound gRPC port to this file once serving (for grpc_listen :0)");
  cli.add_option("--metrics-port-file", metrics_port_file,
                 "Write the bound metrics port to this file once serving");
  cli.add_flag("--version", version, "Print the version and exit");
  CLI11_PARSE(cli, argc, argv);

  if (version) {
    std::printf("rebound-server %s (revision %s)\n", rebound::build_info::kVersion,
                rebound::build_info::kRevision);
    return 0;
  }
  if (!check_path.empty()) {
    auto cfg = rebound::config::LoadConfigFile(check_path);
    if (!cfg.ok()) {
      std::fprintf(stderr, "rebound-server: %s\n", std::string(cfg.status().message()).c_str());
      return 1;
    }
    std::printf("%s: ok (%zu endpoints, %zu policies)\n", check_path.c_str(), cfg->endpoints.size(),
                cfg->policies.size());
    return 0;
  }

  auto cfg = rebound::config::LoadConfigFile(config_path);
  if (!cfg.ok()) {
    std::fprintf(stderr, "rebound-server: %s\n", std::string(cfg.status().message()).c_str());
    return 1;
  }
  // Signals are taken synchronously by this thread; every thread started later inherits the
  // mask, so SIGTERM never interrupts a worker.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  rebound::common::RealClock clock;
  auto config = std::make_shared<const rebound::config::Config>(*std::move(cfg));
  auto app = rebound::app::App::Create(config, clock);
  if (!app.ok()) {
    std::fprintf(stderr, "rebound-server: %s\n", app.status().ToString().c_str());
    return 1;
  }
  if (absl::Status s = (*app)->Start(); !s.ok()) {
    std::fprintf(stderr, "rebound-server: %s\n", s.ToString().c_str());
    return 1;
  }
  rebound::log::EventLog& log = (*app)->log();
  log.Message(
      rebound::log::Level::kInfo, "server_started",
      absl::StrCat("rebound-server ", rebound::build_info::kVersion, " (revision ",
                   rebound::build_info::kRevision, ") serving gRPC on ", config->server.grpc_listen,
                   " (port ", (*app)->grpc_port(), "), metrics on port ", (*app)->metrics_port(),
                   ", store ", config->store.path));
  WritePortFile(metrics_port_file, (*app)->metrics_port());
  WritePortFile(port_file, (*app)->grpc_port());  // last: its presence means "all serving"

  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
    // Reload: a bad file or a change that needs a restart is refused; the running config stays.
    auto next = rebound::config::LoadConfigFile(config_path);
    absl::Status reloaded =
        next.ok()
            ? (*app)->Reload(std::make_shared<const rebound::config::Config>(*std::move(next)))
            : next.status();
    if (reloaded.ok()) {
      log.Message(rebound::log::Level::kInfo, "config_reloaded", config_path);
    } else {
      log.Message(rebound::log::Level::kWarn, "config_reload_rejected",
                  std::string(reloaded.message()));
    }
  }
  log.Message(rebound::log::Level::kInfo, "server_stopping",
              absl::StrCat("signal ", sig, ", draining (grace ",
                           absl::FormatDuration(config->server.shutdown_grace), ")"));
  (*app)->Shutdown();
  PrintEngineStats((*app)->engine().Stats());
  log.Message(rebound::log::Level::kInfo, "server_stopped", "stopped");
  app->reset();
  curl_global_cleanup();
  return 0;
}
