#include "client/ctl.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/security/credentials.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/client.h"
#include "client/jsonl.h"
#include "client/table.h"
#include "client/time_util.h"
#include "rebound/build_info.h"

namespace rebound::client {

int ExitCodeForStatus(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kExitUnavailable;
    default:
      return kExitRpcError;
  }
}

namespace {

// A --file's progress line is rewritten every this many answers (and at the last).
constexpr size_t kProgressEvery = 500;
// How many bad lines of a --file are shown before "... and N more".
constexpr size_t kMaxShownBadLines = 20;
// How much of the last response body `get` shows.
constexpr size_t kMaxShownBodyBytes = 200;

struct GlobalFlags {
  std::string target = "127.0.0.1:50051";
  std::string token;
  std::string tenant;
  std::string timeout = "30s";
  bool json = false;
  bool tls = false;
  std::string ca_file;
};

struct SubmitFlags {
  std::string endpoint;
  std::string method = "POST";
  std::string path;
  std::string query;
  std::vector<std::string> headers;
  std::string body;
  std::string body_file;
  std::string key;
  std::string ordering_key;
  std::vector<std::string> labels;
  std::string correlation_id;
  std::string policy;
  std::string priority;  // low, normal, high; empty: the policy's
  std::string deadline;
  bool wait = false;
  std::string wait_timeout = "60s";
  std::string file;
  int window = 256;  // jobs of the stream sent ahead of their answers
};

struct ListFlags {
  std::vector<std::string> states;
  std::string endpoint;
  std::string ordering_key;
  std::string label;
  int limit = 0;
  std::string page_token;
  bool all = false;
  std::string wait_reason;
};

struct EndpointFlags {
  std::string name;
  std::string until;     // pause: RFC 3339
  std::string duration;  // pause: --for
  std::string reason;
};

struct WatchFlags {
  std::string id;
  std::string timeout;  // empty: none
};

// What every command needs: its name (for messages), the global flags, the streams, a client.
struct Context {
  std::string command;
  GlobalFlags globals;
  std::ostream& out;
  std::ostream& err;
  std::unique_ptr<Client> client;
};

std::string CodeName(absl::StatusCode code) {
  std::string name = absl::StatusCodeToString(code);
  return name.empty() ? absl::StrCat("CODE_", static_cast<int>(code)) : name;
}

// "INVALID_ARGUMENT: request.path: ..."
std::string StatusText(const absl::Status& status) {
  return absl::StrCat(CodeName(status.code()), ": ", status.message());
}

// Prints the error of a call and returns its exit code.
int Fail(const Context& ctx, const absl::Status& status) {
  ctx.err << "reboundctl: " << ctx.command << ": " << ForTerminal(StatusText(status)) << "\n";
  return ExitCodeForStatus(status);
}

int Usage(const Context& ctx, absl::string_view message) {
  ctx.err << "reboundctl: " << ctx.command << ": " << message << "\n";
  return kExitUsage;
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;  // scripts see every field, even when zero
  std::string json;
  // Printing fails only for unresolvable Any fields, which the API does not use.
  const auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  assert(status.ok());
  (void)status;
  return json;
}

const std::string& StateName(v1::SyncState state) { return v1::SyncState_Name(state); }

absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag, absl::string_view text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", text, "' is not a positive duration (e.g. 250ms, 5s, 2m)"));
  }
  return d;
}

absl::StatusOr<std::string> ReadFile(absl::string_view flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read '", path, "': ", std::strerror(errno)));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// "key=value" with a non-empty key.
absl::StatusOr<std::pair<std::string, std::string>> ParseLabel(absl::string_view flag,
                                                               absl::string_view text) {
  const size_t eq = text.find('=');
  if (eq == absl::string_view::npos || eq == 0) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " '", text, "': expected key=value"));
  }
  return std::make_pair(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
}

absl::StatusOr<v1::SyncRequest> BuildRequest(const SubmitFlags& flags) {
  v1::SyncRequest request;
  request.set_idempotency_key(flags.key);
  request.set_endpoint(flags.endpoint);
  request.set_method(flags.method);
  request.set_path(flags.path);
  request.set_query(flags.query);
  for (const std::string& header : flags.headers) {
    const size_t colon = header.find(':');
    const absl::string_view name =
        colon == std::string::npos
            ? absl::string_view()
            : absl::StripAsciiWhitespace(absl::string_view(header).substr(0, colon));
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--header '", header, "': expected 'Name: value'"));
    }
    v1::Header* h = request.add_headers();
    h->set_name(std::string(name));
    h->set_value(
        std::string(absl::StripAsciiWhitespace(absl::string_view(header).substr(colon + 1))));
  }
  if (!flags.body_file.empty()) {
    absl::StatusOr<std::string> body = ReadFile("--body-file", flags.body_file);
    if (!body.ok()) return body.status();
    request.set_body(*std::move(body));
  } else {
    request.set_body(flags.body);
  }
  request.set_ordering_key(flags.ordering_key);
  for (const std::string& text : flags.labels) {
    absl::StatusOr<std::pair<std::string, std::string>> label = ParseLabel("--label", text);
    if (!label.ok()) return label.status();
    if (!request.mutable_labels()->insert({label->first, label->second}).second) {
      return absl::InvalidArgumentError(absl::StrCat("--label: '", label->first, "' given twice"));
    }
  }
  request.set_correlation_id(flags.correlation_id);
  request.set_policy(flags.policy);
  if (!flags.priority.empty()) {
    v1::Priority priority = v1::PRIORITY_UNSPECIFIED;
    if (!v1::Priority_Parse(absl::AsciiStrToUpper(flags.priority), &priority) ||
        priority == v1::PRIORITY_UNSPECIFIED) {
      return absl::InvalidArgumentError(
          absl::StrCat("--priority: '", flags.priority, "' is not low, normal or high"));
    }
    request.set_priority(priority);
  }
  if (!flags.deadline.empty()) {
    absl::StatusOr<absl::Time> deadline = ParseRfc3339(flags.deadline);
    if (!deadline.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--deadline: ", deadline.status().message()));
    }
    *request.mutable_deadline() = ToProtoTimestamp(*deadline);
  }
  return request;
}

