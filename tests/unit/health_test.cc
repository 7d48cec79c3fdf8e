#include "services/common/health.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stip {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(HealthReporterTest, ServingUntilAReasonHoldsItBack) {
  HealthReporter health;
  EXPECT_TRUE(health.serving());
  health.SetServing(false, "kafka");
  EXPECT_FALSE(health.serving());
  health.SetServing(false, "draining");
  EXPECT_THAT(health.NotServingReasons(), ElementsAre("draining", "kafka"));
  health.SetServing(true, "kafka");
  EXPECT_FALSE(health.serving());  // still draining
  health.SetServing(true, "draining");
  EXPECT_TRUE(health.serving());
  EXPECT_THAT(health.NotServingReasons(), IsEmpty());
  health.SetServing(true, "never set");  // nothing to clear
  EXPECT_TRUE(health.serving());
}

TEST(HealthReporterTest, ListenersSeeTheCurrentStateAndEveryChange) {
  HealthReporter health;
  std::vector<bool> seen;
  {
    HealthReporter::Subscription subscription =
        health.Subscribe([&seen](bool serving) { seen.push_back(serving); });
    health.SetServing(false, "database");
    health.SetServing(false, "kafka");  // no change of state: not reported
    health.SetServing(true, "database");
    health.SetServing(true, "kafka");
    HealthReporter::Subscription moved = std::move(subscription);
    health.SetServing(false, "draining");
  }
  health.SetServing(true, "draining");  // unsubscribed
  EXPECT_THAT(seen, ElementsAre(true, false, true, false));
}

}  // namespace
}  // namespace stip
