#include "services/common/shutdown.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stip {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Records the order steps ran in and the deadlines they were given.
struct StepLog {
  absl::Mutex mu;
  std::vector<std::string> names;
  std::vector<absl::Time> deadlines;

  ShutdownCoordinator::Step Step(std::string name, absl::Status result = absl::OkStatus()) {
    return [this, name, result](absl::Time deadline) {
      absl::MutexLock lock(&mu);
      names.push_back(name);
      deadlines.push_back(deadline);
      return result;
    };
  }
};

class ShutdownTest : public ::testing::Test {
 protected:
  // The signals are blocked before the coordinator's thread starts, as main does.
  void SetUp() override { BlockShutdownSignals(); }
};

TEST_F(ShutdownTest, SigtermRunsTheStepsInOrderWithinTheDeadline) {
  StepLog log;
  ShutdownCoordinator coordinator(absl::Seconds(5));
  coordinator.AddStep("health NOT_SERVING", log.Step("health"));
  coordinator.AddStep("stop processors", log.Step("processors"));
  coordinator.AddStep("flush publishers", log.Step("publishers"));
  coordinator.AddStep("gRPC server", log.Step("grpc"));
  coordinator.AddStep("metrics server", log.Step("metrics"));
  ASSERT_TRUE(coordinator.Start().ok());

  const absl::Time signalled = absl::Now();
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  EXPECT_TRUE(coordinator.WaitForShutdown().ok());
  const absl::Time done = absl::Now();

  EXPECT_TRUE(coordinator.shutdown_requested());
  EXPECT_THAT(log.names, ElementsAre("health", "processors", "publishers", "grpc", "metrics"));
  // No step waited out the 5 s deadline (the steps return at once; the margin is for load).
  EXPECT_LT(done - signalled, absl::Seconds(4));
  for (absl::Time deadline : log.deadlines) {
    // A reserve of a tenth of the timeout is kept for the steps after a slow one.
    EXPECT_GT(deadline, signalled + absl::Seconds(4));
    EXPECT_LE(deadline, signalled + absl::Milliseconds(4500) + (done - signalled));
  }
}

TEST_F(ShutdownTest, SigintWorksLikeSigterm) {
  StepLog log;
  ShutdownCoordinator coordinator(absl::Seconds(5));
  coordinator.AddStep("only", log.Step("only"));
  ASSERT_TRUE(coordinator.Start().ok());
  ASSERT_EQ(kill(getpid(), SIGINT), 0);
  EXPECT_TRUE(coordinator.WaitForShutdown().ok());
  EXPECT_THAT(log.names, ElementsAre("only"));
}

TEST_F(ShutdownTest, FailedStepIsReportedAndTheRestStillRun) {
  StepLog log;
  ShutdownCoordinator coordinator(absl::Seconds(5));
  coordinator.AddStep("a", log.Step("a"));
  coordinator.AddStep("b", log.Step("b", absl::DeadlineExceededError("processor x still running")));
  coordinator.AddStep("c", log.Step("c", absl::InternalError("second failure")));
  ASSERT_TRUE(coordinator.Start().ok());
  coordinator.RequestShutdown("test");
  const absl::Status status = coordinator.WaitForShutdown();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(log.names, ElementsAre("a", "b", "c"));
}

TEST_F(ShutdownTest, SighupCallsTheReloadCallbacksWithoutShuttingDown) {
  ShutdownCoordinator coordinator(absl::Seconds(5));
  absl::Notification reloaded;
  coordinator.OnReload([&reloaded] { reloaded.Notify(); });
  ASSERT_TRUE(coordinator.Start().ok());
  ASSERT_EQ(kill(getpid(), SIGHUP), 0);
  EXPECT_TRUE(reloaded.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_FALSE(coordinator.shutdown_requested());
}

TEST_F(ShutdownTest, StartRefusesWhenTheSignalsAreNotBlocked) {
  // On a thread of its own, whose mask we can change without touching the test's.
  absl::Status status;
  std::thread thread([&status] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    ShutdownCoordinator coordinator(absl::Seconds(1));
    status = coordinator.Start();
  });
  thread.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("BlockShutdownSignals"));
}

// An ExactlyOnceProcessor whose batch in hand takes `batch_time` to finish after Stop.
class FakeProcessor final : public ExactlyOnceProcessor {
 public:
  explicit FakeProcessor(absl::Duration batch_time, absl::Status result = absl::OkStatus())
      : batch_time_(batch_time), result_(std::move(result)) {}

