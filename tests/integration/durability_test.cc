// Durability: 1,000 jobs against a slow, flaky fake-lms; kill -9 the server mid-run; restart
// on the same database. Every acknowledged job must reach a terminal state, none may be
// missing, and fake-lms must have seen exactly one effect per succeeded key.
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace rebound::testing {
namespace {

const ::testing::Environment* const kCurl =
    ::testing::AddGlobalTestEnvironment(new fakelms::CurlGlobalEnvironment);

constexpr int kJobs = 1000;
constexpr int kBatch = 10;  // the harness config's max_batch_size

// Deterministic mix of upstream behaviours, each slow enough to be cut mid-flight.
std::string ScriptFor(int i) {
  switch (i % 10) {
    case 0:
    case 1:
    case 2:
      return "200:ms=40";
    case 3:
      return "503:ms=30,200:ms=30";
    case 4:
      return "502:ms=20,503:ms=20,200:ms=20";
    case 5:
      return "429:ra=1,200:ms=10";
    case 6:
      return "500:ms=50,200:ms=50";
    case 7:
      return "400:ms=20";
    case 8:
      return "reset,200:ms=20";
    default:
      return "200:ms=150";
  }
}

class DurabilityTest : public IntegrationTest {};

TEST_F(DurabilityTest, KillNineMidRunLosesNothingAndDoublesNothing) {
  std::map<std::string, std::string> key_of;  // job id -> idempotency key
  std::map<std::string, int> index_of;        // key -> script index
  int batches = 0;
  bool killed = false;
  for (int start = 0; start < kJobs; start += kBatch) {
    std::vector<v1::SyncRequest> batch;
    for (int i = start; i < start + kBatch; ++i) {
      const std::string key = "dur-" + std::to_string(i);
      batch.push_back(Job(key, ScriptFor(i)));
      index_of[key] = i;
    }
    auto res = client().SubmitBatch(batch);
    ASSERT_TRUE(res.ok()) << res.status();
    for (int j = 0; j < res->results_size(); ++j) {
      ASSERT_EQ(res->results(j).code(), 0) << res->results(j).message();
      key_of[res->results(j).result().job_id()] = batch[j].idempotency_key();
    }
    // Kill the server while work is in full swing: after a third of the submits.
    ++batches;
    if (start == (kJobs / 3 / kBatch) * kBatch) {
      // Let the last batches reach fake-lms (their answers take 20-150 ms), so attempts are on
      // the wire when the process dies.
      absl::SleepFor(absl::Milliseconds(60));
      server_->process().Signal(SIGKILL);
      auto code = server_->process().Wait(absl::Seconds(10));
      EXPECT_EQ(code.status().code(), absl::StatusCode::kAborted) << "died from SIGKILL";
      StartServer();
      killed = true;
    }
  }
  ASSERT_TRUE(killed);
  EXPECT_EQ(batches, kJobs / kBatch);
  ASSERT_EQ(key_of.size(), static_cast<size_t>(kJobs));

  // Wait for every job to be terminal (bounded).
  const absl::Time give_up = absl::Now() + absl::Seconds(120);
  std::map<std::string, v1::SyncJob> final_state;
  for (const auto& [id, key] : key_of) {
    const absl::Duration left = give_up - absl::Now();
    auto job = client().Await(id, std::max(left, absl::Seconds(1)));
    ASSERT_TRUE(job.ok()) << id << ": " << job.status();
    final_state[id] = *job;
  }

  auto all = lms_->AllStats();
  ASSERT_TRUE(all.ok()) << all.status();
  const nlohmann::json& keys = (*all)["keys"];
  std::printf("durability: fake-lms totals %s\n", (*all)["totals"].dump().c_str());
  int succeeded = 0;
  int failed = 0;
  int64_t repeats = 0;
  for (const auto& [id, job] : final_state) {
    const std::string& key = key_of[id];
    const nlohmann::json& k = keys.at(key);
    repeats += k["repeats"].get<int64_t>();
    EXPECT_TRUE(k["key_header_every_attempt"].get<bool>()) << key;
    if (ScriptFor(index_of[key]).rfind("400", 0) == 0) {
      EXPECT_EQ(job.state(), v1::FAILED) << key;
      EXPECT_EQ(k["effects"], 0) << key;
      ++failed;
    } else {
      EXPECT_EQ(job.state(), v1::SUCCEEDED) << key << " " << job.last_decision();
      EXPECT_EQ(k["effects"], 1) << key;
      ++succeeded;
    }
  }
  EXPECT_EQ(succeeded + failed, kJobs);
  // Repeats are deliveries the key absorbed (attempts in flight at the kill): reported, not
  // hidden.
  RecordProperty("succeeded", succeeded);
  RecordProperty("failed", failed);
  RecordProperty("repeats_absorbed_by_key", static_cast<int>(repeats));
  std::printf("durability: %d succeeded, %d failed, %lld repeated deliveries absorbed by key\n",
              succeeded, failed, static_cast<long long>(repeats));
}

}  // namespace
}  // namespace rebound::testing
