// Designed shutdown (STYLE.md §5). On SIGTERM (or SIGINT) a service runs the steps its main
// registered, in order, each bounded by one deadline:
//
//   int main(int argc, char** argv) {
//     stip::BlockShutdownSignals();           // first, before any thread exists
//     ... parse flags, InitLogging ...
//     stip::ShutdownCoordinator shutdown(flags.shutdown_timeout);  // outlives what follows
//     stip::HealthReporter health;
//     auto metrics = stip::MetricsServer::Start(flags.admin_listen);
//     auto server = stip::StartGrpcServer(flags.grpc, {&service}, &health);
//     stip::ProcessorThread processor("assess", processor_ptr.get(),
//                                     shutdown.RequestShutdownOnFailure("assess"));
//     shutdown.AddStep("health NOT_SERVING", [&](absl::Time) {
//       health.SetServing(false, "draining");
//       return absl::OkStatus();
//     });
//     shutdown.AddStep("stop processors", stip::StopProcessorsStep({&processor}));
//     shutdown.AddStep("flush publishers", ...);
//     shutdown.AddStep("gRPC server", [&](absl::Time deadline) {
//       (*server)->Shutdown(deadline);
//       return absl::OkStatus();
//     });
//     shutdown.AddStep("metrics server", [&](absl::Time) {
//       metrics->reset();
//       return absl::OkStatus();
//     });
//     if (auto started = shutdown.Start(); !started.ok()) ...
//     return shutdown.WaitForShutdown().ok() ? 0 : 1;
//   }
//
// Bounds: the whole shutdown, from the signal to the end of the last step, takes at most
// `timeout`. Steps are given a deadline a little before it (timeout minus a reserve of a
// tenth, at most 1 s) so that the steps after one that used all its time still run. If the
// steps are not done by `timeout`, or a second SIGTERM/SIGINT arrives while they run, the
// process exits at once: _exit(kShutdownTimedOutExitCode) or _exit(128 + signal). A
// processor stopped that way has not committed its batch in hand; the batch is consumed
// again after the restart (the event log's delivery guarantees hold).
#pragma once

#include <pthread.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/event_log.h"
#include "services/common/runnable.h"

namespace stip {

// Exit code when the shutdown steps overran the timeout.
inline constexpr int kShutdownTimedOutExitCode = 70;

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread; threads created afterwards
// inherit the mask, so the signals are left to ShutdownCoordinator's signal thread (sigwait)
// and never interrupt another thread. Call first thing in main, before any thread is
// started (gRPC, librdkafka and spdlog start threads). Note that the mask is also inherited
// across fork and exec: a child process that should die by SIGTERM must unblock it.
void BlockShutdownSignals();

// Runs the shutdown steps. AddStep, OnReload and Start on the main thread before
// WaitForShutdown; RequestShutdown from any thread. Declare it before (so it is destroyed
// after) everything its steps refer to.
class ShutdownCoordinator {
 public:
  // A step is given the deadline by which it must return. Its error is logged and the next
  // step runs all the same.
  using Step = std::function<absl::Status(absl::Time deadline)>;

  explicit ShutdownCoordinator(absl::Duration timeout);
  // Stops the signal thread. Does not run the steps.
  ~ShutdownCoordinator();
  ShutdownCoordinator(const ShutdownCoordinator&) = delete;
  ShutdownCoordinator& operator=(const ShutdownCoordinator&) = delete;

  // Appends a step; steps run in the order they were added. Before Start().
  void AddStep(std::string name, Step step);
  // Called on the signal thread on every SIGHUP (re-read what can be re-read). Before Start().
  void OnReload(std::function<void()> callback);

  // Starts the signal thread. kFailedPrecondition when SIGTERM, SIGINT and SIGHUP are not
  // blocked in the calling thread (BlockShutdownSignals was not called first).
  absl::Status Start();

  // Begins the shutdown as a SIGTERM would, e.g. when a processor failed for good. Any
  // thread; non-blocking; later calls (and signals) while shutting down force no exit.
  void RequestShutdown(std::string_view reason);
  // A ProcessorThread exit callback: requests shutdown when the processor stopped with an
  // error, or stopped on its own before shutdown was requested.
  std::function<void(const absl::Status&)> RequestShutdownOnFailure(std::string name);

  // Blocks until shutdown is requested, then runs the steps in order on the calling thread,
  // logging each with its duration. Returns OK when every step succeeded, else the first
  // error. Call once, from main; the process is still bounded by the timeout until the
  // coordinator is destroyed.
  absl::Status WaitForShutdown();

  bool shutdown_requested() const;

 private:
  void SignalLoop();
  void ForceExit(int code, std::string_view why);

  const absl::Duration timeout_;
  std::vector<std::pair<std::string, Step>> steps_;
  std::vector<std::function<void()>> reload_callbacks_;

  mutable absl::Mutex mu_;
  bool requested_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time hard_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::string current_step_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::thread signal_thread_;
  pthread_t signal_thread_handle_{};
};

// Runs one Runnable's Run() (an ExactlyOnceProcessor, a relay) on a thread of its own,
// and stops it.
class ProcessorThread {
 public:
  // Starts processor->Run() (the processor outlives this object). `on_exit`, when set, is
  // called on that thread with Run's result when it returns, before Wait sees it.
  ProcessorThread(std::string name, Runnable* processor,
                  std::function<void(const absl::Status&)> on_exit = {});
  // Stop(), then joins: blocks until Run returns.
  ~ProcessorThread();
  ProcessorThread(const ProcessorThread&) = delete;
  ProcessorThread& operator=(const ProcessorThread&) = delete;

  const std::string& name() const { return name_; }
  // Asks the processor to stop after the batch in hand. Non-blocking; any thread.
  void Stop();
  // Blocks until Run has returned (its result) or `deadline` passes (kDeadlineExceeded).
  absl::Status Wait(absl::Time deadline);
  bool running() const;

 private:
  const std::string name_;
  Runnable* const processor_;
  std::function<void(const absl::Status&)> on_exit_;
  mutable absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status result_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // last: starts once the fields above exist
};

// A step that asks every processor to stop, then waits for them all until the deadline:
// they finish and commit the batch in hand and leave their groups. kDeadlineExceeded naming
// the processors still running; otherwise the first processor error.
ShutdownCoordinator::Step StopProcessorsStep(std::vector<ProcessorThread*> processors);

}  // namespace stip
