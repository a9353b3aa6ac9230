#include "server/policy/throttle_headers.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "re2/re2.h"

namespace rebound::policy {
namespace {

// Further ahead than this is not a rate-limit reset (a timestamp in milliseconds read as
// seconds, a typo): skipped rather than waited for.
constexpr absl::Duration kFarAhead = absl::Hours(24 * 366);

// A non-negative decimal: "30", "1.5". Signs, exponents, "inf" and "nan" are not numbers here.
bool IsDecimal(absl::string_view v) {
  static const LazyRE2 kDecimal = {R"(\d{1,18}(\.\d{1,9})?)"};
  return RE2::FullMatch(re2::StringPiece(v.data(), v.size()), *kDecimal);
}

bool IsNegativeDecimal(absl::string_view v) { return absl::ConsumePrefix(&v, "-") && IsDecimal(v); }

// A number of quota units: a non-negative decimal, or the error text.
std::optional<double> ParseUnits(absl::string_view v, std::string* error) {
  v = absl::StripAsciiWhitespace(v);
  double d = 0;
  if (IsDecimal(v) && absl::SimpleAtod(v, &d)) return d;
  *error = IsNegativeDecimal(v) ? "negative" : "not a number";
  return std::nullopt;
}

// An RFC 3339 date-time or an HTTP-date.
std::optional<absl::Time> ParseDate(absl::string_view v) {
  absl::Time t;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, v, &t, &err)) return t;
  return ParseHttpDate(v);
}

// The bounded reason of one of this file's own `why` texts.
IgnoredReason ReasonOf(absl::string_view why) {
  if (why == "negative") return IgnoredReason::kNegative;
  if (why == "in the past") return IgnoredReason::kPast;
  if (why == "too far ahead") return IgnoredReason::kTooFarAhead;
  return IgnoredReason::kUnparsable;  // not a number, not a date, empty, not a quota item ...
}

// Names `value` as read from `header` in an ignored reason, and counts the reason.
void Ignore(ThrottleSignals* s, absl::string_view header, absl::string_view why) {
  s->ignored.push_back(absl::StrCat(header, ": ", why));
  ++s->ignored_by_reason[static_cast<size_t>(ReasonOf(why))];
}

// One parameter of a structured-field item: "r=50" -> ("r", "50").
std::pair<absl::string_view, absl::string_view> Param(absl::string_view p) {
  p = absl::StripAsciiWhitespace(p);
  const size_t eq = p.find('=');
  if (eq == absl::string_view::npos) return {p, ""};
  return {absl::StripAsciiWhitespace(p.substr(0, eq)),
          absl::StripAsciiWhitespace(p.substr(eq + 1))};
}

struct QuotaItem {
  std::string name;  // the quota policy's name ("" in draft 07)
  std::optional<double> remaining;
  std::optional<double> limit;
  std::optional<absl::Time> reset_at;
  std::optional<absl::Duration> window;
};

// Seconds (non-negative decimal) as a duration, or an error in `s->ignored`.
std::optional<absl::Duration> Seconds(absl::string_view v, absl::string_view what,
                                      ThrottleSignals* s) {
  std::string error;
  const std::optional<double> d = ParseUnits(v, &error);
  if (!d) {
    Ignore(s, what, error);
    return std::nullopt;
  }
  if (absl::Seconds(*d) > kFarAhead) {
    Ignore(s, what, "too far ahead");
    return std::nullopt;
  }
  return absl::Seconds(*d);
}

std::optional<double> Units(absl::string_view v, absl::string_view what, ThrottleSignals* s) {
  std::string error;
  std::optional<double> d = ParseUnits(v, &error);
  if (!d) Ignore(s, what, error);
  return d;
}

// Seconds until a reset, read by the same rules as a delta_seconds reset header.
std::optional<absl::Time> Reset(absl::string_view v, absl::string_view what, absl::Time now,
                                ThrottleSignals* s) {
  ParsedTime t = ParseResetValue(v, ResetForm::kDeltaSeconds, now);
  if (!t.at) Ignore(s, what, t.error);
  return t.at;
}

