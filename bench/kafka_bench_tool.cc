// kafka-bench-tool: the Kafka pieces bench/run needs around the pipelines it measures.
//
//   kafka-bench-tool copy --kafka HOST:PORT --input T --output T --group G
//                         [--commit-interval 100ms] --expect N
//     The baseline of stage 1: a minimal transactional consume-produce copy on librdkafka's C
//     API (bench/raw_copy.h: poll, copy key, value and headers inside a transaction, every commit
//     interval or 5000 messages send the positions to the transaction and commit it), run on an
//     existing input topic until N messages are copied and committed. Prints one JSON line:
//     elapsed_s from the first message polled to the last commit.
//
//   kafka-bench-tool watch --kafka HOST:PORT --topic T --expect N [--timeout-s 300]
//     The yardstick every stage-1 pipeline is measured with: a read_committed consumer
//     assigned to every partition of T from the beginning counts the messages it sees, i.e.
//     the outputs whose transaction has committed. Prints one JSON line with the seconds
//     (from the watcher's start) at which it saw the first, the N/10-th and the N-th
//     message; exit 1 on timeout.
//
//   kafka-bench-tool create --kafka HOST:PORT [--partitions 6] TOPIC...
//     Creates the topics (replication 1); an existing one is left as it is.
//
//   kafka-bench-tool lag --kafka HOST:PORT --group G TOPIC...
//     How far group G is behind on the topics. offset_lag is what kafka-consumer-groups
//     shows, the log end offset minus the committed offset, summed; records_behind counts
//     the records a read_committed consumer would still get from the committed offsets. They
//     differ by the transaction markers after the last record a group consumed: a marker
//     holds an offset but is no record, and a group that commits "last record + 1" stays
//     one offset behind a transactionally written partition. Prints one JSON line.
//
// Single-threaded; every subcommand exits when done. Errors end the process with exit 1 and a
// message.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "bench/raw_copy.h"
#include <librdkafka/rdkafka.h>

