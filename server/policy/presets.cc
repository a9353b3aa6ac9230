#include "server/policy/presets.h"

#include <memory>

#include "absl/strings/str_join.h"

namespace rebound::policy {
namespace {

// Header lists that name nothing: the LMS sends no such header. Retry-After stays read on every
// preset: it is HTTP's own (RFC 9110), and a proxy or load balancer in front of the LMS may send
// it with a 503 even where the LMS itself never does.
ThrottleHeaders Only(std::vector<ResetHeader> reset, std::vector<std::string> remaining,
                     std::vector<std::string> cost) {
  ThrottleHeaders h;
  h.ietf = false;
  h.reset = std::move(reset);
  h.remaining = std::move(remaining);
  h.limit = {};
  h.cost = std::move(cost);
  return h;
}

std::vector<Preset> MakePresets() {
  std::vector<Preset> presets;

  // Canvas (https://canvas.instructure.com/doc/api/file.throttling.html): a throttled request is
  // answered "403 Forbidden (Rate Limit Exceeded)", with no Retry-After and no reset; every
  // answer carries X-Request-Cost and X-Rate-Limit-Remaining (the bucket's high-water mark less
  // its level). Any other 403 is a real refusal: permanent, as the defaults read it.
  Preset canvas;
  canvas.name = "canvas";
  Rule throttle;
  throttle.name = "canvas-throttle";
  throttle.statuses = {{403, 403}};
  throttle.body_regex = std::make_shared<const RE2>("Rate Limit Exceeded");
  throttle.action = Action::kRateLimited;
  canvas.rules = {throttle};
  canvas.throttle_headers = Only({}, {"x-rate-limit-remaining"}, {"x-request-cost"});
  // Each request in flight holds an up-front cost (50 of a 600 mark): a first burst at 64 in
  // flight would be throttled before the first answer tells how full the bucket is.
  canvas.start_in_flight = 1;
  presets.push_back(std::move(canvas));

  // Clever (https://dev.clever.com/docs/error-messages): 400, 401, 404, 413 and 501 are not to
  // be retried, 500/502/503 are, and 429 waits for the window's reset, which the throttled
  // answer gives in X-RateLimit-Reset as a unix timestamp. The defaults already classify every
  // one of those so; the preset adds the reset header.
  Preset clever;
  clever.name = "clever";
  clever.throttle_headers = Only({{"x-ratelimit-reset", ResetForm::kUnixSeconds}}, {}, {});
  presets.push_back(std::move(clever));

  // D2L Brightspace (https://community.d2l.com/brightspace/kb/articles/1195-rate-limiting-and-
  // api-response-headers): every answer but a 429 carries X-Rate-Limit-Remaining (credits left
  // in the minute), X-Rate-Limit-Reset (seconds until the bucket resets) and X-Request-Cost; a
  // 429 carries Retry-After (seconds until the reset). The defaults read 429 as rate limited.
  Preset d2l;
  d2l.name = "d2l";
  d2l.throttle_headers = Only({{"x-rate-limit-reset", ResetForm::kDeltaSeconds}},
                              {"x-rate-limit-remaining"}, {"x-request-cost"});
  presets.push_back(std::move(d2l));

  // Google Classroom (https://developers.google.com/classroom/limits): quotas per user per
  // minute and per client per day, checked on a 60-second moving average; a request over them
  // gets RESOURCE_EXHAUSTED (429 in Google's JSON error format), to be retried "preferably using
  // exponential backoff". No Retry-After and no quota header is documented: the defaults read
  // 429 as rate limited, and with no time named the endpoint waits out the throttle backoff,
  // which is exponential.
  Preset google;
  google.name = "google-classroom";
  google.throttle_headers = Only({}, {}, {});
  presets.push_back(std::move(google));

  return presets;
}

const std::vector<Preset>& Presets() {
  static const std::vector<Preset>* const presets = new std::vector<Preset>(MakePresets());
  return *presets;
}

}  // namespace

const Preset* FindPreset(absl::string_view name) {
  for (const Preset& p : Presets()) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::string PresetNames() {
  std::vector<std::string> names;
  for (const Preset& p : Presets()) names.push_back(p.name);
  return absl::StrJoin(names, ", ");
}

}  // namespace rebound::policy
