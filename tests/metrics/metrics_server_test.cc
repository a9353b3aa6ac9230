#include "server/metrics/metrics_server.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/config/config.h"
#include "server/metrics/metrics.h"

namespace rebound::metrics {
namespace {

using ::testing::HasSubstr;

class CurlEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { ASSERT_EQ(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK); }
  void TearDown() override { curl_global_cleanup(); }
};
::testing::Environment* const kCurlEnvironment =
    ::testing::AddGlobalTestEnvironment(new CurlEnvironment);

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

struct Response {
  long status = 0;
  std::string content_type;
  std::string body;
};

absl::StatusOr<Response> GetOnce(const std::string& url,
                                 absl::Duration timeout = absl::Seconds(10)) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init");
  Response r;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(timeout)));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  const CURLcode rc = curl_easy_perform(curl);
  char* type = nullptr;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &type);
  if (type != nullptr) r.content_type = type;
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) return absl::UnavailableError(curl_easy_strerror(rc));
  return r;
}

// prometheus-cpp's exposer now and then drops a scrape connection (TOOLCHAIN.md): retry once.
absl::StatusOr<Response> Get(const std::string& url) {
  absl::StatusOr<Response> r = GetOnce(url);
  if (!r.ok()) r = GetOnce(url);
  return r;
}

// The value of the sample line that starts with `series` (name plus labels, as exposed).
std::optional<double> Sample(absl::string_view text, absl::string_view series) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, series) || !absl::ConsumePrefix(&line, " ")) continue;
    const std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
    double v = 0;
    if (absl::SimpleAtod(parts.front(), &v)) return v;
  }
  return std::nullopt;
}

config::Config OneEndpoint() {
  config::Config c;
  c.server.default_tenant = "default-tenant-name";
  config::EndpointConfig e;
  e.name = "canvas";
  c.endpoints.push_back(e);
  return c;
}

