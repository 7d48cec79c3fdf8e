// ExactlyOnceProcessor on Kafka: consume, process and produce in Kafka transactions.
//
// Threads: Run() owns both clients (a group consumer and a transactional producer) and
// calls the handler; librdkafka's rebalance and statistics callbacks run inside its
// rd_kafka_consumer_poll. Stop() and Counters() only touch atomics.
// Blocking: Run until Stop(); Stop() is noticed within 100 ms while gathering, after the
// batch in hand is committed, and then closing the consumer takes at most 10 s.
// Guarantee: a batch's outputs, dead letters and input offsets are committed in one
// transaction (send_offsets_to_transaction), read back by read_committed consumers. A batch
// that fails in any way is aborted and the consumer rewound to the committed offsets, so the
// same inputs are processed again: never skipped, never visible twice. A revoke (which can
// only arrive while a batch is being gathered, before its transaction begins) drops the
// gathered events for the partitions' next owner.
// One event never stops the partitions: an output over EventLogOptions::max_event_bytes,
// or one librdkafka refuses at once for its own sake (IsPerEventError), goes to the
// dead-letter topic cut to fit; one the broker refuses (a topic with a lower
// max.message.bytes) aborts that try, and is dead-lettered when the batch is handled again.
// Broker and coordinator failures still abort and retry the batch: nothing is skipped.
// Fencing: a producer that is fenced within its transaction timeout was replaced by a newer
// instance with the same transactional.id, and Run returns kFailedPrecondition. Any other
// fatal producer error replaces the producer (init_transactions again) and retries.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "services/common/kafka_internal.h"
#include "services/common/metrics.h"
#include "spdlog/spdlog.h"

namespace stip::kafka {
namespace {

constexpr absl::Duration kMaxBackoff = absl::Seconds(30);
constexpr absl::Duration kCloseTimeout = absl::Seconds(10);
constexpr absl::Duration kIdlePoll = absl::Milliseconds(100);
// How often a transactional call that librdkafka calls retriable is repeated before the
// producer is replaced (with -1 timeouts each try already waits the transaction timeout).
constexpr int kTransactionalTries = 3;
// The most refused outputs remembered between commits.
constexpr size_t kMaxRefused = 100'000;

// Identifies an output across repeats of a batch (the handler emits it again), so that one
// the broker refused for its own sake is dead-lettered when the batch is retried.
uint64_t Fingerprint(const OutgoingEvent& event) {
  const std::hash<std::string_view> hash;
  uint64_t h = hash(event.topic);
  h = h * 1'000'003 ^ hash(event.key);
  h = h * 1'000'003 ^ hash(event.value);
  return h;
}

// Collects what the handler emits for one batch; produced only once the handler succeeds.
// An output over the event limit, or one the broker refused in an earlier try of the
// batch, becomes a dead letter here, before anything is produced.
class CollectedOutput final : public BatchOutput {
 public:
  CollectedOutput(size_t max_event_bytes, std::string source,
                  const std::set<uint64_t>* refused_before)
      : max_event_bytes_(max_event_bytes),
        source_(std::move(source)),
        refused_before_(refused_before) {}

  void Emit(OutgoingEvent event) override {
    if (const size_t bytes = EventBytes(event); bytes > max_event_bytes_) {
      Divert(event, absl::StrCat("an event of ", bytes, " bytes for topic ", event.topic,
                                 " is over the event log's limit of ", max_event_bytes_, " bytes"));
    } else if (refused_before_->contains(Fingerprint(event))) {
      Divert(event, absl::StrCat("the broker refused this event for topic ", event.topic,
                                 " (too large or malformed)"));
    } else {
      events_.push_back(std::move(event));
    }
  }
  void DeadLetter(const ConsumedEvent& event, std::string_view reason) override {
    events_.push_back(DeadLetterFor(event, reason, max_event_bytes_));
    ++dead_lettered_[event.topic];
  }
  // An output that librdkafka refused at once for its own sake (IsPerEventError).
  OutgoingEvent Diverted(const OutgoingEvent& event, std::string_view why) {
    ++dead_lettered_[event.topic];
    return DeadLetterForOutput(
        event, absl::StrCat("not produced to ", event.topic, ": ", std::string(why)), source_,
        max_event_bytes_);
  }
  const std::vector<OutgoingEvent>& events() const { return events_; }
  const std::map<std::string, int64_t>& dead_lettered() const { return dead_lettered_; }

