#include "tools/fake-lms/canvas.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>

namespace rebound::fakelms {
namespace {

// "%g"-like, as Canvas writes a Ruby Float: "50.0", "-149.5", "0.25".
std::string Units(double v) {
  char buf[64];
  const int n = std::snprintf(buf, sizeof(buf), "%.4f", v);
  std::string s(buf, static_cast<size_t>(std::max(n, 0)));
  // Trailing zeros off, but one digit after the point stays.
  while (s.size() > 2 && s.back() == '0' && s[s.size() - 2] != '.') s.pop_back();
  return s;
}

std::optional<double> NonNegative(const char* text) {
  const char* end = text + std::strlen(text);
  double value = 0;
  auto [ptr, ec] = std::from_chars(text, end, value);
  if (ec != std::errc() || ptr != end || ptr == text || !(value >= 0)) return std::nullopt;
  return value;
}

}  // namespace

std::optional<CanvasSettings> CanvasSettings::FromParams(
    const std::function<const char*(const char*)>& param, std::string* error) {
  CanvasSettings s;
  if (const char* prefix = param("prefix"); prefix != nullptr) {
    s.prefix = prefix;
    if (!s.prefix.empty() && s.prefix[0] != '/') {
      *error = "prefix: want a path starting with '/'";
      return std::nullopt;
    }
  }
  const std::pair<const char*, double*> numbers[] = {{"high_water", &s.high_water},
                                                     {"maximum", &s.maximum},
                                                     {"outflow", &s.outflow},
                                                     {"up_front", &s.up_front},
                                                     {"cost", &s.cost}};
  for (const auto& [name, out] : numbers) {
    const char* text = param(name);
    if (text == nullptr) continue;
    const std::optional<double> v = NonNegative(text);
    if (!v) {
      *error = std::string(name) + ": want a non-negative number";
      return std::nullopt;
    }
    *out = *v;
  }
  if (s.high_water <= 0 || s.maximum < s.high_water) {
    *error = "high_water: want 0 < high_water <= maximum";
    return std::nullopt;
  }
  return s;
}

nlohmann::json CanvasSettings::ToJson() const {
  return {{"prefix", prefix},   {"high_water", high_water}, {"maximum", maximum},
          {"outflow", outflow}, {"up_front", up_front},     {"cost", cost}};
}

void CanvasThrottle::Increment(Bucket& b, double amount, double now_s) const {
  const double leaked = std::max(0.0, now_s - b.touched_s) * settings_.outflow;
  b.level = std::clamp(std::max(0.0, b.level - leaked) + amount, 0.0, settings_.maximum);
  b.touched_s = std::max(b.touched_s, now_s);
}

CanvasThrottle::Ticket CanvasThrottle::Arrive(const std::string& token, double now_s) {
  auto [it, inserted] = buckets_.try_emplace(token);
  if (inserted) it->second.touched_s = now_s;
  Bucket& b = it->second;
  Increment(b, settings_.up_front, now_s);
  Ticket t{token, b.level >= settings_.high_water};
  ++(t.throttled ? throttled_ : passed_);
  return t;
}

std::vector<std::pair<std::string, std::string>> CanvasThrottle::Finish(const Ticket& ticket,
                                                                        double now_s) {
  Bucket& b = buckets_[ticket.token];
  const double cost = ticket.throttled ? 0.0 : settings_.cost;
  Increment(b, cost - settings_.up_front, now_s);
  std::vector<std::pair<std::string, std::string>> headers;
  if (!ticket.throttled) headers.emplace_back("X-Request-Cost", Units(cost));
  headers.emplace_back("X-Rate-Limit-Remaining", Units(settings_.high_water - b.level));
  return headers;
}

nlohmann::json CanvasThrottle::Status(double now_s) const {
  nlohmann::json buckets = nlohmann::json::array();
  for (const auto& [token, bucket] : buckets_) {
    const double leaked = std::max(0.0, now_s - bucket.touched_s) * settings_.outflow;
    const double level = std::max(0.0, bucket.level - leaked);
    buckets.push_back({{"level", level}, {"remaining", settings_.high_water - level}});
  }
  return {{"settings", settings_.ToJson()},
          {"throttled", throttled_},
          {"passed", passed_},
          {"buckets", std::move(buckets)}};
}

}  // namespace rebound::fakelms
