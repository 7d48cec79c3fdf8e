// event-log-throughput: events per second published and consumed through each event-log
// backend, beside librdkafka's raw producer and consumer on the same broker in the same
// run. The raw baseline is what the Kafka backend is made of; the ratio says what our
// layer (blocking acknowledged publishes, group bookkeeping, copies into ConsumedEvent)
// costs. Prints a Markdown table.
//
//   event-log-throughput --kafka 127.0.0.1:19092 [--events 200000] [--payload 200]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "services/common/event_log.h"
#include <librdkafka/rdkafka.h>

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

std::string Key(int i) { return absl::StrCat("91350100M", 100000 + i % 5000); }

rd_kafka_conf_t* RawConf(const std::string& bootstrap) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char error[512];
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), error, sizeof(error));
  return conf;
}

void SetOrDie(rd_kafka_conf_t* conf, const char* name, const char* value) {
  char error[512];
  if (rd_kafka_conf_set(conf, name, value, error, sizeof(error)) != RD_KAFKA_CONF_OK) {
    std::cerr << name << ": " << error << "\n";
    std::exit(1);
  }
}

// librdkafka's own producer, configured as ours is (idempotent, acks=all, murmur2),
// asynchronous: the fastest a client of this library can publish.
double RawProduce(const std::string& bootstrap, const std::string& topic, int events,
                  const std::string& payload) {
  rd_kafka_conf_t* conf = RawConf(bootstrap);
  SetOrDie(conf, "enable.idempotence", "true");
  SetOrDie(conf, "partitioner", "murmur2_random");
  SetOrDie(conf, "linger.ms", "5");
  char error[512];
  rd_kafka_t* producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof(error));
  const auto start = Clock::now();
  for (int i = 0; i < events; ++i) {
    const std::string key = Key(i);
    while (rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic.c_str()),
                             RD_KAFKA_V_KEY(key.data(), key.size()),
                             RD_KAFKA_V_VALUE(const_cast<char*>(payload.data()), payload.size()),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(producer, 10);
    }
    rd_kafka_poll(producer, 0);
  }
  rd_kafka_flush(producer, 60000);
  const double seconds = Seconds(start);
  rd_kafka_destroy(producer);
  return events / seconds;
}

// librdkafka's own consumer reading the whole topic once, from its first event (the group
// join is not timed).
double RawConsume(const std::string& bootstrap, const std::string& topic, int events) {
  rd_kafka_conf_t* conf = RawConf(bootstrap);
  SetOrDie(conf, "group.id", absl::StrCat("bench-raw-", getpid()).c_str());
  SetOrDie(conf, "auto.offset.reset", "earliest");
  SetOrDie(conf, "enable.auto.commit", "false");
  // The same prefetch bound and isolation as our consumer, so that the ratio is the cost of
  // our layer and not of a setting: with librdkafka's default 64 MiB prefetch both read
  // about 3x faster here, at the price of that much memory per consumer.
  SetOrDie(conf, "queued.max.messages.kbytes", "16384");
  SetOrDie(conf, "isolation.level", "read_committed");
  char error[512];
  rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof(error));
  rd_kafka_poll_set_consumer(consumer);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(consumer, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  int seen = 0;
  Clock::time_point start;
  while (seen < events) {
    rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer, 1000);
    if (message == nullptr) continue;
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (seen++ == 0) start = Clock::now();  // from the first event: group join excluded
    }
    rd_kafka_message_destroy(message);
  }
  const double seconds = Seconds(start);
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);
  return events / seconds;
}