namespace {

using stip::bench::Clock;
using stip::bench::Die;
using stip::bench::PartitionCount;
using stip::bench::Seconds;
using stip::bench::SetOrDie;

int Copy(const std::string& bootstrap, const std::string& input, const std::string& output,
         const std::string& group, absl::Duration commit_interval, int64_t count) {
  const stip::bench::RawCopyTimes times =
      stip::bench::RawCopy(bootstrap, input, output, group, commit_interval, count);
  std::cout << absl::StrFormat(
      "{\"tool\":\"copy\",\"librdkafka\":\"%s\",\"copied\":%d,\"startup_s\":%.3f,"
      "\"elapsed_s\":%.3f,\"rate_per_s\":%.1f}\n",
      rd_kafka_version_str(), count, times.startup_s, times.elapsed_s, count / times.elapsed_s);
  return 0;
}

// A consumer of `group` that never joins it (committed() and assign() only), reading
// read_committed, committing nothing; with `partition_eof`, it reports each partition's end.
rd_kafka_t* NewConsumer(const std::string& bootstrap, const std::string& group,
                        bool partition_eof) {
  char error[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  SetOrDie(conf, "bootstrap.servers", bootstrap);
  SetOrDie(conf, "group.id", group);
  SetOrDie(conf, "enable.auto.commit", "false");
  SetOrDie(conf, "enable.auto.offset.store", "false");
  SetOrDie(conf, "isolation.level", "read_committed");
  SetOrDie(conf, "enable.partition.eof", partition_eof ? "true" : "false");
  // See each commit within milliseconds: no long fetch waits on an idle topic.
  SetOrDie(conf, "fetch.wait.max.ms", "10");
  SetOrDie(conf, "fetch.error.backoff.ms", "10");
  rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof(error));
  if (consumer == nullptr) Die(error);
  rd_kafka_poll_set_consumer(consumer);
  return consumer;
}

int Watch(const std::string& bootstrap, const std::string& topic, int64_t count, int timeout_s) {
  const Clock::time_point start = Clock::now();
  rd_kafka_t* consumer = NewConsumer(bootstrap, "kafka-bench-tool-watch", /*partition_eof=*/false);
  // The topic exists (bench/run creates it before the pipeline starts).
  const int partition_count = PartitionCount(consumer, topic);
  if (partition_count == 0) Die(absl::StrCat("no topic ", topic));
  rd_kafka_topic_partition_list_t* partitions = rd_kafka_topic_partition_list_new(1);
  for (int i = 0; i < partition_count; ++i) {
    rd_kafka_topic_partition_list_add(partitions, topic.c_str(), i)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  if (rd_kafka_resp_err_t err = rd_kafka_assign(consumer, partitions);
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Die(absl::StrCat("assign: ", rd_kafka_err2str(err)));
  }
  rd_kafka_topic_partition_list_destroy(partitions);

  const int64_t tenth = std::max<int64_t>(1, count / 10);
  int64_t seen = 0;
  double first_s = 0, tenth_s = 0, last_s = 0;
  const Clock::time_point deadline = start + std::chrono::seconds(timeout_s);
  while (seen < count) {
    if (Clock::now() > deadline) {
      std::cerr << "kafka-bench-tool: watch: " << seen << " of " << count << " in " << topic
                << " after " << timeout_s << " s\n";
      return 1;
    }
    rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer, 100);
    if (message == nullptr) continue;
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++seen;
      const double now = Seconds(start, Clock::now());
      if (seen == 1) first_s = now;
      if (seen == tenth) tenth_s = now;
      if (seen == count) last_s = now;
    }
    rd_kafka_message_destroy(message);
  }
  rd_kafka_destroy(consumer);
  std::cout << absl::StrFormat(
      "{\"tool\":\"watch\",\"topic\":\"%s\",\"seen\":%d,\"first_s\":%.3f,\"tenth_s\":%.3f,"
      "\"last_s\":%.3f}\n",
      topic, seen, first_s, tenth_s, last_s);
  return 0;
}

