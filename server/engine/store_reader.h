// StoreReader: the default EngineOptions::run_read, one thread running store reads in order
// (LoadSpec at dispatch, Get for Cancel/Replay/Watch of an ended job), so the loop never
// waits on SQLite. Destroying it runs what was asked, then joins.
#ifndef REBOUND_SERVER_ENGINE_STORE_READER_H_
#define REBOUND_SERVER_ENGINE_STORE_READER_H_

#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace rebound::engine {

class StoreReader {
 public:
  StoreReader() : thread_([this] { Loop(); }) {}
  ~StoreReader() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }
  void Run(absl::AnyInvocable<void() &&> fn) {
    absl::MutexLock lock(&mu_);
    work_.push_back(std::move(fn));
  }

 private:
  void Loop() {
    while (true) {
      std::vector<absl::AnyInvocable<void() &&>> work;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](StoreReader* r)
                 ABSL_EXCLUSIVE_LOCKS_REQUIRED(r->mu_) { return r->stop_ || !r->work_.empty(); },
            this));
        if (work_.empty()) return;  // stopping, and everything asked for was read
        work.swap(work_);
      }
      for (auto& fn : work) std::move(fn)();
    }
  }

  absl::Mutex mu_;
  std::vector<absl::AnyInvocable<void() &&>> work_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the rest is built
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_STORE_READER_H_
