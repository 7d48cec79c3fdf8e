#include "services/common/shutdown.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/logging.h"
#include "spdlog/spdlog.h"

namespace stip {
namespace {

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

std::string SignalName(int signal) {
  switch (signal) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGHUP:
      return "SIGHUP";
    default:
      return absl::StrCat("signal ", signal);
  }
}

// The signal thread wakes at least this often to notice a shutdown requested by
// RequestShutdown (which starts the clock of the hard deadline) and its own stop.
constexpr absl::Duration kSignalPollInterval = absl::Milliseconds(200);

}  // namespace

void BlockShutdownSignals() {
  const sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

ShutdownCoordinator::ShutdownCoordinator(absl::Duration timeout) : timeout_(timeout) {}

ShutdownCoordinator::~ShutdownCoordinator() {
  if (!signal_thread_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  // Wakes sigtimedwait at once; the thread sees stopping_ before it looks at the signal.
  pthread_kill(signal_thread_handle_, SIGHUP);
  signal_thread_.join();
}

void ShutdownCoordinator::AddStep(std::string name, Step step) {
  steps_.emplace_back(std::move(name), std::move(step));
}

void ShutdownCoordinator::OnReload(std::function<void()> callback) {
  reload_callbacks_.push_back(std::move(callback));
}

absl::Status ShutdownCoordinator::Start() {
  sigset_t current;
  pthread_sigmask(SIG_BLOCK, nullptr, &current);
  for (int signal : {SIGTERM, SIGINT, SIGHUP}) {
    if (sigismember(&current, signal) != 1) {
      return absl::FailedPreconditionError(
          absl::StrCat(SignalName(signal), " is not blocked: call BlockShutdownSignals() ",
                       "first thing in main, before any thread starts"));
    }
  }
  if (signal_thread_.joinable()) return absl::FailedPreconditionError("already started");
  signal_thread_ = std::thread([this] { SignalLoop(); });
  signal_thread_handle_ = signal_thread_.native_handle();
  return absl::OkStatus();
}

void ShutdownCoordinator::SignalLoop() {
  const sigset_t set = ShutdownSignals();
  while (true) {
    absl::Time hard_deadline;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      hard_deadline = hard_deadline_;
    }
    const absl::Time now = absl::Now();
    if (now >= hard_deadline) {
      std::string step;
      {
        absl::MutexLock lock(&mu_);
        step = current_step_;
      }
      ForceExit(kShutdownTimedOutExitCode,
                absl::StrCat("shutdown did not finish within ", absl::FormatDuration(timeout_),
                             step.empty() ? "" : absl::StrCat(" (stuck in step \"", step, "\")"),
                             "; exiting now"));
    }
    const timespec wait = absl::ToTimespec(std::min(kSignalPollInterval, hard_deadline - now));
    siginfo_t info;
    const int signal = sigtimedwait(&set, &info, &wait);
    if (signal < 0) continue;  // EAGAIN (timed out) or EINTR
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    if (signal == SIGHUP) {
      spdlog::info("SIGHUP: reloading ({} callbacks)", reload_callbacks_.size());
      for (const auto& callback : reload_callbacks_) callback();
      continue;
    }
    if (shutdown_requested()) {
      ForceExit(128 + signal,
                absl::StrCat("second ", SignalName(signal), " during shutdown; exiting now"));
    }
    RequestShutdown(SignalName(signal));
  }
}

void ShutdownCoordinator::ForceExit(int code, std::string_view why) {
  spdlog::critical("{} (exit code {})", why, code);
  spdlog::default_logger_raw()->flush();
  _exit(code);
}

void ShutdownCoordinator::RequestShutdown(std::string_view reason) {
  absl::MutexLock lock(&mu_);
  if (requested_) {
    spdlog::info("shutdown already in progress; ignoring: {}", reason);
    return;
  }
  requested_ = true;
  hard_deadline_ = absl::Now() + timeout_;
  LogWithFields(spdlog::level::info, absl::StrCat("shutting down: ", std::string(reason)),
                {{"timeout_ms", absl::ToInt64Milliseconds(timeout_)},
                 {"steps", static_cast<int64_t>(steps_.size())}});
}

bool ShutdownCoordinator::shutdown_requested() const {
  absl::MutexLock lock(&mu_);
  return requested_;
}

std::function<void(const absl::Status&)> ShutdownCoordinator::RequestShutdownOnFailure(
    std::string name) {
  return [this, name = std::move(name)](const absl::Status& status) {
    if (!status.ok()) {
      RequestShutdown(absl::StrCat(name, " failed: ", status.ToString()));
    } else if (!shutdown_requested()) {
      RequestShutdown(absl::StrCat(name, " stopped"));
    }
  };
}

absl::Status ShutdownCoordinator::WaitForShutdown() {
  absl::Time hard_deadline;
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&requested_));
    hard_deadline = hard_deadline_;
  }
  // The steps' deadline leaves a reserve before the hard one, so that the steps after one
  // that used all its time (the gRPC server draining its calls) still get to run.
  const absl::Duration reserve = std::min(timeout_ / 10, absl::Seconds(1));
  const absl::Time deadline = hard_deadline - reserve;
  const absl::Time start = absl::Now();
  absl::Status first_error;
  for (const auto& [name, step] : steps_) {
    {
      absl::MutexLock lock(&mu_);
      current_step_ = name;
    }
    const absl::Time step_start = absl::Now();
    absl::Status status = step(deadline);
    const int64_t elapsed_ms = absl::ToInt64Milliseconds(absl::Now() - step_start);
    if (status.ok()) {
      LogWithFields(spdlog::level::info, absl::StrCat("shutdown step \"", name, "\" done"),
                    {{"step", name}, {"duration_ms", elapsed_ms}});
    } else {
      LogWithFields(spdlog::level::err,
                    absl::StrCat("shutdown step \"", name, "\" failed: ", status.ToString()),
                    {{"step", name}, {"duration_ms", elapsed_ms}});
      if (first_error.ok()) first_error = std::move(status);
    }
  }
  {
    absl::MutexLock lock(&mu_);
    current_step_.clear();
  }
  LogWithFields(first_error.ok() ? spdlog::level::info : spdlog::level::err,
                first_error.ok() ? "shutdown complete" : "shutdown complete, with errors",
                {{"duration_ms", absl::ToInt64Milliseconds(absl::Now() - start)}});
  return first_error;
}

