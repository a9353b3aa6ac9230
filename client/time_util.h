// Conversions between protobuf Timestamp/Duration and Abseil time, and the RFC 3339 text form
// the CLI reads and prints (always UTC). Pure functions; thread-safe.
#ifndef REBOUND_CLIENT_TIME_UTIL_H_
#define REBOUND_CLIENT_TIME_UTIL_H_

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace rebound::client {

google::protobuf::Timestamp ToProtoTimestamp(absl::Time t);
absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& t);
absl::Duration FromProtoDuration(const google::protobuf::Duration& d);
google::protobuf::Duration ToProtoDuration(absl::Duration d);  // finite d

// "2026-11-29T10:00:01Z" (fraction only when not zero); "-" for an unset (zero) timestamp.
std::string FormatTimestamp(const google::protobuf::Timestamp& t);
// "1.5s", "400ms"; "-" for an unset (zero) duration.
std::string FormatProtoDuration(const google::protobuf::Duration& d);

// RFC 3339 with a 'Z' or numeric offset, e.g. "2026-11-29T10:00:00Z". INVALID_ARGUMENT otherwise.
absl::StatusOr<absl::Time> ParseRfc3339(absl::string_view text);

}  // namespace rebound::client

#endif  // REBOUND_CLIENT_TIME_UTIL_H_
