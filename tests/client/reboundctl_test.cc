// reboundctl as a real child process against the fake server.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "rebound/build_info.h"
#include "rebound/v1/rebound.pb.h"
#include "tests/client/fake_rebound.h"
#include "tests/client/subprocess.h"

namespace rebound::client {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

constexpr int kOk = 0, kFailed = 1, kUsage = 2, kRpcError = 3, kUnavailable = 4;

class ReboundctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(server_.port(), 0);
    std::string dir = "/tmp/reboundctl_test_XXXXXX";
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    for (const std::string& file : files_) std::remove(file.c_str());
    ::rmdir(dir_.c_str());
  }

  // Runs reboundctl against the fake server.
  ProcessResult Run(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {REBOUNDCTL_BIN, "--target", server_.target()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv);
  }

  std::string WriteFile(const std::string& name, const std::string& contents) {
    const std::string path = absl::StrCat(dir_, "/", name);
    std::ofstream(path) << contents;
    files_.push_back(path);
    return path;
  }

  static std::string JsonLine(const std::string& key) {
    return absl::StrCat(R"({"idempotencyKey":")", key,
                        R"(","endpoint":"canvas","method":"POST","path":"/api/v1/grades"})", "\n");
  }

  static v1::SyncJob Job(const std::string& id, v1::SyncState state) {
    v1::SyncJob job;
    job.set_job_id(id);
    job.set_state(state);
    job.set_attempt_count(2);
    job.set_last_http_status(state == v1::SUCCEEDED ? 200 : 400);
    job.mutable_request()->set_endpoint("canvas");
    job.mutable_request()->set_method("POST");
    job.mutable_request()->set_path("/api/v1/grades");
    return job;
  }

  FakeServer server_;
  FakeRebound& fake_ = server_.fake();
  std::string dir_;
  std::vector<std::string> files_;
};

TEST_F(ReboundctlTest, SubmitPrintsTheJobIdAndSendsEveryField) {
  v1::SubmitSyncResponse answer;
  answer.set_job_id("j12");
  answer.set_state(v1::QUEUED);
  fake_.SetSubmitAnswer(answer);

  const ProcessResult r = Run({"submit",
                               "--endpoint",
                               "canvas",
                               "--method",
                               "PUT",
                               "--path",
                               "/api/v1/grades",
                               "--query",
                               "a=1",
                               "--header",
                               "X-Course: 42",
                               "--header",
                               "X-Term:fall ",
                               "--body",
                               "{}",
                               "--key",
                               "k1",
                               "--ordering-key",
                               "course-42",
                               "--label",
                               "course=42",
                               "--label",
                               "term=fall",
                               "--correlation-id",
                               "c-1",
                               "--policy",
                               "gentle",
                               "--priority",
                               "high",
                               "--deadline",
                               "2026-11-29T10:00:00Z"});

  EXPECT_EQ(r.exit_code, kOk) << r.err;
  EXPECT_EQ(r.out, "submitted j12 QUEUED\n");
  ASSERT_EQ(fake_.submitted().size(), 1u);
  const v1::SyncRequest sent = fake_.submitted()[0];
  EXPECT_EQ(sent.endpoint(), "canvas");
  EXPECT_EQ(sent.method(), "PUT");
  EXPECT_EQ(sent.path(), "/api/v1/grades");
  EXPECT_EQ(sent.query(), "a=1");
  ASSERT_EQ(sent.headers_size(), 2);
  EXPECT_EQ(sent.headers(0).name(), "X-Course");
  EXPECT_EQ(sent.headers(0).value(), "42");
  EXPECT_EQ(sent.headers(1).value(), "fall");
  EXPECT_EQ(sent.body(), "{}");
  EXPECT_EQ(sent.idempotency_key(), "k1");
  EXPECT_EQ(sent.ordering_key(), "course-42");
  EXPECT_EQ(sent.labels().at("course"), "42");
  EXPECT_EQ(sent.labels().at("term"), "fall");
  EXPECT_EQ(sent.correlation_id(), "c-1");
  EXPECT_EQ(sent.policy(), "gentle");
  EXPECT_EQ(sent.priority(), v1::HIGH);
  EXPECT_EQ(sent.deadline().seconds(), 1795946400);
}

TEST_F(ReboundctlTest, SubmitRefusesAPriorityItDoesNotKnow) {
  const ProcessResult r = Run({"submit", "--endpoint", "canvas", "--path", "/api/v1/grades",
                               "--key", "k1", "--priority", "urgent"});
  EXPECT_EQ(r.exit_code, kUsage) << r.err;
  EXPECT_THAT(r.err, HasSubstr("--priority: 'urgent' is not low, normal or high"));
  EXPECT_TRUE(fake_.submitted().empty());
}

TEST_F(ReboundctlTest, SubmitSaysDeduplicatedForAnExistingJob) {
  v1::SubmitSyncResponse answer;
  answer.set_job_id("j12");
  answer.set_state(v1::SUCCEEDED);
  answer.set_deduplicated(true);
  fake_.SetSubmitAnswer(answer);

  const ProcessResult r =
      Run({"submit", "--endpoint", "canvas", "--path", "/api/v1/grades", "--key", "k1"});

  EXPECT_EQ(r.exit_code, kOk) << r.err;
  EXPECT_EQ(r.out, "deduplicated j12 SUCCEEDED\n");
  EXPECT_EQ(fake_.submitted()[0].method(), "POST");  // the default
}

