// Reading a JSONL file of SyncRequests (one object per line, protobuf JSON mapping), all of it
// before anything is sent, so a bad line costs nothing. Pure; thread-compatible.
#ifndef REBOUND_CLIENT_JSONL_H_
#define REBOUND_CLIENT_JSONL_H_

#include <istream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "rebound/v1/rebound.pb.h"

namespace rebound::client {

struct NumberedRequest {
  int line = 0;  // 1-based line number in the file
  v1::SyncRequest request;
};

struct JsonlContents {
  // The requests of the good lines, in file order. Blank lines are skipped.
  std::vector<NumberedRequest> requests;
  // "<name>:<line>: <parser message>" for every bad line, in file order. Unknown fields are
  // errors (a typo must not silently drop a field).
  std::vector<std::string> errors;
};

// `name` is the file name used in error messages.
JsonlContents ParseSyncRequestsJsonl(std::istream& in, absl::string_view name);

}  // namespace rebound::client

#endif  // REBOUND_CLIENT_JSONL_H_
