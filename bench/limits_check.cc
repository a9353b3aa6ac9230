// rebound-limits-check: after a run, checks from fake-lms's arrival log (GET /__arrivals) that
// no endpoint's configured limit was exceeded at the upstream.
//
//   rebound-limits-check --config LIMITS.yaml [--slack-ms 5]
//
// LIMITS.yaml is a Rebound configuration (only endpoints[] is read: name, base_url,
// max_in_flight, rate_limit {rate, burst}); it may carry limits the server under test did not
// have (the "before" run of bench/run.sh protection). Each endpoint's requests are the arrivals
// at its base_url's host:port whose first path segment is its base path's ("/e17" of
// http://127.0.0.1:P/e17); an endpoint without a base path takes the arrivals no other endpoint
// of that host:port claims (when several such endpoints share a host:port they are one group,
// checked against the largest of their limits).
//
// Per endpoint:
//  - rate:      the most requests in any window [t, t + 1 s) must be <= burst + rate * (1 s +
//               slack) (a token bucket that starts full can give no more; `slack` absorbs the
//               admission -> arrival delay varying between requests). Also reported: the most
//               in any 100 ms window.
//  - in flight: the most requests fake-lms held at once (arrival to answer sent) must be <=
//               max_in_flight. fake-lms holds a request for a part of the time Rebound counts it
//               in flight, so a breach here is a breach in Rebound.
// Prints one JSON line; exit 0 when no limit was exceeded, 1 when one was, 2 on bad input or
// when fake-lms cannot be read.
#include <curl/curl.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "bench/http_fetch.h"
#include "nlohmann/json.hpp"

namespace rebound::bench {
namespace {

struct EndpointLimits {
  std::string name;
  std::string origin;   // scheme://host:port
  std::string segment;  // "/e17"; "" when the base URL has no path
  int max_in_flight = 64;
  double rate = 0;  // 0: no bucket
  int burst = 0;
};

struct Request {
  double at_ms = 0;
  double done_ms = -1;  // -1: never answered while logged
  bool outage = false;
};

// scheme://host:port and the first path segment of `url` (curl's URL parser).
std::optional<std::pair<std::string, std::string>> SplitUrl(const std::string& url) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> h(curl_url(), &curl_url_cleanup);
  if (h == nullptr || curl_url_set(h.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    return std::nullopt;
  }
  const auto part = [&](CURLUPart which, unsigned flags) -> std::string {
    char* value = nullptr;
    if (curl_url_get(h.get(), which, &value, flags) != CURLUE_OK) return "";
    std::string out(value);
    curl_free(value);
    return out;
  };
  const std::string origin = absl::StrCat(part(CURLUPART_SCHEME, 0), "://", part(CURLUPART_HOST, 0),
                                          ":", part(CURLUPART_PORT, CURLU_DEFAULT_PORT));
  const std::string path = part(CURLUPART_PATH, 0);
  const size_t end = path.size() > 1 ? path.find('/', 1) : std::string::npos;
  std::string segment = path.substr(0, end);
  if (segment == "/") segment.clear();
  return std::make_pair(origin, segment);
}

std::optional<std::vector<EndpointLimits>> ReadLimits(const std::string& file, std::string* error) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::Exception& e) {
    *error = absl::StrCat(file, ": ", e.what());
    return std::nullopt;
  }
  if (!root["endpoints"] || !root["endpoints"].IsSequence()) {
    *error = absl::StrCat(file, ": no endpoints list");
    return std::nullopt;
  }
  std::vector<EndpointLimits> out;
  for (const YAML::Node& e : root["endpoints"]) {
    EndpointLimits limits;
    try {
      limits.name = e["name"].as<std::string>();
      const auto url = SplitUrl(e["base_url"].as<std::string>());
      if (!url) {
        *error = absl::StrCat(file, ": endpoint ", limits.name, ": base_url does not parse");
        return std::nullopt;
      }
      std::tie(limits.origin, limits.segment) = *url;
      if (e["max_in_flight"]) limits.max_in_flight = e["max_in_flight"].as<int>();
      if (const YAML::Node rl = e["rate_limit"]; rl) {
        limits.rate = rl["rate"] ? rl["rate"].as<double>() : 0;
        limits.burst = rl["burst"] ? rl["burst"].as<int>() : 0;
        // As config.h: burst 0 means max(1, ceil(rate)).
        if (limits.rate > 0 && limits.burst == 0) {
          limits.burst = std::max(1, static_cast<int>(std::ceil(limits.rate)));
        }
      }
    } catch (const YAML::Exception& ex) {
      *error = absl::StrCat(file, ": endpoint ", limits.name, ": ", ex.what());
      return std::nullopt;
    }
    out.push_back(std::move(limits));
  }
  return out;
}