TEST_F(ReboundctlTest, SubmitReadsTheBodyFromAFile) {
  const std::string body = WriteFile("body.json", "{\"grade\": \"A\"}\n");

  const ProcessResult r = Run({"submit", "--endpoint", "canvas", "--path", "/api/v1/grades",
                               "--key", "k1", "--body-file", body});

  EXPECT_EQ(r.exit_code, kOk) << r.err;
  ASSERT_EQ(fake_.submitted().size(), 1u);
  EXPECT_EQ(fake_.submitted()[0].body(), "{\"grade\": \"A\"}\n");
}

TEST_F(ReboundctlTest, SubmitJsonOutputIsTheResponseAsProtobufJson) {
  const ProcessResult r =
      Run({"--json", "submit", "--endpoint", "canvas", "--path", "/api/v1/grades", "--key", "k1"});

  ASSERT_EQ(r.exit_code, kOk) << r.err;
  v1::SubmitSyncResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r.out;
  EXPECT_EQ(parsed.job_id(), "j1");
  EXPECT_EQ(parsed.state(), v1::QUEUED);
}

TEST_F(ReboundctlTest, SubmitWaitPrintsTheFinalStateAndExitsZeroOnSuccess) {
  fake_.SetWatch(
      {Event("j1", v1::QUEUED, 0), Event("j1", v1::RUNNING, 1), Event("j1", v1::SUCCEEDED, 2)},
      /*hold_open=*/false);
  fake_.AddJob(Job("j1", v1::SUCCEEDED));

  const ProcessResult r = Run({"submit", "--endpoint", "canvas", "--path", "/api/v1/grades",
                               "--key", "k1", "--wait", "--wait-timeout", "30s"});

  EXPECT_EQ(r.exit_code, kOk) << r.err;
  EXPECT_EQ(r.out, "submitted j1 QUEUED\nj1 SUCCEEDED after 2 attempts (HTTP 200)\n");
}

TEST_F(ReboundctlTest, SubmitWaitExitsOneWhenTheJobFails) {
  fake_.SetWatch({Event("j1", v1::RUNNING, 1), Event("j1", v1::FAILED, 2)}, /*hold_open=*/false);
  fake_.AddJob(Job("j1", v1::FAILED));

  const ProcessResult r =
      Run({"submit", "--endpoint", "canvas", "--path", "/api/v1/grades", "--key", "k1", "--wait"});

  EXPECT_EQ(r.exit_code, kFailed) << r.err;
  EXPECT_THAT(r.out, HasSubstr("j1 FAILED after 2 attempts (HTTP 400)"));
}

TEST_F(ReboundctlTest, SubmitWaitExitsOneWhenTheWaitTimesOut) {
  fake_.SetWatch({Event("j1", v1::RUNNING, 1)}, /*hold_open=*/true);

  const ProcessResult r = Run({"submit", "--endpoint", "canvas", "--path", "/api/v1/grades",
                               "--key", "k1", "--wait", "--wait-timeout", "300ms"});

  EXPECT_EQ(r.exit_code, kFailed) << r.err;
  EXPECT_THAT(r.err, HasSubstr("reboundctl: submit: DEADLINE_EXCEEDED: j1 not terminal"));
}

TEST_F(ReboundctlTest, ServerErrorIsPrintedWithItsCodeAndExitsThree) {
  fake_.FailAllWith(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "request.path: must start with an allowed prefix"));

  const ProcessResult r =
      Run({"submit", "--endpoint", "canvas", "--path", "/etc/passwd", "--key", "k1"});

  EXPECT_EQ(r.exit_code, kRpcError);
  EXPECT_EQ(r.err,
            "reboundctl: submit: INVALID_ARGUMENT: request.path: must start with an allowed "
            "prefix\n");
  EXPECT_THAT(r.out, IsEmpty());
}

TEST_F(ReboundctlTest, NothingListeningExitsFour) {
  ClosedPort closed;
  ASSERT_NE(closed.port(), 0);

  const ProcessResult r = RunProcess({REBOUNDCTL_BIN, "--target", closed.target(), "get", "j1"});

  EXPECT_EQ(r.exit_code, kUnavailable);
  EXPECT_THAT(r.err, StartsWith("reboundctl: get: UNAVAILABLE: "));
}

TEST_F(ReboundctlTest, TargetComesFromTheEnvironment) {
  fake_.AddJob(Job("j1", v1::QUEUED));

  const ProcessResult r =
      RunProcess({REBOUNDCTL_BIN, "cancel", "j1"}, {"REBOUND_TARGET=" + server_.target()});

  EXPECT_EQ(r.exit_code, kOk) << r.err;
  EXPECT_EQ(r.out, "cancelled j1 CANCELLED\n");
}

TEST_F(ReboundctlTest, TokenAndTenantAreSentAsMetadata) {
  fake_.AddJob(Job("j1", v1::QUEUED));

  const ProcessResult r = RunProcess(
      {REBOUNDCTL_BIN, "--target", server_.target(), "--tenant", "district-9", "get", "j1"},
      {"REBOUND_TOKEN=s3cret"});

  ASSERT_EQ(r.exit_code, kOk) << r.err;
  ASSERT_EQ(fake_.calls().size(), 1u);
  EXPECT_EQ(fake_.calls()[0].authorization, "Bearer s3cret");
  EXPECT_EQ(fake_.calls()[0].tenant, "district-9");
}

