#include "tools/fake-lms/server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <utility>
#include <vector>

#include "tools/fake-lms/http_util.h"
#include "tools/fake-lms/script.h"

namespace rebound::fakelms {

struct Server::Pending {
  Pending() = default;
  Pending(const Pending&) = delete;
  Pending& operator=(const Pending&) = delete;
  ~Pending() {
    if (timer != nullptr) event_free(timer);
    if (readable != nullptr) event_free(readable);
  }

  Server* server = nullptr;
  PendingKind kind = PendingKind::kDelay;
  evhttp_request* req = nullptr;
  evhttp_connection* evcon = nullptr;
  evutil_socket_t fd = -1;
  event* timer = nullptr;     // fires when the answer (or the reset) is due
  event* readable = nullptr;  // watches the socket: evhttp stops reading while a request waits,
                              // so this is how a client that went away is noticed
  Answer answer;
  size_t arrival = ArrivalLog::kNone;  // the request's ArrivalLog entry
  std::optional<CanvasRef> canvas;     // let through by a CanvasThrottle
};

namespace {

constexpr size_t kMaxRequestBodyBytes = 16 * 1024 * 1024;
constexpr int kIdleTimeoutSeconds = 300;
constexpr int kListenBacklog = 4096;
// What a 'cut' answer gets out before the connection closes (of a promised 1024 bytes).
constexpr char kCutBody[] = "{\"error\":";

const char* MethodName(evhttp_cmd_type type) {
  switch (type) {
    case EVHTTP_REQ_GET:
      return "GET";
    case EVHTTP_REQ_POST:
      return "POST";
    case EVHTTP_REQ_HEAD:
      return "HEAD";
    case EVHTTP_REQ_PUT:
      return "PUT";
    case EVHTTP_REQ_DELETE:
      return "DELETE";
    case EVHTTP_REQ_OPTIONS:
      return "OPTIONS";
    case EVHTTP_REQ_TRACE:
      return "TRACE";
    case EVHTTP_REQ_CONNECT:
      return "CONNECT";
    case EVHTTP_REQ_PATCH:
      return "PATCH";
  }
  return "UNKNOWN";
}

// IMF-fixdate (RFC 9110) of the first whole second at or after now + `seconds`, so a client
// never reads a date earlier than the delay meant.
std::string HttpDateIn(int seconds) {
  const auto target = std::chrono::ceil<std::chrono::seconds>(std::chrono::system_clock::now() +
                                                              std::chrono::seconds(seconds));
  const std::time_t t = std::chrono::system_clock::to_time_t(target);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  const size_t n = std::strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return std::string(buf, n);
}

// The header's value if present, else the query parameter's, else nullptr.
const char* Setting(evkeyvalq* headers, const char* header, const QueryParams& params,
                    const char* param) {
  const char* value = evhttp_find_header(headers, header);
  return value != nullptr ? value : params.Find(param);
}

Answer ScriptedAnswer(const Step& step, const std::string& key, int attempt,
                      const char* default_body) {
  Answer answer;
  answer.status = step.status;
  if (step.moodle_body) {
    // Moodle's REST server answers an exception with its JSON error and the success headers.
    answer.content_type = "application/json";
    answer.body = *step.moodle_body;
    answer.can_be_effect = false;
  } else if (step.body || default_body != nullptr) {
    answer.content_type = "text/plain; charset=utf-8";
    answer.body = step.body ? *step.body : std::string(default_body);
  } else if (step.status >= 200 && step.status < 300) {
    answer.body = Dump({{"ok", true}, {"key", key}, {"attempt", attempt}});
  } else {
    answer.body = Dump({{"error", ReasonPhrase(step.status)},
                        {"status", step.status},
                        {"key", key},
                        {"attempt", attempt}});
  }
  if (step.retry_after_seconds) {
    answer.headers.emplace_back("Retry-After", std::to_string(*step.retry_after_seconds));
  }
  if (step.retry_after_date_in) {
    answer.headers.emplace_back("Retry-After", HttpDateIn(*step.retry_after_date_in));
  }
  if (step.location) answer.headers.emplace_back("Location", *step.location);
  return answer;
}

}  // namespace

Server::Server(event_base* base)
    : base_(base), http_(evhttp_new(base)), start_(std::chrono::system_clock::now()) {
  evhttp_set_allowed_methods(http_, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                        EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                        EVHTTP_REQ_PATCH);
  evhttp_set_max_body_size(http_, kMaxRequestBodyBytes);
  evhttp_set_timeout(http_, kIdleTimeoutSeconds);
  evhttp_set_gencb(http_, &Server::OnRequest, this);
  evhttp_set_bevcb(http_, &Server::OnConnection, this);
}

Server::~Server() {
  pending_.clear();  // their events first; evhttp_free then frees connections and requests
  evhttp_free(http_);
}

std::optional<int> Server::Listen(const std::string& address, std::string* error) {
  // evutil_parse_sockaddr_port refuses port 0, so the port is parsed here and set afterwards.
  const size_t colon = address.rfind(':');
  const std::string host = address.substr(0, colon);
  const std::optional<int> port = colon == std::string::npos
                                      ? std::nullopt
                                      : ParseNonNegative<int>(address.c_str() + colon + 1);
  sockaddr_storage ss{};
  int len = sizeof(ss);
  if (!port || *port > 65535 || host.empty() ||
      evutil_parse_sockaddr_port(host.c_str(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    *error = "cannot parse listen address '" + address + "' (want HOST:PORT)";
    return std::nullopt;
  }
  if (ss.ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(static_cast<uint16_t>(*port));
  } else {
    reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(static_cast<uint16_t>(*port));
  }
  evconnlistener* listener = evconnlistener_new_bind(
      base_, nullptr, nullptr, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
      kListenBacklog, reinterpret_cast<sockaddr*>(&ss), len);
  if (listener == nullptr) {
    *error = "cannot listen on " + address + ": " + std::strerror(errno);
    return std::nullopt;
  }
  evhttp_bound_socket* bound = evhttp_bind_listener(http_, listener);
  if (bound == nullptr) {
    evconnlistener_free(listener);
    *error = "evhttp_bind_listener failed";
    return std::nullopt;
  }
  sockaddr_storage local{};
  socklen_t local_len = sizeof(local);
  if (getsockname(evhttp_bound_socket_get_fd(bound), reinterpret_cast<sockaddr*>(&local),
                  &local_len) != 0) {
    *error = std::string("getsockname: ") + std::strerror(errno);
    return std::nullopt;
  }
  if (local.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&local)->sin6_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in*>(&local)->sin_port);
}

void Server::OnRequest(evhttp_request* req, void* self) {
  static_cast<Server*>(self)->HandleRequest(req);
}

bufferevent* Server::OnConnection(event_base* base, void* self) {
  static_cast<Server*>(self)->ledger_.CountConnection();
  return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

// The wall clock, as Rebound schedules by it (absl::Now): a step of the system clock moves both
// alike, so a gap fake-lms measures is the gap Rebound waited (with steady_clock here, a 1 ms
// forward step made a 1 s Retry-After look 999 ms long).
int64_t Server::WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double Server::NowMs() const {
  return std::chrono::duration<double, std::milli>(std::chrono::system_clock::now() - start_)
      .count();
}

void Server::HandleRequest(evhttp_request* req) {
  ledger_.CountRequest();
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  const char* query = uri != nullptr ? evhttp_uri_get_query(uri) : nullptr;
  const std::string path_str = path != nullptr ? path : "";
  if (path_str.rfind("/__", 0) == 0) {
    HandleAdmin(req, path_str, query);
  } else {
    HandleScripted(req, path_str, query);
  }
}

void Server::HandleScripted(evhttp_request* req, const std::string& path, const char* query) {
  evkeyvalq* headers = evhttp_request_get_input_headers(req);
  const QueryParams params(query);

  Arrival arrival;
  arrival.method = MethodName(evhttp_request_get_command(req));
  arrival.path = evhttp_request_get_uri(req);
  arrival.body_bytes = evbuffer_get_length(evhttp_request_get_input_buffer(req));
  arrival.at_ms = NowMs();
  const size_t logged = arrivals_.Add(arrival.at_ms, path);
  const double at_ms = arrival.at_ms;
  for (const evkeyval* h = headers->tqh_first; h != nullptr; h = h->next.tqe_next) {
    for (const char* c = h->key; *c != '\0'; ++c) {
      arrival.headers.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(*c))));
    }
    arrival.headers.append(": ").append(h->value).push_back('\n');
  }
  std::string key;
  if (const char* k = evhttp_find_header(headers, "Idempotency-Key"); k != nullptr) {
    key = k;
    arrival.key_header = true;
  } else if (const char* fake = evhttp_find_header(headers, "X-Fake-Key"); fake != nullptr) {
    key = fake;
  } else {
    key = arrival.path;
  }
  KeyRecord& record = ledger_.Arrive(key, std::move(arrival));
  const int attempt = record.attempts;

