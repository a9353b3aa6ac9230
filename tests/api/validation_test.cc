// Request validation: every refusal names its field; paths cannot leave the endpoint.
#include "server/api/validation.h"

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rebound::api {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr size_t kHuge = 3 << 20;  // 3 MiB: over every bound, under gRPC's 4 MiB message limit

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
  cfg.server.max_header_bytes = 8192;
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

// A change to Good() and the field its refusal must name first.
struct Refusal {
  std::function<void(v1::SyncRequest&)> mutate;
  const char* field;
};

// Each case is INVALID_ARGUMENT with a message that starts with its field and stays short.
void ExpectRefused(const std::vector<Refusal>& cases) {
  const auto cfg = TestConfig();
  for (const Refusal& c : cases) {
    v1::SyncRequest r = Good();
    c.mutate(r);
    auto spec = ValidateSyncRequest(r, cfg, "t", "request");
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(std::string(spec.status().message()), StartsWith(c.field));
    EXPECT_LT(spec.status().message().size(), 400u) << c.field;
  }
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
      {[](auto& r) { r.set_ordering_key("a\r\nb"); }, "requests[2].ordering_key"},
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

TEST(CheckPath, RefusesMalformedDoubleAndOverlongEncodings) {
  const auto cfg = TestConfig();
  const auto& ep = cfg.endpoints[0];
  for (const char* path :
       {"/api/v1/%u002e%u002e/admin", "/api/v1/%U002E", "/api/v1/%e0%80%ae%e0%80%ae/admin",
        "/api/v1/%f0%80%80%ae", "/api/v1/%0D", "/api/v1/%1b[2J", "/api/v1/%7f", "/api/v1/%",
        "/api/v1/a%2", "/api/v1/%zz", "/api/v1/%c2%9b"}) {
    EXPECT_FALSE(CheckPath(ep, path, "").ok()) << path;
  }
  EXPECT_TRUE(CheckPath(ep, "/api/v1/users/J%C3%BCrgen%20M", "").ok());
}

TEST(CheckQuery, RefusesEncodedControlsDoubleMalformedAndOverlongEncodings) {
  for (const char* query : {"a=%0d%0aX-Injected:%201",
                            "a=%0D%0A",
                            "a=%0a",
                            "a=%00",
                            "a=%1B%5B2J",
                            "a=%7F",
                            "a=%c2%85",
                            "f=%252e%252e%252fadmin",
                            "f=%25%32%65",
                            "f=%u002e%u002e",
                            "f=%c0%ae%c0%ae",
                            "f=%C0%AE",
                            "f=%c1%9c",
                            "f=%e0%80%ae",
                            "f=%f0%80%80%ae",
                            "a=%",
                            "a=%4",
                            "a=%g1",
                            "a=\r",
                            "a=1#frag",
                            "a=b c"}) {
    EXPECT_FALSE(CheckQuery(query).ok()) << query;
  }
  for (const char* query : {"", "per_page=100&page=2", "q=%20x%2B%26", "name=J%C3%BCrgen",
                            "discount=50%25", "file=a.b", "v=%2e"}) {
    EXPECT_TRUE(CheckQuery(query).ok()) << query << ": " << CheckQuery(query);
  }
  EXPECT_FALSE(CheckQuery(std::string(kMaxQueryBytes + 1, 'q')).ok());
}

TEST(ValidateSyncRequest, EncodedCrLfInTheQueryIsRefusedNamingTheQuery) {
  v1::SyncRequest r = Good();
  r.set_query("x=1%0d%0aHost:%20evil.example");
  auto spec = ValidateSyncRequest(r, TestConfig(), "t", "request");
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()),
              StartsWith("request.query: percent-encodes a control"));
}

