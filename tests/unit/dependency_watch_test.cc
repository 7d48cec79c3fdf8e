#include "services/common/dependency_watch.h"

#include <atomic>
#include <future>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/health.h"

namespace stip {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// A dependency whose answer the test decides.
struct FakeDependency {
  std::atomic<bool> up{true};
  std::atomic<int> calls{0};

  DependencyCheck Check(std::string name) {
    return {std::move(name), [this] {
              ++calls;
              return up.load() ? absl::OkStatus() : absl::UnavailableError("does not answer");
            }};
  }
};

// Waits up to `timeout` for `predicate`; whether it held.
template <typename Predicate>
bool Eventually(Predicate predicate, absl::Duration timeout = absl::Seconds(60)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!predicate()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

TEST(DependencyWatchTest, NotServingWhileEitherCheckFailsAndServingOnceBothPass) {
  HealthReporter health;
  std::vector<bool> seen;
  HealthReporter::Subscription subscription =
      health.Subscribe([&seen](bool serving) { seen.push_back(serving); });
  FakeDependency kafka;
  FakeDependency database;
  DependencyWatch watch(&health, {kafka.Check("kafka"), database.Check("database")},
                        absl::Hours(1));

  watch.CheckAll();
  EXPECT_TRUE(health.serving());
  EXPECT_EQ(kafka.calls.load(), 1);
  EXPECT_EQ(database.calls.load(), 1);

  kafka.up = false;
  watch.CheckAll();
  EXPECT_FALSE(health.serving());
  EXPECT_THAT(health.NotServingReasons(), ElementsAre("kafka"));

  database.up = false;
  watch.CheckAll();
  EXPECT_THAT(health.NotServingReasons(), ElementsAre("database", "kafka"));

  kafka.up = true;
  watch.CheckAll();
  EXPECT_FALSE(health.serving());  // the database still fails
  EXPECT_THAT(health.NotServingReasons(), ElementsAre("database"));

  watch.CheckAll();  // nothing changed: still not serving, nothing reported twice
  EXPECT_FALSE(health.serving());

  database.up = true;
  watch.CheckAll();
  EXPECT_TRUE(health.serving());
  EXPECT_THAT(health.NotServingReasons(), IsEmpty());

  // The subscriber saw: the initial state, the first failure, the recovery of both.
  EXPECT_THAT(seen, ElementsAre(true, false, true));
  EXPECT_EQ(kafka.calls.load(), 6);
  EXPECT_EQ(database.calls.load(), 6);
}

TEST(DependencyWatchTest, AFailingFirstCheckHoldsReadinessBack) {
  HealthReporter health;
  FakeDependency kafka;
  kafka.up = false;
  DependencyWatch watch(&health, {kafka.Check("kafka")}, absl::Hours(1));
  watch.CheckAll();
  EXPECT_FALSE(health.serving());
  EXPECT_THAT(health.NotServingReasons(), ElementsAre("kafka"));
}

TEST(DependencyWatchTest, DoesNotClearReasonsItDoesNotOwn) {
  HealthReporter health;
  health.SetServing(false, "draining");
  FakeDependency kafka;
  DependencyWatch watch(&health, {kafka.Check("kafka")}, absl::Hours(1));
  kafka.up = false;
  watch.CheckAll();
  kafka.up = true;
  watch.CheckAll();
  EXPECT_FALSE(health.serving());
  EXPECT_THAT(health.NotServingReasons(), ElementsAre("draining"));
}

TEST(DependencyWatchTest, RunNoticesAFlipWithoutBeingAsked) {
  HealthReporter health;
  FakeDependency kafka;
  FakeDependency database;
  DependencyWatch watch(&health, {kafka.Check("kafka"), database.Check("database")},
                        absl::Milliseconds(20));
  std::future<absl::Status> run = std::async(std::launch::async, [&watch] { return watch.Run(); });

  // Run checks at once, then every interval.
  EXPECT_TRUE(Eventually([&] { return kafka.calls.load() >= 3; }));
  EXPECT_TRUE(health.serving());

  database.up = false;
  EXPECT_TRUE(Eventually([&] { return !health.serving(); }));
  EXPECT_THAT(health.NotServingReasons(), ElementsAre("database"));

  database.up = true;
  EXPECT_TRUE(Eventually([&] { return health.serving(); }));

  watch.Stop();
  ASSERT_EQ(run.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_TRUE(run.get().ok());
}

TEST(DependencyWatchTest, StopReturnsRunPromptlyAndIsIdempotent) {
  HealthReporter health;
  FakeDependency kafka;
  // An interval far longer than the test: Run must not sleep it out.
  DependencyWatch watch(&health, {kafka.Check("kafka")}, absl::Hours(1));
  std::future<absl::Status> run = std::async(std::launch::async, [&watch] { return watch.Run(); });
  ASSERT_TRUE(Eventually([&] { return kafka.calls.load() >= 1; }));

  watch.Stop();
  // Far less than the hour it would sleep out, however loaded the machine.
  ASSERT_EQ(run.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_TRUE(run.get().ok());
  EXPECT_EQ(kafka.calls.load(), 1);

  watch.Stop();  // again, and from another thread: no crash, no hang
  std::async(std::launch::async, [&watch] { watch.Stop(); }).get();
}

TEST(DependencyWatchTest, StopBeforeRunMakesRunReturnAfterOneRound) {
  HealthReporter health;
  FakeDependency kafka;
  DependencyWatch watch(&health, {kafka.Check("kafka")}, absl::Hours(1));
  watch.Stop();
  std::future<absl::Status> run = std::async(std::launch::async, [&watch] { return watch.Run(); });
  ASSERT_EQ(run.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_TRUE(run.get().ok());
  EXPECT_LE(kafka.calls.load(), 1);
}

}  // namespace
}  // namespace stip
