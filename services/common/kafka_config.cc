// What the Kafka backend's clients share: configuration, logging, error classification,
// event conversion and statistics. See kafka_internal.h.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "services/common/grpc_server.h"
#include "services/common/kafka_internal.h"
#include "services/common/metrics.h"
#include "spdlog/spdlog.h"

namespace stip::kafka {
namespace {

// librdkafka logs with syslog levels, from its own threads; spdlog is thread-safe.
void LogToSpdlog(const rd_kafka_t* rk, int level, const char* facility, const char* message) {
  spdlog::level::level_enum spd_level = spdlog::level::debug;
  if (level <= 2) {
    spd_level = spdlog::level::critical;
  } else if (level <= 4) {
    // librdkafka's "errors" here are mostly connections it retries by itself; failures that
    // matter reach us as return values or delivery reports and are logged there as errors.
    spd_level = spdlog::level::warn;
  } else if (level <= 6) {
    spd_level = spdlog::level::info;
  }
  spdlog::log(spd_level, "librdkafka {} {}: {}", rd_kafka_name(rk), facility, message);
}

// A number field of a statistics object, or -1 when absent.
int64_t NumberField(const google::protobuf::Struct& object, const std::string& name) {
  auto it = object.fields().find(name);
  if (it == object.fields().end() || !it->second.has_number_value()) return -1;
  return static_cast<int64_t>(it->second.number_value());
}

}  // namespace

absl::StatusOr<ConfPtr> MakeConf(const Settings& settings, const Properties& defaults,
                                 const Properties& required) {
  ConfPtr conf(rd_kafka_conf_new());
  char errstr[512];
  auto set = [&](const std::string& name, const std::string& value) -> absl::Status {
    if (rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
      return absl::InvalidArgumentError(
          absl::StrCat("Kafka client property ", name, "=", value, ": ", errstr));
    }
    return absl::OkStatus();
  };
  rd_kafka_conf_set_log_cb(conf.get(), &LogToSpdlog);
  absl::Status status = set("bootstrap.servers", settings.bootstrap_servers);
  for (const auto& [name, value] : defaults) {
    if (status.ok()) status = set(name, value);
  }
  for (const auto& [name, value] : settings.options.kafka_properties) {
    if (status.ok()) status = set(name, value);
  }
  for (const auto& [name, value] : required) {
    if (status.ok()) status = set(name, value);
  }
  if (!status.ok()) return status;
  return conf;
}

absl::StatusOr<ClientPtr> NewClient(rd_kafka_type_t type, ConfPtr conf) {
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), errstr, sizeof(errstr));
  if (rk == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot create a Kafka client: ", errstr));
  }
  conf.release();  // rd_kafka_new owns it now
  return ClientPtr(rk);
}

absl::StatusCode ClassifyError(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
      return absl::StatusCode::kOk;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_INVALID_REQUEST:
    case RD_KAFKA_RESP_ERR_INVALID_GROUP_ID:
    case RD_KAFKA_RESP_ERR_INVALID_TRANSACTION_TIMEOUT:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__INVALID_TYPE:
      return absl::StatusCode::kInvalidArgument;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
      return absl::StatusCode::kPermissionDenied;
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
    case RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
    case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
    case RD_KAFKA_RESP_ERR__NOT_CONFIGURED:
    case RD_KAFKA_RESP_ERR__STATE:
      return absl::StatusCode::kFailedPrecondition;
    default:
      // Timeouts, transport failures, leaders and coordinators moving, rebalances: librdkafka
      // or the caller can try again.
      return absl::StatusCode::kUnavailable;
  }
}

bool IsPerEventError(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
      return true;
    default:
      return false;
  }
}

std::string ProducerMessageMaxBytes(const Settings& settings) {
  constexpr size_t kRecordOverhead = 64 * 1024;
  return std::to_string(
      std::max(kKafkaTopicMaxMessageBytes, settings.options.max_event_bytes + kRecordOverhead));
}

