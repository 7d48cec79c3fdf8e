// Private to the Kafka backend (kafka_*.cc): librdkafka handle ownership, configuration,
// error classification and the pieces the publisher, the consumer and the processor share.
// Nothing outside services/common/kafka_*.cc includes this header.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "services/common/event_log.h"
#include <librdkafka/rdkafka.h>

namespace stip::kafka {

// What every client of one KafkaEventLog is built from.
struct Settings {
  std::string bootstrap_servers;
  EventLogOptions options;
};

// Owning pointers for librdkafka's C objects.
struct ClientDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct ConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* list) const {
    rd_kafka_topic_partition_list_destroy(list);
  }
};
struct ErrorDeleter {
  void operator()(rd_kafka_error_t* error) const { rd_kafka_error_destroy(error); }
};
struct MessageDeleter {
  void operator()(rd_kafka_message_t* message) const { rd_kafka_message_destroy(message); }
};
struct QueueDeleter {
  void operator()(rd_kafka_queue_t* queue) const { rd_kafka_queue_destroy(queue); }
};
struct EventDeleter {
  void operator()(rd_kafka_event_t* event) const { rd_kafka_event_destroy(event); }
};
struct GroupMetadataDeleter {
  void operator()(rd_kafka_consumer_group_metadata_t* metadata) const {
    rd_kafka_consumer_group_metadata_destroy(metadata);
  }
};
using ClientPtr = std::unique_ptr<rd_kafka_t, ClientDeleter>;
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
using PartitionListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;
using ErrorPtr = std::unique_ptr<rd_kafka_error_t, ErrorDeleter>;
using MessagePtr = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;
using QueuePtr = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;
using EventPtr = std::unique_ptr<rd_kafka_event_t, EventDeleter>;
using GroupMetadataPtr = std::unique_ptr<rd_kafka_consumer_group_metadata_t, GroupMetadataDeleter>;

using Properties = std::vector<std::pair<std::string, std::string>>;

// A client configuration: bootstrap.servers, logs routed to spdlog, then `defaults`, then
// the operator's EventLogOptions::kafka_properties, then `required`. `required` holds what
// our delivery guarantees rest on (idempotence, acks, isolation level, no auto-commit), so
// no operator property can switch it off. kInvalidArgument naming the property otherwise.
absl::StatusOr<ConfPtr> MakeConf(const Settings& settings, const Properties& defaults,
                                 const Properties& required);

// rd_kafka_new; takes `conf` on success. kInvalidArgument with librdkafka's reason.
absl::StatusOr<ClientPtr> NewClient(rd_kafka_type_t type, ConfPtr conf);

// The one place librdkafka errors are classified. kUnavailable: transient (broker down,
// timeouts, coordinator moving, rebalances); the same call may succeed later.
// kInvalidArgument: unknown topic or partition, oversized or malformed request.
// kPermissionDenied: authorization. kFailedPrecondition: fenced by a newer producer or
// otherwise unusable client; retrying the same call cannot help.
absl::StatusCode ClassifyError(rd_kafka_resp_err_t err);
// Errors that belong to one event rather than to the broker or the client: the event is too
// large or malformed for the log, and producing it again can never succeed (while the
// broker's other answers, outages included, are retried). Processors dead-letter such an
// event instead of failing the batch.
bool IsPerEventError(rd_kafka_resp_err_t err);

// Kafka's default max.message.bytes of a topic (and message.max.bytes of a broker): what
// the topics the services create get unless an operator configures otherwise.
inline constexpr size_t kKafkaTopicMaxMessageBytes = 1'048'588;

// The producers' message.max.bytes default: at least the topics' limit, so that the
// producer never refuses what the broker would take (librdkafka's own default, 1,000,000,
// is below it), and room above EventLogOptions::max_event_bytes for the record overhead.
std::string ProducerMessageMaxBytes(const Settings& settings);

// Errors that mean another producer with our transactional.id (or a coordinator that
// timed our transaction out) took over the producer epoch.
bool IsFenced(rd_kafka_resp_err_t err);

// A status of ClassifyError's code: "<context>: <librdkafka's text> (<error name>)".
absl::Status KafkaStatus(rd_kafka_resp_err_t err, const std::string& context);
absl::Status KafkaStatus(const rd_kafka_error_t* error, const std::string& context);

// A status's message as std::string, for fmt (Debian 12's Abseil has its own string_view).
inline std::string Text(const absl::Status& status) { return std::string(status.message()); }

// Logs a client's error_cb report: fatal ones as errors, the rest (librdkafka retries
// them itself and also logs them through log_cb) at debug level.
void LogClientError(rd_kafka_t* rk, int err, const char* reason);

// Milliseconds for librdkafka, clamped to [0, INT_MAX]; infinite becomes -1.
int ToMillis(absl::Duration duration);

ConsumedEvent ToConsumedEvent(const rd_kafka_message_t& message);

// Moves each offset of `next` (the offset after the last record delivered from its
// partition) past the transaction markers `consumer` has already stepped over. A commit
// marker holds an offset but is no record, so committing "last record + 1" would leave a
// group one offset behind every transactionally written partition for good, and lag alerts
// would never clear. librdkafka's position is the next offset it would deliver, beyond such
// markers; it is taken only when every record delivered from the partition is covered by
// `next` (the caller's contract), so nothing delivered is skipped.
void AdvancePastTransactionMarkers(rd_kafka_t* consumer, rd_kafka_topic_partition_list_t* next);

// rd_kafka_producev of `event` (copied) with `opaque` as the message opaque. Never blocks.
rd_kafka_resp_err_t Produce(rd_kafka_t* rk, const OutgoingEvent& event, void* opaque);

// Updates stip_consumer_lag{group,topic,partition} from a librdkafka statistics JSON
// document (statistics.interval.ms). Prefers consumer_lag_stored (the processor stores
// the offsets its transactions commit) and falls back to consumer_lag (committed offsets).
void RecordConsumerLag(std::string_view group, std::string_view stats_json);

// Closes a group consumer within `timeout` and destroys it. The revoke that leaving causes
// does not reach the client's rebalance callback: partitions are given up, nothing is
// committed. A consumer that cannot leave in time is destroyed without leaving: the
// group coordinator then drops it after session.timeout.ms.
absl::Status CloseAndDestroyConsumer(ClientPtr consumer, absl::Duration timeout);

// Asks the broker for the metadata of every topic, so that the client's metadata cache
// knows the partition counts before the first produce (otherwise the first transaction
// waits about a second for them).
absl::Status WarmMetadata(rd_kafka_t* rk, absl::Duration timeout);

// The parts of the backend (one file each).
absl::StatusOr<std::unique_ptr<EventPublisher>> NewPublisher(const Settings& settings);
absl::StatusOr<std::unique_ptr<EventConsumer>> NewConsumer(const Settings& settings,
                                                           const ConsumerOptions& options);
// `prepare` runs at the start of Run() (creating the dead-letter topic), retried with
// back-off until it succeeds or Stop() is called.
absl::StatusOr<std::unique_ptr<ExactlyOnceProcessor>> NewProcessor(
    const Settings& settings, const ProcessorOptions& options, BatchHandler* handler,
    std::function<absl::Status()> prepare);

}  // namespace stip::kafka
