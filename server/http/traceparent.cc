#include "server/http/traceparent.h"

#include <cstdint>
#include <string>

#include "absl/random/distributions.h"
#include "absl/strings/str_cat.h"

namespace rebound::http {
namespace {

constexpr size_t kLength = 55;  // 2 + 1 + 32 + 1 + 16 + 1 + 2
constexpr size_t kTraceIdPos = 3;
constexpr size_t kTraceIdLen = 32;
constexpr size_t kParentIdPos = 36;
constexpr size_t kParentIdLen = 16;
constexpr size_t kFlagsPos = 53;

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool AllZero(absl::string_view s) { return s.find_first_not_of('0') == absl::string_view::npos; }

// 16 lowercase hex digits of a random non-zero value different from `avoid` (if given).
std::string RandomNonZeroHex64(absl::BitGenRef rng, absl::string_view avoid = {}) {
  while (true) {
    const uint64_t v = absl::Uniform<uint64_t>(rng);
    if (v == 0) continue;
    std::string hex = absl::StrCat(absl::Hex(v, absl::kZeroPad16));
    if (hex != avoid) return hex;
  }
}

}  // namespace

bool ValidTraceparent(absl::string_view tp) {
  if (tp.size() != kLength) return false;
  if (tp.substr(0, 2) != "00") return false;
  if (tp[2] != '-' || tp[kParentIdPos - 1] != '-' || tp[kFlagsPos - 1] != '-') return false;
  const absl::string_view trace_id = tp.substr(kTraceIdPos, kTraceIdLen);
  const absl::string_view parent_id = tp.substr(kParentIdPos, kParentIdLen);
  const absl::string_view flags = tp.substr(kFlagsPos, 2);
  return IsLowerHex(trace_id) && IsLowerHex(parent_id) && IsLowerHex(flags) && !AllZero(trace_id) &&
         !AllZero(parent_id);
}

std::string CorrelationIdFromTraceparent(absl::string_view tp) {
  if (!ValidTraceparent(tp)) return "";
  return std::string(tp.substr(kTraceIdPos, kTraceIdLen));
}

std::string NewRootTraceparent(absl::BitGenRef rng) {
  // Each half non-zero keeps the trace id non-zero.
  return absl::StrCat("00-", RandomNonZeroHex64(rng), RandomNonZeroHex64(rng), "-",
                      RandomNonZeroHex64(rng), "-00");
}

std::string NewChildTraceparent(absl::string_view parent, absl::BitGenRef rng) {
  if (!ValidTraceparent(parent)) return NewRootTraceparent(rng);
  return absl::StrCat(parent.substr(0, kParentIdPos),
                      RandomNonZeroHex64(rng, parent.substr(kParentIdPos, kParentIdLen)),
                      parent.substr(kFlagsPos - 1));
}

}  // namespace rebound::http
