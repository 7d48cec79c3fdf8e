// The limit of bench/run's stage 1: a minimal transactional consume-produce copy on
// librdkafka's C API, and the few helpers the Kafka benchmarks share. Used by
// kafka-bench-tool and pipeline-load (bench/run).
#ifndef STIP_BENCH_RAW_COPY_H_
#define STIP_BENCH_RAW_COPY_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include <librdkafka/rdkafka.h>

namespace stip::bench {

using Clock = std::chrono::steady_clock;

// Prints "<program>: what" and exits 1: a benchmark has no use for a partial result.
[[noreturn]] void Die(const std::string& what);
double Seconds(Clock::time_point from, Clock::time_point to);
// rd_kafka_conf_set, or Die naming the property.
void SetOrDie(rd_kafka_conf_t* conf, const char* name, const std::string& value);
// The partitions of `topic` as `client`'s broker knows them; 0 when it has no such topic.
// Dies when the broker does not answer within 10 s.
int PartitionCount(rd_kafka_t* client, const std::string& topic);
// Creates the topics (replication 1) and waits for the broker's answer (at most 30 s); an
// existing topic is left as it is. Dies naming the topic on any other error.
void CreateTopicsOrDie(const std::string& bootstrap, const std::vector<std::string>& names,
                       int partitions);

struct RawCopyTimes {
  double startup_s = 0;  // from the call to the first message polled (group join, init)
  double elapsed_s = 0;  // from the first message polled to the commit of the last
};

// Polls `input` in consumer group `group` from its start, copies each message (key, value,
// headers) to `output` inside a transaction, and every `commit_interval` (or 5000 messages,
// as the event log's processor) sends the consumer's positions to the transaction and commits
// it; returns when `count` messages are copied and committed. Configured as the processor's
// clients are (read_committed, idempotent transactional producer with transactional.id
// `group`, linger.ms=5, murmur2). Blocks the calling thread; exits the process with a message
// on any Kafka error (a benchmark has no use for a partial result).
RawCopyTimes RawCopy(const std::string& bootstrap, const std::string& input,
                     const std::string& output, const std::string& group,
                     absl::Duration commit_interval, int64_t count);

}  // namespace stip::bench

#endif  // STIP_BENCH_RAW_COPY_H_
