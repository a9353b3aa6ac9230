// rebound-loadgen: drives a Rebound server with SubmitSyncBatch (--mode batch), one SubmitSync
// per job (--mode unary) or SubmitSyncStream (--mode stream), and measures what it sustains.
//
//   rebound-loadgen --target 127.0.0.1:PORT --jobs 20000 [--mode batch|unary|stream]
//                   [--batch 500] [--concurrency 4] [--window 256]
//                   [--endpoint lms] [--mix healthy|flaky|retrying|far] [--key-prefix K]
//                   [--path /api/v1/courses/1/grades] [--policy NAME] [--rate JOBS_PER_S]
//                   [--no-wait] [--wait-timeout 1800] [--lms http://127.0.0.1:P] [--verify]
//                   [--endpoints N] [--lms-post /__outage?ms=5000...] [--latency-ms N]
//   rebound-loadgen --target ... --endpoint lms --count     (tally the endpoint's jobs by state)
//
// Submission uses gRPC's callback API: at most --concurrency batches are in flight, whatever
// their number, on a few threads of gRPC's own. Job i carries the idempotency key
// "<key-prefix><i>" and the fake-lms script the mix gives it (bench/mix.h) as "script=...".
// With --endpoints N (> 1), job i goes to endpoint "<endpoint><i % N>" (e0 .. e49), and the
// completion wait and --count cover every endpoint. Each --lms-post PATH is POSTed to fake-lms
// (--lms) just before the first batch: an outage that starts with the load.
//
// Measures:
//   submit_seconds / submit_rate:     from the first batch sent to the last one acknowledged;
//                                     an acknowledgement means the jobs are durable.
//   ack_ms_p50 / p99:                 per call (batch, unary) or per job (stream), from send to
//                                     acknowledgement.
//   client_cpu_us_per_job:            this process's CPU (user + system) during submission,
//                                     per accepted job: the pipeline's cost of submitting.
//   complete_seconds / completion_rate (unless --no-wait): from the first batch sent until
//                                     ListSyncs finds none of the endpoint's jobs still QUEUED,
//                                     RUNNING, WAITING_RETRY or BLOCKED (for the "far" mix:
//                                     QUEUED, RUNNING or BLOCKED, i.e. every job has made its
//                                     first attempt and is waiting). Polled every --poll-ms with
//                                     page_size 1, so each poll is one indexed query.
// Prints one JSON line on stdout; progress goes to stderr. Exit 0 on success, 1 when jobs were
// rejected, a wait timed out or --verify found a problem, 2 on bad flags.
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "bench/http_fetch.h"
#include "bench/mix.h"
#include "bench/verify.h"
#include "client/client.h"
#include "nlohmann/json.hpp"
#include "rebound/v1/rebound.grpc.pb.h"

namespace rebound::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;

double SecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

struct Flags {
  std::string target;
  uint64_t jobs = 1000;
  std::string mode = "batch";  // batch | unary | stream
  int batch = 500;
  int concurrency = 4;  // batch, unary: calls in flight; stream: streams
  int window = 256;     // stream: jobs sent ahead of their answers, per stream
  int channels = 1;
  std::string endpoint = "lms";
  uint64_t endpoints = 1;
  int latency_ms = 0;  // fake-lms latency_ms of every job; 0: none
  std::vector<std::string> lms_posts;
  std::string mix_name = "healthy";
  std::string key_prefix = "bench-";
  std::string path = "/api/v1/courses/1/grades";
  std::string policy;
  double rate = 0;  // jobs per second; 0: as fast as acknowledged
  bool no_wait = false;
  double wait_timeout_s = 1800;
  double submit_timeout_s = 3600;
  int poll_ms = 50;
  std::string lms_url;
  bool verify = false;
  bool count = false;
  Mix mix = Mix::kHealthy;
};

// A range of job indexes sent as one SubmitSyncBatch, possibly again after a batch-level error.
struct Batch {
  uint64_t first = 0;
  uint64_t count = 0;
  int tries = 0;
  SteadyClock::time_point not_before{};
};