TEST_F(ReboundctlTest, UsageErrorsExitTwoAndSendNothing) {
  const std::vector<std::vector<std::string>> bad_command_lines = {
      {},
      {"frobnicate"},
      {"submit", "--endpoint", "canvas", "--path", "/api/v1/x"},  // no --key
      {"submit", "--endpoint", "canvas", "--path", "/api/v1/x", "--key", "k", "--label", "x"},
      {"submit", "--endpoint", "canvas", "--path", "/api/v1/x", "--key", "k", "--header", "x"},
      {"submit", "--endpoint", "canvas", "--path", "/api/v1/x", "--key", "k", "--deadline",
       "tomorrow"},
      {"submit", "--endpoint", "canvas", "--path", "/api/v1/x", "--key", "k", "--wait",
       "--wait-timeout", "soon"},
      {"submit", "--endpoint", "canvas", "--path", "/api/v1/x", "--key", "k", "--body", "a",
       "--body-file", "b"},
      {"submit", "--file", "jobs.jsonl", "--key", "k"},
      {"--timeout", "-1s", "get", "j1"},
      {"--ca-file", "/nonexistent/ca.pem", "get", "j1"},
      {"list", "--state", "SLEEPING"},
      {"get"},
  };
  for (const std::vector<std::string>& args : bad_command_lines) {
    const ProcessResult r = Run(args);
    EXPECT_EQ(r.exit_code, kUsage) << absl::StrJoin(args, " ") << "\n" << r.err;
  }
  EXPECT_THAT(fake_.calls(), IsEmpty());
}

TEST_F(ReboundctlTest, HelpExitsZero) {
  const ProcessResult r = Run({"--help"});
  EXPECT_EQ(r.exit_code, kOk);
  EXPECT_THAT(r.out, HasSubstr("submit"));
}

TEST_F(ReboundctlTest, GetShowsTheJobAndItsAttempts) {
  v1::SyncJob job = Job("j7", v1::WAITING_RETRY);
  v1::Attempt* attempt = job.add_attempts();
  attempt->set_number(1);
  attempt->set_http_status(503);
  attempt->set_classification("retry");
  attempt->set_decision("retry at 2027-01-15T08:00:01Z: 503, backoff 400ms");
  attempt = job.add_attempts();
  attempt->set_number(2);
  attempt->set_transport_error("timeout");
  attempt->set_classification("retry");
  fake_.AddJob(job);

  const ProcessResult r = Run({"get", "j7"});

  ASSERT_EQ(r.exit_code, kOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("WAITING_RETRY"));
  EXPECT_THAT(r.out, HasSubstr("POST /api/v1/grades"));
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n');
  std::vector<std::string> attempt_lines;
  for (const std::string& line : lines) {
    if (!line.empty() && (line[0] == '#' || std::isdigit(static_cast<unsigned char>(line[0]))))
      attempt_lines.push_back(line);
  }
  ASSERT_EQ(attempt_lines.size(), 3u) << r.out;
  EXPECT_THAT(attempt_lines[0], AllOf(HasSubstr("STATUS"), HasSubstr("ERROR"),
                                      HasSubstr("CLASSIFICATION"), HasSubstr("DECISION")));
  EXPECT_THAT(attempt_lines[1],
              AllOf(HasSubstr("503"), HasSubstr("retry"), HasSubstr("backoff 400ms")));
  EXPECT_THAT(attempt_lines[2], AllOf(HasSubstr("timeout"), HasSubstr("retry")));
}

// What a job's submitter (or a server) put in a field reaches a terminal only escaped.
TEST_F(ReboundctlTest, GetAndListEscapeControlCharactersAndJsonKeepsTheValue) {
  v1::SyncJob job = Job("j9", v1::FAILED);
  job.mutable_request()->set_ordering_key("course-7\x1b[2J\r\nj1 SUCCEEDED");
  job.set_last_decision("stop: \x1b]0;owned\x07");
  fake_.AddJob(job);
  v1::ListSyncsResponse page;
  *page.add_jobs() = job;
  fake_.SetListPages({page});

  for (const char* command : {"get", "list"}) {
    const ProcessResult r = std::string(command) == "get" ? Run({"get", "j9"}) : Run({"list"});
    ASSERT_EQ(r.exit_code, kOk) << r.err;
    EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << command;
    EXPECT_EQ(r.out.find('\r'), std::string::npos) << command;
    EXPECT_THAT(r.out, HasSubstr("course-7\\x1b[2J\\r\\nj1 SUCCEEDED")) << command;
    // The forged line does not start a line of its own.
    const std::vector<std::string> lines = absl::StrSplit(r.out, '\n');
    for (const std::string& line : lines) EXPECT_THAT(line, Not(StartsWith("j1 SUCCEEDED")));
  }
  const ProcessResult get = Run({"get", "j9"});
  EXPECT_THAT(get.out, HasSubstr("stop: \\x1b]0;owned\\x07"));

  const ProcessResult json = Run({"--json", "get", "j9"});
  ASSERT_EQ(json.exit_code, kOk) << json.err;
  EXPECT_EQ(json.out.find('\x1b'), std::string::npos);  // JSON escapes it itself
  v1::SyncJob parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &parsed).ok()) << json.out;
  EXPECT_EQ(parsed.request().ordering_key(), job.request().ordering_key());
}

