#include "server/config/config.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <initializer_list>
#include <limits>
#include <memory>
#include <set>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "re2/re2.h"
#include "server/common/status_macros.h"
#include "server/policy/presets.h"
#include "yaml-cpp/yaml.h"

namespace rebound::config {
namespace {

constexpr size_t kMaxConfigBytes = 4 << 20;       // a config file is text written by a person
constexpr size_t kMaxSecretFileBytes = 64 << 10;  // a token or key, not a bundle

std::string Child(absl::string_view path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

std::string Index(absl::string_view path, size_t i) { return absl::StrCat(path, "[", i, "]"); }

// User text echoed in a message, escaped so a stray control character cannot forge log lines.
std::string Quote(absl::string_view s) { return absl::StrCat("'", absl::CHexEscape(s), "'"); }

// RFC 9110 token: the characters allowed in a header name.
bool IsToken(absl::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) continue;
    if (!absl::StrContains("!#$%&'*+-.^_`|~", c)) return false;
  }
  return true;
}

// Header values may hold visible characters, spaces and tabs; never CR, LF, NUL or other controls
// (they would split or truncate the request).
bool IsValidHeaderValue(absl::string_view s) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return false;
  }
  return true;
}

// Names become metric label values and appear in decisions: keep them plain.
bool IsPlainName(absl::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

bool HasSpaceOrControl(absl::string_view s) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return true;
  }
  return false;
}

bool HasDotDotSegment(absl::string_view path) {
  for (const absl::string_view segment : absl::StrSplit(path, '/')) {
    if (segment == "..") return true;
  }
  return false;
}

struct FileContents {
  int error = 0;  // errno of the failed open or read; 0 on success
  bool too_large = false;
  std::string data;
};

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

FileContents ReadBounded(const std::string& path, size_t limit) {
  FileContents result;
  errno = 0;
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) {
    result.error = errno != 0 ? errno : EIO;
    return result;
  }
  char buffer[8192];
  while (true) {
    const size_t n = std::fread(buffer, 1, sizeof(buffer), file.get());
    result.data.append(buffer, n);
    if (result.data.size() > limit) {
      result.too_large = true;
      return result;
    }
    if (n < sizeof(buffer)) {
      if (std::ferror(file.get())) result.error = errno != 0 ? errno : EIO;
      return result;
    }
  }
}

std::string ErrnoMessage(int error) { return std::generic_category().message(error); }

// A YAML mapping whose keys were checked against the schema: no unknown, duplicate or non-string
// keys. Lookups go through here rather than YAML::Node::operator[], which may insert.
class Mapping {
 public:
  Mapping(std::string path, std::vector<std::pair<std::string, YAML::Node>> entries)
      : path_(std::move(path)), entries_(std::move(entries)) {}

  const std::string& path() const { return path_; }
  std::string PathOf(absl::string_view key) const { return Child(path_, key); }

  // The value under `key`, or nullptr when the key is absent.
  const YAML::Node* Find(absl::string_view key) const {
    for (const auto& [k, v] : entries_) {
      if (k == key) return &v;
    }
    return nullptr;
  }

 private:
  std::string path_;
  std::vector<std::pair<std::string, YAML::Node>> entries_;
};

struct ParsedHeader {
  Header header;
  bool skipped = false;  // optional, and its env var or file is absent
};

enum class DurationRule { kPositive, kPositiveOrInfinite, kNonNegative };

// Turns a YAML document into a Config. Every method returns INVALID_ARGUMENT with
// "<source>: <key.path>: <problem>" on the first problem found. yaml-cpp may throw; the caller
// (ParseConfig) catches at the library edge.
class Parser {
 public:
  explicit Parser(std::string source) : source_(std::move(source)) {}

  absl::StatusOr<Config> Parse(absl::string_view yaml) const;

 private:
  absl::Status Error(absl::string_view path, absl::string_view problem) const {
    if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(source_, ": ", problem));
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", path, ": ", problem));
  }

  // Structure.
  absl::StatusOr<Mapping> AsMapping(const YAML::Node& node, const std::string& path,
                                    std::initializer_list<absl::string_view> allowed) const;
  absl::StatusOr<std::vector<YAML::Node>> AsSequence(const YAML::Node& node,
                                                     const std::string& path) const;
  absl::StatusOr<std::string> AsScalar(const YAML::Node& node, const std::string& path) const;
  // A scalar written without quotes: numbers and booleans must not be strings.
  absl::StatusOr<std::string> AsPlainScalar(const YAML::Node& node, const std::string& path,
                                            absl::string_view expected) const;
  absl::Status Require(const Mapping& m, absl::string_view key) const {
    if (m.Find(key) != nullptr) return absl::OkStatus();
    return Error(m.PathOf(key), "required key is missing");
  }

  // Optional fields: `*out` keeps its default when the key is absent.
  absl::Status String(const Mapping& m, absl::string_view key, std::string* out,
                      bool allow_empty = false) const;
  absl::Status Name(const Mapping& m, absl::string_view key, std::string* out) const;
  absl::Status Bool(const Mapping& m, absl::string_view key, bool* out) const;
  // A policy's retention of ended jobs ("inf": keep forever). A purged job takes its
  // idempotency key along, so a retention shorter than idempotency.retention would end
  // deduplication early: refused; left out, it is the default or idempotency.retention if
  // that is longer.
  absl::Status RetentionOf(const Mapping& m, absl::string_view key, absl::Duration key_retention,
                           absl::Duration* out) const;
  absl::Status Duration(const Mapping& m, absl::string_view key, DurationRule rule,
                        absl::Duration* out) const;
  // `allow_zero`: 0 is a meaningful value of the key (e.g. "no floor").
  template <typename T>
  absl::Status Count(const Mapping& m, absl::string_view key, T* out,
                     bool allow_zero = false) const;
  // A finite number written without quotes; range checks are the caller's.
  absl::Status Number(const Mapping& m, absl::string_view key, double* out) const;
  // A number in [0, 1], or (0, 1] when `lo_open` (a ratio); the message names the interval.
  absl::Status Fraction(const Mapping& m, absl::string_view key, bool lo_open, double* out) const;
  template <typename E>
  absl::Status Enum(const Mapping& m, absl::string_view key,
                    std::initializer_list<std::pair<absl::string_view, E>> choices, E* out) const;
  absl::StatusOr<std::shared_ptr<const RE2>> Regex(const YAML::Node& node,
                                                   const std::string& path) const;

  // Sections.
  absl::Status ParseServer(const YAML::Node& node, ServerConfig* out) const;
  absl::Status ParseStore(const YAML::Node& node, StoreConfig* out) const;
  absl::Status ParseLog(const YAML::Node& node, LogConfig* out) const;
  absl::Status ParseIdempotency(const YAML::Node& node, Config* out) const;
  absl::Status ParsePolicies(const YAML::Node& node, Config* out) const;
  // `key_retention`: idempotency.retention, the least a policy's retentions may be.
  absl::StatusOr<policy::Policy> ParsePolicy(const YAML::Node& node, const std::string& path,
                                             absl::Duration key_retention) const;
  absl::Status ParseBackoff(const YAML::Node& node, const std::string& path,
                            policy::Backoff* out) const;
  absl::Status ParseLimits(const YAML::Node& node, const std::string& path,
                           policy::Limits* out) const;
  // A rules list (a policy's or an endpoint's): each rule, names unique.
  absl::StatusOr<std::vector<policy::Rule>> ParseRules(const YAML::Node& node,
                                                       const std::string& path) const;
  absl::StatusOr<policy::Rule> ParseRule(const YAML::Node& node, const std::string& path,
                                         size_t index) const;
  absl::StatusOr<std::vector<policy::StatusRange>> ParseStatuses(const YAML::Node& node,
                                                                 const std::string& path) const;
  absl::Status ParseBudgets(const YAML::Node& node, Config* out) const;
  absl::StatusOr<BudgetConfig> ParseBudget(const YAML::Node& node, const std::string& path) const;
  absl::Status ParseQuota(const YAML::Node& node, const std::string& path, QuotaConfig* out) const;
  // A priority name (low, normal, high) under `key`.
  absl::Status PriorityOf(const Mapping& m, absl::string_view key, common::Priority* out) const;
  absl::Status ParseEndpoints(const YAML::Node& node, Config* out) const;
  absl::StatusOr<EndpointConfig> ParseEndpoint(const YAML::Node& node, const std::string& path,
                                               const Config& config) const;
  // Endpoint protection sections (config.h: CircuitBreakerConfig and the others).
  absl::Status ParseCircuitBreaker(const YAML::Node& node, const std::string& path,
                                   CircuitBreakerConfig* out) const;
  absl::Status ParseRetryBudget(const YAML::Node& node, const std::string& path,
                                RetryBudgetConfig* out) const;
  absl::Status ParseRateLimit(const YAML::Node& node, const std::string& path,
                              RateLimitConfig* out) const;
  // `rate` and `burst` of a rate_limit section or a budget.
  absl::Status RateAndBurst(const Mapping& m, RateLimitConfig* out) const;
  absl::Status ParseSlowStart(const YAML::Node& node, const std::string& path,
                              SlowStartConfig* out) const;
  absl::Status ParseThrottleHeaders(const YAML::Node& node, const std::string& path,
                                    policy::ThrottleHeaders* out) const;
  absl::Status ParsePacing(const YAML::Node& node, const std::string& path,
                           PacingConfig* out) const;
  // A response header name (an RFC 9110 token), lower-cased as Outcome headers are; an error at
  // `path` otherwise.
  absl::StatusOr<std::string> ResponseHeaderName(absl::string_view name,
                                                 const std::string& path) const;
  // A sequence of response header names.
  absl::StatusOr<std::vector<std::string>> HeaderNames(const YAML::Node& node,
                                                       const std::string& path) const;
  // http(s)://host[:port][/path] without user information, query or fragment; `allow_path`
  // false also refuses a path. Returned without trailing slashes.
  absl::StatusOr<std::string> ParseHttpUrl(const Mapping& m, absl::string_view key,
                                           bool allow_path) const;
  absl::StatusOr<ParsedHeader> ParseHeader(const YAML::Node& node, const std::string& path) const;

  std::string source_;
};

