// Observability end to end: scrape the real server's /metrics, read its JSON log lines, and let
// a real Prometheus scrape it and answer the dashboard's queries.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "rebound/build_info.h"
#include "server/metrics/metrics.h"
#include "tests/integration/harness.h"

namespace rebound::testing {
namespace {

using ::testing::HasSubstr;

const ::testing::Environment* const kCurl =
    ::testing::AddGlobalTestEnvironment(new fakelms::CurlGlobalEnvironment);

constexpr char kSecret[] = "Bearer s3cr3t-token-never-logged";
constexpr char kBodyMarker[] = "BODY-MARKER-grade-A-minus";

// One sample line of the text exposition: name, labels, value.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

std::vector<Sample> ParseExposition(const std::string& text) {
  std::vector<Sample> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    Sample s;
    absl::string_view series = line.substr(0, space);
    if (!absl::SimpleAtod(line.substr(space + 1), &s.value)) continue;
    const size_t brace = series.find('{');
    s.name = std::string(series.substr(0, brace));
    if (brace != absl::string_view::npos) {
      absl::string_view labels = series.substr(brace + 1, series.size() - brace - 2);
      for (absl::string_view pair : absl::StrSplit(labels, "\",", absl::SkipEmpty())) {
        const size_t eq = pair.find("=\"");
        if (eq == absl::string_view::npos) continue;
        s.labels[std::string(pair.substr(0, eq))] =
            std::string(absl::StripSuffix(pair.substr(eq + 2), "\""));
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

// Sum of the samples of `name` whose labels include `match`.
double Value(const std::vector<Sample>& samples, const std::string& name,
             const std::map<std::string, std::string>& match) {
  double sum = 0;
  for (const Sample& s : samples) {
    if (s.name != name) continue;
    bool ok = true;
    for (const auto& [k, v] : match) {
      auto it = s.labels.find(k);
      ok = ok && it != s.labels.end() && it->second == v;
    }
    if (ok) sum += s.value;
  }
  return sum;
}

class ObservabilityTest : public IntegrationTest {
 protected:
  void SetUp() override {
    setenv("REBOUND_TEST_LMS_TOKEN", kSecret, 1);  // the lms endpoint's secret header
    IntegrationTest::SetUp();
  }
  void TearDown() override { unsetenv("REBOUND_TEST_LMS_TOKEN"); }

  std::string Scrape() {
    const std::string url = absl::StrCat("http://127.0.0.1:", server_->metrics_port(), "/metrics");
    for (int attempt = 0; attempt < 2; ++attempt) {  // the exposer may drop a kept-alive scrape
      const fakelms::HttpReply r = fakelms::HttpFetch("GET", url);
      if (r.code == CURLE_OK && r.status == 200) return r.body;
    }
    ADD_FAILURE() << "cannot scrape " << url;
    return "";
  }

  // Scrapes until `name{match}` reaches `want` (engine gauges are published once a second).
  double AwaitValue(const std::string& name, const std::map<std::string, std::string>& match,
                    double want) {
    double got = -1;
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (absl::Now() < give_up) {
      got = Value(ParseExposition(Scrape()), name, match);
      if (got == want) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return got;
  }
};

TEST_F(ObservabilityTest, CountersMatchWhatHappenedToA503503200Job) {
  const auto job = Run(Job("m-1", "503,503,200", kBodyMarker));
  ASSERT_EQ(job.state(), v1::SUCCEEDED);
  const auto samples = ParseExposition(Scrape());
  const std::map<std::string, std::string> lms = {{"endpoint", "lms"}};
  EXPECT_EQ(Value(samples, "rebound_jobs_submitted_total", lms), 1);
  EXPECT_EQ(Value(samples, "rebound_attempts_total", lms), 3);
  EXPECT_EQ(Value(samples, "rebound_attempts_total",
                  {{"endpoint", "lms"}, {"outcome", "retryable"}, {"code_class", "5xx"}}),
            2);
  EXPECT_EQ(Value(samples, "rebound_attempts_total",
                  {{"endpoint", "lms"}, {"outcome", "success"}, {"code_class", "2xx"}}),
            1);
  EXPECT_EQ(Value(samples, "rebound_retries_total", {{"endpoint", "lms"}, {"reason", "status"}}),
            2);
  EXPECT_EQ(Value(samples, "rebound_retries_total", lms), 2);
  EXPECT_EQ(Value(samples, "rebound_jobs_completed_total",
                  {{"endpoint", "lms"}, {"result", "succeeded"}}),
            1);
  EXPECT_EQ(Value(samples, "rebound_backoff_delay_seconds_count", lms), 2);
  EXPECT_EQ(Value(samples, "rebound_attempt_duration_seconds_count", lms), 3);
  EXPECT_EQ(Value(samples, "rebound_job_duration_seconds_count",
                  {{"endpoint", "lms"}, {"result", "succeeded"}}),
            1);
  EXPECT_GE(Value(samples, "rebound_store_commit_duration_seconds_count", {}), 1);
  EXPECT_EQ(Value(samples, "rebound_build_info",
                  {{"version", build_info::kVersion}, {"revision", build_info::kRevision}}),
            1);
  EXPECT_GT(Value(samples, "process_resident_memory_bytes", {}), 0);
}

// The gRPC server metrics, under go-grpc-prometheus's names and labels, for what one submit,
// one watch and one get did (Run submits, then Await watches and gets).
TEST_F(ObservabilityTest, GrpcServerMetricsFollowTheGoGrpcPrometheusConventions) {
  const auto job = Run(Job("m-grpc", "200"));
  ASSERT_EQ(job.state(), v1::SUCCEEDED);
  v1::SyncRequest bad = Job("m-grpc-bad", "200");
  bad.set_path("/admin");
  ASSERT_EQ(client().Submit(bad).status().code(), absl::StatusCode::kInvalidArgument);
  const auto samples = ParseExposition(Scrape());
  const std::map<std::string, std::string> submit = {{"grpc_service", "rebound.v1.Rebound"},
                                                     {"grpc_method", "SubmitSync"},
                                                     {"grpc_type", "unary"}};
  auto with = [](std::map<std::string, std::string> labels, const std::string& code) {
    labels.emplace("grpc_code", code);
    return labels;
  };
  EXPECT_EQ(Value(samples, "grpc_server_started_total", submit), 2);
  EXPECT_EQ(Value(samples, "grpc_server_handled_total", with(submit, "OK")), 1);
  EXPECT_EQ(Value(samples, "grpc_server_handled_total", with(submit, "INVALID_ARGUMENT")), 1);
  EXPECT_EQ(Value(samples, "grpc_server_handled_total", submit), 2);
  EXPECT_EQ(Value(samples, "grpc_server_handling_seconds_count", submit), 2);
  EXPECT_EQ(Value(samples, "grpc_server_msg_received_total", submit), 2);
  EXPECT_EQ(Value(samples, "grpc_server_msg_sent_total", submit), 1);
  const std::map<std::string, std::string> watch = {{"grpc_service", "rebound.v1.Rebound"},
                                                    {"grpc_method", "WatchSync"},
                                                    {"grpc_type", "server_stream"}};
  EXPECT_EQ(Value(samples, "grpc_server_started_total", watch), 1);
  EXPECT_GE(Value(samples, "grpc_server_msg_sent_total", watch), 1);  // one event per change
  EXPECT_EQ(Value(samples, "grpc_server_handled_total",
                  {{"grpc_method", "GetSync"}, {"grpc_code", "OK"}, {"grpc_type", "unary"}}),
            1);
  // Every method and code exists from the start, and nothing else does.
  EXPECT_EQ(Value(samples, "grpc_server_handled_total",
                  with({{"grpc_service", "rebound.v1.Rebound"},
                        {"grpc_method", "ReplaySync"},
                        {"grpc_type", "unary"}},
                       "FAILED_PRECONDITION")),
            0);
  size_t handled_series = 0;
  for (const Sample& s : samples) handled_series += s.name == "grpc_server_handled_total";
  EXPECT_EQ(handled_series, metrics::kGrpcMethodCount * metrics::kGrpcCodeCount);
  for (const Sample& s : samples) {
    EXPECT_FALSE(absl::StartsWith(s.name, "rebound_grpc_")) << s.name << " was replaced";
  }
}

TEST_F(ObservabilityTest, RetryAfterDedupRejectionsAndDeadLettersAreCounted) {
  Run(Job("m-ra", "429:ra=1,200"));
  const auto dup = client().Submit(Job("m-ra", "429:ra=1,200"));
  ASSERT_TRUE(dup.ok() && dup->deduplicated());
  Run(Job("m-400", "400"));
  v1::SyncRequest bad = Job("m-bad", "200");
  bad.set_path("/admin");
  EXPECT_FALSE(client().Submit(bad).ok());
  const auto samples = ParseExposition(Scrape());
  EXPECT_EQ(Value(samples, "rebound_retry_after_seconds_count", {{"endpoint", "lms"}}), 1);
  EXPECT_EQ(
      Value(samples, "rebound_retries_total", {{"endpoint", "lms"}, {"reason", "rate_limited"}}),
      1);
  EXPECT_EQ(Value(samples, "rebound_jobs_deduplicated_total", {{"endpoint", "lms"}}), 1);
  EXPECT_EQ(Value(samples, "rebound_jobs_rejected_total", {{"reason", "invalid"}}), 1);
  EXPECT_EQ(AwaitValue("rebound_dead_letter_jobs", {{"endpoint", "lms"}}, 1), 1);
  EXPECT_EQ(Value(samples, "rebound_attempts_total",
                  {{"endpoint", "lms"}, {"outcome", "permanent"}, {"code_class", "4xx"}}),
            1);
}

TEST_F(ObservabilityTest, DeadLettersSurviveARestartInTheGauge) {
  Run(Job("m-dl", "400"));
  server_->process().Signal(SIGTERM);
  ASSERT_TRUE(server_->process().Wait(absl::Seconds(20)).ok());
  StartServer();
  EXPECT_EQ(Value(ParseExposition(Scrape()), "rebound_dead_letter_jobs", {{"endpoint", "lms"}}), 1);
}

TEST_F(ObservabilityTest, EveryExportedFamilyIsListedInDeployMetricsTxt) {
  // A family without series is left out of a scrape: a budget gives the budget families theirs.
  server_->process().Signal(SIGTERM);
  ASSERT_TRUE(server_->process().Wait(absl::Seconds(20)).ok());
  std::ofstream(config_path_, std::ios::app)
      << "budgets:\n  - name: app\n    max_in_flight: 8\n    quota: {limit: 500, period: 1h}\n";
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Run(Job("m-fam", "200"));
  EXPECT_EQ(Value(ParseExposition(Scrape()), "rebound_budget_quota_limit", {{"budget", "app"}}),
            500);
  std::set<std::string> exported;
  for (absl::string_view line : absl::StrSplit(Scrape(), '\n')) {
    if (absl::StartsWith(line, "# TYPE ")) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      if (parts.size() >= 3) exported.insert(parts[2]);
    }
  }
  std::set<std::string> listed;
  std::ifstream in(std::string(REBOUND_SOURCE_DIR) + "/deploy/metrics.txt");
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') listed.insert(line);
  }
  EXPECT_EQ(exported, listed) << "deploy/metrics.txt must list exactly what the server exports";
}

TEST_F(ObservabilityTest, PromtoolAcceptsARealScrape) {
  const std::string scrape = Scrape();
  const std::string path = dir_.File("scrape.txt");
  std::ofstream(path) << scrape;
  const std::string cmd = absl::StrCat("promtool check metrics < '", path, "' 2>&1");
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int rc = pclose(p);
  EXPECT_EQ(rc, 0) << "promtool check metrics:\n" << out;
}

TEST_F(ObservabilityTest, LogLinesAreJsonWithTheFieldsAndNoSecretsOrBodies) {
  auto first = Job("m-log", "503,200", kBodyMarker);
  first.set_correlation_id("corr-42");
  Run(first);
  Run(Job("m-log-400", "400", kBodyMarker));
  server_->process().Signal(SIGTERM);
  ASSERT_TRUE(server_->process().Wait(absl::Seconds(20)).ok());
  const std::string log = ServerLog();
  EXPECT_THAT(log, ::testing::Not(HasSubstr("s3cr3t-token")));
  EXPECT_THAT(log, ::testing::Not(HasSubstr(kBodyMarker)));
  std::map<std::string, int> events;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << line;
    ASSERT_TRUE(j.contains("event")) << line;
    if (j["event"] == "engine_stats") continue;
    ASSERT_TRUE(j.contains("ts") && j.contains("level")) << line;
    const std::string event = j["event"];
    ++events[event];
    if (event == "retry_scheduled") {
      EXPECT_EQ(j["job_id"], "j1");
      EXPECT_EQ(j["endpoint"], "lms");
      EXPECT_EQ(j["tenant"], "default");
      EXPECT_TRUE(j.contains("delay_ms")) << line;
      EXPECT_EQ(j["delay_cause"], "backoff");
      EXPECT_EQ(j["http_status"], 503);
      EXPECT_EQ(j["classification"], "retry");
    }
    if (event == "succeeded") {
      EXPECT_EQ(j["correlation_id"], "corr-42") << line;
    }
    if (event == "attempt_finished") {
      EXPECT_TRUE(j.contains("latency_ms")) << line;
      EXPECT_TRUE(j.contains("attempt")) << line;
    }
  }
  EXPECT_EQ(events["submitted"], 2);
  EXPECT_EQ(events["attempt_finished"], 3);
  EXPECT_EQ(events["retry_scheduled"], 1);
  EXPECT_EQ(events["succeeded"], 1);
  EXPECT_EQ(events["failed"], 1);
  EXPECT_EQ(events["server_started"], 1);
}

TEST_F(ObservabilityTest, TraceparentBecomesTheCorrelationIdAndGoesUpstream) {
  const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::Rebound::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata("traceparent", absl::StrCat("00-", trace_id, "-00f067aa0ba902b7-01"));
  v1::SubmitSyncRequest req;
  *req.mutable_request() = Job("m-trace", "200");
  v1::SubmitSyncResponse res;
  ASSERT_TRUE(stub->SubmitSync(&ctx, req, &res).ok());
  auto job = client().Await(res.job_id(), absl::Seconds(10));
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->request().correlation_id(), trace_id);
  const auto stats = KeyStats("m-trace");
  const std::string sent = stats["last_headers"].dump();
  EXPECT_THAT(sent, HasSubstr(absl::StrCat("00-", trace_id, "-")));
  EXPECT_THAT(sent, ::testing::Not(HasSubstr("00f067aa0ba902b7"))) << "a child span id upstream";
}

// A real Prometheus scrapes the server; the dashboard's queries answer through its HTTP API.
class PrometheusTest : public ObservabilityTest {
 protected:
  void TearDown() override {
    prometheus_.reset();
    ObservabilityTest::TearDown();
  }

