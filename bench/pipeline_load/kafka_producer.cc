#include "bench/pipeline_load/kafka_producer.h"

#include <chrono>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "bench/raw_copy.h"
#include <sys/types.h>

namespace stip::bench::load {
namespace {

// The producer settings of the event log's publisher (services/common/kafka_publisher.cc),
// which intake publishes accepted filings with: idempotent, acks=all, murmur2, linger 1 ms.
void SetPublisherSettings(rd_kafka_conf_t* conf, int linger_ms) {
  SetOrDie(conf, "enable.idempotence", "true");
  SetOrDie(conf, "acks", "all");
  SetOrDie(conf, "partitioner", "murmur2_random");
  SetOrDie(conf, "linger.ms", std::to_string(linger_ms));
  SetOrDie(conf, "allow.auto.create.topics", "false");
}

}  // namespace

Producer::Producer(const std::string& bootstrap, int linger_ms,
                   std::function<void(int64_t index, rd_kafka_resp_err_t err)> on_delivery)
    : on_delivery_(std::move(on_delivery)) {
  char error[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  SetOrDie(conf, "bootstrap.servers", bootstrap);
  SetOrDie(conf, "client.id", "pipeline-load");
  SetPublisherSettings(conf, linger_ms);
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_dr_msg_cb(
      conf, [](rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
        static_cast<Producer*>(opaque)->on_delivery_(
            static_cast<int64_t>(reinterpret_cast<intptr_t>(message->_private)) - 1, message->err);
      });
  producer_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof(error));
  if (producer_ == nullptr) Die(absl::StrCat("--kafka: ", error));
  poller_ = std::thread([this] {
    while (!stop_) rd_kafka_poll(producer_, 50);
  });
}

Producer::~Producer() {
  Flush();
  stop_ = true;
  poller_.join();
  rd_kafka_destroy(producer_);
}

void Producer::Produce(const stip::OutgoingEvent& event, int64_t index) {
  rd_kafka_headers_t* headers = rd_kafka_headers_new(event.headers.size());
  for (const auto& [name, value] : event.headers) {
    rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()), value.data(),
                        static_cast<ssize_t>(value.size()));
  }
  while (true) {
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        producer_, RD_KAFKA_V_TOPIC(event.topic.c_str()),
        RD_KAFKA_V_KEY(event.key.data(), event.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(event.value.data()), event.value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers),
        RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<intptr_t>(index + 1))),
        RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return;  // the headers are the message's now
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_headers_destroy(headers);
      Die(absl::StrCat("--kafka: produce to ", event.topic, ": ", rd_kafka_err2str(err)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void Producer::Flush() {
  while (rd_kafka_outq_len(producer_) > 0) rd_kafka_flush(producer_, 100);
}

}  // namespace stip::bench::load
