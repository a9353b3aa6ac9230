// curl-ceiling: the bare libcurl multi client against fake-lms, with nothing in between.
//
//   curl-ceiling --url http://127.0.0.1:PORT [--requests 100000] [--concurrency 256]
//                [--path /api/v1/courses/1/grades] [--key-prefix ceiling-] [--reset]
//
// Sends --requests POSTs with --concurrency transfers at once on kept-alive connections (one
// easy handle per slot, reused, so each slot keeps its connection), each with its own
// Idempotency-Key header and "script=200", the same request shape as a Rebound job of the
// healthy mix. This is the ceiling every Rebound figure is reported beside: Rebound performs
// this same HTTP work and more (durable state, scheduling), on the same cores.
//
// --reset clears fake-lms's ledger afterwards (POST /__reset), so a scenario that follows sees
// only its own keys. Prints one JSON line. Exit 0 when every request got a 2xx, 1 otherwise.
#include <curl/curl.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "bench/http_fetch.h"
#include "nlohmann/json.hpp"

namespace rebound::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;

struct Flags {
  std::string url;
  uint64_t requests = 100000;
  int concurrency = 256;
  std::string path = "/api/v1/courses/1/grades";
  std::string key_prefix = "ceiling-";
  double timeout_s = 600;
  bool reset = false;
};

size_t Discard(char* /*data*/, size_t size, size_t n, void* /*user*/) { return size * n; }

// One transfer slot: an easy handle reused request after request, with its request's headers
// and body kept alive for the transfer's duration.
struct Slot {
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string body;
  ~Slot() {
    if (easy != nullptr) curl_easy_cleanup(easy);
    if (headers != nullptr) curl_slist_free_all(headers);
  }
};

void Prepare(Slot& slot, const std::string& url, const Flags& flags, uint64_t index) {
  if (slot.headers != nullptr) curl_slist_free_all(slot.headers);
  slot.headers = nullptr;
  const std::string key = absl::StrCat("Idempotency-Key: ", flags.key_prefix, index);
  slot.headers = curl_slist_append(slot.headers, key.c_str());
  slot.headers = curl_slist_append(slot.headers, "Content-Type: application/json");
  slot.headers = curl_slist_append(slot.headers, "Expect:");
  slot.body = absl::StrCat(R"({"student":)", index, R"(,"score":95})");
  curl_easy_setopt(slot.easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(slot.easy, CURLOPT_HTTPHEADER, slot.headers);
  curl_easy_setopt(slot.easy, CURLOPT_POSTFIELDS, slot.body.c_str());
  curl_easy_setopt(slot.easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(slot.body.size()));
}

int Run(int argc, char** argv) {
  Flags flags;
  CLI::App cli{"curl-ceiling: bare libcurl multi POSTs against fake-lms"};
  cli.add_option("--url", flags.url, "fake-lms base URL, http://127.0.0.1:PORT")->required();
  cli.add_option("--requests", flags.requests, "requests to send")->capture_default_str();
  cli.add_option("--concurrency", flags.concurrency, "transfers at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cli.add_option("--path", flags.path, "request path")->capture_default_str();
  cli.add_option("--key-prefix", flags.key_prefix, "Idempotency-Key of request i: PREFIX<i>")
      ->capture_default_str();
  cli.add_option("--timeout", flags.timeout_s, "seconds allowed for the whole run")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cli.add_flag("--reset", flags.reset, "POST /__reset to fake-lms afterwards");
  CLI11_PARSE(cli, argc, argv);

  const std::string url = flags.url + flags.path + "?script=200";
  std::unique_ptr<CURLM, decltype(&curl_multi_cleanup)> multi(curl_multi_init(),
                                                              &curl_multi_cleanup);
  curl_multi_setopt(multi.get(), CURLMOPT_MAXCONNECTS, static_cast<long>(flags.concurrency));
  std::vector<Slot> slots(static_cast<size_t>(flags.concurrency));
  for (Slot& slot : slots) {
    slot.easy = curl_easy_init();
    curl_easy_setopt(slot.easy, CURLOPT_WRITEFUNCTION, &Discard);
    curl_easy_setopt(slot.easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(slot.easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(slot.easy, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(slot.easy, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(slot.easy, CURLOPT_PRIVATE, &slot);
  }

  uint64_t next = 0;
  uint64_t ok = 0;
  uint64_t errors = 0;
  const SteadyClock::time_point start = SteadyClock::now();
  const auto deadline = start + std::chrono::duration_cast<SteadyClock::duration>(
                                    std::chrono::duration<double>(flags.timeout_s));
  for (Slot& slot : slots) {
    if (next >= flags.requests) break;
    Prepare(slot, url, flags, next++);
    curl_multi_add_handle(multi.get(), slot.easy);
  }
  int running = 1;
  bool timed_out = false;
  while (ok + errors < flags.requests) {
    if (SteadyClock::now() >= deadline) {
      timed_out = true;
      break;
    }
    curl_multi_perform(multi.get(), &running);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi.get(), &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      const CURLcode result = msg->data.result;
      long status = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      if (result == CURLE_OK && status >= 200 && status < 300) {
        ++ok;
      } else {
        ++errors;
      }
      Slot* slot = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, &slot);
      curl_multi_remove_handle(multi.get(), easy);
      if (next < flags.requests) {
        Prepare(*slot, url, flags, next++);
        curl_multi_add_handle(multi.get(), easy);
      }
    }
    if (ok + errors < flags.requests) curl_multi_poll(multi.get(), nullptr, 0, 100, nullptr);
  }
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  for (Slot& slot : slots) curl_multi_remove_handle(multi.get(), slot.easy);

  nlohmann::json out = {{"requests", flags.requests},
                        {"concurrency", flags.concurrency},
                        {"ok", ok},
                        {"errors", errors},
                        {"seconds", seconds},
                        {"rate", seconds > 0 ? ok / seconds : 0}};
  if (timed_out) out["timed_out"] = true;
  if (flags.reset) {
    auto reset = HttpFetch("POST", flags.url + "/__reset", absl::Seconds(30));
    if (!reset.ok()) out["reset_error"] = reset.status().ToString();
  }
  std::printf("%s\n", out.dump().c_str());
  return errors == 0 && !timed_out ? 0 : 1;
}

}  // namespace
}  // namespace rebound::bench

int main(int argc, char** argv) {
  return rebound::bench::RunWithCurl(&rebound::bench::Run, argc, argv);
}