absl::StatusOr<Mapping> Parser::AsMapping(const YAML::Node& node, const std::string& path,
                                          std::initializer_list<absl::string_view> allowed) const {
  std::vector<std::pair<std::string, YAML::Node>> entries;
  // `key:` with nothing after it (or everything commented out) reads as an empty mapping.
  if (node.IsNull()) return Mapping(path, std::move(entries));
  if (!node.IsMap()) {
    return Error(path, path.empty() ? "the document must be a mapping" : "expected a mapping");
  }
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) return Error(path, "mapping keys must be strings");
    const std::string key = entry.first.Scalar();
    bool known = false;
    for (const absl::string_view k : allowed) known = known || k == key;
    if (!known) {
      return Error(
          path, absl::StrCat(path.empty() ? "unknown top-level key " : "unknown key ", Quote(key)));
    }
    for (const auto& [seen, unused] : entries) {
      if (seen == key) return Error(path, absl::StrCat("duplicate key ", Quote(key)));
    }
    entries.emplace_back(key, entry.second);
  }
  return Mapping(path, std::move(entries));
}

absl::StatusOr<std::vector<YAML::Node>> Parser::AsSequence(const YAML::Node& node,
                                                           const std::string& path) const {
  std::vector<YAML::Node> items;
  if (node.IsNull()) return items;
  if (!node.IsSequence()) return Error(path, "expected a list");
  for (const auto& item : node) items.push_back(item);
  return items;
}

absl::StatusOr<std::string> Parser::AsScalar(const YAML::Node& node,
                                             const std::string& path) const {
  if (node.IsNull()) return Error(path, "missing value");
  if (!node.IsScalar()) return Error(path, "expected a single value");
  return node.Scalar();
}

absl::StatusOr<std::string> Parser::AsPlainScalar(const YAML::Node& node, const std::string& path,
                                                  absl::string_view expected) const {
  REBOUND_ASSIGN_OR_RETURN(std::string text, AsScalar(node, path));
  // yaml-cpp tags quoted scalars "!" and plain ones "?".
  if (node.Tag() == "!") {
    return Error(path, absl::StrCat("expected ", expected, ", got the string ", Quote(text)));
  }
  return text;
}

absl::Status Parser::String(const Mapping& m, absl::string_view key, std::string* out,
                            bool allow_empty) const {
  const YAML::Node* node = m.Find(key);
  if (node == nullptr) return absl::OkStatus();
  REBOUND_ASSIGN_OR_RETURN(std::string text, AsScalar(*node, m.PathOf(key)));
  if (text.empty() && !allow_empty) return Error(m.PathOf(key), "must not be empty");
  *out = std::move(text);
  return absl::OkStatus();
}

absl::Status Parser::Name(const Mapping& m, absl::string_view key, std::string* out) const {
  std::string name;
  REBOUND_RETURN_IF_ERROR(String(m, key, &name));
  if (m.Find(key) == nullptr) return absl::OkStatus();
  if (name.size() > kMaxNameBytes) {
    return Error(m.PathOf(key), absl::StrCat("longer than ", kMaxNameBytes, " bytes"));
  }
  if (!IsPlainName(name)) {
    return Error(m.PathOf(key), absl::StrCat("invalid name ", Quote(name),
                                             " (letters, digits, '_', '-' and '.' only)"));
  }
  *out = std::move(name);
  return absl::OkStatus();
}

absl::Status Parser::Bool(const Mapping& m, absl::string_view key, bool* out) const {
  const YAML::Node* node = m.Find(key);
  if (node == nullptr) return absl::OkStatus();
  REBOUND_ASSIGN_OR_RETURN(const std::string text,
                           AsPlainScalar(*node, m.PathOf(key), "true or false"));
  // Only YAML 1.2's booleans: "yes", "on" and friends are too easy to write by accident.
  if (text == "true" || text == "True" || text == "TRUE") {
    *out = true;
  } else if (text == "false" || text == "False" || text == "FALSE") {
    *out = false;
  } else {
    return Error(m.PathOf(key), absl::StrCat("expected true or false, got ", Quote(text)));
  }
  return absl::OkStatus();
}

absl::Status Parser::RetentionOf(const Mapping& m, absl::string_view key,
                                 absl::Duration key_retention, absl::Duration* out) const {
  *out = std::max(*out, key_retention);
  if (m.Find(key) == nullptr) return absl::OkStatus();
  REBOUND_RETURN_IF_ERROR(Duration(m, key, DurationRule::kPositiveOrInfinite, out));
  if (*out < key_retention) {
    return Error(m.PathOf(key), absl::StrCat(absl::FormatDuration(*out),
                                             " is shorter than idempotency.retention (",
                                             absl::FormatDuration(key_retention),
                                             "): a purged job takes its idempotency key along"));
  }
  return absl::OkStatus();
}

absl::Status Parser::Duration(const Mapping& m, absl::string_view key, DurationRule rule,
                              absl::Duration* out) const {
  const YAML::Node* node = m.Find(key);
  if (node == nullptr) return absl::OkStatus();
  const std::string path = m.PathOf(key);
  REBOUND_ASSIGN_OR_RETURN(const std::string text, AsScalar(*node, path));
  absl::Duration d;
  if (!absl::ParseDuration(text, &d)) {
    return Error(path, absl::StrCat("invalid duration ", Quote(text),
                                    " (a number with a unit, e.g. '250ms', '30s', '1h')"));
  }
  const bool infinite = d == absl::InfiniteDuration() || d == -absl::InfiniteDuration();
  if (infinite && rule != DurationRule::kPositiveOrInfinite) {
    return Error(path, absl::StrCat("must be finite, got ", Quote(text)));
  }
  if (d < absl::ZeroDuration() ||
      (d == absl::ZeroDuration() && rule != DurationRule::kNonNegative)) {
    return Error(path, absl::StrCat("must be positive, got ", Quote(text)));
  }
  *out = d;
  return absl::OkStatus();
}

