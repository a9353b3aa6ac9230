// Telemetry: the engine observer's endpoint-protection calls and gauge fields, mapped onto the
// series of metrics.h and onto log lines (a real registry, a real EventLog on a FakeClock).
#include "server/app/telemetry.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "server/common/clock.h"
#include "server/config/config.h"

namespace rebound::app {
namespace {

using ::prometheus::ClientMetric;
using ::prometheus::MetricFamily;

config::Config TwoEndpoints() {
  config::Config c;
  c.server.default_tenant = "t";
  for (const char* name : {"canvas", "moodle"}) {
    config::EndpointConfig e;
    e.name = name;
    e.base_url = "http://127.0.0.1:8080";
    c.endpoints.push_back(e);
  }
  config::BudgetConfig district;
  district.name = "district";
  district.split_by = "district";
  district.quota.limit = 10000;
  district.rate_limit = {5, 10};
  c.budgets.push_back(district);
  return c;
}

class TelemetryTest : public ::testing::Test {
 protected:
  TelemetryTest()
      : metrics_(metrics::Metrics::Create(registry_, TwoEndpoints(), "v", "r")),
        log_(clock_, log::EventLog::Options{},
             [this](absl::string_view line) { lines_.emplace_back(line); }),
        telemetry_(*metrics_, log_) {}

  // The value of the series of `family` with exactly `labels`; nullopt when it is absent.
  std::optional<double> Value(const std::string& family,
                              const std::map<std::string, std::string>& labels) const {
    for (const MetricFamily& f : registry_.Collect()) {
      if (f.name != family) continue;
      for (const ClientMetric& m : f.metric) {
        std::map<std::string, std::string> have;
        for (const ClientMetric::Label& l : m.label) have[l.name] = l.value;
        if (have != labels) continue;
        return f.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
      }
    }
    return std::nullopt;
  }
  nlohmann::json Line(size_t i) const { return nlohmann::json::parse(lines_.at(i)); }

