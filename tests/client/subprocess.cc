#include "tests/client/subprocess.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/match.h"

extern char** environ;

namespace rebound::client {
namespace {

// An unlinked temporary file: the child writes it, the parent reads it back.
int TempFile() {
  std::string path = "/tmp/reboundctl_test_XXXXXX";
  const int fd = ::mkstemp(path.data());
  if (fd >= 0) ::unlink(path.c_str());
  return fd;
}

std::string ReadAll(int fd) {
  std::string contents;
  if (::lseek(fd, 0, SEEK_SET) < 0) return contents;
  char buffer[8192];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    contents.append(buffer, static_cast<size_t>(n));
  }
  return contents;
}

}  // namespace

ProcessResult RunProcess(const std::vector<std::string>& argv,
                         const std::vector<std::string>& env) {
  ProcessResult result;
  const int out_fd = TempFile();
  const int err_fd = TempFile();
  if (argv.empty() || out_fd < 0 || err_fd < 0) {
    if (out_fd >= 0) ::close(out_fd);
    if (err_fd >= 0) ::close(err_fd);
    return result;
  }

  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (!absl::StartsWith(*entry, "REBOUND_")) environment.emplace_back(*entry);
  }
  environment.insert(environment.end(), env.begin(), env.end());
  std::vector<char*> child_env;
  child_env.reserve(environment.size() + 1);
  for (std::string& entry : environment) child_env.push_back(entry.data());
  child_env.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> child_argv;
  child_argv.reserve(args.size() + 1);
  for (std::string& arg : args) child_argv.push_back(arg.data());
  child_argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_fd, STDERR_FILENO);
  pid_t pid = 0;
  const int spawned =
      posix_spawn(&pid, child_argv[0], &actions, nullptr, child_argv.data(), child_env.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawned == 0) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) result.exit_code = 128 + WTERMSIG(status);
    result.out = ReadAll(out_fd);
    result.err = ReadAll(err_fd);
  }
  ::close(out_fd);
  ::close(err_fd);
  return result;
}

}  // namespace rebound::client