TEST_F(ReboundctlTest, GetJsonIsTheJobAsProtobufJson) {
  v1::SyncJob job = Job("j7", v1::SUCCEEDED);
  job.add_attempts()->set_http_status(200);
  (*job.mutable_request()->mutable_labels())["course"] = "42";
  fake_.AddJob(job);

  const ProcessResult r = Run({"get", "j7", "--json"});  // global flag after the subcommand

  ASSERT_EQ(r.exit_code, kOk) << r.err;
  v1::SyncJob parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r.out;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, job))
      << parsed.DebugString();
}

TEST_F(ReboundctlTest, GetUnknownJobExitsThree) {
  const ProcessResult r = Run({"get", "j404"});
  EXPECT_EQ(r.exit_code, kRpcError);
  EXPECT_EQ(r.err, "reboundctl: get: NOT_FOUND: job j404 not found\n");
}

TEST_F(ReboundctlTest, WatchPrintsOneLinePerEventUntilTerminal) {
  fake_.SetWatch(
      {Event("j1", v1::QUEUED, 0), Event("j1", v1::RUNNING, 1), Event("j1", v1::SUCCEEDED, 1)},
      /*hold_open=*/true);

  const ProcessResult r = Run({"watch", "j1"});

  EXPECT_EQ(r.exit_code, kOk) << r.err;
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_THAT(lines[0], HasSubstr("j1 QUEUED attempts=0"));
  EXPECT_THAT(lines[1], HasSubstr("j1 RUNNING attempts=1"));
  EXPECT_THAT(lines[2], HasSubstr("j1 SUCCEEDED attempts=1"));
  EXPECT_THAT(lines[0], StartsWith("2027-01-15T08:00:00Z"));
}

TEST_F(ReboundctlTest, ListFollowsPageTokensWithAll) {
  v1::ListSyncsResponse first;
  *first.add_jobs() = Job("j3", v1::FAILED);
  *first.add_jobs() = Job("j2", v1::FAILED);
  first.set_next_page_token("p2");
  v1::ListSyncsResponse second;
  *second.add_jobs() = Job("j1", v1::EXHAUSTED);
  fake_.SetListPages({first, second});

  const ProcessResult r = Run({"list", "--state", "failed", "--state", "EXHAUSTED", "--label",
                               "course=42", "--limit", "2", "--all"});

  ASSERT_EQ(r.exit_code, kOk) << r.err;
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << r.out;  // header + 3 jobs
  EXPECT_THAT(lines[0], StartsWith("JOB"));
  EXPECT_THAT(lines[1], StartsWith("j3"));
  EXPECT_THAT(lines[3], StartsWith("j1"));
  const std::vector<v1::ListSyncsRequest> requests = fake_.list_requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].page_token(), "");
  EXPECT_EQ(requests[1].page_token(), "p2");
  EXPECT_THAT(requests[0].states(), ElementsAre(v1::FAILED, v1::EXHAUSTED));
  EXPECT_EQ(requests[0].label(), "course=42");
  EXPECT_EQ(requests[0].page_size(), 2);
}

TEST_F(ReboundctlTest, ListWithoutAllShowsOnePageAndTheNextToken) {
  v1::ListSyncsResponse first;
  *first.add_jobs() = Job("j3", v1::QUEUED);
  first.set_next_page_token("p2");
  fake_.SetListPages({first});

  const ProcessResult r = Run({"list"});

  ASSERT_EQ(r.exit_code, kOk) << r.err;
  EXPECT_EQ(fake_.list_requests().size(), 1u);
  EXPECT_THAT(r.err, HasSubstr("--page-token p2"));
}

TEST_F(ReboundctlTest, CancelAndReplayPrintTheNewState) {
  fake_.AddJob(Job("j5", v1::FAILED));

  const ProcessResult replayed = Run({"replay", "j5"});
  const ProcessResult cancelled = Run({"cancel", "j5"});

  EXPECT_EQ(replayed.exit_code, kOk) << replayed.err;
  EXPECT_EQ(replayed.out, "replayed j5 QUEUED\n");
  EXPECT_EQ(cancelled.exit_code, kOk) << cancelled.err;
  EXPECT_EQ(cancelled.out, "cancelled j5 CANCELLED\n");
}

TEST_F(ReboundctlTest, JsonlFileWithABadLineSendsNothing) {
  const std::string file =
      WriteFile("jobs.jsonl", JsonLine("k1") + "\n" + R"({"idempotencyKey": "k2", "pth": "/x"})" +
                                  "\n" + JsonLine("k3") + "{not json\n");

  const ProcessResult r = Run({"submit", "--file", file});

  EXPECT_NE(r.exit_code, kOk);
  EXPECT_EQ(r.exit_code, kUsage);
  EXPECT_THAT(r.err, HasSubstr("jobs.jsonl:3: "));  // line 2 is blank
  EXPECT_THAT(r.err, HasSubstr("jobs.jsonl:5: "));
  EXPECT_THAT(r.err, HasSubstr("nothing was sent"));
  EXPECT_THAT(fake_.calls(), IsEmpty());
}

