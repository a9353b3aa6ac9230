// Request validation: every refusal names its field; paths cannot leave the endpoint.
#include "server/api/validation.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rebound::api {
namespace {

using ::testing::HasSubstr;

config::Config TestConfig() {
  config::Config cfg;
  auto p = std::make_shared<policy::Policy>();
  p->name = "default";
  cfg.policies["default"] = p;
  config::EndpointConfig ep;
  ep.name = "canvas";
  ep.base_url = "https://canvas.example.edu";
  ep.allowed_path_prefixes = {"/api/v1/", "/lti"};
  ep.headers.push_back({"Authorization", "Bearer x", true});
  cfg.endpoints.push_back(ep);
  cfg.server.max_body_bytes = 16;
  return cfg;
}

v1::SyncRequest Good() {
  v1::SyncRequest r;
  r.set_idempotency_key("k1");
  r.set_endpoint("canvas");
  r.set_method("put");
  r.set_path("/api/v1/courses/1/grades");
  r.set_body("{}");
  return r;
}

TEST(CheckPath, AcceptsPathsUnderAnAllowedPrefix) {
  const auto cfg = TestConfig();
  const auto& ep = cfg.endpoints[0];
  EXPECT_TRUE(CheckPath(ep, "/api/v1/courses/1", "").ok());
  EXPECT_TRUE(CheckPath(ep, "/api/v1/courses/1", "per_page=100&page=2").ok());
  EXPECT_TRUE(CheckPath(ep, "/lti", "").ok());
  EXPECT_TRUE(CheckPath(ep, "/lti/launch", "").ok());
}

TEST(CheckPath, PrefixesMatchWholeSegments) {
  const auto cfg = TestConfig();
  const auto& ep = cfg.endpoints[0];
  EXPECT_FALSE(CheckPath(ep, "/lti-admin/x", "").ok());
  EXPECT_FALSE(CheckPath(ep, "/ltiadmin", "").ok());
  EXPECT_FALSE(CheckPath(ep, "/api/v2/x", "").ok());
}

TEST(CheckPath, RefusesEveryWayOutOfTheEndpoint) {
  const auto cfg = TestConfig();
  const auto& ep = cfg.endpoints[0];
  for (const char* path :
       {"api/v1/x", "//evil.example/api/v1/", "/api/v1/../../admin", "/api/v1/%2e%2e/admin",
        "/api/v1/%2E%2e/admin", "/api/v1/%2fadmin", "/api/v1/x@evil.example", "/api/v1/a\\b",
        "/api/v1/a#frag", "/api/v1/a?x=1", "/api/v1/a\r\nHost: evil", "/api/v1/a b",
        "/api/v1/%252e%252e/admin", "/api/v1/%c0%ae%c0%ae/admin", "/api/v1//x"}) {
    EXPECT_FALSE(CheckPath(ep, path, "").ok()) << path;
  }
}

TEST(ValidateSyncRequest, AcceptsAGoodRequestAndNormalisesTheMethod) {
  const auto cfg = TestConfig();
  auto spec = ValidateSyncRequest(Good(), cfg, "tenant-a", "request");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->method, "PUT");
  EXPECT_EQ(spec->tenant, "tenant-a");
}

TEST(ValidateSyncRequest, EachRefusalNamesItsField) {
  const auto cfg = TestConfig();
  struct Case {
    std::function<void(v1::SyncRequest&)> mutate;
    const char* field;
  };
  const std::vector<Case> cases = {
      {[](auto& r) { r.clear_idempotency_key(); }, "requests[2].idempotency_key"},
      {[](auto& r) { r.set_idempotency_key(std::string(300, 'k')); },
       "requests[2].idempotency_key"},
      {[](auto& r) { r.set_endpoint("moodle"); }, "requests[2].endpoint"},
      {[](auto& r) { r.set_method("CONNECT"); }, "requests[2].method"},
      {[](auto& r) { r.set_path("/admin"); }, "requests[2].path"},
      {[](auto& r) { r.set_query("a=1#x"); }, "requests[2].query"},
      {[](auto& r) { r.set_body(std::string(17, 'b')); }, "requests[2].body"},
      {[](auto& r) {
         auto* h = r.add_headers();
         h->set_name("Authorization");
         h->set_value("Bearer mine");
       },
       "requests[2].headers[0].name"},
      {[](auto& r) {
         auto* h = r.add_headers();
         h->set_name("Idempotency-Key");
         h->set_value("other");
       },
       "requests[2].headers[0].name"},
      {[](auto& r) {
         auto* h = r.add_headers();
         h->set_name("Bad Name");
         h->set_value("v");
       },
       "requests[2].headers[0].name"},
      {[](auto& r) {
         auto* h = r.add_headers();
         h->set_name("X-Ok");
         h->set_value("a\nb");
       },
       "requests[2].headers[0].value"},
      {[](auto& r) { (*r.mutable_labels())["bad key"] = "v"; }, "requests[2].labels[bad key]"},
      {[](auto& r) { r.set_correlation_id("a\r\nb"); }, "requests[2].correlation_id"},
      {[](auto& r) { r.set_policy("nope"); }, "requests[2].policy"},
      {[](auto& r) { r.mutable_deadline()->set_seconds(-5); }, "requests[2].deadline"},
  };
  for (const auto& c : cases) {
    v1::SyncRequest r = Good();
    c.mutate(r);
    auto spec = ValidateSyncRequest(r, cfg, "t", "requests[2]");
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(spec.status().message(), HasSubstr(c.field));
  }
}

}  // namespace
}  // namespace rebound::api
