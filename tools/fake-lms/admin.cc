// fake-lms's admin endpoints (/__health, /__reset, /__stats, /__outage, /__canvas, /__d2l,
// /__clever, /__google-classroom, /__blackboard, /__moodle, /__arrivals) and what they set up:
// outages and LMS modes.
#include <algorithm>
#include <cstring>
#include <utility>

#include "tools/fake-lms/http_util.h"
#include "tools/fake-lms/server.h"

namespace rebound::fakelms {

void Server::HandleAdmin(evhttp_request* req, const std::string& path, const char* query) {
  const evhttp_cmd_type method = evhttp_request_get_command(req);
  if (path == "/__health") {
    SendAnswer(req, JsonAnswer(200, {{"ok", true}}));
  } else if (path == "/__reset" && method == EVHTTP_REQ_POST) {
    ledger_.Clear();
    arrivals_.Clear();
    outages_.clear();
    canvas_.clear();
    windows_.clear();
    moodle_.clear();
    SendAnswer(req, JsonAnswer(200, {{"ok", true}}));
  } else if (path == "/__stats" && method == EVHTTP_REQ_GET) {
    const QueryParams params(query);
    if (const char* key = params.Find("key"); key != nullptr) {
      std::optional<nlohmann::json> stats = ledger_.KeyStats(key);
      SendAnswer(req, stats ? JsonAnswer(200, *stats)
                            : JsonAnswer(404, {{"error", "unknown key"}, {"key", key}}));
    } else {
      const char* summary = params.Find("summary");
      const bool totals_only = summary != nullptr && std::strcmp(summary, "0") != 0;
      SendAnswer(req, JsonAnswer(200, ledger_.Stats(totals_only)));
    }
  } else if (path == "/__outage") {
    HandleOutage(req, query);
  } else if (path == "/__canvas") {
    HandleCanvas(req, query);
  } else if (path == "/__d2l") {
    HandleWindow(req, query, WindowStyle::kD2L);
  } else if (path == "/__google-classroom") {
    HandleWindow(req, query, WindowStyle::kGoogle);
  } else if (path == "/__clever") {
    HandleWindow(req, query, WindowStyle::kClever);
  } else if (path == "/__blackboard") {
    HandleWindow(req, query, WindowStyle::kBlackboard);
  } else if (path == "/__moodle") {
    HandleMoodle(req, query);
  } else if (path == "/__arrivals" && method == EVHTTP_REQ_GET) {
    const QueryParams params(query);
    const std::optional<double> since = ParseNonNegative<double>(params.Find("since_ms"));
    SendAnswer(req, since ? JsonAnswer(200, arrivals_.Since(*since, NowMs()))
                          : JsonAnswer(400, {{"error", "since_ms: want a non-negative number"}}));
  } else if (path == "/__stats" || path == "/__reset" || path == "/__arrivals") {
    SendAnswer(req, JsonAnswer(405, {{"error", "method not allowed"}}));
  } else {
    SendAnswer(req, JsonAnswer(404, {{"error", "unknown admin path"}, {"path", path}}));
  }
}

void Server::HandleOutage(evhttp_request* req, const char* query) {
  const double now = NowMs();
  outages_.erase(std::remove_if(outages_.begin(), outages_.end(),
                                [now](const Outage& o) { return o.until_ms <= now; }),
                 outages_.end());
  const auto listing = [&] {
    nlohmann::json list = nlohmann::json::array();
    for (const Outage& o : outages_) {
      list.push_back({{"prefix", o.prefix},
                      {"status", o.status},
                      {"from_ms", o.from_ms},
                      {"until_ms", o.until_ms},
                      {"active", o.from_ms <= now}});
    }
    return nlohmann::json{{"now_ms", now}, {"outages", std::move(list)}};
  };
  if (AnsweredUnlessPost(req, listing)) return;
  const QueryParams params(query);
  const char* ms_text = params.Find("ms");
  const std::optional<int> ms = ParseNonNegative<int>(ms_text);
  const std::optional<int> after_ms = ParseNonNegative<int>(params.Find("after_ms"));
  const char* status_text = params.Find("status");
  const std::optional<int> status =
      status_text == nullptr ? std::optional<int>(503) : ParseNonNegative<int>(status_text);
  const char* prefix_text = params.Find("prefix");
  const std::string prefix = prefix_text != nullptr ? prefix_text : "";
  std::string error;
  if (ms_text == nullptr || !ms) {
    error = "ms: want a non-negative integer (0 ends the outage)";
  } else if (!after_ms) {
    error = "after_ms: want a non-negative integer";
  } else if (!status || *status < 400 || *status > 599) {
    error = "status: want 400..599";
  } else if (!prefix.empty() && prefix[0] != '/') {
    error = "prefix: want a path starting with '/'";
  }
  if (!error.empty()) {
    SendAnswer(req, JsonAnswer(400, {{"error", error}}));
    return;
  }
  outages_.erase(std::remove_if(outages_.begin(), outages_.end(),
                                [&](const Outage& o) { return o.prefix == prefix; }),
                 outages_.end());
  if (*ms > 0) {
    if (outages_.size() >= kMaxOutages) {
      SendAnswer(req, JsonAnswer(400, {{"error", "too many outages (at most 64 prefixes)"}}));
      return;
    }
    outages_.push_back({prefix, *status, now + *after_ms, now + *after_ms + *ms});
  }
  SendAnswer(req, JsonAnswer(200, listing()));
}

namespace {

// POST of a throttle mode: `settings` parsed from the query (nullopt: `error` says why), then
// `off=1` removes the one of that prefix, else it replaces it (at most kMax of them). Answers
// `listing()` or the error.
template <typename Throttle, typename Settings, typename Listing>
void SetThrottle(evhttp_request* req, const QueryParams& params, std::optional<Settings> settings,
                 std::string error, size_t max, std::vector<Throttle>* list,
                 const Listing& listing) {
  const char* off = params.Find("off");
  if (settings && off != nullptr && std::strcmp(off, "0") != 0 && std::strcmp(off, "1") != 0) {
    settings.reset();
    error = "off: want 0 or 1";
  }
  if (!settings) {
    SendAnswer(req, JsonAnswer(400, {{"error", error}}));
    return;
  }
  list->erase(
      std::remove_if(list->begin(), list->end(),
                     [&](const Throttle& t) { return t.settings().prefix == settings->prefix; }),
      list->end());
  if (off == nullptr || std::strcmp(off, "1") != 0) {
    if (list->size() >= max) {
      SendAnswer(req, JsonAnswer(400, {{"error", "too many throttles (at most 64 prefixes)"}}));
      return;
    }
    list->emplace_back(*std::move(settings));
  }
  SendAnswer(req, JsonAnswer(200, listing()));
}

}  // namespace

void Server::HandleCanvas(evhttp_request* req, const char* query) {
  const double now_s = NowMs() / 1000;
  const auto listing = [&] {
    nlohmann::json list = nlohmann::json::array();
    for (const CanvasThrottle& c : canvas_) list.push_back(c.Status(now_s));
    return nlohmann::json{{"canvas", std::move(list)}};
  };
  if (AnsweredUnlessPost(req, listing)) return;
  const QueryParams params(query);
  std::string error;
  std::optional<CanvasSettings> settings =
      CanvasSettings::FromParams([&](const char* name) { return params.Find(name); }, &error);
  SetThrottle(req, params, std::move(settings), std::move(error), kMaxOutages, &canvas_, listing);
}

void Server::HandleWindow(evhttp_request* req, const char* query, WindowStyle style) {
  const auto listing = [&] {
    nlohmann::json list = nlohmann::json::array();
    for (const WindowThrottle& w : windows_) list.push_back(w.Status(WallMs()));
    return nlohmann::json{{"windows", std::move(list)}};
  };
  if (AnsweredUnlessPost(req, listing)) return;
  const QueryParams params(query);
  std::string error;
  std::optional<WindowSettings> settings = WindowSettings::FromParams(
      style, [&](const char* name) { return params.Find(name); }, &error);
  SetThrottle(req, params, std::move(settings), std::move(error), kMaxOutages, &windows_, listing);
}

void Server::HandleMoodle(evhttp_request* req, const char* query) {
  const auto listing = [&] {
    nlohmann::json list = nlohmann::json::array();
    for (const MoodleMode& m : moodle_) list.push_back(m.Status());
    return nlohmann::json{{"moodle", std::move(list)}};
  };
  if (AnsweredUnlessPost(req, listing)) return;
  const QueryParams params(query);
  std::string error;
  std::optional<MoodleSettings> settings =
      MoodleSettings::FromParams([&](const char* name) { return params.Find(name); }, &error);
  SetThrottle(req, params, std::move(settings), std::move(error), kMaxOutages, &moodle_, listing);
}

bool Server::IsMoodle(const std::string& path) const {
  return std::any_of(moodle_.begin(), moodle_.end(),
                     [&](const MoodleMode& m) { return path.rfind(m.settings().prefix, 0) == 0; });
}

WindowThrottle* Server::WindowFor(const std::string& path) {
  WindowThrottle* found = nullptr;
  for (WindowThrottle& w : windows_) {
    const std::string& prefix = w.settings().prefix;
    if (path.rfind(prefix, 0) == 0 &&
        (found == nullptr || prefix.size() > found->settings().prefix.size())) {
      found = &w;
    }
  }
  return found;
}

CanvasThrottle* Server::CanvasFor(const std::string& path) {
  CanvasThrottle* found = nullptr;
  for (CanvasThrottle& c : canvas_) {
    const std::string& prefix = c.settings().prefix;
    if (path.rfind(prefix, 0) == 0 &&
        (found == nullptr || prefix.size() > found->settings().prefix.size())) {
      found = &c;
    }
  }
  return found;
}

void Server::FinishCanvas(const std::optional<CanvasRef>& canvas, Answer* answer) {
  if (!canvas) return;
  for (CanvasThrottle& c : canvas_) {
    if (c.settings().prefix != canvas->prefix) continue;
    auto headers = c.Finish(canvas->ticket, NowMs() / 1000);
    if (answer != nullptr) {
      answer->headers.insert(answer->headers.end(), headers.begin(), headers.end());
    }
    return;
  }
}

const Server::Outage* Server::OutageFor(const std::string& path, double now_ms) {
  const Outage* found = nullptr;
  for (const Outage& o : outages_) {
    if (o.from_ms <= now_ms && now_ms < o.until_ms && path.rfind(o.prefix, 0) == 0 &&
        (found == nullptr || o.prefix.size() > found->prefix.size())) {
      found = &o;
    }
  }
  return found;
}

}  // namespace rebound::fakelms
