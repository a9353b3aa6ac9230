// CanvasThrottle: Canvas LMS's API throttling, as its documentation and its source describe it,
// for the scripted requests under a path prefix (POST /__canvas).
//
// https://canvas.instructure.com/doc/api/file.throttling.html: a quota per access token; every
// request costs (roughly the time it takes to process) and the quota replenishes over time; a
// throttled request is answered "403 Forbidden (Rate Limit Exceeded)"; answers carry
// X-Request-Cost (what the request cost) and X-Rate-Limit-Remaining (the quota left); parallel
// requests pay a pre-flight penalty, credited back when each finishes. The numbers and the
// exact arithmetic are those of Canvas's own middleware (instructure/canvas-lms,
// app/middleware/request_throttle.rb, LeakyBucket), read to learn, nothing copied:
//   - one bucket per client (the access token); its level leaks at `outflow` units a second and
//     never exceeds `maximum` (default 800);
//   - a request first adds the up-front cost (default 50) and is throttled if the level is then
//     at or above the high-water mark (default 600);
//   - when it ends, the up-front cost comes off and its actual cost goes on (a throttled
//     request costs nothing);
//   - X-Rate-Limit-Remaining is high-water mark - level after that, so it goes below zero when
//     the bucket is over the mark; X-Request-Cost is not sent on a throttled answer; there is no
//     Retry-After and no reset time, ever.
// The cost of a request here is the configured `cost` (Canvas measures CPU and database time),
// and the throttled answer is immediate (the throttle path does no work).
//
// Not thread-safe: the server's event loop owns it. Times are seconds on the caller's clock.
#ifndef REBOUND_TOOLS_FAKE_LMS_CANVAS_H_
#define REBOUND_TOOLS_FAKE_LMS_CANVAS_H_

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rebound::fakelms {

struct CanvasSettings {
  std::string prefix;  // scripted requests whose path starts with it ("" = every path)
  double high_water = 600;
  double maximum = 800;
  double outflow = 10;  // units per second
  double up_front = 50;
  double cost = 1;  // each request's actual cost

  // From query parameters (`param` returns nullptr for an absent one): prefix, high_water,
  // maximum, outflow, up_front, cost; absent ones keep the defaults. nullopt with `*error`
  // naming the parameter when one is bad.
  static std::optional<CanvasSettings> FromParams(
      const std::function<const char*(const char*)>& param, std::string* error);
  nlohmann::json ToJson() const;
};

class CanvasThrottle {
 public:
  explicit CanvasThrottle(CanvasSettings settings) : settings_(std::move(settings)) {}
  const CanvasSettings& settings() const { return settings_; }

  // A request with `token` (the Authorization header; "" without one) arrives at `now_s`: the
  // up-front cost is reserved. Returns whether it is throttled.
  struct Ticket {
    std::string token;
    bool throttled = false;
  };
  Ticket Arrive(const std::string& token, double now_s);
  // It ends at `now_s`: the up-front cost comes off, its cost goes on. The headers to send.
  std::vector<std::pair<std::string, std::string>> Finish(const Ticket& ticket, double now_s);

  // {"settings", "throttled", "passed", "buckets": [{"level", "remaining"}]}.
  nlohmann::json Status(double now_s) const;

 private:
  struct Bucket {
    double level = 0;
    double touched_s = 0;
  };
  // Leaks the bucket up to `now_s`, then adds `amount` (negative to take off), within
  // [0, maximum].
  void Increment(Bucket& b, double amount, double now_s) const;

  CanvasSettings settings_;
  std::unordered_map<std::string, Bucket> buckets_;
  uint64_t throttled_ = 0;
  uint64_t passed_ = 0;
};

}  // namespace rebound::fakelms

#endif  // REBOUND_TOOLS_FAKE_LMS_CANVAS_H_
