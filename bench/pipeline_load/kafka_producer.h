// The Kafka producer latency's baseline (kafka-hop) and scale send with: librdkafka with the
// settings of the event log's publisher, a thread of its own serving delivery reports, and a
// topic's partition count. Produce blocks only while librdkafka's queue is full; Flush and
// the destructor block until every message is delivered or failed. Errors end the process
// (Die).
#ifndef STIP_BENCH_PIPELINE_LOAD_KAFKA_PRODUCER_H_
#define STIP_BENCH_PIPELINE_LOAD_KAFKA_PRODUCER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "bench/raw_copy.h"
#include "services/common/event.h"
#include <librdkafka/rdkafka.h>

namespace stip::bench::load {

// A producer with a thread serving its delivery reports; Produce retries a full queue.
// Delivery reports count into the members below (the report opaque is the message's index
// plus one, and `on_delivery` is called with it on the serving thread). The producer settings
// are the event log's publisher's (services/common/kafka_publisher.cc), which intake
// publishes accepted filings with: idempotent, acks=all, murmur2, linger `linger_ms`.
class Producer {
 public:
  Producer(const std::string& bootstrap, int linger_ms,
           std::function<void(int64_t index, rd_kafka_resp_err_t err)> on_delivery);
  ~Producer();
  rd_kafka_t* get() { return producer_; }

  void Produce(const stip::OutgoingEvent& event, int64_t index);
  void Flush();

 private:
  std::function<void(int64_t, rd_kafka_resp_err_t)> on_delivery_;
  rd_kafka_t* producer_ = nullptr;
  std::atomic<bool> stop_{false};
  std::thread poller_;
};

}  // namespace stip::bench::load

#endif  // STIP_BENCH_PIPELINE_LOAD_KAFKA_PRODUCER_H_