struct BatchCall {
  Batch batch;
  grpc::ClientContext context;
  v1::SubmitSyncBatchRequest request;  // --mode batch
  v1::SubmitSyncBatchResponse response;
  v1::SubmitSyncRequest unary_request;  // --mode unary: one job per SubmitSync
  v1::SubmitSyncResponse unary_response;
  SteadyClock::time_point sent;
};

constexpr int kMaxBatchTries = 5;
constexpr auto kBatchRetryDelay = std::chrono::milliseconds(200);
constexpr auto kCallTimeout = std::chrono::seconds(120);

struct SubmitResult {
  uint64_t accepted = 0;
  uint64_t deduplicated = 0;
  uint64_t rejected = 0;                   // items refused (item code != OK) or batches given up
  uint64_t batch_retries = 0;              // batch-level errors that were retried
  std::map<std::string, uint64_t> errors;  // "CODE: message" -> count (first few kinds)
  double seconds = 0;
  std::vector<double> ack_ms;  // per batch, send to acknowledgement
  bool timed_out = false;
};

// Counts one error by its text, keeping the first few kinds (a run with thousands of distinct
// messages must not grow the report without bound).
void CountErrorKind(const std::string& what, SubmitResult* result) {
  constexpr size_t kMaxKinds = 20;
  if (result->errors.size() < kMaxKinds || result->errors.count(what) != 0) {
    ++result->errors[what];
  }
}

void FillRequest(const Flags& flags, uint64_t index, v1::SyncRequest* r) {
  const Expectation& want = ExpectationFor(flags.mix, index);
  r->set_idempotency_key(absl::StrCat(flags.key_prefix, index));
  r->set_endpoint(flags.endpoints > 1 ? absl::StrCat(flags.endpoint, index % flags.endpoints)
                                      : flags.endpoint);
  r->set_method("POST");
  r->set_path(flags.path);
  r->set_query(flags.latency_ms > 0
                   ? absl::StrCat("script=", want.script, "&latency_ms=", flags.latency_ms)
                   : absl::StrCat("script=", want.script));
  r->set_body(absl::StrCat(R"({"student":)", index, R"(,"score":95})"));
  v1::Header* h = r->add_headers();
  h->set_name("Content-Type");
  h->set_value("application/json");
  if (!flags.policy.empty()) r->set_policy(flags.policy);
}

// Sends every job in batches, at most --concurrency batches in flight, and waits for the last
// acknowledgement. Batches that fail as a whole with a retryable code are sent again (same
// keys, so a batch that was in fact stored is deduplicated, not doubled).
class Submitter {
 public:
  Submitter(const Flags& flags, std::vector<std::unique_ptr<v1::Rebound::Stub>> stubs)
      : flags_(flags), stubs_(std::move(stubs)) {}

