// The Kafka backend's factory and its administration (topic creation). The clients live in
// kafka_publisher.cc, kafka_consumer.cc and kafka_processor.cc, each with its contract
// (threads, blocking, guarantees) at the top; what they share is in kafka_config.cc.
//
// Every client is configured for the guarantees of event_log.h, and no operator property
// (EventLogOptions::kafka_properties) can undo that: idempotent producers with acks=all and
// Java's murmur2 partitioner; consumers in read_committed, without auto-commit, with the
// eager range assignor (cooperative-sticky is unreliable in librdkafka 2.0.x); processors
// with transactional.id "<group>-<instance_id>". Tested with librdkafka 2.0.2 against
// Apache Kafka 4.1.1 (KRaft).
//
// OpenKafkaEventLog does not contact the broker: a broker that is down shows up as
// kUnavailable from the calls that need it (EnsureTopics, Publish), not at start-up.
#include "services/common/kafka_event_log.h"

#include <set>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/kafka_internal.h"
#include "spdlog/spdlog.h"

namespace stip {
namespace {

// Topic creation is asynchronous in Kafka; this bounds the whole EnsureTopics call.
constexpr absl::Duration kAdminTimeout = absl::Seconds(30);
// The partition count the dead-letter topic gets when a processor has to create it.
constexpr int32_t kDeadLetterPartitions = 3;

// One topic as the broker's metadata shows it: its partition count when every partition
// has a leader, else 0 (still being created).
int32_t ReadyPartitions(rd_kafka_t* admin, const std::string& topic) {
  rd_kafka_topic_t* handle = rd_kafka_topic_new(admin, topic.c_str(), nullptr);
  if (handle == nullptr) return 0;
  const rd_kafka_metadata_t* metadata = nullptr;
  int32_t ready = 0;
  if (rd_kafka_metadata(admin, /*all_topics=*/0, handle, &metadata, 5000) ==
      RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (metadata->topic_cnt == 1 && metadata->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const rd_kafka_metadata_topic_t& info = metadata->topics[0];
      ready = info.partition_cnt;
      for (int i = 0; i < info.partition_cnt; ++i) {
        if (info.partitions[i].leader < 0) ready = 0;
      }
    }
    rd_kafka_metadata_destroy(metadata);
  }
  rd_kafka_topic_destroy(handle);
  return ready;
}

// Thread-safe: librdkafka handles are, and everything else is immutable after Open.
class KafkaEventLog final : public EventLog {
 public:
  KafkaEventLog(kafka::Settings settings, kafka::ClientPtr admin)
      : settings_(std::move(settings)), admin_(std::move(admin)) {}

