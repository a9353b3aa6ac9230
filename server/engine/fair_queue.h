// FairQueue: an endpoint's ready jobs in the order they are to start: higher priority first;
// within a priority, lanes take turns (one job per turn, round robin); within a lane, first in
// first out. First attempts and retries of a lane are kept apart (two FIFOs, the older front
// first), so a gate that holds retries only (the retry budget) still lets first attempts pass,
// in every lane, without either kind stepping out of the lanes' turns.
//
// A lane is whatever the engine says must not hold another back: a tenant, the value of the
// endpoint's fairness label (e.g. "district") and the job's budget scopes. So a district's
// 100,000-job backfill is one lane, another district's ten grade changes another, and those ten
// start within ten turns each however long the backfill is. The bound: with K lanes holding
// jobs of a priority, the n-th job of a lane (counting from its head) is among the first n x K
// of that priority the queue gives out (tests/engine/fair_queue_test.cc measures it).
//
// Only lane heads are offered: Peek asks `admit` about the head of each lane in turn order, and
// a lane whose head is refused (its budget scope is out of tokens or quota) keeps its turn
// without holding the others back. Since the budget scopes are part of the lane, every job of a
// lane would be refused alike.
//
// Loop thread only, no clock: it knows only order.
#ifndef REBOUND_SERVER_ENGINE_FAIR_QUEUE_H_
#define REBOUND_SERVER_ENGINE_FAIR_QUEUE_H_

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/common/job.h"

namespace rebound::engine {

class FairQueue {
 public:
  struct Item {
    common::JobId id = 0;
    uint64_t seq = 0;  // push order: within a lane, the older of its two fronts goes first
    absl::Time since;  // when it became ready
    bool retry = false;
  };
  // What a lane's jobs share, given to `admit` and ForEachLane: its key, priority, budget scopes
  // (one per budget of the endpoint, in its order) and how many jobs of each kind it holds.
  struct LaneInfo {
    const std::string& key;
    common::Priority priority;
    const std::vector<std::string>& scopes;
    size_t firsts;
    size_t retries;
  };

  FairQueue() = default;
  FairQueue(FairQueue&&) = default;
  FairQueue& operator=(FairQueue&&) = default;
  FairQueue(const FairQueue&) = delete;
  FairQueue& operator=(const FairQueue&) = delete;

  // `scopes` are kept when the lane is new (a lane's key determines them).
  void Push(common::Priority priority, absl::string_view lane,
            const std::vector<std::string>& scopes, Item item);
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  size_t retries() const { return retries_; }

  // The next item in turn order, of a kind allowed (`firsts`, `retries`), whose lane `admit`
  // accepts, or null; it stays queued until Pop(). A lane offers the older of its two fronts
  // among the allowed kinds; `admit` is asked about that one only, at most once per lane.
  const Item* Peek(bool firsts, bool retries,
                   absl::FunctionRef<bool(const LaneInfo&, const Item&)> admit);
  // Removes the item the last Peek returned (nothing pushed or popped in between); its lane's
  // turn ends.
  void Pop();
  // Calls `fn` for every lane holding jobs, with its head of each allowed kind (as Peek would
  // offer it), highest priority first, in turn order.
  void ForEachLane(bool firsts, bool retries,
                   absl::FunctionRef<void(const LaneInfo&, const Item&)> fn) const;

  // The first retry in turn order (any lane); null when none is queued.
  const Item* FrontRetry() const;
  // The oldest `since` among lane heads (each FIFO is in order); InfiniteFuture when empty.
  absl::Time OldestSince() const;
  // Lanes holding jobs now, of all priorities.
  size_t lanes() const { return lanes_.size() - empty_lanes_; }
  // Every item, oldest push first (for a reload that changes how jobs are put in lanes).
  void Drain(std::vector<Item>* out);

 private:
  struct Lane {
    std::string key;
    common::Priority priority;
    std::vector<std::string> scopes;
    std::deque<Item> firsts;
    std::deque<Item> retries;  // both empty: out of its ring, kept for a while (see Pop)
    bool empty() const { return firsts.empty() && retries.empty(); }
    // The older front among the allowed kinds; null when none.
    const Item* Head(bool allow_firsts, bool allow_retries) const;
  };
  struct Peeked {
    common::Priority priority = common::Priority::kUnspecified;
    size_t turn = 0;  // index in the level's ring
    bool retry = false;
    bool valid = false;
  };
  // Lanes of one priority in turn order (the front's turn is next).
  using Ring = std::deque<Lane*>;
  static int LevelOf(common::Priority p) { return static_cast<int>(p); }

  // (priority, lane key) -> lane; node-stable (unique_ptr) so rings hold pointers.
  absl::flat_hash_map<std::string, std::unique_ptr<Lane>> lanes_;
  std::array<Ring, common::kPriorityCount> rings_;
  Peeked peeked_;
  size_t size_ = 0;
  size_t retries_ = 0;
  size_t empty_lanes_ = 0;  // lanes kept without items, so a busy lane is not rebuilt each time
};

}  // namespace rebound::engine

#endif  // REBOUND_SERVER_ENGINE_FAIR_QUEUE_H_