 private:
  void Divert(const OutgoingEvent& event, const std::string& reason) {
    spdlog::warn("processor {}: {}; dead-lettered instead", source_, reason);
    events_.push_back(DeadLetterForOutput(event, reason, source_, max_event_bytes_));
    ++dead_lettered_[event.topic];
  }

  const size_t max_event_bytes_;
  const std::string source_;
  const std::set<uint64_t>* const refused_before_;
  std::vector<OutgoingEvent> events_;
  std::map<std::string, int64_t> dead_lettered_;  // by source topic, or intended topic
};

class KafkaProcessor final : public ExactlyOnceProcessor {
 public:
  KafkaProcessor(const Settings& settings, const ProcessorOptions& options, BatchHandler* handler,
                 std::function<absl::Status()> prepare)
      : settings_(settings),
        options_(options),
        handler_(handler),
        prepare_(std::move(prepare)),
        transactional_id_(absl::StrCat(options.group, "-", options.instance_id)) {}

  ~KafkaProcessor() override {
    // Run() has returned (callers join its thread first); close what a failed start left.
    CloseAndDestroyConsumer(std::move(consumer_), kCloseTimeout).IgnoreError();
  }

  absl::Status Run() override {
    absl::Status status = Start();
    if (status.ok()) status = Loop();
    absl::Status closed = CloseAndDestroyConsumer(std::move(consumer_), kCloseTimeout);
    if (!closed.ok()) spdlog::warn("{}", Text(closed));
    if (producer_ != nullptr) {
      rd_kafka_flush(producer_.get(), ToMillis(kCloseTimeout));
      producer_.reset();
    }
    spdlog::info("processor {} stopped: {}", transactional_id_, status.ToString());
    return status;
  }

  void Stop() override { stop_ = true; }

  ProcessorCounters Counters() const override {
    return {batches_committed_.load(), batches_aborted_.load(),      events_consumed_.load(),
            events_produced_.load(),   events_dead_lettered_.load(), events_in_hand_.load(),
            aborted_in_a_row_.load()};
  }

