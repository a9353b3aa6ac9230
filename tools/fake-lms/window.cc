#include "tools/fake-lms/window.h"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace rebound::fakelms {
namespace {

std::string Number(double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : "0";
}

// Whole seconds from `now_ms` until `at_ms`, rounded up: never earlier than the reset.
int64_t SecondsUntil(int64_t at_ms, int64_t now_ms) {
  return std::max<int64_t>(0, (at_ms - now_ms + 999) / 1000);
}

}  // namespace

std::optional<WindowSettings> WindowSettings::FromParams(
    WindowStyle style, const std::function<const char*(const char*)>& param, std::string* error) {
  WindowSettings s;
  s.style = style;
  if (style != WindowStyle::kD2L) {
    s.limit = 1200;
    s.cost = 1;
  }
  if (style == WindowStyle::kBlackboard) {
    s.limit = 10000;
    s.window_ms = 24 * 60 * 60 * 1000;
  }
  if (const char* prefix = param("prefix"); prefix != nullptr) {
    s.prefix = prefix;
    if (!s.prefix.empty() && s.prefix[0] != '/') {
      *error = "prefix: want a path starting with '/'";
      return std::nullopt;
    }
  }
  for (const auto& [name, out] : {std::pair<const char*, double*>{"limit", &s.limit},
                                  {"cost", &s.cost},
                                  {"day_limit", &s.day_limit}}) {
    const char* text = param(name);
    if (text == nullptr) continue;
    double v = 0;
    const char* end = text + std::strlen(text);
    auto [ptr, ec] = std::from_chars(text, end, v);
    if (ec != std::errc() || ptr != end || !(v > 0)) {
      *error = std::string(name) + ": want a positive number";
      return std::nullopt;
    }
    *out = v;
  }
  if (const char* text = param("window_ms"); text != nullptr) {
    int64_t v = 0;
    const char* end = text + std::strlen(text);
    auto [ptr, ec] = std::from_chars(text, end, v);
    if (ec != std::errc() || ptr != end || v < 1000 || v % 1000 != 0) {
      *error = "window_ms: want a whole number of seconds in ms, at least 1000";
      return std::nullopt;
    }
    s.window_ms = v;
  }
  return s;
}

nlohmann::json WindowSettings::ToJson() const {
  const char* name = style == WindowStyle::kD2L      ? "d2l"
                     : style == WindowStyle::kClever ? "clever"
                     : style == WindowStyle::kGoogle ? "google-classroom"
                                                     : "blackboard";
  return {{"style", name}, {"prefix", prefix},       {"limit", limit},
          {"cost", cost},  {"window_ms", window_ms}, {"day_limit", day_limit}};
}

WindowThrottle::Window& WindowThrottle::Current(const std::string& token, int64_t now_ms) {
  Window& w = windows_[token];
  const int64_t start = now_ms - now_ms % settings_.window_ms;
  if (w.start_ms != start) w = Window{start, 0};
  return w;
}

WindowThrottle::Verdict WindowThrottle::Arrive(const std::string& token, int64_t now_ms) {
  if (settings_.style == WindowStyle::kGoogle) return ArriveMoving(token, now_ms);
  // Blackboard counts per application, whoever's token a request carries.
  Window& w = Current(settings_.style == WindowStyle::kBlackboard ? "" : token, now_ms);
  const int64_t reset_ms = w.start_ms + settings_.window_ms;
  Verdict v;
  v.throttled = settings_.limit - w.used < settings_.cost;
  if (!v.throttled) w.used += settings_.cost;
  ++(v.throttled ? throttled_ : passed_);
  switch (settings_.style) {
    case WindowStyle::kD2L:
      if (v.throttled) {
        v.headers.emplace_back("Retry-After", std::to_string(SecondsUntil(reset_ms, now_ms)));
      } else {
        v.headers.emplace_back("X-Rate-Limit-Remaining", Number(settings_.limit - w.used));
        v.headers.emplace_back("X-Rate-Limit-Reset",
                               std::to_string(SecondsUntil(reset_ms, now_ms)));
        v.headers.emplace_back("X-Request-Cost", Number(settings_.cost));
      }
      break;
    case WindowStyle::kClever:
      if (v.throttled) {
        v.headers.emplace_back("X-RateLimit-Reset", std::to_string((reset_ms + 999) / 1000));
      }
      break;
    case WindowStyle::kBlackboard:  // on every answer, a throttled one too
      v.headers.emplace_back("X-Rate-Limit-Limit", Number(settings_.limit));
      v.headers.emplace_back("X-Rate-Limit-Remaining", Number(settings_.limit - w.used));
      v.headers.emplace_back("X-Rate-Limit-Reset", std::to_string((reset_ms + 999) / 1000));
      break;
    case WindowStyle::kGoogle:  // a moving window: ArriveMoving
      break;
  }
  return v;
}

WindowThrottle::Verdict WindowThrottle::ArriveMoving(const std::string& token, int64_t now_ms) {
  constexpr int64_t kDayMs = 24 * 60 * 60 * 1000;
  std::deque<int64_t>& recent = recent_[token];
  while (!recent.empty() && recent.front() <= now_ms - settings_.window_ms) recent.pop_front();
  const int64_t day = now_ms - now_ms % kDayMs;
  if (day_.start_ms != day) day_ = Window{day, 0};
  Verdict v;
  v.throttled = static_cast<double>(recent.size()) + settings_.cost > settings_.limit ||
                day_.used + settings_.cost > settings_.day_limit;
  if (v.throttled) {
    ++throttled_;
    v.content_type = "application/json; charset=UTF-8";
    v.body = R"({"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).",)"
             R"("status":"RESOURCE_EXHAUSTED"}})";
    return v;
  }
  ++passed_;
  recent.push_back(now_ms);
  day_.used += settings_.cost;
  return v;
}

nlohmann::json WindowThrottle::Status(int64_t now_ms) const {
  nlohmann::json windows = nlohmann::json::array();
  for (const auto& [token, w] : windows_) {
    const int64_t start = now_ms - now_ms % settings_.window_ms;
    const double used = w.start_ms == start ? w.used : 0;
    windows.push_back(
        {{"remaining", settings_.limit - used}, {"reset_ms", start + settings_.window_ms}});
  }
  return {{"settings", settings_.ToJson()},
          {"throttled", throttled_},
          {"passed", passed_},
          {"windows", std::move(windows)}};
}

}  // namespace rebound::fakelms