template <typename T>
absl::Status Parser::Count(const Mapping& m, absl::string_view key, T* out, bool allow_zero) const {
  const YAML::Node* node = m.Find(key);
  if (node == nullptr) return absl::OkStatus();
  const std::string path = m.PathOf(key);
  const absl::string_view expected = allow_zero ? "a non-negative integer" : "a positive integer";
  REBOUND_ASSIGN_OR_RETURN(const std::string text, AsPlainScalar(*node, path, expected));
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value)) {
    return Error(path, absl::StrCat("expected ", expected, ", got ", Quote(text)));
  }
  if (value < 0 || (value == 0 && !allow_zero)) {
    return Error(path, absl::StrCat("must be ", expected, ", got ", value));
  }
  if (static_cast<uint64_t>(value) > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
    return Error(
        path, absl::StrCat("too large: ", value, " (at most ", std::numeric_limits<T>::max(), ")"));
  }
  *out = static_cast<T>(value);
  return absl::OkStatus();
}

absl::Status Parser::Number(const Mapping& m, absl::string_view key, double* out) const {
  const YAML::Node* node = m.Find(key);
  if (node == nullptr) return absl::OkStatus();
  const std::string path = m.PathOf(key);
  REBOUND_ASSIGN_OR_RETURN(const std::string text, AsPlainScalar(*node, path, "a number"));
  double value = 0;
  if (!absl::SimpleAtod(text, &value) || !std::isfinite(value)) {
    return Error(path, absl::StrCat("expected a number, got ", Quote(text)));
  }
  *out = value;
  return absl::OkStatus();
}

absl::Status Parser::Fraction(const Mapping& m, absl::string_view key, bool lo_open,
                              double* out) const {
  double value = *out;
  REBOUND_RETURN_IF_ERROR(Number(m, key, &value));
  if (value > 1 || value < 0 || (lo_open && value == 0)) {
    return Error(m.PathOf(key),
                 absl::StrCat("must be in ", lo_open ? "(0, 1]" : "[0, 1]", ", got ", value));
  }
  *out = value;
  return absl::OkStatus();
}

template <typename E>
absl::Status Parser::Enum(const Mapping& m, absl::string_view key,
                          std::initializer_list<std::pair<absl::string_view, E>> choices,
                          E* out) const {
  const YAML::Node* node = m.Find(key);
  if (node == nullptr) return absl::OkStatus();
  REBOUND_ASSIGN_OR_RETURN(const std::string text, AsScalar(*node, m.PathOf(key)));
  std::vector<absl::string_view> names;
  for (const auto& [name, value] : choices) {
    if (name == text) {
      *out = value;
      return absl::OkStatus();
    }
    names.push_back(name);
  }
  return Error(m.PathOf(key), absl::StrCat("invalid value ", Quote(text), " (one of ",
                                           absl::StrJoin(names, ", "), ")"));
}

absl::StatusOr<std::shared_ptr<const RE2>> Parser::Regex(const YAML::Node& node,
                                                         const std::string& path) const {
  REBOUND_ASSIGN_OR_RETURN(const std::string pattern, AsScalar(node, path));
  if (pattern.empty()) return Error(path, "regex must not be empty");
  RE2::Options options;
  options.set_log_errors(false);  // the error goes into our message, not to stderr
  auto re = std::make_shared<const RE2>(pattern, options);
  if (!re->ok()) {
    return Error(path, absl::StrCat("invalid regex ", Quote(pattern), ": ", re->error()));
  }
  return re;
}

absl::StatusOr<Config> Parser::Parse(absl::string_view yaml) const {
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(std::string(yaml));
  } catch (const YAML::ParserException& e) {
    if (e.mark.is_null()) return Error("", absl::StrCat("invalid YAML: ", e.msg));
    return Error("", absl::StrCat("line ", e.mark.line + 1, ", column ", e.mark.column + 1,
                                  ": invalid YAML: ", e.msg));
  }
  if (documents.size() > 1) {
    return Error("", absl::StrCat("expected one YAML document, found ", documents.size()));
  }
  const YAML::Node root = documents.empty() ? YAML::Node() : documents[0];
  REBOUND_ASSIGN_OR_RETURN(const Mapping top, AsMapping(root, "",
                                                        {"server", "store", "log", "idempotency",
                                                         "policies", "budgets", "endpoints"}));

  Config config;
  config.source = source_;
  // Fixed order, whatever the file's order: endpoints refer to policies and the idempotency
  // header.
  if (const YAML::Node* n = top.Find("server")) {
    REBOUND_RETURN_IF_ERROR(ParseServer(*n, &config.server));
  }
  if (const YAML::Node* n = top.Find("store")) {
    REBOUND_RETURN_IF_ERROR(ParseStore(*n, &config.store));
  }
  if (const YAML::Node* n = top.Find("log")) {
    REBOUND_RETURN_IF_ERROR(ParseLog(*n, &config.log));
  }
  if (const YAML::Node* n = top.Find("idempotency")) {
    REBOUND_RETURN_IF_ERROR(ParseIdempotency(*n, &config));
  }
  const YAML::Node* policies = top.Find("policies");  // absent: only the built-in default
  REBOUND_RETURN_IF_ERROR(ParsePolicies(policies != nullptr ? *policies : YAML::Node(), &config));
  if (const YAML::Node* n = top.Find("budgets")) {
    REBOUND_RETURN_IF_ERROR(ParseBudgets(*n, &config));
  }
  if (const YAML::Node* n = top.Find("endpoints")) {
    REBOUND_RETURN_IF_ERROR(ParseEndpoints(*n, &config));
  }
  return config;
}

absl::Status Parser::ParseServer(const YAML::Node& node, ServerConfig* out) const {
  REBOUND_ASSIGN_OR_RETURN(
      const Mapping m,
      AsMapping(
          node, "server",
          {"grpc_listen", "metrics_listen", "default_tenant", "max_batch_size", "max_body_bytes",
           "max_headers", "max_header_bytes", "max_key_length", "max_labels", "max_active_jobs",
           "max_watchers", "max_watchers_per_tenant", "stream_window", "shutdown_grace"}));
  REBOUND_RETURN_IF_ERROR(String(m, "grpc_listen", &out->grpc_listen));
  REBOUND_RETURN_IF_ERROR(String(m, "metrics_listen", &out->metrics_listen));
  REBOUND_RETURN_IF_ERROR(String(m, "default_tenant", &out->default_tenant));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_batch_size", &out->max_batch_size));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_body_bytes", &out->max_body_bytes));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_headers", &out->max_headers));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_header_bytes", &out->max_header_bytes));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_key_length", &out->max_key_length));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_labels", &out->max_labels));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_active_jobs", &out->max_active_jobs));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_watchers", &out->max_watchers));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_watchers_per_tenant", &out->max_watchers_per_tenant));
  REBOUND_RETURN_IF_ERROR(Count(m, "stream_window", &out->stream_window));
  // Zero grace is meaningful: stop at once.
  REBOUND_RETURN_IF_ERROR(
      Duration(m, "shutdown_grace", DurationRule::kNonNegative, &out->shutdown_grace));
  return absl::OkStatus();
}

absl::Status Parser::ParseStore(const YAML::Node& node, StoreConfig* out) const {
  REBOUND_ASSIGN_OR_RETURN(const Mapping m, AsMapping(node, "store",
                                                      {"path", "synchronous", "max_batch",
                                                       "quick_check", "max_file_bytes"}));
  REBOUND_RETURN_IF_ERROR(String(m, "path", &out->path));
  REBOUND_RETURN_IF_ERROR(Enum<std::string>(
      m, "synchronous", {{"full", "full"}, {"normal", "normal"}}, &out->synchronous));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_batch", &out->max_batch));
  REBOUND_RETURN_IF_ERROR(Bool(m, "quick_check", &out->quick_check));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_file_bytes", &out->max_file_bytes));
  return absl::OkStatus();
}

absl::Status Parser::ParseLog(const YAML::Node& node, LogConfig* out) const {
  REBOUND_ASSIGN_OR_RETURN(const Mapping m,
                           AsMapping(node, "log", {"level", "max_lines_per_second"}));
  REBOUND_RETURN_IF_ERROR(Enum<std::string>(
      m, "level", {{"debug", "debug"}, {"info", "info"}, {"warn", "warn"}, {"error", "error"}},
      &out->level));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_lines_per_second", &out->max_lines_per_second));
  return absl::OkStatus();
}