// The most requests whose arrival falls in any window [t, t + window_ms).
size_t MaxInWindow(const std::vector<Request>& sorted, double window_ms) {
  size_t best = 0;
  size_t j = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    j = std::max(j, i);
    while (j < sorted.size() && sorted[j].at_ms - sorted[i].at_ms < window_ms) ++j;
    best = std::max(best, j - i);
  }
  return best;
}

// The most requests held at once (arrival to done; not done: until the end).
int MaxConcurrent(const std::vector<Request>& requests) {
  std::vector<std::pair<double, int>> events;  // (time, +1 | -1); -1 first on a tie
  events.reserve(requests.size() * 2);
  for (const Request& r : requests) {
    events.emplace_back(r.at_ms, +1);
    if (r.done_ms >= 0) events.emplace_back(r.done_ms, -1);
  }
  std::sort(events.begin(), events.end());
  int now = 0;
  int best = 0;
  for (const auto& [t, delta] : events) {
    now += delta;
    best = std::max(best, now);
  }
  return best;
}

int Run(int argc, char** argv) {
  std::string config;
  double slack_ms = 5;
  CLI::App cli{"rebound-limits-check: configured limits against fake-lms's arrival log"};
  cli.add_option("--config", config, "Rebound YAML with the endpoints' limits")->required();
  cli.add_option("--slack-ms", slack_ms, "arrival jitter allowed in the rate check")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(cli, argc, argv);

  std::string error;
  const std::optional<std::vector<EndpointLimits>> endpoints = ReadLimits(config, &error);
  if (!endpoints) {
    std::fprintf(stderr, "limits-check: %s\n", error.c_str());
    return 2;
  }
  // Group index per (origin, segment); endpoints without a base path share the origin's "".
  std::map<std::pair<std::string, std::string>, std::vector<size_t>> groups;
  for (size_t i = 0; i < endpoints->size(); ++i) {
    groups[{(*endpoints)[i].origin, (*endpoints)[i].segment}].push_back(i);
  }
  std::map<std::pair<std::string, std::string>, std::vector<Request>> requests;
  uint64_t unmatched = 0;
  uint64_t logged = 0;
  std::map<std::string, uint64_t> dropped;
  std::set<std::string> origins;
  for (const auto& [group, ignored] : groups) origins.insert(group.first);
  for (const std::string& origin : origins) {
    const absl::StatusOr<std::string> body =
        HttpFetch("GET", origin + "/__arrivals", absl::Seconds(120));
    if (!body.ok()) {
      std::fprintf(stderr, "limits-check: %s\n", body.status().ToString().c_str());
      return 2;
    }
    const nlohmann::json log = nlohmann::json::parse(*body, nullptr, false);
    if (log.is_discarded() || !log.contains("arrivals")) {
      std::fprintf(stderr, "limits-check: %s/__arrivals: not an arrival log\n", origin.c_str());
      return 2;
    }
    dropped[origin] = log.value("dropped", uint64_t{0});
    for (const nlohmann::json& row : log["arrivals"]) {
      ++logged;
      const std::string segment = row[1].get<std::string>();
      const std::string key = groups.count({origin, segment}) != 0 ? segment : "";
      if (groups.count({origin, key}) == 0) {
        ++unmatched;
        continue;
      }
      requests[{origin, key}].push_back(
          {row[0].get<double>(), row[2].is_null() ? -1 : row[2].get<double>(), row[4] == 1});
    }
  }

  nlohmann::json per_endpoint = nlohmann::json::object();
  std::vector<std::string> rate_exceeded;
  std::vector<std::string> in_flight_exceeded;
  int rate_checked = 0;
  for (auto& [group, members] : groups) {
    std::vector<Request>& reqs = requests[group];
    std::sort(reqs.begin(), reqs.end(),
              [](const Request& a, const Request& b) { return a.at_ms < b.at_ms; });
    // Shared groups: the most permissive member's limits (the check can only be that loose).
    EndpointLimits limits = (*endpoints)[members.front()];
    std::string name = limits.name;
    for (size_t k = 1; k < members.size(); ++k) {
      const EndpointLimits& other = (*endpoints)[members[k]];
      name += "+" + other.name;
      limits.max_in_flight = std::max(limits.max_in_flight, other.max_in_flight);
      if (other.rate == 0 || limits.rate == 0) {
        limits.rate = 0;
      } else {
        limits.rate = std::max(limits.rate, other.rate);
        limits.burst = std::max(limits.burst, other.burst);
      }
    }
    const size_t max_1s = MaxInWindow(reqs, 1000);
    const int concurrent = MaxConcurrent(reqs);
    const auto outage = static_cast<uint64_t>(
        std::count_if(reqs.begin(), reqs.end(), [](const Request& r) { return r.outage; }));
    nlohmann::json row = {{"requests", reqs.size()},      {"outage_answers", outage},
                          {"max_in_1s", max_1s},          {"max_in_100ms", MaxInWindow(reqs, 100)},
                          {"max_concurrent", concurrent}, {"max_in_flight", limits.max_in_flight}};
    if (!reqs.empty()) {
      row["first_ms"] = reqs.front().at_ms;
      row["last_ms"] = reqs.back().at_ms;
    }
    if (concurrent > limits.max_in_flight) in_flight_exceeded.push_back(name);
    if (limits.rate > 0) {
      ++rate_checked;
      const auto allowed =
          static_cast<size_t>(std::floor(limits.burst + limits.rate * (1000 + slack_ms) / 1000));
      row["rate"] = limits.rate;
      row["burst"] = limits.burst;
      row["allowed_in_1s"] = allowed;
      if (max_1s > allowed) rate_exceeded.push_back(name);
    }
    per_endpoint[name] = std::move(row);
  }
  // For a one-line summary: the rate-limited endpoint closest to its limit (or furthest over).
  double worst_rate = 0;
  std::string worst_rate_name;
  for (const auto& [name, row] : per_endpoint.items()) {
    if (!row.contains("allowed_in_1s")) continue;
    const double ratio =
        row["max_in_1s"].get<double>() / std::max(1.0, row["allowed_in_1s"].get<double>());
    if (ratio > worst_rate) {
      worst_rate = ratio;
      worst_rate_name = name;
    }
  }
  const bool ok = rate_exceeded.empty() && in_flight_exceeded.empty();
  const nlohmann::json out = {{"ok", ok},
                              {"endpoints", endpoints->size()},
                              {"rate_limited_endpoints", rate_checked},
                              {"rate_exceeded_count", rate_exceeded.size()},
                              {"in_flight_exceeded_count", in_flight_exceeded.size()},
                              {"rate_exceeded", rate_exceeded},
                              {"worst_rate_endpoint", worst_rate_name},
                              {"worst_rate_ratio", worst_rate},
                              {"in_flight_exceeded", in_flight_exceeded},
                              {"slack_ms", slack_ms},
                              {"requests_logged", logged},
                              {"requests_unmatched", unmatched},
                              {"dropped", dropped},
                              {"per_endpoint", per_endpoint}};
  std::printf("%s\n", out.dump().c_str());
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace rebound::bench

int main(int argc, char** argv) {
  return rebound::bench::RunWithCurl(&rebound::bench::Run, argc, argv);
}
