// Removing an endpoint (docs/operations.md): jobs of an ordering key whose endpoint left the
// config crashed the server at every start (issue 12 item 1). Real processes: the server is
// stopped with SIGTERM while the key's first job hangs upstream, restarted without the endpoint,
// and restarted once more.
#include <csignal>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace rebound::testing {
namespace {

const ::testing::Environment* const kCurl =
    ::testing::AddGlobalTestEnvironment(new fakelms::CurlGlobalEnvironment);

constexpr int kJobs = 20;

class RemovedEndpointTest : public IntegrationTest {
 protected:
  // Stops the server the way an operator does (SIGTERM) and expects a clean exit.
  void StopServer() {
    auto code = server_->process().Stop(absl::Seconds(20));
    ASSERT_TRUE(code.ok()) << code.status() << "\n" << ServerLog();
    EXPECT_EQ(*code, 0) << ServerLog();
    server_.reset();
  }

  // The harness config without its "slow" endpoint.
  void RemoveSlowEndpoint() {
    std::ifstream in(config_path_);
    std::string cfg((std::istreambuf_iterator<char>(in)), {});
    const size_t from = cfg.find("  - name: slow\n", cfg.find("\nendpoints:"));
    const size_t to = cfg.find("  - name: dead\n");
    ASSERT_NE(from, std::string::npos);
    ASSERT_NE(to, std::string::npos);
    cfg.erase(from, to - from);
    std::ofstream(config_path_, std::ios::trunc) << cfg;
  }
};

TEST_F(RemovedEndpointTest, JobsOfARemovedEndpointFailWithAReasonAndTheServerStaysUp) {
  // One ordering key: the first job hangs on "slow"; the rest alternate "lms" and "slow".
  std::vector<std::string> ids;
  for (int i = 0; i < kJobs; ++i) {
    v1::SyncRequest r = Job("rm-" + std::to_string(i), i == 0 ? "hang" : "200");
    r.set_ordering_key("student-42");
    if (i % 2 == 0) r.set_endpoint("slow");
    auto submitted = client().Submit(r);
    ASSERT_TRUE(submitted.ok()) << submitted.status();
    ids.push_back(submitted->job_id());
  }
  // The first job is on the wire (hanging) before the stop.
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (KeyStats("rm-0").value("attempts", 0) < 1 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(KeyStats("rm-0").value("attempts", 0), 1);
  ASSERT_NO_FATAL_FAILURE(StopServer());
  ASSERT_NO_FATAL_FAILURE(RemoveSlowEndpoint());

  ASSERT_NO_FATAL_FAILURE(StartServer());  // crashed here before the fix (one job failed per crash)
  for (int i = 0; i < kJobs; ++i) {
    auto job = client().Await(ids[i], absl::Seconds(20));
    ASSERT_TRUE(job.ok()) << i << ": " << job.status() << "\n" << ServerLog();
    if (i % 2 == 0) {
      EXPECT_EQ(job->state(), v1::FAILED) << i;
      EXPECT_THAT(job->last_decision(),
                  ::testing::HasSubstr("endpoint 'slow' is no longer configured"))
          << i;
    } else {
      EXPECT_EQ(job->state(), v1::SUCCEEDED) << i << " " << job->last_decision();
      EXPECT_EQ(KeyStats("rm-" + std::to_string(i)).value("effects", 0), 1) << i;
    }
  }
  auto all = lms_->AllStats();
  ASSERT_TRUE(all.ok()) << all.status();
  for (int i = 2; i < kJobs; i += 2) {
    EXPECT_FALSE((*all)["keys"].contains("rm-" + std::to_string(i)))
        << "a removed endpoint's job is not sent: " << i;
  }
  EXPECT_THAT(ServerLog(), ::testing::HasSubstr("no longer configured"));

  // Still fine at the next start, and a replay says why it cannot run.
  ASSERT_NO_FATAL_FAILURE(StopServer());
  EXPECT_THAT(ServerLog(), ::testing::HasSubstr("\"failed_endpoint_not_configured\":10"))
      << "counted in the engine_stats line at exit";
  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto job = client().Get(ids[0]);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::FAILED);
  auto replay = client().Replay(ids[0]);
  EXPECT_EQ(replay.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(replay.status().message()),
              ::testing::HasSubstr("endpoint 'slow' is no longer configured"));
  StopServer();
}

}  // namespace
}  // namespace rebound::testing
