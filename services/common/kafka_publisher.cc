// EventPublisher on Kafka: one idempotent producer shared by every caller, replaced when it
// can no longer be trusted.
//
// Threads: any number of callers in Publish; one thread per producer serves rd_kafka_poll,
// which runs the delivery reports that wake the callers. A caller waits for the reports of
// all its events, so it never returns while one of them could still be delivered later.
//
// Blocking: Publish's `timeout` bounds the wait for room in librdkafka's local queue; each
// accepted event then has its outcome within EventLogOptions::publish_timeout (librdkafka's
// message.timeout.ms, fixed per producer), so a call returns within timeout +
// publish_timeout at worst. librdkafka cannot cancel a single message, so a call cannot
// give up on its events earlier without risking their delivery behind its back.
//
// Guarantee: OK means acks=all from every in-sync replica, for every event, in order per
// key (idempotence keeps retries from reordering or doubling). On one broker without
// fsync that is "in the broker's page cache".
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "services/common/kafka_internal.h"
#include "services/common/metrics.h"
#include "spdlog/spdlog.h"

namespace stip::kafka {
namespace {

// One Publish call's outstanding events, counted down by the delivery reports. Lives on
// the caller's stack: the last report notifies while holding the lock, so the caller cannot
// see zero and destroy it before the reporting thread has let go of it.
class PendingCall {
 public:
  void Add() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++outstanding_;
  }

  // On the polling thread.
  void Delivered(const rd_kafka_message_t& message) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (message.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++delivered_[rd_kafka_topic_name(message.rkt)];
    } else {
      Failed(message.err, rd_kafka_topic_name(message.rkt));
    }
    if (--outstanding_ == 0) done_.notify_all();
  }

  // An event that librdkafka refused at once: no report will come for it.
  void Refused(rd_kafka_resp_err_t err, const std::string& topic) {
    std::lock_guard<std::mutex> lock(mutex_);
    Failed(err, topic);
    --outstanding_;
  }

  void WaitForAll() {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return outstanding_ == 0; });
  }

  // After WaitForAll, from the caller's thread only.
  rd_kafka_resp_err_t first_error() const { return first_error_; }
  const std::string& failed_topic() const { return failed_topic_; }
  const std::map<std::string, int64_t>& delivered() const { return delivered_; }

 private:
  void Failed(rd_kafka_resp_err_t err, const std::string& topic) {
    if (first_error_ != RD_KAFKA_RESP_ERR_NO_ERROR) return;
    first_error_ = err;
    failed_topic_ = topic;
  }

  std::mutex mutex_;
  std::condition_variable done_;
  int outstanding_ = 0;
  rd_kafka_resp_err_t first_error_ = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::string failed_topic_;
  std::map<std::string, int64_t> delivered_;
};

// Errors after which the producer is replaced rather than reused: fatal ones, and message
// timeouts, because librdkafka before 2.3.0 can desynchronise the idempotent producer's
// sequence numbers after a timeout and then fail every later message.
bool Poisons(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR__FATAL || err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT ||
         ClassifyError(err) == absl::StatusCode::kFailedPrecondition;
}

// One librdkafka producer and the thread that serves its callbacks. Shared by the calls
// that use it; destroyed when the last of them is done with it, after a replacement.
class Producer {
 public:
  static absl::StatusOr<std::shared_ptr<Producer>> Create(const Settings& settings) {
    const auto timeout_ms = std::to_string(ToMillis(settings.options.publish_timeout));
    // A topic nobody created fails fast rather than after librdkafka's default 30 s, but
    // still allows for a topic that was just created to reach every broker.
    const auto propagation_ms =
        std::to_string(std::min(5000, ToMillis(settings.options.publish_timeout) / 2));
    absl::StatusOr<ConfPtr> conf = MakeConf(
        settings,
        // Publish waits for its acknowledgements, so linger is paid on every call, while
        // concurrent callers still share batches: measured here, 1 ms published 115k
        // events/s and 5 ms 48k (100k events, 4 threads). Operators may override it.
        {{"client.id", "stip-publisher"},
         {"linger.ms", "1"},
         {"message.max.bytes", ProducerMessageMaxBytes(settings)},
         {"topic.metadata.propagation.max.ms", propagation_ms}},
        {{"enable.idempotence", "true"},
         {"acks", "all"},
         {"partitioner", "murmur2_random"},
         {"message.timeout.ms", timeout_ms},
         // Topics are made explicitly (EnsureTopics); an unknown one is the caller's error.
         {"allow.auto.create.topics", "false"}});
    if (!conf.ok()) return conf.status();
    auto producer = std::shared_ptr<Producer>(new Producer());
    rd_kafka_conf_set_opaque(conf->get(), producer.get());
    rd_kafka_conf_set_dr_msg_cb(conf->get(), &Producer::OnDelivery);
    rd_kafka_conf_set_error_cb(conf->get(), &Producer::OnError);
    absl::StatusOr<ClientPtr> client = NewClient(RD_KAFKA_PRODUCER, *std::move(conf));
    if (!client.ok()) return client.status();
    producer->client_ = *std::move(client);
    producer->poller_ = std::thread([p = producer.get()] { p->Serve(); });
    return producer;
  }