absl::Status Parser::ParseIdempotency(const YAML::Node& node, Config* out) const {
  REBOUND_ASSIGN_OR_RETURN(const Mapping m,
                           AsMapping(node, "idempotency", {"retention", "header"}));
  REBOUND_RETURN_IF_ERROR(
      Duration(m, "retention", DurationRule::kPositive, &out->idempotency_retention));
  REBOUND_RETURN_IF_ERROR(String(m, "header", &out->idempotency_header));
  if (!IsToken(out->idempotency_header)) {
    return Error(m.PathOf("header"),
                 absl::StrCat("invalid header name ", Quote(out->idempotency_header)));
  }
  return absl::OkStatus();
}

absl::Status Parser::ParsePolicies(const YAML::Node& node, Config* out) const {
  const std::string path = "policies";
  REBOUND_ASSIGN_OR_RETURN(const std::vector<YAML::Node> items, AsSequence(node, path));
  for (size_t i = 0; i < items.size(); ++i) {
    REBOUND_ASSIGN_OR_RETURN(policy::Policy p,
                             ParsePolicy(items[i], Index(path, i), out->idempotency_retention));
    if (out->policies.count(p.name) != 0) {
      return Error(Child(Index(path, i), "name"), absl::StrCat("duplicate policy ", Quote(p.name)));
    }
    std::string name = p.name;
    out->policies.emplace(std::move(name), std::make_shared<const policy::Policy>(std::move(p)));
  }
  // Endpoints fall back to "default"; without one in the file, it is the built-in defaults.
  if (out->policies.count("default") == 0) {
    auto fallback = std::make_shared<policy::Policy>();
    fallback->name = "default";
    fallback->retention = std::max(fallback->retention, out->idempotency_retention);
    fallback->dead_letter_retention =
        std::max(fallback->dead_letter_retention, out->idempotency_retention);
    out->policies.emplace("default", std::move(fallback));
  }
  return absl::OkStatus();
}

absl::StatusOr<policy::Policy> Parser::ParsePolicy(const YAML::Node& node, const std::string& path,
                                                   absl::Duration key_retention) const {
  REBOUND_ASSIGN_OR_RETURN(
      const Mapping m, AsMapping(node, path,
                                 {"name", "backoff", "throttle_backoff", "limits",
                                  "body_match_bytes", "pause_endpoint_on_rate_limit", "retention",
                                  "dead_letter_retention", "rules", "priority"}));
  policy::Policy p;
  REBOUND_RETURN_IF_ERROR(Require(m, "name"));
  REBOUND_RETURN_IF_ERROR(Name(m, "name", &p.name));
  if (const YAML::Node* n = m.Find("backoff")) {
    REBOUND_RETURN_IF_ERROR(ParseBackoff(*n, m.PathOf("backoff"), &p.backoff));
  }
  if (const YAML::Node* n = m.Find("throttle_backoff")) {
    REBOUND_RETURN_IF_ERROR(ParseBackoff(*n, m.PathOf("throttle_backoff"), &p.throttle_backoff));
  }
  if (const YAML::Node* n = m.Find("limits")) {
    REBOUND_RETURN_IF_ERROR(ParseLimits(*n, m.PathOf("limits"), &p.limits));
  }
  REBOUND_RETURN_IF_ERROR(Count(m, "body_match_bytes", &p.body_match_bytes));
  REBOUND_RETURN_IF_ERROR(Bool(m, "pause_endpoint_on_rate_limit", &p.pause_endpoint_on_rate_limit));
  REBOUND_RETURN_IF_ERROR(RetentionOf(m, "retention", key_retention, &p.retention));
  REBOUND_RETURN_IF_ERROR(
      RetentionOf(m, "dead_letter_retention", key_retention, &p.dead_letter_retention));
  if (const YAML::Node* n = m.Find("rules")) {
    REBOUND_ASSIGN_OR_RETURN(p.rules, ParseRules(*n, m.PathOf("rules")));
  }
  REBOUND_RETURN_IF_ERROR(PriorityOf(m, "priority", &p.priority));
  return p;
}

absl::Status Parser::PriorityOf(const Mapping& m, absl::string_view key,
                                common::Priority* out) const {
  return Enum<common::Priority>(m, key,
                                {{"low", common::Priority::kLow},
                                 {"normal", common::Priority::kNormal},
                                 {"high", common::Priority::kHigh}},
                                out);
}

absl::Status Parser::ParseBudgets(const YAML::Node& node, Config* out) const {
  const std::string path = "budgets";
  REBOUND_ASSIGN_OR_RETURN(const std::vector<YAML::Node> items, AsSequence(node, path));
  if (items.size() > kMaxBudgets) {
    return Error(path,
                 absl::StrCat(items.size(), " budgets; one process serves at most ", kMaxBudgets));
  }
  for (size_t i = 0; i < items.size(); ++i) {
    REBOUND_ASSIGN_OR_RETURN(BudgetConfig budget, ParseBudget(items[i], Index(path, i)));
    if (out->FindBudget(budget.name) != nullptr) {
      return Error(Child(Index(path, i), "name"),
                   absl::StrCat("duplicate budget ", Quote(budget.name)));
    }
    out->budgets.push_back(std::move(budget));
  }
  return absl::OkStatus();
}

absl::StatusOr<BudgetConfig> Parser::ParseBudget(const YAML::Node& node,
                                                 const std::string& path) const {
  REBOUND_ASSIGN_OR_RETURN(
      const Mapping m,
      AsMapping(node, path, {"name", "rate", "burst", "max_in_flight", "quota", "split_by"}));
  BudgetConfig b;
  REBOUND_RETURN_IF_ERROR(Require(m, "name"));
  REBOUND_RETURN_IF_ERROR(Name(m, "name", &b.name));
  // rate and burst as in endpoints[].rate_limit, at the budget's top level.
  REBOUND_RETURN_IF_ERROR(RateAndBurst(m, &b.rate_limit));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_in_flight", &b.max_in_flight, /*allow_zero=*/true));
  if (const YAML::Node* n = m.Find("quota")) {
    REBOUND_RETURN_IF_ERROR(ParseQuota(*n, m.PathOf("quota"), &b.quota));
  }
  REBOUND_RETURN_IF_ERROR(String(m, "split_by", &b.split_by));
  if (b.rate_limit.rate == 0 && b.max_in_flight == 0 && b.quota.limit == 0) {
    return Error(path, "sets no limit: give rate, max_in_flight or quota");
  }
  return b;
}

