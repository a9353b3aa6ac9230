#include "client/time_util.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace rebound::client {

google::protobuf::Timestamp ToProtoTimestamp(absl::Time t) {
  const int64_t seconds = absl::ToUnixSeconds(t);  // rounds towards the past
  google::protobuf::Timestamp out;
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>((t - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
  return out;
}

absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

absl::Duration FromProtoDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

google::protobuf::Duration ToProtoDuration(absl::Duration d) {
  google::protobuf::Duration out;
  const absl::Duration seconds = absl::Trunc(d, absl::Seconds(1));  // toward zero, as nanos
  out.set_seconds(absl::ToInt64Seconds(seconds));
  out.set_nanos(static_cast<int32_t>((d - seconds) / absl::Nanoseconds(1)));
  return out;
}

std::string FormatTimestamp(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  // RFC3339_full would print "+00:00"; "Z" is the usual spelling of UTC.
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", FromProtoTimestamp(t), absl::UTCTimeZone());
}

std::string FormatProtoDuration(const google::protobuf::Duration& d) {
  if (d.seconds() == 0 && d.nanos() == 0) return "-";
  return absl::FormatDuration(FromProtoDuration(d));
}

absl::StatusOr<absl::Time> ParseRfc3339(absl::string_view text) {
  absl::Time t;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, text, &t, &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not an RFC 3339 time (e.g. 2026-11-29T10:00:00Z): ", error));
  }
  return t;
}

}  // namespace rebound::client