TEST_F(ReboundctlTest, JsonlFileIsSentOverOneStreamWithASummary) {
  std::string contents;
  for (int i = 1; i <= 1200; ++i) contents += JsonLine(absl::StrCat("k", i));
  const std::string file = WriteFile("jobs.jsonl", contents);

  const ProcessResult r = Run({"submit", "--file", file});

  EXPECT_EQ(r.exit_code, kOk) << r.err;
  EXPECT_THAT(fake_.stream_sizes(), ElementsAre(1200));
  EXPECT_THAT(fake_.batch_sizes(), IsEmpty());
  const std::vector<v1::SubmitSyncStreamRequest> items = fake_.stream_items();
  ASSERT_EQ(items.size(), 1200u);
  for (size_t i = 0; i < items.size(); ++i) ASSERT_EQ(items[i].sequence(), i);
  EXPECT_EQ(items[0].request().idempotency_key(), "k1");
  EXPECT_EQ(items[1199].request().idempotency_key(), "k1200");
  EXPECT_EQ(items[1199].request().path(), "/api/v1/grades");
  EXPECT_THAT(r.err, HasSubstr("\rsubmitted 500/1200 (500 ok, 0 deduplicated, 0 rejected)"));
  EXPECT_THAT(r.out, HasSubstr("submitted 1200/1200 from "));
  EXPECT_THAT(r.out, HasSubstr("(1200 ok, 0 deduplicated, 0 rejected)"));
}

TEST_F(ReboundctlTest, JsonlItemFailuresAreListedByLineWhateverTheOrderOfTheAnswers) {
  fake_.SetStreamHold(3);  // answers come newest first, three at a time
  const std::string file =
      WriteFile("jobs.jsonl", JsonLine("k1") + JsonLine("reject-2") + JsonLine("dup-3") +
                                  JsonLine("k4") + JsonLine("reject-5"));

  const ProcessResult r = Run({"submit", "--file", file, "--window", "3"});

  EXPECT_EQ(r.exit_code, kRpcError) << r.err;
  EXPECT_THAT(fake_.stream_sizes(), ElementsAre(5));
  EXPECT_THAT(r.out, HasSubstr("(2 ok, 1 deduplicated, 2 rejected)"));
  const std::string line2 =
      "jobs.jsonl:2: INVALID_ARGUMENT: request.idempotency_key: rejected by the fake\n";
  const std::string line5 =
      "jobs.jsonl:5: INVALID_ARGUMENT: request.idempotency_key: rejected by the fake\n";
  ASSERT_THAT(r.out, HasSubstr(line2));
  ASSERT_THAT(r.out, HasSubstr(line5));
  EXPECT_LT(r.out.find(line2), r.out.find(line5));  // file order
}

TEST_F(ReboundctlTest, JsonlJsonSummaryParses) {
  const std::string file = WriteFile("jobs.jsonl", JsonLine("k1") + JsonLine("reject-2"));

  const ProcessResult r = Run({"--json", "submit", "--file", file});

  EXPECT_EQ(r.exit_code, kRpcError) << r.err;
  const nlohmann::json summary = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(summary.is_discarded()) << r.out;
  EXPECT_EQ(summary["total"], 2);
  EXPECT_EQ(summary["created"], 1);
  EXPECT_EQ(summary["rejected"], 1);
  EXPECT_EQ(summary["items"][0]["job_id"], "b1");
  EXPECT_EQ(summary["items"][1]["line"], 2);
  EXPECT_EQ(summary["items"][1]["code"], "INVALID_ARGUMENT");
}