  absl::Status EnsureTopics(absl::Span<const TopicSpec> topics) override {
    if (topics.empty()) return absl::OkStatus();
    const absl::Time deadline = absl::Now() + kAdminTimeout;
    // Asks for creation only of what is missing: where topics are managed elsewhere (Strimzi
    // KafkaTopic resources, ACLs without CREATE), existing ones then need no permission.
    std::vector<TopicSpec> missing;
    for (const TopicSpec& spec : topics) {
      if (ReadyPartitions(admin_.get(), spec.name) == 0) missing.push_back(spec);
    }
    absl::StatusOr<std::set<std::string>> created = CreateTopics(missing);
    if (!created.ok()) return created.status();
    // CreateTopics answers once the controller has the topics; brokers learn of them a
    // little later, and a client that asks too soon would see them as unknown.
    for (const TopicSpec& spec : topics) {
      const bool ours = created->contains(spec.name);
      while (true) {
        const int32_t ready = ReadyPartitions(admin_.get(), spec.name);
        if (ready > 0 && (!ours || ready >= spec.partitions)) break;
        if (absl::Now() >= deadline) {
          return absl::UnavailableError(absl::StrCat("Kafka topic ", spec.name,
                                                     " has no leader for every partition after ",
                                                     absl::FormatDuration(kAdminTimeout)));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<EventPublisher>> NewPublisher() override {
    return kafka::NewPublisher(settings_);
  }

  absl::StatusOr<std::unique_ptr<EventConsumer>> NewConsumer(
      const ConsumerOptions& options) override {
    if (options.group.empty() || options.topics.empty()) {
      return absl::InvalidArgumentError("a Kafka consumer needs a group and at least one topic");
    }
    return kafka::NewConsumer(settings_, options);
  }

  absl::StatusOr<std::unique_ptr<ExactlyOnceProcessor>> NewProcessor(
      const ProcessorOptions& options, BatchHandler* handler) override {
    if (options.group.empty() || options.input_topics.empty() || options.instance_id.empty() ||
        handler == nullptr || options.max_batch_events == 0) {
      return absl::InvalidArgumentError(
          "a Kafka processor needs a group, input topics, an instance id, a handler and a "
          "positive max_batch_events");
    }
    return kafka::NewProcessor(settings_, options, handler, [this] {
      const TopicSpec dead_letters{std::string(kDeadLetterTopic), kDeadLetterPartitions};
      return EnsureTopics({&dead_letters, 1});
    });
  }

 private:
  // Asks the controller for the topics; returns the names it created (as opposed to those
  // that existed already, which are left as they are).
  absl::StatusOr<std::set<std::string>> CreateTopics(absl::Span<const TopicSpec> topics) {
    if (topics.empty()) return std::set<std::string>();
    char errstr[512];
    std::vector<rd_kafka_NewTopic_t*> requests;
    auto free_requests = [&requests] {
      rd_kafka_NewTopic_destroy_array(requests.data(), requests.size());
    };
    for (const TopicSpec& spec : topics) {
      // Replication factor -1: the broker's default.replication.factor.
      rd_kafka_NewTopic_t* request =
          rd_kafka_NewTopic_new(spec.name.c_str(), spec.partitions, -1, errstr, sizeof(errstr));
      if (request == nullptr) {
        free_requests();
        return absl::InvalidArgumentError(
            absl::StrCat("cannot create Kafka topic ", spec.name, ": ", errstr));
      }
      requests.push_back(request);
    }
    rd_kafka_AdminOptions_t* options =
        rd_kafka_AdminOptions_new(admin_.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(options, kafka::ToMillis(kAdminTimeout), errstr,
                                              sizeof(errstr));
    rd_kafka_AdminOptions_set_operation_timeout(options, kafka::ToMillis(kAdminTimeout), errstr,
                                                sizeof(errstr));
    kafka::QueuePtr queue(rd_kafka_queue_new(admin_.get()));
    rd_kafka_CreateTopics(admin_.get(), requests.data(), requests.size(), options, queue.get());
    rd_kafka_AdminOptions_destroy(options);
    free_requests();

    kafka::EventPtr event(
        rd_kafka_queue_poll(queue.get(), kafka::ToMillis(kAdminTimeout + absl::Seconds(5))));
    if (event == nullptr) {
      return absl::UnavailableError("no answer from Kafka to CreateTopics");
    }
    if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::Status(kafka::ClassifyError(rd_kafka_event_error(event.get())),
                          absl::StrCat("creating Kafka topics on ", settings_.bootstrap_servers,
                                       ": ", rd_kafka_event_error_string(event.get())));
    }
    const rd_kafka_CreateTopics_result_t* result = rd_kafka_event_CreateTopics_result(event.get());
    size_t count = 0;
    const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(result, &count);
    std::set<std::string> created;
    for (size_t i = 0; i < count; ++i) {
      const rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
      const std::string name = rd_kafka_topic_result_name(results[i]);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        spdlog::info("created Kafka topic {}", name);
        created.insert(name);
      } else if (err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        const char* message = rd_kafka_topic_result_error_string(results[i]);
        return absl::Status(kafka::ClassifyError(err),
                            absl::StrCat("creating Kafka topic ", name, ": ",
                                         message != nullptr ? message : rd_kafka_err2str(err)));
      }
    }
    return created;
  }

  absl::Status CheckReachable(absl::Duration timeout) override {
    const rd_kafka_metadata_t* metadata = nullptr;
    const rd_kafka_resp_err_t err =
        rd_kafka_metadata(admin_.get(), /*all_topics=*/0, nullptr, &metadata,
                          static_cast<int>(absl::ToInt64Milliseconds(timeout)));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(absl::StrCat("the Kafka cluster at ",
                                                 settings_.bootstrap_servers,
                                                 " does not answer: ", rd_kafka_err2str(err)));
    }
    rd_kafka_metadata_destroy(metadata);
    return absl::OkStatus();
  }

  const kafka::Settings settings_;
  // For administration and metadata only; never produces.
  const kafka::ClientPtr admin_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<EventLog>> OpenKafkaEventLog(const std::string& bootstrap_servers,
                                                            const EventLogOptions& options) {
  spdlog::info("Kafka event log on {} (librdkafka {})", bootstrap_servers, rd_kafka_version_str());
  kafka::Settings settings{bootstrap_servers, options};
  // Building the admin client also checks the operator's properties, at start-up rather
  // than at the first publish.
  absl::StatusOr<kafka::ConfPtr> conf = kafka::MakeConf(settings, {{"client.id", "stip-admin"}},
                                                        {{"allow.auto.create.topics", "false"}});
  if (!conf.ok()) return conf.status();
  absl::StatusOr<kafka::ClientPtr> admin = kafka::NewClient(RD_KAFKA_PRODUCER, *std::move(conf));
  if (!admin.ok()) return admin.status();
  return std::make_unique<KafkaEventLog>(std::move(settings), *std::move(admin));
}

}  // namespace stip
