#include "bench/raw_copy.h"

#include <errno.h>  // program_invocation_short_name

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"
#include <librdkafka/rdkafka.h>

namespace stip::bench {

void Die(const std::string& what) {
  std::cerr << program_invocation_short_name << ": " << what << "\n";
  std::exit(1);
}

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

void SetOrDie(rd_kafka_conf_t* conf, const char* name, const std::string& value) {
  char error[512];
  if (rd_kafka_conf_set(conf, name, value.c_str(), error, sizeof(error)) != RD_KAFKA_CONF_OK) {
    Die(absl::StrCat(name, ": ", error));
  }
}

namespace {

void CheckError(rd_kafka_error_t* error, const char* what) {
  if (error == nullptr) return;
  const std::string text = rd_kafka_error_string(error);
  rd_kafka_error_destroy(error);
  Die(absl::StrCat(what, ": ", text));
}

}  // namespace

RawCopyTimes RawCopy(const std::string& bootstrap, const std::string& input,
                     const std::string& output, const std::string& group,
                     absl::Duration commit_interval, int64_t count) {
  char error[512];
  rd_kafka_conf_t* consumer_conf = rd_kafka_conf_new();
  SetOrDie(consumer_conf, "bootstrap.servers", bootstrap);
  SetOrDie(consumer_conf, "group.id", group);
  SetOrDie(consumer_conf, "enable.auto.commit", "false");
  SetOrDie(consumer_conf, "enable.auto.offset.store", "false");
  SetOrDie(consumer_conf, "isolation.level", "read_committed");
  SetOrDie(consumer_conf, "auto.offset.reset", "earliest");
  SetOrDie(consumer_conf, "queued.max.messages.kbytes", "16384");
  rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, consumer_conf, error, sizeof(error));
  if (consumer == nullptr) Die(error);
  rd_kafka_poll_set_consumer(consumer);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, input.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(consumer, topics);
  rd_kafka_topic_partition_list_destroy(topics);

  rd_kafka_conf_t* producer_conf = rd_kafka_conf_new();
  SetOrDie(producer_conf, "bootstrap.servers", bootstrap);
  SetOrDie(producer_conf, "transactional.id", group);
  SetOrDie(producer_conf, "transaction.timeout.ms", "10000");
  SetOrDie(producer_conf, "enable.idempotence", "true");
  SetOrDie(producer_conf, "acks", "all");
  SetOrDie(producer_conf, "linger.ms", "5");
  SetOrDie(producer_conf, "partitioner", "murmur2_random");
  rd_kafka_t* producer = rd_kafka_new(RD_KAFKA_PRODUCER, producer_conf, error, sizeof(error));
  if (producer == nullptr) Die(error);
  CheckError(rd_kafka_init_transactions(producer, 30000), "init_transactions");