TEST_F(ReboundctlTest, JsonlStreamRefusedAsAWholeExitsWithItsCode) {
  fake_.FailAllWith(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full"));
  const std::string file = WriteFile("jobs.jsonl", JsonLine("k1") + JsonLine("k2"));

  const ProcessResult r = Run({"submit", "--file", file, "--window", "1"});

  EXPECT_EQ(r.exit_code, kRpcError);
  EXPECT_THAT(r.err, HasSubstr("reboundctl: submit: RESOURCE_EXHAUSTED: queue full"));
  EXPECT_THAT(r.err, HasSubstr("stopped after 0/2 answers; submitting the file again is safe"));
  EXPECT_EQ(fake_.calls().size(), 1u);  // one stream
}

TEST_F(ReboundctlTest, JsonlWindowMustBePositive) {
  const std::string file = WriteFile("jobs.jsonl", JsonLine("k1"));

  const ProcessResult r = Run({"submit", "--file", file, "--window", "0"});

  EXPECT_EQ(r.exit_code, kUsage);
  EXPECT_THAT(r.err, HasSubstr("--window: must be at least 1"));
  EXPECT_THAT(fake_.calls(), IsEmpty());
}

TEST_F(ReboundctlTest, HealthOfAServingServerExitsZero) {
  const ProcessResult r = Run({"health"});

  EXPECT_EQ(r.exit_code, kOk) << r.err;
  EXPECT_EQ(r.out, server_.target() + " SERVING\n");
  EXPECT_THAT(r.err, IsEmpty());
}

TEST_F(ReboundctlTest, HealthOfANotServingServerExitsOneWithAClearLine) {
  server_.health().SetServingStatus(false);

  const ProcessResult r = Run({"health"});

  EXPECT_EQ(r.exit_code, kFailed);
  EXPECT_EQ(r.out, server_.target() + " NOT_SERVING\n");
  EXPECT_EQ(r.err, "reboundctl: health: " + server_.target() + " is NOT_SERVING, not SERVING\n");
}

TEST_F(ReboundctlTest, HealthAsksAboutTheNamedService) {
  server_.health().SetServingStatus("rebound.v1.Rebound", true);
  server_.health().SetServingStatus("rebound.v1.Other", false);

  const ProcessResult serving = Run({"health", "--service", "rebound.v1.Rebound"});
  EXPECT_EQ(serving.exit_code, kOk) << serving.err;
  EXPECT_EQ(serving.out, server_.target() + " rebound.v1.Rebound SERVING\n");

  const ProcessResult not_serving = Run({"health", "--service", "rebound.v1.Other"});
  EXPECT_EQ(not_serving.exit_code, kFailed) << not_serving.err;
  EXPECT_EQ(not_serving.out, server_.target() + " rebound.v1.Other NOT_SERVING\n");

  const ProcessResult unknown = Run({"health", "--service", "no.such.Service"});
  EXPECT_EQ(unknown.exit_code, kRpcError);
  EXPECT_THAT(unknown.out, IsEmpty());
  EXPECT_THAT(unknown.err, AllOf(StartsWith("reboundctl: health: NOT_FOUND: the server at " +
                                            server_.target() + " has no service 'no.such.Service'"),
                                 HasSubstr("rebound.v1.Rebound")));
}

TEST_F(ReboundctlTest, HealthJsonIsOneDocument) {
  server_.health().SetServingStatus(false);

  const ProcessResult r = Run({"--json", "health"});

  EXPECT_EQ(r.exit_code, kFailed);
  const nlohmann::json doc = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(doc.is_discarded()) << r.out;
  EXPECT_EQ(doc, nlohmann::json(
                     {{"target", server_.target()}, {"service", ""}, {"status", "NOT_SERVING"}}));
}

TEST_F(ReboundctlTest, HealthOfAnUnreachableServerExitsFour) {
  ClosedPort closed;
  ASSERT_NE(closed.port(), 0);

  const ProcessResult r = RunProcess({REBOUNDCTL_BIN, "--target", closed.target(), "health"});

  EXPECT_EQ(r.exit_code, kUnavailable);
  EXPECT_THAT(r.out, IsEmpty());
  EXPECT_THAT(r.err, StartsWith("reboundctl: health: UNAVAILABLE: "));
}

TEST_F(ReboundctlTest, HealthGivesUpAfterTheTimeout) {
  // Accepts TCP connections (the kernel's backlog) but never speaks HTTP/2.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const std::string target = absl::StrCat("127.0.0.1:", ntohs(address.sin_port));

  const absl::Time start = absl::Now();
  const ProcessResult r =
      RunProcess({REBOUNDCTL_BIN, "--target", target, "--timeout", "300ms", "health"});
  const absl::Duration took = absl::Now() - start;
  ::close(fd);

  EXPECT_EQ(r.exit_code, kUnavailable) << r.err;
  EXPECT_THAT(r.err, StartsWith("reboundctl: health: DEADLINE_EXCEEDED: "));
  EXPECT_LT(took, absl::Seconds(5));
}

TEST_F(ReboundctlTest, VersionNamesTheBuildsVersionAndRevision) {
  const ProcessResult r = RunProcess({REBOUNDCTL_BIN, "--version"});

  EXPECT_EQ(r.exit_code, kOk) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("reboundctl ", build_info::kVersion, " (revision ",
                                build_info::kRevision, ")\n"));
}

}  // namespace
}  // namespace rebound::client

namespace rebound::client {
namespace {

google::protobuf::Timestamp At(const std::string& rfc3339) {
  absl::Time t;
  std::string error;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &error)) << error;
  google::protobuf::Timestamp out;
  out.set_seconds(absl::ToUnixSeconds(t));
  return out;
}

v1::EndpointStatus Endpoint(const std::string& name) {
  v1::EndpointStatus s;
  s.set_name(name);
  s.set_circuit_enabled(true);
  s.set_circuit(v1::CLOSED);
  s.set_in_flight(3);
  s.set_allowed_in_flight(8);
  s.set_max_in_flight(16);
  s.set_retry_budget_enabled(true);
  s.set_retries_in_flight(1);
  s.set_retry_budget(3);
  s.set_slow_start_level(1);
  return s;
}

class ReboundctlEndpointsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(server_.port(), 0); }
  ProcessResult Run(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {REBOUNDCTL_BIN, "--target", server_.target()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv);
  }
  FakeServer server_;
  FakeRebound& fake_ = server_.fake();
};

