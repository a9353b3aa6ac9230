// Small HTTP helpers fake-lms's front and its admin endpoints share (libevent's evhttp).
#ifndef REBOUND_TOOLS_FAKE_LMS_HTTP_UTIL_H_
#define REBOUND_TOOLS_FAKE_LMS_HTTP_UTIL_H_

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>

#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tools/fake-lms/ledger.h"

namespace rebound::fakelms {

// Query parameters, freed on scope exit.
class QueryParams {
 public:
  explicit QueryParams(const char* query) {
    TAILQ_INIT(&params_);
    if (query != nullptr) evhttp_parse_query_str(query, &params_);
  }
  ~QueryParams() { evhttp_clear_headers(&params_); }
  QueryParams(const QueryParams&) = delete;
  QueryParams& operator=(const QueryParams&) = delete;

  const char* Find(const char* name) const {
    return evhttp_find_header(const_cast<evkeyvalq*>(&params_), name);
  }

 private:
  evkeyvalq params_;
};

// "OK", "Too Many Requests", ...: the reason phrase of an answer's status line.
const char* ReasonPhrase(int status);
// JSON text; invalid UTF-8 (keys come from clients) is replaced rather than thrown on.
std::string Dump(const nlohmann::json& json);
Answer JsonAnswer(int status, const nlohmann::json& body);
// Sends `answer` (its headers, and its body unless the answer has none).
void SendAnswer(evhttp_request* req, const Answer& answer);

// A non-negative number (int or double); 0 when `text` is nullptr.
template <typename Number>
std::optional<Number> ParseNonNegative(const char* text) {
  if (text == nullptr) return Number{0};
  const char* end = text + std::strlen(text);
  Number value{};
  auto [ptr, ec] = std::from_chars(text, end, value);
  if (ec != std::errc() || ptr != end || ptr == text || !(value >= 0)) return std::nullopt;
  return value;
}

// An admin endpoint that lists on GET and changes on POST: answers a GET with `listing()` and
// refuses other methods but POST. True when that answered the request.
template <typename Listing>
bool AnsweredUnlessPost(evhttp_request* req, const Listing& listing) {
  const evhttp_cmd_type method = evhttp_request_get_command(req);
  if (method == EVHTTP_REQ_GET) {
    SendAnswer(req, JsonAnswer(200, listing()));
    return true;
  }
  if (method != EVHTTP_REQ_POST) {
    SendAnswer(req, JsonAnswer(405, {{"error", "method not allowed"}}));
    return true;
  }
  return false;
}

}  // namespace rebound::fakelms

#endif  // REBOUND_TOOLS_FAKE_LMS_HTTP_UTIL_H_