  if (const Outage* outage = OutageFor(path, at_ms); outage != nullptr) {
    // Hard down: the same status for every request, at once, whatever the script or a stored
    // effect; no Retry-After. Never an effect, and the key's script does not move on.
    ledger_.AnsweredByOutage(record, outage->status);
    arrivals_.Answered(logged, outage->status, /*outage=*/true);
    Respond(req,
            JsonAnswer(outage->status, {{"error", ReasonPhrase(outage->status)},
                                        {"status", outage->status},
                                        {"outage", true}}),
            0, logged);
    return;
  }

  std::optional<CanvasRef> canvas;
  if (CanvasThrottle* throttle = CanvasFor(path); throttle != nullptr) {
    const char* token = evhttp_find_header(headers, "Authorization");
    CanvasThrottle::Ticket ticket = throttle->Arrive(token != nullptr ? token : "", at_ms / 1000);
    if (ticket.throttled) {
      // Canvas's throttled answer, at once; never an effect, and no script step used.
      Answer answer;
      answer.status = 403;
      answer.content_type = "text/plain; charset=utf-8";
      answer.body = "403 Forbidden (Rate Limit Exceeded)\n";
      answer.headers = throttle->Finish(ticket, at_ms / 1000);
      ledger_.AnsweredByThrottle(record, answer.status);
      arrivals_.Answered(logged, answer.status, false);
      Respond(req, std::move(answer), 0, logged);
      return;
    }
    canvas = CanvasRef{throttle->settings().prefix, std::move(ticket)};
  }
  // A window throttle's headers ride on whatever the request is answered (not on the stored
  // effect: a repeat gets the quota of its own moment).
  std::vector<std::pair<std::string, std::string>> quota_headers;
  if (WindowThrottle* window = WindowFor(path); window != nullptr) {
    const char* token = evhttp_find_header(headers, "Authorization");
    WindowThrottle::Verdict verdict = window->Arrive(token != nullptr ? token : "", WallMs());
    if (verdict.throttled) {
      Answer answer;
      answer.status = 429;
      answer.content_type = verdict.content_type;
      answer.body = verdict.body.empty() ? "429 Too Many Requests\n" : verdict.body;
      answer.headers = std::move(verdict.headers);
      ledger_.AnsweredByThrottle(record, answer.status);
      arrivals_.Answered(logged, answer.status, false);
      FinishCanvas(canvas, nullptr);
      Respond(req, std::move(answer), 0, logged);
      return;
    }
    quota_headers = std::move(verdict.headers);
  }
  const auto with_quota = [&quota_headers](Answer answer) {
    answer.headers.insert(answer.headers.end(), quota_headers.begin(), quota_headers.end());
    return answer;
  };