// Our publisher: acknowledged batches of 1000 from four threads.
double StipPublish(stip::EventLog& log, const std::string& topic, int events,
                   const std::string& payload) {
  auto publisher = log.NewPublisher();
  if (!publisher.ok()) {
    std::cerr << publisher.status() << "\n";
    std::exit(1);
  }
  constexpr int kThreads = 4, kBatch = 1000;
  std::atomic<int> next{0};
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      std::vector<stip::OutgoingEvent> batch;
      for (int first; (first = next.fetch_add(kBatch)) < events;) {
        batch.clear();
        for (int i = first; i < std::min(events, first + kBatch); ++i) {
          batch.push_back({topic, Key(i), payload, {}});
        }
        const absl::Status status = (*publisher)->Publish(batch, absl::Seconds(60));
        if (!status.ok()) {
          std::cerr << status << "\n";
          std::exit(1);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  return events / Seconds(start);
}

double StipConsume(stip::EventLog& log, const std::string& topic, int events) {
  auto consumer = log.NewConsumer({absl::StrCat("bench-stip-", getpid(), "-", topic), {topic}});
  if (!consumer.ok()) {
    std::cerr << consumer.status() << "\n";
    std::exit(1);
  }
  int seen = 0;
  Clock::time_point start;
  while (seen < events) {
    auto polled = (*consumer)->Poll(5000, absl::Seconds(1));
    if (!polled.ok()) {
      std::cerr << polled.status() << "\n";
      std::exit(1);
    }
    if (seen == 0 && !polled->empty()) start = Clock::now();
    seen += static_cast<int>(polled->size());
  }
  const double seconds = Seconds(start);
  (void)(*consumer)->Commit();
  (void)(*consumer)->Close(absl::Seconds(10));
  return events / seconds;
}

struct Row {
  std::string what;
  double publish_per_second;
  double consume_per_second;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Events per second through each event-log backend beside raw librdkafka"};
  std::string bootstrap = "127.0.0.1:19092";
  int events = 200000;
  int payload_bytes = 200;
  std::string sqlite_path = "/tmp/stip-bench-event-log.db";
  app.add_option("--kafka", bootstrap, "Kafka bootstrap servers")->capture_default_str();
  app.add_option("--events", events, "Events per measurement")->capture_default_str();
  app.add_option("--payload", payload_bytes, "Bytes per event value")->capture_default_str();
  app.add_option("--sqlite", sqlite_path, "SQLite file (removed first)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const std::string payload(static_cast<size_t>(payload_bytes), 'p');
  const std::string run = absl::StrCat(getpid());
  std::vector<Row> rows;

  auto kafka = stip::OpenEventLog(absl::StrCat("kafka://", bootstrap));
  if (!kafka.ok()) {
    std::cerr << kafka.status() << "\n";
    return 1;
  }
  const std::string raw_topic = absl::StrCat("bench-raw-", run);
  const std::string stip_topic = absl::StrCat("bench-stip-", run);
  const std::vector<stip::TopicSpec> topics = {{raw_topic, 3}, {stip_topic, 3}};
  if (auto status = (*kafka)->EnsureTopics(topics); !status.ok()) {
    std::cerr << status << "\n";
    return 1;
  }
  std::cerr << "raw librdkafka " << rd_kafka_version_str() << "...\n";
  const double raw_publish = RawProduce(bootstrap, raw_topic, events, payload);
  const double raw_consume = RawConsume(bootstrap, raw_topic, events);
  rows.push_back({absl::StrCat("librdkafka ", rd_kafka_version_str(), " raw (baseline)"),
                  raw_publish, raw_consume});
  std::cerr << "stip Kafka backend...\n";
  rows.push_back({"stip event log, Kafka", StipPublish(**kafka, stip_topic, events, payload),
                  StipConsume(**kafka, stip_topic, events)});

  std::remove(sqlite_path.c_str());
  auto sqlite = stip::OpenEventLog(absl::StrCat("sqlite://", sqlite_path));
  if (!sqlite.ok()) {
    std::cerr << sqlite.status() << "\n";
    return 1;
  }
  const stip::TopicSpec sqlite_topic{"bench", 3};
  (void)(*sqlite)->EnsureTopics({&sqlite_topic, 1});
  std::cerr << "stip SQLite backend...\n";
  rows.push_back({"stip event log, SQLite", StipPublish(**sqlite, "bench", events, payload),
                  StipConsume(**sqlite, "bench", events)});

  std::cout << absl::StrFormat(
      "%d events of %d bytes, 3 partitions\n\n"
      "| | publish (events/s) | vs raw | consume (events/s) | vs raw "
      "|\n|---|---:|---:|---:|---:|\n",
      events, payload_bytes);
  for (const auto& row : rows) {
    std::cout << absl::StrFormat("| %s | %.0f | %.2f | %.0f | %.2f |\n", row.what,
                                 row.publish_per_second, row.publish_per_second / raw_publish,
                                 row.consume_per_second, row.consume_per_second / raw_consume);
  }
  return 0;
}