TEST(ValidateSyncRequest, RoutingOverrideHeadersAreRefusedWhateverTheirCase) {
  const auto cfg = TestConfig();
  for (const char* name : {"X-Original-URL",
                           "x-rewrite-url",
                           "X-HTTP-Method-Override",
                           "X-HTTP-Method",
                           "X-Method-Override",
                           "X-Forwarded-Host",
                           "X-Forwarded-For",
                           "X-Forwarded-Proto",
                           "X-Forwarded-Prefix",
                           "X-FORWARDED-PORT",
                           "X-Host",
                           "Forwarded",
                           "X-Real-IP",
                           "True-Client-IP",
                           "Proxy",
                           "TE",
                           "Upgrade",
                           "HTTP2-Settings",
                           "Proxy-Authorization",
                           "X-Envoy-Original-Path"}) {
    v1::SyncRequest r = Good();
    auto* h = r.add_headers();
    h->set_name(name);
    h->set_value("/admin");
    auto spec = ValidateSyncRequest(r, cfg, "t", "request");
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(std::string(spec.status().message()), StartsWith("request.headers[0].name: '"))
        << name;
  }
  for (const char* name : {"Content-Type", "Accept", "X-Request-Id", "If-Match", "X-Forwarded"}) {
    v1::SyncRequest r = Good();
    auto* h = r.add_headers();
    h->set_name(name);
    h->set_value("v");
    EXPECT_TRUE(ValidateSyncRequest(r, cfg, "t", "request").ok()) << name;
  }
}

TEST(ValidateSyncRequest, ControlCharactersInIdentifiersAreRefusedNamingTheField) {
  ExpectRefused({
      {[](auto& r) { r.set_ordering_key("course-7\x1b[2J"); }, "request.ordering_key: "},
      {[](auto& r) { r.set_ordering_key("line\rforged"); }, "request.ordering_key: "},
      {[](auto& r) {
         r.set_ordering_key(
             "csi\xc2\x9b"
             "31m");
       },
       "request.ordering_key: "},
      {[](auto& r) { r.set_idempotency_key("k\n2"); }, "request.idempotency_key: "},
      {[](auto& r) { r.set_correlation_id("c\tid"); }, "request.correlation_id: "},
      {[](auto& r) { (*r.mutable_labels())["pipeline"] = "grade\x1b]0;x\x07"; },
       "request.labels[pipeline]: "},
  });
  v1::SyncRequest r = Good();
  r.set_ordering_key("Zoë-Ångström-7");  // non-ASCII is not a control character
  EXPECT_TRUE(ValidateSyncRequest(r, TestConfig(), "t", "request").ok());
}

TEST(ValidateSyncRequest, EveryStringFieldIsBoundedAndItsRefusalStaysShort) {
  const std::string huge(kHuge, 'x');
  ExpectRefused({
      {[&](auto& r) { r.set_idempotency_key(huge); }, "request.idempotency_key: "},
      {[&](auto& r) { r.set_endpoint(huge); }, "request.endpoint: "},
      {[&](auto& r) { r.set_method(huge); }, "request.method: "},
      {[&](auto& r) { r.set_path("/api/v1/" + huge); }, "request.path: "},
      {[&](auto& r) { r.set_query(huge); }, "request.query: "},
      {[&](auto& r) { r.set_body(huge); }, "request.body: "},
      {[&](auto& r) { r.set_ordering_key(huge); }, "request.ordering_key: "},
      {[&](auto& r) { r.set_correlation_id(huge); }, "request.correlation_id: "},
      {[&](auto& r) { r.set_policy(huge); }, "request.policy: "},
      {[&](auto& r) { (*r.mutable_labels())[huge] = "v"; }, "request.labels["},
      {[&](auto& r) { (*r.mutable_labels())["k"] = huge; }, "request.labels[k]: "},
      {[&](auto& r) { r.add_headers()->set_name(huge); }, "request.headers[0]: "},
      {[&](auto& r) {
         auto* h = r.add_headers();
         h->set_name("X-Ok");
         h->set_value(huge);
       },
       "request.headers[0]: "},
  });
}