 private:
  // Everything Run needs before the first batch. OK with no clients when stopped early.
  absl::Status Start() {
    absl::Duration backoff = options_.retry_backoff;
    while (!stop_) {
      absl::Status prepared = prepare_();
      if (prepared.ok()) break;
      if (prepared.code() != absl::StatusCode::kUnavailable) return prepared;
      spdlog::warn("processor {} cannot start yet: {}", transactional_id_, Text(prepared));
      Sleep(backoff);
      backoff = std::min(backoff * 2, kMaxBackoff);
    }
    if (stop_) return absl::OkStatus();
    if (absl::Status status = CreateConsumer(); !status.ok()) return status;
    if (absl::Status status = CreateProducer(); !status.ok()) return status;
    if (producer_ != nullptr) {
      if (absl::Status status = WarmMetadata(producer_.get(), absl::Seconds(10)); !status.ok()) {
        spdlog::warn("processor {}: {}", transactional_id_, Text(status));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Loop() {
    absl::Duration backoff = options_.retry_backoff;
    std::vector<ConsumedEvent> batch;
    // A batch gathered when Stop() is called is still processed: "finish the batch in hand".
    while (producer_ != nullptr && (!stop_ || !batch.empty())) {
      if (batch.empty()) {
        if (absl::Status status = Gather(batch); !status.ok()) return status;
        continue;
      }
      absl::Status status = ProcessBatch(batch);
      batch.clear();
      events_in_hand_ = 0;
      if (status.ok()) {
        backoff = options_.retry_backoff;
      } else if (status.code() == absl::StatusCode::kAborted) {
        Sleep(backoff);
        backoff = std::min(backoff * 2, kMaxBackoff);
      } else {
        return status;
      }
    }
    return absl::OkStatus();
  }

  absl::Status CreateConsumer() {
    absl::StatusOr<ConfPtr> conf =
        MakeConf(settings_,
                 {{"client.id", "stip-processor"},
                  {"statistics.interval.ms", "5000"},
                  {"enable.partition.eof", "false"},
                  // Prefetch at most 16 MiB (librdkafka's default is 64 MiB per consumer).
                  {"queued.max.messages.kbytes", "16384"},
                  // A member that died (SIGKILL, a lost pod) holds its partitions until its
                  // session expires: 10 s rather than librdkafka's 45 s, so that a
                  // restarted instance resumes sooner.
                  {"session.timeout.ms", "10000"}},
                 {{"group.id", options_.group},
                  // Offsets go into the transactions, never through the consumer.
                  {"enable.auto.commit", "false"},
                  {"enable.auto.offset.store", "false"},
                  {"isolation.level", "read_committed"},
                  {"auto.offset.reset", "earliest"},
                  // Eager: cooperative-sticky in librdkafka before 2.4-2.10 loops, hangs on close
                  // and loses assignments.
                  {"partition.assignment.strategy", "range"},
                  {"allow.auto.create.topics", "false"}});
    if (!conf.ok()) return conf.status();
    rd_kafka_conf_set_opaque(conf->get(), this);
    rd_kafka_conf_set_rebalance_cb(conf->get(), &KafkaProcessor::OnRebalance);
    rd_kafka_conf_set_stats_cb(conf->get(), &KafkaProcessor::OnStats);
    rd_kafka_conf_set_error_cb(conf->get(), &KafkaProcessor::OnError);
    absl::StatusOr<ClientPtr> client = NewClient(RD_KAFKA_CONSUMER, *std::move(conf));
    if (!client.ok()) return client.status();
    consumer_ = *std::move(client);
    rd_kafka_poll_set_consumer(consumer_.get());
    PartitionListPtr topics(
        rd_kafka_topic_partition_list_new(static_cast<int>(options_.input_topics.size())));
    for (const std::string& topic : options_.input_topics) {
      rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
    }
    return KafkaStatus(rd_kafka_subscribe(consumer_.get(), topics.get()),
                       absl::StrCat("subscribing group ", options_.group, " to its topics"));
  }

  // A new transactional producer, transactions initialised: this fences any older producer
  // with our transactional.id and aborts its open transaction. Leaves producer_ null when
  // stopped while the coordinator cannot be reached.
  absl::Status CreateProducer() {
    producer_.reset();
    absl::StatusOr<ConfPtr> conf =
        MakeConf(settings_,
                 {{"client.id", "stip-processor"},
                  {"linger.ms", "5"},
                  {"message.max.bytes", ProducerMessageMaxBytes(settings_)}},
                 {{"transactional.id", transactional_id_},
                  {"transaction.timeout.ms",
                   std::to_string(ToMillis(settings_.options.transaction_timeout))},
                  {"enable.idempotence", "true"},
                  {"acks", "all"},
                  {"partitioner", "murmur2_random"},
                  {"allow.auto.create.topics", "false"}});
    if (!conf.ok()) return conf.status();
    rd_kafka_conf_set_error_cb(conf->get(), &KafkaProcessor::OnError);
    rd_kafka_conf_set_opaque(conf->get(), this);
    rd_kafka_conf_set_dr_msg_cb(conf->get(), &KafkaProcessor::OnDelivery);
    absl::StatusOr<ClientPtr> client = NewClient(RD_KAFKA_PRODUCER, *std::move(conf));
    if (!client.ok()) return client.status();
    absl::Duration backoff = options_.retry_backoff;
    while (!stop_) {
      ErrorPtr error(rd_kafka_init_transactions(client->get(), -1));
      if (error == nullptr) {
        producer_ = *std::move(client);
        spdlog::info("processor {} ready (group {}, inputs {})", transactional_id_, options_.group,
                     absl::StrJoin(options_.input_topics, ","));
        return absl::OkStatus();
      }
      absl::Status status = KafkaStatus(
          error.get(), absl::StrCat("initialising transactions for ", transactional_id_));
      if (!rd_kafka_error_is_retriable(error.get())) return status;
      spdlog::warn("{}; retrying", Text(status));
      Sleep(backoff);
      backoff = std::min(backoff * 2, kMaxBackoff);
    }
    return absl::OkStatus();
  }

  // Polls until the batch is full, commit_interval has passed since its first event, or
  // Stop(). A revoke empties it: nothing of it was produced yet, and the partitions' next
  // owner (perhaps us again) starts from the committed offsets.
  absl::Status Gather(std::vector<ConsumedEvent>& batch) {
    absl::Time closes_at;
    int64_t revocations_seen = revocations_;
    while (!stop_ && batch.size() < options_.max_batch_events) {
      // Short polls, so that Stop() is noticed within kIdlePoll.
      absl::Duration wait = kIdlePoll;
      if (!batch.empty()) {
        wait = std::min(wait, closes_at - absl::Now());
        if (wait <= absl::ZeroDuration()) break;
      }
      MessagePtr message(rd_kafka_consumer_poll(consumer_.get(), ToMillis(wait)));
      if (revocations_ != revocations_seen) {
        batch.clear();
        events_in_hand_ = 0;
        revocations_seen = revocations_;
      }
      if (message == nullptr) {
        if (batch.empty()) rd_kafka_poll(producer_.get(), 0);  // the producer's callbacks
        continue;
      }
      if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        char reason[512];
        if (rd_kafka_fatal_error(consumer_.get(), reason, sizeof(reason))) {
          return absl::FailedPreconditionError(
              absl::StrCat("Kafka consumer of processor ", transactional_id_, ": ", reason));
        }
        spdlog::warn("processor {} consumer: {}", transactional_id_,
                     rd_kafka_message_errstr(message.get()));
        continue;
      }
      if (batch.empty()) closes_at = absl::Now() + options_.commit_interval;
      batch.push_back(ToConsumedEvent(*message));
      events_in_hand_ = static_cast<int64_t>(batch.size());
    }
    return absl::OkStatus();
  }

  // OK: committed. kAborted: aborted and rewound, to be retried after a back-off. Anything
  // else ends Run.
  absl::Status ProcessBatch(const std::vector<ConsumedEvent>& batch) {
    const absl::Time began = absl::Now();
    rd_kafka_poll(producer_.get(), 0);  // late delivery reports of the last try (refused_)
    ErrorPtr error(rd_kafka_begin_transaction(producer_.get()));
    if (error != nullptr) return Fail(began, "beginning a transaction", error.get());

    CollectedOutput output(settings_.options.max_event_bytes, transactional_id_, &refused_);
    if (absl::Status handled = handler_->HandleBatch(batch, output); !handled.ok()) {
      return Fail(began, absl::StrCat("handler: ", handled.ToString()), nullptr);
    }
    for (const OutgoingEvent& event : output.events()) {
      rd_kafka_resp_err_t err = ProduceWaiting(event);
      if (IsPerEventError(err)) {
        // Refused for its own sake (librdkafka checks sizes itself): the batch goes on.
        const OutgoingEvent dead_letter = output.Diverted(event, rd_kafka_err2str(err));
        err = ProduceWaiting(dead_letter);
      }
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return Fail(began, KafkaStatus(err, "producing to " + event.topic).ToString(), nullptr);
      }
    }

    std::map<TopicPartition, int64_t> next;
    std::map<std::string, int64_t> consumed;
    for (const ConsumedEvent& event : batch) {
      next[{event.topic, event.partition}] = event.offset + 1;  // offset order per partition
      ++consumed[event.topic];
    }
    PartitionListPtr offsets(rd_kafka_topic_partition_list_new(static_cast<int>(next.size())));
    for (const auto& [partition, offset] : next) {
      rd_kafka_topic_partition_list_add(offsets.get(), partition.topic.c_str(), partition.partition)
          ->offset = offset;
    }
    // Every record polled is in the batch (Gather keeps none back).
    AdvancePastTransactionMarkers(consumer_.get(), offsets.get());
    // Fetched per batch: it carries the group generation that fences a zombie member.
    GroupMetadataPtr group(rd_kafka_consumer_group_metadata(consumer_.get()));
    for (int tries = 1;; ++tries) {
      error.reset(
          rd_kafka_send_offsets_to_transaction(producer_.get(), offsets.get(), group.get(), -1));
      if (error == nullptr) break;
      if (!rd_kafka_error_is_retriable(error.get()) || tries == kTransactionalTries) {
        return Fail(began, "sending offsets to the transaction", error.get(),
                    tries == kTransactionalTries);
      }
    }
    for (int tries = 1;; ++tries) {
      error.reset(rd_kafka_commit_transaction(producer_.get(), -1));
      if (error == nullptr) break;
      if (!rd_kafka_error_is_retriable(error.get()) || tries == kTransactionalTries) {
        // A commit that keeps timing out leaves the producer in doubt: replace it (its
        // successor's init_transactions finishes or aborts the commit) and rewind.
        return Fail(began, "committing a transaction", error.get(), tries == kTransactionalTries);
      }
      spdlog::warn("{}; retrying the commit",
                   Text(KafkaStatus(error.get(), "processor " + transactional_id_)));
    }

    // Lets the statistics report lag against what the transactions committed.
    rd_kafka_offsets_store(consumer_.get(), offsets.get());
    Record(consumed, output);
    refused_.clear();
    return absl::OkStatus();
  }

  // Produce, waiting for room in librdkafka's queue.
  rd_kafka_resp_err_t ProduceWaiting(const OutgoingEvent& event) {
    const auto opaque = reinterpret_cast<void*>(static_cast<uintptr_t>(Fingerprint(event)));
    rd_kafka_resp_err_t err;
    while ((err = Produce(producer_.get(), event, opaque)) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(producer_.get(), 10);
    }
    return err;
  }

  void Record(const std::map<std::string, int64_t>& consumed, const CollectedOutput& output) {
    EventLogMetrics& metrics = GetEventLogMetrics();
    metrics.batches.Add({{"group", options_.group}, {"result", "committed"}}).Increment();
    ++batches_committed_;
    aborted_in_a_row_ = 0;
    metrics.batches_aborted_in_a_row.Add({{"group", options_.group}}).Set(0);
    for (const auto& [topic, count] : consumed) {
      metrics.events_consumed.Add({{"topic", topic}}).Increment(static_cast<double>(count));
      events_consumed_ += count;
    }
    std::map<std::string, int64_t> produced;
    for (const OutgoingEvent& event : output.events()) ++produced[event.topic];
    for (const auto& [topic, count] : produced) {
      metrics.events_produced.Add({{"topic", topic}}).Increment(static_cast<double>(count));
      if (topic != kDeadLetterTopic) events_produced_ += count;
    }
    for (const auto& [topic, count] : output.dead_lettered()) {
      metrics.events_dead_lettered.Add({{"topic", topic}}).Increment(static_cast<double>(count));
      events_dead_lettered_ += count;
    }
  }

  // Undoes a failed batch: aborts the transaction (or, when the producer is beyond that,
  // replaces it), then rewinds the consumer so the batch is read again. kAborted when the
  // batch can be retried; kFailedPrecondition when a newer instance took our
  // transactional.id.
  absl::Status Fail(absl::Time began, const std::string& what, const rd_kafka_error_t* error,
                    bool replace = false) {
    const absl::Status cause =
        error != nullptr ? KafkaStatus(error, what) : absl::AbortedError(what);
    spdlog::warn("processor {}: aborting a batch: {}", transactional_id_, Text(cause));
    // librdkafka: errors neither retriable nor abortable are to be treated as fatal.
    if (error != nullptr &&
        (rd_kafka_error_is_fatal(error) ||
         (!rd_kafka_error_txn_requires_abort(error) && !rd_kafka_error_is_retriable(error)))) {
      replace = true;
    }
    char reason[512];
    const rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(producer_.get(), reason, sizeof(reason));
    if (fatal != RD_KAFKA_RESP_ERR_NO_ERROR) replace = true;
    for (int tries = 1; !replace; ++tries) {
      ErrorPtr aborted(rd_kafka_abort_transaction(producer_.get(), -1));
      if (aborted == nullptr) break;
      spdlog::warn("{}", Text(KafkaStatus(aborted.get(), "aborting a transaction")));
      if (!rd_kafka_error_is_retriable(aborted.get()) || tries == kTransactionalTries) {
        replace = true;
      }
    }
    rd_kafka_poll(producer_.get(), 0);  // delivery reports naming refused outputs
    GetEventLogMetrics()
        .batches.Add({{"group", options_.group}, {"result", "aborted"}})
        .Increment();
    ++batches_aborted_;
    GetEventLogMetrics()
        .batches_aborted_in_a_row.Add({{"group", options_.group}})
        .Set(static_cast<double>(++aborted_in_a_row_));
    if (replace) {
      // Fenced within the transaction timeout: not our own transaction timing out but a
      // newer instance with our transactional.id. Fencing it back would make two instances
      // take turns; the operator has to give them distinct instance ids.
      const rd_kafka_resp_err_t code = fatal != RD_KAFKA_RESP_ERR_NO_ERROR ? fatal
                                       : error != nullptr ? rd_kafka_error_code(error)
                                                          : RD_KAFKA_RESP_ERR_NO_ERROR;
      if (IsFenced(code) && absl::Now() - began < settings_.options.transaction_timeout) {
        return absl::FailedPreconditionError(
            absl::StrCat("Kafka transactional.id ", transactional_id_,
                         " was taken over by a newer instance (same group and instance_id): ",
                         fatal != RD_KAFKA_RESP_ERR_NO_ERROR ? reason : cause.message()));
      }
      spdlog::error("processor {}: replacing its transactional producer: {}", transactional_id_,
                    fatal != RD_KAFKA_RESP_ERR_NO_ERROR ? reason : Text(cause));
      if (absl::Status status = CreateProducer(); !status.ok()) return status;
      if (producer_ == nullptr) return absl::AbortedError("stopped");
    }
    if (absl::Status status = Rewind(); !status.ok()) return status;
    return absl::AbortedError(cause.message());
  }

  // Seeks every assigned partition back to its committed offset. Without it the consumer
  // would go on after the aborted batch and skip it. Retried until it works or Stop():
  // continuing without it would lose events.
  absl::Status Rewind() {
    absl::Duration backoff = options_.retry_backoff;
    while (true) {
      absl::Status status = TryRewind();
      if (status.ok()) return status;
      if (stop_) return absl::AbortedError("stopped while rewinding");
      spdlog::warn("processor {}: {}; retrying", transactional_id_, Text(status));
      Sleep(backoff);
      backoff = std::min(backoff * 2, kMaxBackoff);
    }
  }

  absl::Status TryRewind() {
    rd_kafka_topic_partition_list_t* raw = nullptr;
    if (rd_kafka_resp_err_t err = rd_kafka_assignment(consumer_.get(), &raw); err) {
      return KafkaStatus(err, "reading the assignment");
    }
    PartitionListPtr partitions(raw);
    if (partitions->cnt == 0) return absl::OkStatus();
    if (rd_kafka_resp_err_t err = rd_kafka_committed(consumer_.get(), partitions.get(), 10000);
        err) {
      return KafkaStatus(err, "reading committed offsets");
    }
    for (int i = 0; i < partitions->cnt; ++i) {
      rd_kafka_topic_partition_t& partition = partitions->elems[i];
      if (partition.err) return KafkaStatus(partition.err, "reading a committed offset");
      // Nothing committed yet: auto.offset.reset=earliest.
      if (partition.offset < 0) partition.offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    ErrorPtr error(rd_kafka_seek_partitions(consumer_.get(), partitions.get(), 10000));
    if (error != nullptr) return KafkaStatus(error.get(), "seeking to committed offsets");
    for (int i = 0; i < partitions->cnt; ++i) {
      if (partitions->elems[i].err) {
        return KafkaStatus(partitions->elems[i].err, "seeking to a committed offset");
      }
    }
    return absl::OkStatus();
  }

  // Sleeps, waking early for Stop().
  void Sleep(absl::Duration duration) {
    const absl::Time until = absl::Now() + duration;
    while (!stop_ && absl::Now() < until) {
      absl::SleepFor(std::min(absl::Milliseconds(50), until - absl::Now()));
    }
  }

  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t* partitions, void* opaque) {
    auto* self = static_cast<KafkaProcessor*>(opaque);
    rd_kafka_resp_err_t assigned;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      spdlog::info("processor {} assigned {} partitions", self->transactional_id_, partitions->cnt);
      // Offsets left unset: each partition starts at its committed offset.
      assigned = rd_kafka_assign(rk, partitions);
    } else {
      if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        spdlog::error("processor {} rebalance failed: {}", self->transactional_id_,
                      rd_kafka_err2str(err));
      }
      // Between batches (this runs inside the poll that gathers one): nothing is in flight;
      // Gather drops what it had gathered.
      ++self->revocations_;
      assigned = rd_kafka_assign(rk, nullptr);
    }
    if (assigned != RD_KAFKA_RESP_ERR_NO_ERROR) {
      spdlog::error("processor {}: {}", self->transactional_id_,
                    Text(KafkaStatus(assigned, "changing the assignment")));
    }
  }