absl::Status Parser::ParseQuota(const YAML::Node& node, const std::string& path,
                                QuotaConfig* out) const {
  REBOUND_ASSIGN_OR_RETURN(const Mapping m,
                           AsMapping(node, path, {"limit", "period", "offset", "reserve"}));
  REBOUND_RETURN_IF_ERROR(Require(m, "limit"));
  REBOUND_RETURN_IF_ERROR(Count(m, "limit", &out->limit));
  REBOUND_RETURN_IF_ERROR(Duration(m, "period", DurationRule::kPositive, &out->period));
  if (out->period < absl::Seconds(1)) {
    return Error(m.PathOf("period"),
                 absl::StrCat("must be at least 1s, got ", absl::FormatDuration(out->period)));
  }
  REBOUND_RETURN_IF_ERROR(Duration(m, "offset", DurationRule::kNonNegative, &out->offset));
  if (out->offset >= out->period) {
    return Error(m.PathOf("offset"), absl::StrCat("must be shorter than the period (",
                                                  absl::FormatDuration(out->period), "), got ",
                                                  absl::FormatDuration(out->offset)));
  }
  if (const YAML::Node* n = m.Find("reserve")) {
    REBOUND_ASSIGN_OR_RETURN(const Mapping r,
                             AsMapping(*n, m.PathOf("reserve"), {"normal", "high"}));
    double total = 0;
    for (const auto& [key, priority] : {std::pair{"normal", common::Priority::kNormal},
                                        std::pair{"high", common::Priority::kHigh}}) {
      double& share = out->reserve[static_cast<int>(priority)];
      REBOUND_RETURN_IF_ERROR(Fraction(r, key, /*lo_open=*/false, &share));
      total += share;
    }
    if (total >= 1) {
      return Error(m.PathOf("reserve"),
                   absl::StrCat("the reserves add up to ", total,
                                ": they must leave some of the quota to low priority (< 1)"));
    }
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseBackoff(const YAML::Node& node, const std::string& path,
                                  policy::Backoff* out) const {
  REBOUND_ASSIGN_OR_RETURN(const Mapping m,
                           AsMapping(node, path, {"initial", "max", "multiplier", "jitter"}));
  REBOUND_RETURN_IF_ERROR(Duration(m, "initial", DurationRule::kPositive, &out->initial));
  REBOUND_RETURN_IF_ERROR(Duration(m, "max", DurationRule::kPositive, &out->max));
  if (out->initial > out->max) {
    return Error(m.PathOf("initial"),
                 absl::StrCat("must not exceed max (", absl::FormatDuration(out->initial), " > ",
                              absl::FormatDuration(out->max), ")"));
  }
  if (m.Find("multiplier") != nullptr) {
    double value = 0;
    REBOUND_RETURN_IF_ERROR(Number(m, "multiplier", &value));
    if (value < 1.0) {
      return Error(m.PathOf("multiplier"),
                   absl::StrCat("must be at least 1 (1 keeps the delay constant), got ",
                                Quote(m.Find("multiplier")->Scalar())));
    }
    out->multiplier = value;
  }
  REBOUND_RETURN_IF_ERROR(Enum<policy::Jitter>(m, "jitter",
                                               {{"none", policy::Jitter::kNone},
                                                {"full", policy::Jitter::kFull},
                                                {"equal", policy::Jitter::kEqual},
                                                {"decorrelated", policy::Jitter::kDecorrelated}},
                                               &out->jitter));
  return absl::OkStatus();
}

absl::Status Parser::ParseLimits(const YAML::Node& node, const std::string& path,
                                 policy::Limits* out) const {
  REBOUND_ASSIGN_OR_RETURN(
      const Mapping m, AsMapping(node, path,
                                 {"max_attempts", "max_elapsed", "max_retry_after", "max_throttled",
                                  "count_throttles"}));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_attempts", &out->max_attempts));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_throttled", &out->max_throttled));
  REBOUND_RETURN_IF_ERROR(Bool(m, "count_throttles", &out->count_throttles));
  // "inf" is a deliberate "no time limit"; attempts still bound the job.
  REBOUND_RETURN_IF_ERROR(
      Duration(m, "max_elapsed", DurationRule::kPositiveOrInfinite, &out->max_elapsed));
  REBOUND_RETURN_IF_ERROR(
      Duration(m, "max_retry_after", DurationRule::kPositive, &out->max_retry_after));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<policy::Rule>> Parser::ParseRules(const YAML::Node& node,
                                                             const std::string& path) const {
  REBOUND_ASSIGN_OR_RETURN(const std::vector<YAML::Node> items, AsSequence(node, path));
  std::vector<policy::Rule> rules;
  std::set<std::string> names;
  for (size_t i = 0; i < items.size(); ++i) {
    REBOUND_ASSIGN_OR_RETURN(policy::Rule rule, ParseRule(items[i], Index(path, i), i));
    if (!names.insert(rule.name).second) {
      return Error(Child(Index(path, i), "name"),
                   absl::StrCat("duplicate rule ", Quote(rule.name)));
    }
    rules.push_back(std::move(rule));
  }
  return rules;
}

absl::StatusOr<policy::Rule> Parser::ParseRule(const YAML::Node& node, const std::string& path,
                                               size_t index) const {
  REBOUND_ASSIGN_OR_RETURN(const Mapping m,
                           AsMapping(node, path, {"name", "status", "body", "header", "action"}));
  policy::Rule rule;
  rule.name = Index("rules", index);
  REBOUND_RETURN_IF_ERROR(Name(m, "name", &rule.name));
  if (const YAML::Node* n = m.Find("status")) {
    REBOUND_ASSIGN_OR_RETURN(rule.statuses, ParseStatuses(*n, m.PathOf("status")));
  }
  if (const YAML::Node* n = m.Find("body")) {
    REBOUND_ASSIGN_OR_RETURN(rule.body_regex, Regex(*n, m.PathOf("body")));
  }
  if (const YAML::Node* n = m.Find("header")) {
    REBOUND_ASSIGN_OR_RETURN(const Mapping h, AsMapping(*n, m.PathOf("header"), {"name", "regex"}));
    REBOUND_RETURN_IF_ERROR(Require(h, "name"));
    std::string name;
    REBOUND_RETURN_IF_ERROR(String(h, "name", &name));
    REBOUND_ASSIGN_OR_RETURN(rule.header_name, ResponseHeaderName(name, h.PathOf("name")));
    if (const YAML::Node* r = h.Find("regex")) {
      REBOUND_ASSIGN_OR_RETURN(rule.header_regex, Regex(*r, h.PathOf("regex")));
    }
  }
  REBOUND_RETURN_IF_ERROR(Require(m, "action"));
  REBOUND_RETURN_IF_ERROR(Enum<policy::Action>(m, "action",
                                               {{"success", policy::Action::kSuccess},
                                                {"retry", policy::Action::kRetry},
                                                {"rate_limited", policy::Action::kRateLimited},
                                                {"permanent", policy::Action::kPermanent}},
                                               &rule.action));
  return rule;
}

absl::StatusOr<std::vector<policy::StatusRange>> Parser::ParseStatuses(
    const YAML::Node& node, const std::string& path) const {
  std::vector<YAML::Node> items;
  if (node.IsSequence()) {
    REBOUND_ASSIGN_OR_RETURN(items, AsSequence(node, path));
    if (items.empty()) return Error(path, "must not be empty (leave it out to match any status)");
  } else {
    items.push_back(node);  // `status: 503` as shorthand for `status: [503]`
  }
  std::vector<policy::StatusRange> ranges;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string item_path = node.IsSequence() ? Index(path, i) : path;
    REBOUND_ASSIGN_OR_RETURN(const std::string text, AsScalar(items[i], item_path));
    const std::pair<absl::string_view, absl::string_view> parts =
        absl::StrSplit(text, absl::MaxSplits('-', 1));
    const bool is_range = absl::StrContains(text, '-');
    int lo = 0;
    int hi = 0;
    if (!absl::SimpleAtoi(parts.first, &lo) || (is_range && !absl::SimpleAtoi(parts.second, &hi))) {
      return Error(item_path,
                   absl::StrCat("expected a status code or a range 'lo-hi', got ", Quote(text)));
    }
    if (!is_range) hi = lo;
    if (lo < 100 || hi > 599 || lo > hi) {
      return Error(item_path, absl::StrCat("invalid status ", Quote(text),
                                           " (codes are 100 to 599, lo <= hi)"));
    }
    ranges.push_back({lo, hi});
  }
  return ranges;
}

absl::Status Parser::ParseEndpoints(const YAML::Node& node, Config* out) const {
  const std::string path = "endpoints";
  REBOUND_ASSIGN_OR_RETURN(const std::vector<YAML::Node> items, AsSequence(node, path));
  if (items.size() > kMaxEndpoints) {
    return Error(
        path, absl::StrCat(items.size(), " endpoints; one process serves at most ", kMaxEndpoints));
  }
  for (size_t i = 0; i < items.size(); ++i) {
    REBOUND_ASSIGN_OR_RETURN(EndpointConfig endpoint,
                             ParseEndpoint(items[i], Index(path, i), *out));
    if (out->FindEndpoint(endpoint.name) != nullptr) {
      return Error(Child(Index(path, i), "name"),
                   absl::StrCat("duplicate endpoint ", Quote(endpoint.name)));
    }
    out->endpoints.push_back(std::move(endpoint));
  }
  return absl::OkStatus();
}

