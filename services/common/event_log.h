// The event log: keyed events on partitioned topics, consumer groups, and processors that
// run exactly once. Every processor of the system (validate, assess, apply to the
// registry) is written against this interface; the backend is chosen by URL:
//
//   kafka://host:9092[,host2:9092]   Apache Kafka through librdkafka (kafka_event_log.h)
//   sqlite:///var/lib/stip/stip.db    one SQLite file, the embedded mode (sqlite_event_log.h)
//
// Delivery guarantees, the same on both backends:
//   - EventPublisher::Publish returns OK only once every event is durable in the log
//     (Kafka: acks=all from an idempotent producer; SQLite: committed, synchronous=FULL).
//   - Events with the same key are stored, and delivered, in the order they were published.
//   - EventConsumer delivers at least once: events after the last Commit are delivered again
//     to the next consumer of the group.
//   - ExactlyOnceProcessor commits a batch's outputs and its consumed offsets atomically
//     (Kafka transactions with read_committed readers; one SQLite transaction): each input
//     affects the output exactly once, across crashes, aborts and rebalances.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "services/common/event.h"
#include "services/common/runnable.h"

namespace stip {

struct TopicSpec {
  std::string name;
  int32_t partitions = 3;
};

// The topics of DESIGN.md with the given partition count each.
std::vector<TopicSpec> StandardTopics(int32_t partitions);
// The same, plus the topics named in `also` that are not among them (a service's topics
// renamed by its flags, for tests and migrations).
std::vector<TopicSpec> StandardTopics(int32_t partitions, const std::vector<std::string>& also);

// OK when every event is at most `max_bytes` (EventBytes); else kInvalidArgument naming the
// first that is not: its topic, its size and the limit.
absl::Status CheckEventSizes(absl::Span<const OutgoingEvent> events, size_t max_bytes);

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;
  auto operator<=>(const TopicPartition&) const = default;
};

// Publishes events. Thread-safe: any number of threads may Publish at once.
class EventPublisher {
 public:
  virtual ~EventPublisher() = default;

  // Blocks until every event is durable in the log, or fails. Never returns before the
  // outcome is known: when it fails (kUnavailable for a broker that cannot be reached
  // within `timeout`, kInvalidArgument for an unknown topic), the events that were not
  // acknowledged will not be published later behind the caller's back. A retry after a
  // failure may publish an event twice: consumers drop repeats by the event's id
  // (CloudEvents ce_id), which callers therefore derive from the content.
  // `timeout` bounds the wait for room in the backend's queue; once the events are handed
  // over, the wait for the acknowledgement is bounded by EventLogOptions::publish_timeout
  // (Kafka's message.timeout.ms: librdkafka cannot take back a single message earlier).
  // An event larger than MaxEventBytes() (EventBytes) fails the call with kInvalidArgument
  // naming its topic, its size and the limit, before any event of the span is handed to
  // the log: nothing is published, and a retry of the same span cannot succeed.
  virtual absl::Status Publish(absl::Span<const OutgoingEvent> events, absl::Duration timeout) = 0;

  // The largest event Publish takes (EventLogOptions::max_event_bytes). Callers that must
  // not be stopped by one event (the registry's outbox relay) check against it first.
  virtual size_t MaxEventBytes() const { return kDefaultMaxEventBytes; }
};

struct ConsumerOptions {
  // Consumer group; members of one group share the partitions of its topics.
  std::string group;
  std::vector<std::string> topics;
  // Where a partition with no committed offset starts: the earliest event (true) or only
  // events published after the consumer joined (false).
  bool start_from_earliest = true;
  // When set, a newly assigned partition starts at the offset this returns for it rather
  // than at the group's committed offset (the registry keeps its offsets in its own
  // database). Partitions missing from the result start at the committed offset. Called on
  // the polling thread.
  std::function<std::map<TopicPartition, int64_t>(const std::vector<TopicPartition>&)>
      start_offsets;
};

// Reads events as a member of a consumer group. Not thread-safe: one thread polls,
// commits and closes.
class EventConsumer {
 public:
  virtual ~EventConsumer() = default;

  // Up to `max_events` events, waiting up to `timeout` for the first. Events of one
  // partition come in offset order. Only committed (not aborted) transactional outputs
  // are delivered.
  virtual absl::StatusOr<std::vector<ConsumedEvent>> Poll(size_t max_events,
                                                          absl::Duration timeout) = 0;

  // Commits, synchronously, the position after every event Poll has returned.
  virtual absl::Status Commit() = 0;

  // The partitions this member holds now.
  virtual std::vector<TopicPartition> Assignment() = 0;

  // Leaves the group. Does not commit. Blocks for at most `timeout`.
  virtual absl::Status Close(absl::Duration timeout) = 0;
};

// Where a processor's handler puts its outputs for the batch in hand.
class BatchOutput {
 public:
  virtual ~BatchOutput() = default;
  // Publishes `event` atomically with the batch's offsets. An event the log cannot take
  // for its own sake (over EventLogOptions::max_event_bytes, or refused by the broker as
  // too large or malformed) goes to stip.deadletter.v1 instead, cut to fit, with the
  // reason and the topic it was for: one event never stops the processor's partitions.
  virtual void Emit(OutgoingEvent event) = 0;
  // Sends `event` to stip.deadletter.v1 with the reason, atomically with the batch's
  // offsets, cut to the log's event limit when it is larger (DeadLetterFor). For events
  // that cannot be decoded: they never stop the processor.
  virtual void DeadLetter(const ConsumedEvent& event, std::string_view reason) = 0;
};