TEST_F(ReboundctlEndpointsTest, EndpointsShowsEveryPartOfEachEndpoint) {
  v1::EndpointStatus canvas = Endpoint("canvas");
  canvas.set_circuit(v1::OPEN);
  *canvas.mutable_next_probe_at() = At("2027-01-15T08:00:30Z");
  *canvas.mutable_paused_until() = At("2027-01-15T08:01:00Z");
  canvas.set_pause_cause("429 Retry-After 60s");
  canvas.set_rate(20);
  canvas.set_burst(40);
  canvas.set_tokens(12.5);
  canvas.set_slow_start_level(0.25);
  *canvas.mutable_slow_start_until() = At("2027-01-15T08:02:00Z");
  v1::WaitCount* w = canvas.add_waiting();
  w->set_reason(v1::CIRCUIT_OPEN);
  w->set_count(7);
  w = canvas.add_waiting();
  w->set_reason(v1::BACKOFF);
  w->set_count(2);
  canvas.mutable_oldest_waiting_age()->set_seconds(90);
  v1::BudgetStatus* budget = canvas.add_budgets();
  budget->set_name("district");
  budget->set_split_by("district");
  budget->set_quota_limit(10000);
  *budget->mutable_period_end() = At("2027-01-16T00:00:00Z");
  budget->set_max_in_flight(8);
  budget->set_scope_count(3);
  v1::BudgetScope* top = budget->add_busiest();
  top->set_scope("d7");
  top->set_in_flight(2);
  top->set_quota_used(9800);
  v1::EndpointStatus moodle = Endpoint("moodle");
  moodle.set_circuit_enabled(false);
  moodle.set_retry_budget_enabled(false);
  moodle.set_operator_paused(true);
  moodle.set_operator_reason("LMS maintenance");
  fake_.SetEndpoints({canvas, moodle});

  const ProcessResult r = Run({"endpoints"});

  ASSERT_EQ(r.exit_code, kOk) << r.err;
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_THAT(lines[0],
              AllOf(StartsWith("ENDPOINT"), HasSubstr("CIRCUIT"), HasSubstr("NEXT PROBE"),
                    HasSubstr("OPERATOR PAUSE"), HasSubstr("IN FLIGHT/ALLOWED/MAX"),
                    HasSubstr("TOKENS"), HasSubstr("RETRIES/BUDGET"), HasSubstr("SLOW START"),
                    HasSubstr("WAITING"), HasSubstr("OLDEST WAIT"), HasSubstr("BUDGETS")));
  EXPECT_THAT(lines[1],
              AllOf(StartsWith("canvas"), HasSubstr("OPEN"), HasSubstr("2027-01-15T08:00:30Z"),
                    HasSubstr("2027-01-15T08:01:00Z (429 Retry-After 60s)"), HasSubstr("3/8/16"),
                    HasSubstr("12.5/40 @20/s"), HasSubstr("1/3"), HasSubstr("25%"),
                    HasSubstr("7 CIRCUIT_OPEN, 2 BACKOFF"), HasSubstr("1m30s"),
                    HasSubstr("district by district: 3 scopes, busiest d7 9800/10000 until "
                              "2027-01-16T00:00:00Z, 2/8 in flight")));
  EXPECT_THAT(lines[2], AllOf(StartsWith("moodle"), HasSubstr("off"),
                              HasSubstr("until resumed: LMS maintenance")));
  EXPECT_THAT(fake_.endpoint_names_asked(), ElementsAre(""));
}

TEST_F(ReboundctlEndpointsTest, EndpointsNameAsksForOneAndJsonIsTheResponse) {
  fake_.SetEndpoints({Endpoint("canvas"), Endpoint("moodle")});
  const ProcessResult r = Run({"endpoints", "moodle", "--json"});
  ASSERT_EQ(r.exit_code, kOk) << r.err;
  v1::GetEndpointStatusResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r.out;
  ASSERT_EQ(parsed.endpoints_size(), 1);
  EXPECT_EQ(parsed.endpoints(0).name(), "moodle");
  EXPECT_EQ(parsed.endpoints(0).max_in_flight(), 16);
  EXPECT_THAT(fake_.endpoint_names_asked(), ElementsAre("moodle"));

  const ProcessResult unknown = Run({"endpoints", "blackboard"});
  EXPECT_EQ(unknown.exit_code, kRpcError);
  EXPECT_EQ(unknown.err, "reboundctl: endpoints: NOT_FOUND: name: unknown endpoint 'blackboard'\n");
}

TEST_F(ReboundctlEndpointsTest, PauseUntilForOrOpenEndedThenResume) {
  fake_.SetEndpoints({Endpoint("canvas")});
  ProcessResult r = Run({"endpoints", "pause", "canvas", "--until", "2027-01-15T10:00:00Z",
                         "--reason", "LMS maintenance"});
  ASSERT_EQ(r.exit_code, kOk) << r.err;
  EXPECT_EQ(r.out, "paused canvas until 2027-01-15T10:00:00Z: LMS maintenance\n");

  r = Run({"endpoints", "pause", "canvas", "--for", "90m", "--reason", "upgrade"});
  ASSERT_EQ(r.exit_code, kOk) << r.err;
  r = Run({"endpoints", "pause", "canvas", "--reason", "until further notice"});
  ASSERT_EQ(r.exit_code, kOk) << r.err;
  EXPECT_EQ(r.out, "paused canvas until resumed: until further notice\n");

  const std::vector<v1::PauseEndpointRequest> pauses = fake_.pause_requests();
  ASSERT_EQ(pauses.size(), 3u);
  EXPECT_EQ(pauses[0].name(), "canvas");
  EXPECT_EQ(pauses[0].until().seconds(), At("2027-01-15T10:00:00Z").seconds());
  EXPECT_FALSE(pauses[0].has_duration());
  EXPECT_EQ(pauses[0].reason(), "LMS maintenance");
  EXPECT_EQ(pauses[1].duration().seconds(), 90 * 60);
  EXPECT_FALSE(pauses[1].has_until());
  EXPECT_FALSE(pauses[2].has_until());
  EXPECT_FALSE(pauses[2].has_duration());

  r = Run({"endpoints", "resume", "canvas"});
  ASSERT_EQ(r.exit_code, kOk) << r.err;
  EXPECT_EQ(r.out, "resumed canvas\n");
  r = Run({"endpoints", "resume", "canvas"});
  EXPECT_EQ(r.exit_code, kRpcError);
  EXPECT_EQ(r.err, "reboundctl: endpoints resume: FAILED_PRECONDITION: canvas is not paused\n");
}

