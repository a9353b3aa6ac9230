#include "server/http/traceparent.h"

#include <random>
#include <string>

#include "absl/random/mock_distributions.h"
#include "absl/random/mocking_bit_gen.h"
#include "absl/random/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rebound::http {
namespace {

constexpr char kExample[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(Traceparent, ValidationTable) {
  struct Row {
    const char* text;
    bool valid;
  };
  const Row rows[] = {
      {kExample, true},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
      {"00-00000000000000000000000000000001-0000000000000001-ff", true},
      {"", false},
      {"00", false},
      // Wrong version (only 00 is understood; ff is forbidden by the spec).
      {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
      {"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
      // All-zero ids.
      {"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
      // Uppercase hex.
      {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", false},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A", false},
      // Not hex.
      {"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", false},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01", false},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-x1", false},
      // Wrong lengths and separators.
      {"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", false},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01", false},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", false},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", false},
      {"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01", false},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01", false},
      {" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
  };
  for (const Row& row : rows) {
    EXPECT_EQ(ValidTraceparent(row.text), row.valid) << '"' << row.text << '"';
  }
}

TEST(Traceparent, CorrelationIdIsTheTraceIdOfAValidHeaderOnly) {
  EXPECT_EQ(CorrelationIdFromTraceparent(kExample), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(CorrelationIdFromTraceparent("garbage"), "");
  EXPECT_EQ(CorrelationIdFromTraceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            "");
}

TEST(Traceparent, ChildKeepsTraceIdAndFlagsAndChangesTheParentId) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 100; ++i) {
    const std::string child = NewChildTraceparent(kExample, rng);
    ASSERT_TRUE(ValidTraceparent(child)) << child;
    EXPECT_EQ(child.substr(0, 36), std::string(kExample).substr(0, 36));
    EXPECT_NE(child.substr(36, 16), "00f067aa0ba902b7");
    EXPECT_EQ(child.substr(52), "-01");
    EXPECT_EQ(CorrelationIdFromTraceparent(child), CorrelationIdFromTraceparent(kExample));
  }
}

TEST(Traceparent, ChildNeverReusesTheParentIdOrZero) {
  // The generator first returns 0 (invalid) and then the parent's own id; both are skipped.
  absl::MockingBitGen gen;
  EXPECT_CALL(absl::MockUniform<uint64_t>(), Call(gen))
      .WillOnce(testing::Return(0))
      .WillOnce(testing::Return(0x00f067aa0ba902b7u))
      .WillOnce(testing::Return(0xabcu));
  EXPECT_EQ(NewChildTraceparent(kExample, gen),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01");
}

TEST(Traceparent, InvalidParentStartsANewValidTrace) {
  std::mt19937_64 rng(7);
  const std::string a = NewChildTraceparent("not a traceparent", rng);
  const std::string b = NewChildTraceparent("", rng);
  EXPECT_TRUE(ValidTraceparent(a)) << a;
  EXPECT_TRUE(ValidTraceparent(b)) << b;
  EXPECT_NE(CorrelationIdFromTraceparent(a), CorrelationIdFromTraceparent(b));
  EXPECT_EQ(a.substr(0, 3), "00-");
  EXPECT_EQ(a.substr(52), "-00");
}

TEST(Traceparent, RootTraceparentsAreValidAndDistinct) {
  std::mt19937_64 rng(1);
  const std::string a = NewRootTraceparent(rng);
  const std::string b = NewRootTraceparent(rng);
  EXPECT_TRUE(ValidTraceparent(a)) << a;
  EXPECT_TRUE(ValidTraceparent(b)) << b;
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace rebound::http
