#include "tools/fake-lms/http_util.h"

#include <event2/buffer.h>

namespace rebound::fakelms {

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return status < 400 ? "OK" : "Error";
  }
}

std::string Dump(const nlohmann::json& json) {
  // Keys come from clients and may be invalid UTF-8: replace rather than throw.
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Answer JsonAnswer(int status, const nlohmann::json& body) {
  Answer answer;
  answer.status = status;
  answer.body = Dump(body);
  return answer;
}

void SendAnswer(evhttp_request* req, const Answer& answer) {
  evkeyvalq* out = evhttp_request_get_output_headers(req);
  evhttp_add_header(out, "Content-Type", answer.content_type);
  for (const auto& [name, value] : answer.headers) {
    // libevent refuses values with CR/LF, so a script cannot inject headers.
    evhttp_add_header(out, name.c_str(), value.c_str());
  }
  const bool bodyless = answer.status == 204 || answer.status == 304 ||
                        evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;
  if (!bodyless) {
    evbuffer_add(evhttp_request_get_output_buffer(req), answer.body.data(), answer.body.size());
  }
  evhttp_send_reply(req, answer.status, ReasonPhrase(answer.status), nullptr);
}

}  // namespace rebound::fakelms