  const std::optional<int> latency_ms =
      ParseNonNegative<int>(Setting(headers, "X-Fake-Latency-Ms", params, "latency_ms"));
  if (!latency_ms) {
    const Answer bad = JsonAnswer(400, {{"error", "latency_ms: want a non-negative integer"}});
    ledger_.Answered(record, bad);
    arrivals_.Answered(logged, bad.status, false);
    Respond(req, with_quota(bad), 0, logged, std::move(canvas));
    return;
  }
  if (record.effect) {
    // Already applied: the stored answer, whatever the script says now.
    ledger_.Repeated(record);
    Answer repeat = *record.effect;
    repeat.headers.emplace_back("X-Fake-Repeat", "true");
    arrivals_.Answered(logged, repeat.status, false);
    Respond(req, with_quota(std::move(repeat)), *latency_ms, logged, std::move(canvas));
    return;
  }
  const char* script_text = Setting(headers, "X-Fake-Script", params, "script");
  std::string error;
  const std::optional<std::vector<Step>> script =
      ParseScript(script_text != nullptr ? script_text : "200", &error, IsMoodle(path));
  if (!script) {
    const Answer bad = JsonAnswer(400, {{"error", "bad script: " + error}});
    ledger_.Answered(record, bad);
    arrivals_.Answered(logged, bad.status, false);
    Respond(req, with_quota(bad), 0, logged, std::move(canvas));
    return;
  }
  // Outage and throttle answers use no step: afterwards the key goes on where its script was.
  const Step& step = StepFor(*script, attempt - record.outage_answers - record.throttle_answers);
  if (step.kind != Step::Kind::kRespond) {
    // No answer goes out: the request ends for the throttle now (a simplification: its
    // up-front cost is not held while it hangs).
    FinishCanvas(canvas, nullptr);
  }
  switch (step.kind) {
    case Step::Kind::kHang:
      ledger_.Unanswered(record);
      Defer(req, PendingKind::kHang, Answer{}, 0, logged);
      return;
    case Step::Kind::kReset:
      ledger_.Unanswered(record);
      Defer(req, PendingKind::kReset, Answer{}, *latency_ms, logged);
      return;
    case Step::Kind::kCut:
      ledger_.Unanswered(record);
      Defer(req, PendingKind::kCut, Answer{}, *latency_ms, logged);
      return;
    case Step::Kind::kRespond: {
      const Answer answer =
          ScriptedAnswer(step, key, attempt, Setting(headers, "X-Fake-Body", params, "body"));
      // The effect happens on arrival, even if the answer is delayed and the client has gone
      // by then: that is the "applied, but the response was lost" case retries must survive.
      ledger_.Answered(record, answer);
      arrivals_.Answered(logged, answer.status, false);
      Respond(req, with_quota(answer), *latency_ms + step.delay_ms, logged, std::move(canvas));
      return;
    }
  }
}

