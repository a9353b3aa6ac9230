// Scripts: what fake-lms answers to the n-th request for a key.
//
// A script is a comma-separated list of steps; the n-th request for a key uses step n (1-based)
// and the last step repeats afterwards. Grammar (README.md has examples):
//
//   STEP := STATUS | STATUS ':' OPT (':' OPT)* | 'hang' | 'reset' | 'cut'
//   OPT  := 'ra=' SECONDS      Retry-After as delta-seconds
//         | 'rad=' SECONDS     Retry-After as an HTTP-date that many seconds from now
//         | 'ms=' MILLIS       answer after this delay
//         | 'body=' TEXT       response body (percent-decoded)
//         | 'loc=' URL         Location header (percent-decoded)
//
// 'hang' never answers, 'reset' closes the connection without a byte of answer, 'cut' sends
// the head of a 500 answer and a few bytes of its body, then closes. (An HTTP client may resend
// a request by itself after a 'reset' on a reused connection, as libcurl does; it cannot after a
// 'cut', so 'cut' is the deterministic mid-answer failure.)
//
// Options are split only at ':' followed by a known option name, so `loc=http://h:8080/x`
// needs no escaping; a ',' inside TEXT or URL is written %2C. Under a Moodle prefix
// (POST /__moodle), a STEP may also be one of Moodle's error codes (moodle.h), answered as
// Moodle's REST server answers that exception. Pure functions, thread-safe.
#ifndef REBOUND_TOOLS_FAKE_LMS_SCRIPT_H_
#define REBOUND_TOOLS_FAKE_LMS_SCRIPT_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rebound::fakelms {

struct Step {
  enum class Kind { kRespond, kHang, kReset, kCut };
  Kind kind = Kind::kRespond;
  int status = 200;                        // kRespond only, 200..599
  std::optional<int> retry_after_seconds;  // ra=N
  std::optional<int> retry_after_date_in;  // rad=N: an HTTP-date N seconds from now
  int delay_ms = 0;                        // ms=N
  std::optional<std::string> body;         // body=TEXT
  std::optional<std::string> location;     // loc=URL
  std::optional<std::string> moodle_body;  // a Moodle error code's JSON body (status 200)
};

// Parses a whole script. On a syntax error returns nullopt and sets *error to a short reason
// naming the offending step. `moodle`: Moodle's error codes are steps too.
std::optional<std::vector<Step>> ParseScript(std::string_view script, std::string* error,
                                             bool moodle = false);

// The step for the n-th (1-based) request: the last step repeats.
const Step& StepFor(const std::vector<Step>& script, int n);

// Decodes %XX escapes (and nothing else); malformed escapes are kept as they are.
std::string PercentDecode(std::string_view text);

}  // namespace rebound::fakelms

#endif  // REBOUND_TOOLS_FAKE_LMS_SCRIPT_H_
