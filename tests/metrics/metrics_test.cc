#include "server/metrics/metrics.h"

#include <cstddef>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "grpc/health/v1/health.pb.h"
#include "grpc/reflection/v1alpha/reflection.pb.h"
#include "gtest/gtest.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "rebound/v1/rebound.pb.h"
#include "server/common/job.h"
#include "server/config/config.h"
#include "server/metrics/process_collector.h"

namespace rebound::metrics {
namespace {

using ::prometheus::ClientMetric;
using ::prometheus::MetricFamily;
using ::prometheus::MetricType;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

constexpr absl::string_view kTenant = "default-tenant-name";

config::Config TestConfig(size_t endpoints = 2) {
  config::Config c;
  c.server.default_tenant = std::string(kTenant);
  for (size_t i = 0; i < endpoints; ++i) {
    config::EndpointConfig e;
    e.name = "lms-" + std::to_string(i);
    e.base_url = "http://127.0.0.1:8080";
    c.endpoints.push_back(e);
  }
  return c;
}

std::map<std::string, std::string> LabelsOf(const ClientMetric& m) {
  std::map<std::string, std::string> out;
  for (const ClientMetric::Label& l : m.label) out[l.name] = l.value;
  return out;
}

std::set<std::string> LabelNames(const ClientMetric& m) {
  std::set<std::string> out;
  for (const ClientMetric::Label& l : m.label) out.insert(l.name);
  return out;
}

const MetricFamily* Find(const std::vector<MetricFamily>& families, absl::string_view name) {
  for (const MetricFamily& f : families) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

// The series of `family` whose labels include all of `want`.
std::vector<const ClientMetric*> Select(const std::vector<MetricFamily>& families,
                                        absl::string_view family,
                                        const std::map<std::string, std::string>& want) {
  std::vector<const ClientMetric*> out;
  const MetricFamily* f = Find(families, family);
  if (f == nullptr) return out;
  for (const ClientMetric& m : f->metric) {
    const std::map<std::string, std::string> labels = LabelsOf(m);
    bool match = true;
    for (const auto& [k, v] : want) {
      auto it = labels.find(k);
      match = match && it != labels.end() && it->second == v;
    }
    if (match) out.push_back(&m);
  }
  return out;
}

// The one series of `family` with exactly these labels; fails the test otherwise.
const ClientMetric& One(const std::vector<MetricFamily>& families, absl::string_view family,
                        const std::map<std::string, std::string>& labels) {
  static const ClientMetric kMissing;
  const MetricFamily* f = Find(families, family);
  if (f == nullptr) {
    ADD_FAILURE() << "no family " << family;
    return kMissing;
  }
  for (const ClientMetric& m : f->metric) {
    if (LabelsOf(m) == labels) return m;
  }
  ADD_FAILURE() << "no series of " << family << " with those labels";
  return kMissing;
}

// Time series as Prometheus counts them (a histogram: buckets incl. +Inf, _sum, _count).
size_t SeriesCount(const std::vector<MetricFamily>& families) {
  size_t n = 0;
  for (const MetricFamily& f : families) {
    for (const ClientMetric& m : f.metric) {
      n += f.type == MetricType::Histogram ? m.histogram.bucket.size() + 2 : 1;
    }
  }
  return n;
}

class MetricsTest : public ::testing::Test {
 protected:
  MetricsTest() : config_(TestConfig()) {
    metrics_ = Metrics::Create(registry_, config_, "1.2.3", "abc123");
  }
  std::vector<MetricFamily> Collect() const { return registry_.Collect(); }

  prometheus::Registry registry_;
  config::Config config_;
  std::unique_ptr<Metrics> metrics_;
};

TEST_F(MetricsTest, RegistersEveryFamilyOnceWithItsTypeAndLabelSet) {
  struct Want {
    MetricType type;
    std::set<std::string> labels;
  };
  const std::map<std::string, Want> want = {
      {"rebound_jobs_submitted_total", {MetricType::Counter, {"endpoint", "tenant"}}},
      {"rebound_jobs_deduplicated_total", {MetricType::Counter, {"endpoint", "tenant"}}},
      {"rebound_jobs_rejected_total", {MetricType::Counter, {"reason"}}},
      {"rebound_jobs_completed_total", {MetricType::Counter, {"endpoint", "result"}}},
      {"rebound_attempts_total", {MetricType::Counter, {"endpoint", "outcome", "code_class"}}},
      {"rebound_retries_total", {MetricType::Counter, {"endpoint", "reason"}}},
      {"rebound_retry_after_seconds", {MetricType::Histogram, {"endpoint"}}},
      {"rebound_backoff_delay_seconds", {MetricType::Histogram, {"endpoint"}}},
      {"rebound_attempt_duration_seconds", {MetricType::Histogram, {"endpoint"}}},
      {"rebound_job_duration_seconds", {MetricType::Histogram, {"endpoint", "result"}}},
      {"rebound_jobs", {MetricType::Gauge, {"endpoint", "state"}}},
      {"rebound_dead_letter_jobs", {MetricType::Gauge, {"endpoint"}}},
      {"rebound_endpoint_inflight", {MetricType::Gauge, {"endpoint"}}},
      {"rebound_circuit_state", {MetricType::Gauge, {"endpoint"}}},
      {"rebound_endpoint_paused", {MetricType::Gauge, {"endpoint"}}},
      {"rebound_circuit_transitions_total", {MetricType::Counter, {"endpoint", "to"}}},
      {"rebound_retries_delayed_total", {MetricType::Counter, {"endpoint"}}},
      {"rebound_jobs_waiting", {MetricType::Gauge, {"endpoint", "reason"}}},
      {"rebound_endpoint_allowed_in_flight", {MetricType::Gauge, {"endpoint"}}},
      {"rebound_retries_in_flight", {MetricType::Gauge, {"endpoint"}}},
      {"rebound_retry_budget", {MetricType::Gauge, {"endpoint"}}},
      {"rebound_endpoint_operator_paused", {MetricType::Gauge, {"endpoint"}}},
      {"rebound_rate_limit_tokens", {MetricType::Gauge, {"endpoint"}}},
      {"rebound_throttles_total", {MetricType::Counter, {"endpoint", "wait"}}},
      {"rebound_rate_limit_headers_ignored_total", {MetricType::Counter, {"endpoint", "reason"}}},
      {"rebound_throttle_level", {MetricType::Gauge, {"endpoint"}}},
      {"rebound_pacing_allowed_in_flight", {MetricType::Gauge, {"endpoint"}}},
      {"rebound_quota_remaining", {MetricType::Gauge, {"endpoint"}}},
      {"rebound_store_commit_duration_seconds", {MetricType::Histogram, {}}},
      {"rebound_store_batch_size", {MetricType::Histogram, {}}},
      {"grpc_server_started_total",
       {MetricType::Counter, {"grpc_service", "grpc_method", "grpc_type"}}},
      {"grpc_server_handled_total",
       {MetricType::Counter, {"grpc_service", "grpc_method", "grpc_type", "grpc_code"}}},
      {"grpc_server_handling_seconds",
       {MetricType::Histogram, {"grpc_service", "grpc_method", "grpc_type"}}},
      {"grpc_server_msg_received_total",
       {MetricType::Counter, {"grpc_service", "grpc_method", "grpc_type"}}},
      {"grpc_server_msg_sent_total",
       {MetricType::Counter, {"grpc_service", "grpc_method", "grpc_type"}}},
      {"rebound_store_jobs", {MetricType::Gauge, {"class"}}},
      {"rebound_store_bytes", {MetricType::Gauge, {}}},
      {"rebound_store_free_bytes", {MetricType::Gauge, {}}},
      {"rebound_store_purged_total", {MetricType::Counter, {}}},
      {"rebound_watchers", {MetricType::Gauge, {}}},
      {"rebound_build_info", {MetricType::Gauge, {"version", "revision"}}},
  };
  const std::vector<MetricFamily> families = Collect();
  std::vector<std::string> names;
  for (const MetricFamily& f : families) {
    names.push_back(f.name);
    auto it = want.find(f.name);
    if (it == want.end()) {
      ADD_FAILURE() << "unexpected family " << f.name;
      continue;
    }
    EXPECT_EQ(f.type, it->second.type) << f.name;
    EXPECT_FALSE(f.help.empty()) << f.name;
    ASSERT_FALSE(f.metric.empty()) << f.name << " has no series";
    for (const ClientMetric& m : f.metric) EXPECT_EQ(LabelNames(m), it->second.labels) << f.name;
  }
  std::vector<std::string> expected;
  for (const auto& [name, w] : want) expected.push_back(name);
  // Each name exactly once.
  EXPECT_THAT(names, UnorderedElementsAreArray(expected));
}

TEST_F(MetricsTest, PreCreatesEverySeriesOfEveryConfiguredEndpointAtZero) {
  const std::vector<MetricFamily> families = Collect();
  const std::map<std::string, size_t> per_endpoint = {
      {"rebound_jobs_submitted_total", 2},
      {"rebound_jobs_deduplicated_total", 2},
      {"rebound_jobs_completed_total", kResultCount},
      {"rebound_attempts_total", kOutcomeCount * kCodeClassCount},
      {"rebound_retries_total", kRetryReasonCount},
      {"rebound_retry_after_seconds", 1},
      {"rebound_backoff_delay_seconds", 1},
      {"rebound_attempt_duration_seconds", 1},
      {"rebound_job_duration_seconds", kResultCount},
      {"rebound_jobs", kJobGaugeStateCount},
      {"rebound_dead_letter_jobs", 1},
      {"rebound_endpoint_inflight", 1},
      {"rebound_circuit_state", 1},
      {"rebound_endpoint_paused", 1},
      {"rebound_circuit_transitions_total", kCircuitStateCount},
      {"rebound_retries_delayed_total", 1},
      {"rebound_jobs_waiting", kWaitingReasonCount},
      {"rebound_endpoint_allowed_in_flight", 1},
      {"rebound_retries_in_flight", 1},
      {"rebound_retry_budget", 1},
      {"rebound_endpoint_operator_paused", 1},
      {"rebound_rate_limit_tokens", 1},  // -1 until a bucket is reported (below)
      {"rebound_throttles_total", policy::kThrottleWaitCount},
      {"rebound_rate_limit_headers_ignored_total", policy::kIgnoredReasonCount},
      {"rebound_throttle_level", 1},
      {"rebound_pacing_allowed_in_flight", 1},
      {"rebound_quota_remaining", 1},  // -1 until a reading is reported
  };
  ASSERT_EQ(metrics_->endpoint_count(), 2u);
  for (size_t i = 0; i < config_.endpoints.size(); ++i) {
    const std::string& name = config_.endpoints[i].name;
    EXPECT_EQ(metrics_->endpoint(i).name, name);
    EXPECT_EQ(metrics_->FindEndpoint(name), &metrics_->endpoint(i));
    for (const auto& [family, count] : per_endpoint) {
      const std::vector<const ClientMetric*> series =
          Select(families, family, {{"endpoint", name}});
      EXPECT_EQ(series.size(), count) << family << " for " << name;
      for (const ClientMetric* m : series) {
        EXPECT_EQ(m->counter.value, 0) << family;
        const bool minus_one =
            family == "rebound_rate_limit_tokens" || family == "rebound_quota_remaining";
        EXPECT_EQ(m->gauge.value, minus_one ? -1 : 0) << family;
        EXPECT_EQ(m->histogram.sample_count, 0u) << family;
      }
    }
  }
  EXPECT_EQ(metrics_->FindEndpoint("not-configured"), nullptr);
  // Every enum combination of attempts exists.
  for (size_t o = 0; o < kOutcomeCount; ++o) {
    for (size_t c = 0; c < kCodeClassCount; ++c) {
      One(families, "rebound_attempts_total",
          {{"endpoint", "lms-1"},
           {"outcome", std::string(OutcomeName(static_cast<Outcome>(o)))},
           {"code_class", std::string(CodeClassName(static_cast<CodeClass>(c)))}});
    }
  }
  for (size_t s = 0; s < kJobGaugeStateCount; ++s) {
    One(families, "rebound_jobs",
        {{"endpoint", "lms-0"},
         {"state", std::string(JobGaugeStateName(static_cast<JobGaugeState>(s)))}});
  }
  for (const char* reason :
       {"backoff", "retry_after", "endpoint_paused", "circuit_open", "rate_limited", "retry_budget",
        "ordering_blocked", "operator_paused", "quota_exhausted", "quota_reserved"}) {
    One(families, "rebound_jobs_waiting", {{"endpoint", "lms-1"}, {"reason", reason}});
  }
  for (const char* to : {"closed", "half_open", "open"}) {
    One(families, "rebound_circuit_transitions_total", {{"endpoint", "lms-0"}, {"to", to}});
  }
  EXPECT_EQ(Select(families, "rebound_jobs_rejected_total", {}).size(), kRejectReasonCount);
  EXPECT_EQ(Select(families, "grpc_server_handled_total", {}).size(),
            kGrpcMethodCount * kGrpcCodeCount);
  for (const char* family : {"grpc_server_started_total", "grpc_server_handling_seconds",
                             "grpc_server_msg_received_total", "grpc_server_msg_sent_total"}) {
    EXPECT_EQ(Select(families, family, {}).size(), kGrpcMethodCount) << family;
  }
  One(families, "grpc_server_handled_total",
      {{"grpc_service", "rebound.v1.Rebound"},
       {"grpc_method", "WatchSync"},
       {"grpc_type", "server_stream"},
       {"grpc_code", "DEADLINE_EXCEEDED"}});
  One(families, "grpc_server_started_total",
      {{"grpc_service", "other"}, {"grpc_method", "other"}, {"grpc_type", "bidi_stream"}});
  EXPECT_EQ(One(families, "rebound_build_info", {{"version", "1.2.3"}, {"revision", "abc123"}})
                .gauge.value,
            1);
}

TEST_F(MetricsTest, HistogramsUseTheDocumentedBuckets) {
  const std::vector<MetricFamily> families = Collect();
  auto bounds = [&](absl::string_view family) {
    std::vector<double> out;
    const std::vector<const ClientMetric*> s = Select(families, family, {});
    if (s.empty()) return out;
    for (const ClientMetric::Bucket& b : s.front()->histogram.bucket) out.push_back(b.upper_bound);
    out.pop_back();  // +Inf
    return out;
  };
  auto v = [](const auto& a) { return std::vector<double>(a.begin(), a.end()); };
  EXPECT_EQ(bounds("rebound_attempt_duration_seconds"), v(buckets::kAttemptDuration));
  EXPECT_EQ(bounds("rebound_retry_after_seconds"), v(buckets::kDelay));
  EXPECT_EQ(bounds("rebound_backoff_delay_seconds"), v(buckets::kDelay));
  EXPECT_EQ(bounds("rebound_job_duration_seconds"), v(buckets::kJobDuration));
  EXPECT_EQ(bounds("rebound_store_commit_duration_seconds"), v(buckets::kStoreCommit));
  EXPECT_EQ(bounds("rebound_store_batch_size"), v(buckets::kBatchSize));
  EXPECT_EQ(bounds("grpc_server_handling_seconds"), v(buckets::kGrpcHandling));
  EXPECT_EQ(buckets::kAttemptDuration.front(), 0.001);
  EXPECT_EQ(buckets::kAttemptDuration.back(), 60);
  EXPECT_EQ(buckets::kDelay.front(), 0.01);
  EXPECT_EQ(buckets::kDelay.back(), 3600);
  EXPECT_EQ(buckets::kJobDuration.back(), 86400);
  EXPECT_EQ(buckets::kStoreCommit.front(), 0.0001);
  EXPECT_EQ(buckets::kBatchSize.back(), 4096);
}

TEST(MetricsSeriesCount, WorstCaseMatchesWhatTheRegistryAndProcessCollectorExpose) {
  for (size_t endpoints : {0, 1, 2, 7}) {
    prometheus::Registry registry;
    const config::Config config = TestConfig(endpoints);
    const std::unique_ptr<Metrics> metrics = Metrics::Create(registry, config, "v", "r");
    std::vector<MetricFamily> families = registry.Collect();
    EXPECT_EQ(SeriesCount(families), endpoints * kSeriesPerEndpoint + kRegistryGlobalSeries);
    for (MetricFamily& f : ProcessCollector().Collect()) families.push_back(std::move(f));
    // The exposer's own series are counted from a real scrape (metrics_server_test.cc).
    EXPECT_EQ(SeriesCount(families) + kExposerSeries, WorstCaseSeries(endpoints))
        << endpoints << " endpoints";
  }
  EXPECT_EQ(kSeriesPerEndpoint, 244u);
  EXPECT_EQ(kGlobalSeries, 658u);
  EXPECT_EQ(WorstCaseSeries(10), 3098u);
  EXPECT_EQ(WorstCaseSeries(10, 4), 3118u);
}

TEST(MetricsSeriesCount, EachBudgetHasItsFiveSeriesAndAReloadAddsThemWithoutMovingOthers) {
  prometheus::Registry registry;
  config::Config config = TestConfig(2);
  for (const char* name : {"app", "district"}) {
    config::BudgetConfig b;
    b.name = name;
    b.max_in_flight = 4;
    config.budgets.push_back(b);
  }
  const std::unique_ptr<Metrics> metrics = Metrics::Create(registry, config, "v", "r");
  EXPECT_EQ(metrics->budget_count(), 2u);
  EXPECT_EQ(SeriesCount(registry.Collect()),
            2 * kSeriesPerEndpoint + 2 * kSeriesPerBudget + kRegistryGlobalSeries);
  prometheus::Gauge* before = metrics->budget(0).in_flight;
  config::BudgetConfig added;
  added.name = "blackboard-app";
  added.quota.limit = 10000;
  BudgetMetrics& b = metrics->AddBudget(added);
  EXPECT_EQ(&b, &metrics->budget(2));
  EXPECT_EQ(metrics->budget(0).in_flight, before);
  EXPECT_EQ(b.quota_limit->Value(), 10000);
  EXPECT_EQ(b.tokens->Value(), -1);  // no bucket
  EXPECT_EQ(SeriesCount(registry.Collect()),
            2 * kSeriesPerEndpoint + 3 * kSeriesPerBudget + kRegistryGlobalSeries);
}

TEST(MetricsAddEndpoint, AReloadedEndpointGetsEverySeriesWithoutMovingTheOthers) {
  prometheus::Registry registry;
  const std::unique_ptr<Metrics> metrics = Metrics::Create(registry, TestConfig(2), "v", "r");
  prometheus::Counter* before = metrics->endpoint(0).attempts[0][0];
  EXPECT_EQ(metrics->endpoint_count(), 2u);
  EndpointMetrics& added = metrics->AddEndpoint("brightspace");
  EXPECT_EQ(metrics->endpoint_count(), 3u);
  EXPECT_EQ(&added, &metrics->endpoint(2));
  EXPECT_EQ(added.name, "brightspace");
  EXPECT_EQ(metrics->endpoint(0).attempts[0][0], before);
  EXPECT_EQ(SeriesCount(registry.Collect()), 3 * kSeriesPerEndpoint + kRegistryGlobalSeries);
}

TEST(CodeClassOf, MapsStatusesToTheirClass) {
  const std::vector<std::pair<int, CodeClass>> table = {
      {0, CodeClass::kNone},   {-1, CodeClass::kNone},  {99, CodeClass::kNone},
      {100, CodeClass::kNone}, {199, CodeClass::kNone}, {200, CodeClass::k2xx},
      {204, CodeClass::k2xx},  {299, CodeClass::k2xx},  {301, CodeClass::k3xx},
      {399, CodeClass::k3xx},  {400, CodeClass::k4xx},  {404, CodeClass::k4xx},
      {428, CodeClass::k4xx},  {429, CodeClass::k429},  {430, CodeClass::k4xx},
      {499, CodeClass::k4xx},  {500, CodeClass::k5xx},  {503, CodeClass::k5xx},
      {599, CodeClass::k5xx},  {600, CodeClass::kNone}, {1000, CodeClass::kNone},
  };
  for (const auto& [status, want] : table) {
    EXPECT_EQ(CodeClassOf(status), want) << status;
  }
  EXPECT_EQ(CodeClassName(CodeClassOf(429)), "429");
  EXPECT_EQ(CodeClassName(CodeClassOf(0)), "none");
  EXPECT_EQ(CodeClassName(CodeClassOf(302)), "3xx");
}

TEST(LabelNames, EnumsNameTheirLabelValues) {
  EXPECT_EQ(OutcomeName(Outcome::kSuccess), "success");
  EXPECT_EQ(OutcomeName(Outcome::kRetryable), "retryable");
  EXPECT_EQ(OutcomeName(Outcome::kRateLimited), "rate_limited");
  EXPECT_EQ(OutcomeName(Outcome::kPermanent), "permanent");
  EXPECT_EQ(OutcomeName(Outcome::kTransportError), "transport_error");
  EXPECT_EQ(OutcomeName(Outcome::kTimeout), "timeout");
  EXPECT_EQ(RetryReasonName(RetryReason::kStatus), "status");
  EXPECT_EQ(RetryReasonName(RetryReason::kTransport), "transport");
  EXPECT_EQ(RetryReasonName(RetryReason::kTimeout), "timeout");
  EXPECT_EQ(RetryReasonName(RetryReason::kRateLimited), "rate_limited");
  EXPECT_EQ(ResultName(Result::kSucceeded), "succeeded");
  EXPECT_EQ(ResultName(Result::kFailed), "failed");
  EXPECT_EQ(ResultName(Result::kExhausted), "exhausted");
  EXPECT_EQ(ResultName(Result::kCancelled), "cancelled");
  EXPECT_EQ(ResultName(Result::kSuperseded), "superseded");
  EXPECT_EQ(RejectReasonName(RejectReason::kInvalid), "invalid");
  EXPECT_EQ(RejectReasonName(RejectReason::kResourceExhausted), "resource_exhausted");
  EXPECT_EQ(RejectReasonName(RejectReason::kUnauthenticated), "unauthenticated");
  EXPECT_EQ(RejectReasonName(RejectReason::kAlreadyExists), "already_exists");
  EXPECT_EQ(RejectReasonName(RejectReason::kUnavailable), "unavailable");
  EXPECT_EQ(JobGaugeStateName(JobGaugeState::kQueued), "queued");
  EXPECT_EQ(JobGaugeStateName(JobGaugeState::kBlocked), "blocked");
  EXPECT_EQ(JobGaugeStateName(JobGaugeState::kRunning), "running");
  EXPECT_EQ(JobGaugeStateName(JobGaugeState::kWaitingBackoff), "waiting_backoff");
  EXPECT_EQ(JobGaugeStateName(JobGaugeState::kWaitingRetryAfter), "waiting_retry_after");
  EXPECT_EQ(JobGaugeStateName(JobGaugeState::kWaitingPaused), "waiting_paused");
  // rebound_jobs_waiting{reason}: the proto names of WaitReason in lower case, none excluded.
  for (int r = 1; r < common::kWaitReasonCount; ++r) {
    const auto reason = static_cast<common::WaitReason>(r);
    EXPECT_EQ(WaitingReasonName(reason), absl::AsciiStrToLower(common::WaitReasonName(reason)));
  }
  EXPECT_EQ(WaitingReasonName(common::WaitReason::kNone), "");
  EXPECT_EQ(CircuitToName(0), "closed");
  EXPECT_EQ(CircuitToName(1), "half_open");
  EXPECT_EQ(CircuitToName(2), "open");
  EXPECT_EQ(CircuitToName(3), "");
}

// "service/method" of an entry of kGrpcMethods.
std::string Path(const GrpcMethod& m) { return absl::StrCat(m.service, "/", m.method); }

TEST(GrpcLabels, MethodsOutsideTheFixedListAreOtherAndCodesHaveCanonicalNames) {
  EXPECT_EQ(Path(kGrpcMethods[GrpcMethodIndex("/rebound.v1.Rebound/SubmitSync")]),
            "rebound.v1.Rebound/SubmitSync");
  EXPECT_EQ(Path(kGrpcMethods[GrpcMethodIndex("rebound.v1.Rebound/ReplaySync")]),
            "rebound.v1.Rebound/ReplaySync");
  EXPECT_EQ(Path(kGrpcMethods[GrpcMethodIndex("/grpc.health.v1.Health/Watch")]),
            "grpc.health.v1.Health/Watch");
  EXPECT_EQ(Path(kGrpcMethods[GrpcMethodIndex("/evil.Service/" + std::string(100, 'x'))]),
            "other/other");
  EXPECT_EQ(Path(kGrpcMethods[GrpcMethodIndex("")]), "other/other");
  EXPECT_EQ(Path(kGrpcMethods[GrpcMethodIndex("/rebound.v1.Rebound/Other")]), "other/other");
  EXPECT_EQ(Path(kGrpcMethods[GrpcMethodIndex("/rebound.v1.Rebound")]), "other/other");
  EXPECT_EQ(Path(kGrpcMethods[GrpcMethodIndex("/rebound.v1/Rebound/SubmitSync")]), "other/other");
  EXPECT_EQ(Path(kGrpcMethods[GrpcMethodIndex("/other/other")]), "other/other");
  EXPECT_EQ(GrpcTypeName(GrpcType::kUnary), "unary");
  EXPECT_EQ(GrpcTypeName(GrpcType::kClientStream), "client_stream");
  EXPECT_EQ(GrpcTypeName(GrpcType::kServerStream), "server_stream");
  EXPECT_EQ(GrpcTypeName(GrpcType::kBidiStream), "bidi_stream");
  EXPECT_EQ(GrpcCodeName(0), "OK");
  EXPECT_EQ(GrpcCodeName(3), "INVALID_ARGUMENT");
  EXPECT_EQ(GrpcCodeName(5), "NOT_FOUND");
  EXPECT_EQ(GrpcCodeName(8), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(GrpcCodeName(14), "UNAVAILABLE");
  EXPECT_EQ(GrpcCodeName(16), "UNAUTHENTICATED");
  EXPECT_EQ(GrpcCodeName(17), "UNKNOWN");
  EXPECT_EQ(GrpcCodeName(-1), "UNKNOWN");
}

TEST_F(MetricsTest, TenantLabelIsTheConfiguredDefaultOrOtherNeverTheRequestTenant) {
  const size_t before = SeriesCount(Collect());
  metrics_->Submitted(0, kTenant).Increment();
  metrics_->Submitted(0, "acme-corp").Increment();
  metrics_->Submitted(0, "evil\"tenant\n{x=\"1\"}").Increment();
  metrics_->Submitted(0, "").Increment();
  metrics_->Deduplicated(1, "acme-corp").Increment();
  metrics_->endpoint(1).RecordSubmitted(metrics_->TenantClassOf(kTenant));
  EXPECT_EQ(metrics_->TenantClassOf(kTenant), TenantClass::kDefault);
  EXPECT_EQ(metrics_->TenantClassOf("Default-Tenant-Name"), TenantClass::kOther);

  const std::vector<MetricFamily> families = Collect();
  EXPECT_EQ(SeriesCount(families), before) << "request data created a series";
  const std::string tenant(kTenant);
  EXPECT_EQ(
      One(families, "rebound_jobs_submitted_total", {{"endpoint", "lms-0"}, {"tenant", tenant}})
          .counter.value,
      1);
  EXPECT_EQ(
      One(families, "rebound_jobs_submitted_total", {{"endpoint", "lms-0"}, {"tenant", "other"}})
          .counter.value,
      3);
  EXPECT_EQ(
      One(families, "rebound_jobs_submitted_total", {{"endpoint", "lms-1"}, {"tenant", tenant}})
          .counter.value,
      1);
  EXPECT_EQ(
      One(families, "rebound_jobs_deduplicated_total", {{"endpoint", "lms-1"}, {"tenant", "other"}})
          .counter.value,
      1);
  std::set<std::string> tenants;
  for (const MetricFamily& f : families) {
    for (const ClientMetric& m : f.metric) {
      const auto labels = LabelsOf(m);
      if (auto it = labels.find("tenant"); it != labels.end()) tenants.insert(it->second);
    }
  }
  EXPECT_EQ(tenants, (std::set<std::string>{tenant, "other"}));
}

TEST_F(MetricsTest, HelpersUpdateExactlyTheirPreCreatedSeries) {
  const size_t before = SeriesCount(Collect());
  EndpointMetrics& e = metrics_->endpoint(1);
  e.RecordAttempt(Outcome::kRetryable, CodeClassOf(503), absl::Milliseconds(20));
  e.RecordAttempt(Outcome::kRetryable, CodeClassOf(503), absl::Milliseconds(30));
  e.RecordAttempt(Outcome::kSuccess, CodeClassOf(200), absl::Milliseconds(5));
  e.RecordRetry(RetryReason::kStatus, absl::Milliseconds(400));
  e.RecordRetry(RetryReason::kStatus, absl::Milliseconds(800));
  e.RecordRetryAfter(absl::Seconds(2));
  e.RecordCompleted(Result::kSucceeded, absl::Seconds(3));
  e.JobEntered(JobGaugeState::kQueued);
  e.JobEntered(JobGaugeState::kQueued);
  e.JobMoved(JobGaugeState::kQueued, JobGaugeState::kRunning);
  e.SetPaused(true);
  e.inflight->Increment();
  e.RecordCircuitChange(2);
  e.RecordCircuitChange(3);   // not a state: ignored
  e.RecordCircuitChange(-1);  // likewise
  e.SetWaiting(common::WaitReason::kCircuitOpen, 5);
  e.SetWaiting(common::WaitReason::kNone, 9);  // ready jobs: no series
  e.SetOperatorPaused(true);
  e.SetTokens(2.5);
  metrics_->endpoint(0).SetTokens(-0.5);  // any negative level: no bucket, -1
  e.throttles[static_cast<size_t>(policy::ThrottleWait::kBackoff) - 1]->Increment();
  e.headers_ignored[static_cast<size_t>(policy::IgnoredReason::kPast)]->Increment(2);
  e.throttle_level->Set(3);
  e.paced_in_flight->Set(4);
  e.quota_remaining->Set(123.5);
  metrics_->Rejected(RejectReason::kResourceExhausted).Increment();
  metrics_->StoreCommitDuration().Observe(0.002);
  metrics_->StoreBatchSize().Observe(64);

  const std::vector<MetricFamily> f = Collect();
  EXPECT_EQ(SeriesCount(f), before);
  const std::string ep = "lms-1";
  EXPECT_EQ(One(f, "rebound_attempts_total",
                {{"endpoint", ep}, {"outcome", "retryable"}, {"code_class", "5xx"}})
                .counter.value,
            2);
  EXPECT_EQ(One(f, "rebound_attempts_total",
                {{"endpoint", ep}, {"outcome", "success"}, {"code_class", "2xx"}})
                .counter.value,
            1);
  EXPECT_EQ(One(f, "rebound_attempts_total",
                {{"endpoint", "lms-0"}, {"outcome", "success"}, {"code_class", "2xx"}})
                .counter.value,
            0);
  const ClientMetric& duration = One(f, "rebound_attempt_duration_seconds", {{"endpoint", ep}});
  EXPECT_EQ(duration.histogram.sample_count, 3u);
  EXPECT_NEAR(duration.histogram.sample_sum, 0.055, 1e-9);
  EXPECT_EQ(One(f, "rebound_retries_total", {{"endpoint", ep}, {"reason", "status"}}).counter.value,
            2);
  const ClientMetric& backoff = One(f, "rebound_backoff_delay_seconds", {{"endpoint", ep}});
  EXPECT_EQ(backoff.histogram.sample_count, 2u);
  EXPECT_NEAR(backoff.histogram.sample_sum, 1.2, 1e-9);
  EXPECT_EQ(One(f, "rebound_retry_after_seconds", {{"endpoint", ep}}).histogram.sample_count, 1u);
  EXPECT_EQ(One(f, "rebound_jobs_completed_total", {{"endpoint", ep}, {"result", "succeeded"}})
                .counter.value,
            1);
  EXPECT_EQ(One(f, "rebound_job_duration_seconds", {{"endpoint", ep}, {"result", "succeeded"}})
                .histogram.sample_count,
            1u);
  EXPECT_EQ(One(f, "rebound_jobs", {{"endpoint", ep}, {"state", "queued"}}).gauge.value, 1);
  EXPECT_EQ(One(f, "rebound_jobs", {{"endpoint", ep}, {"state", "running"}}).gauge.value, 1);
  EXPECT_EQ(One(f, "rebound_endpoint_paused", {{"endpoint", ep}}).gauge.value, 1);
  EXPECT_EQ(One(f, "rebound_endpoint_inflight", {{"endpoint", ep}}).gauge.value, 1);
  EXPECT_EQ(One(f, "rebound_circuit_state", {{"endpoint", ep}}).gauge.value, 2);
  EXPECT_EQ(One(f, "rebound_circuit_state", {{"endpoint", "lms-0"}}).gauge.value, 0);
  EXPECT_EQ(
      One(f, "rebound_circuit_transitions_total", {{"endpoint", ep}, {"to", "open"}}).counter.value,
      1);
  EXPECT_EQ(One(f, "rebound_circuit_transitions_total", {{"endpoint", ep}, {"to", "closed"}})
                .counter.value,
            0);
  EXPECT_EQ(
      One(f, "rebound_jobs_waiting", {{"endpoint", ep}, {"reason", "circuit_open"}}).gauge.value,
      5);
  EXPECT_EQ(One(f, "rebound_jobs_waiting", {{"endpoint", ep}, {"reason", "backoff"}}).gauge.value,
            0);
  EXPECT_EQ(One(f, "rebound_endpoint_operator_paused", {{"endpoint", ep}}).gauge.value, 1);
  EXPECT_EQ(One(f, "rebound_rate_limit_tokens", {{"endpoint", ep}}).gauge.value, 2.5);
  EXPECT_EQ(One(f, "rebound_rate_limit_tokens", {{"endpoint", "lms-0"}}).gauge.value, -1);
  EXPECT_EQ(
      One(f, "rebound_throttles_total", {{"endpoint", ep}, {"wait", "backoff"}}).counter.value, 1);
  EXPECT_EQ(
      One(f, "rebound_throttles_total", {{"endpoint", ep}, {"wait", "retry_after"}}).counter.value,
      0);
  EXPECT_EQ(
      One(f, "rebound_rate_limit_headers_ignored_total", {{"endpoint", ep}, {"reason", "past"}})
          .counter.value,
      2);
  EXPECT_EQ(One(f, "rebound_throttle_level", {{"endpoint", ep}}).gauge.value, 3);
  EXPECT_EQ(One(f, "rebound_pacing_allowed_in_flight", {{"endpoint", ep}}).gauge.value, 4);
  EXPECT_EQ(One(f, "rebound_quota_remaining", {{"endpoint", ep}}).gauge.value, 123.5);
  EXPECT_EQ(One(f, "rebound_jobs_rejected_total", {{"reason", "resource_exhausted"}}).counter.value,
            1);
  EXPECT_EQ(One(f, "rebound_store_commit_duration_seconds", {}).histogram.sample_count, 1u);
  const ClientMetric& batch = One(f, "rebound_store_batch_size", {});
  EXPECT_EQ(batch.histogram.sample_count, 1u);
  EXPECT_EQ(batch.histogram.sample_sum, 64);
}

TEST(MetricsDefaultTenant, ADefaultTenantNamedOtherSharesTheOtherSeries) {
  prometheus::Registry registry;
  config::Config config = TestConfig(1);
  config.server.default_tenant = "other";
  const std::unique_ptr<Metrics> metrics = Metrics::Create(registry, config, "v", "r");
  metrics->Submitted(0, "other").Increment();
  metrics->Submitted(0, "someone").Increment();
  const std::vector<MetricFamily> f = registry.Collect();
  EXPECT_EQ(Select(f, "rebound_jobs_submitted_total", {}).size(), 1u);
  EXPECT_EQ(One(f, "rebound_jobs_submitted_total", {{"endpoint", "lms-0"}, {"tenant", "other"}})
                .counter.value,
            2);
}

// The fixed list follows the services' own definitions: every method of rebound.v1.Rebound is
// listed, and each listed method has the grpc_type its descriptor says.
TEST(GrpcLabels, TheFixedListMatchesTheServiceDescriptors) {
  // Naming a message of each file links its descriptors into the generated pool.
  ASSERT_NE(v1::SyncJob::descriptor(), nullptr);
  ASSERT_NE(grpc::health::v1::HealthCheckRequest::descriptor(), nullptr);
  ASSERT_NE(grpc::reflection::v1alpha::ServerReflectionRequest::descriptor(), nullptr);
  const google::protobuf::DescriptorPool& pool =
      *google::protobuf::DescriptorPool::generated_pool();
  const google::protobuf::ServiceDescriptor* rebound = pool.FindServiceByName("rebound.v1.Rebound");
  ASSERT_NE(rebound, nullptr);
  for (int i = 0; i < rebound->method_count(); ++i) {
    const std::string path = absl::StrCat("/rebound.v1.Rebound/", rebound->method(i)->name());
    EXPECT_NE(GrpcMethodIndex(path), kGrpcMethodCount - 1) << path << " is not in kGrpcMethods";
  }
  for (size_t i = 0; i + 1 < kGrpcMethodCount; ++i) {
    const GrpcMethod& m = kGrpcMethods[i];
    const google::protobuf::MethodDescriptor* d =
        pool.FindMethodByName(absl::StrCat(m.service, ".", m.method));
    ASSERT_NE(d, nullptr) << Path(m);
    const GrpcType want =
        d->client_streaming()
            ? (d->server_streaming() ? GrpcType::kBidiStream : GrpcType::kClientStream)
            : (d->server_streaming() ? GrpcType::kServerStream : GrpcType::kUnary);
    EXPECT_EQ(GrpcTypeName(m.type), GrpcTypeName(want)) << Path(m);
    EXPECT_EQ(GrpcMethodIndex(absl::StrCat("/", Path(m))), i) << Path(m);
  }
}

}  // namespace
}  // namespace rebound::metrics