void Server::Respond(evhttp_request* req, Answer answer, int delay_ms, size_t arrival,
                     std::optional<CanvasRef> canvas) {
  if (delay_ms <= 0) {
    FinishCanvas(canvas, &answer);
    SendAnswer(req, answer);
    arrivals_.Finished(arrival, NowMs());
  } else {
    Defer(req, PendingKind::kDelay, std::move(answer), delay_ms, arrival, std::move(canvas));
  }
}

void Server::Defer(evhttp_request* req, PendingKind kind, Answer answer, int delay_ms,
                   size_t arrival, std::optional<CanvasRef> canvas) {
  auto pending = std::make_unique<Pending>();
  pending->server = this;
  pending->kind = kind;
  pending->req = req;
  pending->arrival = arrival;
  pending->canvas = std::move(canvas);
  pending->evcon = evhttp_request_get_connection(req);
  pending->fd = bufferevent_getfd(evhttp_connection_get_bufferevent(pending->evcon));
  pending->answer = std::move(answer);
  if (kind != PendingKind::kHang) {
    // Resets and cuts also go through a timer, even at zero delay: closing a connection from
    // inside evhttp's request callback would free it under evhttp's feet.
    pending->timer = evtimer_new(base_, &Server::OnPendingTimer, pending.get());
    const timeval tv{delay_ms / 1000, (delay_ms % 1000) * 1000};
    evtimer_add(pending->timer, &tv);
  }
  if (kind == PendingKind::kDelay || kind == PendingKind::kHang || kind == PendingKind::kCut) {
    pending->readable = event_new(base_, pending->fd, EV_READ | EV_PERSIST,
                                  &Server::OnPendingReadable, pending.get());
    event_add(pending->readable, nullptr);
  }
  Pending* key = pending.get();
  pending_.emplace(key, std::move(pending));
}

