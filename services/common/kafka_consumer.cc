// EventConsumer on Kafka: a group member with manual, synchronous commits.
//
// Threads: one. Poll, Commit, Assignment and Close run on the caller's thread, and so do
// librdkafka's rebalance and statistics callbacks (served inside rd_kafka_consumer_poll).
// Blocking: Poll up to its timeout (plus one synchronous commit when a revoke comes in
// during it); Commit for one round trip to the group coordinator; Close up to its timeout.
// Delivery: at least once. Offsets are committed by Commit() and, when partitions are
// revoked during a Poll, for the events earlier Polls returned: polling again says the
// caller is done with them. Close() commits nothing. A revoke also drops what the Poll in
// progress had gathered, so one Poll never returns an event twice.
#include <map>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/kafka_internal.h"
#include "services/common/metrics.h"
#include "spdlog/spdlog.h"

namespace stip::kafka {
namespace {

class KafkaConsumer final : public EventConsumer {
 public:
  static absl::StatusOr<std::unique_ptr<EventConsumer>> Create(const Settings& settings,
                                                               const ConsumerOptions& options) {
    auto consumer = std::unique_ptr<KafkaConsumer>(new KafkaConsumer(settings, options));
    if (absl::Status status = consumer->Start(); !status.ok()) return status;
    return consumer;
  }

  ~KafkaConsumer() override {
    if (client_ != nullptr) {
      Close(absl::Seconds(10)).IgnoreError();  // logged by Close
    }
  }

  absl::StatusOr<std::vector<ConsumedEvent>> Poll(size_t max_events,
                                                  absl::Duration timeout) override {
    if (client_ == nullptr) return absl::FailedPreconditionError("Kafka consumer is closed");
    std::vector<ConsumedEvent> events;
    const absl::Time deadline = absl::Now() + timeout;
    int64_t revocations_seen = revocations_;
    while (events.size() < max_events) {
      const absl::Duration wait = events.empty() ? deadline - absl::Now() : absl::ZeroDuration();
      MessagePtr message(rd_kafka_consumer_poll(client_.get(), ToMillis(wait)));
      if (revocations_ != revocations_seen) {
        // Eager rebalancing took every partition away; what we gathered is the next
        // owner's to read (from the committed offsets), even if it is us again.
        events.clear();
        revocations_seen = revocations_;
      }
      if (message == nullptr) {
        if (events.empty() && absl::Now() < deadline) continue;
        break;
      }
      if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (absl::Status fatal = FatalError(); !fatal.ok()) return fatal;
        // Consumer errors are informational: librdkafka keeps fetching and retrying.
        spdlog::warn("Kafka consumer {} (group {}): {}", rd_kafka_name(client_.get()),
                     options_.group, rd_kafka_message_errstr(message.get()));
        continue;
      }
      events.push_back(ToConsumedEvent(*message));
    }
    // librdkafka hands out a fetched partition's messages in a run: positions and counters
    // are updated once per run, not with a string-keyed map look-up per event.
    size_t run_start = 0;
    for (size_t i = 0; i < events.size(); ++i) {
      const ConsumedEvent& event = events[i];
      const bool run_ends = i + 1 == events.size() || events[i + 1].partition != event.partition ||
                            events[i + 1].topic != event.topic;
      if (!run_ends) continue;
      positions_[{event.topic, event.partition}] = event.offset + 1;
      GetEventLogMetrics()
          .events_consumed.Add({{"topic", event.topic}})
          .Increment(static_cast<double>(i + 1 - run_start));
      run_start = i + 1;
    }
    return events;
  }

  absl::Status Commit() override {
    if (client_ == nullptr) return absl::FailedPreconditionError("Kafka consumer is closed");
    return CommitPositions(client_.get());
  }

  std::vector<TopicPartition> Assignment() override {
    std::vector<TopicPartition> result;
    if (client_ == nullptr) return result;
    rd_kafka_topic_partition_list_t* raw = nullptr;
    if (rd_kafka_assignment(client_.get(), &raw) != RD_KAFKA_RESP_ERR_NO_ERROR) return result;
    PartitionListPtr list(raw);
    for (int i = 0; i < list->cnt; ++i) {
      result.push_back({list->elems[i].topic, list->elems[i].partition});
    }
    return result;
  }

  absl::Status Close(absl::Duration timeout) override {
    if (client_ == nullptr) return absl::OkStatus();
    absl::Status status = CloseAndDestroyConsumer(std::move(client_), timeout);
    if (!status.ok()) spdlog::warn("{}", Text(status));
    return status;
  }

 private:
  KafkaConsumer(const Settings& settings, const ConsumerOptions& options)
      : settings_(settings), options_(options) {}

