// event-copier: an ExactlyOnceProcessor that copies one topic to another, for the contract
// and shutdown tests, which kill it with SIGKILL or stop it with SIGTERM mid-batch and then
// check that the output holds every input exactly once.
//
//   event-copier URL INPUT OUTPUT GROUP [batch_delay_ms] [until_idle_ms] [max_batch]
//
// batch_delay_ms: a pause inside every batch, so that signals land mid-batch.
// until_idle_ms: exit cleanly once nothing was consumed for that long (0: run until SIGTERM).
//   Before the first event the copier waits at least 45 s: on Kafka, a group whose last
//   member was killed rebalances only once that member's session (10 s) has expired.
// Exit status: 0 after a clean stop, 1 on an error, 2 on bad arguments.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "services/common/event_log.h"
#include "services/common/health.h"
#include "services/common/logging.h"
#include "services/common/shutdown.h"

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
    if (batch_delay_ms_ > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(batch_delay_ms_));
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
  // The same shutdown path as the services: signals blocked before any thread starts, and
  // SIGTERM runs the coordinator's steps (health NOT_SERVING, stop the processor, which
  // finishes and commits the batch in hand).
  stip::BlockShutdownSignals();
  stip::InitLogging("event-copier", spdlog::level::info, stip::LogFormat::kJson);
  const std::string url = argv[1];
  const int batch_delay_ms = argc > 5 ? std::atoi(argv[5]) : 0;
  const int until_idle_ms = argc > 6 ? std::atoi(argv[6]) : 0;
  const int max_batch = argc > 7 ? std::atoi(argv[7]) : 500;

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

  stip::ShutdownCoordinator shutdown(absl::Seconds(20));
  stip::HealthReporter health;
  stip::ProcessorThread copier("copier", processor->get(),
                               shutdown.RequestShutdownOnFailure("copier"));
  shutdown.AddStep("health NOT_SERVING", [&](absl::Time) {
    health.SetServing(false, "draining");
    return absl::OkStatus();
  });
  shutdown.AddStep("stop processors", stip::StopProcessorsStep({&copier}));
  if (auto started = shutdown.Start(); !started.ok()) {
    std::cerr << "event-copier: " << started << "\n";
    return 1;
  }

  std::atomic<bool> running{true};
  std::thread idle_watch;
  if (until_idle_ms > 0) {
    idle_watch = std::thread([&] {
      constexpr auto kFirstEventPatience = std::chrono::seconds(45);
      const auto idle_limit = std::chrono::milliseconds(until_idle_ms);
      int64_t last = 0;
      auto last_change = std::chrono::steady_clock::now();
      while (running) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        const int64_t consumed = (*processor)->Counters().events_consumed;
        const auto now = std::chrono::steady_clock::now();
        const auto limit = last == 0 ? std::max<std::chrono::steady_clock::duration>(
                                           idle_limit, kFirstEventPatience)
                                     : idle_limit;
        if (consumed != last) {
          last = consumed;
          last_change = now;
        } else if (now - last_change > limit) {
          shutdown.RequestShutdown("idle");
          return;
        }
      }
    });
  }

  const absl::Status status = shutdown.WaitForShutdown();
  running = false;
  if (idle_watch.joinable()) idle_watch.join();
  const auto counters = (*processor)->Counters();
  std::cerr << "event-copier: consumed " << counters.events_consumed << ", produced "
            << counters.events_produced << ", batches " << counters.batches_committed
            << " committed, " << counters.batches_aborted << " aborted: " << status << "\n";
  return status.ok() ? 0 : 1;
}
