// Moodle's web service errors, as its REST server sends them (POST /__moodle).
//
// Moodle's REST server (webservice/rest/locallib.php in moodle/moodle, webservice_rest_server::
// send_error and generate_error; read to learn, nothing copied) answers an exception with the
// same headers as a success, so HTTP 200, and the JSON body
// {"exception":"<exception class>","errorcode":"<error code>","message":"<message>"} (a
// "debuginfo" too when the site has developer debugging on, which fake-lms does not imitate).
// Only the error codes below are known here; each is one Moodle raises while serving a web
// service call:
//
//  - sitemaintenance (moodle_exception): the site is in maintenance mode
//    (webservice/lib.php, webservice_server::authenticate_user; its comment: "this is usually
//    temporary").
//  - dbconnectionfailed (dml_connection_exception), dmlreadexception (dml_read_exception),
//    dmlwriteexception (dml_write_exception): the database refused the connection, a read or a
//    write (lib/dml/ and lib/dmllib.php).
//  - invalidtoken (moodle_exception), accessexception (webservice_access_exception),
//    invalidparameter (invalid_parameter_exception): refusals of the call itself.
//
#ifndef REBOUND_TOOLS_FAKE_LMS_MOODLE_H_
#define REBOUND_TOOLS_FAKE_LMS_MOODLE_H_

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace rebound::fakelms {

struct MoodleSettings {
  std::string prefix;  // scripted requests whose path starts with it ("" = every path)

  // From the query parameters (`param` returns nullptr for an absent one): prefix. nullopt with
  // `*error` naming a bad parameter.
  static std::optional<MoodleSettings> FromParams(
      const std::function<const char*(const char*)>& param, std::string* error);
};

// One prefix answered as a Moodle web service: its scripts may use the error codes below.
// Not thread-safe: the server's event loop owns it.
class MoodleMode {
 public:
  explicit MoodleMode(MoodleSettings settings) : settings_(std::move(settings)) {}
  const MoodleSettings& settings() const { return settings_; }
  nlohmann::json Status() const { return {{"style", "moodle"}, {"prefix", settings_.prefix}}; }

 private:
  MoodleSettings settings_;
};

// Moodle's JSON error body for that error code, or nullopt when the code is not one of the
// above.
std::optional<std::string> MoodleErrorBody(std::string_view errorcode);

}  // namespace rebound::fakelms

#endif  // REBOUND_TOOLS_FAKE_LMS_MOODLE_H_
