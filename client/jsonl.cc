#include "client/jsonl.h"

#include <google/protobuf/util/json_util.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace rebound::client {

JsonlContents ParseSyncRequestsJsonl(std::istream& in, absl::string_view name) {
  JsonlContents contents;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const absl::string_view text = absl::StripAsciiWhitespace(line);  // also a CRLF's '\r'
    if (text.empty()) continue;
    NumberedRequest item;
    item.line = number;
    const auto status = google::protobuf::util::JsonStringToMessage(
        google::protobuf::StringPiece(text.data(), text.size()), &item.request, options);
    if (!status.ok()) {
      // The parser appends the line and a caret below it; one line per error is enough, and
      // keeps request bodies out of the output.
      const std::string message = status.message().ToString();
      contents.errors.push_back(
          absl::StrCat(name, ":", number, ": ", message.substr(0, message.find('\n'))));
      continue;
    }
    contents.requests.push_back(std::move(item));
  }
  return contents;
}

}  // namespace rebound::client