  absl::Status Start() {
    absl::StatusOr<ConfPtr> conf =
        MakeConf(settings_,
                 {{"client.id", "stip-consumer"},
                  {"statistics.interval.ms", "5000"},
                  {"enable.partition.eof", "false"},
                  // Prefetch at most 16 MiB (librdkafka's default is 64 MiB per consumer).
                  {"queued.max.messages.kbytes", "16384"},
                  // A member that died (SIGKILL, a lost pod) holds its partitions until its
                  // session expires: 10 s rather than librdkafka's 45 s, so that a
                  // restarted instance resumes sooner.
                  {"session.timeout.ms", "10000"}},
                 {{"group.id", options_.group},
                  {"enable.auto.commit", "false"},
                  {"enable.auto.offset.store", "false"},
                  {"isolation.level", "read_committed"},
                  {"auto.offset.reset", options_.start_from_earliest ? "earliest" : "latest"},
                  // Eager: cooperative-sticky in librdkafka before 2.4-2.10 loops, hangs on close
                  // and loses assignments.
                  {"partition.assignment.strategy", "range"},
                  {"allow.auto.create.topics", "false"}});
    if (!conf.ok()) return conf.status();
    rd_kafka_conf_set_opaque(conf->get(), this);
    rd_kafka_conf_set_rebalance_cb(conf->get(), &KafkaConsumer::OnRebalance);
    rd_kafka_conf_set_stats_cb(conf->get(), &KafkaConsumer::OnStats);
    rd_kafka_conf_set_error_cb(conf->get(), &KafkaConsumer::OnError);
    absl::StatusOr<ClientPtr> client = NewClient(RD_KAFKA_CONSUMER, *std::move(conf));
    if (!client.ok()) return client.status();
    client_ = *std::move(client);
    // Statistics and errors are then served by rd_kafka_consumer_poll, on the caller's thread.
    rd_kafka_poll_set_consumer(client_.get());
    PartitionListPtr topics(
        rd_kafka_topic_partition_list_new(static_cast<int>(options_.topics.size())));
    for (const std::string& topic : options_.topics) {
      rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
    }
    return KafkaStatus(rd_kafka_subscribe(client_.get(), topics.get()),
                       absl::StrCat("subscribing group ", options_.group, " to its topics"));
  }

  absl::Status CommitPositions(rd_kafka_t* rk) {
    if (positions_.empty()) return absl::OkStatus();
    PartitionListPtr offsets(
        rd_kafka_topic_partition_list_new(static_cast<int>(positions_.size())));
    for (const auto& [partition, next] : positions_) {
      rd_kafka_topic_partition_list_add(offsets.get(), partition.topic.c_str(), partition.partition)
          ->offset = next;
    }
    // positions_ covers every record Poll returned.
    AdvancePastTransactionMarkers(rk, offsets.get());
    const rd_kafka_resp_err_t err = rd_kafka_commit(rk, offsets.get(), /*async=*/0);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return KafkaStatus(err, absl::StrCat("committing offsets of group ", options_.group));
    }
    positions_.clear();
    return absl::OkStatus();
  }

  absl::Status FatalError() {
    char reason[512];
    const rd_kafka_resp_err_t err = rd_kafka_fatal_error(client_.get(), reason, sizeof(reason));
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat("Kafka consumer of group ", options_.group, " failed: ", reason));
  }

  void Assign(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* partitions) {
    if (options_.start_offsets) {
      std::vector<TopicPartition> assigned;
      for (int i = 0; i < partitions->cnt; ++i) {
        assigned.push_back({partitions->elems[i].topic, partitions->elems[i].partition});
      }
      const std::map<TopicPartition, int64_t> starts = options_.start_offsets(assigned);
      for (int i = 0; i < partitions->cnt; ++i) {
        auto it = starts.find(assigned[i]);
        // The others keep RD_KAFKA_OFFSET_INVALID: the committed offset, else auto.offset.reset.
        if (it != starts.end()) partitions->elems[i].offset = it->second;
      }
    }
    spdlog::info("Kafka consumer {} (group {}) assigned {} partitions", rd_kafka_name(rk),
                 options_.group, partitions->cnt);
    if (rd_kafka_resp_err_t err = rd_kafka_assign(rk, partitions); err) {
      spdlog::error("{}", Text(KafkaStatus(err, "assigning partitions")));
    }
  }

  void Revoke(rd_kafka_t* rk) {
    // Commit before unassigning, or the next owner starts before our last events.
    if (absl::Status status = CommitPositions(rk); !status.ok()) {
      spdlog::warn("{}; the next owner will see those events again", Text(status));
    }
    positions_.clear();
    ++revocations_;
    if (rd_kafka_resp_err_t err = rd_kafka_assign(rk, nullptr); err) {
      spdlog::error("{}", Text(KafkaStatus(err, "unassigning partitions")));
    }
  }

  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t* partitions, void* opaque) {
    auto* self = static_cast<KafkaConsumer*>(opaque);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      self->Assign(rk, partitions);
    } else {
      if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        spdlog::error("Kafka consumer {} rebalance failed: {}", rd_kafka_name(rk),
                      rd_kafka_err2str(err));
      }
      self->Revoke(rk);
    }
  }

  static int OnStats(rd_kafka_t*, char* json, size_t length, void* opaque) {
    RecordConsumerLag(static_cast<KafkaConsumer*>(opaque)->options_.group, {json, length});
    return 0;  // librdkafka frees the JSON
  }

  static void OnError(rd_kafka_t* rk, int err, const char* reason, void*) {
    LogClientError(rk, err, reason);
  }

  const Settings settings_;
  const ConsumerOptions options_;
  // Next offset after the events Poll returned and Commit has not committed yet.
  std::map<TopicPartition, int64_t> positions_;
  int64_t revocations_ = 0;
  // Last: destroyed (and so leaving the group) before the state its callbacks touch.
  ClientPtr client_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<EventConsumer>> NewConsumer(const Settings& settings,
                                                           const ConsumerOptions& options) {
  return KafkaConsumer::Create(settings, options);
}

}  // namespace stip::kafka
