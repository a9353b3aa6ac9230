// OrderingGate: jobs of one (tenant, ordering key) run one at a time, in order.
//
// A key ("scope": tenant + '\n' + ordering key) has at most one runner (the job allowed to
// run) and a FIFO of blocked jobs behind it. When the runner ends, the next blocked job is
// handed the key. Loop thread only; knows job ids, not jobs: the engine checks each id it is
// handed (the job may be gone) and persists what the gate decides.
#ifndef REBOUND_SERVER_ENGINE_ORDERING_GATE_H_
#define REBOUND_SERVER_ENGINE_ORDERING_GATE_H_

#include <deque>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "server/common/job.h"

namespace rebound::engine {

class OrderingGate {
 public:
  // "" without an ordering key (such a job is never ordered).
  static std::string ScopeOf(absl::string_view tenant, absl::string_view ordering_key);

  // The scope has a runner / a runner or blocked jobs.
  bool HasRunner(const std::string& scope) const { return runners_.contains(scope); }
  bool Busy(const std::string& scope) const {
    return runners_.contains(scope) || blocked_.contains(scope);
  }
  // `id` becomes the scope's runner.
  void SetRunner(const std::string& scope, common::JobId id) { runners_[scope] = id; }
  // The runner ended: nobody holds the scope until TakeNext hands it on.
  void ReleaseRunner(const std::string& scope) { runners_.erase(scope); }

  // `id` waits behind the scope's last blocked job (Block) or right behind its runner, ahead
  // of the other blocked jobs (BlockFirst: a replayed job, older than them). Returns the job
  // just ahead of it (the runner, or the blocked job before it; 0 when the scope has neither).
  common::JobId Block(const std::string& scope, common::JobId id);
  common::JobId BlockFirst(const std::string& scope, common::JobId id);
  // Takes blocked job `id` out (cancelled). Returns the job that was right behind it (0: none)
  // and sets `*now_ahead` to the job now ahead of that one.
  common::JobId Remove(const std::string& scope, common::JobId id, common::JobId* now_ahead);
  // Takes the scope's first blocked job off its queue (0 when none). The caller checks it is
  // still blocked, and makes it the runner or asks again.
  common::JobId TakeNext(const std::string& scope);

  // Scopes with blocked jobs and no runner (a crash between a runner's end and the hand-on).
  std::vector<std::string> Orphaned() const;
  size_t BlockedCount(const std::string& scope) const;

 private:
  common::JobId RunnerOf(const std::string& scope) const;

  absl::flat_hash_map<std::string, common::JobId> runners_;
  absl::flat_hash_map<std::string, std::deque<common::JobId>> blocked_;
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_ORDERING_GATE_H_