  static int OnStats(rd_kafka_t*, char* json, size_t length, void* opaque) {
    RecordConsumerLag(static_cast<KafkaProcessor*>(opaque)->options_.group, {json, length});
    return 0;  // librdkafka frees the JSON
  }

  static void OnError(rd_kafka_t* rk, int err, const char* reason, void*) {
    LogClientError(rk, err, reason);
  }

  // Delivery reports, served on Run's thread (rd_kafka_poll, and the flush inside
  // commit_transaction). An output the broker refused for its own sake fails the
  // transaction; it is remembered, and dead-lettered when the batch is tried again.
  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
    if (!IsPerEventError(message->err)) return;
    auto* self = static_cast<KafkaProcessor*>(opaque);
    spdlog::warn("processor {}: the broker refused an event for {}: {}", self->transactional_id_,
                 rd_kafka_topic_name(message->rkt), rd_kafka_err2str(message->err));
    // Bounded: cleared at every commit; a batch holds at most max_batch_events inputs.
    if (self->refused_.size() < kMaxRefused) {
      self->refused_.insert(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(message->_private)));
    }
  }

  const Settings settings_;
  const ProcessorOptions options_;
  BatchHandler* const handler_;
  const std::function<absl::Status()> prepare_;
  const std::string transactional_id_;

  std::atomic<bool> stop_{false};
  std::atomic<int64_t> batches_committed_{0};
  std::atomic<int64_t> batches_aborted_{0};
  std::atomic<int64_t> events_consumed_{0};
  std::atomic<int64_t> events_produced_{0};
  std::atomic<int64_t> events_dead_lettered_{0};
  std::atomic<int64_t> events_in_hand_{0};

  std::atomic<int64_t> aborted_in_a_row_{0};

  // Run's thread only (and the callbacks it serves).
  int64_t revocations_ = 0;
  // Fingerprints of outputs the broker refused (too large, malformed) since the last
  // commit: dead-lettered when the batch is handled again.
  std::set<uint64_t> refused_;
  ClientPtr producer_;
  ClientPtr consumer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ExactlyOnceProcessor>> NewProcessor(
    const Settings& settings, const ProcessorOptions& options, BatchHandler* handler,
    std::function<absl::Status()> prepare) {
  return std::make_unique<KafkaProcessor>(settings, options, handler, std::move(prepare));
}

}  // namespace stip::kafka
