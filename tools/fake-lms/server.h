// Server: fake-lms's HTTP front, on libevent's evhttp and one event loop.
//
// Answers every request on a non-admin path from its script (script.h), or from an outage, or
// from an LMS's own throttle (canvas.h, window.h), and records it in the Ledger and the ArrivalLog
// (ledger.h); /__stats, /__reset, /__health, /__outage, /__canvas, /__d2l, /__clever and
// /__arrivals are the admin endpoints. Delayed answers
// use event timers; nothing ever blocks the loop. Not thread-safe: every method runs on the
// thread that runs `base`.
#ifndef REBOUND_TOOLS_FAKE_LMS_SERVER_H_
#define REBOUND_TOOLS_FAKE_LMS_SERVER_H_

#include <event2/event.h>
#include <event2/http.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tools/fake-lms/canvas.h"
#include "tools/fake-lms/ledger.h"
#include "tools/fake-lms/moodle.h"
#include "tools/fake-lms/window.h"

namespace rebound::fakelms {

class Server {
 public:
  // `base` must outlive the server.
  explicit Server(event_base* base);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds `address` ("127.0.0.1:0"; port 0 picks a free port) and returns the bound port, or
  // nullopt with `*error` set.
  std::optional<int> Listen(const std::string& address, std::string* error);

 private:
  // A request answered later ('ms=', 'latency_ms'), never ('hang'), by closing ('reset'), or
  // by a cut-off answer ('cut', then kClose once its bytes are out).
  enum class PendingKind { kDelay, kHang, kReset, kCut, kClose };
  struct Pending;
  // POST /__outage: scripted requests whose path starts with `prefix` ("" = every path) are
  // answered `status` from `from_ms` until `until_ms` (ms since start).
  struct Outage {
    std::string prefix;
    int status = 503;
    double from_ms = 0;
    double until_ms = 0;
  };
  static constexpr size_t kMaxOutages = 64;
  // A request a CanvasThrottle let through: finished (its cost booked, its headers added) when
  // its answer goes out or it ends otherwise.
  struct CanvasRef {
    std::string prefix;
    CanvasThrottle::Ticket ticket;
  };

  static void OnRequest(evhttp_request* req, void* self);
  static bufferevent* OnConnection(event_base* base, void* self);
  static void OnPendingTimer(evutil_socket_t fd, short what, void* pending);
  static void OnPendingReadable(evutil_socket_t fd, short what, void* pending);
  static void OnCutWritten(evhttp_connection* evcon, void* self);

  void HandleRequest(evhttp_request* req);
  void HandleAdmin(evhttp_request* req, const std::string& path, const char* query);
  void HandleOutage(evhttp_request* req, const char* query);
  void HandleCanvas(evhttp_request* req, const char* query);
  void HandleWindow(evhttp_request* req, const char* query, WindowStyle style);
  void HandleMoodle(evhttp_request* req, const char* query);
  // Whether a Moodle mode's prefix starts `path`.
  bool IsMoodle(const std::string& path) const;
  // The WindowThrottle with the longest prefix of `path`, or nullptr.
  WindowThrottle* WindowFor(const std::string& path);
  // The CanvasThrottle with the longest prefix of `path`, or nullptr.
  CanvasThrottle* CanvasFor(const std::string& path);
  // Books the end of a request `canvas` let through, adding its headers to `answer` (when not
  // null). Nothing when the throttle was removed meanwhile.
  void FinishCanvas(const std::optional<CanvasRef>& canvas, Answer* answer);
  void HandleScripted(evhttp_request* req, const std::string& path, const char* query);
  // The active outage with the longest prefix of `path`, or nullptr.
  const Outage* OutageFor(const std::string& path, double now_ms);
  // Sends now when `delay_ms` is 0, else from a timer; `arrival` is the request's ArrivalLog
  // index, finished when the answer is out.
  void Respond(evhttp_request* req, Answer answer, int delay_ms, size_t arrival,
               std::optional<CanvasRef> canvas = std::nullopt);
  void Defer(evhttp_request* req, PendingKind kind, Answer answer, int delay_ms, size_t arrival,
             std::optional<CanvasRef> canvas = std::nullopt);
  // Closes `evcon` from a zero timer: never from inside one of evhttp's own callbacks.
  void CloseSoon(evhttp_connection* evcon);
  std::unique_ptr<Pending> TakePending(Pending* pending);
  double NowMs() const;
  static int64_t WallMs();  // milliseconds since the unix epoch (vendors' windows follow it)

  event_base* base_;
  evhttp* http_;
  Ledger ledger_;
  ArrivalLog arrivals_;
  std::vector<Outage> outages_;
  std::vector<CanvasThrottle> canvas_;   // at most kMaxOutages, one per prefix
  std::vector<WindowThrottle> windows_;  // likewise (D2L's, Clever's, Google's, Blackboard's)
  std::vector<MoodleMode> moodle_;       // likewise
  std::unordered_map<Pending*, std::unique_ptr<Pending>> pending_;
  const std::chrono::system_clock::time_point start_;
};

}  // namespace rebound::fakelms

#endif  // REBOUND_TOOLS_FAKE_LMS_SERVER_H_