absl::StatusOr<EndpointConfig> Parser::ParseEndpoint(const YAML::Node& node,
                                                     const std::string& path,
                                                     const Config& config) const {
  REBOUND_ASSIGN_OR_RETURN(const Mapping m, AsMapping(node, path,
                                                      {"name",
                                                       "base_url",
                                                       "allowed_path_prefixes",
                                                       "connect_timeout",
                                                       "timeout",
                                                       "max_response_bytes",
                                                       "max_in_flight",
                                                       "policy",
                                                       "headers",
                                                       "proxy",
                                                       "circuit_breaker",
                                                       "retry_budget",
                                                       "rate_limit",
                                                       "slow_start",
                                                       "throttle_headers",
                                                       "pacing",
                                                       "preset",
                                                       "rules",
                                                       "budgets",
                                                       "fairness_label"}));
  EndpointConfig e;
  REBOUND_RETURN_IF_ERROR(Require(m, "name"));
  REBOUND_RETURN_IF_ERROR(Name(m, "name", &e.name));
  REBOUND_RETURN_IF_ERROR(Require(m, "base_url"));
  REBOUND_ASSIGN_OR_RETURN(e.base_url, ParseHttpUrl(m, "base_url", /*allow_path=*/true));
  if (m.Find("proxy") != nullptr) {
    REBOUND_ASSIGN_OR_RETURN(e.proxy, ParseHttpUrl(m, "proxy", /*allow_path=*/false));
  }

  REBOUND_RETURN_IF_ERROR(Require(m, "allowed_path_prefixes"));
  const std::string prefixes_path = m.PathOf("allowed_path_prefixes");
  REBOUND_ASSIGN_OR_RETURN(const std::vector<YAML::Node> prefixes,
                           AsSequence(*m.Find("allowed_path_prefixes"), prefixes_path));
  if (prefixes.empty()) {
    return Error(prefixes_path, "must list at least one prefix (use [/] to allow every path)");
  }
  for (size_t i = 0; i < prefixes.size(); ++i) {
    const std::string prefix_path = Index(prefixes_path, i);
    REBOUND_ASSIGN_OR_RETURN(std::string prefix, AsScalar(prefixes[i], prefix_path));
    if (!absl::StartsWith(prefix, "/") || absl::StartsWith(prefix, "//")) {
      return Error(prefix_path, absl::StrCat("must start with a single '/', got ", Quote(prefix)));
    }
    if (HasSpaceOrControl(prefix) || prefix.find_first_of("?#\\") != std::string::npos ||
        HasDotDotSegment(prefix)) {
      return Error(prefix_path,
                   absl::StrCat("invalid path prefix ", Quote(prefix),
                                " (no spaces, control characters, '?', '#', '\\' or '..')"));
    }
    e.allowed_path_prefixes.push_back(std::move(prefix));
  }

  REBOUND_RETURN_IF_ERROR(
      Duration(m, "connect_timeout", DurationRule::kPositive, &e.connect_timeout));
  REBOUND_RETURN_IF_ERROR(Duration(m, "timeout", DurationRule::kPositive, &e.timeout));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_response_bytes", &e.max_response_bytes));
  REBOUND_RETURN_IF_ERROR(Count(m, "max_in_flight", &e.max_in_flight));
  REBOUND_RETURN_IF_ERROR(String(m, "policy", &e.policy));
  if (config.FindPolicy(e.policy) == nullptr) {
    return Error(m.PathOf("policy"), absl::StrCat("unknown policy ", Quote(e.policy)));
  }
  if (const YAML::Node* n = m.Find("circuit_breaker")) {
    REBOUND_RETURN_IF_ERROR(
        ParseCircuitBreaker(*n, m.PathOf("circuit_breaker"), &e.circuit_breaker));
  }
  if (const YAML::Node* n = m.Find("retry_budget")) {
    REBOUND_RETURN_IF_ERROR(ParseRetryBudget(*n, m.PathOf("retry_budget"), &e.retry_budget));
  }
  if (const YAML::Node* n = m.Find("rate_limit")) {
    REBOUND_RETURN_IF_ERROR(ParseRateLimit(*n, m.PathOf("rate_limit"), &e.rate_limit));
  }
  if (const YAML::Node* n = m.Find("slow_start")) {
    REBOUND_RETURN_IF_ERROR(ParseSlowStart(*n, m.PathOf("slow_start"), &e.slow_start));
  }
  if (const YAML::Node* n = m.Find("throttle_headers")) {
    REBOUND_RETURN_IF_ERROR(
        ParseThrottleHeaders(*n, m.PathOf("throttle_headers"), &e.throttle_headers));
  }
  if (const YAML::Node* n = m.Find("pacing")) {
    REBOUND_RETURN_IF_ERROR(ParsePacing(*n, m.PathOf("pacing"), &e.pacing));
  }
  const policy::Preset* preset = nullptr;
  if (m.Find("preset") != nullptr) {
    REBOUND_RETURN_IF_ERROR(String(m, "preset", &e.preset));
    preset = policy::FindPreset(e.preset);
    if (preset == nullptr) {
      return Error(m.PathOf("preset"), absl::StrCat("unknown preset ", Quote(e.preset), " (want ",
                                                    policy::PresetNames(), ")"));
    }
    if (m.Find("throttle_headers") == nullptr) e.throttle_headers = preset->throttle_headers;
    const YAML::Node* pacing = m.Find("pacing");
    if (pacing == nullptr || !(*pacing)["start_in_flight"]) {
      e.pacing.start_in_flight = preset->start_in_flight;
    }
  }
  if (const YAML::Node* n = m.Find("rules")) {
    REBOUND_ASSIGN_OR_RETURN(e.rules, ParseRules(*n, m.PathOf("rules")));
  }
  if (preset != nullptr) e.rules.insert(e.rules.end(), preset->rules.begin(), preset->rules.end());
  if (const YAML::Node* n = m.Find("budgets")) {
    const std::string budgets_path = m.PathOf("budgets");
    REBOUND_ASSIGN_OR_RETURN(const std::vector<YAML::Node> items, AsSequence(*n, budgets_path));
    for (size_t i = 0; i < items.size(); ++i) {
      REBOUND_ASSIGN_OR_RETURN(std::string name, AsScalar(items[i], Index(budgets_path, i)));
      if (config.FindBudget(name) == nullptr) {
        return Error(Index(budgets_path, i),
                     absl::StrCat("unknown budget ", Quote(name), " (budgets[] must define it)"));
      }
      if (std::find(e.budgets.begin(), e.budgets.end(), name) != e.budgets.end()) {
        return Error(Index(budgets_path, i), absl::StrCat("budget ", Quote(name), " named twice"));
      }
      e.budgets.push_back(std::move(name));
    }
  }
  REBOUND_RETURN_IF_ERROR(String(m, "fairness_label", &e.fairness_label));

  if (const YAML::Node* n = m.Find("headers")) {
    const std::string headers_path = m.PathOf("headers");
    REBOUND_ASSIGN_OR_RETURN(const std::vector<YAML::Node> items, AsSequence(*n, headers_path));
    std::set<std::string> seen;
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string header_path = Index(headers_path, i);
      REBOUND_ASSIGN_OR_RETURN(ParsedHeader parsed, ParseHeader(items[i], header_path));
      // Checked for skipped optional headers too, so a config's validity does not depend on the
      // environment.
      const std::string& name = parsed.header.name;
      const std::string lower = absl::AsciiStrToLower(name);
      if (lower == absl::AsciiStrToLower(config.idempotency_header)) {
        return Error(
            Child(header_path, "name"),
            absl::StrCat(Quote(name), " is the idempotency header, set from each job's key"));
      }
      if (lower == "host" || lower == "content-length" || lower == "transfer-encoding" ||
          lower == "connection") {
        return Error(Child(header_path, "name"),
                     absl::StrCat(Quote(name), " is set by the HTTP client"));
      }
      if (!seen.insert(lower).second) {
        return Error(Child(header_path, "name"), absl::StrCat("duplicate header ", Quote(name)));
      }
      if (!parsed.skipped) e.headers.push_back(std::move(parsed.header));
    }
  }
  return e;
}