TEST(ValidateSyncRequest, UnknownNamesAreEchoedEscapedAndCut) {
  v1::SyncRequest r = Good();
  r.set_endpoint("nope\x1b[31m" + std::string(100, 'e'));
  auto spec = ValidateSyncRequest(r, TestConfig(), "t", "request");
  EXPECT_EQ(spec.status().message(),
            absl::StrCat("request.endpoint: unknown endpoint 'nope\\x1b[31m", std::string(55, 'e'),
                         "... (109 bytes)'"));
}

TEST(Echo, EscapesControlsAndCutsLongValues) {
  EXPECT_EQ(Echo("plain"), "plain");
  EXPECT_EQ(Echo("a\r\nb\x1b"), "a\\r\\nb\\x1b");
  EXPECT_EQ(Echo(std::string(kMaxEchoBytes, 'a')), std::string(kMaxEchoBytes, 'a'));
  EXPECT_EQ(Echo(std::string(kHuge, 'a')),
            absl::StrCat(std::string(kMaxEchoBytes, 'a'), "... (3145728 bytes)"));
}

TEST(ValidateListRequest, FiltersAreBoundedAndNamed) {
  const auto cfg = TestConfig();
  const std::string huge(kHuge, 'x');
  v1::ListSyncsRequest ok;
  ok.set_endpoint("canvas");
  ok.set_label("pipeline=gradebook");
  auto filter = ValidateListRequest(ok, cfg);
  ASSERT_TRUE(filter.ok()) << filter.status();
  EXPECT_EQ(filter->label_key, "pipeline");
  EXPECT_EQ(filter->label_value, "gradebook");
  const std::vector<std::pair<std::function<void(v1::ListSyncsRequest&)>, const char*>> cases = {
      {[&](auto& r) { r.set_endpoint(huge); }, "endpoint: "},
      {[&](auto& r) { r.set_ordering_key(huge); }, "ordering_key: "},
      {[&](auto& r) { r.set_label(huge); }, "label: "},
      {[&](auto& r) { r.set_page_token(huge); }, "page_token: "},
      {[&](auto& r) { r.set_label("=v"); }, "label: "},
      {[&](auto& r) { r.set_page_size(-1); }, "page_size: "},
      {[&](auto& r) { r.add_states(static_cast<v1::SyncState>(42)); }, "states: "},
  };
  for (const auto& [mutate, field] : cases) {
    v1::ListSyncsRequest r;
    mutate(r);
    auto f = ValidateListRequest(r, cfg);
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(std::string(f.status().message()), StartsWith(field));
    EXPECT_LT(f.status().message().size(), 200u) << field;
  }
}

}  // namespace
}  // namespace rebound::api

