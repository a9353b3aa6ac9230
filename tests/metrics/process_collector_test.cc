#include "server/metrics/process_collector.h"

#include <fcntl.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "prometheus/metric_family.h"

namespace rebound::metrics {
namespace {

using ::prometheus::MetricType;

TEST(ProcessCollector, ReportsPlausibleValuesForThisProcess) {
  // Burn a little CPU so the counter is visibly non-negative and finite.
  volatile double x = 0;
  for (int i = 0; i < 2'000'000; ++i) x = x + i * 0.5;

  const ProcessStats s = ReadProcessStats();
  ASSERT_TRUE(s.cpu_seconds.has_value());
  ASSERT_TRUE(s.resident_memory_bytes.has_value());
  ASSERT_TRUE(s.virtual_memory_bytes.has_value());
  ASSERT_TRUE(s.open_fds.has_value());
  ASSERT_TRUE(s.max_fds.has_value());
  ASSERT_TRUE(s.start_time_seconds.has_value());

  EXPECT_GE(*s.cpu_seconds, 0);
  EXPECT_LT(*s.cpu_seconds, 3600);
  EXPECT_GT(*s.resident_memory_bytes, 1024 * 1024);
  EXPECT_GE(*s.virtual_memory_bytes, *s.resident_memory_bytes);
  EXPECT_GE(*s.open_fds, 3);  // stdin, stdout, stderr at least
  EXPECT_GE(*s.max_fds, *s.open_fds);
  const double now = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  EXPECT_LE(*s.start_time_seconds, now + 1);
  EXPECT_GT(*s.start_time_seconds, now - 3600) << "started more than an hour ago?";
}

TEST(ProcessCollector, OpenFdsFollowsTheDescriptorsThisProcessHolds) {
  const double before = *ReadProcessStats().open_fds;
  std::vector<int> fds;
  for (int i = 0; i < 5; ++i) fds.push_back(open("/dev/null", O_RDONLY | O_CLOEXEC));
  const double during = *ReadProcessStats().open_fds;
  for (int fd : fds) close(fd);
  EXPECT_EQ(during, before + 5);
}

TEST(ProcessCollector, CollectNamesTheStandardFamiliesWithTheirTypes) {
  const std::map<std::string, MetricType> want = {
      {"process_cpu_seconds_total", MetricType::Counter},
      {"process_resident_memory_bytes", MetricType::Gauge},
      {"process_virtual_memory_bytes", MetricType::Gauge},
      {"process_open_fds", MetricType::Gauge},
      {"process_max_fds", MetricType::Gauge},
      {"process_start_time_seconds", MetricType::Gauge},
  };
  std::map<std::string, MetricType> got;
  for (const prometheus::MetricFamily& f : ProcessCollector().Collect()) {
    ASSERT_EQ(f.metric.size(), 1u) << f.name;
    EXPECT_TRUE(f.metric.front().label.empty()) << f.name;
    EXPECT_FALSE(f.help.empty()) << f.name;
    const double v = f.type == MetricType::Counter ? f.metric.front().counter.value
                                                   : f.metric.front().gauge.value;
    if (f.type == MetricType::Counter) {
      EXPECT_GE(v, 0) << f.name;  // CPU time may still be under one clock tick
    } else {
      EXPECT_GT(v, 0) << f.name;
    }
    got[f.name] = f.type;
  }
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace rebound::metrics
