// fake-lms: a scriptable, flaky upstream HTTP server for Rebound's tests, demo and benchmarks.
//
//   fake-lms --listen 127.0.0.1:0 [--port-file PATH]
//
// Prints "fake-lms listening on HOST:PORT" once bound, writes PORT to --port-file (atomically,
// by rename) and runs until SIGTERM or SIGINT, then exits 0. README.md describes the scripts.
#include <event2/event.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "tools/fake-lms/server.h"

namespace rebound::fakelms {
namespace {

constexpr char kUsage[] =
    "usage: fake-lms [--listen HOST:PORT] [--port-file PATH]\n"
    "  --listen     address to bind (default 127.0.0.1:0; port 0 picks a free port)\n"
    "  --port-file  write the bound port here (via a temporary file and rename)\n";

struct Flags {
  std::string listen = "127.0.0.1:0";
  std::string port_file;
};

std::optional<Flags> ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const std::string& name) -> std::optional<std::string> {
      if (arg.rfind(name + "=", 0) == 0) return arg.substr(name.size() + 1);
      if (arg == name && i + 1 < argc) return std::string(argv[++i]);
      return std::nullopt;
    };
    if (auto v = value("--listen")) {
      flags.listen = *v;
    } else if (auto p = value("--port-file")) {
      flags.port_file = *p;
    } else {
      return std::nullopt;
    }
  }
  return flags;
}

bool WritePortFile(const std::string& path, int port) {
  const std::string temp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(temp, std::ios::trunc);
    out << port << "\n";
    out.flush();
    if (!out) return false;
  }
  return std::rename(temp.c_str(), path.c_str()) == 0;
}

void OnSignal(evutil_socket_t /*signal*/, short /*what*/, void* base) {
  event_base_loopexit(static_cast<event_base*>(base), nullptr);
}

int Run(int argc, char** argv) {
  const std::optional<Flags> flags = ParseFlags(argc, argv);
  if (!flags) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  // A client closing early must not kill the server while it writes.
  std::signal(SIGPIPE, SIG_IGN);

  // No cached time: a delay (`ms=`) is measured from the request's arrival, not from the start
  // of the loop turn that read it, so a delayed answer is never early.
  std::unique_ptr<event_config, decltype(&event_config_free)> cfg(event_config_new(),
                                                                  &event_config_free);
  if (cfg != nullptr) event_config_set_flag(cfg.get(), EVENT_BASE_FLAG_NO_CACHE_TIME);
  std::unique_ptr<event_base, decltype(&event_base_free)> base(
      cfg != nullptr ? event_base_new_with_config(cfg.get()) : event_base_new(), &event_base_free);
  if (base == nullptr) {
    std::fputs("fake-lms: event_base_new failed\n", stderr);
    return 1;
  }
  int exit_code = 0;
  // Handlers go in before the port is announced: a SIGTERM right after must still exit 0.
  using EventPtr = std::unique_ptr<event, decltype(&event_free)>;
  const EventPtr term(evsignal_new(base.get(), SIGTERM, &OnSignal, base.get()), &event_free);
  const EventPtr interrupt(evsignal_new(base.get(), SIGINT, &OnSignal, base.get()), &event_free);
  event_add(term.get(), nullptr);
  event_add(interrupt.get(), nullptr);
  {
    Server server(base.get());
    std::string error;
    const std::optional<int> port = server.Listen(flags->listen, &error);
    if (!port) {
      std::fprintf(stderr, "fake-lms: %s\n", error.c_str());
      return 1;
    }
    const std::string host = flags->listen.substr(0, flags->listen.rfind(':'));
    std::printf("fake-lms listening on %s:%d\n", host.c_str(), *port);
    std::fflush(stdout);
    if (!flags->port_file.empty() && !WritePortFile(flags->port_file, *port)) {
      std::fprintf(stderr, "fake-lms: cannot write %s: %s\n", flags->port_file.c_str(),
                   std::strerror(errno));
      return 1;
    }

    if (event_base_dispatch(base.get()) < 0) exit_code = 1;
  }
  return exit_code;
}

}  // namespace
}  // namespace rebound::fakelms

int main(int argc, char** argv) { return rebound::fakelms::Run(argc, argv); }