// `RateLimit` or `RateLimit-Policy`: a list of items `"name";k=v;...` (draft 08 on), or draft
// 07's forms (`limit=L, remaining=R, reset=T`; `L;w=W`).
std::vector<QuotaItem> ParseQuotaField(absl::string_view header, absl::string_view value,
                                       bool policy, absl::Time now, ThrottleSignals* s) {
  std::vector<QuotaItem> items;
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return items;
  // Draft 08 on names each quota with a quoted string; draft 07 quotes nothing.
  if (!absl::StrContains(value, '"')) {
    QuotaItem item;
    if (policy) {  // draft 07: "100;w=60"
      std::vector<absl::string_view> parts = absl::StrSplit(value, ';');
      item.limit = Units(parts[0], absl::StrCat(header, " quota"), s);
      for (size_t i = 1; i < parts.size(); ++i) {
        const auto [k, v] = Param(parts[i]);
        if (k == "w") item.window = Seconds(v, absl::StrCat(header, " w"), s);
      }
    } else {  // draft 07: "limit=100, remaining=50, reset=5"
      for (absl::string_view member : absl::StrSplit(value, ',')) {
        const auto [k, v] = Param(member);
        const std::string what = absl::StrCat(header, " ", k);
        if (k == "limit") {
          item.limit = Units(v, what, s);
        } else if (k == "remaining") {
          item.remaining = Units(v, what, s);
        } else if (k == "reset") {
          item.reset_at = Reset(v, what, now, s);
        } else {
          Ignore(s, header,
                 absl::StrCat("not a quota member: ", absl::StripAsciiWhitespace(member)));
        }
      }
    }
    items.push_back(std::move(item));
    return items;
  }
  for (absl::string_view member : absl::StrSplit(value, ',')) {
    member = absl::StripAsciiWhitespace(member);
    std::vector<absl::string_view> parts = absl::StrSplit(member, ';');
    absl::string_view name = parts[0];
    if (!absl::ConsumePrefix(&name, "\"") || !absl::ConsumeSuffix(&name, "\"")) {
      Ignore(s, header, absl::StrCat("not a quota item: ", member));
      continue;
    }
    QuotaItem item;
    item.name = std::string(name);
    for (size_t i = 1; i < parts.size(); ++i) {
      const auto [k, v] = Param(parts[i]);
      const std::string what = absl::StrCat(header, " ", k);
      if (policy) {
        if (k == "q") item.limit = Units(v, what, s);
        if (k == "w") item.window = Seconds(v, what, s);
      } else {
        if (k == "r") item.remaining = Units(v, what, s);
        if (k == "t") item.reset_at = Reset(v, what, now, s);
      }
    }
    items.push_back(std::move(item));
  }
  return items;
}

// The IETF fields fill what the named headers left unset. With several quotas, the one with
// the least remaining speaks (it is the one that throttles first).
void ReadIetf(const Outcome& outcome, absl::Time now, ThrottleSignals* s) {
  std::optional<absl::string_view> field = outcome.Header("ratelimit");
  if (!field) return;
  std::vector<QuotaItem> items = ParseQuotaField("ratelimit", *field, false, now, s);
  const QuotaItem* tight = nullptr;
  for (const QuotaItem& item : items) {
    if (tight == nullptr ||
        (item.remaining && (!tight->remaining || *item.remaining < *tight->remaining))) {
      tight = &item;
    }
  }
  if (tight == nullptr) return;
  if (!s->remaining) s->remaining = tight->remaining;
  if (!s->limit) s->limit = tight->limit;
  if (!s->reset_at) s->reset_at = tight->reset_at;
  if (std::optional<absl::string_view> p = outcome.Header("ratelimit-policy")) {
    for (const QuotaItem& q : ParseQuotaField("ratelimit-policy", *p, true, now, s)) {
      if (q.name != tight->name) continue;
      if (!s->limit) s->limit = q.limit;
      if (!s->window) s->window = q.window;
    }
  }
}

}  // namespace