// "j12 SUCCEEDED after 2 attempts (HTTP 200): <decision>"
std::string FinalLine(const v1::SyncJob& job) {
  std::string line =
      absl::StrCat(job.job_id(), " ", StateName(job.state()), " after ", job.attempt_count(),
                   job.attempt_count() == 1 ? " attempt" : " attempts");
  if (job.last_http_status() != 0) absl::StrAppend(&line, " (HTTP ", job.last_http_status(), ")");
  if (!job.last_decision().empty()) absl::StrAppend(&line, ": ", job.last_decision());
  return line;
}

// "CIRCUIT_OPEN until 2026-11-29T10:00:01Z", "ORDERING_BLOCKED behind j12"; "-" when the job does
// not wait.
std::string WaitText(const v1::SyncJob& job) {
  if (!job.has_wait()) return "-";
  const v1::JobWait& wait = job.wait();
  std::string text = v1::WaitReason_Name(wait.reason());
  if (wait.has_until()) absl::StrAppend(&text, " until ", FormatTimestamp(wait.until()));
  if (!wait.behind_job_id().empty()) absl::StrAppend(&text, " behind ", wait.behind_job_id());
  return text;
}

std::string EventLine(const v1::SyncEvent& event) {
  std::string line = absl::StrCat(FormatTimestamp(event.at()), " ", event.job_id(), " ",
                                  StateName(event.state()), " attempts=", event.attempt_count());
  if (event.last_http_status() != 0) absl::StrAppend(&line, " http=", event.last_http_status());
  if (event.has_next_attempt_at()) {
    absl::StrAppend(&line, " next=", FormatTimestamp(event.next_attempt_at()));
  }
  if (event.has_wait()) {
    absl::StrAppend(&line, " wait=", v1::WaitReason_Name(event.wait().reason()));
    if (event.wait().has_until()) {
      absl::StrAppend(&line, " until=", FormatTimestamp(event.wait().until()));
    }
    if (!event.wait().behind_job_id().empty()) {
      absl::StrAppend(&line, " behind=", event.wait().behind_job_id());
    }
  }
  if (!event.decision().empty()) absl::StrAppend(&line, " ", event.decision());
  return line;
}

std::string RequestLine(const v1::SyncRequest& request) {
  std::string line = absl::StrCat(request.method(), " ", request.path());
  if (!request.query().empty()) absl::StrAppend(&line, "?", request.query());
  return line;
}

std::string OrDash(absl::string_view text) { return text.empty() ? "-" : std::string(text); }

int SubmitOne(const Context& ctx, const SubmitFlags& flags) {
  if (flags.endpoint.empty() || flags.path.empty() || flags.key.empty()) {
    return Usage(ctx, "--endpoint, --path and --key are required (or --file)");
  }
  absl::StatusOr<v1::SyncRequest> request = BuildRequest(flags);
  if (!request.ok()) return Usage(ctx, request.status().message());
  absl::Duration wait_timeout;
  if (flags.wait) {
    absl::StatusOr<absl::Duration> parsed = ParseDurationFlag("--wait-timeout", flags.wait_timeout);
    if (!parsed.ok()) return Usage(ctx, parsed.status().message());
    wait_timeout = *parsed;
  }

  absl::StatusOr<v1::SubmitSyncResponse> response = ctx.client->Submit(*request);
  if (!response.ok()) return Fail(ctx, response.status());
  if (ctx.globals.json) {
    ctx.out << ToJson(*response) << "\n";
  } else {
    ctx.out << (response->deduplicated() ? "deduplicated " : "submitted ")
            << ForTerminal(response->job_id()) << " " << StateName(response->state()) << "\n";
  }
  if (!flags.wait) return kExitOk;
  ctx.out.flush();

  absl::StatusOr<v1::SyncJob> job = ctx.client->Await(response->job_id(), wait_timeout);
  if (!job.ok()) {
    const int code = Fail(ctx, job.status());
    // The job exists and runs on; only our wait ended.
    return job.status().code() == absl::StatusCode::kDeadlineExceeded ? kExitFailed : code;
  }
  ctx.out << (ctx.globals.json ? ToJson(*job) : ForTerminal(FinalLine(*job))) << "\n";
  return job->state() == v1::SUCCEEDED ? kExitOk : kExitFailed;
}

