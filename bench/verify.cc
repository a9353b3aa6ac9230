#include "bench/verify.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "bench/http_fetch.h"

namespace rebound::bench {
namespace {

constexpr int kPageSize = 1000;
constexpr size_t kMaxExamples = 10;

struct Seen {
  v1::SyncState state = v1::SYNC_STATE_UNSPECIFIED;
  int attempt_count = 0;
  bool listed = false;
};

// The index of a key of this run, or nullopt for a key of another run.
std::optional<uint64_t> IndexOf(absl::string_view key, absl::string_view prefix, uint64_t jobs) {
  if (!absl::ConsumePrefix(&key, prefix) || key.empty()) return std::nullopt;
  uint64_t index = 0;
  const auto [ptr, ec] = std::from_chars(key.data(), key.data() + key.size(), index);
  if (ec != std::errc() || ptr != key.data() + key.size() || index >= jobs) return std::nullopt;
  return index;
}

bool Settled(Final expected, v1::SyncState state) {
  if (expected == Final::kWaiting) return state == v1::WAITING_RETRY;
  return client::IsTerminal(state);
}

v1::SyncState StateOf(Final expected) {
  switch (expected) {
    case Final::kSucceeded:
      return v1::SUCCEEDED;
    case Final::kFailed:
      return v1::FAILED;
    case Final::kWaiting:
      return v1::WAITING_RETRY;
  }
  return v1::SYNC_STATE_UNSPECIFIED;
}

// Every job of the run, through ListSyncs pages (bounded by the run's size).
absl::Status ListRun(const client::Client& client, const VerifyOptions& options,
                     std::vector<Seen>* seen, VerifyReport* report) {
  v1::ListSyncsRequest request;
  request.set_endpoint(options.endpoint);
  request.set_page_size(kPageSize);
  // The endpoint may hold jobs of earlier runs too: allow for some, but stay bounded.
  const uint64_t max_pages = options.jobs / kPageSize + 1000;
  for (uint64_t page = 0; page < max_pages; ++page) {
    auto response = client.List(request);
    if (!response.ok()) return response.status();
    for (const v1::SyncJob& job : response->jobs()) {
      const auto index = IndexOf(job.request().idempotency_key(), options.key_prefix, options.jobs);
      if (!index) continue;
      Seen& s = (*seen)[*index];
      if (s.listed && report->examples.size() < kMaxExamples) {
        report->examples.push_back(
            absl::StrCat("key listed twice: ", job.request().idempotency_key()));
      }
      s.listed = true;
      s.state = job.state();
      s.attempt_count = job.attempt_count();
    }
    if (response->next_page_token().empty()) return absl::OkStatus();
    request.set_page_token(response->next_page_token());
  }
  return absl::DeadlineExceededError(
      absl::StrCat("ListSyncs: still more pages after ", max_pages, " pages"));
}

}  // namespace

nlohmann::json VerifyReport::ToJson() const {
  nlohmann::json j = {
      {"ok", ok()},
      {"listed", listed},
      {"by_state", by_state},
      {"lost", lost},
      {"not_settled", not_settled},
      {"wrong_state", wrong_state},
      {"succeeded_keys", succeeded_keys},
      {"succeeded_with_one_effect", succeeded_with_one_effect},
      {"effect_mismatch", effect_mismatch},
      {"attempts_mismatch", attempts_mismatch},
      {"rebound_attempts_mismatch", rebound_attempts_mismatch},
      {"permanent_keys", permanent_keys},
      {"permanent_retried", permanent_retried},
      {"retry_after_keys", retry_after_keys},
      {"early_retries", early_retries},
      {"min_retry_after_gap_ms", min_retry_after_gap_ms},
      {"missing_key_header", missing_key_header},
      {"upstream_repeats", upstream_repeats},
      {"first_retry_gap_ms", GapSummary()},
      {"examples", examples},
  };
  return j;
}

nlohmann::json VerifyReport::GapSummary() const {
  std::vector<double> gaps = first_retry_gaps_ms;
  std::sort(gaps.begin(), gaps.end());
  auto at = [&gaps](double q) {
    return gaps.empty() ? 0.0
                        : gaps[std::min(gaps.size() - 1, static_cast<size_t>(q * gaps.size()))];
  };
  return {{"count", gaps.size()},
          {"p50", at(0.5)},
          {"p99", at(0.99)},
          {"max", gaps.empty() ? 0.0 : gaps.back()}};
}

absl::StatusOr<VerifyReport> Verify(const client::Client& client, const VerifyOptions& options) {
  if (options.jobs > kMaxVerifyJobs) {
    return absl::InvalidArgumentError(
        absl::StrCat("--verify reads the whole fake-lms ledger: at most ", kMaxVerifyJobs,
                     " jobs (got ", options.jobs, ")"));
  }
  VerifyReport report;
  std::vector<Seen> seen(options.jobs);
  if (absl::Status s = ListRun(client, options, &seen, &report); !s.ok()) return s;

  auto body = HttpFetch("GET", options.lms_url + "/__stats", absl::Seconds(60));
  if (!body.ok()) return body.status();
  const nlohmann::json stats = nlohmann::json::parse(*body, nullptr, /*allow_exceptions=*/false);
  if (stats.is_discarded() || !stats.contains("keys") || !stats["keys"].is_object()) {
    return absl::DataLossError("fake-lms /__stats: not the expected JSON");
  }
  const nlohmann::json& keys = stats["keys"];

  auto problem = [&report](std::string text) {
    if (report.examples.size() < kMaxExamples) report.examples.push_back(std::move(text));
  };
  for (uint64_t i = 0; i < options.jobs; ++i) {
    const Expectation& want = ExpectationFor(options.mix, i);
    const std::string key = absl::StrCat(options.key_prefix, i);
    const Seen& s = seen[i];
    if (!s.listed) {
      ++report.lost;
      problem(absl::StrCat(key, ": not returned by ListSyncs"));
      continue;
    }
    ++report.listed;
    ++report.by_state[v1::SyncState_Name(s.state)];
    if (!Settled(want.final_state, s.state)) {
      ++report.not_settled;
      problem(absl::StrCat(key, ": still ", v1::SyncState_Name(s.state)));
    } else if (s.state != StateOf(want.final_state)) {
      ++report.wrong_state;
      problem(absl::StrCat(key, " (", want.script, "): ", v1::SyncState_Name(s.state)));
    }
    if (want.final_state == Final::kSucceeded) ++report.succeeded_keys;
    if (want.final_state == Final::kFailed) ++report.permanent_keys;
    if (want.min_gap_ms > 0) ++report.retry_after_keys;

    const auto it = keys.find(key);
    if (it == keys.end()) {
      ++report.attempts_mismatch;
      if (want.effects != 0) ++report.effect_mismatch;
      problem(absl::StrCat(key, ": fake-lms never saw it"));
      continue;
    }
    const nlohmann::json& rec = *it;
    const int attempts = rec.value("attempts", 0);
    const int effects = rec.value("effects", 0);
    report.upstream_repeats += rec.value("repeats", 0);
    if (effects != want.effects) {
      ++report.effect_mismatch;
      problem(absl::StrCat(key, " (", want.script, "): ", effects, " effects"));
    } else if (want.final_state == Final::kSucceeded) {
      ++report.succeeded_with_one_effect;
    }
    if (attempts != want.attempts) {
      ++report.attempts_mismatch;
      problem(absl::StrCat(key, " (", want.script, "): ", attempts, " upstream attempts"));
    }
    if (want.final_state == Final::kFailed && attempts > 1) ++report.permanent_retried;
    if (attempts != s.attempt_count) {
      ++report.rebound_attempts_mismatch;
      problem(absl::StrCat(key, ": Rebound counts ", s.attempt_count, " attempts, fake-lms ",
                           attempts));
    }
    if (!rec.value("key_header_every_attempt", false)) ++report.missing_key_header;
    const nlohmann::json times = rec.value("times_ms", nlohmann::json::array());
    if (!times.is_array() || times.size() < 2) continue;
    const double gap = times[1].get<double>() - times[0].get<double>();
    report.first_retry_gaps_ms.push_back(gap);
    if (want.min_gap_ms > 0) {
      if (report.min_retry_after_gap_ms < 0 || gap < report.min_retry_after_gap_ms) {
        report.min_retry_after_gap_ms = gap;
      }
      if (gap < want.min_gap_ms) {
        ++report.early_retries;
        problem(absl::StrCat(key, ": retried after ", gap, " ms, Retry-After ", want.min_gap_ms,
                             " ms"));
      }
    }
  }
  return report;
}

}  // namespace rebound::bench
