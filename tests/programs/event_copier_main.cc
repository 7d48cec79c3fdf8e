// event-copier: an ExactlyOnceProcessor that copies one topic to another, for the contract
// and shutdown tests, which kill it with SIGKILL or stop it with SIGTERM mid-batch and then
// check that the output holds every input exactly once.
//
//   event-copier URL INPUT OUTPUT GROUP [batch_delay_ms] [until_idle_ms] [max_batch]
//
// batch_delay_ms: a pause inside every batch, so that signals land mid-batch.
// until_idle_ms: exit cleanly once nothing was consumed for that long (0: run until SIGTERM).
// Exit status: 0 after a clean stop, 1 on an error, 2 on bad arguments.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "services/common/event_log.h"

namespace {

class CopyHandler : public stip::BatchHandler {
 public:
  CopyHandler(std::string output_topic, int batch_delay_ms)
      : output_topic_(std::move(output_topic)), batch_delay_ms_(batch_delay_ms) {}

  absl::Status HandleBatch(absl::Span<const stip::ConsumedEvent> batch,
                           stip::BatchOutput& output) override {
    for (const auto& event : batch) {
      output.Emit({output_topic_, event.key, event.value, event.headers});
    }
    if (batch_delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(batch_delay_ms_));
    return absl::OkStatus();
  }

 private:
  std::string output_topic_;
  int batch_delay_ms_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: event-copier URL INPUT OUTPUT GROUP [batch_delay_ms] [until_idle_ms] "
                 "[max_batch]\n";
    return 2;
  }
  const std::string url = argv[1];
  const int batch_delay_ms = argc > 5 ? std::atoi(argv[5]) : 0;
  const int until_idle_ms = argc > 6 ? std::atoi(argv[6]) : 0;
  const int max_batch = argc > 7 ? std::atoi(argv[7]) : 500;

  // Block SIGTERM before any thread starts, so that only the waiting thread receives it.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto log = stip::OpenEventLog(url);
  if (!log.ok()) {
    std::cerr << "event-copier: " << log.status() << "\n";
    return 1;
  }
  CopyHandler handler(argv[3], batch_delay_ms);
  stip::ProcessorOptions options;
  options.group = argv[4];
  options.input_topics = {argv[2]};
  options.instance_id = "copier";
  options.max_batch_events = static_cast<size_t>(max_batch);
  options.commit_interval = absl::Milliseconds(50);
  auto processor = (*log)->NewProcessor(options, &handler);
  if (!processor.ok()) {
    std::cerr << "event-copier: " << processor.status() << "\n";
    return 1;
  }

  std::thread signal_waiter([&] {
    int received = 0;
    sigwait(&signals, &received);
    (*processor)->Stop();
  });
  signal_waiter.detach();

  std::atomic<bool> running{true};
  std::thread idle_watch;
  if (until_idle_ms > 0) {
    idle_watch = std::thread([&] {
      int64_t last = -1;
      auto last_change = std::chrono::steady_clock::now();
      while (running) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        const int64_t consumed = (*processor)->Counters().events_consumed;
        const auto now = std::chrono::steady_clock::now();
        if (consumed != last) {
          last = consumed;
          last_change = now;
        } else if (now - last_change > std::chrono::milliseconds(until_idle_ms)) {
          (*processor)->Stop();
          return;
        }
      }
    });
  }

  const absl::Status status = (*processor)->Run();
  running = false;
  if (idle_watch.joinable()) idle_watch.join();
  const auto counters = (*processor)->Counters();
  std::cerr << "event-copier: consumed " << counters.events_consumed << ", produced "
            << counters.events_produced << ", batches " << counters.batches_committed
            << " committed, " << counters.batches_aborted << " aborted: " << status << "\n";
  return status.ok() ? 0 : 1;
}
