// Running a program as a child process for tests: posix_spawn, stdout and stderr captured,
// waitpid. No polling, no sleeping.
#ifndef REBOUND_TESTS_CLIENT_SUBPROCESS_H_
#define REBOUND_TESTS_CLIENT_SUBPROCESS_H_

#include <string>
#include <vector>

namespace rebound::client {

struct ProcessResult {
  int exit_code = -1;  // 128 + signal when killed by a signal; -1 when it could not start
  std::string out;
  std::string err;
};

// Runs argv[0] with the given arguments, stdin from /dev/null, and waits for it to exit.
// The child inherits this process's environment without REBOUND_* variables, plus `env`
// ("NAME=value" entries).
ProcessResult RunProcess(const std::vector<std::string>& argv,
                         const std::vector<std::string>& env = {});

}  // namespace rebound::client

#endif  // REBOUND_TESTS_CLIENT_SUBPROCESS_H_