TEST(MetricsServer, ServesTheRegistryAndProcessMetricsOverHttp) {
  auto registry = std::make_shared<prometheus::Registry>();
  const config::Config config = OneEndpoint();
  std::unique_ptr<Metrics> metrics = Metrics::Create(*registry, config, "0.1.0", "deadbeef");
  metrics->endpoint(0).RecordAttempt(Outcome::kRetryable, CodeClassOf(503), absl::Milliseconds(7));
  metrics->endpoint(0).RecordAttempt(Outcome::kRetryable, CodeClassOf(503), absl::Milliseconds(9));
  metrics->endpoint(0).RecordRetry(RetryReason::kStatus, absl::Milliseconds(200));

  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  ASSERT_GT(port, 0);

  absl::StatusOr<Response> r = Get(absl::StrCat("http://127.0.0.1:", port, "/metrics"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_THAT(r->content_type, HasSubstr("text/plain"));
  const std::string& text = r->body;
  for (const char* family :
       {"rebound_jobs_submitted_total", "rebound_attempts_total", "rebound_retries_total",
        "rebound_attempt_duration_seconds", "rebound_jobs", "rebound_circuit_state",
        "grpc_server_handled_total", "grpc_server_handling_seconds", "rebound_build_info",
        "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
        "process_start_time_seconds"}) {
    EXPECT_THAT(text, HasSubstr(absl::StrCat("\n# TYPE ", family, " "))) << family;
  }
  EXPECT_THAT(text, HasSubstr("# TYPE rebound_attempts_total counter"));
  EXPECT_THAT(text, HasSubstr("# TYPE rebound_attempt_duration_seconds histogram"));
  EXPECT_THAT(text, HasSubstr("# TYPE rebound_jobs gauge"));
  EXPECT_EQ(
      Sample(text,
             R"(rebound_attempts_total{code_class="5xx",endpoint="canvas",outcome="retryable"})"),
      2);
  EXPECT_EQ(
      Sample(text,
             R"(rebound_attempts_total{code_class="2xx",endpoint="canvas",outcome="success"})"),
      0);
  EXPECT_EQ(Sample(text, R"(rebound_retries_total{endpoint="canvas",reason="status"})"), 1);
  EXPECT_EQ(Sample(text, R"(rebound_attempt_duration_seconds_count{endpoint="canvas"})"), 2);
  EXPECT_EQ(Sample(text, R"(rebound_attempt_duration_seconds_bucket{endpoint="canvas",le="0.01"})"),
            2);
  EXPECT_EQ(Sample(text, R"(rebound_build_info{revision="deadbeef",version="0.1.0"})"), 1);
  EXPECT_EQ(Sample(text, R"(rebound_rate_limit_tokens{endpoint="canvas"})"), -1);  // no bucket
  const std::optional<double> rss = Sample(text, "process_resident_memory_bytes");
  ASSERT_TRUE(rss.has_value());
  EXPECT_GT(*rss, 0);

  // Every sample line is one series; all of them were created up front.
  size_t samples = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!line.empty() && line.front() != '#') ++samples;
  }
  EXPECT_EQ(samples, WorstCaseSeries(config.endpoints.size()));

  // A second scrape sees new values: collection happens at scrape time.
  metrics->Rejected(RejectReason::kInvalid).Increment();
  r = Get(absl::StrCat("http://127.0.0.1:", port, "/metrics"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Sample(r->body, R"(rebound_jobs_rejected_total{reason="invalid"})"), 1);
}

// A TCP connection to 127.0.0.1:port that never sends a byte (a stray client, a half-open
// connection, a port scanner). Closed when the object dies.
class IdleConnection {
 public:
  explicit IdleConnection(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    connected_ = fd_ >= 0 && connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~IdleConnection() {
    if (fd_ >= 0) close(fd_);
  }
  IdleConnection(const IdleConnection&) = delete;
  IdleConnection& operator=(const IdleConnection&) = delete;
  bool connected() const { return connected_; }

 private:
  int fd_;
  bool connected_ = false;
};

// Seconds a single scrape takes, or a failure after `timeout`.
absl::StatusOr<absl::Duration> TimedScrape(int port, absl::Duration timeout) {
  const absl::Time start = absl::Now();
  absl::StatusOr<Response> r =
      GetOnce(absl::StrCat("http://127.0.0.1:", port, "/metrics"), timeout);
  if (!r.ok()) return r.status();
  if (r->status != 200) return absl::InternalError(absl::StrCat("HTTP ", r->status));
  return absl::Now() - start;
}

TEST(MetricsServer, AFewIdleConnectionsDoNotDelayAScrape) {
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("127.0.0.1:0", std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(server.ok()) << server.status();
  // Connected before the scrape, so civetweb hands them to workers first (it accepts in order).
  std::vector<std::unique_ptr<IdleConnection>> idle;
  for (int i = 0; i < kMetricsThreads / 2; ++i) {
    idle.push_back(std::make_unique<IdleConnection>((*server)->port()));
    ASSERT_TRUE(idle.back()->connected());
  }
  // Before the fix two such connections held both workers for civetweb's 30 s default.
  absl::StatusOr<absl::Duration> took = TimedScrape((*server)->port(), absl::Seconds(10));
  ASSERT_TRUE(took.ok()) << took.status();
  EXPECT_LT(*took, absl::Seconds(1));
}

TEST(MetricsServer, MoreIdleConnectionsThanWorkersDelayAScrapeByOneRequestTimeoutAtMost) {
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("127.0.0.1:0", std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(server.ok()) << server.status();
  std::vector<std::unique_ptr<IdleConnection>> idle;
  for (int i = 0; i < kMetricsThreads + 2; ++i) {
    idle.push_back(std::make_unique<IdleConnection>((*server)->port()));
    ASSERT_TRUE(idle.back()->connected());
  }
  absl::StatusOr<absl::Duration> took =
      TimedScrape((*server)->port(), kMetricsRequestTimeout + absl::Seconds(7));
  ASSERT_TRUE(took.ok()) << took.status();
  EXPECT_LT(*took, kMetricsRequestTimeout + absl::Seconds(2));
}

TEST(MetricsServer, ABusyAddressIsAnErrorNamingTheConfigKey) {
  auto registry = std::make_shared<prometheus::Registry>();
  absl::StatusOr<std::unique_ptr<MetricsServer>> first =
      MetricsServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string taken = absl::StrCat("127.0.0.1:", (*first)->port());
  absl::StatusOr<std::unique_ptr<MetricsServer>> second = MetricsServer::Start(taken, registry);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("server.metrics_listen"));
  EXPECT_THAT(second.status().message(), HasSubstr(taken));
}

TEST(MetricsServer, AnUnparsableAddressIsAnErrorNamingTheConfigKey) {
  absl::StatusOr<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start("not an address", std::make_shared<prometheus::Registry>());
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("server.metrics_listen"));
}

}  // namespace
}  // namespace rebound::metrics