bool IsFenced(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR__FENCED || err == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
         err == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

absl::Status KafkaStatus(rd_kafka_resp_err_t err, const std::string& context) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return absl::OkStatus();
  // Broker messages name hosts and topics: for operators only, whatever the code.
  return WithInternalDetail(absl::Status(
      ClassifyError(err),
      absl::StrCat(context, ": ", rd_kafka_err2str(err), " (", rd_kafka_err2name(err), ")")));
}

absl::Status KafkaStatus(const rd_kafka_error_t* error, const std::string& context) {
  if (error == nullptr) return absl::OkStatus();
  const rd_kafka_resp_err_t err = rd_kafka_error_code(error);
  absl::StatusCode code = ClassifyError(err);
  if (rd_kafka_error_is_fatal(error)) {
    code = absl::StatusCode::kFailedPrecondition;
  } else if (rd_kafka_error_is_retriable(error) || rd_kafka_error_txn_requires_abort(error)) {
    code = absl::StatusCode::kUnavailable;
  }
  return WithInternalDetail(
      absl::Status(code, absl::StrCat(context, ": ", rd_kafka_error_string(error), " (",
                                      rd_kafka_error_name(error), ")")));
}

void LogClientError(rd_kafka_t* rk, int err, const char* reason) {
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char fatal[512];
    const rd_kafka_resp_err_t original = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
    spdlog::error("Kafka client {} hit a fatal error: {} ({})", rd_kafka_name(rk), fatal,
                  rd_kafka_err2name(original));
    return;
  }
  spdlog::debug("Kafka client {}: {} ({})", rd_kafka_name(rk), reason,
                rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)));
}

int ToMillis(absl::Duration duration) {
  if (duration == absl::InfiniteDuration()) return -1;
  const int64_t millis = absl::ToInt64Milliseconds(duration);
  if (millis <= 0) return 0;
  return millis > INT_MAX ? INT_MAX : static_cast<int>(millis);
}

ConsumedEvent ToConsumedEvent(const rd_kafka_message_t& message) {
  ConsumedEvent event;
  event.topic = rd_kafka_topic_name(message.rkt);
  event.partition = message.partition;
  event.offset = message.offset;
  if (message.key != nullptr) {
    event.key.assign(static_cast<const char*>(message.key), message.key_len);
  }
  if (message.payload != nullptr) {
    event.value.assign(static_cast<const char*>(message.payload), message.len);
  }
  rd_kafka_headers_t* headers = nullptr;
  // rd_kafka_message_headers parses lazily into the message, hence not const.
  if (rd_kafka_message_headers(const_cast<rd_kafka_message_t*>(&message), &headers) ==
      RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    for (size_t i = 0;
         rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      event.headers.emplace_back(name, value == nullptr
                                           ? std::string()
                                           : std::string(static_cast<const char*>(value), size));
    }
  }
  const int64_t millis = rd_kafka_message_timestamp(&message, nullptr);
  event.timestamp = millis < 0 ? absl::UnixEpoch() : absl::FromUnixMillis(millis);
  return event;
}

void AdvancePastTransactionMarkers(rd_kafka_t* consumer, rd_kafka_topic_partition_list_t* next) {
  PartitionListPtr positions(rd_kafka_topic_partition_list_copy(next));
  if (rd_kafka_position(consumer, positions.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  for (int i = 0; i < next->cnt; ++i) {
    const rd_kafka_topic_partition_t& position = positions->elems[i];
    if (position.err == RD_KAFKA_RESP_ERR_NO_ERROR && position.offset > next->elems[i].offset) {
      next->elems[i].offset = position.offset;
    }
  }
}

rd_kafka_resp_err_t Produce(rd_kafka_t* rk, const OutgoingEvent& event, void* opaque) {
  rd_kafka_headers_t* headers = rd_kafka_headers_new(event.headers.size());
  for (const auto& [name, value] : event.headers) {
    rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()), value.data(),
                        static_cast<ssize_t>(value.size()));
  }
  const rd_kafka_resp_err_t err = rd_kafka_producev(
      rk, RD_KAFKA_V_TOPIC(event.topic.c_str()), RD_KAFKA_V_KEY(event.key.data(), event.key.size()),
      RD_KAFKA_V_VALUE(const_cast<char*>(event.value.data()), event.value.size()),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers),
      RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
  // librdkafka owns the headers only once the message is accepted.
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) rd_kafka_headers_destroy(headers);
  return err;
}