void Server::CloseSoon(evhttp_connection* evcon) {
  for (const auto& [raw, pending] : pending_) {
    if (pending->evcon == evcon && pending->kind == PendingKind::kClose) return;  // already
  }
  auto pending = std::make_unique<Pending>();
  pending->server = this;
  pending->kind = PendingKind::kClose;
  pending->evcon = evcon;
  pending->fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
  pending->timer = evtimer_new(base_, &Server::OnPendingTimer, pending.get());
  const timeval now{0, 0};
  evtimer_add(pending->timer, &now);
  Pending* key = pending.get();
  pending_.emplace(key, std::move(pending));
}

void Server::OnCutWritten(evhttp_connection* evcon, void* self) {
  static_cast<Server*>(self)->CloseSoon(evcon);
}

std::unique_ptr<Server::Pending> Server::TakePending(Pending* pending) {
  auto node = pending_.extract(pending);
  return node.empty() ? nullptr : std::move(node.mapped());
}

void Server::OnPendingTimer(evutil_socket_t /*fd*/, short /*what*/, void* arg) {
  auto* raw = static_cast<Pending*>(arg);
  Server* server = raw->server;
  std::unique_ptr<Pending> pending = server->TakePending(raw);
  evhttp_request* req = pending->req;
  evhttp_connection* evcon = pending->evcon;
  const evutil_socket_t fd = pending->fd;
  const PendingKind kind = pending->kind;
  Answer answer = std::move(pending->answer);
  const size_t arrival = pending->arrival;
  server->FinishCanvas(pending->canvas, &answer);
  pending.reset();  // our events go before libevent touches the connection
  // Done with the request now: answered, reset, or cut (the rest of a cut adds nothing).
  server->arrivals_.Finished(arrival, server->NowMs());
  switch (kind) {
    case PendingKind::kDelay:
      SendAnswer(req, answer);
      return;
    case PendingKind::kHang:  // never has a timer
      return;
    case PendingKind::kReset: {
      // SO_LINGER 0: close with RST, the way a crashing upstream or a middlebox drops a request.
      const linger hard{1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
      evhttp_connection_free(evcon);  // frees the request too
      return;
    }
    case PendingKind::kCut: {
      // The head of a 500 promising kCutLength bytes, a few of them, and (once they are out,
      // OnCutWritten) the end of the connection. The request is never finished; freeing the
      // connection frees it.
      evkeyvalq* out = evhttp_request_get_output_headers(req);
      evhttp_add_header(out, "Content-Type", "application/json");
      evhttp_add_header(out, "Content-Length", "1024");
      evhttp_send_reply_start(req, 500, "Internal Server Error");
      evbuffer* partial = evbuffer_new();
      evbuffer_add(partial, kCutBody, sizeof(kCutBody) - 1);
      evhttp_send_reply_chunk_with_cb(req, partial, &Server::OnCutWritten, server);
      evbuffer_free(partial);
      return;
    }
    case PendingKind::kClose:
      evhttp_connection_free(evcon);
      return;
  }
}

void Server::OnPendingReadable(evutil_socket_t fd, short /*what*/, void* arg) {
  auto* raw = static_cast<Pending*>(arg);
  char byte;
  const ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) {
    // A pipelined request: evhttp reads it once this one is answered. Stop watching, or this
    // level-triggered event would spin.
    event_del(raw->readable);
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  // The client went away: drop the waiting request with its connection.
  Server* server = raw->server;
  std::unique_ptr<Pending> pending = server->TakePending(raw);
  evhttp_connection* evcon = pending->evcon;
  server->arrivals_.Finished(pending->arrival, server->NowMs());
  server->FinishCanvas(pending->canvas, nullptr);
  pending.reset();
  evhttp_connection_free(evcon);
}

}  // namespace rebound::fakelms
