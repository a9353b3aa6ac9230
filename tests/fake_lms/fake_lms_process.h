// Test support: run the real fake-lms binary (tools/fake-lms) and talk to it over HTTP.
//
//   auto lms = FakeLmsProcess::Start();            // FAKE_LMS_BIN, port 0, waits for the port
//   ASSERT_TRUE(lms.ok()) << lms.status();
//   ... (*lms)->base_url() + "/courses/1?script=503,200" ...
//   absl::StatusOr<nlohmann::json> key = (*lms)->Stats("key-1");
//
// The process is stopped by PID (SIGTERM, then SIGKILL after a grace period) and reaped when the
// object dies; should the test process crash, PR_SET_PDEATHSIG kills it (call Start() from the
// thread that lives longest, normally the main thread). Requests use libcurl's easy interface: the
// test binary must have called curl_global_init (register CurlGlobalEnvironment). Not thread-safe;
// one test thread.
#ifndef REBOUND_TESTS_FAKE_LMS_FAKE_LMS_PROCESS_H_
#define REBOUND_TESTS_FAKE_LMS_FAKE_LMS_PROCESS_H_

#include <curl/curl.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/child_process.h"

namespace rebound::fakelms {

// curl_global_init/cleanup once per test binary:
//   const ::testing::Environment* const kCurl =
//       ::testing::AddGlobalTestEnvironment(new rebound::fakelms::CurlGlobalEnvironment);
class CurlGlobalEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { ASSERT_EQ(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK); }
  void TearDown() override { curl_global_cleanup(); }
};

struct HttpReply {
  CURLcode code = CURLE_OK;  // transport result; the rest is meaningful only when CURLE_OK
  long status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  absl::Duration elapsed;

  // First header with that lower-case name, or "" when absent.
  std::string Header(const std::string& name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return v;
    }
    return "";
  }
};

// One blocking HTTP exchange on a fresh connection (no redirects followed).
inline HttpReply HttpFetch(const std::string& method, const std::string& url,
                           const std::vector<std::string>& header_lines = {},
                           const std::string& body = "",
                           absl::Duration timeout = absl::Seconds(10)) {
  HttpReply reply;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> easy(curl_easy_init(), &curl_easy_cleanup);
  if (easy == nullptr) {
    reply.code = CURLE_FAILED_INIT;
    return reply;
  }
  curl_slist* list = nullptr;
  for (const std::string& line : header_lines) list = curl_slist_append(list, line.c_str());
  list = curl_slist_append(list, "Expect:");
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers(list, &curl_slist_free_all);

  CURL* h = easy.get();
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(timeout)));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
  }
  if (method != "POST") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
  using Sink = size_t (*)(char*, size_t, size_t, void*);
  Sink on_body = [](char* data, size_t size, size_t n, void* out) {
    static_cast<std::string*>(out)->append(data, size * n);
    return size * n;
  };
  Sink on_header = [](char* data, size_t size, size_t n, void* out) {
    const std::string line(data, size * n);
    const size_t colon = line.find(':');
    if (colon != std::string::npos) {
      static_cast<std::vector<std::pair<std::string, std::string>>*>(out)->emplace_back(
          absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon))),
          std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
    }
    return size * n;
  };
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &reply.body);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &reply.headers);
  const absl::Time start = absl::Now();
  reply.code = curl_easy_perform(h);
  reply.elapsed = absl::Now() - start;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &reply.status);
  return reply;
}

class FakeLmsProcess {
 public:
#ifdef FAKE_LMS_BIN
  // The binary the build put in FAKE_LMS_BIN.
  static absl::StatusOr<std::unique_ptr<FakeLmsProcess>> Start() { return Start(FAKE_LMS_BIN); }
#endif

  // Runs `binary --listen 127.0.0.1:0 --port-file F` and waits (up to `deadline`) for F.
  static absl::StatusOr<std::unique_ptr<FakeLmsProcess>> Start(
      const std::string& binary, absl::Duration deadline = absl::Seconds(10)) {
    auto process = std::unique_ptr<FakeLmsProcess>(new FakeLmsProcess());
    if (process->dir_.path().empty()) return absl::InternalError("cannot create a temp dir");
    const std::string port_file = process->dir_.File("port");
    auto child =
        testing::ChildProcess::Spawn(binary, {"--listen", "127.0.0.1:0", "--port-file", port_file});
    if (!child.ok()) return child.status();
    process->child_ = *std::move(child);
    auto port = process->child_->WaitForPortFile(port_file, deadline);
    if (!port.ok()) return port.status();
    process->port_ = *port;
    return process;
  }

  FakeLmsProcess(const FakeLmsProcess&) = delete;
  FakeLmsProcess& operator=(const FakeLmsProcess&) = delete;

  // SIGTERM, a grace period, then SIGKILL; returns the exit code (an error if killed).
  absl::StatusOr<int> Stop(absl::Duration grace = absl::Seconds(5)) { return child_->Stop(grace); }

