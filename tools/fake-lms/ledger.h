// Ledger: fake-lms's record of what every idempotency key received and what it caused.
//
// Models an idempotent LMS: the first 2xx answer for a key is that key's *effect* and is stored;
// every later request with that key gets the stored answer back and counts as a *repeat*, never
// as a second effect. So `effects` per key is 0 or 1 and `repeats` counts duplicate deliveries.
// Not thread-safe: owned and used by the server's single event loop.
#ifndef REBOUND_TOOLS_FAKE_LMS_LEDGER_H_
#define REBOUND_TOOLS_FAKE_LMS_LEDGER_H_

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rebound::fakelms {

// One HTTP answer, as sent and as stored for repeats.
struct Answer {
  int status = 200;
  const char* content_type = "application/json";             // a string literal
  std::vector<std::pair<std::string, std::string>> headers;  // besides Content-Type
  std::string body;
  // False for an error answered with a 2xx (Moodle's web service errors): never an effect.
  bool can_be_effect = true;
};

// What the server saw of one request.
struct Arrival {
  std::string method;
  std::string path;  // with the query string
  size_t body_bytes = 0;
  bool key_header = false;  // the Idempotency-Key header was present
  double at_ms = 0;         // since the server started
  // "name: value\n" per header, names lower-cased: one allocation per request, not one per
  // header (the ledger keeps one Arrival per key; benchmarks create millions of keys).
  std::string headers;
};

struct KeyRecord {
  int attempts = 0;
  int effects = 0;
  int repeats = 0;
  int outage_answers = 0;    // attempts answered by an outage (Server: POST /__outage)
  int throttle_answers = 0;  // attempts answered by an LMS's throttle (POST /__canvas)
  struct Attempt {
    double at_ms = 0;  // arrival, ms since the server started
    int status = 0;    // as answered; 0 for 'hang', 'reset', 'cut' (no full answer)
  };
  std::vector<Attempt> history;
  bool key_header_every_attempt = true;
  Arrival last;
  std::optional<Answer> effect;  // the stored first 2xx answer
};

class Ledger {
 public:
  // Records a request for `key` and returns its record; `attempts` already counts it.
  KeyRecord& Arrive(const std::string& key, Arrival arrival);
  // The request will be (or was) answered with `answer` / not answered at all (status 0).
  // The first 2xx answer becomes the key's effect.
  void Answered(KeyRecord& record, const Answer& answer);
  void Unanswered(KeyRecord& record);
  // The request got the stored effect back.
  void Repeated(KeyRecord& record);
  // The request was answered `status` by an outage: never an effect, and no script step used.
  void AnsweredByOutage(KeyRecord& record, int status);
  // The request was throttled (answered `status` by an LMS's throttle): never an effect, and no
  // script step used.
  void AnsweredByThrottle(KeyRecord& record, int status);

  void CountRequest() { ++requests_; }
  void CountConnection() { ++connections_; }
  void Clear();

  // {"totals": {...}, "keys": {...}}, only {"totals": ...} when `totals_only`.
  nlohmann::json Stats(bool totals_only) const;
  // One key's object, or nullopt when the key was never seen.
  std::optional<nlohmann::json> KeyStats(const std::string& key) const;

 private:
  static nlohmann::json ToJson(const KeyRecord& record);

  std::unordered_map<std::string, KeyRecord> keys_;
  uint64_t requests_ = 0;     // every HTTP request, admin endpoints included
  uint64_t connections_ = 0;  // TCP connections accepted
  uint64_t attempts_ = 0;     // scripted requests (not admin endpoints)
  uint64_t effects_ = 0;
  uint64_t repeats_ = 0;
  uint64_t outage_answers_ = 0;
  uint64_t throttle_answers_ = 0;
};

// Every scripted request in arrival order, for checkers that need per-endpoint rates and
// concurrency (GET /__arrivals): arrival time, first path segment, the time fake-lms was done
// with it (answer sent, connection reset or cut, or client gone), status, outage. 24 bytes a
// request plus one copy of each distinct segment, so a million requests cost ~24 MB.
class ArrivalLog {
 public:
  static constexpr size_t kNone = static_cast<size_t>(-1);
  static constexpr size_t kMaxEntries = 4000000;  // beyond: counted in dropped(), not kept
  static constexpr size_t kMaxSegmentBytes = 64;  // longer segments are cut
  static constexpr size_t kMaxSegments = 10000;   // beyond: "(other)"

  // Records a request to `path` (without the query) arriving at `at_ms`; returns its index, or
  // kNone when the log is full.
  size_t Add(double at_ms, std::string_view path);
  // How it was (or will be) answered: status 0 for no full answer ('hang', 'reset', 'cut').
  void Answered(size_t index, int status, bool outage);
  // fake-lms is done with it at `at_ms`. Ignores kNone.
  void Finished(size_t index, double at_ms);
  void Clear();

  size_t size() const { return entries_.size(); }
  uint64_t dropped() const { return dropped_; }
  // {"now_ms", "fields", "arrivals": [[at_ms, segment, done_ms|null, status, outage], ...],
  //  "dropped"} for the requests that arrived at or after `since_ms`.
  nlohmann::json Since(double since_ms, double now_ms) const;

 private:
  struct Entry {
    double at_ms = 0;
    double done_ms = -1;  // -1: not yet
    uint32_t segment = 0;
    int16_t status = 0;
    bool outage = false;
  };
  uint32_t SegmentIndex(std::string_view path);

  std::vector<Entry> entries_;
  std::vector<std::string> segments_;
  std::unordered_map<std::string, uint32_t> segment_index_;
  uint64_t dropped_ = 0;
};

}  // namespace rebound::fakelms

#endif  // REBOUND_TOOLS_FAKE_LMS_LEDGER_H_