void RecordConsumerLag(std::string_view group, std::string_view stats_json) {
  google::protobuf::Struct stats;
  if (!google::protobuf::util::JsonStringToMessage(std::string(stats_json), &stats).ok()) {
    spdlog::debug("unparseable librdkafka statistics for group {}", group);
    return;
  }
  auto topics = stats.fields().find("topics");
  if (topics == stats.fields().end()) return;
  auto& family = GetEventLogMetrics().consumer_lag;
  for (const auto& [topic, topic_value] : topics->second.struct_value().fields()) {
    auto partitions = topic_value.struct_value().fields().find("partitions");
    if (partitions == topic_value.struct_value().fields().end()) continue;
    for (const auto& [partition, partition_value] : partitions->second.struct_value().fields()) {
      if (partition == "-1") continue;  // librdkafka's internal unassigned-partition queue
      const auto& fields = partition_value.struct_value();
      int64_t lag = NumberField(fields, "consumer_lag_stored");
      if (lag < 0) lag = NumberField(fields, "consumer_lag");
      if (lag < 0) continue;  // not fetched or nothing committed yet
      family.Add({{"group", std::string(group)}, {"topic", topic}, {"partition", partition}})
          .Set(static_cast<double>(lag));
    }
  }
}

absl::Status CloseAndDestroyConsumer(ClientPtr consumer, absl::Duration timeout) {
  if (consumer == nullptr) return absl::OkStatus();
  rd_kafka_t* rk = consumer.get();
  QueuePtr queue(rd_kafka_queue_new(rk));
  // rd_kafka_consumer_close has no time limit; the queue variant lets us stop waiting.
  ErrorPtr error(rd_kafka_consumer_close_queue(rk, queue.get()));
  absl::Status status = KafkaStatus(error.get(), "closing the Kafka consumer");
  const absl::Time deadline = absl::Now() + timeout;
  while (status.ok() && !rd_kafka_consumer_closed(rk)) {
    if (absl::Now() >= deadline) {
      status = absl::DeadlineExceededError(
          absl::StrCat("Kafka consumer ", rd_kafka_name(rk), " did not leave its group within ",
                       absl::FormatDuration(timeout),
                       "; the coordinator will drop it after the session "
                       "timeout"));
      break;
    }
    // The queue yields events, not callbacks (serving it with callbacks trips an assert in
    // 2.0.2 on the fetched messages it also carries). Leaving commits nothing: the revoke
    // only gives the partitions up.
    EventPtr event(rd_kafka_queue_poll(queue.get(), 100));
    if (event != nullptr && rd_kafka_event_type(event.get()) == RD_KAFKA_EVENT_REBALANCE) {
      rd_kafka_assign(rk, nullptr);
    }
  }
  queue.reset();
  if (rd_kafka_consumer_closed(rk)) {
    consumer.reset();
  } else {
    rd_kafka_destroy_flags(consumer.release(), RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  }
  return status;
}

absl::Status WarmMetadata(rd_kafka_t* rk, absl::Duration timeout) {
  const rd_kafka_metadata_t* metadata = nullptr;
  const rd_kafka_resp_err_t err =
      rd_kafka_metadata(rk, /*all_topics=*/1, nullptr, &metadata, ToMillis(timeout));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaStatus(err, "fetching Kafka metadata");
  rd_kafka_metadata_destroy(metadata);
  return absl::OkStatus();
}

}  // namespace stip::kafka