absl::Status Parser::ParseCircuitBreaker(const YAML::Node& node, const std::string& path,
                                         CircuitBreakerConfig* out) const {
  REBOUND_ASSIGN_OR_RETURN(
      const Mapping m,
      AsMapping(node, path,
                {"enabled", "failure_ratio", "min_requests", "window", "open_duration",
                 "max_open_duration", "half_open_probes", "count_throttles"}));
  REBOUND_RETURN_IF_ERROR(Bool(m, "enabled", &out->enabled));
  REBOUND_RETURN_IF_ERROR(Fraction(m, "failure_ratio", /*lo_open=*/true, &out->failure_ratio));
  REBOUND_RETURN_IF_ERROR(Count(m, "min_requests", &out->min_requests));
  REBOUND_RETURN_IF_ERROR(Duration(m, "window", DurationRule::kPositive, &out->window));
  REBOUND_RETURN_IF_ERROR(
      Duration(m, "open_duration", DurationRule::kPositive, &out->open_duration));
  REBOUND_RETURN_IF_ERROR(
      Duration(m, "max_open_duration", DurationRule::kPositive, &out->max_open_duration));
  if (out->max_open_duration < out->open_duration) {
    // Name the key the file set: a long open_duration alone conflicts with the default cap.
    const bool max_set = m.Find("max_open_duration") != nullptr;
    return Error(
        m.PathOf(max_set ? "max_open_duration" : "open_duration"),
        absl::StrCat("max_open_duration (", absl::FormatDuration(out->max_open_duration),
                     max_set ? "" : ", the default", ") must not be shorter than open_duration (",
                     absl::FormatDuration(out->open_duration), ")"));
  }
  REBOUND_RETURN_IF_ERROR(Count(m, "half_open_probes", &out->half_open_probes));
  REBOUND_RETURN_IF_ERROR(Bool(m, "count_throttles", &out->count_throttles));
  return absl::OkStatus();
}

absl::Status Parser::ParseRetryBudget(const YAML::Node& node, const std::string& path,
                                      RetryBudgetConfig* out) const {
  REBOUND_ASSIGN_OR_RETURN(const Mapping m,
                           AsMapping(node, path, {"enabled", "ratio", "min_retries"}));
  REBOUND_RETURN_IF_ERROR(Bool(m, "enabled", &out->enabled));
  REBOUND_RETURN_IF_ERROR(Fraction(m, "ratio", /*lo_open=*/false, &out->ratio));
  REBOUND_RETURN_IF_ERROR(Count(m, "min_retries", &out->min_retries, /*allow_zero=*/true));
  return absl::OkStatus();
}

absl::Status Parser::ParseRateLimit(const YAML::Node& node, const std::string& path,
                                    RateLimitConfig* out) const {
  REBOUND_ASSIGN_OR_RETURN(const Mapping m, AsMapping(node, path, {"rate", "burst"}));
  return RateAndBurst(m, out);
}

absl::Status Parser::RateAndBurst(const Mapping& m, RateLimitConfig* out) const {
  // A bucket refilled faster than this is no limit an LMS needs, and ceil(rate) stays an int.
  constexpr int kMaxRate = 1'000'000;
  REBOUND_RETURN_IF_ERROR(Number(m, "rate", &out->rate));
  if (out->rate < 0 || out->rate > kMaxRate) {
    return Error(m.PathOf("rate"), absl::StrCat("must be from 0 (no limit) to ", kMaxRate,
                                                " attempts per second, got ", out->rate));
  }
  REBOUND_RETURN_IF_ERROR(Count(m, "burst", &out->burst, /*allow_zero=*/true));
  if (out->rate > 0 && out->burst == 0) {
    out->burst = std::max(1, static_cast<int>(std::ceil(out->rate)));
  }
  return absl::OkStatus();
}

absl::Status Parser::ParsePacing(const YAML::Node& node, const std::string& path,
                                 PacingConfig* out) const {
  REBOUND_ASSIGN_OR_RETURN(const Mapping m, AsMapping(node, path,
                                                      {"enabled", "low_water", "low_water_ratio",
                                                       "min_in_flight", "start_in_flight"}));
  REBOUND_RETURN_IF_ERROR(Bool(m, "enabled", &out->enabled));
  if (m.Find("low_water") != nullptr) {
    REBOUND_RETURN_IF_ERROR(Number(m, "low_water", &out->low_water));
    if (out->low_water < 0) {
      return Error(m.PathOf("low_water"),
                   absl::StrCat("must not be negative (0: low_water_ratio of the limit), got ",
                                Quote(m.Find("low_water")->Scalar())));
    }
  }
  REBOUND_RETURN_IF_ERROR(Fraction(m, "low_water_ratio", /*lo_open=*/true, &out->low_water_ratio));
  REBOUND_RETURN_IF_ERROR(Count(m, "min_in_flight", &out->min_in_flight));
  REBOUND_RETURN_IF_ERROR(Count(m, "start_in_flight", &out->start_in_flight, /*allow_zero=*/true));
  return absl::OkStatus();
}

absl::Status Parser::ParseSlowStart(const YAML::Node& node, const std::string& path,
                                    SlowStartConfig* out) const {
  REBOUND_ASSIGN_OR_RETURN(const Mapping m, AsMapping(node, path, {"window"}));
  // "0s" turns it off.
  REBOUND_RETURN_IF_ERROR(Duration(m, "window", DurationRule::kNonNegative, &out->window));
  return absl::OkStatus();
}

absl::StatusOr<std::string> Parser::ResponseHeaderName(absl::string_view name,
                                                       const std::string& path) const {
  if (!IsToken(name)) return Error(path, absl::StrCat("invalid header name ", Quote(name)));
  return absl::AsciiStrToLower(name);
}

absl::StatusOr<std::vector<std::string>> Parser::HeaderNames(const YAML::Node& node,
                                                             const std::string& path) const {
  REBOUND_ASSIGN_OR_RETURN(const std::vector<YAML::Node> items, AsSequence(node, path));
  std::vector<std::string> names;
  for (size_t i = 0; i < items.size(); ++i) {
    REBOUND_ASSIGN_OR_RETURN(const std::string name, AsScalar(items[i], Index(path, i)));
    REBOUND_ASSIGN_OR_RETURN(std::string lower, ResponseHeaderName(name, Index(path, i)));
    names.push_back(std::move(lower));
  }
  return names;
}

