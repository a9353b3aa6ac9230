// HttpFetch: one blocking HTTP request with libcurl's easy API, for the benchmark tools' admin
// calls to fake-lms (GET /__stats, POST /__reset). Not for load: the load goes through gRPC
// (loadgen) or curl multi (curl_ceiling).
//
// The caller must have called curl_global_init once (in main). Thread-safe (one easy handle per
// call). Returns the body of a 2xx answer; any other status or transport error is an error
// naming the URL.
#ifndef REBOUND_BENCH_HTTP_FETCH_H_
#define REBOUND_BENCH_HTTP_FETCH_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rebound::bench {

absl::StatusOr<std::string> HttpFetch(const std::string& method, const std::string& url,
                                      absl::Duration timeout);

// The main() of a bench tool that uses libcurl: curl_global_init, run(argc, argv), cleanup;
// returns run's exit code.
int RunWithCurl(int (*run)(int, char**), int argc, char** argv);

}  // namespace rebound::bench

#endif  // REBOUND_BENCH_HTTP_FETCH_H_
