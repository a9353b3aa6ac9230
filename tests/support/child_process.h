// Test support: a child process started with posix_spawn, stopped and reaped by its PID.
//
//   auto p = ChildProcess::Spawn(bin, {"--config", path}, dir + "/server.log");
//   auto port = p->WaitForPortFile(dir + "/port", absl::Seconds(20));
//   p->Signal(SIGKILL); p->Wait();
//
// The destructor stops a child that is still running (SIGTERM, then SIGKILL) so no test leaves
// a process behind. Not thread-safe.
#ifndef REBOUND_TESTS_SUPPORT_CHILD_PROCESS_H_
#define REBOUND_TESTS_SUPPORT_CHILD_PROCESS_H_

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rebound::testing {

class ChildProcess {
 public:
  // Starts `binary args...` with stdout and stderr appended to `log_path` (or inherited when
  // empty). If the test process dies, the kernel kills the child too (PR_SET_PDEATHSIG), so no
  // orphan keeps a port or the test's output pipe open. `extra_env` ("NAME=value") is added to
  // the child's environment only.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(
      const std::string& binary, std::vector<std::string> args, const std::string& log_path = "",
      std::vector<std::string> extra_env = {}) {
    std::vector<char*> argv;
    std::string bin = binary;
    argv.push_back(bin.data());
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
    for (std::string& e : extra_env) envp.push_back(e.data());
    envp.push_back(nullptr);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
    if (pid == 0) {
      // Only async-signal-safe calls until exec.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      if (!log_path.empty()) {
        const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(126);
      }
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    return std::unique_ptr<ChildProcess>(new ChildProcess(pid, binary));
  }

  ~ChildProcess() {
    if (pid_ > 0) (void)Stop(absl::Seconds(10));
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  // Waits for `path` to hold a positive port number (written whole, by rename). Fails early
  // when the child exits.
  absl::StatusOr<int> WaitForPortFile(const std::string& path, absl::Duration deadline) {
    const absl::Time give_up = absl::Now() + deadline;
    while (true) {
      std::ifstream in(path);
      int port = 0;
      if (in >> port && port > 0) return port;
      int status = 0;
      if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return absl::InternalError(absl::StrCat(binary_, " exited early, status ", status));
      }
      if (absl::Now() > give_up) {
        return absl::DeadlineExceededError(absl::StrCat(binary_, " wrote no port file"));
      }
      absl::SleepFor(absl::Milliseconds(5));  // polling a file; there is nothing to wait on
    }
  }

  void Signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }

  // Waits for the child to exit; returns its exit code, or an error naming the signal or the
  // deadline (the child is then killed).
  absl::StatusOr<int> Wait(absl::Duration deadline = absl::Seconds(30)) {
    if (pid_ <= 0) return absl::FailedPreconditionError("not running");
    const absl::Time give_up = absl::Now() + deadline;
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (absl::Now() > give_up) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        pid_ = -1;
        return absl::DeadlineExceededError(absl::StrCat(binary_, " did not exit in time"));
      }
      absl::SleepFor(absl::Milliseconds(2));
    }
    pid_ = -1;
    if (WIFSIGNALED(status)) {
      return absl::AbortedError(absl::StrCat(binary_, " died from signal ", WTERMSIG(status)));
    }
    return WEXITSTATUS(status);
  }

  // SIGTERM, then SIGKILL after `grace`.
  absl::StatusOr<int> Stop(absl::Duration grace) {
    Signal(SIGTERM);
    return Wait(grace);
  }

 private:
  ChildProcess(pid_t pid, std::string binary) : pid_(pid), binary_(std::move(binary)) {}

  pid_t pid_;
  std::string binary_;
};

// A fresh directory under $TMPDIR (or /tmp), removed with its files by the destructor.
class TempDir {
 public:
  explicit TempDir(absl::string_view prefix = "rebound-test") {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl =
        absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/", prefix, "-XXXXXX");
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    if (!path_.empty() && std::getenv("REBOUND_KEEP_TEST_DIRS") == nullptr) {
      const std::string cmd = absl::StrCat("rm -rf '", path_, "'");
      (void)std::system(cmd.c_str());
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return absl::StrCat(path_, "/", name); }

 private:
  std::string path_;
};

}  // namespace rebound::testing

#endif  // REBOUND_TESTS_SUPPORT_CHILD_PROCESS_H_