  const auto interval = std::chrono::microseconds(absl::ToInt64Microseconds(commit_interval));
  int64_t copied = 0;
  int in_batch = 0;
  const Clock::time_point launched = Clock::now();
  Clock::time_point start, batch_closes;
  bool started = false;
  auto commit = [&] {
    rd_kafka_topic_partition_list_t* positions = nullptr;
    rd_kafka_assignment(consumer, &positions);
    rd_kafka_position(consumer, positions);
    rd_kafka_consumer_group_metadata_t* metadata = rd_kafka_consumer_group_metadata(consumer);
    CheckError(rd_kafka_send_offsets_to_transaction(producer, positions, metadata, -1),
               "send_offsets_to_transaction");
    rd_kafka_consumer_group_metadata_destroy(metadata);
    rd_kafka_topic_partition_list_destroy(positions);
    CheckError(rd_kafka_commit_transaction(producer, -1), "commit_transaction");
    in_batch = 0;
  };
  while (copied < count || in_batch > 0) {
    if (in_batch > 0 && (Clock::now() >= batch_closes || in_batch >= 5000 || copied == count)) {
      commit();
      continue;
    }
    const int wait_ms =
        in_batch == 0
            ? 100
            : static_cast<int>(std::max<int64_t>(
                  0,
                  std::chrono::duration_cast<std::chrono::milliseconds>(batch_closes - Clock::now())
                      .count()));
    rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer, wait_ms);
    if (message == nullptr) continue;
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_message_destroy(message);
      continue;
    }
    if (!started) {
      start = Clock::now();
      started = true;
    }
    if (in_batch == 0) {
      CheckError(rd_kafka_begin_transaction(producer), "begin_transaction");
      batch_closes = Clock::now() + interval;
    }
    rd_kafka_headers_t* headers = nullptr;
    rd_kafka_message_headers(message, &headers);
    rd_kafka_resp_err_t err;
    while ((err = rd_kafka_producev(
                producer, RD_KAFKA_V_TOPIC(output.c_str()),
                RD_KAFKA_V_KEY(message->key, message->key_len),
                RD_KAFKA_V_VALUE(message->payload, message->len),
                RD_KAFKA_V_HEADERS(headers != nullptr ? rd_kafka_headers_copy(headers) : nullptr),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(producer, 10);
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) Die(rd_kafka_err2str(err));
    rd_kafka_message_destroy(message);
    ++copied;
    ++in_batch;
  }
  const Clock::time_point end = Clock::now();
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);
  rd_kafka_destroy(producer);
  return {.startup_s = Seconds(launched, start), .elapsed_s = Seconds(start, end)};
}

void CreateTopicsOrDie(const std::string& bootstrap, const std::vector<std::string>& names,
                       int partitions) {
  char error[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  SetOrDie(conf, "bootstrap.servers", bootstrap);
  rd_kafka_t* admin = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof(error));
  if (admin == nullptr) Die(error);
  std::vector<rd_kafka_NewTopic_t*> topics;
  for (const std::string& name : names) {
    rd_kafka_NewTopic_t* topic =
        rd_kafka_NewTopic_new(name.c_str(), partitions, 1, error, sizeof(error));
    if (topic == nullptr) Die(absl::StrCat("topic ", name, ": ", error));
    topics.push_back(topic);
  }
  rd_kafka_queue_t* queue = rd_kafka_queue_new(admin);
  rd_kafka_CreateTopics(admin, topics.data(), topics.size(), nullptr, queue);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 30000);
  if (event == nullptr) Die(absl::StrCat("CreateTopics on ", bootstrap, ": no answer within 30 s"));
  if (rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Die(absl::StrCat("CreateTopics on ", bootstrap, ": ", rd_kafka_event_error_string(event)));
  }
  size_t count = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count);
  for (size_t i = 0; i < count; ++i) {
    const rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      Die(absl::StrCat("topic ", rd_kafka_topic_result_name(results[i]), ": ",
                       rd_kafka_err2str(err)));
    }
  }
  rd_kafka_event_destroy(event);
  rd_kafka_NewTopic_destroy_array(topics.data(), topics.size());
  rd_kafka_queue_destroy(queue);
  rd_kafka_destroy(admin);
}

int PartitionCount(rd_kafka_t* client, const std::string& topic) {
  const rd_kafka_metadata_t* metadata = nullptr;
  rd_kafka_topic_t* handle = rd_kafka_topic_new(client, topic.c_str(), nullptr);
  const rd_kafka_resp_err_t err = rd_kafka_metadata(client, 0, handle, &metadata, 10000);
  rd_kafka_topic_destroy(handle);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Die(absl::StrCat("metadata of ", topic, " from ", rd_kafka_name(client), ": ",
                     rd_kafka_err2str(err)));
  }
  int count = 0;
  if (metadata->topic_cnt == 1 && metadata->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    count = metadata->topics[0].partition_cnt;
  }
  rd_kafka_metadata_destroy(metadata);
  return count;
}

}  // namespace stip::bench