  absl::Status Run() override {
    stop_.WaitForNotification();
    absl::SleepFor(batch_time_);
    committed_ = true;
    finished_ = absl::Now();
    return result_;
  }
  void Stop() override {
    absl::MutexLock lock(&mutex_);
    if (!stop_.HasBeenNotified()) {
      stop_requested_ = absl::Now();
      stop_.Notify();
    }
  }
  ProcessorCounters Counters() const override { return {}; }
  bool committed() const { return committed_; }
  // When Stop was first called and when Run finished its batch (after Run returned).
  absl::Time stop_requested() const {
    absl::MutexLock lock(&mutex_);
    return stop_requested_;
  }
  absl::Time finished() const { return finished_; }

 private:
  const absl::Duration batch_time_;
  const absl::Status result_;
  absl::Notification stop_;
  std::atomic<bool> committed_{false};
  mutable absl::Mutex mutex_;
  absl::Time stop_requested_ ABSL_GUARDED_BY(mutex_) = absl::InfiniteFuture();
  absl::Time finished_ = absl::InfinitePast();
};

TEST_F(ShutdownTest, StopProcessorsStepLetsThemFinishTheirBatches) {
  FakeProcessor first(absl::Milliseconds(100));
  FakeProcessor second(absl::Milliseconds(150));
  ProcessorThread first_thread("first", &first);
  ProcessorThread second_thread("second", &second);
  StepLog log;
  ShutdownCoordinator coordinator(absl::Seconds(5));
  coordinator.AddStep("health", log.Step("health"));
  coordinator.AddStep("stop processors", StopProcessorsStep({&first_thread, &second_thread}));
  coordinator.AddStep("grpc", log.Step("grpc"));
  ASSERT_TRUE(coordinator.Start().ok());
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  EXPECT_TRUE(coordinator.WaitForShutdown().ok());
  EXPECT_TRUE(first.committed());
  EXPECT_TRUE(second.committed());
  EXPECT_FALSE(first_thread.running());
  // Stopped together, not one after the other: each was asked to stop before the other
  // finished its batch (an order of events, so a loaded machine cannot make it fail).
  EXPECT_LT(second.stop_requested(), first.finished());
  EXPECT_LT(first.stop_requested(), second.finished());
  EXPECT_THAT(log.names, ElementsAre("health", "grpc"));
}

TEST_F(ShutdownTest, StopProcessorsStepNamesTheOnesStillRunningAtTheDeadline) {
  FakeProcessor slow(absl::Seconds(2));
  ProcessorThread slow_thread("slow", &slow);
  const absl::Status status =
      StopProcessorsStep({&slow_thread})(absl::Now() + absl::Milliseconds(100));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(status.message(), HasSubstr("slow"));
}

TEST_F(ShutdownTest, FailingProcessorRequestsShutdown) {
  FakeProcessor failing(absl::ZeroDuration(), absl::InternalError("fenced"));
  ShutdownCoordinator coordinator(absl::Seconds(5));
  ASSERT_TRUE(coordinator.Start().ok());
  ProcessorThread thread("assess", &failing, coordinator.RequestShutdownOnFailure("assess"));
  failing.Stop();  // Run returns its error at once
  EXPECT_TRUE(coordinator.WaitForShutdown().ok());
  EXPECT_TRUE(coordinator.shutdown_requested());
  EXPECT_EQ(thread.Wait(absl::Now() + absl::Seconds(1)).code(), absl::StatusCode::kInternal);
}

using ShutdownDeathTest = ShutdownTest;

TEST_F(ShutdownDeathTest, StepsOverrunningTheTimeoutEndTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        BlockShutdownSignals();
        ShutdownCoordinator coordinator(absl::Milliseconds(300));
        coordinator.AddStep("stuck", [](absl::Time) {
          absl::SleepFor(absl::Seconds(30));
          return absl::OkStatus();
        });
        if (!coordinator.Start().ok()) _exit(99);
        coordinator.RequestShutdown("test");
        (void)coordinator.WaitForShutdown();
        _exit(0);
      },
      ::testing::ExitedWithCode(kShutdownTimedOutExitCode), "");
}

TEST_F(ShutdownDeathTest, SecondSigtermForcesExit) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        BlockShutdownSignals();
        ShutdownCoordinator coordinator(absl::Seconds(30));
        coordinator.AddStep("slow", [](absl::Time) {
          kill(getpid(), SIGTERM);  // the operator loses patience
          absl::SleepFor(absl::Seconds(30));
          return absl::OkStatus();
        });
        if (!coordinator.Start().ok()) _exit(99);
        kill(getpid(), SIGTERM);
        (void)coordinator.WaitForShutdown();
        _exit(0);
      },
      ::testing::ExitedWithCode(128 + SIGTERM), "");
}

}  // namespace
}  // namespace stip