struct ItemOutcome {
  int line = 0;
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string message;
  v1::SubmitSyncResponse result;
};

int SubmitFile(const Context& ctx, const SubmitFlags& flags) {
  if (flags.window < 1) return Usage(ctx, "--window: must be at least 1");
  std::ifstream in(flags.file);
  if (!in) {
    return Usage(ctx,
                 absl::StrCat("--file: cannot read '", flags.file, "': ", std::strerror(errno)));
  }
  JsonlContents contents = ParseSyncRequestsJsonl(in, flags.file);
  if (in.bad()) return Usage(ctx, absl::StrCat("--file: error reading '", flags.file, "'"));
  if (!contents.errors.empty()) {
    const size_t shown = std::min(contents.errors.size(), kMaxShownBadLines);
    for (size_t i = 0; i < shown; ++i) Usage(ctx, contents.errors[i]);
    if (contents.errors.size() > shown) {
      Usage(ctx, absl::StrCat("... and ", contents.errors.size() - shown, " more bad lines"));
    }
    return Usage(ctx, absl::StrCat(contents.errors.size(), " bad line(s) in ", flags.file,
                                   "; nothing was sent"));
  }

  // Whole file validated: now send it over one SubmitSyncStream, `--window` jobs ahead of the
  // answers. Answers arrive in any order; the outcomes are listed in file order.
  std::vector<v1::SyncRequest> requests;
  std::vector<int> lines;
  requests.reserve(contents.requests.size());
  lines.reserve(contents.requests.size());
  for (NumberedRequest& item : contents.requests) {
    requests.push_back(std::move(item.request));
    lines.push_back(item.line);
  }
  const size_t total = requests.size();
  std::vector<std::optional<ItemOutcome>> answered(total);
  size_t sent = 0, created = 0, deduplicated = 0, rejected = 0;
  absl::Status stream_status = ctx.client->SubmitStream(
      requests, static_cast<size_t>(flags.window), [&](const v1::SubmitSyncStreamResponse& answer) {
        const uint64_t i = answer.sequence();
        if (i >= total || answered[i].has_value()) return;  // not one of ours: ignored
        ItemOutcome outcome;
        outcome.line = lines[i];
        outcome.code = static_cast<absl::StatusCode>(answer.code());
        outcome.message = answer.message();
        outcome.result = answer.result();
        if (outcome.code != absl::StatusCode::kOk) {
          ++rejected;
        } else if (answer.result().deduplicated()) {
          ++deduplicated;
        } else {
          ++created;
        }
        answered[i] = std::move(outcome);
        ++sent;
        if (sent % kProgressEvery == 0 || sent == total) {
          ctx.err << "\rsubmitted " << sent << "/" << total << " (" << created << " ok, "
                  << deduplicated << " deduplicated, " << rejected << " rejected)" << std::flush;
        }
      });
  std::vector<ItemOutcome> outcomes;
  outcomes.reserve(sent);
  for (std::optional<ItemOutcome>& outcome : answered) {
    if (outcome.has_value()) outcomes.push_back(*std::move(outcome));
  }
  if (!outcomes.empty()) ctx.err << "\n";

  if (ctx.globals.json) {
    nlohmann::json items = nlohmann::json::array();
    for (const ItemOutcome& outcome : outcomes) {
      nlohmann::json item = {{"line", outcome.line}, {"code", CodeName(outcome.code)}};
      if (outcome.code == absl::StatusCode::kOk) {
        item["job_id"] = outcome.result.job_id();
        item["state"] = StateName(outcome.result.state());
        item["deduplicated"] = outcome.result.deduplicated();
      } else {
        item["message"] = outcome.message;
      }
      items.push_back(std::move(item));
    }
    nlohmann::json summary = {{"file", flags.file},           {"total", total},
                              {"sent", outcomes.size()},      {"created", created},
                              {"deduplicated", deduplicated}, {"rejected", rejected},
                              {"items", std::move(items)}};
    ctx.out << summary.dump() << "\n";
  } else {
    ctx.out << "submitted " << outcomes.size() << "/" << total << " from " << flags.file << " ("
            << created << " ok, " << deduplicated << " deduplicated, " << rejected
            << " rejected)\n";
    for (const ItemOutcome& outcome : outcomes) {
      if (outcome.code == absl::StatusCode::kOk) continue;
      ctx.out << flags.file << ":" << outcome.line << ": " << CodeName(outcome.code) << ": "
              << ForTerminal(outcome.message) << "\n";
    }
  }
  if (!stream_status.ok()) {
    const int code = Fail(ctx, stream_status);
    ctx.err << "reboundctl: submit: stopped after " << outcomes.size() << "/" << total
            << " answers; submitting the file again is safe (idempotency keys deduplicate)\n";
    return code;
  }
  return rejected == 0 ? kExitOk : kExitRpcError;
}

