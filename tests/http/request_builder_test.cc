#include "server/http/request_builder.h"

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/http/traceparent.h"

namespace rebound::http {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

constexpr char kParent[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

config::EndpointConfig Endpoint() {
  config::EndpointConfig ep;
  ep.name = "lms";
  ep.base_url = "http://127.0.0.1:9/api";
  ep.headers = {{"Authorization", "Bearer t"}};
  ep.connect_timeout = absl::Seconds(2);
  ep.timeout = absl::Seconds(7);
  ep.max_response_bytes = 123;
  ep.proxy = "http://127.0.0.1:3128";
  return ep;
}

common::JobSpec Spec() {
  common::JobSpec s;
  s.idempotency_key = "k-1";
  s.method = "PUT";
  s.path = "/grades/1";
  s.body = "{\"score\":9}";
  return s;
}

TEST(BuildRequest, UrlHeadersBodyAndLimits) {
  std::mt19937_64 rng(1);
  common::JobSpec spec = Spec();
  spec.query = "a=1&b=2";
  spec.headers = {{"Content-Type", "application/json"}};
  spec.correlation_id = "corr-7";
  const Request r =
      BuildRequest(Endpoint(), "http://127.0.0.1:9/api", spec, "Idempotency-Key", rng);
  EXPECT_EQ(r.method, "PUT");
  EXPECT_EQ(r.url, "http://127.0.0.1:9/api/grades/1?a=1&b=2");
  EXPECT_THAT(
      r.headers,
      ElementsAre(Pair("Authorization", "Bearer t"), Pair("Content-Type", "application/json"),
                  Pair("Idempotency-Key", "k-1"), Pair("X-Correlation-Id", "corr-7")));
  EXPECT_EQ(r.body, "{\"score\":9}");
  EXPECT_EQ(r.connect_timeout, absl::Seconds(2));
  EXPECT_EQ(r.timeout, absl::Seconds(7));
  EXPECT_EQ(r.max_response_bytes, 123u);
  EXPECT_EQ(r.proxy, "http://127.0.0.1:3128");
}

TEST(BuildRequest, NoQueryNoCorrelationIdConfiguredIdempotencyHeader) {
  std::mt19937_64 rng(1);
  const Request r = BuildRequest(Endpoint(), "https://lms.test", Spec(), "X-Request-Key", rng);
  EXPECT_EQ(r.url, "https://lms.test/grades/1");  // the base URL given, not the config's
  EXPECT_THAT(r.headers,
              ElementsAre(Pair("Authorization", "Bearer t"), Pair("X-Request-Key", "k-1")));
}

TEST(BuildRequest, ValidTraceparentBecomesAChildInvalidOnePassesThrough) {
  std::mt19937_64 rng(1);
  common::JobSpec spec = Spec();
  spec.headers = {{"TraceParent", kParent}, {"x-other", "v"}};
  const Request r = BuildRequest(Endpoint(), "http://h", spec, "Idempotency-Key", rng);
  ASSERT_EQ(r.headers.size(), 4u);
  EXPECT_EQ(r.headers[1].first, "TraceParent");
  const std::string& child = r.headers[1].second;
  EXPECT_TRUE(ValidTraceparent(child)) << child;
  EXPECT_NE(child, kParent);
  EXPECT_EQ(CorrelationIdFromTraceparent(child), CorrelationIdFromTraceparent(kParent));
  EXPECT_EQ(r.headers[2], std::make_pair(std::string("x-other"), std::string("v")));

  spec.headers = {{"traceparent", "not-a-traceparent"}};
  const Request bad = BuildRequest(Endpoint(), "http://h", spec, "Idempotency-Key", rng);
  EXPECT_EQ(bad.headers[1],
            std::make_pair(std::string("traceparent"), std::string("not-a-traceparent")));
}

}  // namespace
}  // namespace rebound::http
