#include "server/metrics/process_collector.h"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace rebound::metrics {
namespace {

std::optional<std::string> ReadFile(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return std::move(out).str();
}

// The value after "<key>" on the line of `text` that starts with it, e.g. "VmRSS:" -> "2016 kB".
std::optional<absl::string_view> LineValue(absl::string_view text, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&line, key)) return absl::StripAsciiWhitespace(line);
  }
  return std::nullopt;
}

std::optional<double> BootTimeSeconds() {
  const std::optional<std::string> stat = ReadFile("/proc/stat");
  if (!stat) return std::nullopt;
  const std::optional<absl::string_view> v = LineValue(*stat, "btime ");
  double btime = 0;
  if (!v || !absl::SimpleAtod(*v, &btime)) return std::nullopt;
  return btime;
}

void ReadStat(ProcessStats& stats) {
  const std::optional<std::string> text = ReadFile("/proc/self/stat");
  if (!text) return;
  // "pid (comm) state ppid ..."; comm may hold spaces and parentheses: split after the last ')'.
  const size_t close = text->rfind(')');
  if (close == std::string::npos) return;
  const std::vector<absl::string_view> f =
      absl::StrSplit(absl::string_view(*text).substr(close + 1), ' ', absl::SkipEmpty());
  // f[0] is field 3 (state): field n of proc(5) is f[n - 3].
  constexpr size_t kUtime = 14 - 3, kStime = 15 - 3, kStartTime = 22 - 3, kVsize = 23 - 3;
  if (f.size() <= kVsize) return;
  const long ticks = sysconf(_SC_CLK_TCK);
  if (ticks <= 0) return;
  uint64_t utime = 0, stime = 0, start = 0, vsize = 0;
  if (absl::SimpleAtoi(f[kUtime], &utime) && absl::SimpleAtoi(f[kStime], &stime)) {
    stats.cpu_seconds = static_cast<double>(utime + stime) / static_cast<double>(ticks);
  }
  if (absl::SimpleAtoi(f[kVsize], &vsize)) stats.virtual_memory_bytes = static_cast<double>(vsize);
  if (absl::SimpleAtoi(f[kStartTime], &start)) {
    if (const std::optional<double> boot = BootTimeSeconds()) {
      stats.start_time_seconds = *boot + static_cast<double>(start) / static_cast<double>(ticks);
    }
  }
}

void ReadStatus(ProcessStats& stats) {
  const std::optional<std::string> text = ReadFile("/proc/self/status");
  if (!text) return;
  const std::optional<absl::string_view> v = LineValue(*text, "VmRSS:");
  if (!v) return;
  absl::string_view number = *v;
  if (!absl::ConsumeSuffix(&number, "kB")) return;
  uint64_t kib = 0;
  if (absl::SimpleAtoi(absl::StripAsciiWhitespace(number), &kib)) {
    stats.resident_memory_bytes = static_cast<double>(kib) * 1024.0;
  }
}

void ReadFds(ProcessStats& stats) {
  std::error_code ec;
  std::filesystem::directory_iterator it("/proc/self/fd", ec);
  if (ec) return;
  double count = 0;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ec) return;
    ++count;
  }
  stats.open_fds = count;
}

void ReadLimits(ProcessStats& stats) {
  const std::optional<std::string> text = ReadFile("/proc/self/limits");
  if (!text) return;
  // "Max open files            20000                20000                files"
  const std::optional<absl::string_view> v = LineValue(*text, "Max open files");
  if (!v) return;
  const std::vector<absl::string_view> cols = absl::StrSplit(*v, ' ', absl::SkipEmpty());
  if (cols.empty()) return;
  if (cols[0] == "unlimited") {
    stats.max_fds = std::numeric_limits<double>::infinity();
    return;
  }
  uint64_t soft = 0;
  if (absl::SimpleAtoi(cols[0], &soft)) stats.max_fds = static_cast<double>(soft);
}

void AddFamily(std::vector<prometheus::MetricFamily>& out, const char* name, const char* help,
               prometheus::MetricType type, const std::optional<double>& value) {
  if (!value) return;
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = *value;
  } else {
    metric.gauge.value = *value;
  }
  family.metric.push_back(std::move(metric));
  out.push_back(std::move(family));
}

}  // namespace

ProcessStats ReadProcessStats() {
  ProcessStats stats;
  ReadStat(stats);
  ReadStatus(stats);
  ReadFds(stats);
  ReadLimits(stats);
  return stats;
}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  const ProcessStats s = ReadProcessStats();
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> out;
  AddFamily(out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
            MetricType::Counter, s.cpu_seconds);
  AddFamily(out, "process_resident_memory_bytes", "Resident memory size in bytes.",
            MetricType::Gauge, s.resident_memory_bytes);
  AddFamily(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge,
            s.virtual_memory_bytes);
  AddFamily(out, "process_open_fds", "Number of open file descriptors.", MetricType::Gauge,
            s.open_fds);
  AddFamily(out, "process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge,
            s.max_fds);
  AddFamily(out, "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.", MetricType::Gauge,
            s.start_time_seconds);
  return out;
}

}  // namespace rebound::metrics