void PrintJob(std::ostream& out, const v1::SyncJob& job) {
  const v1::SyncRequest& request = job.request();
  std::vector<std::string> labels;
  for (const auto& [key, value] : request.labels()) labels.push_back(absl::StrCat(key, "=", value));
  std::sort(labels.begin(), labels.end());  // map order is unspecified
  std::string response = "-";
  if (!job.last_response_body().empty()) {
    const absl::string_view body = job.last_response_body();
    response = absl::StrCat("(", body.size(), " bytes) ",
                            absl::CHexEscape(body.substr(0, kMaxShownBodyBytes)),
                            body.size() > kMaxShownBodyBytes ? "..." : "");
  }
  Table fields({"", ""});
  fields.AddRow({"job", job.job_id()});
  fields.AddRow({"state", StateName(job.state())});
  fields.AddRow({"wait", WaitText(job)});
  fields.AddRow({"tenant", OrDash(job.tenant())});
  fields.AddRow({"endpoint", request.endpoint()});
  fields.AddRow({"request", RequestLine(request)});
  fields.AddRow({"idempotency key", OrDash(request.idempotency_key())});
  fields.AddRow({"ordering key", OrDash(request.ordering_key())});
  fields.AddRow({"correlation id", OrDash(request.correlation_id())});
  fields.AddRow({"policy", OrDash(request.policy())});
  fields.AddRow({"labels", OrDash(absl::StrJoin(labels, ", "))});
  fields.AddRow({"deadline", FormatTimestamp(request.deadline())});
  fields.AddRow({"created", FormatTimestamp(job.created_at())});
  fields.AddRow({"updated", FormatTimestamp(job.updated_at())});
  fields.AddRow({"next attempt", FormatTimestamp(job.next_attempt_at())});
  fields.AddRow({"attempts", job.throttled_attempts() == 0
                                 ? absl::StrCat(job.attempt_count())
                                 : absl::StrCat(job.attempt_count(), " (", job.throttled_attempts(),
                                                " throttled in this budget)")});
  fields.AddRow(
      {"last http", job.last_http_status() == 0 ? "-" : absl::StrCat(job.last_http_status())});
  fields.AddRow({"last decision", OrDash(job.last_decision())});
  fields.AddRow({"last response", response});
  std::ostringstream text;
  fields.Print(text);
  // Drop the (empty) header line of the key/value table.
  out << text.str().substr(text.str().find('\n') + 1);

  if (job.attempts().empty()) return;
  out << "\n";
  Table attempts({"#", "STARTED", "DURATION", "STATUS", "ERROR", "CLASSIFICATION", "DECISION"});
  for (const v1::Attempt& attempt : job.attempts()) {
    attempts.AddRow({absl::StrCat(attempt.number()), FormatTimestamp(attempt.started_at()),
                     FormatProtoDuration(attempt.duration()),
                     attempt.http_status() == 0 ? "-" : absl::StrCat(attempt.http_status()),
                     OrDash(attempt.transport_error()), OrDash(attempt.classification()),
                     OrDash(attempt.decision())});
  }
  attempts.Print(out);
}

int GetJob(const Context& ctx, const std::string& id) {
  absl::StatusOr<v1::SyncJob> job = ctx.client->Get(id);
  if (!job.ok()) return Fail(ctx, job.status());
  if (ctx.globals.json) {
    ctx.out << ToJson(*job) << "\n";
  } else {
    PrintJob(ctx.out, *job);
  }
  return kExitOk;
}

int WatchJob(const Context& ctx, const WatchFlags& flags) {
  absl::Duration timeout = absl::InfiniteDuration();
  if (!flags.timeout.empty()) {
    absl::StatusOr<absl::Duration> parsed = ParseDurationFlag("--wait-timeout", flags.timeout);
    if (!parsed.ok()) return Usage(ctx, parsed.status().message());
    timeout = *parsed;
  }
  v1::SyncState last = v1::SYNC_STATE_UNSPECIFIED;
  absl::Status status = ctx.client->Watch(
      flags.id,
      [&ctx, &last](const v1::SyncEvent& event) {
        last = event.state();
        ctx.out << (ctx.globals.json ? ToJson(event) : ForTerminal(EventLine(event))) << std::endl;
        return !IsTerminal(last);
      },
      timeout);
  if (!status.ok()) {
    const int code = Fail(ctx, status);
    return status.code() == absl::StatusCode::kDeadlineExceeded && !flags.timeout.empty()
               ? kExitFailed
               : code;
  }
  if (!IsTerminal(last)) {
    ctx.err << "reboundctl: watch: the stream ended before " << flags.id << " was terminal\n";
    return kExitFailed;
  }
  return last == v1::SUCCEEDED ? kExitOk : kExitFailed;
}