  common::FakeClock clock_;
  prometheus::Registry registry_;
  std::unique_ptr<metrics::Metrics> metrics_;
  std::vector<std::string> lines_;
  log::EventLog log_;
  Telemetry telemetry_;
};

TEST_F(TelemetryTest, GaugeFieldsOfTheGateReachTheirSeries) {
  engine::EndpointGauges g;
  g.circuit = engine::CircuitState::kHalfOpen;
  g.operator_paused = true;
  g.allowed_in_flight = 7;
  g.tokens = 2.5;
  g.retries_in_flight = 3;
  g.retry_budget = 4;
  for (int r = 0; r < common::kWaitReasonCount; ++r) g.waiting[r] = 10 + r;
  telemetry_.OnGauges(1, g);

  const std::map<std::string, std::string> moodle = {{"endpoint", "moodle"}};
  EXPECT_EQ(Value("rebound_circuit_state", moodle), 1);
  EXPECT_EQ(Value("rebound_endpoint_operator_paused", moodle), 1);
  EXPECT_EQ(Value("rebound_endpoint_allowed_in_flight", moodle), 7);
  EXPECT_EQ(Value("rebound_rate_limit_tokens", moodle), 2.5);
  EXPECT_EQ(Value("rebound_retries_in_flight", moodle), 3);
  EXPECT_EQ(Value("rebound_retry_budget", moodle), 4);
  const std::map<std::string, int> by_reason = {
      {"backoff", 11},      {"retry_after", 12},  {"endpoint_paused", 13},  {"circuit_open", 14},
      {"rate_limited", 15}, {"retry_budget", 16}, {"ordering_blocked", 17}, {"operator_paused", 18},
  };
  for (const auto& [reason, want] : by_reason) {
    EXPECT_EQ(Value("rebound_jobs_waiting", {{"endpoint", "moodle"}, {"reason", reason}}), want)
        << reason;
  }
  // No series for "none" (ready jobs are rebound_jobs{state="queued"}).
  EXPECT_EQ(Value("rebound_jobs_waiting", {{"endpoint", "moodle"}, {"reason", "none"}}),
            std::nullopt);
  // The other endpoint is untouched; it has no bucket: tokens -1.
  const std::map<std::string, std::string> canvas = {{"endpoint", "canvas"}};
  EXPECT_EQ(Value("rebound_circuit_state", canvas), 0);
  EXPECT_EQ(Value("rebound_endpoint_allowed_in_flight", canvas), 0);
  EXPECT_EQ(Value("rebound_rate_limit_tokens", canvas), -1);

  // The breaker closes, the pause ends, a reload took the bucket away: the series follow.
  g.circuit = engine::CircuitState::kOpen;
  g.operator_paused = false;
  g.tokens = -1;
  g.waiting[static_cast<int>(common::WaitReason::kCircuitOpen)] = 0;
  telemetry_.OnGauges(1, g);
  EXPECT_EQ(Value("rebound_circuit_state", moodle), 2);
  EXPECT_EQ(Value("rebound_endpoint_operator_paused", moodle), 0);
  EXPECT_EQ(Value("rebound_rate_limit_tokens", moodle), -1);
  EXPECT_EQ(Value("rebound_jobs_waiting", {{"endpoint", "moodle"}, {"reason", "circuit_open"}}), 0);
  // A bucket again (a later reload), empty now.
  g.tokens = 0;
  telemetry_.OnGauges(1, g);
  EXPECT_EQ(Value("rebound_rate_limit_tokens", moodle), 0);
}

TEST_F(TelemetryTest, CircuitChangesSetTheStateCountTheTransitionAndLogOneLine) {
  telemetry_.OnCircuitChanged(0, engine::CircuitState::kClosed, engine::CircuitState::kOpen,
                              "12 of 20 attempts failed in 10s");
  telemetry_.OnCircuitChanged(0, engine::CircuitState::kOpen, engine::CircuitState::kHalfOpen,
                              "open for 2s");
  telemetry_.OnCircuitChanged(0, engine::CircuitState::kHalfOpen, engine::CircuitState::kOpen,
                              "a probe failed");
  const std::map<std::string, std::string> canvas = {{"endpoint", "canvas"}};
  EXPECT_EQ(Value("rebound_circuit_state", canvas), 2);
  EXPECT_EQ(Value("rebound_circuit_transitions_total", {{"endpoint", "canvas"}, {"to", "open"}}),
            2);
  EXPECT_EQ(
      Value("rebound_circuit_transitions_total", {{"endpoint", "canvas"}, {"to", "half_open"}}), 1);
  EXPECT_EQ(Value("rebound_circuit_transitions_total", {{"endpoint", "canvas"}, {"to", "closed"}}),
            0);
  EXPECT_EQ(Value("rebound_circuit_transitions_total", {{"endpoint", "moodle"}, {"to", "open"}}),
            0);
  telemetry_.OnCircuitChanged(0, engine::CircuitState::kHalfOpen, engine::CircuitState::kClosed,
                              "3 probes succeeded");
  EXPECT_EQ(Value("rebound_circuit_state", canvas), 0);

  ASSERT_EQ(lines_.size(), 4u);
  EXPECT_EQ(Line(0)["event"], "circuit_changed");
  EXPECT_EQ(Line(0)["level"], "warn");
  EXPECT_EQ(Line(0)["endpoint"], "canvas");
  EXPECT_EQ(Line(0)["reason"], "circuit CLOSED -> OPEN: 12 of 20 attempts failed in 10s");
  EXPECT_EQ(Line(1)["level"], "info");
  EXPECT_EQ(Line(3)["reason"], "circuit HALF_OPEN -> CLOSED: 3 probes succeeded");
  // An index the metrics do not know (endpoint removed): nothing, no crash.
  telemetry_.OnCircuitChanged(-1, engine::CircuitState::kClosed, engine::CircuitState::kOpen, "x");
  telemetry_.OnCircuitChanged(2, engine::CircuitState::kClosed, engine::CircuitState::kOpen, "x");
  EXPECT_EQ(lines_.size(), 4u);
}

TEST_F(TelemetryTest, RetriesDelayedOnlyCount) {
  telemetry_.OnRetryDelayed(1);
  telemetry_.OnRetryDelayed(1);
  telemetry_.OnRetryDelayed(5);
  EXPECT_EQ(Value("rebound_retries_delayed_total", {{"endpoint", "moodle"}}), 2);
  EXPECT_EQ(Value("rebound_retries_delayed_total", {{"endpoint", "canvas"}}), 0);
  EXPECT_TRUE(lines_.empty());
}

TEST_F(TelemetryTest, OperatorPauseAndResumeSetTheGaugeAndLogOneLineEach) {
  const absl::Time until = absl::FromUnixSeconds(1'800'003'600);
  telemetry_.OnOperatorPause(1, true, until, "LMS maintenance CHG-42");
  EXPECT_EQ(Value("rebound_endpoint_operator_paused", {{"endpoint", "moodle"}}), 1);
  telemetry_.OnOperatorPause(0, true, absl::InfiniteFuture(), "");
  telemetry_.OnOperatorPause(1, false, absl::InfiniteFuture(), "");
  EXPECT_EQ(Value("rebound_endpoint_operator_paused", {{"endpoint", "moodle"}}), 0);
  EXPECT_EQ(Value("rebound_endpoint_operator_paused", {{"endpoint", "canvas"}}), 1);

  ASSERT_EQ(lines_.size(), 3u);
  EXPECT_EQ(Line(0)["event"], "operator_paused");
  EXPECT_EQ(Line(0)["endpoint"], "moodle");
  EXPECT_EQ(Line(0)["reason"],
            "paused by an operator until 2027-01-15T09:00:00.000Z: LMS maintenance CHG-42");
  EXPECT_EQ(Line(1)["reason"], "paused by an operator until resumed");
  EXPECT_EQ(Line(2)["event"], "operator_resumed");
  EXPECT_EQ(Line(2)["endpoint"], "moodle");
}

TEST_F(TelemetryTest, CircuitLinesAreRateCappedByTheEventLog) {
  // A flapping breaker cannot flood the log: the event's bucket (1000 lines/s) drops the rest,
  // and the metrics still count every transition.
  for (int i = 0; i < 1500; ++i) {
    telemetry_.OnCircuitChanged(0, engine::CircuitState::kClosed, engine::CircuitState::kOpen,
                                "flap");
  }
  EXPECT_EQ(lines_.size(), 1000u);
  EXPECT_EQ(Value("rebound_circuit_transitions_total", {{"endpoint", "canvas"}, {"to", "open"}}),
            1500);
  clock_.Advance(absl::Seconds(1));
  telemetry_.OnCircuitChanged(0, engine::CircuitState::kOpen, engine::CircuitState::kClosed, "ok");
  EXPECT_EQ(Line(lines_.size() - 1)["suppressed"], 500);
}

TEST_F(TelemetryTest, BudgetGaugesReachTheBudgetsSeries) {
  const std::map<std::string, std::string> district = {{"budget", "district"}};
  // Before the engine's first report: the configured limit and a full bucket.
  EXPECT_EQ(Value("rebound_budget_quota_limit", district), 10000);
  EXPECT_EQ(Value("rebound_budget_tokens", district), 10);
  EXPECT_EQ(Value("rebound_budget_quota_used", district), 0);
  engine::BudgetGauges g;
  g.in_flight = 6;
  g.quota_used = 9800;
  g.quota_limit = 12000;  // a reload raised it
  g.tokens = 0.5;
  g.scopes = 3;
  telemetry_.OnBudgetGauges(0, g);
  EXPECT_EQ(Value("rebound_budget_in_flight", district), 6);
  EXPECT_EQ(Value("rebound_budget_quota_used", district), 9800);
  EXPECT_EQ(Value("rebound_budget_quota_limit", district), 12000);
  EXPECT_EQ(Value("rebound_budget_tokens", district), 0.5);
  EXPECT_EQ(Value("rebound_budget_scopes", district), 3);
  telemetry_.OnBudgetGauges(1, g);  // not a known budget: ignored
  telemetry_.OnBudgetGauges(-1, g);
  EXPECT_EQ(metrics_->budget_count(), 1u);
}

}  // namespace
}  // namespace rebound::app
