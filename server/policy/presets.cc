#include "server/policy/presets.h"

#include <algorithm>
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

  // Moodle (webservice/rest/locallib.php in moodle/moodle: webservice_rest_server::send_error
  // answers an exception with HTTP 200 and {"exception":...,"errorcode":...,"message":...}).
  // Such a 200 is no success: permanent (a bad token, a refused capability, a bad parameter),
  // except the codes of a site or database that is briefly unable to serve: sitemaintenance
  // (webservice/lib.php raises it while the site is in maintenance mode, "usually temporary"),
  // dbconnectionfailed, dmlreadexception and dmlwriteexception (lib/dml: the database refused
  // the connection, a read or a write; a deadlock or a lost connection says so, but so does a
  // schema bug, so a lasting one ends EXHAUSTED after max_attempts rather than at once). Moodle
  // documents no rate limit and sends no rate-limit header.
  Preset moodle;
  moodle.name = "moodle";
  Rule transient;
  transient.name = "moodle-transient";
  transient.statuses = {{200, 200}};
  transient.body_regex = std::make_shared<const RE2>(
      R"re(^\s*\{\s*"exception"\s*:.*"errorcode"\s*:\s*)re"
      R"re("(sitemaintenance|dbconnectionfailed|dmlreadexception|dmlwriteexception)")re");
  transient.action = Action::kRetry;
  Rule exception;
  exception.name = "moodle-exception";
  exception.statuses = {{200, 200}};
  exception.body_regex = std::make_shared<const RE2>(R"re(^\s*\{\s*"exception"\s*:)re");
  exception.action = Action::kPermanent;
  moodle.rules = {transient, exception};
  moodle.throttle_headers = Only({}, {}, {});
  presets.push_back(std::move(moodle));

  // Blackboard Learn (https://docs.anthology.com/docs/developer-portal/production-groups-rest-
  // api-and-site-registration-limits: "by default 10,000 calls every 24 hours" per
  // application; https://community.blackboard.com/docs/DOC-4258-developer-groups-site-quotas-
  // and-rate-limits: every answer carries X-Rate-Limit-Limit, X-Rate-Limit-Remaining and
  // X-Rate-Limit-Reset, "the remaining time before the rate limit resets, given in UTC epoch
  // seconds"). The reset is read as a unix time, the meaning that wording has where it comes
  // from, and else as seconds until the reset (a unix reading of a small number lies in the
  // past and is skipped). No status for an exhausted quota is documented: the defaults read
  // 429 as rate limited.
  Preset blackboard;
  blackboard.name = "blackboard";
  blackboard.throttle_headers = Only({{"x-rate-limit-reset", ResetForm::kUnixSeconds},
                                      {"x-rate-limit-reset", ResetForm::kDeltaSeconds}},
                                     {"x-rate-limit-remaining"}, {});
  blackboard.throttle_headers.limit = {"x-rate-limit-limit"};
  presets.push_back(std::move(blackboard));

  // ClassLink Roster Server (https://developer.classlink.com/reference/oneroster-api-request-
  // limits): over the limit, 429 and a "cool-down" before retrying; back off exponentially with
  // jitter on 429 and 5xx. No header is documented: the defaults already read 429 and 5xx so,
  // and with no time named the endpoint waits out the (exponential) throttle backoff.
  Preset classlink;
  classlink.name = "classlink";
  classlink.throttle_headers = Only({}, {}, {});
  presets.push_back(std::move(classlink));

  // 1EdTech OneRoster 1.1/1.2 REST binding (error reporting: https://support.imsglobal.org/
  // support/solutions/articles/48001171025-what-error-reporting-does-oneroster-include-): HTTP
  // statuses with an imsx_codeMajor / imsx_severity / imsx_codeMinor payload; no rate limit
  // and no rate-limit header is documented, so the preset is the defaults and reads no vendor
  // header.
  Preset oneroster;
  oneroster.name = "oneroster";
  oneroster.throttle_headers = Only({}, {}, {});
  presets.push_back(std::move(oneroster));

  // By name: PresetNames() lists them so in messages.
  std::sort(presets.begin(), presets.end(),
            [](const Preset& a, const Preset& b) { return a.name < b.name; });
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