ProcessorThread::ProcessorThread(std::string name, Runnable* processor,
                                 std::function<void(const absl::Status&)> on_exit)
    : name_(std::move(name)), processor_(processor), on_exit_(std::move(on_exit)) {
  thread_ = std::thread([this] {
    absl::Status status = processor_->Run();
    if (status.ok()) {
      spdlog::info("processor {} stopped", name_);
    } else {
      spdlog::error("processor {} stopped: {}", name_, status.ToString());
    }
    if (on_exit_) on_exit_(status);
    absl::MutexLock lock(&mu_);
    result_ = std::move(status);
    done_ = true;
  });
}

ProcessorThread::~ProcessorThread() {
  Stop();
  thread_.join();
}

void ProcessorThread::Stop() { processor_->Stop(); }

absl::Status ProcessorThread::Wait(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithDeadline(absl::Condition(&done_), deadline)) {
    return absl::DeadlineExceededError(absl::StrCat("processor ", name_, " still running"));
  }
  return result_;
}

bool ProcessorThread::running() const {
  absl::MutexLock lock(&mu_);
  return !done_;
}

ShutdownCoordinator::Step StopProcessorsStep(std::vector<ProcessorThread*> processors) {
  return [processors = std::move(processors)](absl::Time deadline) -> absl::Status {
    // Stop all first, so that they finish their batches in parallel.
    for (ProcessorThread* processor : processors) processor->Stop();
    std::vector<std::string> still_running;
    absl::Status first_error;
    for (ProcessorThread* processor : processors) {
      absl::Status status = processor->Wait(deadline);
      if (absl::IsDeadlineExceeded(status) && processor->running()) {
        still_running.push_back(processor->name());
      } else if (!status.ok() && first_error.ok()) {
        first_error = std::move(status);
      }
    }
    if (!still_running.empty()) {
      return absl::DeadlineExceededError(absl::StrCat("processors still running at the deadline: ",
                                                      absl::StrJoin(still_running, ", ")));
    }
    return first_error;
  };
}

}  // namespace stip
