#include "tools/fake-lms/moodle.h"

namespace rebound::fakelms {
namespace {

struct MoodleError {
  const char* errorcode;
  const char* exception;  // the PHP class Moodle throws
  const char* message;    // Moodle's English string for the code (lang/en)
};

constexpr MoodleError kErrors[] = {
    {"sitemaintenance", "moodle_exception",
     "The site is undergoing maintenance and is currently not available"},
    {"dbconnectionfailed", "dml_connection_exception", "Error: Database connection failed"},
    {"dmlreadexception", "dml_read_exception", "Error reading from database"},
    {"dmlwriteexception", "dml_write_exception", "Error writing to database"},
    {"invalidtoken", "moodle_exception", "Invalid token - token not found"},
    {"accessexception", "webservice_access_exception", "Access control exception"},
    {"invalidparameter", "invalid_parameter_exception", "Invalid parameter value detected"},
};

}  // namespace

std::optional<MoodleSettings> MoodleSettings::FromParams(
    const std::function<const char*(const char*)>& param, std::string* error) {
  MoodleSettings s;
  if (const char* prefix = param("prefix"); prefix != nullptr) {
    s.prefix = prefix;
    if (!s.prefix.empty() && s.prefix[0] != '/') {
      *error = "prefix: want a path starting with '/'";
      return std::nullopt;
    }
  }
  return s;
}

std::optional<std::string> MoodleErrorBody(std::string_view errorcode) {
  for (const MoodleError& e : kErrors) {
    if (errorcode == e.errorcode) {
      // PHP's json_encode keeps the object's insertion order and writes no spaces.
      nlohmann::ordered_json body = {
          {"exception", e.exception}, {"errorcode", e.errorcode}, {"message", e.message}};
      return body.dump();
    }
  }
  return std::nullopt;
}

}  // namespace rebound::fakelms