int ListJobs(const Context& ctx, const ListFlags& flags) {
  v1::ListSyncsRequest request;
  for (const std::string& text : flags.states) {
    v1::SyncState state;
    if (!v1::SyncState_Parse(absl::AsciiStrToUpper(text), &state) ||
        state == v1::SYNC_STATE_UNSPECIFIED) {
      return Usage(ctx, absl::StrCat("--state '", text,
                                     "': not a job state (QUEUED, BLOCKED, "
                                     "RUNNING, WAITING_RETRY, SUCCEEDED, "
                                     "FAILED, EXHAUSTED, CANCELLED)"));
    }
    request.add_states(state);
  }
  request.set_endpoint(flags.endpoint);
  request.set_ordering_key(flags.ordering_key);
  if (!flags.label.empty()) {
    absl::StatusOr<std::pair<std::string, std::string>> label = ParseLabel("--label", flags.label);
    if (!label.ok()) return Usage(ctx, label.status().message());
    request.set_label(flags.label);
  }
  if (flags.limit < 0) return Usage(ctx, "--limit: must not be negative");
  request.set_page_size(flags.limit);
  request.set_page_token(flags.page_token);
  if (!flags.wait_reason.empty()) {
    v1::WaitReason reason;
    if (!v1::WaitReason_Parse(absl::AsciiStrToUpper(flags.wait_reason), &reason) ||
        reason == v1::WAIT_REASON_UNSPECIFIED) {
      return Usage(ctx, absl::StrCat("--wait-reason '", flags.wait_reason,
                                     "': not a wait reason (BACKOFF, RETRY_AFTER, "
                                     "ENDPOINT_PAUSED, CIRCUIT_OPEN, RATE_LIMITED, "
                                     "RETRY_BUDGET, ORDERING_BLOCKED, OPERATOR_PAUSED)"));
    }
    request.set_wait_reason(reason);
  }

  Table table({"JOB", "STATE", "WAIT", "ENDPOINT", "REQUEST", "ORDERING KEY", "ATTEMPTS", "HTTP",
               "UPDATED"});
  std::string next_page_token;
  while (true) {
    absl::StatusOr<v1::ListSyncsResponse> response = ctx.client->List(request);
    if (!response.ok()) return Fail(ctx, response.status());
    for (const v1::SyncJob& job : response->jobs()) {
      if (ctx.globals.json) {
        ctx.out << ToJson(job) << "\n";
        continue;
      }
      table.AddRow({job.job_id(), StateName(job.state()), WaitText(job), job.request().endpoint(),
                    RequestLine(job.request()), OrDash(job.request().ordering_key()),
                    absl::StrCat(job.attempt_count()),
                    job.last_http_status() == 0 ? "-" : absl::StrCat(job.last_http_status()),
                    FormatTimestamp(job.updated_at())});
    }
    next_page_token = response->next_page_token();
    if (!flags.all || next_page_token.empty()) break;
    if (next_page_token == request.page_token()) {
      return Fail(ctx, absl::InternalError("the server returned the same page token twice"));
    }
    request.set_page_token(next_page_token);
  }
  if (!ctx.globals.json) table.Print(ctx.out);
  if (!next_page_token.empty()) {
    ctx.err << "more jobs: run again with --all, or with --page-token "
            << ForTerminal(next_page_token) << "\n";
  }
  return kExitOk;
}

int CancelOrReplay(const Context& ctx, const std::string& id, bool cancel) {
  absl::StatusOr<v1::SyncJob> job = cancel ? ctx.client->Cancel(id) : ctx.client->Replay(id);
  if (!job.ok()) return Fail(ctx, job.status());
  if (ctx.globals.json) {
    ctx.out << ToJson(*job) << "\n";
  } else {
    ctx.out << (cancel ? "cancelled " : "replayed ") << ForTerminal(job->job_id()) << " "
            << StateName(job->state()) << "\n";
  }
  return kExitOk;
}

// "CLOSED", "OPEN", ...; "off" when the endpoint has no breaker.
std::string CircuitText(const v1::EndpointStatus& s) {
  return s.circuit_enabled() ? v1::CircuitState_Name(s.circuit()) : "off";
}

// "2026-11-29T04:00:00Z (cause)", with the throttle backoff's level when it has one.
std::string PausedText(const v1::EndpointStatus& s) {
  std::string text = "-";
  if (s.has_paused_until()) {
    text = FormatTimestamp(s.paused_until());
    if (!s.pause_cause().empty()) absl::StrAppend(&text, " (", s.pause_cause(), ")");
  }
  if (s.throttle_level() > 0) absl::StrAppend(&text, " throttle level ", s.throttle_level());
  return text;
}

// "until 2026-11-29T04:00:00Z: LMS maintenance", "until resumed: ..."; "-" when not paused.
std::string OperatorPauseText(const v1::EndpointStatus& s) {
  if (!s.operator_paused()) return "-";
  std::string text = s.has_operator_paused_until()
                         ? absl::StrCat("until ", FormatTimestamp(s.operator_paused_until()))
                         : "until resumed";
  if (!s.operator_reason().empty()) absl::StrAppend(&text, ": ", s.operator_reason());
  return text;
}

// "7 CIRCUIT_OPEN, 2 BACKOFF"; "-" when none waits.
std::string WaitingText(const v1::EndpointStatus& s) {
  std::vector<std::string> parts;
  for (const v1::WaitCount& w : s.waiting()) {
    parts.push_back(absl::StrCat(w.count(), " ", v1::WaitReason_Name(w.reason())));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, ", ");
}

// "8 in flight, 123.5 left (low 150)"; "-" when the quota does not pace the endpoint.
std::string PacingText(const v1::EndpointStatus& s) {
  if (!s.pacing_active()) return "-";
  std::string text = absl::StrCat(s.paced_in_flight(), " in flight");
  if (s.has_quota_remaining()) {
    absl::StrAppend(&text, ", ", absl::SixDigits(s.quota_remaining()), " left (low ",
                    absl::SixDigits(s.quota_low_water()), ")");
  }
  if (s.has_paced_until()) {
    absl::StrAppend(&text, ", next start ", FormatTimestamp(s.paced_until()));
  }
  return text;
}