TEST_F(ReboundctlEndpointsTest, PauseUsageErrorsSendNothing) {
  fake_.SetEndpoints({Endpoint("canvas")});
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"endpoints", "pause", "canvas"},  // --reason is required
           {"endpoints", "pause", "--reason", "x"},
           {"endpoints", "pause", "canvas", "--reason", "x", "--until", "tomorrow"},
           {"endpoints", "pause", "canvas", "--reason", "x", "--for", "-5m"},
           {"endpoints", "pause", "canvas", "--reason", "x", "--for", "1h", "--until",
            "2027-01-15T10:00:00Z"},
           {"endpoints", "resume"},
       }) {
    const ProcessResult r = Run(args);
    EXPECT_EQ(r.exit_code, kUsage) << absl::StrJoin(args, " ") << "\n" << r.err;
  }
  EXPECT_THAT(fake_.pause_requests(), IsEmpty());
  EXPECT_THAT(fake_.endpoint_names_asked(), IsEmpty());
}

TEST_F(ReboundctlEndpointsTest, ServerTextIsEscapedForTheTerminal) {
  v1::EndpointStatus evil = Endpoint("canvas");
  evil.set_operator_paused(true);
  evil.set_operator_reason("x\x1b[2J\r\nforged");
  evil.set_pause_cause("y\x1b]0;title\x07");
  *evil.mutable_paused_until() = At("2027-01-15T08:01:00Z");
  fake_.SetEndpoints({evil});
  const ProcessResult shown = Run({"endpoints"});
  ASSERT_EQ(shown.exit_code, kOk) << shown.err;
  EXPECT_THAT(shown.out,
              AllOf(HasSubstr("x\\x1b[2J\\r\\nforged"), HasSubstr("y\\x1b]0;title\\x07")));
  const ProcessResult paused = Run({"endpoints", "pause", "canvas", "--reason", "ok\x1b[2J"});
  ASSERT_EQ(paused.exit_code, kOk) << paused.err;
  EXPECT_EQ(paused.out, "paused canvas until resumed: ok\\x1b[2J\n");
  for (const std::string& out : {shown.out, paused.out}) {
    EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
    EXPECT_EQ(out.find('\r'), std::string::npos) << out;
    EXPECT_EQ(out.find('\x07'), std::string::npos) << out;
  }
}

TEST_F(ReboundctlEndpointsTest, GetListAndWatchShowTheWait) {
  v1::SyncJob blocked;
  blocked.set_job_id("j2");
  blocked.set_state(v1::BLOCKED);
  blocked.mutable_request()->set_endpoint("canvas");
  blocked.mutable_wait()->set_reason(v1::ORDERING_BLOCKED);
  blocked.mutable_wait()->set_behind_job_id("j1");
  v1::SyncJob held;
  held.set_job_id("j3");
  held.set_state(v1::QUEUED);
  held.mutable_request()->set_endpoint("canvas");
  held.mutable_wait()->set_reason(v1::CIRCUIT_OPEN);
  *held.mutable_wait()->mutable_until() = At("2027-01-15T08:00:30Z");
  fake_.AddJob(blocked);
  v1::ListSyncsResponse page;
  *page.add_jobs() = held;
  *page.add_jobs() = blocked;
  fake_.SetListPages({page});

  ProcessResult r = Run({"get", "j2"});
  ASSERT_EQ(r.exit_code, kOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("wait             ORDERING_BLOCKED behind j1"));

  r = Run({"list", "--wait-reason", "circuit_open"});
  ASSERT_EQ(r.exit_code, kOk) << r.err;
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_THAT(lines[0], HasSubstr("WAIT"));
  EXPECT_THAT(lines[1], HasSubstr("CIRCUIT_OPEN until 2027-01-15T08:00:30Z"));
  EXPECT_THAT(lines[2], HasSubstr("ORDERING_BLOCKED behind j1"));
  ASSERT_EQ(fake_.list_requests().size(), 1u);
  EXPECT_EQ(fake_.list_requests()[0].wait_reason(), v1::CIRCUIT_OPEN);

  r = Run({"list", "--wait-reason", "SLEEPING"});
  EXPECT_EQ(r.exit_code, kUsage);
  EXPECT_THAT(r.err, HasSubstr("--wait-reason 'SLEEPING': not a wait reason"));
  EXPECT_EQ(fake_.list_requests().size(), 1u);

  v1::SyncEvent waiting = Event("j3", v1::QUEUED, 0);
  waiting.mutable_wait()->set_reason(v1::RATE_LIMITED);
  *waiting.mutable_wait()->mutable_until() = At("2027-01-15T08:00:01Z");
  v1::SyncEvent behind = Event("j3", v1::BLOCKED, 0);
  behind.mutable_wait()->set_reason(v1::ORDERING_BLOCKED);
  behind.mutable_wait()->set_behind_job_id("j2");
  fake_.SetWatch({waiting, behind, Event("j3", v1::SUCCEEDED, 1)}, /*hold_open=*/false);
  r = Run({"watch", "j3"});
  ASSERT_EQ(r.exit_code, kOk) << r.err;
  const std::vector<std::string> events = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(events.size(), 3u) << r.out;
  EXPECT_THAT(events[0], HasSubstr("wait=RATE_LIMITED until=2027-01-15T08:00:01Z"));
  EXPECT_THAT(events[1], HasSubstr("wait=ORDERING_BLOCKED behind=j2"));
  EXPECT_THAT(events[2], Not(HasSubstr("wait=")));
}

}  // namespace
}  // namespace rebound::client
