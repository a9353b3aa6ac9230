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

const FairQueue::Item* FairQueue::Lane::Head(bool allow_firsts, bool allow_retries) const {
  const Item* first = allow_firsts && !firsts.empty() ? &firsts.front() : nullptr;
  const Item* retry = allow_retries && !retries.empty() ? &retries.front() : nullptr;
  if (first == nullptr) return retry;
  if (retry == nullptr) return first;
  return retry->seq < first->seq ? retry : first;
}

void FairQueue::Push(Priority priority, absl::string_view lane,
                     const std::vector<std::string>& scopes, Item item) {
  if (priority == Priority::kUnspecified) priority = Priority::kNormal;
  std::unique_ptr<Lane>& slot = lanes_[MapKey(priority, lane)];
  if (slot == nullptr) {
    slot = std::make_unique<Lane>(Lane{std::string(lane), priority, scopes, {}, {}});
  } else if (slot->empty()) {
    --empty_lanes_;
  }
  // A lane that had no jobs joins its ring: its turn comes after those waiting already.
  if (slot->empty()) rings_[LevelOf(priority)].push_back(slot.get());
  (item.retry ? slot->retries : slot->firsts).push_back(item);
  ++size_;
  if (item.retry) ++retries_;
  peeked_.valid = false;
}

const FairQueue::Item* FairQueue::Peek(
    bool firsts, bool retries, absl::FunctionRef<bool(const LaneInfo&, const Item&)> admit) {
  peeked_.valid = false;
  if (!firsts && !retries) return nullptr;
  for (int level = common::kPriorityCount - 1; level > 0; --level) {
    const Ring& ring = rings_[level];
    for (size_t turn = 0; turn < ring.size(); ++turn) {
      const Lane& lane = *ring[turn];
      const Item* head = lane.Head(firsts, retries);
      if (head == nullptr) continue;
      if (!admit(LaneInfo{lane.key, lane.priority, lane.scopes, lane.firsts.size(),
                          lane.retries.size()},
                 *head)) {
        continue;
      }
      peeked_ = Peeked{lane.priority, turn, head->retry, true};
      return head;
    }
  }
  return nullptr;
}

void FairQueue::Pop() {
  assert(peeked_.valid);
  Ring& ring = rings_[LevelOf(peeked_.priority)];
  Lane* lane = ring[peeked_.turn];
  (peeked_.retry ? lane->retries : lane->firsts).pop_front();
  --size_;
  if (peeked_.retry) --retries_;
  ring.erase(ring.begin() + static_cast<std::ptrdiff_t>(peeked_.turn));
  peeked_.valid = false;
  if (!lane->empty()) {
    ring.push_back(lane);  // its turn is over
    return;
  }
  // An emptied lane stays known (its key's next job, often right after, allocates nothing),
  // until the empty ones outnumber a bound: then all of them go, so a stream of one-off label
  // values costs memory for a while only.
  constexpr size_t kMaxEmptyLanes = 1024;
  if (++empty_lanes_ <= kMaxEmptyLanes) return;
  absl::erase_if(lanes_, [](const auto& entry) { return entry.second->empty(); });
  empty_lanes_ = 0;
}

void FairQueue::ForEachLane(bool firsts, bool retries,
                            absl::FunctionRef<void(const LaneInfo&, const Item&)> fn) const {
  for (int level = common::kPriorityCount - 1; level > 0; --level) {
    for (const Lane* lane : rings_[level]) {
      const Item* head = lane->Head(firsts, retries);
      if (head == nullptr) continue;
      fn(LaneInfo{lane->key, lane->priority, lane->scopes, lane->firsts.size(),
                  lane->retries.size()},
         *head);
    }
  }
}

const FairQueue::Item* FairQueue::FrontRetry() const {
  if (retries_ == 0) return nullptr;
  for (int level = common::kPriorityCount - 1; level > 0; --level) {
    for (const Lane* lane : rings_[level]) {
      if (!lane->retries.empty()) return &lane->retries.front();
    }
  }
  return nullptr;
}

absl::Time FairQueue::OldestSince() const {
  absl::Time oldest = absl::InfiniteFuture();
  for (const Ring& ring : rings_) {
    for (const Lane* lane : ring) {
      if (!lane->firsts.empty()) oldest = std::min(oldest, lane->firsts.front().since);
      if (!lane->retries.empty()) oldest = std::min(oldest, lane->retries.front().since);
    }
  }
  return oldest;
}

void FairQueue::Drain(std::vector<Item>* out) {
  const size_t start = out->size();
  for (Ring& ring : rings_) {
    for (Lane* lane : ring) {
      out->insert(out->end(), lane->firsts.begin(), lane->firsts.end());
      out->insert(out->end(), lane->retries.begin(), lane->retries.end());
    }
    ring.clear();
  }
  std::sort(out->begin() + static_cast<std::ptrdiff_t>(start), out->end(),
            [](const Item& a, const Item& b) { return a.seq < b.seq; });
  lanes_.clear();
  size_ = 0;
  retries_ = 0;
  empty_lanes_ = 0;
  peeked_.valid = false;
}

}  // namespace rebound::engine