// "district: 3 scopes, busiest d7 9800/10000 until 2026-12-02T00:00:00Z, 2/8 in flight"; "-"
// when the endpoint names no budget.
std::string BudgetsText(const v1::EndpointStatus& s) {
  std::vector<std::string> parts;
  for (const v1::BudgetStatus& b : s.budgets()) {
    std::string text = b.name();
    if (!b.split_by().empty()) absl::StrAppend(&text, " by ", b.split_by());
    absl::StrAppend(&text, ": ", b.scope_count(), b.scope_count() == 1 ? " scope" : " scopes");
    if (b.busiest_size() > 0) {
      const v1::BudgetScope& top = b.busiest(0);
      absl::StrAppend(&text, ", busiest ", top.scope().empty() ? "\"\"" : top.scope());
      if (b.quota_limit() > 0) {
        absl::StrAppend(&text, " ", top.quota_used(), "/", b.quota_limit(), " until ",
                        FormatTimestamp(b.period_end()));
      }
      if (b.max_in_flight() > 0) {
        absl::StrAppend(&text, ", ", top.in_flight(), "/", b.max_in_flight(), " in flight");
      }
      if (top.has_tokens()) absl::StrAppend(&text, ", ", absl::SixDigits(top.tokens()), " tokens");
    }
    parts.push_back(std::move(text));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, "; ");
}

void PrintEndpoints(std::ostream& out, const v1::GetEndpointStatusResponse& response) {
  Table table({"ENDPOINT", "CIRCUIT", "NEXT PROBE", "PAUSED UNTIL", "OPERATOR PAUSE",
               "IN FLIGHT/ALLOWED/MAX", "TOKENS", "RETRIES/BUDGET", "SLOW START", "PACING",
               "WAITING", "OLDEST WAIT", "BUDGETS"});
  for (const v1::EndpointStatus& s : response.endpoints()) {
    table.AddRow({s.name(), CircuitText(s), FormatTimestamp(s.next_probe_at()), PausedText(s),
                  OperatorPauseText(s),
                  absl::StrCat(s.in_flight(), "/", s.allowed_in_flight(), "/", s.max_in_flight()),
                  s.rate() == 0 ? "-"
                                : absl::StrCat(absl::SixDigits(s.tokens()), "/", s.burst(), " @",
                                               absl::SixDigits(s.rate()), "/s"),
                  s.retry_budget_enabled()
                      ? absl::StrCat(s.retries_in_flight(), "/", s.retry_budget())
                      : "off",
                  s.has_slow_start_until()
                      ? absl::StrCat(static_cast<int>(s.slow_start_level() * 100 + 0.5), "%")
                      : "-",
                  PacingText(s), WaitingText(s), FormatProtoDuration(s.oldest_waiting_age()),
                  BudgetsText(s)});
  }
  table.Print(out);
}

int ShowEndpoints(const Context& ctx, const EndpointFlags& flags) {
  absl::StatusOr<v1::GetEndpointStatusResponse> response =
      ctx.client->GetEndpointStatus(flags.name);
  if (!response.ok()) return Fail(ctx, response.status());
  if (ctx.globals.json) {
    ctx.out << ToJson(*response) << "\n";
  } else {
    PrintEndpoints(ctx.out, *response);
  }
  return kExitOk;
}

// Prints an endpoint's status after a pause or resume: "paused canvas until resumed: ...".
int EndpointChanged(const Context& ctx, const absl::StatusOr<v1::EndpointStatus>& status) {
  if (!status.ok()) return Fail(ctx, status.status());
  if (ctx.globals.json) {
    ctx.out << ToJson(*status) << "\n";
  } else if (status->operator_paused()) {
    ctx.out << "paused " << ForTerminal(status->name()) << " "
            << ForTerminal(OperatorPauseText(*status)) << "\n";
  } else {
    ctx.out << "resumed " << ForTerminal(status->name()) << "\n";
  }
  return kExitOk;
}

int PauseEndpoint(const Context& ctx, const EndpointFlags& flags) {
  v1::PauseEndpointRequest request;
  request.set_name(flags.name);
  request.set_reason(flags.reason);
  if (!flags.until.empty()) {
    absl::StatusOr<absl::Time> until = ParseRfc3339(flags.until);
    if (!until.ok()) {
      return Usage(ctx, absl::StrCat("--until: ", until.status().message()));
    }
    *request.mutable_until() = ToProtoTimestamp(*until);
  }
  if (!flags.duration.empty()) {
    absl::StatusOr<absl::Duration> length = ParseDurationFlag("--for", flags.duration);
    if (!length.ok()) return Usage(ctx, length.status().message());
    *request.mutable_duration() = ToProtoDuration(*length);
  }
  return EndpointChanged(ctx, ctx.client->PauseEndpoint(request));
}