  SubmitResult Run() {
    const SteadyClock::time_point start = SteadyClock::now();
    const SteadyClock::time_point give_up =
        start + std::chrono::duration_cast<SteadyClock::duration>(
                    std::chrono::duration<double>(flags_.submit_timeout_s));
    uint64_t next = 0;
    uint64_t launched = 0;
    SteadyClock::time_point last_progress = start;
    for (;;) {
      Batch batch;
      {
        std::unique_lock<std::mutex> lock(mu_);
        bool have = false;
        while (!have) {
          if (SteadyClock::now() >= give_up) {
            result_.timed_out = true;
            break;
          }
          if (in_flight_ < flags_.concurrency) {
            if (!retry_.empty() && retry_.front().not_before <= SteadyClock::now()) {
              batch = retry_.front();
              retry_.pop_front();
              have = true;
              break;
            }
            if (next < flags_.jobs) {
              batch.first = next;
              batch.count = std::min<uint64_t>(flags_.batch, flags_.jobs - next);
              next += batch.count;
              have = true;
              break;
            }
          }
          if (next >= flags_.jobs && retry_.empty() && in_flight_ == 0) break;
          cv_.wait_for(lock, std::chrono::milliseconds(20));
        }
        if (!have) break;
        ++in_flight_;
      }
      if (flags_.rate > 0 && batch.tries == 0) {
        // Pace by the batch's first index: job i is due i / rate seconds after the start.
        const auto due = start + std::chrono::duration_cast<SteadyClock::duration>(
                                     std::chrono::duration<double>(batch.first / flags_.rate));
        std::this_thread::sleep_until(std::min(due, give_up));
      }
      Launch(batch, stubs_[launched % stubs_.size()].get());
      ++launched;
      if (SecondsSince(last_progress) >= 5) {
        last_progress = SteadyClock::now();
        std::lock_guard<std::mutex> lock(mu_);
        std::fprintf(stderr, "loadgen: %llu/%llu acknowledged after %.1f s\n",
                     static_cast<unsigned long long>(result_.accepted + result_.rejected),
                     static_cast<unsigned long long>(flags_.jobs), SecondsSince(start));
      }
    }
    // On a timeout, calls may still be in flight: cancel them and wait for their callbacks,
    // which touch this object. Bounded: a cancelled call completes promptly.
    std::unique_lock<std::mutex> lock(mu_);
    for (BatchCall* call : calls_) call->context.TryCancel();
    cv_.wait_for(lock, std::chrono::seconds(30), [this] { return in_flight_ == 0; });
    result_.seconds = last_ack_s_;
    return result_;
  }

 private:
  void Launch(const Batch& batch, v1::Rebound::Stub* stub) {
    auto* call = new BatchCall();
    call->batch = batch;
    call->batch.tries++;
    const bool unary = flags_.mode == "unary";
    for (uint64_t i = batch.first; i < batch.first + batch.count; ++i) {
      FillRequest(flags_, i,
                  unary ? call->unary_request.mutable_request() : call->request.add_requests());
    }
    call->context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    call->sent = SteadyClock::now();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!started_) {
        started_ = true;
        start_ = call->sent;
      }
      calls_.push_back(call);
    }
    if (unary) {
      stub->async()->SubmitSync(&call->context, &call->unary_request, &call->unary_response,
                                [this, call](const grpc::Status& status) { Done(call, status); });
      return;
    }
    stub->async()->SubmitSyncBatch(
        &call->context, &call->request, &call->response,
        [this, call](const grpc::Status& status) { Done(call, status); });
  }

  // On one of gRPC's threads.
  void Done(BatchCall* call, const grpc::Status& status) {
    const SteadyClock::time_point now = SteadyClock::now();
    std::unique_ptr<BatchCall> owned(call);
    std::lock_guard<std::mutex> lock(mu_);
    calls_.erase(std::find(calls_.begin(), calls_.end(), call));
    --in_flight_;
    cv_.notify_all();
    if (!status.ok() && flags_.mode == "unary" &&
        status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
      ++result_.rejected;  // the job's own error, as an item error of a batch
      CountError(absl::StrCat("item ", status.error_code(), ": ", status.error_message()));
      last_ack_s_ = std::chrono::duration<double>(now - start_).count();
      return;
    }
    if (!status.ok()) {
      const grpc::StatusCode code = status.error_code();
      const bool retryable = code == grpc::StatusCode::UNAVAILABLE ||
                             code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                             code == grpc::StatusCode::DEADLINE_EXCEEDED;
      CountError(absl::StrCat("batch ", code, ": ", status.error_message()));
      if (retryable && call->batch.tries < kMaxBatchTries && !result_.timed_out) {
        ++result_.batch_retries;
        Batch again = call->batch;
        again.not_before = now + kBatchRetryDelay;
        retry_.push_back(again);
      } else {
        result_.rejected += call->batch.count;
        last_ack_s_ = std::chrono::duration<double>(now - start_).count();
      }
      return;
    }
    result_.ack_ms.push_back(std::chrono::duration<double, std::milli>(now - call->sent).count());
    last_ack_s_ = std::chrono::duration<double>(now - start_).count();
    if (flags_.mode == "unary") {
      ++result_.accepted;
      if (call->unary_response.deduplicated()) ++result_.deduplicated;
      return;
    }
    for (const v1::BatchItemResult& item : call->response.results()) {
      if (item.code() == 0) {
        ++result_.accepted;
        if (item.result().deduplicated()) ++result_.deduplicated;
      } else {
        ++result_.rejected;
        CountError(absl::StrCat("item ", item.code(), ": ", item.message()));
      }
    }
    const auto answered = static_cast<uint64_t>(call->response.results_size());
    if (answered != call->batch.count) {
      // A short answer loses items: count them as rejected rather than hide them.
      if (answered < call->batch.count) result_.rejected += call->batch.count - answered;
      CountError(
          absl::StrCat("batch of ", call->batch.count, " answered with ", answered, " results"));
    }
  }

  void CountError(const std::string& what) { CountErrorKind(what, &result_); }

  const Flags& flags_;
  const std::vector<std::unique_ptr<v1::Rebound::Stub>> stubs_;
  std::mutex mu_;
  std::condition_variable cv_;
  int in_flight_ = 0;
  std::deque<Batch> retry_;
  std::vector<BatchCall*> calls_;
  bool started_ = false;
  SteadyClock::time_point start_;
  double last_ack_s_ = 0;
  SubmitResult result_;
};