absl::Status Parser::ParseThrottleHeaders(const YAML::Node& node, const std::string& path,
                                          policy::ThrottleHeaders* out) const {
  REBOUND_ASSIGN_OR_RETURN(
      const Mapping m,
      AsMapping(node, path, {"retry_after", "ietf", "reset", "remaining", "limit", "cost"}));
  REBOUND_RETURN_IF_ERROR(Bool(m, "retry_after", &out->retry_after));
  REBOUND_RETURN_IF_ERROR(Bool(m, "ietf", &out->ietf));
  // A list given replaces the default one ([] reads none).
  if (const YAML::Node* n = m.Find("reset")) {
    const std::string reset_path = m.PathOf("reset");
    REBOUND_ASSIGN_OR_RETURN(const std::vector<YAML::Node> items, AsSequence(*n, reset_path));
    out->reset.clear();
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string item_path = Index(reset_path, i);
      REBOUND_ASSIGN_OR_RETURN(const Mapping r, AsMapping(items[i], item_path, {"name", "form"}));
      REBOUND_RETURN_IF_ERROR(Require(r, "name"));
      REBOUND_RETURN_IF_ERROR(Require(r, "form"));
      policy::ResetHeader h;
      std::string name;
      REBOUND_RETURN_IF_ERROR(String(r, "name", &name));
      REBOUND_ASSIGN_OR_RETURN(h.name, ResponseHeaderName(name, r.PathOf("name")));
      std::string form;
      REBOUND_RETURN_IF_ERROR(String(r, "form", &form));
      const std::optional<policy::ResetForm> parsed = policy::ParseResetForm(form);
      if (!parsed) {
        return Error(r.PathOf("form"), absl::StrCat("unknown form ", Quote(form),
                                                    " (want delta_seconds, unix_seconds or date)"));
      }
      h.form = *parsed;
      out->reset.push_back(std::move(h));
    }
  }
  for (auto [key, list] : {std::pair{"remaining", &out->remaining}, std::pair{"limit", &out->limit},
                           std::pair{"cost", &out->cost}}) {
    if (const YAML::Node* n = m.Find(key)) {
      REBOUND_ASSIGN_OR_RETURN(*list, HeaderNames(*n, m.PathOf(key)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Parser::ParseHttpUrl(const Mapping& m, absl::string_view key,
                                                 bool allow_path) const {
  const std::string path = m.PathOf(key);
  std::string url;
  REBOUND_RETURN_IF_ERROR(String(m, key, &url));
  const auto invalid = [&](absl::string_view why) {
    return Error(path, absl::StrCat("invalid URL ", Quote(url), ": ", why));
  };
  if (HasSpaceOrControl(url) || absl::StrContains(url, '\\')) {
    return invalid("spaces, control characters and '\\' are not allowed");
  }
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return invalid("expected http://host or https://host");
  const std::string scheme = absl::AsciiStrToLower(url.substr(0, scheme_end));
  if (scheme != "http" && scheme != "https") return invalid("only http and https are allowed");
  if (absl::StrContains(url, '?')) return invalid("a query is not allowed");
  if (absl::StrContains(url, '#')) return invalid("a fragment is not allowed");

  const absl::string_view rest = absl::string_view(url).substr(scheme_end + 3);
  const size_t authority_end = std::min(rest.find('/'), rest.size());
  const absl::string_view authority = rest.substr(0, authority_end);
  absl::string_view base_path = rest.substr(authority_end);
  if (absl::StrContains(authority, '@')) return invalid("user information is not allowed");

  absl::string_view host = authority;
  absl::string_view port;
  bool has_port = false;
  if (absl::StartsWith(authority, "[")) {  // IPv6 literal
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) return invalid("unterminated IPv6 address");
    host = authority.substr(1, close - 1);
    const absl::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return invalid("unexpected text after the IPv6 address");
      has_port = true;
      port = after.substr(1);
    }
    if (host.empty() ||
        host.find_first_not_of("0123456789abcdefABCDEF:.") != absl::string_view::npos) {
      return invalid("invalid IPv6 address");
    }
  } else {
    const size_t colon = authority.rfind(':');
    if (colon != absl::string_view::npos) {
      has_port = true;
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
    if (host.empty()) return invalid("missing host");
    for (const char c : host) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') {
        return invalid("the host may hold only letters, digits, '-' and '.'");
      }
    }
  }
  if (has_port) {
    int port_number = 0;
    if (port.empty() || port.find_first_not_of("0123456789") != absl::string_view::npos ||
        !absl::SimpleAtoi(port, &port_number) || port_number < 1 || port_number > 65535) {
      return invalid("the port must be a number from 1 to 65535");
    }
  }
  if (HasDotDotSegment(base_path)) return invalid("'..' is not allowed in the path");
  while (absl::ConsumeSuffix(&base_path, "/")) {
  }
  if (!allow_path && !base_path.empty()) return invalid("a path is not allowed");
  return absl::StrCat(scheme, "://", authority, base_path);
}

absl::StatusOr<ParsedHeader> Parser::ParseHeader(const YAML::Node& node,
                                                 const std::string& path) const {
  REBOUND_ASSIGN_OR_RETURN(const Mapping m, AsMapping(node, path,
                                                      {"name", "value", "value_from_env",
                                                       "value_from_file", "secret", "optional"}));
  ParsedHeader parsed;
  Header& header = parsed.header;
  REBOUND_RETURN_IF_ERROR(Require(m, "name"));
  REBOUND_RETURN_IF_ERROR(String(m, "name", &header.name));
  if (!IsToken(header.name)) {
    return Error(m.PathOf("name"), absl::StrCat("invalid header name ", Quote(header.name)));
  }
  bool optional = false;
  REBOUND_RETURN_IF_ERROR(Bool(m, "secret", &header.secret));
  REBOUND_RETURN_IF_ERROR(Bool(m, "optional", &optional));

  const int sources = (m.Find("value") != nullptr) + (m.Find("value_from_env") != nullptr) +
                      (m.Find("value_from_file") != nullptr);
  if (sources != 1) {
    return Error(path, sources == 0
                           ? "one of value, value_from_env or value_from_file is required"
                           : "only one of value, value_from_env or value_from_file is allowed");
  }

  std::string source_key;
  if (m.Find("value") != nullptr) {
    source_key = "value";
    if (header.secret) {
      return Error(m.PathOf("value"),
                   "a secret header must use value_from_env or value_from_file; secrets never "
                   "belong in the config text");
    }
    if (m.Find("optional") != nullptr) {
      return Error(m.PathOf("optional"), "applies only to value_from_env and value_from_file");
    }
    REBOUND_RETURN_IF_ERROR(String(m, "value", &header.value, /*allow_empty=*/true));
  } else if (m.Find("value_from_env") != nullptr) {
    source_key = "value_from_env";
    std::string variable;
    REBOUND_RETURN_IF_ERROR(String(m, "value_from_env", &variable));
    const char* value = std::getenv(variable.c_str());
    if (value == nullptr || *value == '\0') {
      if (optional) {
        parsed.skipped = true;
        return parsed;
      }
      return Error(m.PathOf("value_from_env"),
                   absl::StrCat("environment variable ", Quote(variable),
                                " is not set or empty (add 'optional: true' to skip the header)"));
    }
    header.value = value;
  } else {
    source_key = "value_from_file";
    std::string file;
    REBOUND_RETURN_IF_ERROR(String(m, "value_from_file", &file));
    FileContents contents = ReadBounded(file, kMaxSecretFileBytes);
    if (contents.error == ENOENT && optional) {
      parsed.skipped = true;
      return parsed;
    }
    if (contents.error != 0) {
      return Error(m.PathOf("value_from_file"),
                   absl::StrCat("cannot read ", Quote(file), ": ", ErrnoMessage(contents.error)));
    }
    if (contents.too_large) {
      return Error(m.PathOf("value_from_file"),
                   absl::StrCat(Quote(file), " is larger than ", kMaxSecretFileBytes, " bytes"));
    }
    absl::string_view value = contents.data;
    // Files written by `echo` or editors end with a newline that is not part of the secret.
    while (absl::ConsumeSuffix(&value, "\n") || absl::ConsumeSuffix(&value, "\r")) {
    }
    if (value.empty()) {
      if (optional) {
        parsed.skipped = true;
        return parsed;
      }
      return Error(m.PathOf("value_from_file"), absl::StrCat(Quote(file), " is empty"));
    }
    header.value = std::string(value);
  }
  // The value is never echoed: it may be a secret.
  if (!IsValidHeaderValue(header.value)) {
    return Error(m.PathOf(source_key),
                 "the header value contains CR, LF, NUL or another control character");
  }
  return parsed;
}

}  // namespace

const EndpointConfig* Config::FindEndpoint(absl::string_view name) const {
  for (const EndpointConfig& endpoint : endpoints) {
    if (endpoint.name == name) return &endpoint;
  }
  return nullptr;
}

const BudgetConfig* Config::FindBudget(absl::string_view name) const {
  for (const BudgetConfig& budget : budgets) {
    if (budget.name == name) return &budget;
  }
  return nullptr;
}

std::shared_ptr<const policy::Policy> Config::FindPolicy(absl::string_view name) const {
  const auto it = policies.find(std::string(name));
  return it == policies.end() ? nullptr : it->second;
}

absl::StatusOr<Config> ParseConfig(absl::string_view yaml, absl::string_view source) {
  // The library edge: yaml-cpp reports through exceptions; nothing escapes from here.
  try {
    return Parser(std::string(source)).Parse(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.what()));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.what()));
  }
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  const FileContents contents = ReadBounded(path, kMaxConfigBytes);
  if (contents.error != 0) {
    return absl::ErrnoToStatus(contents.error,
                               absl::StrCat("cannot read config file ", Quote(path)));
  }
  if (contents.too_large) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": larger than ", kMaxConfigBytes, " bytes; is this a config file?"));
  }
  return ParseConfig(contents.data, path);
}

}  // namespace rebound::config
