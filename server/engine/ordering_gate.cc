#include "server/engine/ordering_gate.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace rebound::engine {

std::string OrderingGate::ScopeOf(absl::string_view tenant, absl::string_view ordering_key) {
  if (ordering_key.empty()) return "";
  return absl::StrCat(tenant, "\n", ordering_key);
}

common::JobId OrderingGate::RunnerOf(const std::string& scope) const {
  auto it = runners_.find(scope);
  return it == runners_.end() ? 0 : it->second;
}

common::JobId OrderingGate::Block(const std::string& scope, common::JobId id) {
  auto& q = blocked_[scope];
  const common::JobId ahead = q.empty() ? RunnerOf(scope) : q.back();
  q.push_back(id);
  return ahead;
}

common::JobId OrderingGate::BlockFirst(const std::string& scope, common::JobId id) {
  blocked_[scope].push_front(id);
  return RunnerOf(scope);
}

common::JobId OrderingGate::Remove(const std::string& scope, common::JobId id,
                                   common::JobId* now_ahead) {
  *now_ahead = 0;
  auto it = blocked_.find(scope);
  if (it == blocked_.end()) return 0;
  auto& q = it->second;
  auto pos = std::find(q.begin(), q.end(), id);
  if (pos == q.end()) return 0;
  *now_ahead = pos == q.begin() ? RunnerOf(scope) : *(pos - 1);
  pos = q.erase(pos);
  const common::JobId behind = pos == q.end() ? 0 : *pos;
  if (q.empty()) blocked_.erase(it);
  if (behind == 0) *now_ahead = 0;
  return behind;
}

common::JobId OrderingGate::TakeNext(const std::string& scope) {
  auto it = blocked_.find(scope);
  if (it == blocked_.end()) return 0;
  const common::JobId id = it->second.front();
  it->second.pop_front();
  if (it->second.empty()) blocked_.erase(it);
  return id;
}

std::vector<std::string> OrderingGate::Orphaned() const {
  std::vector<std::string> scopes;
  for (const auto& [scope, queue] : blocked_) {
    if (!runners_.contains(scope)) scopes.push_back(scope);
  }
  return scopes;
}

size_t OrderingGate::BlockedCount(const std::string& scope) const {
  auto it = blocked_.find(scope);
  return it == blocked_.end() ? 0 : it->second.size();
}

}  // namespace rebound::engine