// --mode stream: --concurrency SubmitSyncStreams, each sending its share of the jobs (job i
// goes to stream i % streams) with at most --window unanswered, a writer thread per stream and
// the answers read on another. Answers are matched by sequence (the job's index); the ack
// latency of a job is from its write to its answer. No retries: a stream-level error counts its
// unanswered jobs as rejected (a benchmark run wants to see it, not hide it).
class StreamSubmitter {
 public:
  StreamSubmitter(const Flags& flags, std::vector<std::unique_ptr<v1::Rebound::Stub>> stubs)
      : flags_(flags), stubs_(std::move(stubs)), sent_(flags.jobs) {}

  SubmitResult Run() {
    const SteadyClock::time_point start = SteadyClock::now();
    std::vector<std::thread> streams;
    const int n = std::max(1, flags_.concurrency);
    for (int s = 0; s < n; ++s) {
      streams.emplace_back([this, s, n, start] { RunStream(s, n, start); });
    }
    for (std::thread& t : streams) t.join();
    std::lock_guard<std::mutex> lock(mu_);
    result_.seconds = last_ack_s_;
    return result_;
  }

 private:
  void RunStream(int s, int n, SteadyClock::time_point start) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::duration_cast<std::chrono::system_clock::duration>(
                             std::chrono::duration<double>(flags_.submit_timeout_s)));
    auto stream = stubs_[static_cast<size_t>(s) % stubs_.size()]->SubmitSyncStream(&context);
    std::mutex mu;
    std::condition_variable cv;
    uint64_t written = 0, answered = 0;
    bool reading_done = false;
    std::thread writer([&] {
      v1::SubmitSyncStreamRequest message;
      for (uint64_t i = static_cast<uint64_t>(s); i < flags_.jobs; i += static_cast<uint64_t>(n)) {
        {
          std::unique_lock<std::mutex> lock(mu);
          cv.wait(lock, [&] {
            return reading_done || written - answered < static_cast<uint64_t>(flags_.window);
          });
          if (reading_done) return;
        }
        message.set_sequence(i);
        message.clear_request();
        FillRequest(flags_, i, message.mutable_request());
        sent_[i] = SteadyClock::now();
        if (!stream->Write(message)) return;
        std::lock_guard<std::mutex> lock(mu);
        ++written;
      }
      stream->WritesDone();
    });
    v1::SubmitSyncStreamResponse answer;
    while (stream->Read(&answer)) {
      const SteadyClock::time_point now = SteadyClock::now();
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (answer.sequence() < sent_.size()) {
          result_.ack_ms.push_back(
              std::chrono::duration<double, std::milli>(now - sent_[answer.sequence()]).count());
        }
        if (answer.code() == 0) {
          ++result_.accepted;
          if (answer.result().deduplicated()) ++result_.deduplicated;
        } else {
          ++result_.rejected;
          CountError(absl::StrCat("item ", answer.code(), ": ", answer.message()));
        }
        last_ack_s_ = std::chrono::duration<double>(now - start).count();
      }
      std::lock_guard<std::mutex> lock(mu);
      ++answered;
      cv.notify_all();
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      reading_done = true;
      cv.notify_all();
    }
    writer.join();
    const grpc::Status status = stream->Finish();
    const uint64_t share =
        (flags_.jobs + static_cast<uint64_t>(n - 1 - s)) / static_cast<uint64_t>(n);
    std::lock_guard<std::mutex> lock(mu_);
    if (!status.ok()) {
      CountError(absl::StrCat("stream ", status.error_code(), ": ", status.error_message()));
      if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) result_.timed_out = true;
    }
    if (answered < share) result_.rejected += share - answered;
  }

  void CountError(const std::string& what) { CountErrorKind(what, &result_); }

  const Flags& flags_;
  const std::vector<std::unique_ptr<v1::Rebound::Stub>> stubs_;
  std::vector<SteadyClock::time_point> sent_;  // by job index; each written by one stream
  std::mutex mu_;
  double last_ack_s_ = 0;
  SubmitResult result_;
};

