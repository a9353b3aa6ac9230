#include "tools/fake-lms/ledger.h"

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
  if (answer.status >= 200 && answer.status < 300 && !record.effect) {
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

void Ledger::Clear() {
  keys_.clear();
  requests_ = connections_ = attempts_ = effects_ = repeats_ = 0;
}

nlohmann::json Ledger::Stats(bool totals_only) const {
  nlohmann::json out;
  out["totals"] = {{"requests", requests_}, {"connections", connections_}, {"keys", keys_.size()},
                   {"attempts", attempts_}, {"effects", effects_},         {"repeats", repeats_}};
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
          {"times_ms", std::move(times)},
          {"statuses", std::move(statuses)},
          {"key_header_every_attempt", record.key_header_every_attempt},
          {"last_method", record.last.method},
          {"last_path", record.last.path},
          {"last_body_bytes", record.last.body_bytes},
          {"last_headers", std::move(headers)}};
}

}  // namespace rebound::fakelms