// grpc.health.v1 Check: exit 0 only when SERVING, so it can serve as a container HEALTHCHECK or a
// probe's exec command.
int CheckHealth(const Context& ctx, const std::string& service) {
  using ::grpc::health::v1::HealthCheckResponse;
  const std::string who =
      service.empty() ? ctx.globals.target : absl::StrCat(ctx.globals.target, " ", service);
  absl::StatusOr<HealthCheckResponse::ServingStatus> status = ctx.client->CheckHealth(service);
  if (!status.ok()) {
    if (status.status().code() == absl::StatusCode::kNotFound) {
      return Fail(ctx,
                  absl::NotFoundError(absl::StrCat(
                      "the server at ", ctx.globals.target, " has no service '", service,
                      "' (ask for the whole server with no --service, or rebound.v1.Rebound)")));
    }
    return Fail(ctx, status.status());
  }
  const std::string& name = HealthCheckResponse::ServingStatus_Name(*status);
  if (ctx.globals.json) {
    ctx.out << nlohmann::json{{"target", ctx.globals.target},
                              {"service", service},
                              {"status", name}}
                   .dump()
            << "\n";
  } else {
    ctx.out << who << " " << name << "\n";
  }
  if (*status == HealthCheckResponse::SERVING) return kExitOk;
  ctx.err << "reboundctl: health: " << who << " is " << name << ", not SERVING\n";
  return kExitFailed;
}

}  // namespace

