// W3C Trace Context `traceparent` helpers (https://www.w3.org/TR/trace-context/).
//
// A caller may send `traceparent` in gRPC metadata; Rebound logs its trace id as the
// correlation id when the request has none, and sends a child traceparent (same trace id, a
// new parent id) upstream on each attempt. Only version 00 is understood:
//
//   00-<32 lowercase hex trace-id, not all zero>-<16 lowercase hex parent-id, not all zero>-<2
//   lowercase hex flags>
//
// Pure functions; randomness is injected.
#ifndef REBOUND_SERVER_HTTP_TRACEPARENT_H_
#define REBOUND_SERVER_HTTP_TRACEPARENT_H_

#include <string>

#include "absl/random/bit_gen_ref.h"
#include "absl/strings/string_view.h"

namespace rebound::http {

bool ValidTraceparent(absl::string_view traceparent);

// The trace id of a valid traceparent; "" when it is not valid.
std::string CorrelationIdFromTraceparent(absl::string_view traceparent);

// A new trace: random trace id and parent id, flags "00" (no sampling decision made here).
std::string NewRootTraceparent(absl::BitGenRef rng);

// The traceparent to send upstream: `parent`'s trace id and flags with a new random parent id
// (different from `parent`'s). An invalid `parent` starts a new trace (NewRootTraceparent),
// as the W3C spec asks of a participant that receives an invalid header.
std::string NewChildTraceparent(absl::string_view parent, absl::BitGenRef rng);

}  // namespace rebound::http

#endif  // REBOUND_SERVER_HTTP_TRACEPARENT_H_