absl::string_view ResetFormName(ResetForm form) {
  switch (form) {
    case ResetForm::kDeltaSeconds:
      return "delta_seconds";
    case ResetForm::kUnixSeconds:
      return "unix_seconds";
    case ResetForm::kDate:
      return "date";
  }
  return "delta_seconds";
}

std::optional<ResetForm> ParseResetForm(absl::string_view name) {
  for (ResetForm f : {ResetForm::kDeltaSeconds, ResetForm::kUnixSeconds, ResetForm::kDate}) {
    if (name == ResetFormName(f)) return f;
  }
  return std::nullopt;
}

ParsedTime ParseResetValue(absl::string_view value, ResetForm form, absl::Time now) {
  value = absl::StripAsciiWhitespace(value);
  ParsedTime out;
  if (value.empty()) {
    out.error = "empty";
    return out;
  }
  absl::Time at;
  switch (form) {
    case ResetForm::kDeltaSeconds: {
      const std::optional<double> d = ParseUnits(value, &out.error);
      if (!d) return out;
      at = now + absl::Seconds(*d);
      break;
    }
    case ResetForm::kUnixSeconds: {
      const std::optional<double> d = ParseUnits(value, &out.error);
      if (!d) return out;
      at = absl::UnixEpoch() + absl::Seconds(*d);
      break;
    }
    case ResetForm::kDate: {
      const std::optional<absl::Time> t = ParseDate(value);
      if (!t) {
        out.error = "not a date";
        return out;
      }
      at = *t;
      break;
    }
  }
  // A clock a second apart from the upstream's must not turn "now" into "in the past".
  if (at < now - absl::Seconds(1)) {
    out.error = "in the past";
  } else if (at > now + kFarAhead) {
    out.error = "too far ahead";
  } else {
    out.at = std::max(at, now);
  }
  return out;
}

ThrottleSignals ReadThrottleSignals(const Outcome& outcome, const ThrottleHeaders& headers,
                                    absl::Time now) {
  ThrottleSignals s;
  if (headers.retry_after) {
    if (std::optional<absl::string_view> v = outcome.Header("retry-after")) {
      if (std::optional<absl::Duration> d = ParseRetryAfter(*v, now)) {
        s.retry_after_at = now + *d;
      } else {
        Ignore(&s, "retry-after", "neither delta-seconds nor an HTTP-date");
      }
    }
  }
  for (const ResetHeader& h : headers.reset) {
    std::optional<absl::string_view> v = outcome.Header(h.name);
    if (!v) continue;
    ParsedTime t = ParseResetValue(*v, h.form, now);
    if (!t.at) {
      Ignore(&s, h.name, t.error);
      continue;
    }
    s.reset_at = t.at;
    break;
  }
  const auto first_units = [&](const std::vector<std::string>& names) -> std::optional<double> {
    for (const std::string& name : names) {
      std::optional<absl::string_view> v = outcome.Header(name);
      if (!v) continue;
      if (std::optional<double> d = Units(*v, name, &s)) return d;
    }
    return std::nullopt;
  };
  // A remaining quota below zero is real: Canvas's bucket fills past its high-water mark (up to
  // its maximum), and X-Rate-Limit-Remaining is the high-water mark less the bucket's level
  // (app/middleware/request_throttle.rb, `remaining`). Nothing is left: 0.
  for (const std::string& name : headers.remaining) {
    std::optional<absl::string_view> v = outcome.Header(name);
    if (!v) continue;
    if (IsNegativeDecimal(absl::StripAsciiWhitespace(*v))) {
      s.remaining = 0;
      break;
    }
    if (std::optional<double> d = Units(*v, name, &s)) {
      s.remaining = d;
      break;
    }
  }
  s.limit = first_units(headers.limit);
  s.cost = first_units(headers.cost);
  if (headers.ietf) ReadIetf(outcome, now, &s);
  return s;
}

}  // namespace rebound::policy