int RunReboundctl(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{
      "Submit, inspect and manage Rebound sync jobs.\n"
      "Exit codes: 0 ok, 1 the job (or wait, or health) did not succeed, 2 usage error, "
      "3 the server answered with an error, 4 the server could not be reached.",
      "reboundctl"};
  app.require_subcommand(1);
  app.set_version_flag("--version", absl::StrCat("reboundctl ", build_info::kVersion, " (revision ",
                                                 build_info::kRevision, ")"));
  app.fallthrough();  // global flags may follow the subcommand
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return absl::StrCat("reboundctl: ", e.what(), "\nRun with --help for more information.\n");
  });

  GlobalFlags globals;
  app.add_option("--target", globals.target, "gRPC target of the Rebound server")
      ->envname("REBOUND_TARGET")
      ->capture_default_str();
  app.add_option("--token", globals.token, "bearer token (prefer the environment variable)")
      ->envname("REBOUND_TOKEN");
  app.add_option("--tenant", globals.tenant, "tenant, sent as x-rebound-tenant")
      ->envname("REBOUND_TENANT");
  app.add_option("--timeout", globals.timeout, "deadline of each call, e.g. 500ms, 10s")
      ->capture_default_str();
  app.add_flag("--json", globals.json, "print results as protobuf JSON, one document per line");
  app.add_flag("--tls", globals.tls, "use TLS, trusting the system's root certificates")
      ->envname("REBOUND_TLS");
  app.add_option("--ca-file", globals.ca_file, "use TLS, trusting the CA certificates in F (PEM)")
      ->envname("REBOUND_CA_FILE");

  SubmitFlags submit_flags;
  CLI::App* submit =
      app.add_subcommand("submit", "submit one job from flags, or many from a JSONL --file");
  // The flags that describe one job; --file excludes them all.
  std::vector<CLI::Option*> single_job_options = {
      submit->add_option("--endpoint", submit_flags.endpoint, "configured endpoint name"),
      submit->add_option("--method", submit_flags.method, "GET, POST, PUT, PATCH or DELETE")
          ->capture_default_str(),
      submit->add_option("--path", submit_flags.path, "path below the endpoint's base URL"),
      submit->add_option("--query", submit_flags.query, "query string without '?'"),
      submit->add_option("--header", submit_flags.headers, "'Name: value' (repeatable)"),
  };
  CLI::Option* body = submit->add_option("--body", submit_flags.body, "request body");
  CLI::Option* body_file =
      submit->add_option("--body-file", submit_flags.body_file, "read the request body from F");
  body->excludes(body_file);
  single_job_options.insert(
      single_job_options.end(),
      {body, body_file, submit->add_option("--key", submit_flags.key, "idempotency key"),
       submit->add_option("--ordering-key", submit_flags.ordering_key,
                          "jobs with one ordering key run one at a time, in order"),
       submit->add_option("--label", submit_flags.labels, "key=value (repeatable)"),
       submit->add_option("--correlation-id", submit_flags.correlation_id, "correlation id"),
       submit->add_option("--policy", submit_flags.policy, "named retry policy"),
       submit->add_option("--priority", submit_flags.priority,
                          "low, normal or high (default: the policy's)"),
       submit->add_option("--deadline", submit_flags.deadline,
                          "RFC 3339 time after which no attempt starts")});
  CLI::Option* wait = submit->add_flag("--wait", submit_flags.wait,
                                       "wait until the job is terminal; exit 0 only if SUCCEEDED");
  single_job_options.push_back(wait);
  submit->add_option("--wait-timeout", submit_flags.wait_timeout, "how long --wait waits")
      ->capture_default_str()
      ->needs(wait);
  CLI::Option* file = submit->add_option(
      "--file", submit_flags.file,
      "JSONL file, one SyncRequest per line in the protobuf JSON mapping (body in base64); "
      "the whole file is checked before anything is sent");
  for (CLI::Option* option : single_job_options) file->excludes(option);
  submit
      ->add_option("--window", submit_flags.window,
                   "jobs sent ahead of their answers on the SubmitSyncStream")
      ->capture_default_str()
      ->needs(file);

  std::string job_id;
  CLI::App* get = app.add_subcommand("get", "show a job and its attempts");
  get->add_option("id", job_id, "job id")->required();

  WatchFlags watch_flags;
  CLI::App* watch = app.add_subcommand(
      "watch", "print the job's state changes until it is terminal; exit 0 only if SUCCEEDED");
  watch->add_option("id", watch_flags.id, "job id")->required();
  watch->add_option("--wait-timeout", watch_flags.timeout,
                    "give up after this long (default: "
                    "never)");

  ListFlags list_flags;
  CLI::App* list = app.add_subcommand("list", "list jobs, newest first");
  list->add_option("--state", list_flags.states, "only these states (repeatable)");
  list->add_option("--endpoint", list_flags.endpoint, "only this endpoint");
  list->add_option("--ordering-key", list_flags.ordering_key, "only this ordering key");
  list->add_option("--label", list_flags.label, "only jobs with this key=value label");
  list->add_option("--limit", list_flags.limit, "jobs per page (0: the server's default)");
  list->add_option("--page-token", list_flags.page_token, "continue a previous listing");
  list->add_flag("--all", list_flags.all, "follow page tokens to the end");
  list->add_option("--wait-reason", list_flags.wait_reason,
                   "only jobs waiting for this reason now (e.g. CIRCUIT_OPEN, BACKOFF)");

  EndpointFlags endpoint_flags;
  CLI::App* endpoints = app.add_subcommand(
      "endpoints", "show the protection state of every endpoint, or of NAME; pause or resume one");
  endpoints->add_option("name", endpoint_flags.name, "endpoint name (default: every endpoint)");
  endpoints->require_subcommand(0, 1);
  CLI::App* pause = endpoints->add_subcommand(
      "pause",
      "hold an endpoint's jobs (OPERATOR_PAUSED) until --until, for --for, or until "
      "resumed; survives a restart");
  pause->add_option("name", endpoint_flags.name, "endpoint name")->required();
  CLI::Option* until =
      pause->add_option("--until", endpoint_flags.until, "RFC 3339 time the pause ends");
  pause->add_option("--for", endpoint_flags.duration, "how long the pause lasts, e.g. 2h")
      ->excludes(until);
  pause->add_option("--reason", endpoint_flags.reason, "why, shown with the endpoint's status")
      ->required();
  CLI::App* resume = endpoints->add_subcommand("resume", "lift an operator pause");
  resume->add_option("name", endpoint_flags.name, "endpoint name")->required();

  CLI::App* cancel = app.add_subcommand("cancel", "cancel a job that is not terminal");
  cancel->add_option("id", job_id, "job id")->required();
  CLI::App* replay =
      app.add_subcommand("replay", "put a FAILED or EXHAUSTED job back in the queue");
  replay->add_option("id", job_id, "job id")->required();

  std::string health_service;
  CLI::App* health = app.add_subcommand(
      "health", "grpc.health.v1 Check of the server; exit 0 only if SERVING (1 if not)");
  health->add_option("--service", health_service,
                     "service name to ask about (default: the server as a whole; the server "
                     "also answers rebound.v1.Rebound)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help is a ParseError too, with exit code 0.
    return app.exit(e, out, err) == 0 ? kExitOk : kExitUsage;
  }

  CLI::App* command = app.get_subcommands().front();
  Context ctx{command->get_name(), globals, out, err, nullptr};
  for (CLI::App* sub : command->get_subcommands())
    absl::StrAppend(&ctx.command, " ", sub->get_name());
  absl::StatusOr<absl::Duration> timeout = ParseDurationFlag("--timeout", globals.timeout);
  if (!timeout.ok()) return Usage(ctx, timeout.status().message());
  ClientOptions options;
  options.target = globals.target;
  options.bearer_token = globals.token;
  options.tenant = globals.tenant;
  options.call_timeout = *timeout;
  if (globals.tls || !globals.ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    if (!globals.ca_file.empty()) {
      absl::StatusOr<std::string> roots = ReadFile("--ca-file", globals.ca_file);
      if (!roots.ok()) return Usage(ctx, roots.status().message());
      ssl.pem_root_certs = *std::move(roots);
    }
    options.credentials = grpc::SslCredentials(ssl);
  }
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  if (!client.ok()) return Usage(ctx, client.status().message());
  ctx.client = *std::move(client);

  if (command == submit) {
    return submit_flags.file.empty() ? SubmitOne(ctx, submit_flags) : SubmitFile(ctx, submit_flags);
  }
  if (command == get) return GetJob(ctx, job_id);
  if (command == watch) return WatchJob(ctx, watch_flags);
  if (command == list) return ListJobs(ctx, list_flags);
  if (command == cancel) return CancelOrReplay(ctx, job_id, /*cancel=*/true);
  if (command == replay) return CancelOrReplay(ctx, job_id, /*cancel=*/false);
  if (command == health) return CheckHealth(ctx, health_service);
  if (command == endpoints) {
    if (pause->parsed()) return PauseEndpoint(ctx, endpoint_flags);
    if (resume->parsed()) {
      return EndpointChanged(ctx, ctx.client->ResumeEndpoint(endpoint_flags.name));
    }
    return ShowEndpoints(ctx, endpoint_flags);
  }
  // require_subcommand(1) leaves no other case.
  return Usage(ctx, "unknown command");
}

}  // namespace rebound::client