namespace rebound::api {
namespace {

const absl::Time kPauseNow = absl::FromUnixSeconds(1'800'000'000);

v1::PauseEndpointRequest GoodPause() {
  v1::PauseEndpointRequest r;
  r.set_name("canvas");
  r.set_reason("LMS maintenance");
  return r;
}

TEST(ValidatePauseRequest, OpenEndedUntilOrDuration) {
  const auto cfg = TestConfig();
  auto open = ValidatePauseRequest(GoodPause(), cfg, kPauseNow);
  ASSERT_TRUE(open.ok()) << open.status();
  EXPECT_EQ(open->name, "canvas");
  EXPECT_EQ(open->until, absl::InfiniteFuture());
  EXPECT_EQ(open->reason, "LMS maintenance");

  v1::PauseEndpointRequest until = GoodPause();
  until.mutable_until()->set_seconds(absl::ToUnixSeconds(kPauseNow) + 3600);
  EXPECT_EQ(ValidatePauseRequest(until, cfg, kPauseNow)->until, kPauseNow + absl::Hours(1));

  v1::PauseEndpointRequest length = GoodPause();
  length.mutable_duration()->set_seconds(90);
  EXPECT_EQ(ValidatePauseRequest(length, cfg, kPauseNow)->until, kPauseNow + absl::Seconds(90));
}

TEST(ValidatePauseRequest, RefusalsNameTheirField) {
  const auto cfg = TestConfig();
  struct Case {
    std::function<void(v1::PauseEndpointRequest&)> mutate;
    absl::StatusCode code;
    const char* starts;
  };
  const int64_t now_s = absl::ToUnixSeconds(kPauseNow);
  const std::vector<Case> cases = {
      {[](auto& r) { r.set_name(""); }, absl::StatusCode::kInvalidArgument, "name: is required"},
      {[](auto& r) { r.set_name(std::string(kHuge, 'n')); }, absl::StatusCode::kInvalidArgument,
       "name: is 3145728 bytes"},
      {[](auto& r) { r.set_name("moodle\x1b[2J"); }, absl::StatusCode::kNotFound,
       "name: unknown endpoint 'moodle\\x1b[2J'"},
      {[](auto& r) { r.set_reason(std::string(513, 'r')); }, absl::StatusCode::kInvalidArgument,
       "reason: is 513 bytes; at most 512"},
      {[](auto& r) { r.set_reason("ok\r\nforged line"); }, absl::StatusCode::kInvalidArgument,
       "reason: has a control character"},
      {[now_s](auto& r) { r.mutable_until()->set_seconds(now_s); },
       absl::StatusCode::kInvalidArgument, "until: "},
      {[now_s](auto& r) { r.mutable_until()->set_seconds(now_s + 400 * 86400); },
       absl::StatusCode::kInvalidArgument, "until: is more than"},
      {[](auto& r) { r.mutable_until()->set_seconds(-5); }, absl::StatusCode::kInvalidArgument,
       "until: is not a valid timestamp"},
      {[now_s](auto& r) {
         r.mutable_until()->set_seconds(now_s + 60);
         r.mutable_duration()->set_seconds(60);
       },
       absl::StatusCode::kInvalidArgument, "until: give until or duration, not both"},
      {[](auto& r) { r.mutable_duration()->set_seconds(0); }, absl::StatusCode::kInvalidArgument,
       "duration: must be positive"},
      {[](auto& r) { r.mutable_duration()->set_seconds(-3); }, absl::StatusCode::kInvalidArgument,
       "duration: must be positive"},
      {[](auto& r) { r.mutable_duration()->set_seconds(400 * 86400); },
       absl::StatusCode::kInvalidArgument, "duration: is longer than"},
  };
  for (const Case& c : cases) {
    v1::PauseEndpointRequest r = GoodPause();
    c.mutate(r);
    auto got = ValidatePauseRequest(r, cfg, kPauseNow);
    ASSERT_FALSE(got.ok()) << c.starts;
    EXPECT_EQ(got.status().code(), c.code) << got.status();
    EXPECT_THAT(std::string(got.status().message()), StartsWith(c.starts));
    EXPECT_LT(got.status().message().size(), 200u);
  }
}

TEST(ValidateEndpointName, EmptyMeansEveryEndpointOnlyWhenAllowed) {
  const auto cfg = TestConfig();
  EXPECT_TRUE(ValidateEndpointName("", cfg, /*empty_ok=*/true).ok());
  EXPECT_EQ(ValidateEndpointName("", cfg, /*empty_ok=*/false).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateEndpointName("canvas", cfg, /*empty_ok=*/false).ok());
  EXPECT_EQ(ValidateEndpointName("moodle", cfg, /*empty_ok=*/true).code(),
            absl::StatusCode::kNotFound);
}

TEST(ValidateListRequest, WaitReasonIsAKnownReason) {
  const auto cfg = TestConfig();
  v1::ListSyncsRequest r;
  r.set_wait_reason(v1::CIRCUIT_OPEN);
  EXPECT_TRUE(ValidateListRequest(r, cfg).ok());
  EXPECT_EQ(*ValidateWaitReason(r), common::WaitReason::kCircuitOpen);
  r.set_wait_reason(static_cast<v1::WaitReason>(42));
  auto bad = ValidateListRequest(r, cfg);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), StartsWith("wait_reason: 42"));
}

}  // namespace
}  // namespace rebound::api
