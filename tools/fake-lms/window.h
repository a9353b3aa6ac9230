// WindowThrottle: a fixed-window request quota per client, in the throttling language of an LMS
// that documents one, for the scripted requests under a path prefix (POST /__d2l, /__clever,
// /__google-classroom, /__blackboard).
//
// The count of each client's window starts full and is reset at every multiple of the window
// length on the wall clock (both vendors reset "every minute" by their server's clock); a
// request costs `cost` units at arrival and is throttled (429, no effect, no script step) when
// fewer than `cost` remain. What the answers carry is each vendor's, and nothing else:
//
//  - D2L Brightspace (https://community.d2l.com/brightspace/kb/articles/1195-rate-limiting-and-
//    api-response-headers, and the FAQ article 1191): a bucket of credits per API app per
//    minute (50,000), every answer but a 429 carries X-Rate-Limit-Remaining (credits left in
//    the minute), X-Rate-Limit-Reset (seconds until the bucket resets) and X-Request-Cost (10);
//    a 429 carries only Retry-After (seconds until the bucket resets).
//  - Clever (https://dev.clever.com/docs/error-messages, "Rate Limiting"): 1,200 requests per
//    minute per bearer token, a count that resets every minute (not an average); a throttled
//    request is answered 429 with X-RateLimit-Reset, the unix timestamp of the reset. The page
//    names no header on other answers, so none is sent.
//  - Google Classroom (https://developers.google.com/classroom/limits): quota "checked on a
//    60-second moving average": 1,200 queries per minute per user (here: per token, over the
//    last window), 4,000,000 per day per client (here: all tokens of the prefix, per UTC day). A
//    request over a limit gets the RESOURCE_EXHAUSTED error, which Google's APIs send as 429 with
//    the JSON error body of https://cloud.google.com/apis/design/errors; no Retry-After and no
//    quota headers are documented, so none are sent (retry "preferably using exponential
//    backoff").
//  - Blackboard Learn (https://docs.anthology.com/docs/developer-portal/production-groups-rest-
//    api-and-site-registration-limits: 10,000 calls every 24 hours per application;
//    https://community.blackboard.com/docs/DOC-4258-developer-groups-site-quotas-and-rate-
//    limits): one count per application, whatever the token; X-Rate-Limit-Limit,
//    X-Rate-Limit-Remaining and X-Rate-Limit-Reset (the reset as UTC epoch seconds) on every
//    answer, a throttled one too. The status over the quota is not documented: 429 here, the
//    HTTP status for it; no Retry-After, which neither page names.
//
// Not thread-safe: the server's event loop owns it. Times are milliseconds since the unix epoch.
#ifndef REBOUND_TOOLS_FAKE_LMS_WINDOW_H_
#define REBOUND_TOOLS_FAKE_LMS_WINDOW_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rebound::fakelms {

enum class WindowStyle { kD2L, kClever, kGoogle, kBlackboard };

struct WindowSettings {
  WindowStyle style = WindowStyle::kD2L;
  std::string prefix;          // scripted requests whose path starts with it ("" = every path)
  double limit = 50000;        // units per window (D2L: credits; Clever: requests, 1,200)
  double cost = 10;            // per request (D2L: 10; Clever: 1)
  int64_t window_ms = 60000;   // Blackboard: 24 h
  double day_limit = 4000000;  // Google: requests per UTC day, all tokens together

  // The vendor's defaults, then the query parameters (`param` returns nullptr for an absent
  // one): prefix, limit, cost, window_ms, day_limit (Google). nullopt with `*error` naming a bad
  // parameter.
  static std::optional<WindowSettings> FromParams(
      WindowStyle style, const std::function<const char*(const char*)>& param, std::string* error);
  nlohmann::json ToJson() const;
};

class WindowThrottle {
 public:
  explicit WindowThrottle(WindowSettings settings) : settings_(std::move(settings)) {}
  const WindowSettings& settings() const { return settings_; }

  struct Verdict {
    bool throttled = false;
    std::vector<std::pair<std::string, std::string>> headers;  // the vendor's, for the answer
    std::string body;  // of a throttled answer, when the vendor documents one ("" otherwise)
    const char* content_type = "text/plain; charset=utf-8";
  };
  // A request with `token` (the Authorization header; "" without one) arrives at `now_ms`.
  Verdict Arrive(const std::string& token, int64_t now_ms);

  // {"settings", "throttled", "passed", "windows": [{"remaining", "reset_ms"}]}.
  nlohmann::json Status(int64_t now_ms) const;

 private:
  struct Window {
    int64_t start_ms = 0;
    double used = 0;
  };
  Window& Current(const std::string& token, int64_t now_ms);
  Verdict ArriveMoving(const std::string& token, int64_t now_ms);  // Google's

  WindowSettings settings_;
  std::unordered_map<std::string, Window> windows_;
  // Google: each token's arrivals within the last window (a moving window), and the day's
  // count over all tokens.
  std::unordered_map<std::string, std::deque<int64_t>> recent_;
  Window day_;
  uint64_t throttled_ = 0;
  uint64_t passed_ = 0;
};

}  // namespace rebound::fakelms

#endif  // REBOUND_TOOLS_FAKE_LMS_WINDOW_H_