  // `rule_file`: loaded as rule_files when not empty.
  void StartPrometheus(const std::string& rule_file = "") {
    prom_port_ = UnusedPort();
    const std::string config = dir_.File("prometheus.yml");
    std::ofstream(config) << "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                          << (rule_file.empty() ? "" : "rule_files: ['" + rule_file + "']\n")
                          << "scrape_configs:\n"
                             "  - job_name: rebound\n"
                             "    static_configs: [{targets: ['127.0.0.1:"
                          << server_->metrics_port() << "']}]\n";
    auto p = ChildProcess::Spawn("/usr/bin/prometheus",
                                 {absl::StrCat("--config.file=", config),
                                  absl::StrCat("--storage.tsdb.path=", dir_.File("prom-data")),
                                  absl::StrCat("--web.listen-address=127.0.0.1:", prom_port_)},
                                 dir_.File("prometheus.log"));
    ASSERT_TRUE(p.ok()) << p.status() << " (Debian's prometheus package is required)";
    prometheus_ = *std::move(p);
  }

  // Evaluates `promql` until its first sample equals `want` (bounded); returns the last value.
  double AwaitQuery(const std::string& promql, double want) {
    std::unique_ptr<char, decltype(&curl_free)> q(
        curl_easy_escape(nullptr, promql.data(), static_cast<int>(promql.size())), &curl_free);
    const std::string url =
        absl::StrCat("http://127.0.0.1:", prom_port_, "/api/v1/query?query=", q.get());
    double got = -1;
    const absl::Time give_up = absl::Now() + absl::Seconds(40);
    while (absl::Now() < give_up) {
      const fakelms::HttpReply r = fakelms::HttpFetch("GET", url);
      if (r.code == CURLE_OK && r.status == 200) {
        const auto j = nlohmann::json::parse(r.body, nullptr, false);
        if (!j.is_discarded() && j["status"] == "success" && !j["data"]["result"].empty()) {
          got = std::stod(j["data"]["result"][0]["value"][1].get<std::string>());
          if (got == want) return got;
        }
      }
      absl::SleepFor(absl::Milliseconds(250));
    }
    return got;
  }

