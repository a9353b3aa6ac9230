// Test support: a loopback TCP listener that never accepts. It stands in for a proxy (or any
// peer) that would swallow what reached it, and tells whether anything connected.
#ifndef REBOUND_TESTS_SUPPORT_SILENT_LISTENER_H_
#define REBOUND_TESTS_SUPPORT_SILENT_LISTENER_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace rebound::testing {

class SilentListener {
 public:
  SilentListener() : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    ok_ = fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0 &&
          listen(fd_, 16) == 0 && getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() {
    if (fd_ >= 0) close(fd_);
  }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;

  bool ok() const { return ok_; }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_); }
  // True when a connection waits in the backlog.
  bool Contacted() const {
    pollfd p{fd_, POLLIN, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
  }

 private:
  int fd_;
  int port_ = 0;
  bool ok_ = false;
};

}  // namespace rebound::testing

#endif  // REBOUND_TESTS_SUPPORT_SILENT_LISTENER_H_
