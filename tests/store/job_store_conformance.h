// The JobStore conformance suite: one set of tests, run on every backend (STYLE.md "Tests").
//
// To run it on a backend, implement JobStoreBackend (a fresh, empty database per instance,
// reopenable after the store is destroyed), link the `rebound_store_conformance` object
// library, and instantiate the suite:
//
//   INSTANTIATE_TEST_SUITE_P(Sqlite, JobStoreConformanceTest,
//                            ::testing::Values(BackendFactory{"Sqlite", &MakeSqliteBackend}),
//                            BackendName);
//
// The helpers below wait for store callbacks with a deadline (never a sleep) and are shared
// with backend-specific tests.
#ifndef REBOUND_TESTS_STORE_JOB_STORE_CONFORMANCE_H_
#define REBOUND_TESTS_STORE_JOB_STORE_CONFORMANCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/store/job_store.h"

namespace rebound::store::conformance {

// Group-commit counters, for backends that keep them.
struct CommitCounts {
  int64_t commits = 0;
  int64_t ops = 0;
};

// One database of one backend, for one test.
class JobStoreBackend {
 public:
  virtual ~JobStoreBackend() = default;
  // Opens the database; called again after the previous store was destroyed (reopen tests).
  virtual absl::StatusOr<std::unique_ptr<JobStore>> Open() = 0;
  // Counters of `store` (opened by this backend) since it was opened; nullopt if not kept.
  virtual std::optional<CommitCounts> Counts(JobStore& store) = 0;
};

struct BackendFactory {
  std::string name;  // a valid test-name part: letters and digits
  std::function<std::unique_ptr<JobStoreBackend>()> make;
};

void PrintTo(const BackendFactory& factory, std::ostream* os);
std::string BackendName(const ::testing::TestParamInfo<BackendFactory>& info);

// How long a test waits for a callback before failing.
inline constexpr absl::Duration kCallbackDeadline = absl::Seconds(60);
// Every test's clock starts here; nothing reads the wall clock.
inline const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

// A complete request in `tenant` with idempotency `key`; edit it, then call Job().
common::JobSpec Spec(absl::string_view tenant, absl::string_view key);
NewJob Job(common::JobSpec spec);  // with its fingerprint

// A Submit or Apply in flight. Its callback may run after the test gave up waiting, so the
// result lives in state shared with the callback, never on the test's stack.
class PendingSubmit {
 public:
  PendingSubmit(JobStore& store, std::vector<NewJob> jobs, absl::Time now);
  // The results; empty (and a test failure) when the callback does not come in time.
  std::vector<SubmitResult> Wait();

 private:
  struct State {
    absl::Notification done;
    std::vector<SubmitResult> results;
  };
  std::shared_ptr<State> state_;
};

// Any write with a WriteDone callback (Apply, the pause writes).
class PendingWrite {
 public:
  PendingWrite() : state_(std::make_shared<State>()) {}
  // The callback to give the write; call once.
  JobStore::WriteDone Callback();
  // The callback's status; DEADLINE_EXCEEDED (and a test failure) when it does not come.
  absl::Status Wait();

 private:
  struct State {
    absl::Notification done;
    absl::Status status;
  };
  std::shared_ptr<State> state_;
};

class PendingApply {
 public:
  PendingApply(JobStore& store, std::vector<Transition> transitions, absl::Time now);
  absl::Status Wait() { return write_.Wait(); }

 private:
  PendingWrite write_;
};

// Submit/Apply and wait for the callback.
std::vector<SubmitResult> SubmitAndWait(JobStore& store, std::vector<NewJob> jobs, absl::Time now);
SubmitResult SubmitOne(JobStore& store, NewJob job, absl::Time now);
absl::Status ApplyAndWait(JobStore& store, std::vector<Transition> transitions, absl::Time now);
absl::Status SaveEndpointPauseAndWait(JobStore& store, EndpointPause pause);
absl::Status DeleteEndpointPauseAndWait(JobStore& store, std::string endpoint);

// Every job of `tenant` matching `filter`, following page tokens.
std::vector<common::JobRecord> ListAll(JobStore& store, const std::string& tenant,
                                       const ListFilter& filter = {}, int page_size = 0);

class JobStoreConformanceTest : public ::testing::TestWithParam<BackendFactory> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Destroys the store (draining its queue) and opens the same database again.
  void Reopen();

  std::unique_ptr<JobStoreBackend> backend_;
  std::unique_ptr<JobStore> store_;
};

}  // namespace rebound::store::conformance

#endif  // REBOUND_TESTS_STORE_JOB_STORE_CONFORMANCE_H_