// CPU time this process has used (user + system), in seconds.
double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto i = std::min(values.size() - 1, static_cast<size_t>(q * values.size()));
  return values[i];
}

// Polls ListSyncs until none of the endpoint's jobs is in `states`; returns the time that took,
// or nullopt on timeout. An RPC error is retried (the server may be busy), within the timeout.
std::optional<double> WaitUntilNone(const client::Client& client, const Flags& flags,
                                    const std::vector<v1::SyncState>& states,
                                    SteadyClock::time_point start) {
  v1::ListSyncsRequest request;
  if (flags.endpoints == 1) request.set_endpoint(flags.endpoint);
  request.set_page_size(1);
  for (const v1::SyncState s : states) request.add_states(s);
  const auto deadline =
      SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                               std::chrono::duration<double>(flags.wait_timeout_s));
  auto last_progress = SteadyClock::now();
  std::string last_error;
  while (SteadyClock::now() < deadline) {
    auto page = client.List(request);
    if (page.ok() && page->jobs_size() == 0) return SecondsSince(start);
    if (!page.ok()) last_error = page.status().ToString();
    if (SecondsSince(last_progress) >= 5) {
      last_progress = SteadyClock::now();
      std::fprintf(stderr, "loadgen: waiting for completion, %.1f s%s%s\n", SecondsSince(start),
                   last_error.empty() ? "" : "; last error: ", last_error.c_str());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(flags.poll_ms));
  }
  return std::nullopt;
}