// The logic of a consume-process-produce step. Called on the processor's thread only.
class BatchHandler {
 public:
  virtual ~BatchHandler() = default;

  // `batch` holds events of the member's partitions, in offset order per partition.
  // OK: the outputs and dead letters given to `output` are published and the batch's
  // offsets committed, all at once. Any error: nothing of the batch is published, and the
  // same events are handed over again after a back-off. The handler must therefore have
  // no side effects outside `output` that a repeat would double.
  virtual absl::Status HandleBatch(absl::Span<const ConsumedEvent> batch, BatchOutput& output) = 0;
};

struct ProcessorOptions {
  std::string group;
  std::vector<std::string> input_topics;
  // Stable per instance across restarts (Kafka: the transactional.id suffix), so that a
  // restarted instance fences its predecessor's unfinished transaction.
  std::string instance_id = "0";
  // A batch closes when it holds `max_batch_events` or `commit_interval` has passed since
  // its first event. The cost of a transaction is per commit, not per event.
  absl::Duration commit_interval = absl::Milliseconds(100);
  size_t max_batch_events = 5000;
  // How long a failed batch waits before it is tried again (doubling up to 30 s).
  absl::Duration retry_backoff = absl::Milliseconds(200);
};

struct ProcessorCounters {
  int64_t batches_committed = 0;
  int64_t batches_aborted = 0;
  int64_t events_consumed = 0;
  int64_t events_produced = 0;
  int64_t events_dead_lettered = 0;
  // Events read into the batch being gathered, not yet committed or aborted (0 between
  // batches): what Stop() would still process.
  int64_t events_in_hand = 0;
  // Batches aborted since the last one committed (0 after a commit). A processor that
  // keeps failing (a broker that refuses, a handler that cannot reach what it needs)
  // makes no progress: readiness follows this (ProgressCheck in dependency_watch.h), as
  // does the gauge stip_event_batches_aborted_in_a_row{group}.
  int64_t batches_aborted_in_a_row = 0;
};

// Runs a BatchHandler over its input topics exactly once. Run() on one thread; Stop() and
// Counters() from any.
class ExactlyOnceProcessor : public Runnable {
 public:
  // Runs until Stop(). A clean stop finishes and commits the batch in hand, then leaves
  // the group, and returns OK. Returns an error only for what a retry cannot mend
  // (bad configuration, a producer fenced by a newer instance with the same instance_id).
  absl::Status Run() override = 0;

  // Asks Run to stop after the batch in hand. Non-blocking, async-signal-unsafe.
  void Stop() override = 0;

  virtual ProcessorCounters Counters() const = 0;
};

// A backend. Thread-safe; outlives everything it makes.
class EventLog {
 public:
  virtual ~EventLog() = default;

  // Creates the topics that do not exist yet. Existing topics are left as they are.
  virtual absl::Status EnsureTopics(absl::Span<const TopicSpec> topics) = 0;

  // Whether the log answers now (Kafka: a metadata request to the cluster within
  // `timeout`; SQLite: the file can be read). kUnavailable naming what failed. For health
  // checks: blocks for at most `timeout`.
  virtual absl::Status CheckReachable(absl::Duration timeout) = 0;

  virtual absl::StatusOr<std::unique_ptr<EventPublisher>> NewPublisher() = 0;
  virtual absl::StatusOr<std::unique_ptr<EventConsumer>> NewConsumer(
      const ConsumerOptions& options) = 0;
  // `handler` must outlive the processor.
  virtual absl::StatusOr<std::unique_ptr<ExactlyOnceProcessor>> NewProcessor(
      const ProcessorOptions& options, BatchHandler* handler) = 0;
};

struct EventLogOptions {
  // Extra librdkafka properties ("key=value"), for tuning and tests.
  std::map<std::string, std::string> kafka_properties;
  // How long Publish may wait for the broker before it fails with kUnavailable; also
  // librdkafka's message.timeout.ms.
  absl::Duration publish_timeout = absl::Seconds(10);
  // Kafka: transaction.timeout.ms. Lower than the 60 s default so that read_committed
  // readers are not held long behind a crashed instance's open transaction.
  absl::Duration transaction_timeout = absl::Seconds(10);
  // The largest event (EventBytes) publishers take and processors produce; see
  // kDefaultMaxEventBytes. Raise it only together with the topics' max.message.bytes and
  // the Kafka clients' message.max.bytes (a --kafka-property).
  size_t max_event_bytes = kDefaultMaxEventBytes;
};

// Opens the backend a URL names: kafka://host:port[,host:port...] or sqlite:///path.
// kInvalidArgument, naming the URL and what is wrong with it, for anything else.
absl::StatusOr<std::unique_ptr<EventLog>> OpenEventLog(std::string_view url,
                                                       const EventLogOptions& options = {});

}  // namespace stip
