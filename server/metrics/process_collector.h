// Standard process metrics (the names every Prometheus client library exports), read from /proc
// at scrape time:
//   process_cpu_seconds_total      counter  user + system CPU time (/proc/self/stat)
//   process_resident_memory_bytes  gauge    VmRSS (/proc/self/status)
//   process_virtual_memory_bytes   gauge    vsize (/proc/self/stat)
//   process_open_fds               gauge    entries of /proc/self/fd
//   process_max_fds                gauge    soft "Max open files" (/proc/self/limits)
//   process_start_time_seconds     gauge    Unix time the process started (/proc/self/stat
//                                           starttime + btime of /proc/stat)
// A value that cannot be read is left out of that scrape rather than reported as 0. Only values
// are produced here; the exposition format is prometheus-cpp's.
#ifndef REBOUND_SERVER_METRICS_PROCESS_COLLECTOR_H_
#define REBOUND_SERVER_METRICS_PROCESS_COLLECTOR_H_

#include <optional>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace rebound::metrics {

struct ProcessStats {
  std::optional<double> cpu_seconds;
  std::optional<double> resident_memory_bytes;
  std::optional<double> virtual_memory_bytes;
  std::optional<double> open_fds;
  std::optional<double> max_fds;  // +Inf when unlimited
  std::optional<double> start_time_seconds;
};

// Reads the current process' figures from /proc (each one independently).
ProcessStats ReadProcessStats();

// Thread-safe and stateless: Collect() may run on any exposer thread.
class ProcessCollector final : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

}  // namespace rebound::metrics

#endif  // REBOUND_SERVER_METRICS_PROCESS_COLLECTOR_H_