// --count: every job of the endpoint by state, through ListSyncs pages.
int CountStates(const client::Client& client, const Flags& flags) {
  const SteadyClock::time_point start = SteadyClock::now();
  v1::ListSyncsRequest request;
  if (flags.endpoints == 1) request.set_endpoint(flags.endpoint);
  request.set_page_size(1000);
  std::map<std::string, uint64_t> by_state;
  uint64_t total = 0;
  constexpr uint64_t kMaxPages = 100000;  // 100M jobs
  for (uint64_t page = 0; page < kMaxPages; ++page) {
    auto response = client.List(request);
    if (!response.ok()) {
      std::fprintf(stderr, "loadgen: ListSyncs: %s\n", response.status().ToString().c_str());
      return 1;
    }
    for (const v1::SyncJob& job : response->jobs()) {
      ++by_state[v1::SyncState_Name(job.state())];
      ++total;
    }
    if (response->next_page_token().empty()) break;
    request.set_page_token(response->next_page_token());
  }
  const nlohmann::json out = {{"endpoint", flags.endpoint},
                              {"total", total},
                              {"by_state", by_state},
                              {"seconds", SecondsSince(start)}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

int Run(int argc, char** argv) {
  Flags flags;
  CLI::App cli{"rebound-loadgen: SubmitSyncBatch load against a Rebound server"};
  cli.add_option("--target", flags.target, "gRPC target host:port")->required();
  cli.add_option("--jobs", flags.jobs, "jobs to submit")->capture_default_str();
  cli.add_option("--mode", flags.mode,
                 "batch: SubmitSyncBatch calls; unary: one SubmitSync per job; stream: "
                 "SubmitSyncStream, one message per job")
      ->capture_default_str()
      ->check(CLI::IsMember({"batch", "unary", "stream"}));
  cli.add_option("--window", flags.window, "stream: jobs sent ahead of their answers, per stream")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cli.add_option("--batch", flags.batch, "jobs per SubmitSyncBatch")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cli.add_option("--concurrency", flags.concurrency,
                 "calls in flight (batch, unary), or streams (stream)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cli.add_option("--channels", flags.channels, "gRPC channels (connections), used in turn")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cli.add_option("--endpoint", flags.endpoint, "endpoint of every job")->capture_default_str();
  cli.add_option("--endpoints", flags.endpoints,
                 "spread jobs over N endpoints <endpoint>0 .. <endpoint>N-1")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  cli.add_option("--latency-ms", flags.latency_ms,
                 "fake-lms answers every attempt this much later (latency_ms)")
      ->capture_default_str()
      ->check(CLI::Range(0, 600000));
  cli.add_option("--lms-post", flags.lms_posts,
                 "POST this fake-lms admin path (with query) before the first batch; repeatable");
  cli.add_option("--mix", flags.mix_name, "healthy | flaky | retrying | far | protection")
      ->capture_default_str();
  cli.add_option("--key-prefix", flags.key_prefix, "idempotency key of job i: PREFIX<i>")
      ->capture_default_str();
  cli.add_option("--path", flags.path, "path of every job")->capture_default_str();
  cli.add_option("--policy", flags.policy, "named policy of every job (endpoint default if empty)");
  cli.add_option("--rate", flags.rate, "jobs per second (0: as fast as acknowledged)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cli.add_flag("--no-wait", flags.no_wait, "measure submission only");
  cli.add_option("--wait-timeout", flags.wait_timeout_s, "seconds to wait for completion")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cli.add_option("--submit-timeout", flags.submit_timeout_s, "seconds allowed for submission")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cli.add_option("--poll-ms", flags.poll_ms, "completion poll interval")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  cli.add_option("--lms", flags.lms_url, "fake-lms base URL: adds its /__stats totals");
  cli.add_flag("--verify", flags.verify, "check every job against the mix (needs --lms)");
  cli.add_flag("--count", flags.count, "only tally the endpoint's jobs by state");
  CLI11_PARSE(cli, argc, argv);
  const std::optional<Mix> mix = ParseMix(flags.mix_name);
  if (!mix) {
    std::fprintf(stderr, "loadgen: --mix: unknown mix '%s'\n", flags.mix_name.c_str());
    return 2;
  }
  flags.mix = *mix;
  if ((flags.verify || !flags.lms_posts.empty()) && flags.lms_url.empty()) {
    std::fprintf(stderr, "loadgen: --verify and --lms-post need --lms\n");
    return 2;
  }
  if (flags.verify && flags.endpoints > 1) {
    std::fprintf(stderr, "loadgen: --verify checks one endpoint: not with --endpoints\n");
    return 2;
  }

  client::ClientOptions options;
  options.target = flags.target;
  options.call_timeout = absl::Seconds(60);
  auto client = client::Client::Connect(options);
  if (!client.ok()) {
    std::fprintf(stderr, "loadgen: %s\n", client.status().ToString().c_str());
    return 2;
  }
  if (flags.count) return CountStates(**client, flags);

  std::vector<std::unique_ptr<v1::Rebound::Stub>> stubs;
  for (int i = 0; i < flags.channels; ++i) {
    grpc::ChannelArguments args;
    // A channel of its own (own TCP connection) rather than a shared subchannel.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("rebound.bench.channel", i);
    stubs.push_back(v1::Rebound::NewStub(
        grpc::CreateCustomChannel(flags.target, grpc::InsecureChannelCredentials(), args)));
  }

  for (const std::string& path : flags.lms_posts) {
    auto posted = HttpFetch("POST", flags.lms_url + path, absl::Seconds(30));
    if (!posted.ok()) {
      std::fprintf(stderr, "loadgen: --lms-post: %s\n", posted.status().ToString().c_str());
      return 2;
    }
  }
  if (flags.mode != "batch") flags.batch = 1;
  const SteadyClock::time_point start = SteadyClock::now();
  const double cpu_before = ProcessCpuSeconds();
  // The submitter (and its stubs, which hold the channels) lives to the end of main: the last
  // call's completion is still unwinding on a gRPC thread when Run() returns.
  std::optional<Submitter> batches;
  std::optional<StreamSubmitter> streams;
  if (flags.mode == "stream") {
    streams.emplace(flags, std::move(stubs));
  } else {
    batches.emplace(flags, std::move(stubs));
  }
  const SubmitResult submitted = streams.has_value() ? streams->Run() : batches->Run();
  const double client_cpu_s = ProcessCpuSeconds() - cpu_before;

  nlohmann::json out = {
      {"mix", MixName(flags.mix)},
      {"endpoint", flags.endpoint},
      {"endpoints", flags.endpoints},
      {"jobs", flags.jobs},
      {"mode", flags.mode},
      {"batch", flags.batch},
      {"concurrency", flags.concurrency},
      {"window", flags.window},
      {"client_cpu_s", client_cpu_s},
      {"client_cpu_us_per_job",
       submitted.accepted > 0 ? client_cpu_s * 1e6 / static_cast<double>(submitted.accepted) : 0},
      {"accepted", submitted.accepted},
      {"deduplicated", submitted.deduplicated},
      {"rejected", submitted.rejected},
      {"batch_retries", submitted.batch_retries},
      {"submit_seconds", submitted.seconds},
      {"submit_rate", submitted.seconds > 0 ? submitted.accepted / submitted.seconds : 0},
      {"ack_ms_p50", Percentile(submitted.ack_ms, 0.50)},
      {"ack_ms_p99", Percentile(submitted.ack_ms, 0.99)},
  };
  if (!submitted.errors.empty()) out["errors"] = submitted.errors;
  bool failed = submitted.rejected != 0 || submitted.timed_out;
  if (submitted.timed_out) out["submit_timed_out"] = true;

  if (!flags.no_wait && !submitted.timed_out) {
    std::vector<v1::SyncState> pending = {v1::QUEUED, v1::RUNNING, v1::BLOCKED};
    if (flags.mix != Mix::kFar) pending.push_back(v1::WAITING_RETRY);
    const std::optional<double> complete = WaitUntilNone(**client, flags, pending, start);
    if (complete) {
      out["complete_seconds"] = *complete;
      out["completion_rate"] = submitted.accepted / *complete;
    } else {
      out["complete_timed_out"] = true;
      failed = true;
    }
  }
  if (!flags.lms_url.empty()) {
    auto totals = HttpFetch("GET", flags.lms_url + "/__stats?summary=1", absl::Seconds(30));
    if (totals.ok()) {
      const nlohmann::json parsed = nlohmann::json::parse(*totals, nullptr, false);
      if (!parsed.is_discarded() && parsed.contains("totals")) out["lms_totals"] = parsed["totals"];
    } else {
      out["lms_error"] = totals.status().ToString();
    }
  }
  if (flags.verify) {
    VerifyOptions v;
    v.endpoint = flags.endpoint;
    v.key_prefix = flags.key_prefix;
    v.jobs = flags.jobs;
    v.mix = flags.mix;
    v.lms_url = flags.lms_url;
    auto report = Verify(**client, v);
    if (report.ok()) {
      out["verify"] = report->ToJson();
      failed = failed || !report->ok();
    } else {
      out["verify_error"] = report.status().ToString();
      failed = true;
    }
  }
  std::printf("%s\n", out.dump().c_str());
  std::fflush(stdout);
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace rebound::bench

int main(int argc, char** argv) {
  return rebound::bench::RunWithCurl(&rebound::bench::Run, argc, argv);
}
