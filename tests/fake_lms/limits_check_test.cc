// bench/limits_check.cc (rebound-limits-check), black-box: the real checker reads a real
// fake-lms's arrival log after requests whose rates and concurrency the test chose.
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/fake_lms/fake_lms_process.h"
#include "tests/support/child_process.h"

namespace rebound::fakelms {
namespace {

const ::testing::Environment* const kCurlEnvironment =
    ::testing::AddGlobalTestEnvironment(new CurlGlobalEnvironment);

using ::testing::ElementsAre;

class LimitsCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<FakeLmsProcess>> lms = FakeLmsProcess::Start();
    ASSERT_TRUE(lms.ok()) << lms.status();
    lms_ = *std::move(lms);
  }

  // n requests to `path`, one after the other.
  void Send(const std::string& path, int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(HttpFetch("GET", lms_->base_url() + path).status, 200) << path;
    }
  }

  // n requests to `path` at once (each answered after its script's delay).
  void SendAtOnce(const std::string& path, int n) {
    std::vector<std::thread> clients;
    for (int i = 0; i < n; ++i) {
      clients.emplace_back([this, path, i] {
        HttpFetch("GET", lms_->base_url() + path, {absl::StrCat("X-Fake-Key: ", path, "-", i)});
      });
    }
    for (std::thread& t : clients) t.join();
  }

  // Writes `endpoints_yaml` under "endpoints:", runs the checker; its exit code and JSON.
  std::pair<int, nlohmann::json> Check(const std::string& endpoints_yaml) {
    const std::string config = dir_.File("limits.yaml");
    std::ofstream(config) << "endpoints:\n" << endpoints_yaml;
    const std::string log = dir_.File("check.out");
    auto child = testing::ChildProcess::Spawn(LIMITS_CHECK_BIN, {"--config", config}, log);
    EXPECT_TRUE(child.ok()) << child.status();
    if (!child.ok()) return {-1, nullptr};
    absl::StatusOr<int> rc = (*child)->Wait(absl::Seconds(60));
    EXPECT_TRUE(rc.ok()) << rc.status();
    std::ifstream in(log);
    const std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return {rc.ok() ? *rc : -1, nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false)};
  }

  std::string Endpoint(const std::string& name, const std::string& base_path,
                       const std::string& limits) const {
    return absl::StrCat("  - name: ", name, "\n    base_url: ", lms_->base_url(), base_path, "\n",
                        limits);
  }

  testing::TempDir dir_{"limits-check"};
  std::unique_ptr<FakeLmsProcess> lms_;
};

TEST_F(LimitsCheckTest, ARateAboveBurstPlusRateInOneSecondIsABreach) {
  Send("/e1/api/x", 12);  // well within a second on any machine: 12 > 2 + 5
  Send("/e2/api/x", 12);  // 12 <= 10 + 100
  const auto [rc, out] = Check(Endpoint("e1", "/e1", "    rate_limit: {rate: 5, burst: 2}\n") +
                               Endpoint("e2", "/e2", "    rate_limit: {rate: 100, burst: 10}\n"));
  EXPECT_EQ(rc, 1) << out.dump();
  EXPECT_THAT(out["rate_exceeded"].get<std::vector<std::string>>(), ElementsAre("e1"));
  EXPECT_EQ(out["per_endpoint"]["e1"]["max_in_1s"], 12);
  EXPECT_EQ(out["per_endpoint"]["e1"]["allowed_in_1s"], 7);
  EXPECT_EQ(out["per_endpoint"]["e2"]["requests"], 12);
  EXPECT_EQ(out["in_flight_exceeded_count"], 0);
}

TEST_F(LimitsCheckTest, MoreRequestsHeldAtOnceThanMaxInFlightIsABreach) {
  SendAtOnce("/e3/api/x?script=200:ms=1500", 3);
  SendAtOnce("/e4/api/x?script=200:ms=1500", 3);
  const auto [rc, out] = Check(Endpoint("e3", "/e3", "    max_in_flight: 2\n") +
                               Endpoint("e4", "/e4", "    max_in_flight: 3\n"));
  EXPECT_EQ(rc, 1) << out.dump();
  EXPECT_THAT(out["in_flight_exceeded"].get<std::vector<std::string>>(), ElementsAre("e3"));
  EXPECT_EQ(out["per_endpoint"]["e3"]["max_concurrent"], 3);
  EXPECT_EQ(out["per_endpoint"]["e4"]["max_concurrent"], 3);  // at the cap is no breach
  EXPECT_EQ(out["rate_exceeded_count"], 0);
}

TEST_F(LimitsCheckTest, WithinEveryLimitPassesAndAnEndpointWithoutBasePathTakesTheRest) {
  Send("/e5/api/x", 3);
  Send("/api/v1/grades", 2);
  ASSERT_EQ(HttpFetch("POST", lms_->base_url() + "/__outage?ms=60000&prefix=/e5/").status, 200);
  HttpFetch("GET", lms_->base_url() + "/e5/api/x");
  const auto [rc, out] =
      Check(Endpoint("e5", "/e5", "    max_in_flight: 1\n    rate_limit: {rate: 10, burst: 5}\n") +
            Endpoint("root", "", "    max_in_flight: 1\n"));
  EXPECT_EQ(rc, 0) << out.dump();
  EXPECT_EQ(out["ok"], true);
  EXPECT_EQ(out["per_endpoint"]["e5"]["requests"], 4);
  EXPECT_EQ(out["per_endpoint"]["e5"]["outage_answers"], 1);
  EXPECT_EQ(out["per_endpoint"]["root"]["requests"], 2);
  EXPECT_EQ(out["requests_unmatched"], 0);
}

TEST_F(LimitsCheckTest, AConfigWithoutEndpointsIsRefused) {
  const std::string config = dir_.File("empty.yaml");
  std::ofstream(config) << "server: {}\n";
  auto child =
      testing::ChildProcess::Spawn(LIMITS_CHECK_BIN, {"--config", config}, dir_.File("err"));
  ASSERT_TRUE(child.ok()) << child.status();
  absl::StatusOr<int> rc = (*child)->Wait(absl::Seconds(30));
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(*rc, 2);
}

}  // namespace
}  // namespace rebound::fakelms
