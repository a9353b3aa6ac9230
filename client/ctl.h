// reboundctl: the command-line tool over Client, kept apart from main() so that main() is only
// the wiring of std::cout/std::cerr.
//
// Exit codes (stable; scripts rely on them):
//   0  ok (`health`: the server answered SERVING)
//   1  the operation ran but did not succeed: the job did not end SUCCEEDED, a wait/watch
//      timed out before the job was terminal, or `health` answered other than SERVING
//   2  usage error: bad flags, bad durations/times, an unreadable or malformed --file (nothing
//      is sent then)
//   3  the server answered with an error (INVALID_ARGUMENT, NOT_FOUND, ...; `health
//      --service` of a name the server does not know), or rejected items of a --file submission
//   4  no answer: UNAVAILABLE (cannot connect) or DEADLINE_EXCEEDED of a call (--timeout)
#ifndef REBOUND_CLIENT_CTL_H_
#define REBOUND_CLIENT_CTL_H_

#include <ostream>

#include "absl/status/status.h"

namespace rebound::client {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitRpcError = 3;
inline constexpr int kExitUnavailable = 4;

// The exit code for an error returned by a Client call (3 or 4; 0 for OK).
int ExitCodeForStatus(const absl::Status& status);

// Runs one reboundctl command line. Results go to `out`, errors and progress to `err`.
int RunReboundctl(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace rebound::client

#endif  // REBOUND_CLIENT_CTL_H_
