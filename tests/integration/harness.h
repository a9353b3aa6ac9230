// Integration harness: the real rebound-server binary on port 0, the real fake-lms, and the
// real client library. Each fixture gets its own processes, database and temp directory.
#ifndef REBOUND_TESTS_INTEGRATION_HARNESS_H_
#define REBOUND_TESTS_INTEGRATION_HARNESS_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/fake_lms/fake_lms_process.h"
#include "tests/support/child_process.h"

namespace rebound::testing {

// Millisecond policies so retries happen in test time; `lms` points at fake-lms, `dead` at a
// port where nothing listens.
inline std::string IntegrationConfig(int lms_port, int dead_port, const std::string& db) {
  return absl::StrCat(R"(
server:
  grpc_listen: 127.0.0.1:0
  metrics_listen: 127.0.0.1:0
  max_batch_size: 10
  max_body_bytes: 1024
  shutdown_grace: 2s
store:
  path: )",
                      db, R"(
idempotency:
  retention: 1h
policies:
  - name: default
    backoff: {initial: 20ms, max: 200ms, multiplier: 2, jitter: none}
    throttle_backoff: {initial: 20ms, max: 200ms, jitter: none}
    limits: {max_attempts: 5, max_elapsed: 1m, max_retry_after: 5s}
  - name: slow
    backoff: {initial: 400ms, max: 400ms, multiplier: 1, jitter: none}
    limits: {max_attempts: 5}
  - name: canvas
    backoff: {initial: 20ms, max: 200ms, jitter: full}
    throttle_backoff: {initial: 150ms, max: 600ms, jitter: none}
    limits: {max_attempts: 2, max_retry_after: 5s}
    rules:
      - name: canvas-throttle
        status: [403]
        body: "Rate Limit Exceeded"
        action: rate_limited
endpoints:
  - name: lms
    base_url: http://127.0.0.1:)",
                      lms_port, R"(
    allowed_path_prefixes: [/api/v1/]
    connect_timeout: 500ms
    timeout: 500ms
    max_in_flight: 64
    policy: default
    # Millisecond protection, as the policies: a breaker opened by a flaky script must not
    # stall a test for the product's seconds-long open periods. No slow start: the scripts
    # here answer 429 + Retry-After on purpose, and a ramp after each such pause would slow
    # every test of other things (protection_test covers the ramp on endpoints of its own).
    circuit_breaker: {open_duration: 50ms, max_open_duration: 200ms}
    slow_start: {window: 0s}
    headers:
      - {name: Authorization, value_from_env: REBOUND_TEST_LMS_TOKEN, secret: true, optional: true}
  - name: slow
    base_url: http://127.0.0.1:)",
                      lms_port, R"(
    allowed_path_prefixes: [/api/v1/]
    timeout: 20s
    max_in_flight: 256
    policy: default
  - name: dead
    base_url: http://127.0.0.1:)",
                      dead_port, R"(
    allowed_path_prefixes: [/api/]
    connect_timeout: 200ms
    timeout: 500ms
    policy: default
)");
}

// A port that was free a moment ago and has nothing listening now.
inline int UnusedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

class ServerProcess {
 public:
  // Starts rebound-server on `config_path`; returns once it serves (port file written after the
  // health status is SERVING) and a channel is connected.
  // `extra_env` ("NAME=value") goes to the server's environment only.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const TempDir& dir, const std::string& config_path, std::vector<std::string> extra_env = {}) {
    const std::string port_file = dir.File("server.port");
    const std::string metrics_port_file = dir.File("metrics.port");
    std::remove(port_file.c_str());
    std::remove(metrics_port_file.c_str());
    auto child = ChildProcess::Spawn(REBOUND_SERVER_BIN,
                                     {"--config", config_path, "--port-file", port_file,
                                      "--metrics-port-file", metrics_port_file},
                                     dir.File("server.log"), std::move(extra_env));
    if (!child.ok()) return child.status();
    auto port = (*child)->WaitForPortFile(port_file, absl::Seconds(30));
    if (!port.ok()) return port.status();
    // Written before the gRPC port file, so it is there now.
    auto mport = (*child)->WaitForPortFile(metrics_port_file, absl::Seconds(1));
    if (!mport.ok()) return mport.status();
    client::ClientOptions options;
    options.target = absl::StrCat("127.0.0.1:", *port);
    options.call_timeout = absl::Seconds(30);
    auto c = client::Client::Connect(options);
    if (!c.ok()) return c.status();
    auto server =
        std::unique_ptr<ServerProcess>(new ServerProcess(*std::move(child), *port, *std::move(c)));
    server->metrics_port_ = *mport;
    return server;
  }
  int metrics_port() const { return metrics_port_; }

  client::Client& client() { return *client_; }
  ChildProcess& process() { return *process_; }
  int port() const { return port_; }

 private:
  ServerProcess(std::unique_ptr<ChildProcess> p, int port, std::unique_ptr<client::Client> c)
      : process_(std::move(p)), port_(port), client_(std::move(c)) {}
  std::unique_ptr<ChildProcess> process_;
  int port_;
  int metrics_port_ = 0;
  std::unique_ptr<client::Client> client_;
};

class IntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(StartFakeLms());
    std::ofstream(config_path_) << IntegrationConfig(lms_->port(), UnusedPort(),
                                                     dir_.File("rebound.db"));
    StartServer();
  }

  // fake-lms, and where the server's config goes (not written yet).
  void StartFakeLms() {
    auto lms = fakelms::FakeLmsProcess::Start();
    ASSERT_TRUE(lms.ok()) << lms.status();
    lms_ = *std::move(lms);
    config_path_ = dir_.File("rebound.yaml");
  }

  void StartServer() {
    auto server = ServerProcess::Start(dir_, config_path_);
    ASSERT_TRUE(server.ok()) << server.status() << "\n" << ServerLog();
    server_ = *std::move(server);
  }

  std::string ServerLog() const {
    std::ifstream in(dir_.File("server.log"));
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  client::Client& client() { return server_->client(); }

  // A job against fake-lms whose behaviour is `script` (see tools/fake-lms/README.md).
  static v1::SyncRequest Job(const std::string& key, const std::string& script,
                             const std::string& body = R"({"score": 92})") {
    v1::SyncRequest r;
    r.set_idempotency_key(key);
    r.set_endpoint("lms");
    r.set_method("POST");
    r.set_path("/api/v1/courses/7/grades");
    r.set_query(absl::StrCat("script=", script));
    r.set_body(body);
    return r;
  }

  // Submits and waits for the terminal state.
  v1::SyncJob Run(const v1::SyncRequest& r, absl::Duration timeout = absl::Seconds(20)) {
    auto submitted = client().Submit(r);
    EXPECT_TRUE(submitted.ok()) << submitted.status();
    if (!submitted.ok()) return {};
    auto job = client().Await(submitted->job_id(), timeout);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : v1::SyncJob();
  }

  nlohmann::json KeyStats(const std::string& key) {
    auto s = lms_->Stats(key);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : nlohmann::json::object();
  }

  TempDir dir_;
  std::unique_ptr<fakelms::FakeLmsProcess> lms_;
  std::string config_path_;
  std::unique_ptr<ServerProcess> server_;
};

}  // namespace rebound::testing

#endif  // REBOUND_TESTS_INTEGRATION_HARNESS_H_