  pid_t pid() const { return child_->pid(); }
  int port() const { return port_; }
  std::string base_url() const { return absl::StrCat("http://127.0.0.1:", port_); }

  // GET /__stats?key=K: that key's object; NotFound when fake-lms never saw the key.
  absl::StatusOr<nlohmann::json> Stats(const std::string& key) const {
    std::unique_ptr<char, decltype(&curl_free)> escaped(
        curl_easy_escape(nullptr, key.data(), static_cast<int>(key.size())), &curl_free);
    return GetJson(absl::StrCat("/__stats?key=", escaped.get()));
  }
  // GET /__stats: {"totals": {...}, "keys": {...}}.
  absl::StatusOr<nlohmann::json> AllStats() const { return GetJson("/__stats"); }
  // GET /__stats?summary=1, the "totals" object: requests, connections, keys, attempts, effects,
  // repeats.
  absl::StatusOr<nlohmann::json> Totals() const {
    absl::StatusOr<nlohmann::json> stats = GetJson("/__stats?summary=1");
    if (!stats.ok()) return stats.status();
    return (*stats)["totals"];
  }
  // POST /__reset: forget every key and counter, the arrival log and every outage.
  absl::Status Reset() const { return Post("/__reset"); }

  // POST /__outage: hard down for `length` (every scripted request whose path starts with
  // `prefix` answered `status` at once, no Retry-After), starting `after` from now.
  absl::Status StartOutage(absl::Duration length, int status = 503, const std::string& prefix = "",
                           absl::Duration after = absl::ZeroDuration()) const {
    return Post(absl::StrCat("/__outage?ms=", absl::ToInt64Milliseconds(length), "&status=", status,
                             "&after_ms=", absl::ToInt64Milliseconds(after), PrefixParam(prefix)));
  }
  absl::Status EndOutage(const std::string& prefix = "") const {
    return Post(absl::StrCat("/__outage?ms=0", PrefixParam(prefix)));
  }

  // POST /__canvas: Canvas's throttle (tools/fake-lms/canvas.h) for the scripted requests under
  // `prefix`; `params` are its settings as query parameters ("high_water=60&outflow=100").
  absl::Status StartCanvas(const std::string& prefix, const std::string& params = "") const {
    std::string query = absl::StrCat(params, PrefixParam(prefix));
    if (!query.empty() && query[0] == '&') query.erase(0, 1);
    return Post(absl::StrCat("/__canvas?", query));
  }
  // POST to an admin path with its query ("/__d2l?limit=200&window_ms=1000"); an error unless
  // it answers 200.
  absl::Status Post(const std::string& path) const {
    const HttpReply reply = HttpFetch("POST", base_url() + path);
    if (reply.code != CURLE_OK || reply.status != 200) {
      return absl::UnavailableError(absl::StrCat("POST ", path, ": ",
                                                 curl_easy_strerror(reply.code), " status ",
                                                 reply.status, " ", reply.body));
    }
    return absl::OkStatus();
  }
  // GET /__canvas: {"canvas": [{"settings", "throttled", "passed", "buckets"}]}.
  absl::StatusOr<nlohmann::json> Canvas() const { return GetJson("/__canvas"); }

  // GET /__arrivals?since_ms=N: {"now_ms", "fields", "arrivals": [[at_ms, segment, done_ms|null,
  // status, outage], ...], "dropped"} (tools/fake-lms/README.md "Arrival log").
  absl::StatusOr<nlohmann::json> Arrivals(double since_ms = 0) const {
    return GetJson(absl::StrCat("/__arrivals?since_ms=", since_ms));
  }

 private:
  FakeLmsProcess() : dir_("fake-lms") {}

  // "&prefix=<escaped>", or "" for every path.
  static std::string PrefixParam(const std::string& prefix) {
    if (prefix.empty()) return "";
    std::unique_ptr<char, decltype(&curl_free)> escaped(
        curl_easy_escape(nullptr, prefix.data(), static_cast<int>(prefix.size())), &curl_free);
    return absl::StrCat("&prefix=", escaped.get());
  }

  absl::StatusOr<nlohmann::json> GetJson(const std::string& path) const {
    const HttpReply reply = HttpFetch("GET", base_url() + path);
    if (reply.code != CURLE_OK) {
      return absl::UnavailableError(
          absl::StrCat("GET ", path, ": ", curl_easy_strerror(reply.code)));
    }
    if (reply.status == 404) return absl::NotFoundError(absl::StrCat("GET ", path, ": 404"));
    if (reply.status != 200) {
      return absl::InternalError(absl::StrCat("GET ", path, ": status ", reply.status));
    }
    nlohmann::json json = nlohmann::json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded()) return absl::InternalError(absl::StrCat("GET ", path, ": not JSON"));
    return json;
  }

  testing::TempDir dir_;
  std::unique_ptr<testing::ChildProcess> child_;  // destroyed first: stops fake-lms
  int port_ = 0;
};

}  // namespace rebound::fakelms

#endif  // REBOUND_TESTS_FAKE_LMS_FAKE_LMS_PROCESS_H_
