#include "server/engine/fair_queue.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "absl/strings/str_cat.h"

namespace rebound::engine {

using common::Priority;

namespace {

// Lanes of different priorities are apart: the same tenant's HIGH and LOW jobs.
std::string MapKey(Priority priority, absl::string_view lane) {
  return absl::StrCat(static_cast<int>(priority), ":", lane);
}

}  // namespace

void FairQueue::Push(Priority priority, absl::string_view lane,
                     const std::vector<std::string>& scopes, Item item) {
  if (priority == Priority::kUnspecified) priority = Priority::kNormal;
  std::unique_ptr<Lane>& slot = lanes_[MapKey(priority, lane)];
  if (slot == nullptr) {
    slot = std::make_unique<Lane>(Lane{std::string(lane), priority, scopes, {}});
  } else if (slot->items.empty()) {
    --empty_lanes_;
  }
  // A lane that had no jobs joins its ring: its turn comes after those waiting already.
  if (slot->items.empty()) rings_[LevelOf(priority)].push_back(slot.get());
  slot->items.push_back(item);
  ++size_;
  peeked_.valid = false;
}

const FairQueue::Item* FairQueue::Peek(
    absl::FunctionRef<bool(const LaneInfo&, const Item&)> admit) {
  peeked_.valid = false;
  for (int level = common::kPriorityCount - 1; level > 0; --level) {
    const Ring& ring = rings_[level];
    for (size_t turn = 0; turn < ring.size(); ++turn) {
      const Lane& lane = *ring[turn];
      if (!admit(LaneInfo{lane.key, lane.priority, lane.scopes, lane.items.size()},
                 lane.items.front())) {
        continue;
      }
      peeked_ = Peeked{lane.priority, turn, true};
      return &lane.items.front();
    }
  }
  return nullptr;
}

void FairQueue::Pop() {
  assert(peeked_.valid);
  Ring& ring = rings_[LevelOf(peeked_.priority)];
  Lane* lane = ring[peeked_.turn];
  lane->items.pop_front();
  --size_;
  ring.erase(ring.begin() + static_cast<std::ptrdiff_t>(peeked_.turn));
  peeked_.valid = false;
  if (!lane->items.empty()) {
    ring.push_back(lane);  // its turn is over
    return;
  }
  // An emptied lane stays known (its key's next job, often right after, allocates nothing),
  // until the empty ones outnumber a bound: then all of them go, so a stream of one-off label
  // values costs memory for a while only.
  constexpr size_t kMaxEmptyLanes = 1024;
  if (++empty_lanes_ <= kMaxEmptyLanes) return;
  absl::erase_if(lanes_, [](const auto& entry) { return entry.second->items.empty(); });
  empty_lanes_ = 0;
}

void FairQueue::Drain(std::vector<Item>* out) {
  for (Ring& ring : rings_) {
    for (Lane* lane : ring) out->insert(out->end(), lane->items.begin(), lane->items.end());
    ring.clear();
  }
  lanes_.clear();
  size_ = 0;
  empty_lanes_ = 0;
  peeked_.valid = false;
}

const FairQueue::Item* FairQueue::Front() const {
  for (int level = common::kPriorityCount - 1; level > 0; --level) {
    if (!rings_[level].empty()) return &rings_[level].front()->items.front();
  }
  return nullptr;
}

Priority FairQueue::FrontPriority() const {
  for (int level = common::kPriorityCount - 1; level > 0; --level) {
    if (!rings_[level].empty()) return static_cast<Priority>(level);
  }
  return Priority::kUnspecified;
}

absl::Time FairQueue::OldestSince() const {
  absl::Time oldest = absl::InfiniteFuture();
  for (const Ring& ring : rings_) {
    for (const Lane* lane : ring) oldest = std::min(oldest, lane->items.front().since);
  }
  return oldest;
}

}  // namespace rebound::engine
