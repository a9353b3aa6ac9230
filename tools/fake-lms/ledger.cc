#include "tools/fake-lms/ledger.h"

#include <algorithm>
#include <string_view>

namespace rebound::fakelms {

KeyRecord& Ledger::Arrive(const std::string& key, Arrival arrival) {
  KeyRecord& record = keys_[key];
  ++record.attempts;
  ++attempts_;
  record.history.push_back({arrival.at_ms, 0});
  record.key_header_every_attempt = record.key_header_every_attempt && arrival.key_header;
  record.last = std::move(arrival);
  return record;
}

void Ledger::Answered(KeyRecord& record, const Answer& answer) {
  record.history.back().status = answer.status;
  if (answer.status >= 200 && answer.status < 300 && answer.can_be_effect && !record.effect) {
    record.effect = answer;
    ++record.effects;
    ++effects_;
  }
}

void Ledger::Unanswered(KeyRecord& record) { record.history.back().status = 0; }

void Ledger::Repeated(KeyRecord& record) {
  record.history.back().status = record.effect->status;
  ++record.repeats;
  ++repeats_;
}

void Ledger::AnsweredByOutage(KeyRecord& record, int status) {
  record.history.back().status = status;
  ++record.outage_answers;
  ++outage_answers_;
}

void Ledger::AnsweredByThrottle(KeyRecord& record, int status) {
  record.history.back().status = status;
  ++record.throttle_answers;
  ++throttle_answers_;
}

void Ledger::Clear() {
  keys_.clear();
  requests_ = connections_ = attempts_ = effects_ = repeats_ = outage_answers_ = throttle_answers_ =
      0;
}

nlohmann::json Ledger::Stats(bool totals_only) const {
  nlohmann::json out;
  out["totals"] = {{"requests", requests_},
                   {"connections", connections_},
                   {"keys", keys_.size()},
                   {"attempts", attempts_},
                   {"effects", effects_},
                   {"repeats", repeats_},
                   {"outage_answers", outage_answers_},
                   {"throttle_answers", throttle_answers_}};
  if (totals_only) return out;
  nlohmann::json keys = nlohmann::json::object();
  for (const auto& [key, record] : keys_) keys[key] = ToJson(record);
  out["keys"] = std::move(keys);
  return out;
}

std::optional<nlohmann::json> Ledger::KeyStats(const std::string& key) const {
  auto it = keys_.find(key);
  if (it == keys_.end()) return std::nullopt;
  return ToJson(it->second);
}

nlohmann::json Ledger::ToJson(const KeyRecord& record) {
  nlohmann::json headers = nlohmann::json::object();
  std::string_view rest = record.last.headers;
  while (!rest.empty()) {
    const size_t end = rest.find('\n');
    const std::string_view line = rest.substr(0, end);
    const size_t colon = line.find(": ");
    if (colon != std::string_view::npos) {
      headers[std::string(line.substr(0, colon))] = std::string(line.substr(colon + 2));
    }
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
  }
  nlohmann::json times = nlohmann::json::array();
  nlohmann::json statuses = nlohmann::json::array();
  for (const KeyRecord::Attempt& a : record.history) {
    times.push_back(a.at_ms);
    statuses.push_back(a.status);
  }
  return {{"attempts", record.attempts},
          {"effects", record.effects},
          {"repeats", record.repeats},
          {"outage_answers", record.outage_answers},
          {"throttle_answers", record.throttle_answers},
          {"times_ms", std::move(times)},
          {"statuses", std::move(statuses)},
          {"key_header_every_attempt", record.key_header_every_attempt},
          {"last_method", record.last.method},
          {"last_path", record.last.path},
          {"last_body_bytes", record.last.body_bytes},
          {"last_headers", std::move(headers)}};
}

size_t ArrivalLog::Add(double at_ms, std::string_view path) {
  if (entries_.size() >= kMaxEntries) {
    ++dropped_;
    return kNone;
  }
  Entry entry;
  entry.at_ms = at_ms;
  entry.segment = SegmentIndex(path);
  entries_.push_back(entry);
  return entries_.size() - 1;
}

void ArrivalLog::Answered(size_t index, int status, bool outage) {
  if (index >= entries_.size()) return;
  entries_[index].status = static_cast<int16_t>(status);
  entries_[index].outage = outage;
}

void ArrivalLog::Finished(size_t index, double at_ms) {
  if (index < entries_.size()) entries_[index].done_ms = at_ms;
}

void ArrivalLog::Clear() {
  entries_.clear();
  segments_.clear();
  segment_index_.clear();
  dropped_ = 0;
}

uint32_t ArrivalLog::SegmentIndex(std::string_view path) {
  // "/e17/api/v1/x" -> "/e17"; "/" and "" -> "/".
  const size_t end = path.size() > 1 ? path.find('/', 1) : std::string_view::npos;
  std::string segment(path.substr(0, std::min(end, kMaxSegmentBytes)));
  if (segment.empty()) segment = "/";
  if (auto it = segment_index_.find(segment); it != segment_index_.end()) return it->second;
  if (segments_.size() >= kMaxSegments) segment = "(other)";
  if (auto it = segment_index_.find(segment); it != segment_index_.end()) return it->second;
  const auto index = static_cast<uint32_t>(segments_.size());
  segments_.push_back(segment);
  segment_index_.emplace(std::move(segment), index);
  return index;
}

nlohmann::json ArrivalLog::Since(double since_ms, double now_ms) const {
  // Entries are in arrival order (one thread, a monotonic clock).
  auto first = std::lower_bound(entries_.begin(), entries_.end(), since_ms,
                                [](const Entry& e, double t) { return e.at_ms < t; });
  nlohmann::json rows = nlohmann::json::array();
  for (auto it = first; it != entries_.end(); ++it) {
    nlohmann::json done = it->done_ms < 0 ? nlohmann::json(nullptr) : nlohmann::json(it->done_ms);
    rows.push_back(
        {it->at_ms, segments_[it->segment], std::move(done), it->status, it->outage ? 1 : 0});
  }
  return {{"now_ms", now_ms},
          {"fields", {"at_ms", "segment", "done_ms", "status", "outage"}},
          {"arrivals", std::move(rows)},
          {"dropped", dropped_}};
}

}  // namespace rebound::fakelms