  std::unique_ptr<ChildProcess> prometheus_;
  int prom_port_ = 0;
};

TEST_F(PrometheusTest, DashboardQueriesAnswerWhatHappened) {
  StartPrometheus();
  Run(Job("p-1", "503,503,200"));
  Run(Job("p-2", "400"));
  EXPECT_EQ(AwaitQuery("sum by (endpoint) (rebound_attempts_total{endpoint=\"lms\"})", 4), 4);
  EXPECT_EQ(AwaitQuery("sum(rebound_retries_total{endpoint=\"lms\",reason=\"status\"})", 2), 2);
  EXPECT_EQ(AwaitQuery("sum by (result) (rebound_jobs_completed_total{result=\"succeeded\"})", 1),
            1);
  EXPECT_EQ(AwaitQuery("rebound_dead_letter_jobs{endpoint=\"lms\"}", 1), 1);
  EXPECT_EQ(AwaitQuery("up{job=\"rebound\"}", 1), 1);
}

// deploy/prometheus/alerts.yaml's ReboundCircuitOpen fires from a real breaker: an endpoint with
// a small circuit breaker, fake-lms hard down, the server's real rebound_circuit_state scraped
// by a real Prometheus evaluating the shipped rule (its `for: 5m` shortened in a scratch copy,
// nothing else changed). The breaker cycles open -> half-open (probes fail) -> open, as in a
// real outage.
TEST_F(PrometheusTest, CircuitOpenAlertFiresFromARealBreaker) {
  server_->process().Signal(SIGTERM);
  ASSERT_TRUE(server_->process().Wait(absl::Seconds(20)).ok());
  std::ofstream(config_path_, std::ios::app)
      << "  - name: fragile\n    base_url: " << lms_->base_url()
      << "\n    allowed_path_prefixes: [/api/v1/]\n    policy: slow\n"
         "    circuit_breaker: {min_requests: 5, open_duration: 1s, max_open_duration: 2s}\n";
  ASSERT_NO_FATAL_FAILURE(StartServer());

  std::ifstream in(std::string(REBOUND_SOURCE_DIR) + "/deploy/prometheus/alerts.yaml");
  std::string rules((std::istreambuf_iterator<char>(in)), {});
  const size_t rule = rules.find("- alert: ReboundCircuitOpen\n");
  ASSERT_NE(rule, std::string::npos);
  const size_t for_at = rules.find("for: 5m\n", rule);
  ASSERT_NE(for_at, std::string::npos);
  ASSERT_LT(for_at, rules.find("- alert:", rule + 1)) << "the rule's own for:";
  rules.replace(for_at, 7, "for: 3s");
  const std::string rule_file = dir_.File("alerts.yaml");
  std::ofstream(rule_file) << rules;
  StartPrometheus(rule_file);

  ASSERT_TRUE(lms_->StartOutage(absl::Seconds(120)).ok());
  for (int i = 0; i < 10; ++i) {
    v1::SyncRequest r = Job(absl::StrCat("p-open-", i), "200");
    r.set_endpoint("fragile");
    ASSERT_TRUE(client().Submit(r).ok());
  }
  const std::string firing =
      "ALERTS{alertname=\"ReboundCircuitOpen\",alertstate=\"firing\",endpoint=\"fragile\"}";
  EXPECT_EQ(AwaitQuery(firing, 1), 1)
      << "the alert did not fire; Prometheus log:\n"
      << [&] {
           std::ifstream log(dir_.File("prometheus.log"));
           return std::string(std::istreambuf_iterator<char>(log), {});
         }();
  // The healthy endpoint's breaker stayed closed, and no alert names it.
  EXPECT_EQ(AwaitQuery("max(rebound_circuit_state{endpoint=\"lms\"})", 0), 0);
  EXPECT_EQ(AwaitQuery("count(ALERTS{alertname=\"ReboundCircuitOpen\"})", 1), 1);
}

}  // namespace
}  // namespace rebound::testing
