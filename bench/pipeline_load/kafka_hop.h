// The `kafka-hop` subcommand, latency's baseline: one produce -> consume hop on librdkafka
// with the event log publisher's settings (idempotent, acks=all), messages the size of a
// filing event with its CloudEvents headers, on latency's fixed schedule; latency = arrival
// at a read_committed consumer in this process - scheduled send time. Creates the topic when
// it is missing. Blocks the calling thread for the whole run (a consumer thread and the
// producer's delivery thread beside it); writes the JSON report, the summary on stdout and
// progress on stderr.
#ifndef STIP_BENCH_PIPELINE_LOAD_KAFKA_HOP_H_
#define STIP_BENCH_PIPELINE_LOAD_KAFKA_HOP_H_

#include <string>

namespace stip::bench::load {

struct HopOptions {
  std::string kafka;
  std::string topic;
  std::string rates = "100,500,1000";
  double seconds = 10;
  int partitions = 6;
  int linger_ms = 1;
  int message_bytes = 0;  // 0: the size of an AcceptedFiling
  double drain_timeout_s = 30;
  std::string json;
};

// Runs the subcommand; returns the exit status: 0 when every message was received, 2 when
// some were not. Dies (exit 1) on an error.
int KafkaHop(const HopOptions& o);

}  // namespace stip::bench::load

#endif  // STIP_BENCH_PIPELINE_LOAD_KAFKA_HOP_H_