int Lag(const std::string& bootstrap, const std::string& group,
        const std::vector<std::string>& topics) {
  rd_kafka_t* member = NewConsumer(bootstrap, group, /*partition_eof=*/false);
  rd_kafka_topic_partition_list_t* committed = rd_kafka_topic_partition_list_new(8);
  for (const std::string& topic : topics) {
    const int partition_count = PartitionCount(member, topic);
    if (partition_count == 0) Die(absl::StrCat("no topic ", topic));
    for (int i = 0; i < partition_count; ++i) {
      rd_kafka_topic_partition_list_add(committed, topic.c_str(), i);
    }
  }
  if (rd_kafka_resp_err_t err = rd_kafka_committed(member, committed, 10000);
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Die(absl::StrCat("committed offsets of group ", group, ": ", rd_kafka_err2str(err)));
  }
  // Where the group would resume (nothing committed: the beginning), against the log end.
  int64_t offset_lag = 0;
  rd_kafka_topic_partition_list_t* behind = rd_kafka_topic_partition_list_new(8);
  for (int i = 0; i < committed->cnt; ++i) {
    const rd_kafka_topic_partition_t& partition = committed->elems[i];
    int64_t low = 0, high = 0;
    if (rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
            member, partition.topic, partition.partition, &low, &high, 10000);
        err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      Die(absl::StrCat("watermarks of ", partition.topic, ": ", rd_kafka_err2str(err)));
    }
    const int64_t resume = partition.offset >= 0 ? partition.offset : low;
    if (resume < high) {
      offset_lag += high - resume;
      rd_kafka_topic_partition_list_add(behind, partition.topic, partition.partition)->offset =
          resume;
    }
  }
  rd_kafka_destroy(member);

  // Read what is left, as the group would: every partition to its end (its last stable
  // offset, read_committed).
  int64_t records_behind = 0;
  if (behind->cnt > 0) {
    rd_kafka_t* reader = NewConsumer(bootstrap, "kafka-bench-tool-lag", /*partition_eof=*/true);
    if (rd_kafka_resp_err_t err = rd_kafka_assign(reader, behind);
        err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      Die(absl::StrCat("assign: ", rd_kafka_err2str(err)));
    }
    int at_end = 0;
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(30);
    while (at_end < behind->cnt) {
      if (Clock::now() > deadline) Die("lag: the partitions' ends not reached within 30 s");
      rd_kafka_message_t* message = rd_kafka_consumer_poll(reader, 100);
      if (message == nullptr) continue;
      if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        ++at_end;
      } else if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ++records_behind;
      }
      rd_kafka_message_destroy(message);
    }
    rd_kafka_destroy(reader);
  }
  std::cout << absl::StrFormat(
      "{\"tool\":\"lag\",\"group\":\"%s\",\"partitions\":%d,\"offset_lag\":%d,"
      "\"records_behind\":%d}\n",
      group, committed->cnt, offset_lag, records_behind);
  rd_kafka_topic_partition_list_destroy(behind);
  rd_kafka_topic_partition_list_destroy(committed);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Kafka helpers of bench/run: a raw transactional copy, a committed-output watch, topic "
      "creation and a consumer group's lag"};
  app.require_subcommand(1);
  std::string bootstrap = "127.0.0.1:19092";
  std::string input, output, group, topic, commit_interval_text = "100ms";
  int64_t expect = 0;
  int timeout_s = 300;
  CLI::App* copy = app.add_subcommand("copy", "Transactional copy of --input to --output");
  copy->add_option("--kafka", bootstrap, "Kafka bootstrap servers")->capture_default_str();
  copy->add_option("--input", input, "Topic read (exists)")->required();
  copy->add_option("--output", output, "Topic written (exists)")->required();
  copy->add_option("--group", group, "Consumer group and transactional id (new per run)")
      ->required();
  copy->add_option("--commit-interval", commit_interval_text, "Commit interval")
      ->capture_default_str();
  copy->add_option("--expect", expect, "Messages to copy, then exit")->required();
  CLI::App* watch = app.add_subcommand("watch", "Count committed messages of --topic");
  watch->add_option("--kafka", bootstrap, "Kafka bootstrap servers")->capture_default_str();
  watch->add_option("--topic", topic, "Topic watched (exists)")->required();
  watch->add_option("--expect", expect, "Messages to wait for")->required();
  watch->add_option("--timeout-s", timeout_s, "Give up after")->capture_default_str();
  std::vector<std::string> names;
  int partitions = 6;
  CLI::App* create = app.add_subcommand("create", "Create topics (existing ones are left)");
  create->add_option("--kafka", bootstrap, "Kafka bootstrap servers")->capture_default_str();
  create->add_option("--partitions", partitions, "Partitions")->capture_default_str();
  create->add_option("topics", names, "Topic names")->required();
  CLI::App* lag = app.add_subcommand("lag", "How far a consumer group is behind on topics");
  lag->add_option("--kafka", bootstrap, "Kafka bootstrap servers")->capture_default_str();
  lag->add_option("--group", group, "Consumer group")->required();
  lag->add_option("topics", names, "Topics the group consumes")->required();
  CLI11_PARSE(app, argc, argv);
  if (*create) {
    stip::bench::CreateTopicsOrDie(bootstrap, names, partitions);
    return 0;
  }
  if (*lag) return Lag(bootstrap, group, names);
  if (expect <= 0) Die("--expect must be positive");
  if (*copy) {
    absl::Duration commit_interval;
    if (!absl::ParseDuration(commit_interval_text, &commit_interval)) {
      Die("--commit-interval: " + commit_interval_text);
    }
    return Copy(bootstrap, input, output, group, commit_interval, expect);
  }
  return Watch(bootstrap, topic, expect, timeout_s);
}