  ~Producer() {
    stopping_ = true;
    if (poller_.joinable()) poller_.join();
    // Every call that used this producer has had all its reports: nothing is left in it.
  }

  rd_kafka_t* client() const { return client_.get(); }
  bool poisoned() const { return poisoned_; }
  void Poison() { poisoned_ = true; }

 private:
  Producer() = default;

  void Serve() {
    while (!stopping_) rd_kafka_poll(client_.get(), 100);
  }

  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
    if (Poisons(message->err)) static_cast<Producer*>(opaque)->Poison();
    static_cast<PendingCall*>(message->_private)->Delivered(*message);
  }

  static void OnError(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
    LogClientError(rk, err, reason);
    if (err == RD_KAFKA_RESP_ERR__FATAL) static_cast<Producer*>(opaque)->Poison();
  }

  ClientPtr client_;
  std::thread poller_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> poisoned_{false};
};

class KafkaPublisher final : public EventPublisher {
 public:
  explicit KafkaPublisher(Settings settings) : settings_(std::move(settings)) {}

  // Makes the first producer now, so that a bad configuration shows at start-up.
  absl::Status Start() { return Current().status(); }

  absl::Status Publish(absl::Span<const OutgoingEvent> events, absl::Duration timeout) override {
    if (events.empty()) return absl::OkStatus();
    // Before anything is produced: an oversized event would fail the call after the events
    // before it were sent, and fail again on every retry.
    if (absl::Status sized = CheckEventSizes(events, MaxEventBytes()); !sized.ok()) return sized;
    const absl::Time start = absl::Now();
    const absl::Time deadline = start + timeout;
    absl::StatusOr<std::shared_ptr<Producer>> producer = Current();
    if (!producer.ok()) return producer.status();

    PendingCall call;
    for (const OutgoingEvent& event : events) {
      call.Add();
      rd_kafka_resp_err_t err;
      // A full local queue drains as deliveries complete; wait for room until the deadline.
      while ((err = Produce((*producer)->client(), event, &call)) ==
                 RD_KAFKA_RESP_ERR__QUEUE_FULL &&
             absl::Now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        // The events after it are not sent: the caller retries the whole span.
        call.Refused(err, event.topic);
        if (Poisons(err)) (*producer)->Poison();
        break;
      }
    }
    // Never return while an accepted event could still be delivered: librdkafka reports
    // every one within message.timeout.ms (EventLogOptions::publish_timeout).
    call.WaitForAll();

    for (const auto& [topic, count] : call.delivered()) {
      GetEventLogMetrics()
          .events_produced.Add({{"topic", topic}})
          .Increment(static_cast<double>(count));
    }
    PublishSeconds().Observe(absl::ToDoubleSeconds(absl::Now() - start));
    const rd_kafka_resp_err_t err = call.first_error();
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return absl::OkStatus();
    absl::Status status =
        KafkaStatus(err, absl::StrCat("publishing to Kafka topic ", call.failed_topic(), " on ",
                                      settings_.bootstrap_servers));
    if (err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT || err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      status = absl::UnavailableError(absl::StrCat(
          status.message(), ": the broker did not acknowledge within ",
          absl::FormatDuration(
              err == RD_KAFKA_RESP_ERR__QUEUE_FULL ? timeout : settings_.options.publish_timeout)));
    } else if (status.code() == absl::StatusCode::kFailedPrecondition) {
      // The producer is replaced on the next call; for the caller, a retry can succeed.
      status = absl::UnavailableError(status.message());
    }
    return status;
  }

  size_t MaxEventBytes() const override { return settings_.options.max_event_bytes; }

 private:
  static prometheus::Histogram& PublishSeconds() {
    static prometheus::Histogram& histogram = GetEventLogMetrics().publish_seconds.Add(
        {{"backend", "kafka"}},
        prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                0.5, 1, 2.5, 5, 10});
    return histogram;
  }

  // The producer to use, replacing a poisoned one. Calls still waiting on the old one keep
  // it alive until their reports are in.
  absl::StatusOr<std::shared_ptr<Producer>> Current() {
    absl::MutexLock lock(&mutex_);
    if (producer_ != nullptr && !producer_->poisoned()) return producer_;
    if (producer_ != nullptr) {
      spdlog::error("replacing Kafka producer {} after a fatal error or a timed-out message",
                    rd_kafka_name(producer_->client()));
    }
    absl::StatusOr<std::shared_ptr<Producer>> fresh = Producer::Create(settings_);
    if (!fresh.ok()) return fresh.status();
    producer_ = *std::move(fresh);
    return producer_;
  }

  const Settings settings_;
  absl::Mutex mutex_;
  std::shared_ptr<Producer> producer_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<EventPublisher>> NewPublisher(const Settings& settings) {
  auto publisher = std::make_unique<KafkaPublisher>(settings);
  if (absl::Status status = publisher->Start(); !status.ok()) return status;
  return publisher;
}

}  // namespace stip::kafka
