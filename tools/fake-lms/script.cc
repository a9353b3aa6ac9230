#include "tools/fake-lms/script.h"

#include <event2/http.h>

#include <array>
#include <charconv>
#include <cstdlib>
#include <memory>
#include <utility>

#include "tools/fake-lms/moodle.h"

namespace rebound::fakelms {
namespace {

constexpr std::array<std::string_view, 5> kOptionNames = {"ra=", "rad=", "ms=", "body=", "loc="};

bool StartsWithOption(std::string_view text) {
  for (std::string_view name : kOptionNames) {
    if (text.substr(0, name.size()) == name) return true;
  }
  return false;
}

// Splits "503:ra=2:body=a:b" into {"503", "ra=2", "body=a:b"}: only a ':' that introduces a
// known option separates, so URLs and texts may contain ':'.
std::vector<std::string_view> SplitOptions(std::string_view step) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  size_t pos = step.find(':');
  while (pos != std::string_view::npos) {
    if (StartsWithOption(step.substr(pos + 1))) {
      parts.push_back(step.substr(start, pos - start));
      start = pos + 1;
    }
    pos = step.find(':', pos + 1);
  }
  parts.push_back(step.substr(start));
  return parts;
}

std::optional<int> ParseInt(std::string_view text, int lo, int hi) {
  int value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty() || value < lo || value > hi) {
    return std::nullopt;
  }
  return value;
}

std::optional<Step> ParseStep(std::string_view text, std::string* error, bool moodle) {
  Step step;
  if (moodle) {
    if (std::optional<std::string> body = MoodleErrorBody(text); body) {
      step.moodle_body = *std::move(body);  // Moodle answers its exceptions with a 200
      return step;
    }
  }
  if (text == "hang") {
    step.kind = Step::Kind::kHang;
    return step;
  }
  if (text == "reset") {
    step.kind = Step::Kind::kReset;
    return step;
  }
  if (text == "cut") {
    step.kind = Step::Kind::kCut;
    return step;
  }
  const std::vector<std::string_view> parts = SplitOptions(text);
  std::optional<int> status = ParseInt(parts[0], 200, 599);
  if (!status) {
    *error =
        "step '" + std::string(text) + "': expected a status 200..599, 'hang', 'reset' or 'cut'";
    return std::nullopt;
  }
  step.status = *status;
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string_view opt = parts[i];
    const size_t eq = opt.find('=');
    const std::string_view name = opt.substr(0, eq);
    const std::string_view value = opt.substr(eq + 1);
    constexpr int kMaxSeconds = 7 * 24 * 3600;
    std::optional<int> number;
    if (name == "ra" && (number = ParseInt(value, 0, kMaxSeconds))) {
      step.retry_after_seconds = number;
    } else if (name == "rad" && (number = ParseInt(value, -kMaxSeconds, kMaxSeconds))) {
      step.retry_after_date_in = number;
    } else if (name == "ms" && (number = ParseInt(value, 0, 3600 * 1000))) {
      step.delay_ms = *number;
    } else if (name == "body") {
      step.body = PercentDecode(value);
    } else if (name == "loc") {
      step.location = PercentDecode(value);
    } else {
      *error = "step '" + std::string(text) + "': bad option '" + std::string(opt) + "'";
      return std::nullopt;
    }
  }
  return step;
}

}  // namespace

std::optional<std::vector<Step>> ParseScript(std::string_view script, std::string* error,
                                             bool moodle) {
  std::vector<Step> steps;
  size_t start = 0;
  while (true) {
    const size_t comma = script.find(',', start);
    const std::string_view text = script.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    std::optional<Step> step = ParseStep(text, error, moodle);
    if (!step) return std::nullopt;
    steps.push_back(*std::move(step));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return steps;
}

const Step& StepFor(const std::vector<Step>& script, int n) {
  const size_t index = n < 1 ? 0 : static_cast<size_t>(n) - 1;
  return script[index < script.size() ? index : script.size() - 1];
}

std::string PercentDecode(std::string_view text) {
  if (text.find('%') == std::string_view::npos) return std::string(text);
  const std::string copy(text);
  size_t size = 0;
  std::unique_ptr<char, decltype(&std::free)> decoded(
      evhttp_uridecode(copy.c_str(), /*decode_plus=*/0, &size), &std::free);
  if (decoded == nullptr) return copy;
  return std::string(decoded.get(), size);
}

}  // namespace rebound::fakelms
